-- wf_skip.lua: a workflow node whose condition is false when it starts ends skipped
-- (job `cancelled`, error "skipped: ..."), and its children are settled in the same
-- step (_workflow.lua).
--
-- KEYS[1] leases  KEYS[2] status:cancelled  KEYS[3] events
-- ARGV[1] prefix  ARGV[2] events caps  ARGV[3] job id  ARGV[4] lease token
-- ARGV[5] why (error text)
-- Returns 1 skipped, 0 stale (the lease token no longer matches).
local leases, cancelled_idx, events = KEYS[1], KEYS[2], KEYS[3]
local id, token, why = ARGV[3], ARGV[4], ARGV[5]
local k = job_key(id)
local h = redis.call('HMGET', k, 'lease', 'status', 'type', 'company_id')
if h[1] ~= token or h[2] ~= 'processing' then return 0 end
local now = now_ms()
drop_lease(leases, id, k)
redis.call('HSET', k, 'status', 'cancelled', 'completed_at', now, 'updated_at', now,
  'error', why)
redis.call('ZADD', cancelled_idx, now, id)
emit(events, 'job.cancelled', id, h[3], h[4], 'cancelled', now,
  '{"running":true,"skipped":true}')
wf_settle(id, 'skipped', now)
return 1
