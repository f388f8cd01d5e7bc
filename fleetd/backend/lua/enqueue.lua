-- enqueue.lua: add one or many jobs atomically, honouring idempotency keys.
--
-- KEYS[1] queue           KEYS[2] delayed      KEYS[3] seq
-- KEYS[4] status:pending  KEYS[5] events       KEYS[6] wake
-- ARGV[1] prefix  ARGV[2] events caps  ARGV[3] number of jobs  ARGV[4] wake token cap
-- ARGV[5..] one job row per job (fleetd.backend.codec: a JSON object of named fields,
--   decoded by decode_row)
-- ARGV[5 + number of jobs] (optional) the companies' quotas
--   (fleetd.config.limit_sections.Limits.encode_quota), JSON: {"pending": most ready jobs
--   of one company, in every queue, "rate": [most enqueued per window, window ms], "types": [job types
--   whose parts count]}; 0 = no such quota. A call with a company over one stores
--   nothing (all or none, as for a bulk request); each refused company is counted in
--   the hash `quota:refused` (company → refusals) for the alert.
-- Returns {now, then per duplicate: its position (1-based), id, status, created_at ms}.
-- Refused: {-1, then per company over a quota: company, quota (pending | rate), its
--   limit, retry after ms}.
-- Every job not listed was stored as its row's id, `pending`, created at `now`. A
-- duplicate (its company's idempotency key was seen before) names the existing job, its
-- status and its creation time; nothing is written for it. A row whose id is stored
-- already (a spooled job replayed twice) is a duplicate of itself. (Only duplicates are listed:
-- a reply of four values per job cost the client more to parse than the job to store.)
local queue, delayed, seq_key = KEYS[1], KEYS[2], KEYS[3]
local pending_idx, events, wake = KEYS[4], KEYS[5], KEYS[6]
local n, cap = tonumber(ARGV[3]), tonumber(ARGV[4])

local now = now_ms()
local out = {now}
local ready = 0
local rows = {}
local quota = ARGV[5 + n]
if quota and quota ~= '' then
  for i = 1, n do rows[i] = decode_row(ARGV[4 + i]) end
  local refused = check_quotas(cjson.decode(quota), rows, now)
  if refused then return refused end
end
-- One INCRBY reserves the sequence numbers of the whole call (FIFO order within it).
local seq = redis.call('INCRBY', seq_key, n) - n
-- The index entries of all the call's jobs go in one ZADD per index.
local batch = new_batch()
for i = 1, n do
  local id, status, dup, created, ready_now
  id, status, dup, created, seq, ready_now = enqueue_one(
    queue, delayed, pending_idx, events, now, seq, rows[i] or decode_row(ARGV[4 + i]), batch)
  if dup == 1 then
    out[#out + 1] = i
    out[#out + 1] = id
    out[#out + 1] = status
    out[#out + 1] = created
  end
  ready = ready + ready_now
end
flush_batch(queue, pending_idx, batch)
wake_up(wake, ready, cap)
return out
