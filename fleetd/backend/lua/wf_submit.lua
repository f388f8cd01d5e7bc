-- wf_submit.lua: store a whole workflow (a DAG of jobs) atomically (wf_store in
-- _workflow.lua): its nodes without parents ready at once (the code of enqueue.lua),
-- the others `pending` and waiting for their parents. The caller validated everything
-- (fleetd.workflows.spec): this script refuses nothing, so no call stores half a graph.
--
-- KEYS[1] queue  KEYS[2] delayed  KEYS[3] seq  KEYS[4] status:pending  KEYS[5] events
-- KEYS[6] wake   KEYS[7] workflows (zset: workflow id by creation ms)
-- ARGV[1] prefix  ARGV[2] events caps  ARGV[3] workflow id  ARGV[4] wake token cap
-- ARGV[5] the workflow's fields as a JSON object of strings (name, company_id, user_id,
--   policy, spec), stored in wf:<id> as given
-- ARGV[6] number of nodes
-- ARGV[7..] per node, 2 values: its job row (fleetd.backend.codec) and a JSON object
--   of strings with its workflow fields (wf_node, wf_kids, wf_parents, wf_wait, and
--   wf_cond, wf_in when it has them), stored in its job hash as given
-- ARGV[7 + 2 * number of nodes] (optional) the companies' quotas, as for enqueue.lua:
--   every node counts, waiting ones too (they are pending jobs of the company)
-- Returns Redis now ms; refused by a quota: enqueue.lua's refusal reply, nothing stored.
local now = now_ms()
local n = tonumber(ARGV[6])
local quota = ARGV[7 + 2 * n]
if quota and quota ~= '' then
  local rows = {}
  for i = 0, n - 1 do rows[i + 1] = decode_row(ARGV[7 + 2 * i]) end
  local refused = check_quotas(cjson.decode(quota), rows, now)
  if refused then return refused end
end
local k = {queue = KEYS[1], delayed = KEYS[2], seq = KEYS[3], pending = KEYS[4],
  events = KEYS[5], wake = KEYS[6], index = KEYS[7], cap = tonumber(ARGV[4])}
wf_store(k, ARGV[3], ARGV[5], n, ARGV, 7, now)
return now
