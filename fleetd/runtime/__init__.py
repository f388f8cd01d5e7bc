"""The daemon and its services: worker pool, maintenance, heartbeat, alerts, event hub, systemd."""
