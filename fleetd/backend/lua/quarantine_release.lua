-- quarantine_release.lua: an admin releases a quarantined part (quarantine_count.lua):
-- claims serve it again, its failure log starts afresh, and idle fetchers are woken for
-- the jobs it held.
--
-- KEYS[1] quarantines  KEYS[2] events  KEYS[3] wake
-- ARGV[1] prefix  ARGV[2] events caps  ARGV[3] job type  ARGV[4] company ('' = none)
-- ARGV[5] wake tokens to push (at most ARGV[6] kept)
-- Returns the released quarantine's record (JSON text), or false when there was none.
local quarantines, events, wake = KEYS[1], KEYS[2], KEYS[3]
local jtype, company = ARGV[3], ARGV[4]
local part = part_of(jtype, company)
local record = redis.call('HGET', quarantines, part)
if not record then return false end
local now = now_ms()
redis.call('HDEL', quarantines, part)
redis.call('DEL', PREFIX .. 'quarantine:log:' .. part)
wake_up(wake, tonumber(ARGV[5]), tonumber(ARGV[6]))
emit(events, 'part.released', '', jtype, company, 'pending', now, record)
return record
