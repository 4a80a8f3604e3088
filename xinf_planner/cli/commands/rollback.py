"""`xinf-plan rollback`: re-apply the plan applied before the last one, through the same
rolling path as apply (thin; logic in shell/deploy/apply.py and rollouts.py)."""

from __future__ import annotations

from pathlib import Path

import click

from xinf_planner.cli.options import (
    gpu_probe,
    open_connection,
    rollout_options,
    server_options,
)

EXAMPLE = """
\b
Examples:
  xinf-plan rollback --state .xinf-plan/state.json --username admin
  xinf-plan rollback plan.yaml -e http://10.0.0.5:9997 --username admin --max-unavailable 2
"""


@click.command("rollback", epilog=EXAMPLE)
@click.argument("plan", type=click.Path(dir_okay=False), required=False)
@server_options
@rollout_options
@click.option("--no-smoke-test", is_flag=True, help="Skip the health-check chat after each new replica.")
@click.option(
    "--launch-timeout", type=float, default=900.0, show_default=True, help="Seconds to wait for a replica to be READY."
)
def command(
    plan, endpoint, api_key, username, state_file, max_unavailable, allow_downtime, no_smoke_test, launch_timeout
):
    """Re-apply the previous plan in the state's history (PLAN only locates the state
    file beside it; default ./.xinf-plan/state.json). The history keeps every applied
    plan, so a second rollback goes forward again. Exit 7 when the rollout fails (what it
    changed is restored), 1 when the history holds no earlier plan or that plan fails
    `xinf-plan validate` (checked before connecting).
    """
    from xinf_planner.cli.output import Reporter
    from xinf_planner.core.plan.validate import check_plan
    from xinf_planner.errors import InvalidInput
    from xinf_planner.shell.deploy.apply import ApplyOptions, apply_plan
    from xinf_planner.shell.state import StateLock, load_state, state_path

    spath = state_path(plan, state_file)
    options = ApplyOptions(
        smoke_test=not no_smoke_test,
        launch_timeout_s=launch_timeout,
        max_unavailable=max_unavailable,
        allow_downtime=allow_downtime,
    )
    with StateLock(spath):
        state = load_state(spath)
        if len(state.history) < 2:
            raise InvalidInput(
                f"{spath}: no earlier applied plan to roll back to ({len(state.history)} in the history)"
            )
        previous = state.history[-2]
        # the same rules as `xinf-plan validate` and apply, before connecting (exit 1)
        check_plan(previous["plan"], f"{spath}: the plan applied at {previous['applied_at']}")
        click.echo(f"rollback to the plan applied at {previous['applied_at']} ({previous['plan_hash'][:19]})")
        conn = open_connection(endpoint, api_key, username)
        result = apply_plan(
            conn, previous["plan"], state, spath, plan_file_of(previous, plan, spath), Reporter(), options, gpu_probe
        )
    click.echo(
        f"rolled back: {', '.join(result.rolled + [f'add {n}' for n in result.launched]) or 'nothing to change'}; "
        f"state {spath}"
    )


def plan_file_of(entry: dict, plan: str | None, state_path: Path) -> str | None:
    """The file the plan of a history entry came from, for the state's ``plan_path``: PLAN,
    or a plan file beside the state file (or beside its .xinf-plan folder), whichever holds
    this very plan (same plan_hash), the path the history recorded first. None when no file
    does: the path of the newer plan would name a plan that no longer runs."""
    from xinf_planner.errors import XinfPlanError
    from xinf_planner.shell.documents import load_plan
    from xinf_planner.shell.state import plan_hash

    candidates = [Path(p) for p in (plan, entry.get("plan_path")) if p]
    for folder in dict.fromkeys([state_path.parent, state_path.parent.parent]):
        candidates += sorted(p for ext in ("yaml", "yml", "json") for p in folder.glob(f"*.{ext}"))
    for path in candidates:
        try:
            if (
                path.is_file()
                and path.stat().st_size < (16 << 20)
                and plan_hash(load_plan(path, check="none")) == entry["plan_hash"]
            ):
                return str(path.resolve())
        except (XinfPlanError, OSError):
            continue
    return None
