"""Fleet data: the data source and the job types working on FleetTracker's fleet data.

The plugin itself (its hooks) is `fleetd_plugins.fleetdata.plugin`, registered as
`fleetdata` in the entry-point group `fleetd.plugins`. This package imports nothing
heavy on its own, so `fleetd demo-data` (demo_cli.py) and the CLI stay quick to start.

    source.py          FleetData: SQLite or PostgreSQL behind one interface; the schema
    schema_*.sql       DDL and indexes, per database
    demo.py, demo_sim  the seeded demo fleet; demo_cli.py: `fleetd demo-data`
    reports.py         report_generation (figures in report_queries.py)
    exports.py         data_export (encoders in formats.py)
    reminders.py       maintenance_reminder (due logic in due.py)
    cleanup.py         data_cleanup
    period.py, scope.py, progress.py   date ranges, company scoping, progress events
"""
