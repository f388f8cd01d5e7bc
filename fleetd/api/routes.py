"""The admin API's route table: which blueprints make the app, routed strictly.

Owns the list of endpoint modules and `install()`, which registers them on an app with
routing that never guesses (no merged slashes, no redirect for a trailing slash), and
`route_table()`: every API route with its view, the dashboard's files left out — what
fleetd.api.app serves and fleetd.api.openapi describes, from one list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from quart import Quart
from quart_trio import QuartTrio

from fleetd.api import (
    analytics,
    enqueue,
    jobs,
    probes,
    quarantines,
    queues,
    scheduled,
    templates,
    web,
    workers,
    workflows,
    ws,
)

__all__ = ["install", "route_table"]

# The dashboard's static files (fleetd.api.web) are a page, not the API.
_NOT_API = "web."


def install(app: Quart) -> None:
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = True
    app.url_map.redirect_defaults = False
    for module in (
        enqueue,
        jobs,
        analytics,
        scheduled,
        workflows,
        templates,
        workers,
        quarantines,
        queues,
        probes,
        web,
        ws,
    ):
        app.register_blueprint(module.bp)


def route_table() -> Iterator[tuple[Any, Callable[..., Any]]]:
    """Every API route as (rule, view), from an app built for the purpose."""
    app = QuartTrio("fleetd.api", static_folder=None)
    install(app)
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith(_NOT_API):
            yield rule, app.view_functions[rule.endpoint]
