"""`xinf-plan apply PLAN`: make a plan real on an Xinference server (thin; logic in
shell/deploy/apply.py)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from xinf_planner.cli.options import (
    credentials,
    gpu_probe,
    open_connection,
    rollout_options,
    server_options,
    state_path_for,
)

EXAMPLE = """
\b
Examples:
  xinf-plan apply plan.yaml --dry-run
  XINFERENCE_PASSWORD=... xinf-plan apply plan.yaml -e http://10.0.0.5:9997 --username admin
  xinf-plan apply plan.yaml --api-key "$TOKEN" --no-smoke-test
  xinf-plan apply plan-v2.yaml --username admin --max-unavailable 2
"""


@click.command("apply", epilog=EXAMPLE)
@click.argument("plan", type=click.Path(dir_okay=False))
@server_options
@click.option("--dry-run", is_flag=True, help="Print every call apply would make; make none.")
@click.option("--no-smoke-test", is_flag=True, help="Skip the short chat completion on each new deployment.")
@click.option("--keep-on-failure", is_flag=True, help="On failure, leave what was started (no rollback).")
@click.option(
    "--launch-timeout",
    type=float,
    default=900.0,
    show_default=True,
    help="Seconds to wait for a deployment's replicas to be READY.",
)
@rollout_options
def command(
    plan,
    endpoint,
    api_key,
    username,
    state_file,
    dry_run,
    no_smoke_test,
    keep_on_failure,
    launch_timeout,
    max_unavailable,
    allow_downtime,
):
    """Register, launch, wait for and smoke-test every deployment of PLAN.

    Idempotent: what already runs as planned is left alone. A deployment that runs
    differently is changed one replica at a time (scale, or a rolling replace that never
    overfills a GPU; see `xinf-plan diff`). On failure, what this apply started is rolled
    back (exit 7). Exit 1: the plan fails `xinf-plan validate` (checked before connecting);
    5: server unreachable or too old;
    6: authentication refused; 8: another apply holds the state lock.
    """
    from xinf_planner.cli.output import Reporter
    from xinf_planner.shell.deploy.apply import ApplyOptions, apply_plan
    from xinf_planner.shell.deploy.dry_run import dry_run_calls
    from xinf_planner.shell.documents import load_plan
    from xinf_planner.shell.server import mask_url, resolve_endpoint
    from xinf_planner.shell.state import StateLock, load_state

    doc = load_plan(plan)  # the schema and every rule `xinf-plan validate` checks (exit 1)
    options = ApplyOptions(
        smoke_test=not no_smoke_test,
        keep_on_failure=keep_on_failure,
        launch_timeout_s=launch_timeout,
        max_unavailable=max_unavailable,
        allow_downtime=allow_downtime,
    )
    url = resolve_endpoint(endpoint, os.environ)
    if dry_run:
        creds = credentials(api_key, username, prompt=False)
        for call in dry_run_calls(doc, mask_url(url), creds.describe(), options):
            click.echo(call)
        click.echo("dry run: no call was made")
        return
    spath = state_path_for(plan, state_file)
    reporter = Reporter()
    with StateLock(spath):
        state = load_state(spath)
        conn = open_connection(endpoint, api_key, username)
        result = apply_plan(conn, doc, state, spath, str(Path(plan).resolve()), reporter, options, gpu_probe)
    rolled = "".join(f", {r}" for r in result.rolled)
    click.echo(
        f"applied: {len(result.launched)} launched, {len(result.unchanged)} unchanged, "
        f"{len(result.registered)} registered{rolled}; state {spath}"
    )
