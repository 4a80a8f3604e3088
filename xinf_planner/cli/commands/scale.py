"""`xinf-plan scale`: more or fewer replicas of a deployment, each launched exactly as before."""

from __future__ import annotations

import click


@click.command("scale", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--replicas", "replicas", type=int, required=True, metavar="N", help="Replicas the deployment has.")
@click.option(
    "--deployment", "-d", "name", metavar="NAME", help="The deployment to scale [default: the plan's only one]."
)
@click.option(
    "--concurrency",
    type=int,
    metavar="N",
    help="Change the request's concurrency too (the workload the figures are for) [default: as planned].",
)
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Write the new plan to FILE (atomically) [default: the plan to stdout, the summary to stderr].",
)
def command(file, replicas, name, concurrency, output):
    """Scale a deployment of the validated plan FILE to N replicas, keeping each replica's
    launch configuration exactly (gpu_memory_utilization, n_parallel, n_threads, ...), so that
    `diff` and `apply` see a pure scale and roll it one replica at a time.

    \b
    New replicas go where the planner would put them (its placement rules and memory
    ledger, on the inventory embedded in the plan); removed ones are the last. Exit 3 with
    why when the hardware holds no more identical replicas, or when N of them no longer
    serve the request's concurrency (that needs another configuration: `xinf-plan plan`).

    \b
    Examples:
      xinf-plan scale plan.yaml --replicas 3 -o plan-3.yaml && xinf-plan diff plan-3.yaml
      xinf-plan scale plan.yaml --deployment chat --replicas 1 -o plan-1.yaml
    """
    from xinf_planner.core.documents import dump_document
    from xinf_planner.core.planning.scale import scale_plan
    from xinf_planner.errors import EXIT_USAGE, XinfPlanError
    from xinf_planner.shell.documents import load_plan, write_document

    if replicas < 1:
        raise XinfPlanError(
            f"--replicas {replicas}: a deployment has at least 1 replica (`xinf-plan destroy` removes it)",
            exit_code=EXIT_USAGE,
        )
    if concurrency is not None and concurrency < 1:
        raise XinfPlanError(f"--concurrency {concurrency}: at least 1 sequence", exit_code=EXIT_USAGE)
    doc = load_plan(file)
    result = scale_plan(doc, replicas, name, concurrency)
    lines = summary(result)
    if output:
        write_document(output, result.doc)
        click.echo("\n".join(lines))
        click.echo(f"wrote {output}", err=True)
        return
    click.echo(dump_document(result.doc, "yaml"), nl=False)
    click.echo("\n".join(lines), err=True)


def summary(result) -> list[str]:
    """What the scale did, for a person."""
    est = result.estimate
    if result.new != result.old:
        head = f"{result.name}: {result.old} -> {result.new} replica(s), each launched as before"
    elif result.concurrency is None:
        head = f"{result.name}: already {result.new} replica(s); nothing to change"
    else:
        head = f"{result.name}: {result.new} replica(s), unchanged"
    lines = [head]
    if result.concurrency is not None:
        lines.append(f"  request concurrency: {result.concurrency[0]} -> {result.concurrency[1]}")
    for p in result.added:
        lines.append(f"  add replica on {_where(p)}")
    for p in reversed(result.removed):
        lines.append(f"  remove replica on {_where(p)}")
    s = est.get("serving") or {}
    if s.get("tpot_s"):
        lines.append(
            f"serves {s['concurrency']} user(s): TTFT {s['ttft_s']:.2f} s, TPOT {s['tpot_s'] * 1000:.0f} ms "
            f"({s['tokens_per_s_per_user']:.1f} tokens/s each), {s['output_tokens_per_s']:.0f} output tokens/s in "
            f"all; up to {s['max_concurrency_within_targets']} user(s) within the targets"
        )
    else:
        tps = est.get("decode_tokens_per_s") or {}
        lines.append(
            f"serves {est.get('served_sequences')} sequence(s) at once; about {tps.get('per_sequence', 0):.1f} "
            f"tokens/s per sequence, {tps.get('aggregate', 0):.0f} in total"
        )
    lines.extend(f"  - {r}" for r in result.reasons[1:])
    return lines


def _where(place: dict) -> str:
    gpus = place.get("gpus") or []
    return f"{place['host']}: {'GPUs ' + ','.join(map(str, gpus)) if gpus else 'CPU'}"
