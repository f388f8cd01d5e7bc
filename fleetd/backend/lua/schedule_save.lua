-- schedule_save.lua: create, update or seed one schedule and its indexes, atomically.
--
-- KEYS[1] schedule:<id>      KEYS[2] schedules:due       KEYS[3] schedules:all
-- KEYS[4] schedules:names    KEYS[5] schedules:defaults  KEYS[6] schedules:daemons
-- KEYS[7] events
-- ARGV[1] prefix  ARGV[2] events caps
-- ARGV[3] mode: create | update | seed (create a default unless it ever existed)
-- ARGV[4] schedule id
-- ARGV[5] rev the caller read (update: refused as stale if the schedule changed since)
-- ARGV[6] name index field, "<name>\n<company_id>"
-- ARGV[7] next due ms, or '' for an inactive schedule
-- ARGV[8] event data (JSON)
-- ARGV[9] the most schedules one company may have ([limits] company_max_schedules; 0 =
--          no cap): creating one more, or moving one into a company that has as many,
--          is refused
-- ARGV[10..] field, value pairs of the definition (name, job_type, data, schedule,
--           priority, is_active, company_id, user_id, timezone, misfire_policy, anchor)
-- Also keeps the schedule's company's index, schedules:company:<company_id> (zset:
-- schedule id by creation ms; '' for no company), so a company's listing reads its own.
-- Returns {code, detail, now}. code: created | updated (detail: the new rev) | exists
-- (create, seed: the id is taken) | seen (seed: this default was created before) |
-- missing (update) | stale (update: changed since read) | name_taken (detail: the id of
-- the company's schedule that has the name) | quota (detail: the company's cap).
local key, due, all, names = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local defaults, daemons, events = KEYS[5], KEYS[6], KEYS[7]
local mode, id, rev, name_field = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local next_due, evdata = ARGV[7], ARGV[8]
-- A wake token lives this long: a scheduler that died without unregistering leaves
-- nothing behind for longer.
local WAKE_TTL_MS = 60000

local now = now_ms()
local exists = redis.call('EXISTS', key) == 1
if mode == 'seed' then
  if redis.call('SISMEMBER', defaults, id) == 1 then return {'seen', '', now} end
  redis.call('SADD', defaults, id)
end
if mode ~= 'update' and exists then return {'exists', '', now} end
if mode == 'update' then
  if not exists then return {'missing', '', now} end
  if redis.call('HGET', key, 'rev') ~= rev then return {'stale', '', now} end
end
local owner = redis.call('HGET', names, name_field)
if owner and owner ~= id then return {'name_taken', owner, now} end

local fields, company = {}, nil
for i = 10, #ARGV do fields[#fields + 1] = ARGV[i] end
for i = 10, #ARGV - 1, 2 do
  if ARGV[i] == 'company_id' then company = ARGV[i + 1] end
end
local code = 'updated'
local before = redis.call('HMGET', key, 'company_id', 'created_at')
local cap = tonumber(ARGV[9])
if cap > 0 and company and company ~= '' and (mode ~= 'update' or company ~= before[1])
    and redis.call('ZCARD', PREFIX .. 'schedules:company:' .. company) >= cap then
  return {'quota', cap, now}
end
if mode == 'update' then
  local old = redis.call('HGET', key, 'name_key')
  if old and old ~= name_field then redis.call('HDEL', names, old) end
  rev = redis.call('HINCRBY', key, 'rev', 1)
else
  code = 'created'
  rev = 1
  fields[#fields + 1] = 'rev'; fields[#fields + 1] = rev
  fields[#fields + 1] = 'created_at'; fields[#fields + 1] = now
  fields[#fields + 1] = 'id'; fields[#fields + 1] = id
  redis.call('ZADD', all, now, id)
end
fields[#fields + 1] = 'updated_at'; fields[#fields + 1] = now
fields[#fields + 1] = 'name_key'; fields[#fields + 1] = name_field
redis.call('HSET', key, unpack(fields))
redis.call('HSET', names, name_field, id)

local h = redis.call('HMGET', key, 'job_type', 'company_id')
local company_index = PREFIX .. 'schedules:company:'
if mode == 'update' and (before[1] or '') ~= (h[2] or '') then
  redis.call('ZREM', company_index .. (before[1] or ''), id)
end
redis.call('ZADD', company_index .. (h[2] or ''), before[2] or now, id)
local state = 'inactive'
if next_due == '' then
  redis.call('ZREM', due, id)
  redis.call('HDEL', key, 'next_run')
else
  state = 'active'
  redis.call('ZADD', due, next_due, id)
  redis.call('HSET', key, 'next_run', next_due)
  -- Wake every running scheduler: the new due time may be sooner than its sleep.
  for _, daemon in ipairs(redis.call('ZRANGEBYSCORE', daemons, now, '+inf')) do
    local wake = PREFIX .. 'schedules:wake:' .. daemon
    redis.call('LPUSH', wake, '1')
    redis.call('LTRIM', wake, 0, 0)
    redis.call('PEXPIRE', wake, WAKE_TTL_MS)
  end
end
emit(events, 'schedule.' .. code, '', h[1], h[2], state, now, evdata)
return {code, rev, now}
