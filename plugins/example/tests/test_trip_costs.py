"""The example plugin's own tests: its handler run inline with fleetd.testing."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest
from fleetd_example import TripCostsHandler

from fleetd import ValidationError
from fleetd.testing import Harness, run_handler

DATA = {
    "fuel_price": 2.0,
    "consumption_l_per_100km": 10,
    "trips": [{"vehicle_id": "v1", "distance_km": 100}, {"vehicle_id": "v2", "distance_km": 50}],
}


def test_prices_the_trips_and_writes_the_csv(tmp_path: Path) -> None:
    result = run_handler(TripCostsHandler(), DATA, tmp_path=tmp_path, company_id="c1")
    assert (result["trips"], result["litres"], result["cost"]) == (2, 15.0, 30.0)
    assert result["currency"] == "EUR"  # filled in by validate
    [artifact] = result["artifacts"]
    path = Path(artifact["path"])
    assert artifact["name"] == "trip-costs.csv" and path.is_absolute()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == artifact["sha256"]
    assert artifact["sha256"] == result["csv_sha256"]
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["cost_eur"] for r in rows] == ["20.0", "10.0"]


def test_bad_data_is_refused_with_every_field_error(tmp_path: Path) -> None:
    bad = {"fuel_price": 0, "consumption_l_per_100km": 8, "trips": [{"distance_km": -1}]}
    with pytest.raises(ValidationError) as info:
        run_handler(TripCostsHandler(), bad, tmp_path=tmp_path)
    assert [str(e) for e in info.value.errors] == [
        "data.fuel_price: must be more than 0, got 0",
        "data.trips[0].distance_km: must be at least 0, got -1",
        "data.trips[0].vehicle_id: is required",
    ]


def test_the_total_distance_is_checked_by_validate(tmp_path: Path) -> None:
    far = dict(DATA, trips=[{"vehicle_id": "v", "distance_km": 600_000}] * 2)
    with pytest.raises(ValidationError, match=r"data.trips: 1.2e\+06 km in all"):
        run_handler(TripCostsHandler(), far, tmp_path=tmp_path)


def test_progress_is_recorded(tmp_path: Path) -> None:
    with Harness([TripCostsHandler()], tmp_path=tmp_path) as harness:
        harness.run_sync("trip_costs", DATA)
        job = harness.job(harness.last_job_id)
        assert job.progress == {"percent": 50.0, "message": "2 trips priced"}
