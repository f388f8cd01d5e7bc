-- claim.lua: promote due delayed jobs, then take up to N ready jobs, highest priority
-- first and FIFO within a priority, leasing each to one daemon.
--
-- KEYS[1] queue           KEYS[2] delayed            KEYS[3] seq
-- KEYS[4] status:pending  KEYS[5] status:retrying
-- KEYS[6] leases (scored by deadline; also the index of processing jobs)
-- KEYS[7] events          KEYS[8] wake
-- ARGV[1] prefix  ARGV[2] events maxlen  ARGV[3] max jobs  ARGV[4] lease ms
-- ARGV[5] lease token (one per claim call; stored on each job)  ARGV[6] daemon id
-- Returns {now, next delayed due ms or -1, count, then per job 13 values:
--   id, type, data, priority, attempts, retry_count, max_retries, timeout ('' = default),
--   company_id, user_id, tags, created_at, sealed ('' = plain data)}
local queue, delayed, seq_key = KEYS[1], KEYS[2], KEYS[3]
local pending_idx, retrying_idx = KEYS[4], KEYS[5]
local leases, events, wake = KEYS[6], KEYS[7], KEYS[8]
local count, lease_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local token, worker = ARGV[5], ARGV[6]

local now = now_ms()
promote(queue, delayed, seq_key, pending_idx, retrying_idx, now)
local popped = redis.call('ZPOPMIN', queue, count)
local out = {now, -1, 0}
local deadline = int(now + lease_ms)
local taken = 0
for i = 1, #popped, 2 do
  local id = popped[i]
  local k = job_key(id)
  local h = redis.call('HMGET', k, 'type', 'data', 'priority', 'attempts', 'retry_count',
    'max_retries', 'timeout', 'company_id', 'user_id', 'tags', 'created_at', 'status',
    'sealed')
  if h[1] and h[12] == 'pending' then
    local attempts = tonumber(h[4]) + 1
    redis.call('HSET', k, 'status', 'processing', 'started_at', now, 'updated_at', now,
      'attempts', attempts, 'lease', token, 'worker', worker)
    redis.call('ZREM', pending_idx, id)
    redis.call('ZADD', leases, deadline, id)
    emit(events, 'job.started', id, h[1], h[8], 'processing', now,
      '{"attempt":' .. attempts .. ',"worker":"' .. worker .. '"}')
    local o = #out
    out[o + 1] = id; out[o + 2] = h[1]; out[o + 3] = h[2]; out[o + 4] = h[3]
    out[o + 5] = attempts; out[o + 6] = h[5]; out[o + 7] = h[6]; out[o + 8] = h[7] or ''
    out[o + 9] = h[8] or ''; out[o + 10] = h[9] or ''; out[o + 11] = h[10] or ''
    out[o + 12] = h[11]; out[o + 13] = h[13] or ''
    taken = taken + 1
  end
end
out[3] = taken
-- Nothing left to take: stale wake tokens would only cause empty claims.
if redis.call('ZCARD', queue) == 0 then redis.call('DEL', wake) end
out[2] = next_due(delayed)
return out
