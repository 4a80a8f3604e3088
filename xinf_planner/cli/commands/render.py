"""`xinf-plan render`: a plan as xinference CLI commands, a Python script, REST payloads, or
one self-contained HTML page to review."""

from __future__ import annotations

import click

from xinf_planner.core.render import FORMATS


@click.command("render", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--as",
    "as_",
    type=click.Choice(FORMATS),
    default="shell",
    show_default=True,
    help="shell: `xinference register/launch` commands; python: a script using the client; json: the REST "
    "requests; html: one self-contained page for review (hosts, GPUs and links, memory, serving, reasons).",
)
@click.option(
    "--templates",
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Your own templates folder [default: the shipped one].",
)
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Write to FILE (atomically) instead of stdout.",
)
def command(file, as_, templates, output):
    """Write a validated plan FILE as what you would run by hand. The endpoint and API
    key are read from $XINFERENCE_ENDPOINT and $XINFERENCE_API_KEY when it runs; no
    secret is ever written. `--as html` writes one page to open in a browser, with
    nothing outside the file (no network); the same plan always gives the same page.

    \b
    Examples:
      xinf-plan render plan.yaml --as shell > launch.sh
      xinf-plan render plan.yaml --as python -o launch.py
      xinf-plan render plan.yaml --as json
      xinf-plan render plan.yaml --as html -o plan.html
    """
    from xinf_planner.core.plan.validate import check_plan
    from xinf_planner.core.render import TEMPLATES, render
    from xinf_planner.shell.documents import load_plan
    from xinf_planner.shell.files import write_atomic
    from xinf_planner.shell.templates import read_templates

    doc = load_plan(file)
    check_plan(doc, "<stdin>" if file == "-" else file)
    text = render(doc, as_, read_templates(TEMPLATES[as_], templates))
    if output:
        write_atomic(output, text, mode=0o755 if as_ in ("shell", "python") else None)
        click.echo(f"wrote {output}", err=True)
        return
    click.echo(text, nl=False)
