"""`fleetd template …`: manage and run templates from the command line.

Actions: `add FILE` (a template's JSON, `-` for stdin; each add is a new version),
`list`, `show NAME [--version N]`, `run NAME [--params JSON] [--version N]`, `rm NAME`.
Each is one call of fleetd.templates.store (the operations the HTTP API uses) against
Redis directly, as a platform admin (`--company` picks a company's template; running
one creates that company's job or workflow); add, run and rm are audited. `--json`
prints the body of the matching HTTP endpoint. Errors are one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from fleetd.audit.entry import Action
from fleetd.cli.auditing import recorded
from fleetd.cli.common import CliError, parse_json, print_json
from fleetd.cli.workflows import read_json_file

if TYPE_CHECKING:
    from fleetd.engine import Engine

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("template", help="save, list, show, run or remove a template")
    acts = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = acts.add_parser("add", help="save a template from a JSON file (- for stdin)")
    a.add_argument("file")
    acts.add_parser("list", help="every template (its latest version)")
    for name, text in (("show", "one template"), ("run", "create its job or workflow"),
                       ("rm", "delete every version")):  # fmt: skip
        x = acts.add_parser(name, help=text)
        x.add_argument("name")
        x.add_argument("--company", help="a company's template (default: the platform's)")
        if name != "rm":
            x.add_argument("--version", type=int)
        if name == "run":
            x.add_argument("--params", default="{}", help="the parameters as a JSON object")
    for action in acts.choices.values():
        action.add_argument("--json", action="store_true")


def run(engine: Engine, a: argparse.Namespace) -> int:
    from fleetd.templates.model import TemplateSpec
    from fleetd.templates.store import TemplateOps
    from fleetd.workflows.spec import parse_model

    ops = TemplateOps(engine.ops)
    call = engine.link.run_sync
    if a.action == "add":
        raw = read_json_file(a.file)
        with recorded(engine, Action.TEMPLATE_SAVE) as rec:
            spec = parse_model(TemplateSpec, raw)
            rec.target, rec.company_id = spec.name, spec.company_id
            saved = call(ops.save, spec)
            rec.detail = {"version": saved["version"], "kind": saved["kind"]}
        _out(a, {"template": saved}, f"{saved['name']} version {saved['version']}")
        return 0
    if a.action == "list":
        found = call(ops.list, None)
        _out(a, {"templates": found, "count": len(found)},
             "\n".join(f"{t['name']:<32} v{t['latest']} {t['kind']}" for t in found))  # fmt: skip
        return 0
    if a.action == "show":
        got = call(ops.get, a.name, a.company, a.version)
        if got is None:
            raise CliError(f"no template {a.name!r}")
        print_json({"template": got})
        return 0
    if a.action == "rm":
        with recorded(engine, Action.TEMPLATE_DELETE, a.name, a.company) as rec:
            deleted = call(ops.delete, a.name, a.company)
            rec.outcome = None if deleted else "not_found"
        if not deleted:
            raise CliError(f"no template {a.name!r}")
        _out(a, {"name": a.name, "deleted": True}, f"{a.name} deleted")
        return 0
    params = parse_json(a.params, "--params is not JSON")
    with recorded(engine, Action.TEMPLATE_RUN, a.name, a.company) as rec:
        result = call(lambda c: ops.run(c, a.name, params, company=a.company, version=a.version))
        if result is None:
            rec.outcome = "not_found"
        else:
            rec.detail = {"version": result.version, "kind": result.kind, "id": result.id}
    if result is None:
        raise CliError(f"no template {a.name!r}")
    key = "job_id" if result.kind == "job" else "workflow_id"
    body = {"template": a.name, "version": result.version, "kind": result.kind, key: result.id}
    _out(a, body, result.id)
    return 0


def _out(a: argparse.Namespace, body: dict[str, Any], human: str) -> None:
    print_json(body) if a.json else print(human)
