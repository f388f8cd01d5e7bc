-- _lib.lua: helpers that fleetd/scripts.py prepends to every script (not a script itself).
--
-- Conventions shared by every script:
--   ARGV[1]  key prefix, "fleetd:{<namespace>}:"; per-job keys are built from it and carry
--            the same Cluster hash tag as the KEYS, so they live in the same slot.
--   ARGV[2]  the events streams' caps (MAXLEN ~): "<events maxlen>:<company maxlen>" (a
--            company's own stream, 0 = none kept; fleetd.backend.scripts builds it).
-- Times are Redis server time in milliseconds: hosts' clocks never decide anything.
-- Event payloads ("data") arrive from Python already JSON-encoded, so no message text is
-- ever escaped by hand. Job rows travel through the codec below (cjson).

local unpack = unpack or table.unpack
local PREFIX = ARGV[1]
local MAXLEN, COMPANY_MAXLEN = string.match(ARGV[2], '^(%d+):?(%d*)$')
COMPANY_MAXLEN = tonumber(COMPANY_MAXLEN) or 0
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

local function has_company(company)
  return type(company) == 'string' and company ~= ''
end

-- Each company's own replay stream, `events:company:<company>` (fleetd.runtime.replay): the
-- events of that company only, under the SAME ids as in `events`, capped by
-- COMPANY_MAXLEN (~), so another company's flood never trims it. Each entry also holds
-- `prev`, the id of the entry before it in this stream ('' = the first since the key
-- was created): the oldest entry's `prev` is then exactly the last id trimmed, and a
-- replay knows whether the stream lost anything after its cursor, or starts after it.
-- Idle for COMPANY_EVENTS_TTL_S, the key expires: a company's stream lives while it
-- produces events and an hour beyond — longer than a dashboard's reconnects after a
-- network blip or a deploy, while at most COMPANY_MAXLEN entries (~300 B each) stay in
-- memory only for the companies active within the hour (a day would hold them for
-- every company of a day: thousands of tenants, gigabytes). A cursor older than the key falls back to the
-- shared stream (today's behaviour there).
local COMPANY_EVENTS_TTL_S = 3600
-- The last id this script call wrote per company stream: one XREVRANGE and one EXPIRE
-- per company and call, not per event (an enqueue of 1,000 jobs of one company reads
-- it once; time does not move within a call).
local company_last = {}

-- Stream ids "<ms>-<seq>" of up to 20 digits each: compared as numbers would lose
-- digits beyond 2^53, so by length, then text.
local function id_after(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if not bm then return true end
  if am ~= bm then
    if #am ~= #bm then return #am > #bm end
    return am > bm
  end
  if #as ~= #bs then return #as > #bs end
  return as > bs
end

-- Only the companies whose feeds are watched get a stream of their own: `events:watched`
-- (zset company -> until ms) is kept by the event hubs of the daemons serving a
-- subscriber of that company (fleetd.runtime.events, EventHub.watch), up to an hour
-- after its last one left. A company nobody watches costs one ZSCORE per script call,
-- not a second XADD per event; replays are for feeds that reconnect.
local company_watched = {}
local function watched(company, ts)
  local till = company_watched[company]
  if till == nil then
    till = tonumber(redis.call('ZSCORE', PREFIX .. 'events:watched', company) or 0)
    company_watched[company] = till
  end
  return till >= tonumber(ts)
end

local function company_emit(company, id, fields)
  local ck = PREFIX .. 'events:company:' .. company
  local prev = company_last[ck]
  local fresh = prev == nil  -- first write of this call: (re)start the expiry once
  if fresh then
    local top = redis.pcall('XREVRANGE', ck, '+', '-', 'COUNT', 1)
    prev = (type(top) == 'table' and top[1] and top[1][1]) or ''
    if type(top) == 'table' and top.err then redis.call('DEL', ck) end  -- not a stream
  end
  -- The shared stream's ids only grow, so `id` follows `prev` — unless `events` was
  -- deleted and Redis' clock is now behind `prev`. Then this stream starts over: a
  -- cursor from before falls back to the shared stream instead of hitting an XADD error
  -- that would abort the transition half-written.
  if prev ~= '' and not id_after(id, prev) then
    redis.call('DEL', ck)
    prev, fresh = '', true
  end
  fields[2] = prev
  redis.call('XADD', ck, 'MAXLEN', '~', COMPANY_MAXLEN, id, unpack(fields))
  if fresh then redis.call('EXPIRE', ck, COMPANY_EVENTS_TTL_S) end
  company_last[ck] = id
end

local function emit(events, etype, id, jtype, company, status, ts, data)
  local fields = {'prev', '', 'type', etype, 'job_id', id, 'job_type', jtype or '',
    'company_id', company or '', 'status', status, 'ts', int(ts), 'data', data or '{}'}
  local eid = redis.call('XADD', events, 'MAXLEN', '~', MAXLEN, '*', unpack(fields, 3))
  if COMPANY_MAXLEN > 0 and has_company(company) and watched(company, ts) then
    company_emit(company, eid, fields)
  end
end

-- Ready jobs: one zset per "part" (a job type and a company), `ready:<part>`, scored
-- queue_score (strict priority, FIFO within one); the `queue` zset indexes the non-empty
-- parts, scored (20 - priority of the part's head) * SEQ_SPAN + a turn number (a value of
-- the seq counter): the lowest score is the part whose turn it is at the highest
-- priority. The parts of a company a claim served take new turn numbers, behind the
-- other parts of their priority (claim.lua `refile`): round robin between companies
-- within a priority, then between a company's parts (fair share), and a claim skips
-- the parts of types its daemon has no handler for or whose limits are full without
-- looking at their jobs. The index score is a hint that
-- claim.lua corrects when a cancel left it stale. Parts are spelled
-- `<bytes of type>:<type>:<company>` (no company = ''), so no type and company can
-- spell another pair.
local function part_of(jtype, company)
  jtype = jtype or ''
  return #jtype .. ':' .. jtype .. ':' .. (company or '')
end

-- Named queues (fleetd.jobs.queues): a job's queue is its hash field `queue` (absent =
-- the default queue). The default queue keeps the keys of before: index `queue` (the
-- KEYS entry scripts pass as `queue`), parts `ready:<part>`; queue <q> has its own index
-- `queue:<q>` and parts `rq:<q>:<part>` (a queue name holds no ':'), and is listed in
-- the set `queues`. `jq` below is a queue name; nil, false, '' and 'default' are the
-- default queue.
local function is_default_queue(jq)
  return not jq or jq == '' or jq == 'default'
end

local function queue_index(queue, jq)
  if is_default_queue(jq) then return queue end
  return PREFIX .. 'queue:' .. jq
end

local function part_key(part, jq)
  if is_default_queue(jq) then return PREFIX .. 'ready:' .. part end
  return PREFIX .. 'rq:' .. jq .. ':' .. part
end

local function note_queue(jq)
  if not is_default_queue(jq) then redis.call('SADD', PREFIX .. 'queues', jq) end
end

-- A job becomes ready in its part of its queue; the part joins the queue's index (or
-- moves up a priority). `jq` nil: read from the job hash.
local function ready_add(queue, id, prio, seq, jtype, company, jq)
  if jq == nil then jq = redis.call('HGET', job_key(id), 'queue') end
  local part = part_of(jtype, company)
  local score = queue_score(prio, seq)
  redis.call('ZADD', part_key(part, jq), score, id)
  redis.call('ZADD', queue_index(queue, jq), 'LT', score, part)
  note_queue(jq)
end

-- A ready job leaves its part (cancel); an emptied part leaves the index.
local function ready_remove(queue, id, jtype, company)
  local jq = redis.call('HGET', job_key(id), 'queue')
  local part = part_of(jtype, company)
  local pk = part_key(part, jq)
  if redis.call('ZREM', pk, id) == 1 and redis.call('EXISTS', pk) == 0 then
    redis.call('ZREM', queue_index(queue, jq), part)
  end
end

-- A company's pending jobs that are in no part: waiting for their run_at in `delayed`,
-- or workflow nodes waiting for their parents. The zset `quota:later:<company>` (member
-- the job id, score its ms) holds them so that `company_max_pending` counts them
-- (quota_verdict): a part's ZCARD sees only ready jobs. Every way out of that state
-- (promote, a workflow release, a cancel, a skip) removes the id unconditionally, and a
-- set's ZADD / ZREM are idempotent: no path can count a job twice or leave a count
-- behind. A job of no company is in none.
local function later_key(company)
  return PREFIX .. 'quota:later:' .. company
end

local function later_add(company, id, now)
  if has_company(company) then redis.call('ZADD', later_key(company), now, id) end
end

local function later_remove(company, id)
  if has_company(company) then redis.call('ZREM', later_key(company), id) end
end

-- Move due jobs from `delayed` to the queue. A retrying job becomes pending again; a
-- job that was only waiting for its run_at already is pending. Returns the count moved.
local function promote(queue, delayed, seq_key, pending_idx, retrying_idx, now)
  local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, PROMOTE_LIMIT)
  for _, id in ipairs(due) do
    local k = job_key(id)
    local h = redis.call('HMGET', k, 'priority', 'status', 'created_at', 'type', 'company_id',
      'queue')
    redis.call('ZREM', delayed, id)
    if h[1] then
      later_remove(h[5], id)
      if h[2] == 'retrying' then
        redis.call('ZREM', retrying_idx, id)
        redis.call('ZADD', pending_idx, h[3], id)
        redis.call('HSET', k, 'status', 'pending', 'updated_at', int(now))
        redis.call('HDEL', k, 'run_at')  -- the backoff is over; run_at is a caller's field
      end
      local seq = redis.call('INCR', seq_key)
      ready_add(queue, id, h[1], seq, h[4], h[5], h[6] or '')
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
-- jobs) and loses its lease fields, plus any `extra` fields named, in one HDEL. The
-- concurrency slots it held (claim.lua, `held`: [[field, limit], ...]) are given back;
-- a slot of a full limit wakes a fetcher for the job it lets through.
local function drop_lease(leases, id, k, ...)
  redis.call('ZREM', leases, id)
  local held = redis.call('HGET', k, 'held')
  if held then
    local running = PREFIX .. 'limits:running'
    for _, slot in ipairs(cjson.decode(held)) do
      if redis.call('HINCRBY', running, slot[1], -1) + 1 >= slot[2] then
        local wake = PREFIX .. 'wake'
        redis.call('LPUSH', wake, '1')
        redis.call('LTRIM', wake, 0, 63)
      end
    end
  end
  redis.call('HDEL', k, 'lease', 'cancel_requested', 'held', ...)
end

-- codec: job rows between Python and Lua -------------------------------------------
-- One JSON object per job with named fields, every value a string (Lua numbers are
-- doubles printed with 14 digits: a large integer sent as a number would come back as
-- 1e+15). fleetd/backend/codec.py is the Python side: JobRow for ROW_STORED (plus id and
-- run_at), ClaimedJob for CLAIMED. A field added there and here needs no other change.

-- Fields of an enqueue row stored in the job hash under the same name when present. Not
-- listed: `id` (the key) and `run_at` (stored only while in the future: enqueue_one).
local ROW_STORED = {'type', 'data', 'priority', 'max_retries', 'timeout', 'company_id',
  'user_id', 'tags', 'idempotency_key', 'sealed', 'queue'}
-- Job hash fields a claimed job carries to its worker (with `id`), named as stored.
local CLAIMED = {'type', 'data', 'priority', 'attempts', 'retry_count', 'max_retries',
  'timeout', 'company_id', 'user_id', 'tags', 'created_at', 'sealed', 'wf_in'}

-- cjson decodes JSON null to this value, which is truthy: it must read as absent.
local NULL = cjson.null

-- A row from its JSON text. Python never sends null (it leaves absent fields out);
-- store_row clears a stray one before anything reads the row's optional fields.
local function decode_row(text)
  return cjson.decode(text)
end

-- The HSET arguments of a new job from its row: fixed fields, then each ROW_STORED
-- field present; a NULL one is cleared from the row. Numeric for loops, not ipairs, and
-- no type() call: measured 0.70 us a row against 0.83 (ipairs) and 2.2 (type) in
-- redis-server 7.0.
local function store_row(row, now)
  local f = {'id', row.id, 'status', 'pending', 'created_at', now, 'updated_at', now,
    'retry_count', 0, 'attempts', 0}
  for i = 1, #ROW_STORED do
    local name = ROW_STORED[i]
    local value = row[name]
    if value == NULL then
      row[name] = nil
    elseif value then
      f[#f + 1] = name; f[#f + 1] = value
    end
  end
  return f
end

-- The CLAIMED fields of job `id` as a table (absent fields left out) and its status;
-- nil when the job hash is gone.
local function read_claimed(k, id)
  local h = redis.call('HMGET', k, 'status', unpack(CLAIMED))
  if not h[1] then return nil end
  local job = {id = id}
  for i = 1, #CLAIMED do
    local value = h[i + 1]
    if value then job[CLAIMED[i]] = value end
  end
  return job, h[1]
end

-- Claimed jobs (read_claimed tables) as two JSON arrays in the same order: their fields
-- but `data`, and their data spliced in raw (it is stored as JSON text). Measured per
-- job: 1.74 us of Lua, as for one array with data as an escaped string, while Python
-- parses 3.4 us instead of 4.7 (data parsed once per claim, nothing unescaped).
-- cjson encodes an empty table as {}, so an empty claim is spelled '[]'.
local function encode_claimed(jobs)
  if #jobs == 0 then return '[]', '[]' end
  local data = {}
  for i = 1, #jobs do
    data[i] = jobs[i].data or '{}'
    jobs[i].data = nil
  end
  return cjson.encode(jobs), '[' .. table.concat(data, ',') .. ']'
end

-- The key of an idempotency key, namespaced by company with a length prefix: company
-- ids may contain ':', and `acme` + `eu:order-1` must not meet `acme:eu` + `order-1`.
-- No company (platform admin) is the empty company, which no tenant can have.
local function idem_key(company, key)
  company = company or ''
  return PREFIX .. 'idem:' .. #company .. ':' .. company .. ':' .. key
end

-- Enqueue one job: the body of enqueue.lua, shared with schedule_fire.lua so a schedule
-- enqueues through the very same code, inside its own script. `row` is a decoded row
-- (decode_row); `seq` is the last sequence number the caller used. `batch` (optional,
-- new_batch) gathers the queue and pending-index entries of many jobs for one ZADD
-- each (flush_batch) instead of two per job; nil adds them at once. Returns: the job id
-- (the existing one for a duplicate idempotency key), its status, 1 if duplicate (the
-- key was seen, or the id is stored already) else 0, its creation ms, the caller's new
-- last sequence number, and 1 if the job is ready now (wake a fetcher).
local function enqueue_one(queue, delayed, pending_idx, events, now, seq, row, batch)
  local f = store_row(row, now)
  local id, prio, run_at = row.id, row.priority, row.run_at
  -- A job id already stored is a replay of a job that landed (fleetd.spool sends its
  -- rows again after a crash between Redis and marking them replayed): already done.
  local landed = redis.call('HMGET', job_key(id), 'status', 'created_at')
  if landed[1] then
    return id, landed[1], 1, landed[2] or now, seq, 0
  end
  if row.idempotency_key then
    local ikey = idem_key(row.company_id, row.idempotency_key)
    local existing = redis.call('GET', ikey)
    if existing then
      local h = redis.call('HMGET', job_key(existing), 'status', 'created_at')
      return existing, h[1] or 'pending', 1, h[2] or now, seq, 0
    end
    redis.call('SET', ikey, id)
  end
  an_enqueued(batch, row, now)
  local due = tonumber(run_at)
  local evdata = '{"priority":' .. prio .. '}'
  local ready = 0
  if due and due > now then
    f[#f + 1] = 'run_at'; f[#f + 1] = run_at
    redis.call('ZADD', delayed, run_at, id)
    later_add(row.company_id, id, now)
    note_queue(row.queue)  -- listed (fleetd queues list) before its first job is ready
    evdata = '{"priority":' .. prio .. ',"run_at":' .. run_at .. '}'
  else
    seq = seq + 1
    if batch then
      local part = part_of(row.type, row.company_id)
      local jq = row.queue or ''
      local bk = jq .. '/' .. part
      local q = batch.parts[bk]
      local score = queue_score(prio, seq)
      if not q then
        q = {}
        batch.parts[bk] = q
        batch.heads[bk] = score
        batch.where[bk] = {part, jq}
      elseif tonumber(score) < tonumber(batch.heads[bk]) then
        batch.heads[bk] = score
      end
      q[#q + 1] = score; q[#q + 1] = id
    else
      ready_add(queue, id, prio, seq, row.type, row.company_id, row.queue or '')
    end
    ready = 1
  end
  redis.call('HSET', job_key(id), unpack(f))
  if batch then
    local p = batch.pending
    p[#p + 1] = now; p[#p + 1] = id
  else
    redis.call('ZADD', pending_idx, now, id)
  end
  emit(events, 'job.enqueued', id, row.type, row.company_id, 'pending', now, evdata)
  return id, 'pending', 0, now, seq, ready
end

-- Members one batched ZADD takes: 2 values each, well inside Lua's stack for unpack
-- (LUAI_MAXCSTACK, 8000 in Redis's Lua 5.1).
local ZADD_BATCH = 500

-- An empty batch for enqueue_one: {parts = {qpart = {score, id, ...}}, heads = {qpart =
-- lowest score}, where = {qpart = {part, queue name}}, pending = {ms, id, ...}, an =
-- analytics accumulator (_analytics.lua)}; a qpart is '<queue name>/<part>'.
local function new_batch()
  return {parts = {}, heads = {}, where = {}, pending = {}, an = an_new()}
end

local function zadd_all(key, args)
  local step = ZADD_BATCH * 2
  for i = 1, #args, step do
    redis.call('ZADD', key, unpack(args, i, math.min(i + step - 1, #args)))
  end
end

-- Add a batch's entries: each call of a ZADD from Lua costs ~2 us here, one member of a
-- larger ZADD ~0.3 us.
local function flush_batch(queue, pending_idx, batch)
  for bk, args in pairs(batch.parts) do
    local part, jq = batch.where[bk][1], batch.where[bk][2]
    zadd_all(part_key(part, jq), args)
    redis.call('ZADD', queue_index(queue, jq), 'LT', batch.heads[bk], part)
    note_queue(jq)
  end
  zadd_all(pending_idx, batch.pending)
  an_flush(batch.an, now_ms())
end

-- Entries of `quota:later:<company>` looked at, oldest first, before a company is
-- refused for its pending cap (later_heal).
local HEAL_LIMIT = 1000

-- Entries of a company's `quota:later` that no longer wait — moved on by a version
-- that did not keep the set (a downgrade, then an upgrade), or whose job is gone — are
-- removed from its oldest `limit`; returns how many. Run only when the company would be
-- refused, so a stale entry never refuses work and costs nothing otherwise.
local function later_heal(company, limit)
  local key = later_key(company)
  local gone = {}
  for _, id in ipairs(redis.call('ZRANGE', key, 0, limit - 1)) do
    local h = redis.call('HMGET', job_key(id), 'status', 'type', 'queue')
    if h[1] ~= 'pending'
        or redis.call('ZSCORE', part_key(part_of(h[2], company), h[3]), id) then
      gone[#gone + 1] = id
    end
  end
  if #gone > 0 then redis.call('ZREM', key, unpack(gone)) end
  return #gone
end

-- The companies' quotas at the door (fleetd.config.limit_sections.Limits.encode_quota,
-- decoded: `q`) checked for the job rows `rows` a call adds (enqueue, wf_submit,
-- schedule_fire): the refusal reply when a company of `rows` is over a quota, else nil:
-- then every company's jobs of this call are counted against its enqueue rate (a fixed
-- window per company). A refused company is counted in `quota:refused` for the alert.
-- `per`: company → {n = its jobs in the call, types = set of their types}
-- (quota_check.lua passes it summed for a call sent in several parts).
local function quota_verdict(q, per, now)
  local refused, counted = {-1}, {}
  for company, e in pairs(per) do
    local why, limit, retry = nil, 0, 1000
    if q.pending > 0 then
      for _, t in ipairs(q.types) do e.types[t] = true end
      local waiting = 0
      local qs = redis.call('SMEMBERS', PREFIX .. 'queues')
      qs[#qs + 1] = ''
      for t in pairs(e.types) do
        for _, jq in ipairs(qs) do
          waiting = waiting + redis.call('ZCARD', part_key(part_of(t, company), jq))
        end
      end
      waiting = waiting + redis.call('ZCARD', later_key(company))
      if waiting + e.n > q.pending then
        waiting = waiting - later_heal(company, HEAL_LIMIT)
        if waiting + e.n > q.pending then why, limit = 'pending', q.pending end
      end
    end
    local rate_key
    if not why and q.rate[1] > 0 then
      local ms = q.rate[2]
      local window = math.floor(now / ms)
      rate_key = PREFIX .. 'quota:rate:' .. window .. ':' .. company
      local used = tonumber(redis.call('GET', rate_key) or 0)
      if used + e.n > q.rate[1] then
        why, limit, retry = 'rate', q.rate[1], (window + 1) * ms - now
      end
    end
    if why then
      redis.call('HINCRBY', PREFIX .. 'quota:refused', company, 1)
      refused[#refused + 1] = company
      refused[#refused + 1] = why
      refused[#refused + 1] = limit
      refused[#refused + 1] = int(retry)
    elseif rate_key then
      counted[#counted + 1] = {rate_key, e.n}
    end
  end
  if #refused > 1 then return refused end
  for _, c in ipairs(counted) do
    redis.call('INCRBY', c[1], c[2])
    redis.call('PEXPIRE', c[1], q.rate[2] * 2)
  end
  return nil
end

local function check_quotas(q, rows, now)
  local per = {}
  for i = 1, #rows do
    local c = rows[i].company_id
    if c and c ~= NULL and c ~= '' then
      local e = per[c]
      if not e then
        e = {n = 0, types = {}}
        per[c] = e
      end
      e.n = e.n + 1
      e.types[rows[i].type] = true
    end
  end
  return quota_verdict(q, per, now)
end
