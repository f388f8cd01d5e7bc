-- prune.lua: delete finished jobs (completed, failed or cancelled) older than an age,
-- a bounded number per call, with their idempotency keys.
--
-- KEYS[1] status index of one finished status  KEYS[2] events
-- ARGV[1] prefix  ARGV[2] events maxlen  ARGV[3] age ms (finished before now - age)
-- ARGV[4] max jobs per call  ARGV[5] status name (for the event)
-- Returns the number deleted; the caller calls again while it equals the maximum.
local idx, events = KEYS[1], KEYS[2]
local now = now_ms()
local before = now - tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', idx, '-inf', '(' .. int(before), 'LIMIT', 0,
  tonumber(ARGV[4]))
for _, id in ipairs(ids) do
  local k = job_key(id)
  local h = redis.call('HMGET', k, 'idempotency_key', 'company_id')
  if h[1] then
    -- Its key, and the key a job enqueued before keys were namespaced by company used
    -- (`idem:<key>`): each deleted only while it still names this job.
    for _, ikey in ipairs({idem_key(h[2], h[1]), PREFIX .. 'idem:' .. h[1]}) do
      if redis.call('GET', ikey) == id then redis.call('DEL', ikey) end
    end
  end
  redis.call('DEL', k)
  redis.call('ZREM', idx, id)
end
if #ids > 0 then
  emit(events, 'jobs.pruned', '', '', '', ARGV[5], now, '{"count":' .. #ids .. '}')
end
return #ids
