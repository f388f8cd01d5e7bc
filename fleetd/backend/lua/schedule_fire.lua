-- schedule_fire.lua: one occurrence of a schedule — enqueue its job (through the same
-- enqueue_one as enqueue.lua) and advance the schedule, atomically. Many schedulers
-- race for each occurrence; the due score and the rev they read are compared and set
-- here, so exactly one of them wins and the others change nothing.
--
-- KEYS[1] schedule:<id>  KEYS[2] schedules:due  KEYS[3] schedules:stats
-- KEYS[4] queue  KEYS[5] delayed  KEYS[6] seq  KEYS[7] status:pending  KEYS[8] events
-- KEYS[9] wake  KEYS[10] workflows (zset: workflow id by creation ms)
-- ARGV[1] prefix  ARGV[2] events caps  ARGV[3] wake token cap
-- ARGV[4] schedule id
-- ARGV[5] action: fire (enqueue the occurrence) | skip (misfired, run none) | error
--         (the job cannot be built; advance, record the error) | manual (run now: enqueue
--         without touching the cadence)
-- ARGV[6] the due ms the caller saw (compared with the due score; not for manual)
-- ARGV[7] the rev the caller read (compared; not for manual)
-- ARGV[8] the next due ms (not for manual)
-- ARGV[9] occurrences missed, counted in the schedule's and the global `missed`
-- ARGV[10] the occurrence ms the job is for (fire), else ''
-- ARGV[11] error text (error), else ''
-- ARGV[12] event data (JSON)
-- ARGV[13] the companies' quotas, as for enqueue.lua ('' = none): an occurrence whose
--          jobs (every node of its workflows counted) would put its company over one is
--          not run — fire: recorded as an error (the schedule advances, as for a misfire);
--          manual: refused
-- ARGV[14] w: how many of the next values are workflows (0 unless a schedule runs a
--          workflow template)
-- ARGV[15..14+w] the occurrence's workflows (fire and manual), each: its id, its
--          fields (JSON), its number of nodes n, then 2n node values (wf_submit.lua's
--          ARGV[5..]): stored here (wf_store), with the advance, so an occurrence
--          makes all its workflows or none, exactly once; one already stored (same
--          id) is not stored again
-- ARGV[15+w..] the job's row (fleetd.backend.codec, as for enqueue.lua) for fire and
--          manual, else ''; a schedule running a job template passes one row per job
--          of its fan-out (all enqueued here, with the advance), none for workflows
-- Returns {code, now, job id, duplicate (0|1)}: code 1 done; 0 lost (the due score or
-- rev moved, or the schedule is gone or paused); -1 not due yet by Redis time. A fire
-- refused by a quota: {1, now, '', 0, the error recorded}; a manual run: {-2, now, then
-- enqueue.lua's refusal after its -1}.
local key, due, stats = KEYS[1], KEYS[2], KEYS[3]
local queue, delayed, seq_key, pending_idx = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local events, wake, wf_index = KEYS[8], KEYS[9], KEYS[10]
local cap, id, action = tonumber(ARGV[3]), ARGV[4], ARGV[5]
local due_ms, rev, next_due = ARGV[6], ARGV[7], ARGV[8]
local missed, occurrence, err, evdata = tonumber(ARGV[9]), ARGV[10], ARGV[11], ARGV[12]
local quota, w = ARGV[13], tonumber(ARGV[14])

local now = now_ms()
if action == 'manual' then
  if redis.call('EXISTS', key) == 0 then return {0, now, '', 0} end
else
  local score = redis.call('ZSCORE', due, id)
  if not score or tonumber(score) ~= tonumber(due_ms) then return {0, now, '', 0} end
  if redis.call('HGET', key, 'rev') ~= rev then return {0, now, '', 0} end
  if tonumber(due_ms) > now then return {-1, now, '', 0} end
end

local h = redis.call('HMGET', key, 'job_type', 'company_id')
local job_id, dup, over = '', 0, false
local first = 15 + w
if (action == 'fire' or action == 'manual') and quota ~= '' then
  local rows, i = {}, 15
  while i < first do
    for j = 0, tonumber(ARGV[i + 2]) - 1 do rows[#rows + 1] = decode_row(ARGV[i + 3 + 2 * j]) end
    i = i + 3 + 2 * tonumber(ARGV[i + 2])
  end
  for j = first, #ARGV do
    if ARGV[j] ~= '' then rows[#rows + 1] = decode_row(ARGV[j]) end
  end
  local refused = check_quotas(cjson.decode(quota), rows, now)
  if refused then
    if action == 'manual' then
      refused[1] = now
      table.insert(refused, 1, -2)
      return refused
    end
    action, over = 'error', true
    err = 'occurrence not run: company ' .. refused[2] .. ' is over its ' .. refused[3] ..
      ' quota (' .. refused[4] .. ')'
    local data = cjson.decode(evdata)
    data.error = err
    evdata = cjson.encode(data)
  end
end
if action == 'fire' or action == 'manual' then
  local fresh = 0
  local i = 15
  while i < first do
    local wf, n = ARGV[i], tonumber(ARGV[i + 2])
    if redis.call('EXISTS', wf_key(wf)) == 0 then
      wf_store({queue = queue, delayed = delayed, seq = seq_key, pending = pending_idx,
        events = events, wake = wake, index = wf_index, cap = cap}, wf, ARGV[i + 1], n, ARGV,
        i + 3, now)
    end
    if job_id == '' then job_id = wf end
    i = i + 3 + 2 * n
  end
  for i = first, #ARGV do
    if ARGV[i] ~= '' then
      local jid, status, d, created, ready
      local seq = redis.call('INCR', seq_key) - 1
      jid, status, d, created, seq, ready =
        enqueue_one(queue, delayed, pending_idx, events, now, seq, decode_row(ARGV[i]))
      wake_up(wake, ready, cap)
      if job_id == '' then job_id, dup = jid, d end
      if d == 0 then fresh = 1 end
    end
  end
  if #ARGV > first then dup = 1 - fresh end
  redis.call('HSET', key, 'last_run', now, 'last_job_id', job_id)
  if dup == 0 then redis.call('HINCRBY', key, 'runs', 1) end
  redis.call('HINCRBY', stats, 'fired', 1 - dup)
end
if action == 'manual' then
  emit(events, 'schedule.run_now', job_id, h[1], h[2], 'active', now, evdata)
  return {1, now, job_id, dup}
end

redis.call('ZADD', due, next_due, id)
redis.call('HSET', key, 'next_run', next_due)
redis.call('HINCRBY', key, 'rev', 1)
if missed > 0 then
  redis.call('HINCRBY', key, 'missed', missed)
  redis.call('HINCRBY', stats, 'missed', missed)
end
if action == 'fire' then
  redis.call('HSET', key, 'last_occurrence', occurrence)
  redis.call('HDEL', key, 'last_error')
  an_fired(key, stats, due_ms, now)
  emit(events, 'schedule.fired', job_id, h[1], h[2], 'active', now, evdata)
elseif action == 'skip' then
  emit(events, 'schedule.missed', '', h[1], h[2], 'active', now, evdata)
else
  redis.call('HSET', key, 'last_error', err)
  redis.call('HINCRBY', stats, 'errors', 1)
  emit(events, 'schedule.error', '', h[1], h[2], 'active', now, evdata)
  if over then return {1, now, '', 0, err} end
end
return {1, now, job_id, dup}
