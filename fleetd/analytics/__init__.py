"""Performance analytics: what the transition scripts record per job type and company,
and what is read back from it.

Owns: the histogram rule shared with fleetd/backend/lua/_analytics.lua and percentile
estimates from it (`histogram`), the time windows and the reading of the bucket hashes
(`store`), and the per-type report served by `GET /api/v1/admin/jobs/analytics` and
printed by `fleetd analytics` (`report`). Nothing here writes: the scripts do, inside
each claim, finish and enqueue, so the figures cost no round trip of their own.
"""
