"""`fleetd workflow …`: run and follow workflows from the command line.

Actions: `run FILE` (a workflow's JSON, `-` for stdin; docs/WORKFLOWS.md), `show ID`,
`cancel ID`, `resume ID`. Each is one call of fleetd.workflows.store (the operations
the HTTP API uses) against Redis directly, audited (door cli). `--json` prints the body
of the matching HTTP endpoint; `run --wait` waits for the workflow to end and exits 1
unless it completed. Errors are one line on stderr and exit code 2 — a refused
workflow prints every problem on that line.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from fleetd.audit.entry import Action
from fleetd.cli.auditing import recorded
from fleetd.cli.common import CliError, parse_json, print_json, read_input

if TYPE_CHECKING:
    from fleetd.engine import Engine
    from fleetd.workflows.answer import WorkflowAnswer

__all__ = ["add_parser", "run"]

EXIT_UNFINISHED = 1
# How often `run --wait` reads the workflow: a person waits, Redis hardly notices.
WAIT_POLL = 0.2
_FINAL = ("completed", "failed", "cancelled")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("workflow", help="run, show, cancel or resume a workflow")
    acts = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = acts.add_parser("run", help="run a workflow from a JSON file (- for stdin)")
    r.add_argument("file")
    r.add_argument(
        "--wait", action="store_true", help="wait until it ends; exit 1 unless completed"
    )
    r.add_argument("--json", action="store_true")
    for name, text in (("show", "every node's state"), ("cancel", "cancel it"),
                       ("resume", "run a failed or cancelled one again")):  # fmt: skip
        a = acts.add_parser(name, help=text)
        a.add_argument("workflow_id")
        a.add_argument("--json", action="store_true")


def read_json_file(path: str) -> Any:
    """The JSON in `path` (`-`: stdin); a usage error when unreadable or not JSON."""
    return parse_json(read_input(path), f"{path} is not JSON")


def _summary(answer: WorkflowAnswer) -> str:
    counts = ", ".join(f"{n} {state}" for state, n in sorted(answer.counts.items()))
    return f"{answer.id} {answer.status} ({counts})"


def run(engine: Engine, a: argparse.Namespace) -> int:
    from fleetd.workflows.store import WorkflowOps

    ops = WorkflowOps(engine.ops)
    call = engine.link.run_sync
    if a.action == "run":
        raw = read_json_file(a.file)
        with recorded(engine, Action.WORKFLOW_RUN) as rec:
            if isinstance(raw, dict) and isinstance(raw.get("company_id"), str):
                rec.company_id = raw["company_id"]
            plan = ops.plan(raw)
            submitted = call(ops.submit, plan)
            rec.target = plan.workflow_id
            rec.detail = {"name": plan.meta["name"], "nodes": len(plan.nodes)}
        if not a.wait:
            print_json(submitted.jsonable()) if a.json else print(plan.workflow_id)
            return 0
        while (
            answer := call(ops.get, plan.workflow_id)
        ) is not None and answer.status not in _FINAL:
            time.sleep(WAIT_POLL)
        return _show(
            answer,
            plan.workflow_id,
            a.json,
            0 if answer and answer.status == "completed" else EXIT_UNFINISHED,
        )
    if a.action == "show":
        return _show(call(ops.get, a.workflow_id), a.workflow_id, a.json, 0)
    action = Action.WORKFLOW_CANCEL if a.action == "cancel" else Action.WORKFLOW_RESUME
    with recorded(engine, action, a.workflow_id) as rec:
        exists, rec.company_id = call(ops.company_of, a.workflow_id)
        result = call(ops.cancel if a.action == "cancel" else ops.resume, a.workflow_id)
        if result.outcome in ("missing", "final", "refused"):
            rec.outcome = "not_found" if result.outcome == "missing" else "conflict"
    if result.outcome == "missing" or not exists:
        raise CliError(f"no workflow {a.workflow_id!r}")
    if result.outcome in ("final", "refused"):
        raise CliError(f"workflow {a.workflow_id} is {result.status}; nothing to {a.action}")
    if a.action == "cancel":
        body: dict[str, Any] = {"workflow_id": a.workflow_id, "status": result.status,
                                "cancelled": result.outcome == "cancelled"}  # fmt: skip
    else:
        body = {"workflow_id": a.workflow_id, "status": result.status, "resumed": result.count}
    print_json(body) if a.json else print(f"{a.workflow_id} {result.status}")
    return 0


def _show(answer: WorkflowAnswer | None, workflow_id: str, as_json: bool, code: int) -> int:
    if answer is None:
        raise CliError(f"no workflow {workflow_id!r}")
    if as_json:
        print_json({"workflow": answer.jsonable()})
        return code
    print(_summary(answer))
    for node in answer.nodes:
        waiting = f" waiting on {', '.join(node.waiting_on)}" if node.waiting_on else ""
        error = f" — {node.error}" if node.error else ""
        print(f"  {node.name:<24} {node.state:<10} {node.job_id}{waiting}{error}")
    return code
