"""The admin HTTP API (role api): a quart-trio app served by hypercorn inside the daemon.

Modules: server (the service and its lifecycle), app (routing, auth and audit hooks),
context (shared state, auth decisions, bounded Redis calls), errors (the JSON error
body), body (request limits), auth (JWT), jobs, scheduled, workers, probes (health,
readiness, metrics, OpenAPI, audit listing), audit, metrics, openapi.
"""
