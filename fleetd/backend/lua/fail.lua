-- fail.lua: record failed attempts of running jobs, in one batch: retry after the delay
-- the caller gives (fleetd.jobs.retry decides it; this script only adds it to Redis's
-- clock) while retries are left, else failed.
--
-- KEYS[1] leases  KEYS[2] status:retrying  KEYS[3] status:failed  KEYS[4] delayed
-- KEYS[5] events
-- ARGV[1] prefix  ARGV[2] events caps  ARGV[3] number of jobs
-- ARGV[4..] per job, 7 values: id, lease token, error text, error as a JSON string,
--   traceback, retryable (1|0: 0 fails at once, e.g. a permanent SMTP rejection),
--   retry delay ms (used when it retries)
-- Returns per job: the due ms of its retry, 0 when it failed for good, -1 when stale.
local leases, retrying_idx, failed_idx = KEYS[1], KEYS[2], KEYS[3]
local delayed, events = KEYS[4], KEYS[5]
local n = tonumber(ARGV[3])
local now = now_ms()
local out = {}
local an = an_new()
for i = 0, n - 1 do
  local b = 4 + i * 7
  local id, token, err, err_json = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local tb, retryable, delay = ARGV[b + 4], ARGV[b + 5], ARGV[b + 6]
  local k = job_key(id)
  local h = redis.call('HMGET', k, 'lease', 'status', 'retry_count', 'max_retries', 'type',
    'company_id', 'created_at', 'attempts')
  if h[1] == token and h[2] == 'processing' then
    drop_lease(leases, id, k)
    local rc, mr = tonumber(h[3]), tonumber(h[4])
    if retryable == '1' and rc < mr then
      rc = rc + 1
      local due = now + tonumber(delay)
      redis.call('HSET', k, 'status', 'retrying', 'retry_count', rc, 'error', err,
        'traceback', tb, 'run_at', int(due), 'updated_at', now)
      redis.call('ZADD', retrying_idx, h[7], id)
      redis.call('ZADD', delayed, int(due), id)
      emit(events, 'job.retrying', id, h[5], h[6], 'retrying', now,
        '{"error":' .. err_json .. ',"retry_count":' .. rc .. ',"run_at":' .. int(due) ..
        ',"attempt":' .. h[8] .. '}')
      an_finished(an, k, id, h[5], h[6], 'retry', now)
      out[#out + 1] = due
    else
      redis.call('HSET', k, 'status', 'failed', 'completed_at', now, 'updated_at', now,
        'error', err, 'traceback', tb)
      redis.call('ZADD', failed_idx, now, id)
      emit(events, 'job.failed', id, h[5], h[6], 'failed', now,
        '{"error":' .. err_json .. ',"attempt":' .. h[8] .. '}')
      wf_settle(id, 'failed', now)
      an_finished(an, k, id, h[5], h[6], 'fail', now)
      out[#out + 1] = 0
    end
  else
    out[#out + 1] = -1
  end
end
an_flush(an, now)
return out
