-- wf_resume.lua: run a failed or cancelled workflow again from the nodes that did not
-- complete: each goes back to pending (retries cleared, as reset.lua), waiting for its
-- parents that run again; completed nodes keep their results and are not re-run.
--
-- KEYS[1] wf:<id>  KEYS[2] status:failed  KEYS[3] status:cancelled
-- ARGV[1] prefix  ARGV[2] events caps  ARGV[3] workflow id
-- ARGV[4] (optional) the companies' quotas, as for enqueue.lua ('' = none): every node
--   put back counts as a job of its type enqueued for the workflow's company, waiting
--   ones too (as wf_submit.lua counts them), towards company_max_pending and
--   company_enqueue_rate (reset.lua says why a job put back counts as enqueued).
-- Returns {outcome, status, nodes reset}: outcome resumed | refused (not failed or
--   cancelled) | missing. Over a quota: enqueue.lua's refusal ({-1, company, quota,
--   limit, retry after ms}); nothing written, the workflow and its nodes as they were.
local wk, failed_idx, cancelled_idx = KEYS[1], KEYS[2], KEYS[3]
local wf = ARGV[3]
local m = redis.call('HMGET', wk, 'status', 'name', 'company_id')
if not m[1] then return {'missing', '', 0} end
if m[1] ~= 'failed' and m[1] ~= 'cancelled' then return {'refused', m[1], 0} end
local now = now_ms()
local again, order, rows = {}, {}, {}
for _, id in ipairs(redis.call('HVALS', wf_nodes_key(wf))) do
  local node = redis.call('HMGET', job_key(id), 'wf_done', 'type')
  if node[1] ~= 'completed' then
    again[id] = true
    order[#order + 1] = id
    rows[#rows + 1] = {company_id = m[3], type = node[2]}
  end
end
local quota = ARGV[4]
if quota and quota ~= '' then
  local refused = check_quotas(cjson.decode(quota), rows, now)
  if refused then return refused end
end
redis.call('HSET', wk, 'status', 'running', 'left', #order, 'failures', 0, 'updated_at', now)
redis.call('HDEL', wk, 'finished_at')
redis.call('ZREM', PREFIX .. 'workflows:' .. m[1], wf)
local ready, skip = 0, {}
for _, id in ipairs(order) do
  local k = job_key(id)
  local h = redis.call('HMGET', k, 'wf_parents', 'priority', 'created_at', 'type', 'company_id')
  local wait, blocked = 0, false
  for _, edge in pairs(cjson.decode(h[1] or '{}')) do
    if again[edge[1]] then
      wait = wait + 1
    elseif not wf_accepts(edge[2], 'completed') then
      blocked = true
    end
  end
  redis.call('ZREM', failed_idx, id)
  redis.call('ZREM', cancelled_idx, id)
  redis.call('HSET', k, 'status', 'pending', 'retry_count', 0, 'stalls', 0, 'updated_at', now,
    'wf_wait', wait)
  redis.call('HDEL', k, 'error', 'traceback', 'result', 'completed_at', 'started_at',
    'run_at', 'worker', 'progress', 'wf_done', 'wf_blocked')
  redis.call('ZADD', WF_PENDING, h[3], id)
  if blocked then redis.call('HSET', k, 'wf_blocked', '1') end
  if wait > 0 then
    -- waits for its parents that run again (the last one releases it)
    later_add(h[5], id, now)
  elseif blocked then
    skip[#skip + 1] = id
  else
    local seq = redis.call('INCR', WF_SEQ)
    ready_add(WF_QUEUE, id, h[2], seq, h[4], h[5])
    ready = ready + 1
  end
end
emit(WF_EVENTS, 'workflow.resumed', wf, m[2], m[3], 'running', now,
  '{"workflow":"' .. wf .. '","nodes":' .. #order .. '}')
wake_up(WF_WAKE, ready, WF_WAKE_CAP)
local work = {}
for _, id in ipairs(skip) do
  if wf_end_unstarted(id, 'skipped: a parent did not end as its edge requires', true, now) then
    work[#work + 1] = {id, 'skipped'}
  end
end
if #work > 0 then
  local first = table.remove(work, 1)
  wf_settle(first[1], first[2], now, work)
end
return {'resumed', redis.call('HGET', wk, 'status'), #order}
