-- cancel.lua: cancel one job. Waiting jobs (pending, delayed, retrying) end `cancelled`
-- at once; a running job gets a cancel request pushed to the daemon that runs it, whose
-- worker cancels the handler and then records `cancelled` (abort.lua).
--
-- KEYS[1] queue  KEYS[2] delayed  KEYS[3] status:pending  KEYS[4] status:retrying
-- KEYS[5] status:cancelled  KEYS[6] events
-- ARGV[1] prefix  ARGV[2] events caps  ARGV[3] job id
-- ARGV[4] control-list TTL seconds (a dead daemon's list must not live forever)
-- Returns {outcome, status}: outcome is cancelled | cancelling | final | missing.
local queue, delayed, pending_idx = KEYS[1], KEYS[2], KEYS[3]
local retrying_idx, cancelled_idx, events = KEYS[4], KEYS[5], KEYS[6]
local id = ARGV[3]
local k = job_key(id)
local h = redis.call('HMGET', k, 'status', 'type', 'company_id', 'worker')
if not h[1] then return {'missing', ''} end
local status = h[1]
local now = now_ms()
if status == 'pending' or status == 'retrying' then
  ready_remove(queue, id, h[2], h[3])
  redis.call('ZREM', delayed, id)
  later_remove(h[3], id)
  redis.call('ZREM', pending_idx, id)
  redis.call('ZREM', retrying_idx, id)
  redis.call('HSET', k, 'status', 'cancelled', 'completed_at', now, 'updated_at', now)
  redis.call('ZADD', cancelled_idx, now, id)
  emit(events, 'job.cancelled', id, h[2], h[3], 'cancelled', now, '{"running":false}')
  wf_settle(id, 'cancelled', now)
  return {'cancelled', 'cancelled'}
elseif status == 'processing' then
  redis.call('HSET', k, 'cancel_requested', '1', 'updated_at', now)
  if h[4] then
    local ctl = PREFIX .. 'ctl:' .. h[4]
    redis.call('RPUSH', ctl, id)
    redis.call('EXPIRE', ctl, ARGV[4])
  end
  return {'cancelling', 'processing'}
end
return {'final', status}
