-- template_save.lua: store a new version of a named template (job or workflow) and
-- index it; versions are numbered 1, 2, … per template and never change once stored.
--
-- KEYS[1] template:<n>:<company>:<name> (hash: latest, v<N> -> the version's JSON)
-- KEYS[2] templates (zset: that key's suffix by last save ms)  KEYS[3] events
-- ARGV[1] prefix  ARGV[2] events caps  ARGV[3] index member  ARGV[4] the version's JSON
--   without its number and time (fleetd.templates.model)  ARGV[5] name  ARGV[6] company
-- Returns {version, now ms}.
local key, index, events = KEYS[1], KEYS[2], KEYS[3]
local now = now_ms()
local version = redis.call('HINCRBY', key, 'latest', 1)
local body = cjson.decode(ARGV[4])
body.version = version
body.created_at = now
redis.call('HSET', key, 'v' .. version, cjson.encode(body))
redis.call('ZADD', index, now, ARGV[3])
emit(events, 'template.saved', '', ARGV[5], ARGV[6], 'saved', now,
  '{"template":' .. cjson.encode(ARGV[5]) .. ',"version":' .. version .. '}')
return {version, now}
