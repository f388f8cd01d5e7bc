-- reap.lua: take back jobs whose lease expired (their daemon died or hung): back to
-- pending with stalls + 1; failed once a job has stalled max_stalls times; cancelled if a
-- cancel had been requested. A job that stalls out (failed here, after max_stalls lease
-- expiries) counts towards its part's quarantine as kind `stall` (_quarantine.lua, as
-- quarantine_count.lua counts crashes): a job type of a company whose jobs keep killing
-- or hanging daemons is held like one whose jobs keep crashing. Stalls short of that do
-- not count: every job a daemon was running when it was killed (a deploy, the host's
-- OOM killer, an operator) stalls through no fault of its own, and daemons killed in
-- quick succession (a crash-looping host) stall some jobs twice.
--
-- KEYS[1] leases (also the index of processing jobs)  KEYS[2] queue  KEYS[3] seq
-- KEYS[4] status:pending  KEYS[5] status:failed  KEYS[6] status:cancelled
-- KEYS[7] events          KEYS[8] wake             KEYS[9] quarantines
-- ARGV[1] prefix  ARGV[2] events caps  ARGV[3] max stalls  ARGV[4] max jobs per call
-- ARGV[5] wake token cap  ARGV[6] quarantine after (0 = not counted)
-- ARGV[7] quarantine window ms
-- Returns {requeued, failed, cancelled, parts quarantined}.
local leases, queue, seq_key = KEYS[1], KEYS[2], KEYS[3]
local pending_idx, failed_idx, cancelled_idx = KEYS[4], KEYS[5], KEYS[6]
local events, wake, quarantines = KEYS[7], KEYS[8], KEYS[9]
local max_stalls, limit, cap = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local q_after, q_window = tonumber(ARGV[6]), tonumber(ARGV[7])
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, limit)
local requeued, failed, cancelled, quarantined = 0, 0, 0, 0
local an = an_new()  -- the stalled-out failures, in their type's and queue's figures
for _, id in ipairs(expired) do
  local k = job_key(id)
  local h = redis.call('HMGET', k, 'status', 'type', 'company_id', 'priority', 'created_at',
    'stalls', 'cancel_requested', 'worker', 'attempts', 'queue')
  drop_lease(leases, id, k)
  if h[1] == 'processing' then
    local stalls = tonumber(h[6] or 0) + 1
    local worker = h[8] or ''
    redis.call('HSET', k, 'stalls', stalls, 'updated_at', now)
    redis.call('HDEL', k, 'worker')
    if h[7] == '1' then
      redis.call('HSET', k, 'status', 'cancelled', 'completed_at', now,
        'error', 'cancelled (its daemon stopped answering)')
      redis.call('ZADD', cancelled_idx, now, id)
      emit(events, 'job.cancelled', id, h[2], h[3], 'cancelled', now, '{"running":true}')
      wf_settle(id, 'cancelled', now)
      cancelled = cancelled + 1
    elseif stalls >= max_stalls then
      if q_after > 0 and quarantine_strike(quarantines, events, q_after, q_window, now, id,
          h[9] or '0', h[2], h[3] or '', 'stall') then
        quarantined = quarantined + 1
      end
      redis.call('HSET', k, 'status', 'failed', 'completed_at', now,
        'error', 'stalled ' .. stalls .. ' times: its lease expired while running')
      redis.call('ZADD', failed_idx, now, id)
      emit(events, 'job.failed', id, h[2], h[3], 'failed', now,
        '{"error":"stalled","stalls":' .. stalls .. '}')
      wf_settle(id, 'failed', now)
      an_queue(an, h[10], 'fail')
      -- A failure in its type's analytics too, with no run time: when it stopped is
      -- not known, only that its lease ran out.
      an_count(an_group(an, h[2], h[3]), 'fail', 1)
      failed = failed + 1
    else
      redis.call('HSET', k, 'status', 'pending')
      redis.call('ZADD', pending_idx, h[5], id)
      local seq = redis.call('INCR', seq_key)
      ready_add(queue, id, h[4], seq, h[2], h[3])
      emit(events, 'job.stalled', id, h[2], h[3], 'pending', now,
        '{"stalls":' .. stalls .. ',"worker":"' .. worker .. '"}')
      requeued = requeued + 1
    end
  end
end
wake_up(wake, requeued, cap)
an_flush(an, now)
return {requeued, failed, cancelled, quarantined}
