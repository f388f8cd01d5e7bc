-- enqueue.lua: add one or many jobs atomically, honouring idempotency keys.
--
-- KEYS[1] queue           KEYS[2] delayed      KEYS[3] seq
-- KEYS[4] status:pending  KEYS[5] events       KEYS[6] wake
-- ARGV[1] prefix  ARGV[2] events maxlen  ARGV[3] number of jobs  ARGV[4] wake token cap
-- ARGV[5..] per job, 11 values:
--   id, type, data (JSON), priority, max_retries, timeout (seconds or ''),
--   company_id, user_id, tags (JSON list or ''), run_at (ms or ''), idempotency key ('')
-- Returns {now, then per job: id, status, duplicate (0|1), created_at ms}. A duplicate
-- (the idempotency key was seen before) names the existing job, its status and its
-- creation time; nothing is written for it.
local queue, delayed, seq_key = KEYS[1], KEYS[2], KEYS[3]
local pending_idx, events, wake = KEYS[4], KEYS[5], KEYS[6]
local n, cap = tonumber(ARGV[3]), tonumber(ARGV[4])
local FIELDS = 11

local now = now_ms()
local out = {now}
local ready = 0
-- One INCRBY reserves the sequence numbers of the whole call (FIFO order within it).
local seq = redis.call('INCRBY', seq_key, n) - n
for i = 0, n - 1 do
  local b = 5 + i * FIELDS
  local id, jtype, data, prio = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local timeout, company, user = ARGV[b + 5], ARGV[b + 6], ARGV[b + 7]
  local tags, run_at, idem = ARGV[b + 8], ARGV[b + 9], ARGV[b + 10]
  local existing = false
  if idem ~= '' then
    local ikey = PREFIX .. 'idem:' .. idem
    existing = redis.call('GET', ikey)
    if not existing then redis.call('SET', ikey, id) end
  end
  if existing then
    local h = redis.call('HMGET', job_key(existing), 'status', 'created_at')
    out[#out + 1] = existing
    out[#out + 1] = h[1] or 'pending'
    out[#out + 1] = 1
    out[#out + 1] = h[2] or now
  else
    local f = {'id', id, 'type', jtype, 'data', data, 'priority', prio, 'status', 'pending',
      'created_at', now, 'updated_at', now, 'retry_count', 0, 'max_retries', ARGV[b + 4],
      'attempts', 0}
    if timeout ~= '' then f[#f + 1] = 'timeout'; f[#f + 1] = timeout end
    if company ~= '' then f[#f + 1] = 'company_id'; f[#f + 1] = company end
    if user ~= '' then f[#f + 1] = 'user_id'; f[#f + 1] = user end
    if tags ~= '' then f[#f + 1] = 'tags'; f[#f + 1] = tags end
    if idem ~= '' then f[#f + 1] = 'idempotency_key'; f[#f + 1] = idem end
    local due = tonumber(run_at)
    local evdata = '{"priority":' .. prio .. '}'
    if due and due > now then
      f[#f + 1] = 'run_at'; f[#f + 1] = run_at
      redis.call('ZADD', delayed, run_at, id)
      evdata = '{"priority":' .. prio .. ',"run_at":' .. run_at .. '}'
    else
      seq = seq + 1
      redis.call('ZADD', queue, queue_score(prio, seq), id)
      ready = ready + 1
    end
    redis.call('HSET', job_key(id), unpack(f))
    redis.call('ZADD', pending_idx, now, id)
    emit(events, 'job.enqueued', id, jtype, company, 'pending', now, evdata)
    out[#out + 1] = id
    out[#out + 1] = 'pending'
    out[#out + 1] = 0
    out[#out + 1] = now
  end
end
wake_up(wake, ready, cap)
return out
