-- renew.lua: extend the leases of a daemon's running jobs, in one batch.
--
-- KEYS[1] leases
-- ARGV[1] prefix  ARGV[2] events caps (unused)  ARGV[3] lease ms  ARGV[4] number of jobs
-- ARGV[5..] per job, 2 values: id, lease token
-- Returns per job: 1 renewed, 2 renewed but a cancel was requested, 0 lost (the token no
-- longer matches: the job was recovered elsewhere; its handler must stop).
local leases = KEYS[1]
local lease_ms, n = tonumber(ARGV[3]), tonumber(ARGV[4])
local deadline = int(now_ms() + lease_ms)
local out = {}
for i = 0, n - 1 do
  local id, token = ARGV[5 + i * 2], ARGV[6 + i * 2]
  local h = redis.call('HMGET', job_key(id), 'lease', 'status', 'cancel_requested')
  if h[1] == token and h[2] == 'processing' then
    redis.call('ZADD', leases, 'XX', deadline, id)
    if h[3] == '1' then out[#out + 1] = 2 else out[#out + 1] = 1 end
  else
    out[#out + 1] = 0
  end
end
return out
