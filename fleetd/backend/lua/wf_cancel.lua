-- wf_cancel.lua: cancel a workflow: every node not started ends `cancelled` now, every
-- running one gets a cancel request (its daemon cancels the handler; abort.lua settles
-- it); the workflow ends `cancelled` when the last node has ended.
--
-- KEYS[1] wf:<id>
-- ARGV[1] prefix  ARGV[2] events caps  ARGV[3] workflow id
-- ARGV[4] control-list TTL seconds (as cancel.lua)
-- Returns {outcome, status}: outcome cancelled | cancelling (nodes still running) |
--   final (already completed, failed or cancelled) | missing.
local wk, wf = KEYS[1], ARGV[3]
local status = redis.call('HGET', wk, 'status')
if not status then return {'missing', ''} end
if status ~= 'running' and status ~= 'failing' then return {'final', status} end
local now = now_ms()
redis.call('HSET', wk, 'status', 'cancelling', 'updated_at', now)
local work = {}
for _, id in ipairs(redis.call('HVALS', wf_nodes_key(wf))) do
  local k = job_key(id)
  if wf_end_unstarted(id, 'cancelled with its workflow', false, now) then
    work[#work + 1] = {id, 'cancelled'}
  else
    local h = redis.call('HMGET', k, 'status', 'worker')
    if h[1] == 'processing' then
      redis.call('HSET', k, 'cancel_requested', '1', 'updated_at', now)
      if h[2] then
        local ctl = PREFIX .. 'ctl:' .. h[2]
        redis.call('RPUSH', ctl, id)
        redis.call('EXPIRE', ctl, ARGV[4])
      end
    end
  end
end
if #work > 0 then
  local first = table.remove(work, 1)
  wf_settle(first[1], first[2], now, work)
end
local after = redis.call('HGET', wk, 'status')
if after == 'cancelled' then return {'cancelled', after} end
return {'cancelling', after}
