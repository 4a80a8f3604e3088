"""`xinf-plan publish PLAN`: each deployment's launch as a launch template in Xinference's web UI
(``POST /v1/launch_history``; thin, logic in shell/deploy/persist.py)."""

from __future__ import annotations

import click

from xinf_planner.cli.options import open_connection, server_options, state_path_for

EXAMPLE = """
\b
Examples:
  XINFERENCE_PASSWORD=... xinf-plan publish plan.yaml -e http://10.0.0.5:9997 --username admin
  xinf-plan publish plan.yaml --username admin --deployment chat
"""


@click.command("publish", epilog=EXAMPLE)
@click.argument("plan", type=click.Path(dir_okay=False))
@server_options
@click.option(
    "--deployment",
    "names",
    multiple=True,
    metavar="NAME",
    help="Publish only this deployment (repeatable) [default: all].",
)
def command(plan, endpoint, api_key, username, state_file, names):
    """Add each deployment of PLAN to Xinference's launch history, which the web UI offers as
    one-click launch templates. Nothing is launched.

    A deployment that `apply --persist` keeps an autostart entry for is published with that
    entry's launch: Xinference 4.1.0 stores autostart in the launch-history row of the same
    model name, uid and user, and a publish overwrites that row. Needs a login (--username);
    API keys may not write the launch history. See docs/extension.md for what the UI shows.
    """
    from xinf_planner.cli.output import Reporter
    from xinf_planner.errors import InvalidInput
    from xinf_planner.shell.deploy.persist import publish
    from xinf_planner.shell.documents import load_plan
    from xinf_planner.shell.state import load_state

    doc = load_plan(plan)
    all_names = [d["name"] for d in doc["deployments"]]
    unknown = [n for n in names if n not in all_names]
    if unknown:
        raise InvalidInput(f"--deployment {', '.join(unknown)}: not in the plan (it has {', '.join(all_names)})")
    state = load_state(state_path_for(plan, state_file))
    conn = open_connection(endpoint, api_key, username)
    done = publish(conn, doc, list(names) or all_names, state, Reporter())
    click.echo(f"published {len(done)} launch template(s) to {conn.url}")
