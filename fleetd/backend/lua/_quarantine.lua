-- _quarantine.lua: one counted failure of a part (a job type of one company) towards its
-- quarantine, shared by quarantine_count.lua (failures written by the worker pools) and
-- reap.lua (jobs whose daemon stalled or died while running them). Prepended after
-- _lib.lua to every script by fleetd/backend/scripts.py; not a script itself.
--
-- The part's failures within `window` ms are a sliding log, member
-- "<kind>|<id>:<attempt>" (one per attempt: a batch written twice counts once); at the
-- `after`th the part is quarantined (hash `quarantines`, part -> JSON record) and a
-- `part.quarantined` event is appended. Returns the record's JSON text when this call
-- quarantined the part, else nil.
local function quarantine_strike(quarantines, events, after, window, now, id, attempt, jtype,
                                 company, kind)
  local part = part_of(jtype, company)
  local log = PREFIX .. 'quarantine:log:' .. part
  redis.call('ZADD', log, now, kind .. '|' .. id .. ':' .. attempt)
  redis.call('ZREMRANGEBYSCORE', log, '-inf', now - window)
  redis.call('PEXPIRE', log, window)
  if redis.call('ZCARD', log) < after or redis.call('HEXISTS', quarantines, part) == 1 then
    return nil
  end
  local kinds = {}
  for _, m in ipairs(redis.call('ZRANGE', log, 0, -1)) do
    local k = m:match('^([^|]*)|')
    kinds[k] = (kinds[k] or 0) + 1
  end
  local record = cjson.encode({job_type = jtype, company_id = company, since = now,
    failures = redis.call('ZCARD', log), kinds = kinds, window_ms = window,
    last_job_id = id})
  redis.call('HSET', quarantines, part, record)
  emit(events, 'part.quarantined', id, jtype, company, 'pending', now, record)
  return record
end
