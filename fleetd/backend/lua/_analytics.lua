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
--                    both recorded when an attempt ends (start = the claim; wait of
--                    first attempts only, see an_finished)
--     rs, ws         run / wait milliseconds summed (means, the capacity planner)
--     ok, retry, fail  attempts that completed / failed and will retry / failed for good
--     in             jobs enqueued (arrivals)
--     inb            their payloads' bytes, minute buckets only (the stored data's JSON text: the payload
--                    anomaly alert, fleetd.runtime.alert_companies)
--   an:q:<minute since epoch>  hash, expires AN_MINUTE_TTL s after its last write:
--     per named queue the jobs that completed / failed for good, fields
--     "ok\n<queue>" and "fail\n<queue>" (read by fleetd.jobs.queue_figures)
--   an:slow:<hour>:<n>:<company>:<type>  zset job id -> run ms: the AN_SLOWEST slowest
--     attempts of that type and company finished in that hour (n: the company's length
--     in bytes, as for idempotency keys)
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

-- An accumulator: per group (its field tail "<type>\n<company>") the counts by kind
-- (`n`), the run and wait histograms by bucket number (`r`, `w`) and the slowest
-- attempts seen. Counting by kind in a group's table, and building each
-- field name once at the flush, keeps the per-job work to table updates (measured
-- ~2.5x cheaper than a string concatenation per count).
local function an_new()
  return {g = {}, q = {}, any = false}
end

local function an_group(acc, jtype, company)
  -- A batch is mostly one type: the previous job's group is checked first.
  local last = acc.last
  if last and last.t == jtype and last.c == company then return last end
  local tail = (jtype or '') .. '\n' .. (company or '')
  local g = acc.g[tail]
  if not g then
    local c = company or ''
    g = {n = {}, r = {}, w = {}, slow = {}, slow_min = 0, t = jtype, c = company,
      key = #c .. ':' .. c .. ':' .. (jtype or '')}
    acc.g[tail] = g
    acc.any = true
  end
  acc.last = g
  return g
end

local function an_count(g, kind, by)
  g.n[kind] = (g.n[kind] or 0) + by
end

-- A job of named queue `queue` (the job hash's field: false or '' for `default`) that
-- ended `kind` ('ok' or 'fail'): counted per queue (an:q:<minute>).
local function an_queue(acc, queue, kind)
  if not AN_ENABLED then return end
  if not queue or queue == '' then queue = 'default' end
  local q = acc.q[queue]
  if not q then
    q = {}
    acc.q[queue] = q
    acc.any = true
  end
  q[kind] = (q[kind] or 0) + 1
end

-- Keep the AN_SLOWEST longest attempts of a group: replace the shortest kept one.
local function an_slow(g, ms, id)
  local list = g.slow
  if #list < AN_SLOWEST then
    list[#list + 1] = {ms, id}
  elseif ms > g.slow_min then
    local low = 1
    for i = 2, #list do if list[i][1] < list[low][1] then low = i end end
    list[low] = {ms, id}
  else
    return
  end
  local m = list[1][1]
  for i = 2, #list do if list[i][1] < m then m = list[i][1] end end
  g.slow_min = m
end

-- A running attempt that ended with `outcome` (ok, retry, fail) at `now`: its run time
-- (start -> now) and a candidate for the slowest of its hour, and for a first attempt
-- its wait: from due (the later of created_at and run_at, both untouched since
-- enqueue but for the retry's run_at fail.lua sets first) to its start. A job claimed
-- ahead and released unstarted is back at attempt 1 when claimed again, so its wait
-- counts once, whole, to its last claim. Later attempts have no wait here: a retry's
-- is its backoff, by design, and the time it became due is not kept (promote drops
-- run_at).
-- `h`, when the caller's own HMGET read them, holds AN_FIELDS' values from h[at] on
-- (complete.lua does: one command less per job); else they are read here.
-- A job that completed or failed for good is counted in its queue's figures too.
local AN_FIELDS = {'started_at', 'attempts', 'created_at', 'run_at', 'queue'}
local function an_finished(acc, k, id, jtype, company, outcome, now, h, at)
  if not AN_ENABLED then return end
  local g = an_group(acc, jtype, company)
  an_count(g, outcome, 1)
  if not h then h, at = redis.call('HMGET', k, unpack(AN_FIELDS)), 1 end
  if outcome ~= 'retry' then an_queue(acc, h[at + 4], outcome) end
  local started = tonumber(h[at])
  if not started then return end
  if h[at + 1] == '1' then
    -- A run_at after the start is the retry's due time fail.lua just set, not ours.
    local run_at = tonumber(h[at + 3]) or 0
    if run_at > started then run_at = 0 end
    local wait = started - math.max(tonumber(h[at + 2]) or started, run_at)
    if wait < 0 then wait = 0 end
    local b = an_bucket(wait)
    g.w[b] = (g.w[b] or 0) + 1
    an_count(g, 'ws', wait)
  end
  local ms = now - started
  if ms < 0 then ms = 0 end
  local b = an_bucket(ms)
  g.r[b] = (g.r[b] or 0) + 1
  an_count(g, 'rs', ms)
  an_slow(g, ms, id)
end

-- Write what `acc` gathered into the buckets of `now`'s minute and hour. A hash gets
-- its TTL when a write creates a field (HINCRBY answers the increment itself): its
-- first write does, and a batch that only adds to existing fields saves the EXPIREs.
-- A group's slowest go in only when one beats the shortest kept (one ZRANGE, usually
-- all a batch costs there once the hour has its AN_SLOWEST).
local function an_flush(acc, now)
  if not AN_ENABLED or not acc.any then return end
  local hour_n = string.format('%.0f', math.floor(now / AN_HOUR_MS))
  local minute = AN_PREFIX .. 'an:m:' .. string.format('%.0f', math.floor(now / AN_MINUTE_MS))
  local hour = AN_PREFIX .. 'an:h:' .. hour_n
  local new_m, new_h = false, false
  local function add(f, by, minute_only)
    local v = string.format('%.0f', by)
    if redis.call('HINCRBY', minute, f, v) == by then new_m = true end
    if minute_only then return end
    if redis.call('HINCRBY', hour, f, v) == by then new_h = true end
  end
  for tail, g in pairs(acc.g) do
    -- `inb` (payload bytes) is read per minute only (the payload anomaly alert).
    for kind, by in pairs(g.n) do add(kind .. '\n' .. tail, by, kind == 'inb') end
    for b, by in pairs(g.r) do add('r' .. b .. '\n' .. tail, by) end
    for b, by in pairs(g.w) do add('w' .. b .. '\n' .. tail, by) end
    if #g.slow > 0 then
      local key = AN_PREFIX .. 'an:slow:' .. hour_n .. ':' .. g.key
      -- The AN_SLOWEST-th longest kept, if there are that many.
      local kept = redis.call('ZRANGE', key, -AN_SLOWEST, -AN_SLOWEST, 'WITHSCORES')
      local floor = tonumber(kept[2]) or -1
      local args = {}
      for i = 1, #g.slow do
        if g.slow[i][1] > floor then
          args[#args + 1] = g.slow[i][1]; args[#args + 1] = g.slow[i][2]
        end
      end
      if #args > 0 then
        redis.call('ZADD', key, unpack(args))
        -- ZPOPMIN, not ZREMRANGEBYRANK: the ACL of docs/OPERATIONS.md grants it.
        local extra = redis.call('ZCARD', key) - AN_SLOWEST
        if extra > 0 then redis.call('ZPOPMIN', key, extra) end
        redis.call('EXPIRE', key, AN_HOUR_TTL)
      end
    end
  end
  local queues = AN_PREFIX .. 'an:q:' .. string.format('%.0f', math.floor(now / AN_MINUTE_MS))
  local new_q = false
  for name, q in pairs(acc.q) do
    for kind, by in pairs(q) do
      if redis.call('HINCRBY', queues, kind .. '\n' .. name, by) == by then new_q = true end
    end
  end
  if new_q then redis.call('EXPIRE', queues, AN_MINUTE_TTL) end
  if new_m then redis.call('EXPIRE', minute, AN_MINUTE_TTL) end
  if new_h then redis.call('EXPIRE', hour, AN_HOUR_TTL) end
end

-- A new job (enqueue_one): counted in `batch.an` when the caller batches, else written now.
local function an_enqueued(batch, row, now)
  if not AN_ENABLED then return end
  local acc = batch and batch.an or an_new()
  local g = an_group(acc, row.type, row.company_id)
  an_count(g, 'in', 1)
  an_count(g, 'inb', #(row.data or ''))
  if not batch then an_flush(acc, now) end
end

-- A schedule's occurrence due at `due_ms` fired at `now`: its lateness (fire - due) in
-- the schedule hash `key` and in the scheduler's `stats` hash, as histogram fields
-- `late:<bucket>` (same buckets as run times) and their sum `late_ms`.
local function an_fired(key, stats, due_ms, now)
  if not AN_ENABLED then return end
  local late = now - tonumber(due_ms)
  if late < 0 then late = 0 end
  local f = 'late:' .. an_bucket(late)
  redis.call('HINCRBY', key, f, 1)
  redis.call('HINCRBY', key, 'late_ms', string.format('%.0f', late))
  redis.call('HINCRBY', stats, f, 1)
end
