"""`xinf-plan plan`: engine, quantisation, TP, replicas and placement for a workload."""

from __future__ import annotations

import click

from xinf_planner.cli.output import table
from xinf_planner.core.documents import dump_document
from xinf_planner.core.request import OBJECTIVES
from xinf_planner.shell.files import write_atomic

FORMATS = ("yaml", "json", "table")


@click.command("plan", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--hardware",
    metavar="FILE",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Inventory file (from `xinf-plan inspect`) [default: probe this machine].",
)
@click.option(
    "--intent",
    metavar="FILE",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Workload file (intent.schema.json); flags given as well override it.",
)
@click.option(
    "--model",
    "-m",
    metavar="MODEL",
    help="A family (the planner picks the size) or FAMILY:SIZE, e.g. deepseek-r1-distill-qwen:7.",
)
@click.option(
    "--context-length",
    type=click.IntRange(min=1),
    help="Longest prompt + output one request may need, in tokens [default: 8192].",
)
@click.option("--concurrency", type=click.IntRange(min=1), help="Users served at once [default: 1].")
@click.option(
    "--input-tokens",
    type=click.IntRange(min=1),
    help="The typical prompt, in tokens [default: 1000].",
)
@click.option(
    "--output-tokens",
    type=click.IntRange(min=1),
    help="The typical output, thinking included, in tokens [default: 4000; R1 thinks at length].",
)
@click.option(
    "--max-ttft-ms",
    type=float,
    metavar="MS",
    help="Longest time to first token each user may wait [default: 10000].",
)
@click.option(
    "--max-tpot-ms",
    type=float,
    metavar="MS",
    help="Longest time per output token each user may get [default: 100, i.e. 10 tokens/s].",
)
@click.option("--objective", type=click.Choice(OBJECTIVES), help="What to optimise [default: balanced].")
@click.option(
    "--model-engine",
    "engines",
    multiple=True,
    metavar="ENGINE",
    help="Allowed engine (repeatable): vllm, sglang, llama.cpp, mlx, transformers.",
)
@click.option(
    "--model-format",
    "formats",
    multiple=True,
    metavar="FORMAT",
    help="Allowed model format (repeatable): pytorch, awq, gptq, fp8, ggufv2, mlx.",
)
@click.option(
    "--quantization",
    "quantizations",
    multiple=True,
    metavar="QUANT",
    help="Allowed quantization (repeatable), e.g. Int4, Q4_K_M, 4bit, none.",
)
@click.option(
    "--exclude-gpu", "exclude_gpus", multiple=True, metavar="HOST:IDX", help="A GPU to leave alone (repeatable)."
)
@click.option("--headroom", metavar="GIB|N%", help="Memory to leave free on every GPU: GiB or a share.")
@click.option("--tool-calling", is_flag=True, default=None, help="Only models whose family can call tools.")
@click.option("--replicas", type=click.IntRange(min=1), help="Force this many replicas.")
@click.option(
    "--strategy", type=click.Choice(["spread", "pack"]), help="Replicas over hosts: spread (default) or pack."
)
@click.option(
    "--enable-virtual-env/--disable-virtual-env",
    "virtual_env",
    default=None,
    help="Set enable_virtual_env on every launch [default: Xinference's (on)].",
)
@click.option(
    "--model-path",
    metavar="DIR",
    type=click.Path(),
    help="Local weights to register as a custom model of the --model family.",
)
@click.option(
    "--model-path-on-every-worker",
    "every_worker",
    is_flag=True,
    default=None,
    help="--model-path exists at the same path on every worker: replicas may spread over hosts, "
    "and the model is registered at the supervisor [default: one host, registered on its worker].",
)
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Write the plan to FILE (atomically); a summary goes to stdout.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="yaml",
    show_default=True,
    help="yaml or json: the plan document; table: a summary for a person.",
)
def command(
    hardware,
    intent,
    model,
    context_length,
    concurrency,
    input_tokens,
    output_tokens,
    max_ttft_ms,
    max_tpot_ms,
    objective,
    engines,
    formats,
    quantizations,
    exclude_gpus,
    headroom,
    tool_calling,
    replicas,
    strategy,
    virtual_env,
    model_path,
    every_worker,
    output,
    fmt,
):
    """Plan engine, quantisation, TP, replicas and GPU placement for a workload.

    \b
    Every candidate is checked against the rules (platform, compute capability,
    TP divisibility, the catalog), the memory model and the serving model: a
    layout counts only if it fits and meets the TTFT and TPOT targets for
    --concurrency users of --input-tokens in and --output-tokens out. The plan
    lists why each choice was made and why each alternative was not. Exit 3
    when nothing fits or meets the targets, with the best TTFT and TPOT that
    are reachable, the largest thing that fits and the hardware needed.

    \b
    Examples:
      xinf-plan plan --hardware examples/hosts/6xt4.yaml \\
          --model deepseek-r1-distill-qwen:7 --context-length 8192 --concurrency 16
      xinf-plan plan --hardware examples/hosts/rtx4090-workstation.yaml \\
          --model deepseek-r1-distill-qwen --format table   # the largest that fits
      xinf-plan plan --hardware examples/hosts/8xh100-sxm.yaml \\
          --model deepseek-r1-distill-qwen:32 --concurrency 64 \\
          --input-tokens 2000 --output-tokens 2000 --max-tpot-ms 40 --objective efficiency
      xinf-plan plan --intent intent.yaml --hardware cluster.yaml -o plan.yaml
    """
    from xinf_planner.core.planning import make_plan
    from xinf_planner.core.request import merge_flags, request_from_intent
    from xinf_planner.shell.documents import load_intent

    intent_doc = load_intent(intent) if intent else None
    if intent_doc is None and not model:
        raise click.UsageError("give --model (or --intent FILE)")
    flags = {
        "model": model,
        "context_length": context_length,
        "concurrency": concurrency,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "max_ttft_ms": max_ttft_ms,
        "max_tpot_ms": max_tpot_ms,
        "objective": objective,
        "engines": engines,
        "formats": formats,
        "quantizations": quantizations,
        "exclude_gpus": exclude_gpus,
        "headroom": _headroom(headroom),
        "tool_calling": tool_calling,
        "replicas": replicas,
        "strategy": strategy,
        "enable_virtual_env": virtual_env,
        "model_path": model_path,
        "model_path_on_every_worker": every_worker,
    }
    request = request_from_intent(merge_flags(intent_doc, flags), intent or "command line")
    inventory, source = _inventory(hardware)
    local_models = _local_models(request)
    doc = make_plan(inventory, request, local_models=local_models, source=source)
    if output:
        file_fmt = "json" if fmt == "json" or str(output).endswith(".json") else "yaml"
        write_atomic(output, dump_document(doc, file_fmt))
        click.echo(summary_table(doc))
        click.echo(f"wrote {output}", err=True)
        return
    click.echo(summary_table(doc) if fmt == "table" else dump_document(doc, fmt), nl=fmt == "table")


def _headroom(value: str | None):
    if value is None:
        return None
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        return text


def _inventory(hardware):
    from xinf_planner.core.inventory import Inventory
    from xinf_planner.shell.documents import load_inventory

    if hardware:
        return load_inventory(hardware), str(hardware)
    try:
        from xinf_planner.shell.probe import probe_local
    except ImportError:
        raise click.UsageError("this build cannot probe the machine; pass --hardware FILE") from None
    from xinf_planner.shell.probe.bandwidth import measure_memory_bandwidth

    probed = probe_local(measure_bandwidth=lambda: measure_memory_bandwidth(budget_s=0.5))
    return Inventory.from_dict(probed.to_dict(), "probed inventory"), "probe"


def _local_models(request) -> dict:
    from xinf_planner.shell.local_weights import detect

    return {m.model_path: detect(m.model_path) for m in request.models if m.model_path}


def summary_table(doc: dict) -> str:
    """The plan for a person: one row per deployment with its serving figures, then its memory
    and the reasons."""
    rows = [
        (
            "deployment",
            "model",
            "engine",
            "format/quant",
            "GPUs/rep",
            "replicas",
            "placement",
            "context",
            "users",
            "TTFT s",
            "TPOT ms",
            "tok/s/user",
            "tok/s",
            "max users",
        )
    ]
    details = []
    for dep in doc["deployments"]:
        launch = dep["launch"]
        est = dep["estimate"]
        width = len(dep["placement"][0]["gpus"])
        places = "; ".join(
            f"{'+'.join(p['hosts']) if 'hosts' in p else p['host']}:{','.join(map(str, p['gpus'])) or 'cpu'}"
            for p in dep["placement"]
        )
        if len(places) > 48:
            places = places[:45] + "..."
        serving = est.get("serving") or {}
        rows.append(
            (
                dep["name"],
                dep["model"],
                launch["model_engine"],
                f"{launch['model_format']}/{launch['quantization']}",
                str(width or "cpu"),
                str(launch["replica"]),
                places,
                str(launch.get("context_length", "?")),
                str(serving.get("concurrency", "-")),
                _fmt(serving.get("ttft_s"), "{:.2f}"),
                _fmt(serving.get("tpot_s"), "{:.0f}", 1000),
                _fmt(serving.get("tokens_per_s_per_user"), "{:.1f}"),
                _fmt(serving.get("output_tokens_per_s"), "{:.0f}"),
                str(serving.get("max_concurrency_within_targets", "-")),
            )
        )
        g = est["per_gpu_gib"]
        if width:
            memory = (
                f"{g['total']:.2f} GiB per GPU (weights {g['weights']:.2f}, KV {g['kv_cache']:.2f}, "
                f"activation {g['activation']:.2f}, overhead {g['overhead']:.2f})"
            )
        else:
            memory = (
                f"{est.get('host_gib', 0):.2f} GiB of RAM per replica (weights "
                f"{g.get('host_weights', 0):.2f}, KV {g.get('host_kv_cache', 0):.2f})"
            )
        details.append(f"{dep['name']}: {memory}; KV {est['kv_cache_tokens']} tokens per replica")
        for reason in dep["reasons"]:
            details.append(f"  - {reason}")
    lines = table(rows)
    lines.append("")
    lines.extend(details)
    for note in doc.get("notes", []):
        lines.append(f"note: {note}")
    lines.append(f"{len(doc['rejected'])} alternative(s) rejected (see the plan's 'rejected' list).")
    return "\n".join(lines)


def _fmt(value, pattern: str, scale: float = 1.0) -> str:
    return "-" if value is None else pattern.format(value * scale)
