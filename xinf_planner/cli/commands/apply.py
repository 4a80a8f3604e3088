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
  xinf-plan apply plan.yaml --username admin --persist --publish --prefetch
"""


def persistence_options(fn):
    """--persist/--no-persist, --publish, --prefetch (shell/deploy/persist.py, prefetch.py)."""
    fn = click.option(
        "--prefetch",
        is_flag=True,
        help="First download each deployment's weights into its workers' caches (Xinference's cache API), "
        "with progress per worker; a failed download stops the apply before any launch (exit 7).",
    )(fn)
    fn = click.option(
        "--publish",
        is_flag=True,
        help="Add each deployment's launch to Xinference's launch history (the web UI's launch templates).",
    )(fn)
    fn = click.option(
        "--persist/--no-persist",
        "persist",
        default=None,
        help="Write (or remove) an autostart entry per deployment, so that Xinference launches it again after "
        "a restart [default: as the plan's persist keys say, and keep the entries an earlier --persist wrote].",
    )(fn)
    return fn


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
@persistence_options
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
    persist,
    publish,
    prefetch,
):
    """Register, launch, wait for and smoke-test every deployment of PLAN.

    Idempotent: what already runs as planned is left alone. A deployment that runs
    differently is changed one replica at a time (scale, or a rolling replace that never
    overfills a GPU; see `xinf-plan diff`). On failure, what this apply started is rolled
    back (exit 7). Exit 1: the plan fails `xinf-plan validate` (checked before connecting);
    5: server unreachable or too old;
    6: authentication refused; 8: another apply holds the state lock.

    \b
    --persist: autostart entries with the plan's launch and placement, so Xinference brings the
    deployments back after a restart; Xinference 4.1.0 cannot re-launch replicas pinned to
    several workers, and such a deployment is refused (exit 1). `status` shows each entry,
    `destroy` removes it. See docs/extension.md.
    """
    from xinf_planner.cli.output import Reporter
    from xinf_planner.shell.deploy.apply import ApplyOptions, apply_plan
    from xinf_planner.shell.deploy.dry_run import dry_run_calls
    from xinf_planner.shell.documents import load_plan
    from xinf_planner.shell.server import mask_url, resolve_endpoint
    from xinf_planner.shell.state import StateLock, load_state

    doc = load_plan(plan)  # the schema and every rule `xinf-plan validate` checks (exit 1)
    _check_persistable(doc, persist)
    options = ApplyOptions(
        smoke_test=not no_smoke_test,
        keep_on_failure=keep_on_failure,
        launch_timeout_s=launch_timeout,
        max_unavailable=max_unavailable,
        allow_downtime=allow_downtime,
        persist=persist,
        publish=publish,
        prefetch=prefetch,
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
    if result.autostart:
        rolled += f", {len(result.autostart)} autostart entr{'y' if len(result.autostart) == 1 else 'ies'} written"
    if result.published:
        rolled += f", {len(result.published)} published"
    click.echo(
        f"applied: {len(result.launched)} launched, {len(result.unchanged)} unchanged, "
        f"{len(result.registered)} registered{rolled}; state {spath}"
    )


def _check_persistable(doc: dict, persist: bool | None) -> None:
    """Before connecting: every deployment --persist (or the plan) asks to persist can be
    brought back by Xinference's autostart as planned (exit 1 otherwise)."""
    from xinf_planner.core.persist import refusals, targets
    from xinf_planner.errors import InvalidInput

    refused = refusals(doc, targets(doc, persist))
    if refused:
        raise InvalidInput("cannot persist: " + " | ".join(refused))
