"""The `fleetd` command line."""
