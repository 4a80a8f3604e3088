"""`xinf-plan validate`: a plan against its schema, its embedded inventory and the rules."""

from __future__ import annotations

import click


@click.command("validate", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
def command(file):
    """Check a plan FILE: the schema first, then the plan against the inventory it
    embeds and the rules (GPUs exist and have the memory, TP and compute capability,
    launch keywords Xinference would reject). Each error names its JSON path; exit 1
    on any error. A hand-edited plan is checked the same way.

    \b
    Examples:
      xinf-plan validate plan.yaml
      xinf-plan plan --hardware examples/hosts/6xt4.yaml -m deepseek-r1-distill-qwen:7 | xinf-plan validate -
    """
    from xinf_planner.core.plan.validate import plan_errors
    from xinf_planner.errors import InvalidInput
    from xinf_planner.shell.documents import load_plan

    doc = load_plan(file, check="none")
    errors = plan_errors(doc)
    name = "<stdin>" if file == "-" else file
    if errors:
        for path, message in errors:
            click.echo(f"{name}: {path}: {message}", err=True)
        raise InvalidInput(f"{name}: {len(errors)} error(s)")
    deployments = len(doc["deployments"])
    click.echo(
        f"ok: {name}: {deployments} deployment{'s' * (deployments != 1)}, valid for inventory "
        f"{doc['inventory']['fingerprint']}"
    )
