-- wf_prune.lua: delete finished workflows (ended in one final status) older than an
-- age, each with every node's job, a bounded number of nodes per call. A workflow's
-- node jobs stay as long as their workflow (prune.lua keeps them) and go with it here,
-- so a read never meets a workflow without its nodes nor a node without its workflow.
-- A workflow one of whose node jobs is not finished (an admin reset it) is kept: it
-- counts as finished from now on, and is looked at again once the age has passed.
--
-- KEYS[1] workflows:<status> (zset: finished workflow id by finish ms)
-- KEYS[2] workflows (zset: every workflow id by creation ms)  KEYS[3] events
-- ARGV[1] prefix  ARGV[2] events caps  ARGV[3] age ms (finished before now - age)
-- ARGV[4] most node jobs looked at per call (at least one workflow, whatever its size)
-- ARGV[5] the status (completed | failed | cancelled)
-- ARGV[6] the cutoff ms the clean-up's first call returned ('' on its first call): a
--         workflow kept now (re-scored to now) is not looked at again in the same run
-- Returns {workflows deleted, node jobs deleted, more (1: call again), cutoff ms}.
local done_idx, index, events = KEYS[1], KEYS[2], KEYS[3]
local budget, status = tonumber(ARGV[4]), ARGV[5]
local now = now_ms()
local before = now - tonumber(ARGV[3])
if ARGV[6] ~= '' then before = tonumber(ARGV[6]) end
local FINISHED = {completed = true, failed = true, cancelled = true}
local ids = redis.call('ZRANGEBYSCORE', done_idx, '-inf', '(' .. int(before), 'LIMIT', 0, 100)
local n_wf, n_jobs, more, looked, scanned = 0, 0, 0, 0, 0
for _, wf in ipairs(ids) do
  -- Nodes looked at count, not only those deleted: kept workflows cost the call too.
  if looked > 0 and scanned >= budget then
    more = 1
    break
  end
  looked = looked + 1
  local wk, nk = wf_key(wf), wf_nodes_key(wf)
  if redis.call('HGET', wk, 'status') ~= status then
    -- Gone, or resumed since (wf_resume takes it out; this is belt and braces).
    redis.call('ZREM', done_idx, wf)
  else
    local nodes = redis.call('HVALS', nk)
    local rows, live = {}, false
    for i, id in ipairs(nodes) do
      scanned = scanned + 1
      local h = redis.call('HMGET', job_key(id), 'status', 'idempotency_key', 'company_id')
      if h[1] and not FINISHED[h[1]] then
        live = true
        break
      end
      rows[i] = h
    end
    if live then
      redis.call('ZADD', done_idx, now, wf)
    else
      for i, id in ipairs(nodes) do
        local h = rows[i]
        if h[1] then
          if h[2] then
            for _, ikey in ipairs({idem_key(h[3], h[2]), PREFIX .. 'idem:' .. h[2]}) do
              if redis.call('GET', ikey) == id then redis.call('DEL', ikey) end
            end
          end
          redis.call('ZREM', PREFIX .. 'status:' .. h[1], id)
          redis.call('DEL', job_key(id))
          n_jobs = n_jobs + 1
        end
      end
      redis.call('DEL', wk, nk)
      redis.call('ZREM', done_idx, wf)
      redis.call('ZREM', index, wf)
      n_wf = n_wf + 1
    end
  end
end
if more == 0 and #ids == 100 then more = 1 end
if n_wf > 0 then
  emit(events, 'workflows.pruned', '', '', '', status, now,
    '{"count":' .. n_wf .. ',"jobs":' .. n_jobs .. '}')
end
return {n_wf, n_jobs, more, int(before)}
