-- audit_write.lua: append audit entries of one writer epoch, each exactly once however
-- often it is sent, to the streams its route names.
--
-- A writer epoch (one process, until it spools what it could not write) numbers its
-- entries 1, 2, 3… and sends them in that order; the mark is the highest number
-- written. An entry at or below it was written before — a retry whose first answer
-- was lost, a spool replayed by two processes, or twice after a crash — and is skipped.
--
-- Routes, so that no caller's volume evicts another's entries: an entry goes to `audit`
-- and, when it has a company, to `audit:company:<company>` too, under the same id; the
-- refusal of a call without a valid token goes to `audit:anonymous` only. Each stream
-- has its own cap (XADD MAXLEN ~). Ids are unique across `audit` and `audit:anonymous`
-- (the unfiltered read merges the two by id, and a cursor is one id): each new id is
-- above the last of both. The first id this script ever gave is kept in `audit:split`:
-- below it, the shared stream holds entries of the previous version, written nowhere
-- else, which a company's read still shows.
--
-- KEYS[1] audit (stream)  KEYS[2] audit:writer:<epoch> (the mark, a string)
-- KEYS[3] audit:anonymous (stream)  KEYS[4] audit:split (an id, a string)
-- ARGV[1] prefix  ARGV[2] events caps (unused)  ARGV[3] audit maxlen (MAXLEN ~)
-- ARGV[4] the mark's TTL in seconds  ARGV[5] a company stream's maxlen
-- ARGV[6] the anonymous stream's maxlen  ARGV[7] n, then per entry: seq, and its
--         fields as one JSON object of strings, a newline, its route ('s' the shared
--         stream only, 'a' anonymous, 'c<company>' shared and the company's) — one
--         argument, not 27: redis-py spends ~1.3 µs of Python per argument, which was
--         most of an audited enqueue's cost. JSON holds no raw newline, so the first
--         one ends it whatever the company id holds.
-- Returns the number of entries added.
local stream, mark, anonymous, split = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local maxlen, ttl, company_maxlen, anonymous_maxlen = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local n = tonumber(ARGV[7])

local function split_id(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local function last_id(key)
  local top = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
  if not top then
    return 0, 0
  end
  return split_id(top[1])
end

-- XADD under `id`; '*' instead when the stream already went past it (its newest entry
-- deleted by hand, or a previous version's writer at the same ms). Returns the id used.
local function add(args, key, cap, id)
  args[1], args[4], args[5] = key, cap, id
  local reply = redis.pcall('XADD', unpack(args))
  if type(reply) == 'table' and reply.err then
    args[5] = '*'
    reply = redis.call('XADD', unpack(args))
  end
  return reply
end

local high = tonumber(redis.call('GET', mark) or '0')
local top, added, i = high, 0, 8
local ms, seq  -- the last id given, read once the first entry is new
for _ = 1, n do
  local number = tonumber(ARGV[i])
  if number > top then
    if not ms then
      local ams, aseq = last_id(anonymous)
      ms, seq = last_id(stream)
      if ams > ms or (ams == ms and aseq > seq) then
        ms, seq = ams, aseq
      end
      local now = now_ms()
      if now > ms then
        ms, seq = now, -1
      end
      redis.call('SET', split, int(ms) .. '-' .. int(seq + 1), 'NX')
    end
    seq = seq + 1
    local packed = ARGV[i + 1]
    local cut = string.find(packed, '\n', 1, true)
    local route = string.sub(packed, cut + 1)
    local args = {false, 'MAXLEN', '~', false, false}
    for field, value in pairs(cjson.decode(string.sub(packed, 1, cut - 1))) do
      args[#args + 1] = field
      args[#args + 1] = value
    end
    local id = int(ms) .. '-' .. int(seq)
    if route == 'a' then
      id = add(args, anonymous, anonymous_maxlen, id)
    else
      id = add(args, stream, maxlen, id)
      if #route > 1 then
        add(args, PREFIX .. 'audit:company:' .. string.sub(route, 2), company_maxlen, id)
      end
    end
    ms, seq = split_id(id)
    added = added + 1
    top = number
  end
  i = i + 2
end
redis.call('SET', mark, int(top), 'EX', ttl)
return added
