"""Options and helpers the server commands share: endpoint and credentials, the state file,
how rollouts roll, and the GPU probe apply's preflight uses on this host."""

from __future__ import annotations

import os
from pathlib import Path

import click


def server_options(fn):
    """-e/--endpoint, --api-key, --username, --state: shared by the commands that talk to a server."""
    fn = click.option(
        "--state",
        "state_file",
        type=click.Path(dir_okay=False),
        help="State file (default: .xinf-plan/state.json beside the plan).",
    )(fn)
    fn = click.option(
        "--username",
        "-u",
        default=None,
        help="Log in as this user; the password comes from $XINFERENCE_PASSWORD or a prompt.",
    )(fn)
    fn = click.option(
        "--api-key",
        "-ak",
        envvar="XINFERENCE_API_KEY",
        default=None,
        help="API key or access token [env: XINFERENCE_API_KEY].",
    )(fn)
    fn = click.option(
        "--endpoint",
        "-e",
        envvar="XINFERENCE_ENDPOINT",
        default=None,
        help="Xinference endpoint [env: XINFERENCE_ENDPOINT; default http://127.0.0.1:9997].",
    )(fn)
    return fn


def rollout_options(fn):
    """--max-unavailable, --allow-downtime: how apply and rollback roll changes (shell/deploy/rollouts.py)."""
    fn = click.option(
        "--allow-downtime",
        is_flag=True,
        help="Let a change stop every replica of a deployment when old and new cannot run side by side.",
    )(fn)
    fn = click.option(
        "--max-unavailable",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="Replicas a rolling change may take down at once.",
    )(fn)
    return fn


def credentials(api_key: str | None, username: str | None, prompt: bool = True):
    from xinf_planner.shell.server import Credentials

    if username:
        password = os.environ.get("XINFERENCE_PASSWORD")
        if password is None and prompt:
            password = click.prompt(f"password for {username}", hide_input=True, err=True)
        return Credentials(username=username, password=password)
    return Credentials(api_key=api_key or None)


def state_path_for(plan_path: str | None, state_file: str | None) -> Path:
    from xinf_planner.shell.state import state_path

    return state_path(plan_path, state_file)


def open_connection(endpoint, api_key, username):
    from xinf_planner.shell.server import connect, resolve_endpoint

    return connect(resolve_endpoint(endpoint, os.environ), credentials(api_key, username))


def gpu_probe():
    from xinf_planner.shell.probe.nvml import probe_nvidia

    return probe_nvidia().gpus


def finite(ctx, param, value):
    """A click callback: refuse NaN and infinity (click's FloatRange lets them through)."""
    import math

    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value!r} is not a finite number")
    return value
