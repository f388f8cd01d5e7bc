"""Workflows: graphs of jobs submitted in one call, released as their parents finish.

The package map: `spec` (the request's JSON shape and its shorthands), `plan` (checks
on the whole graph, the rows to store), `scripts` (typed calls of lua/wf_*.lua),
`store` (submit, read, cancel, resume), `answer` (the answer bodies), `start` (a node
starting: parents' results, condition, `$from`). The release of children happens in
Lua, in the same script that finishes the parent (lua/_workflow.lua). docs/WORKFLOWS.md
is the guide.
"""
