-- schedule_remove.lua: delete one schedule and its index entries (its company's too).
-- Its jobs already enqueued stay; a deleted default stays deleted (schedules:defaults
-- keeps its id).
--
-- KEYS[1] schedule:<id>  KEYS[2] schedules:due  KEYS[3] schedules:all
-- KEYS[4] schedules:names  KEYS[5] events
-- ARGV[1] prefix  ARGV[2] events caps  ARGV[3] schedule id  ARGV[4] event data (JSON)
-- Returns 1 if it was deleted, 0 if there was no such schedule.
local key, due, all, names, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id = ARGV[3]

local h = redis.call('HMGET', key, 'name_key', 'job_type', 'company_id')
if redis.call('EXISTS', key) == 0 then return 0 end
if h[1] and redis.call('HGET', names, h[1]) == id then redis.call('HDEL', names, h[1]) end
redis.call('DEL', key)
redis.call('ZREM', due, id)
redis.call('ZREM', all, id)
redis.call('ZREM', PREFIX .. 'schedules:company:' .. (h[3] or ''), id)
local now = now_ms()
emit(events, 'schedule.deleted', '', h[2], h[3], 'deleted', now, ARGV[4])
return 1
