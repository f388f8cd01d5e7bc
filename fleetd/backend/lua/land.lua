-- land.lua: store one job that never waited in the queue (fleetd.runtime.inline):
-- either claimed at once by the daemon that received it (a critical job enqueued with
-- `bypass`), or already finished (run inline while Redis was away — a sync-fallback or
-- bypassed job — and replayed from the spool: it reaches Redis finished, never pending).
--
-- KEYS[1] leases  KEYS[2] status:completed  KEYS[3] status:failed  KEYS[4] events
-- ARGV[1] prefix  ARGV[2] events caps  ARGV[3] job row (as for enqueue.lua)
-- ARGV[4] mode: processing | completed | failed
-- processing: ARGV[5] lease ms  ARGV[6] lease token  ARGV[7] daemon id
-- completed / failed: ARGV[5] daemon id  ARGV[6] created ms  ARGV[7] started ms
--   ARGV[8] finished ms  ARGV[9] result JSON (completed) or error text (failed)
--   ARGV[10] event data (JSON)
-- Returns {1, id, status, created ms} when stored; {0, id, status, created ms} when the
-- job id is stored already (a replay sent twice) or its company's idempotency key names
-- another job (that job): nothing is written then.
-- processing only: {2, id, why, now ms} when a claim would not start the job now (the
-- caller enqueues it as usual, fleetd.api.fallback): why = 'quarantined' (its part,
-- _lib.lua part_of, is in the hash `quarantines`) or 'paused' (its queue — the row's
-- `queue`, absent or '' = `default` — is in the set `queues:paused`). Checked after
-- the two answers above, before anything is written: nothing is (no job hash, no
-- lease, no event, no idempotency key), so the enqueue that follows owns the key. One
-- script, so a pause or quarantine that lands before it is always seen.
local leases, completed_idx, failed_idx, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local row, mode = decode_row(ARGV[3]), ARGV[4]
local now = now_ms()
local id = row.id
local k = job_key(id)
local landed = redis.call('HMGET', k, 'status', 'created_at')
if landed[1] then return {0, id, landed[1], landed[2] or now} end
local ikey = nil
if row.idempotency_key then
  ikey = idem_key(row.company_id, row.idempotency_key)
  local existing = redis.call('GET', ikey)
  if existing then
    local h = redis.call('HMGET', job_key(existing), 'status', 'created_at')
    return {0, existing, h[1] or 'pending', h[2] or now}
  end
end
if mode == 'processing' then
  -- What claim.lua would hold the job for (limits are the caller's: config).
  local part = part_of(row.type, row.company_id)
  if redis.call('HEXISTS', PREFIX .. 'quarantines', part) == 1 then
    return {2, id, 'quarantined', now}
  end
  local jq = row.queue
  if is_default_queue(jq) then jq = 'default' end
  if redis.call('SISMEMBER', PREFIX .. 'queues:paused', jq) == 1 then
    return {2, id, 'paused', now}
  end
end
if ikey then redis.call('SET', ikey, id) end
local created = now
if mode ~= 'processing' then created = tonumber(ARGV[6]) end
local f = store_row(row, created)
redis.call('HSET', k, unpack(f))
local prio = '{"priority":' .. row.priority .. '}'
emit(events, 'job.enqueued', id, row.type, row.company_id, 'pending', created, prio)
if mode == 'processing' then
  local worker = ARGV[7]
  redis.call('HSET', k, 'status', 'processing', 'started_at', now, 'attempts', 1,
    'lease', ARGV[6], 'worker', worker)
  redis.call('ZADD', leases, int(now + tonumber(ARGV[5])), id)
  emit(events, 'job.started', id, row.type, row.company_id, 'processing', now,
    '{"attempt":1,"worker":"' .. worker .. '","bypass":true}')
  return {1, id, 'processing', now}
end
local finished = tonumber(ARGV[8])
redis.call('HSET', k, 'status', mode, 'worker', ARGV[5], 'attempts', 1,
  'started_at', ARGV[7], 'completed_at', ARGV[8], 'updated_at', now)
if mode == 'completed' then
  redis.call('HSET', k, 'result', ARGV[9])
  redis.call('ZADD', completed_idx, finished, id)
  emit(events, 'job.completed', id, row.type, row.company_id, 'completed', now, ARGV[10])
else
  redis.call('HSET', k, 'error', ARGV[9])
  redis.call('ZADD', failed_idx, finished, id)
  emit(events, 'job.failed', id, row.type, row.company_id, 'failed', now, ARGV[10])
end
return {1, id, mode, created}
