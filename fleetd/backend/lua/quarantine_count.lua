-- quarantine_count.lua: count the classified failures of running jobs (resource
-- exhaustion, a crashed process, a timeout: fleetd.jobs.quarantine.COUNTED) per part (a
-- job type of one company), and quarantine a part once `after` of them fell within
-- `window`: claim.lua skips a quarantined part, its jobs stay pending until an admin
-- releases it (quarantine_release.lua). One call per written batch of failures, so
-- the count is exact across daemons.
--
-- KEYS[1] quarantines (hash part → JSON)  KEYS[2] events
-- ARGV[1] prefix  ARGV[2] events maxlen  ARGV[3] after  ARGV[4] window ms
-- ARGV[5] number of failures
-- ARGV[6..] per failure, 5 values: job id, attempt, job type, company ('' = none), kind
--   (its short name: memory, cpu, timeout, crash)
-- Returns the parts quarantined by this call (JSON text of each record).
local quarantines, events = KEYS[1], KEYS[2]
local after, window = tonumber(ARGV[3]), tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local now = now_ms()
local out = {}
for i = 0, n - 1 do
  local b = 6 + i * 5
  local id, attempt, jtype, company, kind = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3],
    ARGV[b + 4]
  local part = part_of(jtype, company)
  -- The part's failures within the window, a sliding log: member "<kind>|<id>:<attempt>"
  -- (one per attempt: a batch written twice counts once).
  local log = PREFIX .. 'quarantine:log:' .. part
  redis.call('ZADD', log, now, kind .. '|' .. id .. ':' .. attempt)
  redis.call('ZREMRANGEBYSCORE', log, '-inf', now - window)
  redis.call('PEXPIRE', log, window)
  if redis.call('ZCARD', log) >= after and redis.call('HEXISTS', quarantines, part) == 0 then
    local kinds = {}
    for _, m in ipairs(redis.call('ZRANGE', log, 0, -1)) do
      local k = m:match('^([^|]*)|')
      kinds[k] = (kinds[k] or 0) + 1
    end
    local record = cjson.encode({job_type = jtype, company_id = company, since = now,
      failures = redis.call('ZCARD', log), kinds = kinds, window_ms = window,
      last_job_id = id})
    redis.call('HSET', quarantines, part, record)
    emit(events, 'part.quarantined', id, jtype, company, 'pending', now, record)
    out[#out + 1] = record
  end
end
return out
