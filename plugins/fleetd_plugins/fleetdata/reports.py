"""`report_generation`: the spec's four reports over a date range, as JSON, CSV or XLSX.

Data: `{"report_type": "fleet_summary"|"driver_performance"|"fuel_consumption"|
"maintenance", "start_date": "2024-01-01", "end_date": "2024-01-31", "format":
"json"|"csv"|"xlsx"}`. Dates are ISO, UTC, both included, start ≤ end, at most
`[data] report_max_days` apart; give both or neither (neither: the previous calendar
month of the day the job was created, which is what the monthly default schedule runs).
`format` defaults to json. Everything is checked at enqueue.

The result holds the summary figures (`summary`), the period, the scope and the row
count; the artifact `<report_type>_<start>_<end>.<format>` holds the full report: JSON
`{report_type, company_id, period, generated_at, summary, rows: [objects], sections}`;
CSV the main table (one row per vehicle or driver); XLSX a Summary sheet, the main
table and one sheet per extra section. Figures are computed in report_queries.py.
Re-running the job rewrites the same file from the same data: idempotent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from fleetd import Config, HandlerDefaults, JobContext, JobHandler

from .config import DataConfig
from .formats import FORMATS, Column, CsvEncoder, XlsxBook, media_type
from .period import DATE, Period, parse_period, previous_month
from .report_queries import BUILDERS, Report
from .scope import Scope
from .scratch import scratch_artifact
from .source import FleetData

__all__ = ["ReportGenerationHandler"]

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "report_type": {"enum": list(BUILDERS)},
        "start_date": DATE,
        "end_date": DATE,
        "format": {"enum": list(FORMATS)},
    },
    "required": ["report_type"],
    "additionalProperties": False,
}


def _flatten(prefix: str, value: Any) -> list[tuple[str, Any]]:
    """Summary figures as (name, value) lines for a Summary sheet."""
    if isinstance(value, dict):
        return [
            kv for k, v in value.items() for kv in _flatten(f"{prefix}.{k}" if prefix else k, v)
        ]
    return [(prefix, value)]


def _document(kind: str, scope: Scope, period: Period, report: Report) -> dict[str, Any]:
    def objects(columns: list[Column], rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
        return [dict(zip((c.name for c in columns), row, strict=True)) for row in rows]

    return {
        "report_type": kind,
        "company_id": scope.company_id,
        "period": period.to_dict(),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "summary": report.summary,
        "rows": objects(report.columns, report.rows),
        "sections": {name: objects(*table) for name, table in report.sections.items()},
    }


def _write_xlsx(path: Path, kind: str, scope: Scope, period: Period, report: Report) -> None:
    book = XlsxBook(path)
    head = [("report_type", kind), ("company_id", scope.company_id or "all companies"),
            ("start_date", str(period.start)), ("end_date", str(period.end))]  # fmt: skip
    book.sheet("Summary", [Column("figure"), Column("value")])
    book.append(head + [(k, json.dumps(v) if isinstance(v, list) else v)
                        for k, v in _flatten("", report.summary)])  # fmt: skip
    book.sheet(report.title, report.columns)
    book.append(report.rows)
    for name, (columns, rows) in report.sections.items():
        book.sheet(name, columns)
        book.append(rows)
    book.save()


class ReportGenerationHandler(JobHandler):
    job_type = "report_generation"
    description = "Fleet summary, driver performance, fuel or maintenance report (JSON/CSV/XLSX)"
    schema = SCHEMA
    # One aggregate query per table: seconds on millions of rows.
    # A child process of its own (docs/PLUGINS.md, "Isolation modes"): a report over a
    # big fleet must not take the daemon's memory or its event loop with it.
    defaults = HandlerDefaults(timeout=600.0, isolation="process")

    def __init__(self, source: FleetData, config: Config) -> None:
        self.source = source
        self.max_days = config.section(DataConfig).report_max_days

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        parse_period(data, both_or_neither=True, max_days=self.max_days)
        return {**data, "format": data.get("format", "json")}

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        kind, fmt = data["report_type"], data.get("format", "json")
        scope = Scope.of(ctx.company_id)
        period = parse_period(data, both_or_neither=True)
        if period.start is None:
            period = previous_month(ctx.job.created_at_ms)
        today = datetime.now(UTC).date()
        await ctx.progress(10, f"computing the {kind} report for {period.label()}")
        report = await self.source.run(BUILDERS[kind], scope, period, today)
        await ctx.progress(80, f"writing {fmt}")
        name = f"{kind}_{period.label()}.{fmt}"
        await self._write(ctx, name, fmt, kind, scope, period, report)
        return {
            "report_type": kind,
            "format": fmt,
            "company_id": scope.company_id,
            "period": period.to_dict(),
            "summary": report.summary,
            "rows": len(report.rows),
            "file": name,
            "media_type": media_type(fmt),
        }

    @staticmethod
    async def _write(
        ctx: JobContext, name: str, fmt: str, kind: str, scope: Scope, period: Period,
        report: Report,
    ) -> None:  # fmt: skip
        if fmt == "json":
            doc = _document(kind, scope, period, report)
            payload = await trio.to_thread.run_sync(
                lambda: json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")
            )
            await ctx.artifacts.write_bytes(name, payload)
        elif fmt == "csv":
            enc = CsvEncoder(report.columns)

            def chunks() -> Iterator[bytes]:  # consumed in a worker thread
                yield enc.begin()
                yield enc.rows(report.rows)

            await ctx.artifacts.write_chunks(name, chunks())
        else:
            async with scratch_artifact(ctx.artifacts, name) as tmp:
                await trio.to_thread.run_sync(_write_xlsx, tmp, kind, scope, period, report)
