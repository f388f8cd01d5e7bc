"""Templates: named, versioned job and workflow definitions with JSON Schema parameters.

`model` (the declaration, its checks, and rendering parameters into it), `store`
(saving versions in Redis, reading, listing, deleting, running one). docs/WORKFLOWS.md
("Templates") is the guide.
"""
