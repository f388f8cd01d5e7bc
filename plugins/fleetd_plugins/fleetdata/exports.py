"""`data_export`: vehicles, drivers, trips or GPS tracks as CSV, JSON or XLSX.

Data: `{"export_type": "vehicles"|"drivers"|"trips"|"gps_tracks", "format":
"csv"|"json"|"xlsx" (default csv), "start_date", "end_date"}`; the dates (optional, either
or both, UTC, both included) apply to trips (by start time) and GPS tracks only.

Streamed: rows come from the database `[data] export_batch` at a time (a server-side
cursor on PostgreSQL, fetchmany on SQLite), each batch is encoded and written to the
artifact in a worker thread, and nothing else is kept, so memory stays flat for any
size (bench/export_memory.py measures a million GPS points). Progress is published
while it runs (rows done of the count taken at the start). The file is the job's
artifact, named `<export_type>_<period or all>.<format>`; the result lists it with its
row count. A retry writes the file again from the start (the artifact store replaces
it whole), so the job is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from fleetd import Config, HandlerDefaults, JobContext, JobHandler, ValidationError

from .config import DataConfig
from .formats import FORMATS, Column, CsvEncoder, JsonEncoder, XlsxBook, media_type, parse_columns
from .period import DATE, Period, parse_period
from .progress import Progress
from .scope import Scope
from .scratch import scratch_artifact
from .source import Db, FleetData

__all__ = ["EXPORTS", "DataExportHandler"]


@dataclass(frozen=True, slots=True)
class ExportSpec:
    table: str  # FROM clause, aliased
    alias: str
    columns: tuple[tuple[str, Column], ...]  # (SQL expression, output column)
    time_column: str | None  # filtered by start_date/end_date, or None
    order: str

    @property
    def out_columns(self) -> list[Column]:
        return [c for _, c in self.columns]


def _cols(alias: str, *spec: str) -> tuple[tuple[str, Column], ...]:
    """`"name:kind"` → (`alias.name`, Column(name, kind)); kind defaults to text."""
    return tuple((f"{alias}.{c.name}", c) for c in parse_columns(*spec))


EXPORTS: dict[str, ExportSpec] = {
    "vehicles": ExportSpec(
        "vehicles v", "v",
        _cols("v", "id", "company_id", "name", "plate_number", "make", "model", "year:int",
              "fuel_type", "status", "odometer_km:float", "service_interval_km:int",
              "service_interval_days:int", "in_service_date:date", "created_at:ts"),
        None, "v.company_id, v.name, v.id",
    ),
    "drivers": ExportSpec(
        "drivers d", "d",
        _cols("d", "id", "company_id", "name", "email", "phone", "role", "license_number",
              "status", "hired_on:date", "created_at:ts"),
        None, "d.company_id, d.name, d.id",
    ),
    "trips": ExportSpec(
        "trips t LEFT JOIN vehicles v ON v.id = t.vehicle_id "
        "LEFT JOIN drivers d ON d.id = t.driver_id", "t",
        (*_cols("t", "id", "company_id", "vehicle_id"),
         ("v.name", Column("vehicle_name")), ("v.plate_number", Column("plate_number")),
         *_cols("t", "driver_id"), ("d.name", Column("driver_name")),
         *_cols("t", "started_at:ts", "ended_at:ts", "distance_km:float", "duration_s:int",
                "fuel_used_l:float")),
        "t.started_at", "t.started_at, t.id",
    ),
    "gps_tracks": ExportSpec(
        "gps_tracks g", "g",
        _cols("g", "id:int", "company_id", "vehicle_id", "trip_id", "recorded_at:ts",
              "latitude:float", "longitude:float", "speed_kmh:float", "heading:int"),
        "g.recorded_at", "g.recorded_at, g.id",
    ),
}  # fmt: skip

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "export_type": {"enum": list(EXPORTS)},
        "format": {"enum": list(FORMATS)},
        "start_date": DATE,
        "end_date": DATE,
    },
    "required": ["export_type"],
    "additionalProperties": False,
}


def export_query(spec: ExportSpec, scope: Scope, period: Period) -> tuple[str, str, dict[str, Any]]:
    """(the SELECT, its COUNT, parameters) for one export."""
    where = "1 = 1" + scope.where(spec.alias)
    params = scope.params()
    if spec.time_column is not None:
        if period.start_ts is not None:
            where += f" AND {spec.time_column} >= :start_ts"
            params["start_ts"] = period.start_ts
        if period.end_ts is not None:
            where += f" AND {spec.time_column} < :end_ts"
            params["end_ts"] = period.end_ts
    select = ", ".join(expr for expr, _ in spec.columns)
    base = spec.table.split()[0] + " " + spec.alias  # the count needs no joins
    return (
        f"SELECT {select} FROM {spec.table} WHERE {where} ORDER BY {spec.order}",
        f"SELECT COUNT(*) FROM {base} WHERE {where}",
        params,
    )


def _new_book(path: Path, title: str, columns: list[Column]) -> XlsxBook:
    book = XlsxBook(path)
    book.sheet(title, columns)  # opens openpyxl's temporary sheet file
    return book


def _count(db: Db, sql: str, params: dict[str, Any]) -> int:
    return int(db.value(sql, params) or 0)


class DataExportHandler(JobHandler):
    job_type = "data_export"
    description = "Export vehicles, drivers, trips or GPS tracks as CSV, JSON or XLSX"
    schema = SCHEMA
    # A million GPS points take ~5 s as CSV and ~40 s as XLSX; an hour covers far more.
    # A child process of its own, as report_generation: an export's memory and CPU are
    # the child's, and a runaway one is killed without touching the daemon.
    defaults = HandlerDefaults(timeout=3600.0, isolation="process")

    def __init__(self, source: FleetData, config: Config) -> None:
        self.source = source
        self.batch = config.section(DataConfig).export_batch

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        spec = EXPORTS[data["export_type"]]
        if spec.time_column is None:
            for name in ("start_date", "end_date"):
                if name in data:
                    raise ValidationError(
                        f"data.{name}", "applies to the trips and gps_tracks exports only"
                    )
        parse_period(data, both_or_neither=False)
        return {**data, "format": data.get("format", "csv")}

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        kind, fmt = data["export_type"], data.get("format", "csv")
        spec = EXPORTS[kind]
        scope = Scope.of(ctx.company_id)
        period = parse_period(data, both_or_neither=False)
        select, count, params = export_query(spec, scope, period)
        name = f"{kind}_{period.label() if spec.time_column else 'all'}.{fmt}"
        columns = spec.out_columns
        async with self.source.session() as s:
            total = await s.run(_count, count, params)
            progress = Progress(ctx, total)
            await progress.update(0, f"exporting {total:,} {kind} rows as {fmt}", final=False)
            async with s.stream(select, params, self.batch) as (_names, batches):
                if fmt == "xlsx":
                    rows = await self._xlsx(ctx, name, kind, columns, batches, progress)
                else:
                    rows = await self._text(ctx, name, fmt, columns, batches, progress)
        await progress.update(rows, f"exported {rows:,} rows", final=True)
        return {
            "export_type": kind,
            "format": fmt,
            "rows": rows,
            "columns": [c.name for c in columns],
            "company_id": scope.company_id,
            **({"period": period.to_dict()} if spec.time_column else {}),
            "file": name,
            "media_type": media_type(fmt),
        }

    @staticmethod
    async def _text(
        ctx: JobContext,
        name: str,
        fmt: str,
        columns: list[Column],
        batches: Any,
        progress: Progress,
    ) -> int:
        encoder = CsvEncoder(columns) if fmt == "csv" else JsonEncoder(columns)
        rows = 0
        async with ctx.artifacts.open(name) as out:
            await out.write(encoder.begin())
            async for batch in batches:
                await out.write(await trio.to_thread.run_sync(encoder.rows, batch))
                rows += len(batch)
                await progress.update(rows, f"{rows:,} rows written")
            await out.write(encoder.end())
        return rows

    @staticmethod
    async def _xlsx(
        ctx: JobContext, name: str, kind: str, columns: list[Column], batches: Any,
        progress: Progress,
    ) -> int:  # fmt: skip
        rows = 0
        async with scratch_artifact(ctx.artifacts, name) as tmp:
            book = await trio.to_thread.run_sync(_new_book, tmp, kind, columns)
            async for batch in batches:
                await trio.to_thread.run_sync(book.append, batch)
                rows += len(batch)
                await progress.update(rows, f"{rows:,} rows written")
            await trio.to_thread.run_sync(book.save)
        return rows
