-- promote.lua: move due delayed jobs (run_at reached, retry backoff over) to the queue
-- and wake idle fetchers on every daemon.
--
-- KEYS[1] queue  KEYS[2] delayed  KEYS[3] seq  KEYS[4] status:pending
-- KEYS[5] status:retrying  KEYS[6] wake
-- ARGV[1] prefix  ARGV[2] events caps (unused)  ARGV[3] wake token cap
-- Returns {moved, next due ms or -1, now}.
local queue, delayed, seq_key = KEYS[1], KEYS[2], KEYS[3]
local pending_idx, retrying_idx, wake = KEYS[4], KEYS[5], KEYS[6]
local now = now_ms()
local moved = promote(queue, delayed, seq_key, pending_idx, retrying_idx, now)
wake_up(wake, moved, tonumber(ARGV[3]))
return {moved, next_due(delayed), now}
