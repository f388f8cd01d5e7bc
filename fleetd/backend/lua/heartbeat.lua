-- heartbeat.lua: publish one daemon's identity and WorkerMetrics, and forget daemons
-- whose heartbeat expired, so any daemon can report all live ones.
--
-- KEYS[1] daemons (hash id → JSON)  KEYS[2] daemons:hb (zset id → expiry ms)
-- ARGV[1] prefix  ARGV[2] events caps (unused)  ARGV[3] daemon id  ARGV[4] JSON payload
-- ARGV[5] ttl ms (the entry counts as alive until now + ttl)  ARGV[6] 1 = leaving (remove)
-- Returns Redis now ms.
local daemons, hb = KEYS[1], KEYS[2]
local id, payload, ttl = ARGV[3], ARGV[4], tonumber(ARGV[5])
local now = now_ms()
if ARGV[6] == '1' then
  redis.call('HDEL', daemons, id)
  redis.call('ZREM', hb, id)
else
  redis.call('HSET', daemons, id, payload)
  redis.call('ZADD', hb, int(now + ttl), id)
end
local dead = redis.call('ZRANGEBYSCORE', hb, '-inf', '(' .. int(now))
for _, d in ipairs(dead) do
  redis.call('HDEL', daemons, d)
  redis.call('ZREM', hb, d)
end
return now
