-- _analytics.lua: per-type performance buckets, written by the transition scripts.
-- Prepended (before _lib.lua) to every script by fleetd/backend/scripts.py; not a script
-- itself. fleetd/analytics reads what it writes (docs/OPERATIONS.md, "Analytics").
--
-- A script gathers the figures of one call in an accumulator (an_new) and writes them at
-- its end (an_flush) with one HINCRBY per distinct field and period, so a batch of 100
-- jobs of one type costs ~12 commands, not 4 per job. Keys (built from the prefix, like
-- job keys, so they share the namespace's Cluster slot):
--   an:m:<minute since epoch>  hash, expires AN_MINUTE_TTL s after its last write
--   an:h:<hour since epoch>    hash, expires AN_HOUR_TTL s after its last write
--   fields "<kind>\n<type>\n<company>" (type and company hold no control characters;
--   no company is ''), kinds:
--     r<k>, w<k>     run time (start -> end) / wait time (due -> start) histogram
--                    bucket k: 0 holds [0, 1) ms, k >= 1 holds [2^((k-1)/4), 2^(k/4)) ms;
--                    both recorded when an attempt ends (start = the claim)
--     rs, ws         run / wait milliseconds summed (means, the capacity planner)
--     ok, retry, fail  attempts that completed / failed and will retry / failed for good
--     in             jobs enqueued (arrivals)
--   an:slow:<hour>:<n>:<company>:<type>  zset job id -> run ms: the AN_SLOWEST slowest
--     attempts of that type and company finished in that hour (n: the company's length
--     in bytes, as for idempotency keys)
-- and in the job hash `an_due` (see an_claimed).
-- fleetd/analytics/histogram.py mirrors the bucket rule and these constants.

-- Scripts(analytics=False) replaces this line (the benchmark's "without" half).
local AN_ENABLED = true
local AN_PREFIX = ARGV[1]
-- Buckets per doubling: neighbouring bounds differ by 2^(1/4) = 1.19, so an estimate
-- at a bucket's geometric middle is within 2^(1/8) - 1 = 9.05 % of any value in it.
local AN_PER_OCTAVE = 4
-- The last bucket starts at 2^(159/4) ms (~30 years): nothing runs longer.
local AN_MAX_BUCKET = 160
local AN_MINUTE_MS, AN_HOUR_MS = 60000, 3600000
-- Minute buckets serve the last hour; 2 hours leaves room for a reader's clock. Hour
-- buckets serve the last week; 8 days keeps the oldest hour of a week whole.
local AN_MINUTE_TTL, AN_HOUR_TTL = 7200, 8 * 86400
-- Slowest attempts kept per type, company and hour.
local AN_SLOWEST = 5
local AN_LOG2 = math.log(2)

local function an_bucket(ms)
  if ms < 1 then return 0 end
  local k = math.floor(AN_PER_OCTAVE * math.log(ms) / AN_LOG2) + 1
  if k > AN_MAX_BUCKET then return AN_MAX_BUCKET end
  return k
end

local function an_new()
  return {n = {}, slow = {}, any = false}
end

local function an_add(acc, kind, jtype, company, by)
  local f = kind .. '\n' .. (jtype or '') .. '\n' .. (company or '')
  acc.n[f] = (acc.n[f] or 0) + by
  acc.any = true
end

-- One time sample: its histogram bucket and its share of the sum.
local function an_time(acc, kind, jtype, company, ms)
  an_add(acc, kind .. an_bucket(ms), jtype, company, 1)
  an_add(acc, kind .. 's', jtype, company, ms)
end

-- A job about to be claimed (job hash key k) for attempt `attempt`: remember when that
-- attempt fell due, in the job hash's `an_due` ("<attempt>:<ms>"), for an_finished.
-- Due is the later of updated_at (enqueue, retry promotion, requeue by reap, reset)
-- and run_at (a delayed first attempt), read before the claim overwrites them. A job
-- released unstarted (release.lua gives the attempt back) keeps the due time of its
-- first claim, so its wait counts once, whole. A retry promoted by this very claim
-- counts from its promotion.
local function an_claimed(k, attempt, now)
  if not AN_ENABLED then return end
  local h = redis.call('HMGET', k, 'updated_at', 'run_at', 'an_due')
  local mark = tostring(attempt) .. ':'
  if h[3] and string.sub(h[3], 1, #mark) == mark then return end
  local due = math.max(tonumber(h[1]) or now, tonumber(h[2]) or 0)
  redis.call('HSET', k, 'an_due', mark .. string.format('%.0f', math.min(due, now)))
end

-- A running attempt that ended with `outcome` (ok, retry, fail) at `now`: its wait
-- (due -> start) and run time (start -> now), and a candidate for the slowest of its hour.
local function an_finished(acc, k, id, jtype, company, outcome, now)
  if not AN_ENABLED then return end
  an_add(acc, outcome, jtype, company, 1)
  local h = redis.call('HMGET', k, 'started_at', 'an_due')
  local started = tonumber(h[1])
  if not started then return end
  if h[2] then
    local due = tonumber(string.match(h[2], ':(%d+)$'))
    if due then an_time(acc, 'w', jtype, company, math.max(started - due, 0)) end
  end
  local ms = math.max(now - started, 0)
  an_time(acc, 'r', jtype, company, ms)
  local c = company or ''
  local g = #c .. ':' .. c .. ':' .. (jtype or '')
  local list = acc.slow[g]
  if not list then list = {}; acc.slow[g] = list end
  list[#list + 1] = {ms, id}
end

local function an_desc(a, b) return a[1] > b[1] end

-- Write what `acc` gathered into the buckets of `now`'s minute and hour.
local function an_flush(acc, now)
  if not AN_ENABLED or not acc.any then return end
  local hour_n = math.floor(now / AN_HOUR_MS)
  local minute = AN_PREFIX .. 'an:m:' .. string.format('%.0f', math.floor(now / AN_MINUTE_MS))
  local hour = AN_PREFIX .. 'an:h:' .. string.format('%.0f', hour_n)
  for f, by in pairs(acc.n) do
    local v = string.format('%.0f', by)
    redis.call('HINCRBY', minute, f, v)
    redis.call('HINCRBY', hour, f, v)
  end
  redis.call('EXPIRE', minute, AN_MINUTE_TTL)
  redis.call('EXPIRE', hour, AN_HOUR_TTL)
  for g, list in pairs(acc.slow) do
    table.sort(list, an_desc)
    local key = AN_PREFIX .. 'an:slow:' .. string.format('%.0f', hour_n) .. ':' .. g
    local args = {}
    for i = 1, math.min(#list, AN_SLOWEST) do
      args[#args + 1] = list[i][1]; args[#args + 1] = list[i][2]
    end
    redis.call('ZADD', key, unpack(args))
    redis.call('ZREMRANGEBYRANK', key, 0, -(AN_SLOWEST + 1))
    redis.call('EXPIRE', key, AN_HOUR_TTL)
  end
end

-- A new job (enqueue_one): counted in `batch.an` when the caller batches, else written now.
local function an_enqueued(batch, row, now)
  if not AN_ENABLED then return end
  if batch then
    an_add(batch.an, 'in', row.type, row.company_id, 1)
    return
  end
  local acc = an_new()
  an_add(acc, 'in', row.type, row.company_id, 1)
  an_flush(acc, now)
end
