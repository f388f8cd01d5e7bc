"""The OpenAPI document: it lists exactly the app's routes, and schemathesis checks a
live daemon's answers against it (status codes, content types, response schemas, no
server error), with bounded examples so the suite stays quick."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from api_client import auth
from conftest import fleetd_env, make_config
from daemons import Fleet
from hypothesis import HealthCheck, given, settings
from redis_server import RedisServer
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fleetd.api.openapi import document
from fleetd.config import Config

# Examples per operation: enough to hit each error branch of every endpoint, few enough
# that the run takes seconds (about 25 operations).
EXAMPLES = 15
_PARAM = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")
_NAMES = {
    "job_id": "id", "schedule_id": "id", "workflow_id": "id", "status": "status", "name": "name",
    "job_type": "job_type", "company_id": "company_id",
}  # fmt: skip


def route_table(app: Any) -> set[tuple[str, str]]:
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("web."):
            continue  # the dashboard's static files (tests/api/test_web.py): a page, not the API
        path = _PARAM.sub(lambda m: "{" + _NAMES[m.group(1)] + "}", rule.rule)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            out.add((method.lower(), path))
    return out


async def test_document_lists_exactly_the_routes(config: Config) -> None:
    from api_client import api_config, running_api

    async with running_api(api_config(config)) as api:
        assert api.daemon.http is not None
        routes = route_table(api.daemon.http.app)
        doc = document()
        documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
        assert routes == documented
        served = (await api.client.get("/api/v1/openapi.json")).json()
        assert served == json.loads(json.dumps(doc))
        assert served["openapi"].startswith("3.1")


def test_document_references_resolve() -> None:
    doc = document()
    text = json.dumps(doc)
    for name in set(re.findall(r"#/components/schemas/(\w+)", text)):
        assert name in doc["components"]["schemas"], name


@pytest.fixture(scope="module")
def live_url(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One `fleetd run --roles api,worker` subprocess for the whole module."""
    namespace = f"t{uuid.uuid4().hex}"
    workdir = tmp_path_factory.mktemp("schemathesis")
    cfg = make_config(redis_server.url, namespace, workdir / "state")
    from api_client import SECRET

    env = fleetd_env(cfg) | {"FLEETD_AUTH_SECRET": SECRET, "FLEETD_HTTP_METRICS_AUTH": "false"}
    fleet = Fleet(workdir)
    try:
        fleet.start(env, "--roles", "api,worker")
        yield fleet.api_url(Path(cfg.state_dir))
    finally:
        fleet.close()
        redis_server.delete_matching(f"fleetd:{{{namespace}}}:*")


def test_api_conforms_to_its_document(live_url: str) -> None:
    """Each operation of the document, EXAMPLES generated cases (schemathesis's pytest
    plugin does not load under pytest 9, so the cases are driven by hypothesis here)."""
    schema = schemathesis.openapi.from_dict(document())
    operations: list[Any] = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 20
    failures = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            response = case.call(base_url=live_url, headers=auth(), timeout=10)
            case.validate_response(
                response,
                checks=[
                    not_a_server_error,
                    status_code_conformance,
                    content_type_conformance,
                    response_schema_conformance,
                ],
            )

        try:
            check()
        except Exception as exc:  # collect every operation's failure, then report
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
