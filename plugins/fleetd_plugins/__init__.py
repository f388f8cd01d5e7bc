"""fleetd's built-in job types, shipped inside the fleetd distribution as plugins.

Each module here is one plugin, registered through the same entry-point group
(`fleetd.plugins`) third-party plugins use, and each imports only fleetd's public API
(`from fleetd import ...`; a test pins that). Disable one with `[plugins] disable`.
"""
