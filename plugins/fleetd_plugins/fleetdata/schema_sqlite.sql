-- The fleet data tables on SQLite (fleetd's embedded default and quick tests).
--
-- Same tables, columns and indexes as schema_postgresql.sql; only the types differ:
-- ids are TEXT (UUIDs, lower case) or INTEGER (log tables), timestamps TEXT in UTC as
-- 'YYYY-MM-DDTHH:MM:SSZ' (so text order is time order and range scans use the indexes),
-- dates TEXT 'YYYY-MM-DD'. Every statement is idempotent: run on each first use.

CREATE TABLE IF NOT EXISTS companies (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS vehicles (
    id                    TEXT PRIMARY KEY,
    company_id            TEXT NOT NULL REFERENCES companies (id),
    name                  TEXT NOT NULL,
    plate_number          TEXT NOT NULL,
    make                  TEXT NOT NULL,
    model                 TEXT NOT NULL,
    year                  INTEGER NOT NULL,
    fuel_type             TEXT NOT NULL,
    status                TEXT NOT NULL DEFAULT 'active'
                          CHECK (status IN ('active', 'maintenance', 'retired')),
    odometer_km           REAL NOT NULL DEFAULT 0,
    service_interval_km   INTEGER NOT NULL CHECK (service_interval_km > 0),
    service_interval_days INTEGER NOT NULL CHECK (service_interval_days > 0),
    in_service_date       TEXT NOT NULL,
    created_at            TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS vehicles_company ON vehicles (company_id, name);

-- Drivers and the people who manage them: role 'fleet_manager' receives reminders.
CREATE TABLE IF NOT EXISTS drivers (
    id              TEXT PRIMARY KEY,
    company_id      TEXT NOT NULL REFERENCES companies (id),
    name            TEXT NOT NULL,
    email           TEXT,
    phone           TEXT,
    role            TEXT NOT NULL DEFAULT 'driver' CHECK (role IN ('driver', 'fleet_manager')),
    license_number  TEXT,
    status          TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    hired_on        TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS drivers_company ON drivers (company_id, role, name);

CREATE TABLE IF NOT EXISTS trips (
    id           TEXT PRIMARY KEY,
    company_id   TEXT NOT NULL REFERENCES companies (id),
    vehicle_id   TEXT NOT NULL REFERENCES vehicles (id),
    driver_id    TEXT REFERENCES drivers (id),
    started_at   TEXT NOT NULL,
    ended_at     TEXT NOT NULL,
    distance_km  REAL NOT NULL,
    duration_s   INTEGER NOT NULL,
    fuel_used_l  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS trips_company_time ON trips (company_id, started_at);
CREATE INDEX IF NOT EXISTS trips_time ON trips (started_at);

-- High-volume log tables: no foreign keys (each would be checked on every insert).
CREATE TABLE IF NOT EXISTS gps_tracks (
    id           INTEGER PRIMARY KEY,
    company_id   TEXT NOT NULL,
    vehicle_id   TEXT NOT NULL,
    trip_id      TEXT,
    recorded_at  TEXT NOT NULL,
    latitude     REAL NOT NULL,
    longitude    REAL NOT NULL,
    speed_kmh    REAL NOT NULL,
    heading      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS gps_tracks_company_time ON gps_tracks (company_id, recorded_at);
CREATE INDEX IF NOT EXISTS gps_tracks_time ON gps_tracks (recorded_at);

CREATE TABLE IF NOT EXISTS fuel_logs (
    id               TEXT PRIMARY KEY,
    company_id       TEXT NOT NULL REFERENCES companies (id),
    vehicle_id       TEXT NOT NULL REFERENCES vehicles (id),
    driver_id        TEXT REFERENCES drivers (id),
    filled_at        TEXT NOT NULL,
    liters           REAL NOT NULL,
    price_per_liter  REAL NOT NULL,
    total_cost       REAL NOT NULL,
    odometer_km      REAL NOT NULL,
    station          TEXT
);
CREATE INDEX IF NOT EXISTS fuel_logs_company_time ON fuel_logs (company_id, filled_at);
CREATE INDEX IF NOT EXISTS fuel_logs_time ON fuel_logs (filled_at);

CREATE TABLE IF NOT EXISTS maintenance_logs (
    id                TEXT PRIMARY KEY,
    company_id        TEXT NOT NULL REFERENCES companies (id),
    vehicle_id        TEXT NOT NULL REFERENCES vehicles (id),
    maintenance_type  TEXT NOT NULL,
    description       TEXT,
    service_date      TEXT NOT NULL,
    odometer_km       REAL NOT NULL,
    cost              REAL NOT NULL DEFAULT 0,
    vendor            TEXT
);
CREATE INDEX IF NOT EXISTS maintenance_logs_company_date
    ON maintenance_logs (company_id, service_date);
CREATE INDEX IF NOT EXISTS maintenance_logs_date ON maintenance_logs (service_date);
-- The last service of a type, per vehicle (reminders, the maintenance report).
CREATE INDEX IF NOT EXISTS maintenance_logs_vehicle_type
    ON maintenance_logs (vehicle_id, maintenance_type, service_date);

CREATE TABLE IF NOT EXISTS driver_events (
    id           INTEGER PRIMARY KEY,
    company_id   TEXT NOT NULL,
    driver_id    TEXT,
    vehicle_id   TEXT NOT NULL,
    trip_id      TEXT,
    event_type   TEXT NOT NULL,
    severity     TEXT NOT NULL,
    occurred_at  TEXT NOT NULL,
    latitude     REAL,
    longitude    REAL,
    speed_kmh    REAL
);
CREATE INDEX IF NOT EXISTS driver_events_company_time ON driver_events (company_id, occurred_at);
CREATE INDEX IF NOT EXISTS driver_events_time ON driver_events (occurred_at);

CREATE TABLE IF NOT EXISTS audit_logs (
    id           INTEGER PRIMARY KEY,
    company_id   TEXT,
    user_id      TEXT,
    action       TEXT NOT NULL,
    entity_type  TEXT,
    entity_id    TEXT,
    details      TEXT,
    created_at   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_logs_company_time ON audit_logs (company_id, created_at);
CREATE INDEX IF NOT EXISTS audit_logs_time ON audit_logs (created_at);

-- One row per vehicle, maintenance type and due point (the odometer reading and the
-- date at which the service falls due): a second check of the same due service finds
-- the row and creates nothing. notified_at is set once its e-mails are enqueued.
CREATE TABLE IF NOT EXISTS maintenance_reminders (
    id                TEXT PRIMARY KEY,
    company_id        TEXT NOT NULL REFERENCES companies (id),
    vehicle_id        TEXT NOT NULL REFERENCES vehicles (id),
    maintenance_type  TEXT NOT NULL,
    due_odometer_km   INTEGER NOT NULL,
    due_date          TEXT NOT NULL,
    reason            TEXT NOT NULL,
    odometer_km       REAL NOT NULL,
    created_at        TEXT NOT NULL,
    job_id            TEXT,
    notified_at       TEXT,
    emails            INTEGER NOT NULL DEFAULT 0,
    UNIQUE (vehicle_id, maintenance_type, due_odometer_km, due_date)
);
CREATE INDEX IF NOT EXISTS maintenance_reminders_company
    ON maintenance_reminders (company_id, created_at);
