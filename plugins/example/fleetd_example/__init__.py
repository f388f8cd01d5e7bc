"""An example fleetd plugin: the `trip_costs` job type.

Prices the fuel of a list of trips, writes one CSV row per trip as an artifact
(`trip-costs.csv`) and returns the totals. It shows the parts of the contract: a
schema checked at enqueue, an extra check in `validate`, defaults, progress, an
artifact, and blocking work (building the CSV) kept off the trio thread.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from fleetd import FieldError, HandlerDefaults, JobContext, JobHandler, ValidationError, hookimpl

__all__ = ["TripCostsHandler", "fleetd_handlers"]

# A thousand trips fill a month of a large fleet; more belongs in a data export job.
MAX_TRIPS = 1000
# A month of driving for a large fleet; more is a typo in a distance.
MAX_TOTAL_KM = 1_000_000

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "fuel_price": {"type": "number", "exclusiveMinimum": 0},
        "consumption_l_per_100km": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "trips": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_TRIPS,
            "items": {
                "type": "object",
                "properties": {
                    "vehicle_id": {"type": "string", "minLength": 1},
                    "distance_km": {"type": "number", "minimum": 0},
                },
                "required": ["vehicle_id", "distance_km"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["fuel_price", "consumption_l_per_100km", "trips"],
    "additionalProperties": False,
}


class TripCostsHandler(JobHandler):
    job_type = "trip_costs"
    description = "Fuel cost of trips, as a CSV artifact and totals"
    schema = SCHEMA
    defaults = HandlerDefaults(priority=1, max_retries=2, timeout=120.0)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        # What a schema cannot say: a limit on the sum of all trips. Runs after the
        # schema passed, so the shape is known; report every offending field.
        total = sum(t["distance_km"] for t in data["trips"])
        if total > MAX_TOTAL_KM:
            raise ValidationError.of(
                [FieldError("data.trips", f"{total:g} km in all; at most {MAX_TOTAL_KM} km")]
            )
        return {"currency": "EUR", **data}  # the stored data says which currency

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        litres_per_km = data["consumption_l_per_100km"] / 100
        rows = [
            (t["vehicle_id"], t["distance_km"], round(t["distance_km"] * litres_per_km, 3))
            for t in data["trips"]
        ]
        await ctx.progress(50, f"{len(rows)} trips priced")
        artifact = await ctx.artifacts.write_chunks(
            "trip-costs.csv", _csv(rows, data["fuel_price"], data["currency"])
        )
        litres = round(sum(r[2] for r in rows), 3)
        ctx.logger.info("priced %d trips: %s l", len(rows), litres)
        return {
            "trips": len(rows),
            "litres": litres,
            "cost": round(litres * data["fuel_price"], 2),
            "currency": data["currency"],
            "csv_sha256": artifact.sha256,
        }


def _csv(rows: list[tuple[str, float, float]], price: float, currency: str) -> Iterator[bytes]:
    """CSV in chunks; consumed in a worker thread by the artifact store."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["vehicle_id", "distance_km", "litres", f"cost_{currency.lower()}"])
    for vehicle, km, litres in rows:
        writer.writerow([vehicle, km, litres, round(litres * price, 2)])
        if out.tell() > 64_000:
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
    yield out.getvalue().encode()


@hookimpl
def fleetd_handlers() -> list[JobHandler]:
    return [TripCostsHandler()]
