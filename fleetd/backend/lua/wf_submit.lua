-- wf_submit.lua: store a whole workflow (a DAG of jobs) atomically: its nodes without
-- parents ready at once (enqueue_one, the code of enqueue.lua), the others `pending`
-- and waiting for their parents (wf_waiting; in status:pending, not in the queue).
-- The caller validated everything (fleetd.workflows.spec): this script refuses
-- nothing, so no call stores half a graph.
--
-- KEYS[1] queue  KEYS[2] delayed  KEYS[3] seq  KEYS[4] status:pending  KEYS[5] events
-- KEYS[6] wake   KEYS[7] workflows (zset: workflow id by creation ms)
-- ARGV[1] prefix  ARGV[2] events maxlen  ARGV[3] workflow id  ARGV[4] wake token cap
-- ARGV[5] the workflow's fields as a JSON object of strings (name, company_id, user_id,
--   policy, spec), stored in wf:<id> as given
-- ARGV[6] number of nodes
-- ARGV[7..] per node, 2 values: its job row (fleetd.backend.codec) and a JSON object
--   of strings with its workflow fields (wf_node, wf_kids, wf_parents, wf_wait, and
--   wf_cond, wf_in when it has them), stored in its job hash as given
-- Returns Redis now ms.
local queue, delayed, seq_key = KEYS[1], KEYS[2], KEYS[3]
local pending_idx, events, wake, index = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local wf, cap = ARGV[3], tonumber(ARGV[4])
local meta = cjson.decode(ARGV[5])
local n = tonumber(ARGV[6])
local now = now_ms()
local seq = redis.call('INCRBY', seq_key, n) - n
local batch = new_batch()
local names = {}
local ready = 0
for i = 0, n - 1 do
  local row = decode_row(ARGV[7 + i * 2])
  local extra = cjson.decode(ARGV[8 + i * 2])
  local f = {'wf', wf}
  for name, value in pairs(extra) do
    f[#f + 1] = name; f[#f + 1] = value
  end
  if tonumber(extra.wf_wait) > 0 then
    local stored = store_row(row, now)
    for j = 1, #f do stored[#stored + 1] = f[j] end
    stored[#stored + 1] = 'wf_waiting'; stored[#stored + 1] = '1'
    redis.call('HSET', job_key(row.id), unpack(stored))
    local p = batch.pending
    p[#p + 1] = now; p[#p + 1] = row.id
    emit(events, 'job.enqueued', row.id, row.type, row.company_id, 'pending', now,
      '{"priority":' .. row.priority .. ',"workflow":"' .. wf .. '","waiting":true}')
  else
    local _, _, _, _, new_seq, ready_now = enqueue_one(
      queue, delayed, pending_idx, events, now, seq, row, batch)
    seq = new_seq
    ready = ready + ready_now
    redis.call('HSET', job_key(row.id), unpack(f))
  end
  names[#names + 1] = extra.wf_node; names[#names + 1] = row.id
end
flush_batch(queue, pending_idx, batch)
local wk = PREFIX .. 'wf:' .. wf
local f = {'id', wf, 'status', 'running', 'created_at', now, 'updated_at', now,
  'total', n, 'left', n, 'failures', 0}
for name, value in pairs(meta) do
  f[#f + 1] = name; f[#f + 1] = value
end
redis.call('HSET', wk, unpack(f))
local step = ZADD_BATCH * 2
for i = 1, #names, step do
  redis.call('HSET', wf_nodes_key(wf), unpack(names, i, math.min(i + step - 1, #names)))
end
redis.call('ZADD', index, now, wf)
emit(events, 'workflow.started', wf, meta.name, meta.company_id, 'running', now,
  '{"workflow":"' .. wf .. '","nodes":' .. n .. '}')
wake_up(wake, ready, cap)
return now
