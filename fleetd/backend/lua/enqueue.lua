-- enqueue.lua: add one or many jobs atomically, honouring idempotency keys.
--
-- KEYS[1] queue           KEYS[2] delayed      KEYS[3] seq
-- KEYS[4] status:pending  KEYS[5] events       KEYS[6] wake
-- ARGV[1] prefix  ARGV[2] events maxlen  ARGV[3] number of jobs  ARGV[4] wake token cap
-- ARGV[5..] one job row per job (fleetd.backend.codec: a JSON object of named fields,
--   decoded by decode_row)
-- ARGV[5 + number of jobs] (optional) the companies' quotas
--   (fleetd.config.limit_sections.Limits.encode_quota), JSON: {"pending": most ready jobs
--   of one company, in every queue, "rate": [most enqueued per window, window ms], "types": [job types
--   whose parts count]}; 0 = no such quota. A call with a company over one stores
--   nothing (all or none, as for a bulk request); each refused company is counted in
--   the hash `quota:refused` (company → refusals) for the alert.
-- Returns {now, then per duplicate: its position (1-based), id, status, created_at ms}.
-- Refused: {-1, then per company over a quota: company, quota (pending | rate), its
--   limit, retry after ms}.
-- Every job not listed was stored as its row's id, `pending`, created at `now`. A
-- duplicate (its company's idempotency key was seen before) names the existing job, its
-- status and its creation time; nothing is written for it. A row whose id is stored
-- already (a spooled job replayed twice) is a duplicate of itself. (Only duplicates are listed:
-- a reply of four values per job cost the client more to parse than the job to store.)
-- The refusal reply when a company of `rows` is over a quota, else nil: then every
-- company's jobs of this call are counted against its enqueue rate (a fixed window per
-- company).
local function check_quotas(q, rows, now)
  local per = {}
  for i = 1, #rows do
    local c = rows[i].company_id
    if c and c ~= NULL and c ~= '' then
      local e = per[c]
      if not e then
        e = {n = 0, types = {}}
        per[c] = e
      end
      e.n = e.n + 1
      e.types[rows[i].type] = true
    end
  end
  local refused, counted = {-1}, {}
  for company, e in pairs(per) do
    local why, limit, retry = nil, 0, 1000
    if q.pending > 0 then
      for _, t in ipairs(q.types) do e.types[t] = true end
      local waiting = 0
      local qs = redis.call('SMEMBERS', PREFIX .. 'queues')
      qs[#qs + 1] = ''
      for t in pairs(e.types) do
        for _, jq in ipairs(qs) do
          waiting = waiting + redis.call('ZCARD', part_key(part_of(t, company), jq))
        end
      end
      if waiting + e.n > q.pending then why, limit = 'pending', q.pending end
    end
    local rate_key
    if not why and q.rate[1] > 0 then
      local ms = q.rate[2]
      local window = math.floor(now / ms)
      rate_key = PREFIX .. 'quota:rate:' .. window .. ':' .. company
      local used = tonumber(redis.call('GET', rate_key) or 0)
      if used + e.n > q.rate[1] then
        why, limit, retry = 'rate', q.rate[1], (window + 1) * ms - now
      end
    end
    if why then
      redis.call('HINCRBY', PREFIX .. 'quota:refused', company, 1)
      refused[#refused + 1] = company
      refused[#refused + 1] = why
      refused[#refused + 1] = limit
      refused[#refused + 1] = int(retry)
    elseif rate_key then
      counted[#counted + 1] = {rate_key, e.n}
    end
  end
  if #refused > 1 then return refused end
  for _, c in ipairs(counted) do
    redis.call('INCRBY', c[1], c[2])
    redis.call('PEXPIRE', c[1], q.rate[2] * 2)
  end
  return nil
end

local queue, delayed, seq_key = KEYS[1], KEYS[2], KEYS[3]
local pending_idx, events, wake = KEYS[4], KEYS[5], KEYS[6]
local n, cap = tonumber(ARGV[3]), tonumber(ARGV[4])

local now = now_ms()
local out = {now}
local ready = 0
local rows = {}
local quota = ARGV[5 + n]
if quota and quota ~= '' then
  for i = 1, n do rows[i] = decode_row(ARGV[4 + i]) end
  local refused = check_quotas(cjson.decode(quota), rows, now)
  if refused then return refused end
end
-- One INCRBY reserves the sequence numbers of the whole call (FIFO order within it).
local seq = redis.call('INCRBY', seq_key, n) - n
-- The index entries of all the call's jobs go in one ZADD per index.
local batch = new_batch()
for i = 1, n do
  local id, status, dup, created, ready_now
  id, status, dup, created, seq, ready_now = enqueue_one(
    queue, delayed, pending_idx, events, now, seq, rows[i] or decode_row(ARGV[4 + i]), batch)
  if dup == 1 then
    out[#out + 1] = i
    out[#out + 1] = id
    out[#out + 1] = status
    out[#out + 1] = created
  end
  ready = ready + ready_now
end
flush_batch(queue, pending_idx, batch)
wake_up(wake, ready, cap)
return out
