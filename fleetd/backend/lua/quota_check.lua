-- quota_check.lua: the companies' quotas at the door for one call that enqueue.lua
-- stores in several parts (more than fleetd.jobs.queue.ENQUEUE_CHUNK jobs): checked,
-- and the call counted against the enqueue rates, once for the whole call before any
-- part is stored, so a refusal stores nothing (all or none, as for one part); the parts
-- are then sent without quotas.
--
-- ARGV[1] prefix  ARGV[2] events caps
-- ARGV[3] the companies' quotas (as for enqueue.lua)
-- ARGV[4] JSON: company → [its jobs in the call, [their job types]]
-- Returns {now}; refused: enqueue.lua's refusal ({-1, company, quota, limit, retry ms...}).
local now = now_ms()
local per = {}
for company, e in pairs(cjson.decode(ARGV[4])) do
  local types = {}
  for _, t in ipairs(e[2]) do types[t] = true end
  per[company] = {n = e[1], types = types}
end
local refused = quota_verdict(cjson.decode(ARGV[3]), per, now)
if refused then return refused end
return {now}
