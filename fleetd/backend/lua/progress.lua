-- progress.lua: record a running job's progress and publish it on the events stream.
--
-- KEYS[1] events
-- ARGV[1] prefix  ARGV[2] events caps  ARGV[3] job id  ARGV[4] lease token
-- ARGV[5] progress (JSON object: percent, message)
-- Returns 1, or 0 when the lease token no longer matches (nothing written).
local events = KEYS[1]
local id, token, progress = ARGV[3], ARGV[4], ARGV[5]
local k = job_key(id)
local h = redis.call('HMGET', k, 'lease', 'status', 'type', 'company_id')
if h[1] ~= token or h[2] ~= 'processing' then return 0 end
local now = now_ms()
redis.call('HSET', k, 'progress', progress, 'updated_at', now)
emit(events, 'job.progress', id, h[3], h[4], 'processing', now, progress)
return 1
