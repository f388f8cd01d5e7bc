-- quarantine_count.lua: count the classified failures of running jobs (resource
-- exhaustion, a crashed process, a timeout: fleetd.jobs.quarantine.COUNTED) per part (a
-- job type of one company), and quarantine a part once `after` of them fell within
-- `window`: claim.lua skips a quarantined part, its jobs stay pending until an admin
-- releases it (quarantine_release.lua). One call per written batch of failures, so
-- the count is exact across daemons; the counting itself is _quarantine.lua's, which
-- reap.lua shares (a stalled lease counts as kind `stall`).
--
-- KEYS[1] quarantines (hash part → JSON)  KEYS[2] events
-- ARGV[1] prefix  ARGV[2] events caps  ARGV[3] after  ARGV[4] window ms
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
  -- Per failure: job id, attempt, type, company, kind (_quarantine.lua).
  local record = quarantine_strike(quarantines, events, after, window, now, ARGV[b],
    ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4])
  if record then out[#out + 1] = record end
end
return out
