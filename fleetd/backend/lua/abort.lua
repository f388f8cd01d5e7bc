-- abort.lua: a running job whose handler was cancelled on request ends `cancelled`.
--
-- KEYS[1] leases  KEYS[2] status:cancelled  KEYS[3] events
-- ARGV[1] prefix  ARGV[2] events caps  ARGV[3] number of jobs
-- ARGV[4..] per job, 2 values: id, lease token
-- Returns per job 1 (cancelled) or 0 (stale).
local leases, cancelled_idx, events = KEYS[1], KEYS[2], KEYS[3]
local n = tonumber(ARGV[3])
local now = now_ms()
local out = {}
for i = 0, n - 1 do
  local id, token = ARGV[4 + i * 2], ARGV[5 + i * 2]
  local k = job_key(id)
  local h = redis.call('HMGET', k, 'lease', 'status', 'type', 'company_id')
  if h[1] == token and h[2] == 'processing' then
    drop_lease(leases, id, k)
    redis.call('HSET', k, 'status', 'cancelled', 'completed_at', now, 'updated_at', now,
      'error', 'cancelled while running')
    redis.call('ZADD', cancelled_idx, now, id)
    emit(events, 'job.cancelled', id, h[3], h[4], 'cancelled', now, '{"running":true}')
    wf_settle(id, 'cancelled', now)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
