-- reset.lua: put a failed or cancelled job back to pending, retries cleared.
--
-- KEYS[1] queue  KEYS[2] seq  KEYS[3] status:pending  KEYS[4] status:failed
-- KEYS[5] status:cancelled  KEYS[6] events  KEYS[7] wake
-- ARGV[1] prefix  ARGV[2] events caps  ARGV[3] job id  ARGV[4] wake token cap
-- ARGV[5] (optional) the companies' quotas, as for enqueue.lua ('' = none): a reset is
--   a door that puts a job back in its company's backlog, so it is checked as an
--   enqueue of one job of its type for its company (a job without a company is not
--   limited). It counts towards company_max_pending (without that, a company at its cap
--   could grow its backlog past it by resetting failed jobs) and towards
--   company_enqueue_rate: a reset is the same work admitted again, and the rate bounds
--   the work a company admits per window whatever the door (a loop resetting
--   thousands of failed jobs is the burst the rate is for). Retries the fail script
--   schedules, reaped or released jobs are not doors and are not counted.
-- Returns {outcome, status}: outcome is reset | refused (not failed or cancelled) | missing.
-- Over a quota: enqueue.lua's refusal ({-1, company, quota, limit, retry after ms});
--   nothing written, the job keeps its status (checked after missing and refused).
local queue, seq_key, pending_idx = KEYS[1], KEYS[2], KEYS[3]
local failed_idx, cancelled_idx, events, wake = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local id, quota = ARGV[3], ARGV[5]
local k = job_key(id)
local h = redis.call('HMGET', k, 'status', 'type', 'company_id', 'priority', 'created_at')
if not h[1] then return {'missing', ''} end
if h[1] ~= 'failed' and h[1] ~= 'cancelled' then return {'refused', h[1]} end
local now = now_ms()
if quota and quota ~= '' then
  local refused = check_quotas(cjson.decode(quota), {{company_id = h[3], type = h[2]}}, now)
  if refused then return refused end
end
redis.call('ZREM', failed_idx, id)
redis.call('ZREM', cancelled_idx, id)
redis.call('HSET', k, 'status', 'pending', 'retry_count', 0, 'stalls', 0, 'updated_at', now)
redis.call('HDEL', k, 'error', 'traceback', 'result', 'completed_at', 'started_at',
  'run_at', 'worker', 'progress')
redis.call('ZADD', pending_idx, h[5], id)
local seq = redis.call('INCR', seq_key)
ready_add(queue, id, h[4], seq, h[2], h[3])
emit(events, 'job.reset', id, h[2], h[3], 'pending', now, '{"from":"' .. h[1] .. '"}')
wake_up(wake, 1, tonumber(ARGV[4]))
return {'reset', 'pending'}
