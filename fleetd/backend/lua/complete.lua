-- complete.lua: mark running jobs completed, in one batch.
--
-- KEYS[1] leases  KEYS[2] status:completed  KEYS[3] events
-- ARGV[1] prefix  ARGV[2] events caps  ARGV[3] number of jobs
-- ARGV[4..] per job, 4 values: id, lease token, result (JSON), event data (JSON)
-- Returns per job 1 (completed) or 0 (stale: the job's lease token no longer matches,
-- it was recovered elsewhere or cancelled; nothing is written).
local leases, completed_idx, events = KEYS[1], KEYS[2], KEYS[3]
local n = tonumber(ARGV[3])
local now = now_ms()
local out = {}
local an = an_new()
for i = 0, n - 1 do
  local b = 4 + i * 4
  local id, token, result, evdata = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local k = job_key(id)
  local h = redis.call('HMGET', k, 'lease', 'status', 'type', 'company_id', unpack(AN_FIELDS))
  if h[1] == token and h[2] == 'processing' then
    drop_lease(leases, id, k, 'error', 'traceback')
    redis.call('HSET', k, 'status', 'completed', 'completed_at', now, 'updated_at', now,
      'result', result)
    redis.call('ZADD', completed_idx, now, id)
    emit(events, 'job.completed', id, h[3], h[4], 'completed', now, evdata)
    wf_settle(id, 'completed', now)  -- a workflow node releases its children (_workflow.lua)
    an_finished(an, k, id, h[3], h[4], 'ok', now, h, 5)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
an_flush(an, now)
return out
