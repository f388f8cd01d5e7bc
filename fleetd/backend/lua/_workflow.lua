-- _workflow.lua: workflow helpers, prepended after _lib.lua to every script (not a
-- script itself). fleetd/workflows/ is the Python side; docs/WORKFLOWS.md the guide.
--
-- A workflow node is an ordinary job whose hash also holds:
--   wf          the workflow id (wf:<id> is its hash, wf:<id>:nodes name -> job id)
--   wf_node     its name
--   wf_kids     JSON [[child job id, on, its number of parents], ...]; on is success |
--               failure | any (a workflow stored before the count has pairs)
--   wf_parents  JSON {name: [job id, on], ...}
--   wf_wait     parents not finished yet (decremented once per parent, below; a child
--               with one parent is released by it without counting)
--   wf_blocked  '1' once a parent ended in a way its edge does not accept
-- A node waits for its parents while it is `pending` (in status:pending, not queued)
-- and some parent has no wf_done: no field of its own says so, so releasing it writes
-- nothing to it (fleetd.workflows.store derives `waiting` from its parents).
--   wf_done     the node's final state, set exactly once: completed | failed |
--               cancelled | skipped (a skipped node's job is `cancelled`, error
--               "skipped: ...": the spec's six statuses stay the only job statuses)
-- wf_settle runs inside the script that finishes the parent (complete, fail, abort,
-- reap, cancel, wf_skip, wf_cancel), so a child is released exactly once, atomically
-- with its last parent's finish, whichever daemon dies when.
--
-- Keys built here from the prefix carry the namespace's hash tag (same slot).
local WF_QUEUE = PREFIX .. 'queue'
local WF_DELAYED = PREFIX .. 'delayed'
local WF_SEQ = PREFIX .. 'seq'
local WF_WAKE = PREFIX .. 'wake'
local WF_EVENTS = PREFIX .. 'events'
local WF_PENDING = PREFIX .. 'status:pending'
local WF_RETRYING = PREFIX .. 'status:retrying'
local WF_CANCELLED = PREFIX .. 'status:cancelled'
-- As fleetd.backend.scripts.WAKE_TOKEN_CAP.
local WF_WAKE_CAP = 64

local function wf_key(wf)
  return PREFIX .. 'wf:' .. wf
end

local function wf_nodes_key(wf)
  return PREFIX .. 'wf:' .. wf .. ':nodes'
end

-- Store a whole workflow (a DAG of jobs): the body of wf_submit.lua, shared with
-- schedule_fire.lua so a schedule's occurrence stores its workflows in the very step
-- that wins it. Its nodes without parents are ready at once (enqueue_one), the others
-- `pending` and waiting for their parents (in status:pending, not queued).
-- `k`: {queue, delayed, seq, pending, events, wake, index, cap}; `a[at..]`: per node,
-- its job row and a JSON object of its workflow fields (wf_submit.lua's header).
local function wf_store(k, wf, meta_json, n, a, at, now)
  local meta = cjson.decode(meta_json)
  local seq = redis.call('INCRBY', k.seq, n) - n
  local batch = new_batch()
  local names = {}
  local ready = 0
  for i = 0, n - 1 do
    local row = decode_row(a[at + i * 2])
    local extra = cjson.decode(a[at + 1 + i * 2])
    local f = {'wf', wf}
    for name, value in pairs(extra) do
      f[#f + 1] = name; f[#f + 1] = value
    end
    if tonumber(extra.wf_wait) > 0 then
      local stored = store_row(row, now)
      for j = 1, #f do stored[#stored + 1] = f[j] end
      redis.call('HSET', job_key(row.id), unpack(stored))
      later_add(row.company_id, row.id, now)
      local p = batch.pending
      p[#p + 1] = now; p[#p + 1] = row.id
      emit(k.events, 'job.enqueued', row.id, row.type, row.company_id, 'pending', now,
        '{"priority":' .. row.priority .. ',"workflow":"' .. wf .. '","waiting":true}')
    else
      local _, _, _, _, new_seq, ready_now = enqueue_one(
        k.queue, k.delayed, k.pending, k.events, now, seq, row, batch)
      seq = new_seq
      ready = ready + ready_now
      redis.call('HSET', job_key(row.id), unpack(f))
    end
    names[#names + 1] = extra.wf_node; names[#names + 1] = row.id
  end
  flush_batch(k.queue, k.pending, batch)
  local f = {'id', wf, 'status', 'running', 'created_at', now, 'updated_at', now,
    'total', n, 'left', n, 'failures', 0}
  for name, value in pairs(meta) do
    f[#f + 1] = name; f[#f + 1] = value
  end
  redis.call('HSET', wf_key(wf), unpack(f))
  local step = ZADD_BATCH * 2
  for i = 1, #names, step do
    redis.call('HSET', wf_nodes_key(wf), unpack(names, i, math.min(i + step - 1, #names)))
  end
  redis.call('ZADD', k.index, now, wf)
  emit(k.events, 'workflow.started', wf, meta.name, meta.company_id, 'running', now,
    '{"workflow":"' .. wf .. '","nodes":' .. n .. '}')
  wake_up(k.wake, ready, k.cap)
end

-- Does a parent that ended `outcome` satisfy an edge that requires `on`?
local function wf_accepts(on, outcome)
  if on == 'failure' then return outcome == 'failed' end
  if on == 'any' then return outcome ~= 'cancelled' end
  return outcome == 'completed'
end

local function wf_node_event(wf, id, jtype, company, state, now, name)
  emit(WF_EVENTS, 'workflow.node', id, jtype, company, state, now,
    '{"workflow":"' .. wf .. '","node":' .. cjson.encode(name or '') .. '}')
end

-- End a node that has not started (waiting, queued or waiting for a retry) as
-- `cancelled`; `skipped` says why in its error. Returns true if it was ended.
local function wf_end_unstarted(id, why, skipped, now)
  local k = job_key(id)
  local h = redis.call('HMGET', k, 'status', 'type', 'company_id')
  if h[1] ~= 'pending' and h[1] ~= 'retrying' then return false end
  ready_remove(WF_QUEUE, id, h[2], h[3])
  redis.call('ZREM', WF_DELAYED, id)
  later_remove(h[3], id)
  redis.call('ZREM', WF_PENDING, id)
  redis.call('ZREM', WF_RETRYING, id)
  redis.call('HSET', k, 'status', 'cancelled', 'completed_at', now, 'updated_at', now,
    'error', why)
  redis.call('ZADD', WF_CANCELLED, now, id)
  emit(WF_EVENTS, 'job.cancelled', id, h[2], h[3], 'cancelled', now,
    '{"running":false,"skipped":' .. tostring(skipped) .. '}')
  return true
end

-- Every node of workflow `wf` that has not started ends, appended to `work` as
-- (id, state) for wf_settle (fail the rest, cancel the workflow).
local function wf_end_rest(wf, why, state, now, work)
  local ids = redis.call('HVALS', wf_nodes_key(wf))
  for _, id in ipairs(ids) do
    if wf_end_unstarted(id, why, state == 'skipped', now) then
      work[#work + 1] = {id, state}
    end
  end
end

-- The workflow's fields wf_settle needs, read once per settle and only when needed
-- (a node's failure, a child's release, the workflow's end): most completions are of
-- a node whose children still wait for other parents, and read none.
local function wf_meta(wk, w)
  if w.status == nil then
    local m = redis.call('HMGET', wk, 'status', 'policy', 'company_id', 'name')
    w.status, w.policy, w.company, w.name = m[1], m[2], m[3], m[4]
  end
  return w
end

-- The workflow is over once every node has a final state.
local function wf_finish(wf, wk, w, now)
  wf_meta(wk, w)
  local failures = tonumber(redis.call('HGET', wk, 'failures') or '0')
  local state = 'completed'
  if w.status == 'cancelling' then
    state = 'cancelled'
  elseif failures > 0 then
    state = 'failed'
  end
  redis.call('HSET', wk, 'status', state, 'finished_at', now, 'updated_at', now)
  -- Retention (wf_prune.lua) finds it by its final status and finish time.
  redis.call('ZADD', PREFIX .. 'workflows:' .. state, now, wf)
  emit(WF_EVENTS, 'workflow.' .. state, wf, w.name, w.company, state, now,
    '{"workflow":"' .. wf .. '","failures":' .. failures .. '}')
end

-- Children released by one settle, queued at its end as enqueue_one's batch does: one
-- INCRBY of the sequence for all, one ZADD per part and one of the part into its
-- queue's index (a fan-out's thousands of children cost a few commands, not three
-- each). Safe because nothing later in the same settle ends a released child: only
-- the first node of a settle can fail the rest (wf_end_rest), before any release.
local function wf_queue_released(rel)
  if #rel == 0 then return end
  local seq = redis.call('INCRBY', WF_SEQ, #rel) - #rel
  local parts, heads, where = {}, {}, {}
  for i = 1, #rel do
    local r = rel[i]  -- {id, priority, type, company, queue name}
    local part, jq = part_of(r[3], r[4]), r[5] or ''
    local bk = jq .. '/' .. part
    local score = queue_score(r[2], seq + i)
    local q = parts[bk]
    if not q then
      q = {}
      parts[bk], heads[bk], where[bk] = q, score, {part, jq}
    elseif tonumber(score) < tonumber(heads[bk]) then
      heads[bk] = score
    end
    q[#q + 1] = score; q[#q + 1] = r[1]
  end
  for bk, args in pairs(parts) do
    local part, jq = where[bk][1], where[bk][2]
    zadd_all(part_key(part, jq), args)
    redis.call('ZADD', queue_index(WF_QUEUE, jq), 'LT', heads[bk], part)
    note_queue(jq)
  end
end

-- Node `id` ended `outcome` (completed | failed | cancelled | skipped): record it once,
-- then per child: one parent fewer to wait for; the last one releases the child to the
-- queue, or skips it when an edge was not satisfied (or the workflow is failing or
-- cancelled), which settles that child in turn (a work list, not recursion: a chain of
-- 10,000 skips is one loop). A plain job (no `wf`) costs one HGET. A node's workflow
-- exists while the node has no wf_done (a workflow ends, and can be pruned, only once
-- every node has one); `left` going below 0 means it was deleted by hand: undone.
local function wf_settle(id, outcome, now, work)
  local wf = redis.call('HGET', job_key(id), 'wf')
  if not wf then return end
  local wk = wf_key(wf)
  local w = {}
  work = work or {}
  table.insert(work, 1, {id, outcome})
  local i, ready, finished, rel = 1, 0, false, {}
  while i <= #work do
    local nid, state = work[i][1], work[i][2]
    i = i + 1
    local k = job_key(nid)
    local h = redis.call('HMGET', k, 'wf_done', 'wf_kids', 'wf_node', 'type', 'company_id')
    if not h[1] then
      redis.call('HSET', k, 'wf_done', state)
      local left = redis.call('HINCRBY', wk, 'left', -1)
      if left < 0 then
        redis.call('DEL', wk)
        return
      end
      wf_node_event(wf, nid, h[4], h[5], state, now, h[3])
      local kids = cjson.decode(h[2] or '[]')
      if state == 'failed' then
        local handled = false
        for j = 1, #kids do
          if kids[j][2] ~= 'success' then handled = true end
        end
        if not handled then
          redis.call('HINCRBY', wk, 'failures', 1)
          wf_meta(wk, w)
          if w.policy == 'fail' and w.status == 'running' then
            w.status = 'failing'
            redis.call('HSET', wk, 'status', 'failing', 'updated_at', now)
            wf_end_rest(wf, 'skipped: node ' .. (h[3] or nid) .. ' failed', 'skipped', now, work)
          end
        end
      end
      for j = 1, #kids do
        local cid, on, single = kids[j][1], kids[j][2], kids[j][3] == 1
        local ck = job_key(cid)
        local accepted, last = wf_accepts(on, state), single
        if not single then
          -- Counted down whatever the child's state: only a waiting child is released
          -- by it (a resumed one gets its count afresh), checked once it reaches 0.
          if not accepted then redis.call('HSET', ck, 'wf_blocked', '1') end
          last = redis.call('HINCRBY', ck, 'wf_wait', -1) <= 0
        end
        if last then
          -- Each parent settles once (its wf_done), so the last one comes once: the
          -- child still pending and not ended is waiting, released or skipped now.
          local c = redis.call('HMGET', ck, 'status', 'wf_done', 'wf_blocked', 'priority',
            'type', 'wf_node', 'company_id', 'queue')
          if c[1] == 'pending' and not c[2] then
            wf_meta(wk, w)
            if (single and not accepted) or (not single and c[3]) or w.status ~= 'running' then
              local why = 'skipped: a parent did not end as its edge requires'
              if w.status ~= 'running' then why = 'skipped: the workflow is ' .. w.status end
              if wf_end_unstarted(cid, why, true, now) then work[#work + 1] = {cid, 'skipped'} end
            else
              rel[#rel + 1] = {cid, c[4], c[5], c[7], c[8]}
              later_remove(c[7], cid)
              wf_node_event(wf, cid, c[5], c[7], 'released', now, c[6])
              ready = ready + 1
            end
          end
        end
      end
      if left <= 0 then finished = true end
    end
  end
  wf_queue_released(rel)
  if finished then wf_finish(wf, wk, w, now) end
  wake_up(WF_WAKE, ready, WF_WAKE_CAP)
end
