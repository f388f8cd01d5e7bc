-- claim.lua: promote due delayed jobs, then take up to N ready jobs the daemon can run,
-- highest priority first, round robin between companies within a priority and between a
-- company's parts (a job type and a company: _lib.lua, ready_add), FIFO within a part,
-- within the global limits, leasing each to one daemon.
--
-- KEYS[1] queue (the index of parts)  KEYS[2] delayed  KEYS[3] seq
-- KEYS[4] status:pending  KEYS[5] status:retrying
-- KEYS[6] leases (scored by deadline; also the index of processing jobs)
-- KEYS[7] events          KEYS[8] wake
-- ARGV[1] prefix  ARGV[2] events caps  ARGV[3] max jobs  ARGV[4] lease ms
-- ARGV[5] lease token (one per claim call; stored on each job)  ARGV[6] daemon id
-- ARGV[7] the job types the daemon has handlers for, a JSON array; '' = every type
-- ARGV[8] limits (fleetd.jobs.limits.Limits.encode), a JSON object; '' = none:
--   {"t": {type: [concurrency, starts, per ms]}, "c": [concurrency, starts, per ms],
--   "q": {queue: [concurrency, starts, per ms]}} ("c": what every company may; "q": all
--   of a named queue's jobs; 0 = no limit of that kind). Concurrency counts the
--   jobs processing (hash `limits:running`, given back by drop_lease); starts are a
--   sliding log per limit (zset `limits:rate:<t:type | c:company>`).
-- Parts in the hash `quarantines` (fleetd.jobs.quarantine) are skipped.
-- ARGV[9] (optional) the queues served (fleetd.jobs.queues.Served.claim_arg), a JSON
--   array of [name, weight] in this claim's order; '' or absent = the default queue.
--   Weights 0: strict order (each queue in turn takes all it can). Weights: each queue
--   first takes its share of the claim (count * weight / sum), then the order fills the
--   rest. A queue in the set `queues:paused` is not served (one SISMEMBER per queue).
-- Returns {now, next delayed due ms or -1, jobs, data} (encode_claimed): `jobs` a JSON
--   array with per job an object (fleetd.backend.codec.ClaimedJob) of its id and the
--   CLAIMED fields of _lib.lua but data, named as in the job hash, absent ones left out,
--   `attempts` counting this claim; `data` a JSON array of their data, in that order.
local queue, delayed, seq_key = KEYS[1], KEYS[2], KEYS[3]
local pending_idx, retrying_idx = KEYS[4], KEYS[5]
local leases, events, wake = KEYS[6], KEYS[7], KEYS[8]
local count, lease_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local token, worker = ARGV[5], ARGV[6]
-- Index entries a claim reads per page, and pages per scan: the parts it must skip (no
-- handler, limit full) cost a table look-up each; this bounds the script's time (a
-- part deeper than SCAN * MAX_PAGES skipped ones waits for them to drain).
local SCAN = 500
local MAX_PAGES = 8
local MAX_SCANS = 8

local handles = nil
if ARGV[7] ~= '' then
  handles = {}
  for _, t in ipairs(cjson.decode(ARGV[7])) do handles[t] = true end
end
local limits = nil
if ARGV[8] ~= '' then limits = cjson.decode(ARGV[8]) end
local running_key = PREFIX .. 'limits:running'
-- Quarantined parts (quarantine_count.lua): skipped like a full limit, their jobs stay
-- pending. Few or none: one EXISTS per claim, the names read only when there are some.
local held_parts = nil
if redis.call('EXISTS', PREFIX .. 'quarantines') == 1 then
  held_parts = {}
  for _, p in ipairs(redis.call('HKEYS', PREFIX .. 'quarantines')) do held_parts[p] = true end
end

local now = now_ms()
promote(queue, delayed, seq_key, pending_idx, retrying_idx, now)

-- The limits of a part of queue `qname`: a list of {field, concurrency, starts, per ms},
-- and `held`: the JSON its jobs carry, [[field, concurrency], ...] of the concurrency
-- limits (read back by drop_lease), or nil.
local part_limits = {}
local function limits_of(qname, part, jtype, company)
  local cached = qname .. '/' .. part
  local got = part_limits[cached]
  if got then return got end
  got = {}
  if limits then
    local t = limits.t and limits.t[jtype]
    if t then got[#got + 1] = {'t:' .. jtype, t[1], t[2], t[3]} end
    local c = limits.c
    if c and company ~= '' then got[#got + 1] = {'c:' .. company, c[1], c[2], c[3]} end
    local q = limits.q and limits.q[qname]
    if q then got[#got + 1] = {'q:' .. qname, q[1], q[2], q[3]} end
    local held = {}
    for i = 1, #got do
      if got[i][2] > 0 then held[#held + 1] = {got[i][1], got[i][2]} end
    end
    if #held > 0 then got.held = cjson.encode(held) end
  end
  part_limits[cached] = got
  return got
end

-- Room left per limit field in this call: read once, then counted down locally; the
-- starts are written once per field at the end (count_starts).
local avail = {}
local started = {}

-- How many more jobs of a part the limits let start now.
local function room(lims)
  local r = count
  for i = 1, #lims do
    local l = lims[i]
    local a = avail[l[1]]
    if a == nil then
      a = count
      if l[2] > 0 then
        a = math.min(a, l[2] - tonumber(redis.call('HGET', running_key, l[1]) or 0))
      end
      if l[3] > 0 then
        local rk = PREFIX .. 'limits:rate:' .. l[1]
        redis.call('ZREMRANGEBYSCORE', rk, '-inf', now - l[4])
        a = math.min(a, l[3] - redis.call('ZCARD', rk))
      end
      avail[l[1]] = a
    end
    r = math.min(r, a)
  end
  return r
end

-- Count one start against a part's limits (written by count_starts).
local function take(lims, id, attempts)
  for i = 1, #lims do
    local l = lims[i]
    avail[l[1]] = avail[l[1]] - 1
    local st = started[l[1]]
    if not st then
      st = {lim = l, n = 0, log = {}}
      started[l[1]] = st
    end
    st.n = st.n + 1
    if l[3] > 0 then
      st.log[#st.log + 1] = now; st.log[#st.log + 1] = id .. ':' .. attempts
    end
  end
end

local function count_starts()
  for field, st in pairs(started) do
    local l = st.lim
    if l[2] > 0 then redis.call('HINCRBY', running_key, field, st.n) end
    if l[3] > 0 then
      local rk = PREFIX .. 'limits:rate:' .. field
      zadd_all(rk, st.log)
      redis.call('PEXPIRE', rk, l[4])
    end
  end
end

local function split_part(part)
  local n, rest = part:match('^(%d+):(.*)$')
  n = tonumber(n)
  return rest:sub(1, n), rest:sub(n + 2)
end

local function adopt(id, score)
  redis.call('ZREM', queue, id)  -- the default queue's index: the only one of before
  local h = redis.call('HMGET', job_key(id), 'status', 'type', 'company_id')
  if h[1] == 'pending' then
    local part = part_of(h[2], h[3])
    redis.call('ZADD', part_key(part), score, id)
    redis.call('ZADD', queue, 'LT', score, part)
  end
end

local function band_of(score)
  return math.floor(tonumber(score) / SEQ_SPAN)
end

local jobs = {}
local deadline = int(now + lease_ms)
-- Turn numbers for the parts served by this call (one INCRBY for all of them).
local turn = redis.call('INCRBY', seq_key, count) - count
local skipped = {}  -- queue name -> {part -> true}

-- Claim job `id` (just taken from its part); false if it was not pending after all.
local function claim_job(id, lims)
  local k = job_key(id)
  local job, status = read_claimed(k, id)
  if not job or status ~= 'pending' then return false end
  local attempts = tonumber(job.attempts) + 1
  if lims.held then
    redis.call('HSET', k, 'status', 'processing', 'started_at', now, 'updated_at', now,
      'attempts', attempts, 'lease', token, 'worker', worker, 'held', lims.held)
  else
    redis.call('HSET', k, 'status', 'processing', 'started_at', now, 'updated_at', now,
      'attempts', attempts, 'lease', token, 'worker', worker)
  end
  if #lims > 0 then take(lims, id, attempts) end
  redis.call('ZREM', pending_idx, id)
  redis.call('ZADD', leases, deadline, id)
  emit(events, 'job.started', id, job.type, job.company_id, 'processing', now,
    '{"attempt":' .. attempts .. ',"worker":"' .. worker .. '"}')
  job.attempts = tostring(attempts)
  jobs[#jobs + 1] = job
  return true
end

-- New turns, behind every part of the priority `band`, for the parts still of that
-- priority of the companies a scan served (`groups`, in the order first served: each
-- the array of its parts left, with served = set of those that gave jobs, order = them
-- in the order they first did, full = those served whose limits then filled). The first
-- company served goes last, and within a company the parts it did not serve go first
-- and the first part served goes last: one claim's rounding favours the first in turn,
-- so the next claim starts with the next.
local function rotated(list, i)
  if i > #list then return list[1] end
  return list[i]
end

local function refile(index, band, groups)
  local order = {}
  for gi = 2, #groups + 1 do
    local g = rotated(groups, gi)
    local left = {}
    for _, p in ipairs(g) do
      left[p[1]] = true
      if not g.served[p[1]] then order[#order + 1] = p[1] end
    end
    for _, p in ipairs(g.full) do left[p[1]] = true end
    for j = 2, #g.order + 1 do
      local part = rotated(g.order, j)
      if left[part] then order[#order + 1] = part end
    end
  end
  if #order == 0 then return end
  local base = redis.call('INCRBY', seq_key, #order) - #order
  for i, part in ipairs(order) do
    redis.call('ZADD', index, int(band * SEQ_SPAN + base + i), part)
  end
end

-- Take jobs from one queue until `upto` jobs are claimed in all (or it has none to give).
local function serve(qname, upto)
  local index = queue_index(queue, qname)
  -- Parts this claim skips in this queue (a queue's own limit makes it per queue).
  local skip = skipped[qname]
  if not skip then
    skip = {}
    skipped[qname] = skip
  end
  for _ = 1, MAX_SCANS do
    if #jobs >= upto then break end
    -- The parts of the best priority that this daemon may serve now, in turn order, a
    -- page of the index at a time past the parts it must skip.
    local band, turns, adopted = nil, {}, false
    for page = 0, MAX_PAGES - 1 do
      local idx = redis.call('ZRANGE', index, page * SCAN, page * SCAN + SCAN - 1, 'WITHSCORES')
      for i = 1, #idx, 2 do
        local part = idx[i]
        local b = band_of(idx[i + 1])
        if band and b ~= band then break end
        if not part:match('^%d+:') then
          -- A job id filed by a version before parts (one `queue` zset of jobs): moved
          -- to its part, keeping its place (its score); the next scan sees the part.
          adopt(part, idx[i + 1])
          adopted = true
        elseif not skip[part] then
          local jtype, company = split_part(part)
          local lims = limits_of(qname, part, jtype, company)
          if (handles == nil or handles[jtype]) and not (held_parts and held_parts[part])
              and (#lims == 0 or room(lims) > 0) then
            band = b
            turns[#turns + 1] = {part, lims, company}
          else
            skip[part] = true
          end
        end
      end
      if band or #idx < SCAN * 2 then break end
    end
    if not band and not adopted then break end
    -- Fair share: the companies with parts of this priority, in the turn order of their
    -- first part, each take an equal share of what is left to take; a company's parts
    -- (its job types) share that equally, FIFO within a part; round after round while
    -- their heads are of this priority. Then the companies served go behind the others
    -- (refile), so a company's number of job types buys it no more turns.
    local below = '(' .. int(((band or 0) + 1) * SEQ_SPAN)
    local live, by_company = {}, {}
    for _, p in ipairs(turns) do
      local g = by_company[p[3]]
      if not g then
        -- Its parts still of this priority, as an array; once it gives jobs (made then:
        -- most of the companies a claim sees give none), served and order: set and
        -- order of its parts that did, full: those served whose limits then filled.
        g = {}
        by_company[p[3]] = g
        live[#live + 1] = g
      end
      g[#g + 1] = p
    end
    -- Take up to `want` jobs of part `p`; true if its next head is of this priority
    -- (refile files it then), else it is re-filed at its head's priority or dropped.
    local function take_part(p, want)
      local part, lims = p[1], p[2]
      local pk = part_key(part, qname)
      if #lims > 0 then want = math.min(want, room(lims)) end
      if want <= 0 then
        skip[part] = true
        return false
      end
      local ids = redis.call('ZRANGEBYSCORE', pk, '-inf', below, 'LIMIT', 0, want)
      if #ids > 0 then
        redis.call('ZREM', pk, unpack(ids))
        for i = 1, #ids do claim_job(ids[i], lims) end
      end
      local head = redis.call('ZRANGE', pk, 0, 0, 'WITHSCORES')
      if not head[1] then
        redis.call('ZREM', index, part)
        return false
      end
      local nb = band_of(head[2])
      if #ids > 0 then
        if nb == band then return true end
        turn = turn + 1
      end
      -- Moved down a priority, or nothing taken (a stale hint: a cancel took the head).
      redis.call('ZADD', index, int(nb * SEQ_SPAN + turn), part)
      return false
    end
    local served_groups = {}
    while #live > 0 and #jobs < upto do
      local still = {}
      for _, g in ipairs(live) do
        if #jobs >= upto then break end
        local left = math.ceil((upto - #jobs) / #live)
        local before, n, kept = #jobs, #g, 0
        for i = 1, n do
          local p, stays = g[i], true
          if left > 0 and #jobs < upto then
            local taken = #jobs
            stays = take_part(p, math.ceil(left / (n - i + 1)))
            if #jobs > taken and not (g.served and g.served[p[1]]) then
              if not g.served then g.served, g.order, g.full = {}, {}, {} end
              g.served[p[1]] = true
              g.order[#g.order + 1] = p[1]
            end
            if not stays and skip[p[1]] and g.served and g.served[p[1]] then
              g.full[#g.full + 1] = p  -- served, then its limit filled: refiled too
            end
            left = left - (#jobs - taken)
          end
          if stays then  -- kept, in order, at the front of the array
            kept = kept + 1
            g[kept] = p
          end
        end
        for i = kept + 1, n do g[i] = nil end
        if #jobs > before then
          if not g.took then
            g.took = true
            served_groups[#served_groups + 1] = g
          end
          if kept > 0 then still[#still + 1] = g end
        end
      end
      live = still
    end
    refile(index, band, served_groups)
  end
end

local served = {{'default', 0}}
if ARGV[9] and ARGV[9] ~= '' then served = cjson.decode(ARGV[9]) end
local paused_key = PREFIX .. 'queues:paused'
local open, weights = {}, 0
for _, q in ipairs(served) do
  if redis.call('SISMEMBER', paused_key, q[1]) == 0 then
    open[#open + 1] = q
    weights = weights + q[2]
  end
end
if weights > 0 then
  for _, q in ipairs(open) do
    if q[2] > 0 then serve(q[1], math.min(count, #jobs + math.ceil(count * q[2] / weights))) end
  end
end
for _, q in ipairs(open) do
  if #jobs >= count then break end
  serve(q[1], count)
end
count_starts()
-- Nothing left to take: stale wake tokens would only cause empty claims.
-- (Only a daemon of the default queue alone: others' queues may still have jobs.)
if #served == 1 and is_default_queue(served[1][1]) and #open == 1
    and redis.call('EXISTS', queue) == 0 then
  redis.call('DEL', wake)
end
local encoded, data = encode_claimed(jobs)
return {now, next_due(delayed), encoded, data}
