"""Schedules: the model, cadence (when they fire), the store, firing, and the scheduler service."""
