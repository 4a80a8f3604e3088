"""`xinf-plan status PLAN`: planned vs running, per replica (thin; logic in apply.py)."""

from __future__ import annotations

import click

from xinf_planner.cli.options import open_connection, server_options
from xinf_planner.cli.output import echo_report, table

EXAMPLE = """
\b
Examples:
  xinf-plan status plan.yaml -e http://127.0.0.1:9997 --api-key "$KEY"
  xinf-plan status plan.yaml --format json | jq .replicas
  xinf-plan status        # the plan last applied from ./.xinf-plan/state.json
"""


def plan_or_last_applied(plan: str | None, state_file: str | None) -> dict:
    """PLAN, else the last plan applied with this state, else an empty plan (then every
    model on the server is listed as owned by no plan)."""
    from xinf_planner.shell.documents import load_plan
    from xinf_planner.shell.state import load_state, state_path

    if plan:
        return load_plan(plan, check="schema")  # lenient: show drift even of a plan that no longer fits
    state = load_state(state_path(None, state_file))
    if state.history:
        return state.history[-1]["plan"]
    return {"version": 1, "deployments": []}


def render_table(report: dict) -> str:
    rows = [("DEPLOYMENT", "REPLICA", "STATUS", "WORKER", "GPUS", "PROBLEM")]
    for r in report["replicas"]:
        gpus = ",".join(map(str, r["gpus"])) if r["gpus"] else "-"
        problem = "; ".join(([r["error"]] if r["error"] else []) + r["differences"]) or "-"
        rows.append(
            (r["deployment"], f"{r['model_uid']}-rep{r['replica']}", r["status"], r["worker"] or "-", gpus, problem)
        )
    lines = table(rows)
    if report["unowned"]:
        lines.append("")
        lines.append("running on the server, owned by no plan here:")
        for m in report["unowned"]:
            lines.append(f"  {m['model_uid']}  {m['model_name']}  {m['model_engine']}  {m['replica']} replica(s)")
    lines.extend(autostart_lines(report.get("autostart")))
    lines.append("")
    lines.append("in sync with the plan" if report["in_sync"] else "DRIFT: the server differs from the plan")
    return "\n".join(lines)


def autostart_lines(rows: list[dict] | None) -> list[str]:
    """The autostart entries (deployments that come back after a restart), when any is kept."""
    if not rows:
        return []
    out = ["", "autostart (relaunched by Xinference after a restart):"]
    table_rows = [("DEPLOYMENT", "MODEL_UID", "ENTRY", "DETAIL")]
    for r in rows:
        table_rows.append((r["deployment"], r["model_uid"], r["entry"], "; ".join(r["detail"]) or "-"))
    return out + table(table_rows, "  ")


@click.command("status", epilog=EXAMPLE)
@click.argument("plan", type=click.Path(dir_okay=False), required=False)
@server_options
@click.option("--format", "fmt", type=click.Choice(["table", "json", "yaml"]), default="table", show_default=True)
@click.pass_context
def command(ctx, plan, endpoint, api_key, username, state_file, fmt):
    """Compare PLAN with what runs on the server: status, worker, GPUs and error per replica,
    plus models no plan owns, and each persisted deployment's autostart entry. Without PLAN,
    the plan last applied with the state file (--state, default ./.xinf-plan/state.json).
    Exit 0 when everything matches, 4 on drift."""
    from xinf_planner.errors import InvalidInput
    from xinf_planner.shell.deploy.status import collect_status
    from xinf_planner.shell.state import State, load_state, state_path

    doc = plan_or_last_applied(plan, state_file)
    try:  # only for the autostart entries apply --persist recorded there
        state = load_state(state_path(plan, state_file))
    except InvalidInput as exc:
        click.echo(f"warning: {exc}; the autostart entries it may record are not checked", err=True)
        state = State()
    conn = open_connection(endpoint, api_key, username)
    report = collect_status(conn, doc, state)
    echo_report(ctx, report, fmt, render_table, 4)
