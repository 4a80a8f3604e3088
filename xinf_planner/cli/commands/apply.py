"""`xinf-plan apply PLAN`: make a plan real on an Xinference server (thin; logic in apply.py)."""

from __future__ import annotations

import os
from pathlib import Path

import click

EXAMPLE = """
\b
Examples:
  xinf-plan apply plan.yaml --dry-run
  XINFERENCE_PASSWORD=... xinf-plan apply plan.yaml -e http://10.0.0.5:9997 --username admin
  xinf-plan apply plan.yaml --api-key "$TOKEN" --no-smoke-test
  xinf-plan apply plan-v2.yaml --username admin --max-unavailable 2
"""


def server_options(fn):
    """-e/--endpoint, --api-key, --username, --state: shared by apply, status and destroy."""
    fn = click.option("--state", "state_file", type=click.Path(dir_okay=False),
                      help="State file (default: .xinf-plan/state.json beside the plan).")(fn)
    fn = click.option("--username", "-u", default=None,
                      help="Log in as this user; the password comes from $XINFERENCE_PASSWORD "
                           "or a prompt.")(fn)
    fn = click.option("--api-key", "-ak", envvar="XINFERENCE_API_KEY", default=None,
                      help="API key or access token [env: XINFERENCE_API_KEY].")(fn)
    fn = click.option("--endpoint", "-e", envvar="XINFERENCE_ENDPOINT", default=None,
                      help="Xinference endpoint [env: XINFERENCE_ENDPOINT; default "
                           "http://127.0.0.1:9997].")(fn)
    return fn


def rollout_options(fn):
    """--max-unavailable, --allow-downtime: how apply and rollback roll changes (rolling.py)."""
    fn = click.option("--allow-downtime", is_flag=True,
                      help="Let a change stop every replica of a deployment when old and new cannot "
                           "run side by side.")(fn)
    fn = click.option("--max-unavailable", type=click.IntRange(min=1), default=1, show_default=True,
                      help="Replicas a rolling change may take down at once.")(fn)
    return fn


def credentials(api_key: str | None, username: str | None, prompt: bool = True):
    from xinf_planner.shell.server import Credentials

    if username:
        password = os.environ.get("XINFERENCE_PASSWORD")
        if password is None and prompt:
            password = click.prompt(f"password for {username}", hide_input=True, err=True)
        return Credentials(username=username, password=password)
    return Credentials(api_key=api_key or None)


def state_path_for(plan_path: str, state_file: str | None) -> Path:
    from xinf_planner.shell.state import default_state_path

    return Path(state_file) if state_file else default_state_path(plan_path)


def open_connection(endpoint, api_key, username):
    from xinf_planner.shell.server import connect, resolve_endpoint

    return connect(resolve_endpoint(endpoint, os.environ), credentials(api_key, username))


def echo_report(ctx, report: dict, fmt: str, render_table, out_of_sync_code: int) -> None:
    """Print a status/diff report as a table or a document; exit with ``out_of_sync_code``
    when the server and the plan differ."""
    from xinf_planner.core.documents import dump_document

    if fmt == "table":
        click.echo(render_table(report))
    else:
        click.echo(dump_document(report, fmt), nl=False)
    if not report["in_sync"]:
        ctx.exit(out_of_sync_code)


def gpu_probe():
    from xinf_planner.shell.probe.nvml import probe_nvidia

    return probe_nvidia().gpus


@click.command("apply", epilog=EXAMPLE)
@click.argument("plan", type=click.Path(dir_okay=False))
@server_options
@click.option("--dry-run", is_flag=True, help="Print every call apply would make; make none.")
@click.option("--no-smoke-test", is_flag=True, help="Skip the short chat completion on each new deployment.")
@click.option("--keep-on-failure", is_flag=True, help="On failure, leave what was started (no rollback).")
@click.option("--launch-timeout", type=float, default=900.0, show_default=True,
              help="Seconds to wait for a deployment's replicas to be READY.")
@rollout_options
def command(plan, endpoint, api_key, username, state_file, dry_run, no_smoke_test, keep_on_failure,
            launch_timeout, max_unavailable, allow_downtime):
    """Register, launch, wait for and smoke-test every deployment of PLAN.

    Idempotent: what already runs as planned is left alone. A deployment that runs
    differently is changed one replica at a time (scale, or a rolling replace that never
    overfills a GPU; see `xinf-plan diff`). On failure, what this apply started is rolled
    back (exit 7). Exit 1: the plan fails `xinf-plan validate` (checked before connecting);
    5: server unreachable or too old;
    6: authentication refused; 8: another apply holds the state lock.
    """
    from xinf_planner.shell.deploy.apply import ApplyOptions, Reporter, apply_plan, dry_run_calls
    from xinf_planner.core.plan.validate import load_plan
    from xinf_planner.shell.state import StateLock, load_state
    from xinf_planner.shell.server import mask_url, resolve_endpoint

    doc = load_plan(plan)  # the schema and every rule `xinf-plan validate` checks (exit 1)
    options = ApplyOptions(smoke_test=not no_smoke_test, keep_on_failure=keep_on_failure,
                           launch_timeout_s=launch_timeout, max_unavailable=max_unavailable,
                           allow_downtime=allow_downtime)
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
    d = result.diff
    rolled = "".join(f", {r}" for r in result.rolled)
    click.echo(f"applied: {len(result.launched)} launched, {len(d.unchanged)} unchanged, "
               f"{len(result.registered)} registered{rolled}; state {spath}")
