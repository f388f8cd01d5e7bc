-- audit_write.lua: append audit entries of one writer epoch to the audit stream, each
-- exactly once however often it is sent.
--
-- A writer epoch (one process, until it spools what it could not write) numbers its
-- entries 1, 2, 3… and sends them in that order; the mark is the highest number
-- written. An entry at or below it was written before — a retry whose first answer
-- was lost, a spool replayed by two processes, or twice after a crash — and is skipped.
--
-- KEYS[1] audit (stream)  KEYS[2] audit:writer:<epoch> (the mark, a string)
-- ARGV[1] prefix  ARGV[2] events caps (unused)  ARGV[3] audit maxlen (MAXLEN ~)
-- ARGV[4] the mark's TTL in seconds  ARGV[5] n, then per entry: seq, its fields as
--         one JSON object of strings (one argument, not 26: redis-py spends ~1.3 µs
--         of Python per argument, which was most of an audited enqueue's cost)
-- Returns the number of entries added.
local stream, mark = KEYS[1], KEYS[2]
local maxlen, ttl, n = ARGV[3], ARGV[4], tonumber(ARGV[5])

local high = tonumber(redis.call('GET', mark) or '0')
local top, added, i = high, 0, 6
for _ = 1, n do
  local seq = tonumber(ARGV[i])
  if seq > top then
    local args = {stream, 'MAXLEN', '~', maxlen, '*'}
    for field, value in pairs(cjson.decode(ARGV[i + 1])) do
      args[#args + 1] = field
      args[#args + 1] = value
    end
    redis.call('XADD', unpack(args))
    added = added + 1
    top = seq
  end
  i = i + 2
end
redis.call('SET', mark, int(top), 'EX', ttl)
return added
