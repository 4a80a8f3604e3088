"""`xinf-plan estimate`: GPU memory, KV cache and decode speed of one model on one engine."""

from __future__ import annotations

import click

from xinf_planner.core import engines
from xinf_planner.core.documents import dump_document
from xinf_planner.errors import EXIT_NOTHING_FITS, InvalidInput

FORMATS = ("table", "json", "yaml")
ENGINE_CHOICES = (*engines.NAMES, "cpu")
DEFAULT_QUANT = {"pytorch": "none", "ggufv2": "Q4_K_M", "mlx": "4bit", "awq": "Int4", "gptq": "Int4"}


@click.command("estimate", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-m",
    "--model",
    "model_ref",
    required=True,
    metavar="FAMILY:SIZE|HF_ID",
    help="The model: FAMILY:SIZE in billions (1.5 and 1_5 are the same) or its Hugging Face id.",
)
@click.option(
    "--engine",
    "--model-engine",
    "engine",
    required=True,
    type=click.Choice(ENGINE_CHOICES, case_sensitive=False),
    help="Inference engine; 'cpu' is llama.cpp (GGUF) or Transformers without a GPU.",
)
@click.option(
    "-f",
    "--model-format",
    "model_format",
    metavar="FORMAT",
    help="pytorch, awq, gptq, ggufv2, mlx [default: ggufv2 for llama.cpp/cpu, mlx for MLX, else pytorch].",
)
@click.option(
    "-q",
    "--quantization",
    metavar="QUANT",
    help="none, Int4, Q4_K_M, 4bit, ... [default: none; Q4_K_M for GGUF; 4bit for MLX].",
)
@click.option("--tp", type=click.IntRange(1), default=1, show_default=True, help="Tensor-parallel GPUs per replica.")
@click.option("--pp", type=click.IntRange(1), default=1, show_default=True, help="Pipeline-parallel stages.")
@click.option(
    "--gpu",
    "gpu_name",
    metavar="NAME",
    help='A GPU from the table, e.g. "NVIDIA H100 80GB HBM3", "A10", "Apple M2 Max".',
)
@click.option(
    "--gpu-memory-gib",
    type=click.FloatRange(0, min_open=True),
    metavar="GIB",
    help="Memory per GPU as CUDA reports it (an 80 GB H100 is 79.19 GiB); Macs: the RAM.",
)
@click.option(
    "--gpu-memory-used-gib",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    metavar="GIB",
    help="Memory already in use on each GPU.",
)
@click.option(
    "--gpu-memory-utilization",
    type=click.FloatRange(0, 1, min_open=True),
    metavar="FRACTION",
    help="vLLM's reservation fraction [default: 0.90, as Xinference passes].",
)
@click.option(
    "--mem-fraction-static",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    metavar="FRACTION",
    help="SGLang's static fraction [default: Xinference's by TP: 0.88/0.87/0.85/0.81/0.79].",
)
@click.option(
    "--context-length",
    type=click.IntRange(1),
    default=4096,
    show_default=True,
    help="Tokens per sequence (prompt + output).",
)
@click.option("--concurrency", type=click.IntRange(1), default=1, show_default=True, help="Sequences decoded at once.")
@click.option(
    "--kv-cache-dtype",
    default="auto",
    show_default=True,
    metavar="DTYPE",
    help="auto, fp8 (vLLM/SGLang); f16, q8_0, q4_0 (llama.cpp).",
)
@click.option("--max-num-seqs", type=click.IntRange(1), help="vLLM max_num_seqs [default: 256, as Xinference passes].")
@click.option("--enforce-eager", is_flag=True, help="vLLM without CUDA graphs.")
@click.option("--n-ctx", type=click.IntRange(1), help="llama.cpp n_ctx [default: context length x n_parallel].")
@click.option("--n-parallel", type=click.IntRange(1), help="llama.cpp slots [default: the concurrency].")
@click.option("--n-gpu-layers", type=int, help="llama.cpp layers on the GPU [default: -1, all].")
@click.option(
    "--host-memory-gib",
    type=click.FloatRange(0, min_open=True),
    metavar="GIB",
    help="System RAM, to check CPU/offload and MLX fits.",
)
@click.option(
    "--gpu-bandwidth-gbps",
    type=click.FloatRange(0, min_open=True),
    metavar="GBPS",
    help="Memory bandwidth for the speed estimate [default: from --gpu].",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True, help="Output format.")
def command(
    model_ref,
    engine,
    model_format,
    quantization,
    tp,
    pp,
    gpu_name,
    gpu_memory_gib,
    gpu_memory_used_gib,
    gpu_memory_utilization,
    mem_fraction_static,
    context_length,
    concurrency,
    kv_cache_dtype,
    max_num_seqs,
    enforce_eager,
    n_ctx,
    n_parallel,
    n_gpu_layers,
    host_memory_gib,
    gpu_bandwidth_gbps,
    fmt,
):
    """Estimate GPU memory per GPU (weights, KV cache, activation, overhead), the KV pool in
    tokens, how many sequences of --context-length fit at once, and decode speed.

    Exits 3 when the model does not fit, after printing the estimate and the reasons.

    \b
    Examples:
      xinf-plan estimate --model deepseek-r1-distill-qwen:14 --engine vllm --tp 2 \\
          --gpu-memory-gib 79.19 --gpu-memory-utilization 0.95 --context-length 32768
      xinf-plan estimate -m deepseek-r1-distill-llama:8 --engine sglang --gpu "NVIDIA A10" --format json
      xinf-plan estimate -m deepseek-r1-distill-qwen:7 --engine llama.cpp -q Q4_K_M --gpu "RTX 4090" \\
          --context-length 8192 --n-parallel 4
      xinf-plan estimate -m deepseek-r1-distill-qwen:1.5 --engine cpu --host-memory-gib 16
    """
    from xinf_planner.core import engines
    from xinf_planner.core.catalog import find_spec, get_model, lookup_gpu
    from xinf_planner.core.memory import EstimateInput, estimate

    model = get_model(model_ref)
    engine = engine.lower()
    cpu_only = engine == "cpu"
    if model_format is None:
        model_format = {"llama.cpp": "ggufv2", "cpu": "ggufv2", "mlx": "mlx"}.get(engine, "pytorch")
    model_format = model_format.lower()
    if quantization is None:
        quantization = DEFAULT_QUANT.get(model_format, "none")
    if cpu_only:
        engine = "llama.cpp" if model_format == "ggufv2" else "transformers"
    spec = find_spec(model, model_format, quantization)

    gpu = None
    if gpu_name:
        gpu = lookup_gpu(gpu_name)
        if gpu is None:
            from xinf_planner.core.catalog import all_gpus

            raise InvalidInput(f"unknown GPU {gpu_name!r}; known: " + ", ".join(g.name for g in all_gpus()))
    total = gpu_memory_gib if gpu_memory_gib is not None else (gpu.usable_total_gib if gpu else None)
    if cpu_only:
        total = None
    elif engine == "mlx" and total is None and host_memory_gib is None:
        raise InvalidInput("MLX: give the Mac's memory with --gpu-memory-gib or --host-memory-gib")
    elif total is None and engine not in ("llama.cpp", "transformers", "mlx"):
        raise InvalidInput(f"{engines.xinference_name(engine)} runs on GPUs: give --gpu-memory-gib or --gpu NAME")

    if engines.tensor_parallel(engine):
        from xinf_planner.core.rules import tp_reason

        bad_tp = tp_reason(model, tp, spec.model_format)
        if bad_tp:
            raise InvalidInput(f"{engines.xinference_name(engine)} cannot shard {model.ref} that way: {bad_tp}")

    inp = EstimateInput(
        model=model,
        engine=engine,
        model_format=spec.model_format,
        quantization=spec.quantization,
        tp=tp,
        pp=pp,
        gpu_total_gib=total,
        gpu_used_gib=gpu_memory_used_gib,
        gpu_memory_utilization=gpu_memory_utilization,
        mem_fraction_static=mem_fraction_static,
        context_length=context_length,
        concurrency=concurrency,
        kv_cache_dtype=kv_cache_dtype,
        n_ctx=n_ctx,
        n_parallel=n_parallel,
        n_gpu_layers=n_gpu_layers,
        host_memory_gib=host_memory_gib,
        gpu_bandwidth_gbps=gpu_bandwidth_gbps or (gpu.bandwidth_gbps if gpu else None),
        gpu_tflops=gpu.tflops if gpu else None,
        unified_memory=engine == "mlx",
        max_num_seqs=max_num_seqs,
        enforce_eager=enforce_eager,
    )
    if engine == "mlx" and host_memory_gib is None:
        inp.host_memory_gib = total
    est = estimate(inp)
    notes = list(est.notes)
    if not spec.launchable:
        notes.insert(0, "Xinference cannot launch this spec: " + "; ".join(spec.notes))
    elif spec.notes:
        notes.extend(spec.notes)
    allowed = {e.lower() for e in model.virtualenv_engines}
    if engine not in allowed:
        notes.append(
            f"{model.family}'s virtualenv markers do not list {engines.xinference_name(engine)} "
            f"(with virtual envs on, Xinference will not install it)"
        )
    est.notes = notes

    doc = {
        "model": model.ref,
        "hf_id": model.hf_id,
        "engine": engines.xinference_name(engine),
        "model_format": spec.model_format,
        "quantization": spec.quantization,
        "tp": tp,
        "pp": pp,
        "gpu": gpu.name if gpu else None,
        "gpu_memory_gib": None if total is None else round(total, 2),
        "context_length": context_length,
        "concurrency": concurrency,
        "kv_cache_dtype": kv_cache_dtype,
        **est.to_dict(),
    }
    click.echo(format_table(doc) if fmt == "table" else dump_document(doc, fmt), nl=fmt == "table")
    if not est.fits:
        click.get_current_context().exit(EXIT_NOTHING_FITS)


def format_table(doc: dict) -> str:
    p = doc["per_gpu_gib"]
    n_gpus = doc["tp"] * doc["pp"]
    where = (
        f"{n_gpus} x {doc['gpu_memory_gib']:.2f} GiB GPU{'s' * (n_gpus > 1)}" if doc["gpu_memory_gib"] else "CPU only"
    )
    if doc.get("gpu"):
        where += f" ({doc['gpu']})"
    lines = [
        f"{doc['model']}  {doc['engine']}  {doc['model_format']}/{doc['quantization']}  "
        f"TP {doc['tp']} x PP {doc['pp']}  on {where}",
        f"context {doc['context_length']}, concurrency {doc['concurrency']}, KV cache {doc['kv_cache_dtype']}",
        "",
        "per GPU (GiB)" if doc["gpu_memory_gib"] else "system RAM (GiB)",
    ]
    labels = [
        ("weights", "weights"),
        ("kv_cache", "KV cache"),
        ("activation", "activation"),
        ("overhead", "overhead"),
        ("total", "total"),
    ]
    if not doc["gpu_memory_gib"] and "host_weights" in p:  # CPU only: the host's figures
        p = {
            "weights": p["host_weights"],
            "kv_cache": p["host_kv_cache"],
            "activation": doc["host_gib"] - p["host_weights"] - p["host_kv_cache"],
            "overhead": 0.0,
            "total": doc["host_gib"],
        }
    extra = {k: v for k, v in p.items() if k not in dict(labels)}
    for key, label in labels:
        lines.append(f"  {label:<12}{p[key]:>9.2f}")
    if extra:
        lines.append("  (" + ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in extra.items()) + ")")
    if doc["host_gib"] and doc["gpu_memory_gib"]:
        lines.append(f"  {'host RAM':<12}{doc['host_gib']:>9.2f}")
    lines.append("")
    lines.append(
        f"KV pool      {doc['kv_cache_tokens']:,} tokens  "
        f"({doc['max_concurrent_sequences']:.2f} sequences of {doc['context_length']})"
    )
    speed = doc["decode_tokens_per_s"]
    if speed.get("per_sequence") is not None:
        lines.append(
            f"decode       {speed['per_sequence']:.1f} tok/s per sequence, "
            f"{speed['aggregate']:.1f} tok/s aggregate (batch {speed['batch']})"
        )
    else:
        lines.append("decode       unknown (give --gpu or --gpu-bandwidth-gbps)")
    lines.append(f"fits         {'yes' if doc['fits'] else 'NO'}")
    lines += [f"  - {r}" for r in doc["reasons"]]
    if doc["notes"]:
        lines.append("notes")
        lines += [f"  - {n}" for n in doc["notes"]]
    return "\n".join(lines)
