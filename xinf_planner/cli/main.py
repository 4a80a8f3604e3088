"""The `xinf-plan` command line: a thin click group over the library.

Subcommands live in ``xinf_planner/commands/<name>.py``, each exposing ``command``.
They are imported only when invoked, so ``xinf-plan --help`` stays fast and never
imports the Xinference client or NVML.
"""

from __future__ import annotations

import importlib
import sys

import click

from xinf_planner import __version__
from xinf_planner.errors import XinfPlanError

# name -> (module, one-line help shown by `xinf-plan --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "inspect": ("inspect", "Describe this machine's (or a cluster's) GPUs, CPU and memory."),
    "estimate": ("estimate", "Estimate GPU memory, KV cache and decode speed for one model."),
    "plan": ("plan", "Plan engine, quantisation, TP, replicas and placement for a workload."),
    "validate": ("validate", "Check a plan file against its schema, inventory and rules."),
    "scale": ("scale", "Add or remove replicas of a deployment, each launched exactly as before."),
    "render": ("render", "Write a plan as xinference CLI commands, a Python script or REST payloads."),
    "apply": ("apply", "Make a plan real on an Xinference server, with smoke test and rollback."),
    "status": ("status", "Compare a plan with what runs on the server."),
    "diff": ("diff", "Show what apply would change on the server."),
    "rollback": ("rollback", "Re-apply the previously applied plan through a rolling update."),
    "destroy": ("destroy", "Terminate what a plan launched and unregister what it registered."),
    "publish": ("publish", "Add a plan's launches to Xinference's launch history (web UI templates)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return [name for name in COMMANDS if _available(name)]

    def get_command(self, ctx, name):
        if name not in COMMANDS or not _available(name):
            return None
        module = importlib.import_module(f"xinf_planner.cli.commands.{COMMANDS[name][0]}")
        return module.command

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _available(name: str) -> bool:
    from importlib.util import find_spec

    return find_spec(f"xinf_planner.cli.commands.{COMMANDS[name][0]}") is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="xinf-plan")
def cli():
    """Plan and deploy DeepSeek-R1 models on real hardware through Xinference.

    \b
    The flow: inspect -> estimate -> plan -> validate/render -> apply -> status/diff -> destroy;
    scale adds or removes identical replicas.
    Exit codes: 0 ok, 1 invalid input, 2 usage (diff: changes pending), 3 nothing fits,
    4 drift, 5 server unreachable or too old, 6 auth refused, 7 apply failed, 8 state locked.
    """


def main(argv: list[str] | None = None) -> None:
    try:
        rc = cli.main(args=argv, prog_name="xinf-plan", standalone_mode=False)
    except XinfPlanError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    # standalone_mode=False hands back ctx.exit(code) as the return value
    sys.exit(rc if isinstance(rc, int) else 0)
