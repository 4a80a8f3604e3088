"""`xinf-plan destroy PLAN`: undo what a plan's apply did (thin; logic in apply.py)."""

from __future__ import annotations

import click

from xinf_planner.cli.options import (
    open_connection,
    server_options,
    state_path_for,
)

EXAMPLE = """
\b
Examples:
  xinf-plan destroy plan.yaml            # asks before changing anything
  XINFERENCE_PASSWORD=... xinf-plan destroy plan.yaml --username admin --yes
"""


@click.command("destroy", epilog=EXAMPLE)
@click.argument("plan", type=click.Path(dir_okay=False))
@server_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def command(plan, endpoint, api_key, username, state_file, yes):
    """Terminate the models PLAN's apply launched and unregister the models it registered,
    as recorded in the state file, after removing their autostart entries (so Xinference does
    not launch them again). Touches nothing else."""
    from xinf_planner.cli.output import Reporter
    from xinf_planner.errors import InvalidInput
    from xinf_planner.shell.deploy.teardown import destroy, destroy_targets
    from xinf_planner.shell.documents import load_plan
    from xinf_planner.shell.state import StateLock, load_state

    doc = load_plan(plan, check="schema")  # lenient: tear down a plan the hardware no longer fits
    spath = state_path_for(plan, state_file)
    if not spath.exists():
        raise InvalidInput(f"no state file {spath}: nothing is known to have been applied from this plan")
    with StateLock(spath):
        state = load_state(spath)
        conn = open_connection(endpoint, api_key, username)
        targets = destroy_targets(doc, state, conn.running(), autostart_uids(conn, state))
        for note in targets.skipped:
            click.echo(f"left alone: {note}")
        if not targets.terminate and not targets.unregister and not targets.autostart:
            click.echo("nothing to destroy")
            destroy(conn, doc, state, spath, Reporter(), targets)
            return
        click.echo("will terminate: " + (", ".join(uid for _, uid in targets.terminate) or "nothing"))
        click.echo("will unregister: " + (", ".join(targets.unregister) or "nothing"))
        if targets.autostart:
            click.echo("will remove autostart entries: " + ", ".join(uid for _, uid in targets.autostart))
        if not yes:
            click.confirm("proceed?", abort=True)
        destroy(conn, doc, state, spath, Reporter(), targets)
    click.echo("destroyed")


def autostart_uids(conn, state) -> set[str] | None:
    """The uids with an enabled autostart entry (the summary any credentials may read); None
    when even that cannot be read and the state records entries (destroy then removes those)."""
    from xinf_planner.errors import XinfPlanError

    try:
        return {str(e.get("model_uid")) for e in conn.autostart_summary() if e.get("enabled", True)}
    except XinfPlanError:
        if state.autostart:
            raise
        return set()
