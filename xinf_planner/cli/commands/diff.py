"""`xinf-plan diff PLAN`: what apply would change on the server (thin; logic in
core/rollout/ and shell/deploy/rollouts.py)."""

from __future__ import annotations

import click

from xinf_planner.cli.options import open_connection, server_options, state_path_for
from xinf_planner.cli.output import echo_report, table

EXAMPLE = """
\b
Examples:
  xinf-plan diff plan.yaml -e http://127.0.0.1:9997 --username admin
  xinf-plan diff plan.yaml --format json | jq '.deployments[] | select(.change != "unchanged")'
"""


def render_table(report: dict) -> str:
    rows = [("DEPLOYMENT", "CHANGE", "MODEL_UID", "REPLICAS", "DETAIL")]
    for d in report["deployments"]:
        old, new = d["replicas"]
        uid = (
            d["model_uid"] if d["running_uid"] in (None, d["model_uid"]) else f"{d['running_uid']} -> {d['model_uid']}"
        )
        replicas = f"{old} -> {new}" if old != new else str(new)
        rows.append((d["deployment"], d["change"], uid, replicas, "; ".join(d["fields"]) or "-"))
    lines = table(rows)
    for d in report["deployments"]:
        if d.get("steps"):
            lines.append("")
            lines.append(f"{d['deployment']}: {len(d['steps'])} step(s), one replica at a time")
            for n, s in enumerate(d["steps"], 1):
                lines.append(
                    f"  {n}. {s['action']} {s['replica']} on {s['where']} ({s['reason']}); {s['serving']} answering"
                )
        if d.get("blocked"):
            lines.append("")
            lines.append(f"{d['deployment']}: cannot roll: {d['blocked']}")
    actions = {"missing": "write", "differs": "rewrite", "stale": "remove", "cannot persist": "refused"}
    pending = [r for r in report.get("autostart") or [] if not r["in_step"]]
    if pending:
        lines.append("")
        lines.append("autostart entries (relaunched by Xinference after a restart):")
        for r in pending:
            what = actions.get(r["entry"], r["entry"])
            lines.append(f"  {r['deployment']}: {what} the entry of {r['model_uid']} ({'; '.join(r['detail']) or '-'})")
    lines.append("")
    lines.append("nothing to do" if report["in_sync"] else "changes pending (apply would make them)")
    return "\n".join(lines)


@click.command("diff", epilog=EXAMPLE)
@click.argument("plan", type=click.Path(dir_okay=False))
@server_options
@click.option("--format", "fmt", type=click.Choice(["table", "json", "yaml"]), default="table", show_default=True)
@click.option(
    "--max-unavailable",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Replicas a rolling change may take down at once.",
)
@click.option("--allow-downtime", is_flag=True, help="Let a change stop every replica of a deployment.")
@click.pass_context
def command(ctx, plan, endpoint, api_key, username, state_file, fmt, max_unavailable, allow_downtime):
    """Compare PLAN with what runs (the server, and the plan last applied in the state file).

    Per deployment: add, remove, scale (replica count only), replace (engine, format,
    quantization, context length, another launch setting, model uid or placement; the
    changed fields are shown) or unchanged, with the rollout's steps; and each persisted
    deployment's autostart entry that apply would write, rewrite or remove. Exit 0 when there
    is nothing to do, 2 when apply would change something.
    """
    from xinf_planner.shell.deploy.persist import report as autostart_report
    from xinf_planner.shell.deploy.rollouts import gather, prepare
    from xinf_planner.shell.documents import load_plan
    from xinf_planner.shell.state import load_state

    doc = load_plan(plan)
    state = load_state(state_path_for(plan, state_file))
    conn = open_connection(endpoint, api_key, username)
    report = prepare(doc, gather(conn, doc, state), max_unavailable, allow_downtime).to_dict()
    rows = autostart_report(conn, doc, state)
    if rows:
        report["autostart"] = rows
        report["in_sync"] = report["in_sync"] and all(r["in_step"] for r in rows)
    echo_report(ctx, report, fmt, render_table, 2)
