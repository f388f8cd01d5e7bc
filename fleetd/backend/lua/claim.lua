-- claim.lua: promote due delayed jobs, then take up to N ready jobs, highest priority
-- first and FIFO within a priority, leasing each to one daemon.
--
-- KEYS[1] queue           KEYS[2] delayed            KEYS[3] seq
-- KEYS[4] status:pending  KEYS[5] status:retrying
-- KEYS[6] leases (scored by deadline; also the index of processing jobs)
-- KEYS[7] events          KEYS[8] wake
-- ARGV[1] prefix  ARGV[2] events maxlen  ARGV[3] max jobs  ARGV[4] lease ms
-- ARGV[5] lease token (one per claim call; stored on each job)  ARGV[6] daemon id
-- Returns {now, next delayed due ms or -1, jobs, data} (encode_claimed): `jobs` a JSON
--   array with per job an object (fleetd.backend.codec.ClaimedJob) of its id and the
--   CLAIMED fields of _lib.lua but data, named as in the job hash, absent ones left out,
--   `attempts` counting this claim; `data` a JSON array of their data, in that order.
local queue, delayed, seq_key = KEYS[1], KEYS[2], KEYS[3]
local pending_idx, retrying_idx = KEYS[4], KEYS[5]
local leases, events, wake = KEYS[6], KEYS[7], KEYS[8]
local count, lease_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local token, worker = ARGV[5], ARGV[6]

local now = now_ms()
promote(queue, delayed, seq_key, pending_idx, retrying_idx, now)
local popped = redis.call('ZPOPMIN', queue, count)
local jobs = {}
local deadline = int(now + lease_ms)
for i = 1, #popped, 2 do
  local id = popped[i]
  local k = job_key(id)
  local job, status = read_claimed(k, id)
  if job and status == 'pending' then
    local attempts = tonumber(job.attempts) + 1
    redis.call('HSET', k, 'status', 'processing', 'started_at', now, 'updated_at', now,
      'attempts', attempts, 'lease', token, 'worker', worker)
    redis.call('ZREM', pending_idx, id)
    redis.call('ZADD', leases, deadline, id)
    emit(events, 'job.started', id, job.type, job.company_id, 'processing', now,
      '{"attempt":' .. attempts .. ',"worker":"' .. worker .. '"}')
    job.attempts = tostring(attempts)
    jobs[#jobs + 1] = job
  end
end
-- Nothing left to take: stale wake tokens would only cause empty claims.
if redis.call('ZCARD', queue) == 0 then redis.call('DEL', wake) end
local encoded, data = encode_claimed(jobs)
return {now, next_due(delayed), encoded, data}
