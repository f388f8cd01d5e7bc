-- release.lua: give running jobs back to the queue at once, at the head of their
-- priority, without counting the attempt (graceful stop past shutdown_timeout).
--
-- KEYS[1] leases  KEYS[2] status:pending  KEYS[3] queue  KEYS[4] events  KEYS[5] wake
-- KEYS[6] status:cancelled (a job with a cancel request pending ends cancelled instead)
-- ARGV[1] prefix  ARGV[2] events caps  ARGV[3] number of jobs  ARGV[4] wake token cap
-- ARGV[5..] per job, 2 values: id, lease token
-- Returns per job 1 (back to pending) or 0 (stale).
local leases, pending_idx, queue = KEYS[1], KEYS[2], KEYS[3]
local events, wake, cancelled_idx = KEYS[4], KEYS[5], KEYS[6]
local n, cap = tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
local out = {}
local released = 0
for i = 0, n - 1 do
  local id, token = ARGV[5 + i * 2], ARGV[6 + i * 2]
  local k = job_key(id)
  local h = redis.call('HMGET', k, 'lease', 'status', 'type', 'company_id', 'priority',
    'created_at', 'attempts', 'cancel_requested')
  if h[1] == token and h[2] == 'processing' and h[8] == '1' then
    -- A cancel was requested while it ran: honour it rather than run the job again.
    drop_lease(leases, id, k)
    redis.call('HSET', k, 'status', 'cancelled', 'completed_at', now, 'updated_at', now)
    redis.call('ZADD', cancelled_idx, now, id)
    emit(events, 'job.cancelled', id, h[3], h[4], 'cancelled', now, '{"running":true}')
    wf_settle(id, 'cancelled', now)
    out[#out + 1] = 1
  elseif h[1] == token and h[2] == 'processing' then
    drop_lease(leases, id, k)
    redis.call('HSET', k, 'status', 'pending', 'updated_at', now,
      'attempts', math.max(tonumber(h[7]) - 1, 0))
    redis.call('HDEL', k, 'worker')
    redis.call('ZADD', pending_idx, h[6], id)
    -- Sequence 0: ahead of everything waiting at its priority, since it was taken first.
    ready_add(queue, id, h[5], 0, h[3], h[4])
    emit(events, 'job.requeued', id, h[3], h[4], 'pending', now, '{"reason":"shutdown"}')
    released = released + 1
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
wake_up(wake, released, cap)
return out
