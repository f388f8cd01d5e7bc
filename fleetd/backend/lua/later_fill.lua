-- later_fill.lua: one step of the back-fill of `quota:later:<company>` (_lib.lua
-- later_add), for jobs stored by a version that did not keep those sets: a pending job
-- of a company that is in no part (waiting for its run_at, or a workflow node waiting
-- for its parents) is added, as later_add would have when it was stored. The
-- maintenance runs it over `status:pending` once (`Keys.quota_backfilled` says when it
-- is done). Idempotent (ZADD), and each job is judged by its state now, in this
-- script: a job promoted or released meanwhile is in its part and is left out.
--
-- It walks `status:pending` by score (creation ms), not by rank: claims remove the
-- oldest entries all the time, and a rank would skip what moved down past it. Only
-- commands fleetd's documented ACL user has (docs/OPERATIONS.md).
--
-- KEYS[1] status:pending  KEYS[2] quota:backfilled (a marker: when this back-fill ended)
-- ARGV[1] prefix  ARGV[2] events caps  ARGV[3] cursor "<score>:<entries at that score
-- already seen>" ("-inf:0" to start)  ARGV[4] entries per step
-- Returns {next cursor ('0' when done: the marker is then set), jobs added}.
local pending, filled = KEYS[1], KEYS[2]
local low, seen = string.match(ARGV[3], '^(.-):(%d+)$')
local count = tonumber(ARGV[4])
local page = redis.call('ZRANGEBYSCORE', pending, low, '+inf', 'WITHSCORES',
  'LIMIT', seen, count)
local added = 0
for i = 1, #page, 2 do
  local id, score = page[i], page[i + 1]
  local h = redis.call('HMGET', job_key(id), 'status', 'type', 'company_id', 'queue')
  if h[1] == 'pending' and has_company(h[3])
      and not redis.call('ZSCORE', part_key(part_of(h[2], h[3]), h[4]), id) then
    added = added + redis.call('ZADD', later_key(h[3]), score, id)
  end
end
if #page < 2 * count then
  redis.call('SET', filled, now_ms())
  return {'0', added}
end
-- The next step starts at the last score, past the entries of it seen already.
local last, same = page[#page], 0
for i = #page, 2, -2 do
  if page[i] ~= last then break end
  same = same + 1
end
if last == low then same = same + tonumber(seen) end
return {last .. ':' .. same, added}
