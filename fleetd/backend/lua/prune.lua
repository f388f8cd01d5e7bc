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
  local idem = redis.call('HGET', k, 'idempotency_key')
  if idem then redis.call('DEL', PREFIX .. 'idem:' .. idem) end
  redis.call('DEL', k)
  redis.call('ZREM', idx, id)
end
if #ids > 0 then
  emit(events, 'jobs.pruned', '', '', '', ARGV[5], now, '{"count":' .. #ids .. '}')
end
return #ids
