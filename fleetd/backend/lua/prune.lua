-- prune.lua: delete finished jobs (completed, failed or cancelled) older than an age,
-- a bounded number per call, with their idempotency keys. A workflow's node is kept
-- while its workflow exists: it goes with it (wf_prune.lua).
--
-- KEYS[1] status index of one finished status  KEYS[2] events
-- ARGV[1] prefix  ARGV[2] events caps  ARGV[3] age ms (finished before now - age)
-- ARGV[4] max jobs per call  ARGV[5] status name (for the event)
-- ARGV[6] offset: the old jobs kept by earlier calls of this clean-up (skipped)
-- Returns {deleted, kept}; the caller calls again, offset + kept, while their sum
-- equals the maximum.
-- The kept jobs are the oldest left, so they hold ranks 0 .. offset - 1: the page is
-- read by rank (O(log N) to reach it), not with ZRANGEBYSCORE's LIMIT offset, which
-- walks past every kept job on every call (quadratic over a clean-up).
local idx, events = KEYS[1], KEYS[2]
local now = now_ms()
local before = now - tonumber(ARGV[3])
local first = tonumber(ARGV[6] or '0')
local page = redis.call('ZRANGE', idx, first, first + tonumber(ARGV[4]) - 1, 'WITHSCORES')
local ids = {}
for i = 1, #page, 2 do
  if tonumber(page[i + 1]) >= before then break end
  ids[#ids + 1] = page[i]
end
local kept = 0
for _, id in ipairs(ids) do
  local k = job_key(id)
  local h = redis.call('HMGET', k, 'idempotency_key', 'company_id', 'wf')
  if h[3] and redis.call('EXISTS', PREFIX .. 'wf:' .. h[3]) == 1 then
    kept = kept + 1
  else
    if h[1] then
      -- Its key, and the key a job enqueued before keys were namespaced by company
      -- used (`idem:<key>`): each deleted only while it still names this job.
      for _, ikey in ipairs({idem_key(h[2], h[1]), PREFIX .. 'idem:' .. h[1]}) do
        if redis.call('GET', ikey) == id then redis.call('DEL', ikey) end
      end
    end
    redis.call('DEL', k)
    redis.call('ZREM', idx, id)
  end
end
if #ids > kept then
  emit(events, 'jobs.pruned', '', '', '', ARGV[5], now, '{"count":' .. (#ids - kept) .. '}')
end
return {#ids - kept, kept}
