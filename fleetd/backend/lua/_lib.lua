-- _lib.lua: helpers that fleetd/scripts.py prepends to every script (not a script itself).
--
-- Conventions shared by every script:
--   ARGV[1]  key prefix, "fleetd:{<namespace>}:"; per-job keys are built from it and carry
--            the same Cluster hash tag as the KEYS, so they live in the same slot.
--   ARGV[2]  approximate MAXLEN of the events stream.
-- Times are Redis server time in milliseconds: hosts' clocks never decide anything.
-- Event payloads ("data") arrive from Python already JSON-encoded, so no script needs
-- cjson and no message text is ever escaped by hand.

local unpack = unpack or table.unpack
local PREFIX = ARGV[1]
local MAXLEN = ARGV[2]
local MAX_PRIORITY = 20
-- Sequence numbers available inside one priority band of the queue zset. Scores stay
-- below 2^53 (20 * 1e13 = 2e14), so doubles hold them exactly.
local SEQ_SPAN = 1e13
-- Due jobs moved from `delayed` to the queue per call: bounds one script's run time.
local PROMOTE_LIMIT = 1000

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function job_key(id)
  return PREFIX .. 'job:' .. id
end

-- Integer formatting: never let a large score reach Redis in exponent notation.
local function int(n)
  return string.format('%.0f', n)
end

local function queue_score(priority, seq)
  return int((MAX_PRIORITY - tonumber(priority)) * SEQ_SPAN + seq)
end

local function emit(events, etype, id, jtype, company, status, ts, data)
  redis.call('XADD', events, 'MAXLEN', '~', MAXLEN, '*',
    'type', etype, 'job_id', id, 'job_type', jtype or '', 'company_id', company or '',
    'status', status, 'ts', int(ts), 'data', data or '{}')
end

-- Move due jobs from `delayed` to the queue. A retrying job becomes pending again; a
-- job that was only waiting for its run_at already is pending. Returns the count moved.
local function promote(queue, delayed, seq_key, pending_idx, retrying_idx, now)
  local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, PROMOTE_LIMIT)
  for _, id in ipairs(due) do
    local k = job_key(id)
    local h = redis.call('HMGET', k, 'priority', 'status', 'created_at')
    redis.call('ZREM', delayed, id)
    if h[1] then
      if h[2] == 'retrying' then
        redis.call('ZREM', retrying_idx, id)
        redis.call('ZADD', pending_idx, h[3], id)
        redis.call('HSET', k, 'status', 'pending', 'updated_at', int(now))
        redis.call('HDEL', k, 'run_at')  -- the backoff is over; run_at is a caller's field
      end
      local seq = redis.call('INCR', seq_key)
      redis.call('ZADD', queue, queue_score(h[1], seq), id)
    end
  end
  return #due
end

-- Push up to `count` wake-up tokens (at most `cap` kept) so idle fetchers on any daemon
-- stop waiting. Tokens are hints: a fetcher that wakes to an empty queue waits again.
local function wake_up(wake, count, cap)
  if count <= 0 then return end
  local n = math.min(count, cap)
  local tokens = {}
  for i = 1, n do tokens[i] = '1' end
  redis.call('LPUSH', wake, unpack(tokens))
  redis.call('LTRIM', wake, 0, cap - 1)
end

-- The earliest due time in `delayed`, or -1.
local function next_due(delayed)
  local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
  if first[2] then return tonumber(first[2]) end
  return -1
end

-- End a running job's lease: it leaves `leases` (which is also the index of processing
-- jobs) and loses its lease fields, plus any `extra` fields named, in one HDEL.
local function drop_lease(leases, id, k, ...)
  redis.call('ZREM', leases, id)
  redis.call('HDEL', k, 'lease', 'cancel_requested', ...)
end

-- Enqueue one job: the body of enqueue.lua, shared with schedule_fire.lua so a schedule
-- enqueues through the very same code, inside its own script. `a` is an array holding
-- the job's 12 values from index `b` on (enqueue.lua's order: id, type, data, priority,
-- max_retries, timeout, company_id, user_id, tags, run_at, idempotency key, sealed); `seq` is
-- the last sequence number the caller used. Returns: the job id (the existing one for a
-- duplicate idempotency key), its status, 1 if duplicate else 0, its creation ms, the
-- caller's new last sequence number, and 1 if the job is ready now (wake a fetcher).
local function enqueue_one(queue, delayed, pending_idx, events, now, seq, a, b)
  local id, jtype, data, prio = a[b], a[b + 1], a[b + 2], a[b + 3]
  local timeout, company, user = a[b + 5], a[b + 6], a[b + 7]
  local tags, run_at, idem, sealed = a[b + 8], a[b + 9], a[b + 10], a[b + 11]
  if idem ~= '' then
    local ikey = PREFIX .. 'idem:' .. idem
    local existing = redis.call('GET', ikey)
    if existing then
      local h = redis.call('HMGET', job_key(existing), 'status', 'created_at')
      return existing, h[1] or 'pending', 1, h[2] or now, seq, 0
    end
    redis.call('SET', ikey, id)
  end
  local f = {'id', id, 'type', jtype, 'data', data, 'priority', prio, 'status', 'pending',
    'created_at', now, 'updated_at', now, 'retry_count', 0, 'max_retries', a[b + 4],
    'attempts', 0}
  if timeout ~= '' then f[#f + 1] = 'timeout'; f[#f + 1] = timeout end
  if company ~= '' then f[#f + 1] = 'company_id'; f[#f + 1] = company end
  if user ~= '' then f[#f + 1] = 'user_id'; f[#f + 1] = user end
  if tags ~= '' then f[#f + 1] = 'tags'; f[#f + 1] = tags end
  if idem ~= '' then f[#f + 1] = 'idempotency_key'; f[#f + 1] = idem end
  if sealed ~= '' then f[#f + 1] = 'sealed'; f[#f + 1] = sealed end
  local due = tonumber(run_at)
  local evdata = '{"priority":' .. prio .. '}'
  local ready = 0
  if due and due > now then
    f[#f + 1] = 'run_at'; f[#f + 1] = run_at
    redis.call('ZADD', delayed, run_at, id)
    evdata = '{"priority":' .. prio .. ',"run_at":' .. run_at .. '}'
  else
    seq = seq + 1
    redis.call('ZADD', queue, queue_score(prio, seq), id)
    ready = 1
  end
  redis.call('HSET', job_key(id), unpack(f))
  redis.call('ZADD', pending_idx, now, id)
  emit(events, 'job.enqueued', id, jtype, company, 'pending', now, evdata)
  return id, 'pending', 0, now, seq, ready
end
