"""`xinf-plan estimate`: GPU memory, KV cache and decode speed of one model on one engine."""

from __future__ import annotations

import click

from xinf_planner.cli.options import finite
from xinf_planner.core import engines
from xinf_planner.core.documents import dump_document
from xinf_planner.errors import EXIT_NOTHING_FITS, InvalidInput

FORMATS = ("table", "json", "yaml")
LINKS = ("nvlink", "pcie", "pcie_host", "sys", "network", "infiniband")  # core/serving/constants.yaml links
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
@click.option(
    "--cpu-bandwidth-gbps",
    type=click.FloatRange(0, min_open=True),
    callback=lambda ctx, param, value: finite(ctx, param, value),
    metavar="GBPS",
    help="The host's measured memory bandwidth, for CPU speeds (`inspect` measures it) [default: DDR4-3200 x2].",
)
@click.option(
    "--cpu-threads",
    type=click.IntRange(1),
    help="Threads a CPU replica runs: the CPU's compute limit [default: not limited].",
)
@click.option(
    "--link",
    type=click.Choice(LINKS),
    help="Between the TP ranks [default: nvlink on SXM/HBM parts; pcie, or pcie_host without peer-to-peer].",
)
@click.option("--input-tokens", type=click.IntRange(1), help="The typical prompt, in tokens [default: 1000].")
@click.option(
    "--output-tokens",
    type=click.IntRange(1),
    help="The typical output, thinking included, in tokens [default: 4000, cut to fit the context].",
)
@click.option("--max-ttft-ms", type=float, metavar="MS", help="Time-to-first-token target [default: 10000].")
@click.option("--max-tpot-ms", type=float, metavar="MS", help="Time-per-output-token target [default: 100].")
@click.option(
    "--sweep",
    metavar="N,N,...",
    help="Concurrencies to print the serving curve at, e.g. 1,8,32,128.",
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
    cpu_bandwidth_gbps,
    cpu_threads,
    link,
    input_tokens,
    output_tokens,
    max_ttft_ms,
    max_tpot_ms,
    sweep,
    fmt,
):
    """Estimate GPU memory per GPU (weights, KV cache, activation, overhead), the KV pool in
    tokens, how many sequences of --context-length fit at once, and decode speed.

    Also the serving figures at --concurrency users of --input-tokens in and
    --output-tokens out: time to first token, time per output token, tokens/s
    per user and in all, and the most users that meet the targets; --sweep
    prints them over several concurrencies.

    Exits 3 when the model does not fit, after printing the estimate and the reasons.

    \b
    Examples:
      xinf-plan estimate --model deepseek-r1-distill-qwen:14 --engine vllm --tp 2 \\
          --gpu-memory-gib 79.19 --gpu-memory-utilization 0.95 --context-length 32768
      xinf-plan estimate -m deepseek-r1-distill-llama:8 --engine sglang --gpu "NVIDIA A10" --format json
      xinf-plan estimate -m deepseek-r1-distill-qwen:7 --engine llama.cpp -q Q4_K_M --gpu "RTX 4090" \\
          --context-length 8192 --n-parallel 4
      xinf-plan estimate -m deepseek-r1-distill-qwen:1.5 --engine cpu --host-memory-gib 16
      xinf-plan estimate -m deepseek-r1-distill-qwen:32 --engine vllm --tp 4 --gpu "H100 SXM" \
          --context-length 8192 --input-tokens 2000 --output-tokens 2000 --sweep 1,8,32,128
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
        cpu_bandwidth_gbps=cpu_bandwidth_gbps,
        cpu_bandwidth_measured=cpu_bandwidth_gbps is not None,
        cpu_threads=cpu_threads,
    )
    workload, targets, points = _workload(
        context_length, input_tokens, output_tokens, max_ttft_ms, max_tpot_ms, sweep, concurrency
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
    if est.fits:
        from xinf_planner.core.serving.figures import Serving, point_dict

        serving = Serving(inp, est, _hardware(inp, gpu, link), 1, 0 if total is None else tp * pp)
        doc["serving"] = serving.figures(*workload, concurrency, targets)
        if points:
            doc["serving"]["sweep"] = [
                {"concurrency": c, **point_dict(serving.at(*workload, c), serving.gpus)} for c in points
            ]
    click.echo(format_table(doc) if fmt == "table" else dump_document(doc, fmt), nl=fmt == "table")
    if not est.fits:
        click.get_current_context().exit(EXIT_NOTHING_FITS)


def _workload(context, input_tokens, output_tokens, max_ttft_ms, max_tpot_ms, sweep, concurrency):
    """((input, output), Targets, sweep concurrencies), checked as `plan` checks them."""
    import math

    from xinf_planner.core.request import fit_workload
    from xinf_planner.core.serving.figures import DEFAULT_MAX_TPOT_MS, DEFAULT_MAX_TTFT_MS, Targets

    given = {k: v for k, v in (("input_tokens", input_tokens), ("output_tokens", output_tokens)) if v is not None}
    tokens = fit_workload(context, given)
    n_in = int(tokens.get("input_tokens", given.get("input_tokens", 0)) or 0)
    n_out = int(tokens.get("output_tokens", given.get("output_tokens", 0)) or 0)
    if not n_in or not n_out:
        from xinf_planner.core.serving.figures import DEFAULT_INPUT_TOKENS, DEFAULT_OUTPUT_TOKENS

        n_in, n_out = n_in or DEFAULT_INPUT_TOKENS, n_out or DEFAULT_OUTPUT_TOKENS
    if n_in + n_out > context:
        raise InvalidInput(
            f"--input-tokens {n_in} + --output-tokens {n_out} exceed --context-length {context}: raise "
            "--context-length (the longest sequence) or shorten the workload"
        )
    ttft = DEFAULT_MAX_TTFT_MS if max_ttft_ms is None else max_ttft_ms
    tpot = DEFAULT_MAX_TPOT_MS if max_tpot_ms is None else max_tpot_ms
    for flag, value in (("--max-ttft-ms", ttft), ("--max-tpot-ms", tpot)):
        if not math.isfinite(value) or value <= 0:
            raise InvalidInput(f"{flag} {value!r}: give a positive, finite number of milliseconds")
    points: list[int] = []
    if sweep is not None:
        for part in sweep.split(","):
            text = part.strip()
            if not text.isdigit() or not 1 <= int(text) <= 1_000_000:
                raise InvalidInput(f"--sweep {sweep!r}: give concurrencies from 1 to 1000000, e.g. 1,8,32,128")
            points.append(int(text))
        points = sorted(set(points))[:64]
    return (n_in, n_out), Targets(ttft, tpot), points


def _hardware(inp, gpu, link):
    """The serving model's hardware: the GPU's tensor rates and the TP link, or the CPU's threads."""
    from xinf_planner.core.rules import parse_cc
    from xinf_planner.core.serving.step import Hardware

    if inp.gpu_total_gib is None:
        return Hardware(cpu_cores=inp.cpu_threads)
    if link is None:
        sxm = gpu is not None and "pcie" not in gpu.name.lower() and (gpu.bandwidth_gbps or 0) >= 1500
        link = "nvlink" if sxm else "pcie" if gpu is None or gpu.p2p else "pcie_host"
    return Hardware(
        tflops=gpu.tflops if gpu else None,
        tflops_fp8=gpu.tflops_fp8 if gpu else None,
        link=link,
        cc=parse_cc(gpu.cc) if gpu else None,
    )


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
    serving = doc.get("serving")
    if serving:
        t = serving["targets"]
        lines.append(
            f"serving      {serving['concurrency']} user(s) of {serving['input_tokens']} in + "
            f"{serving['output_tokens']} out: {_serving_text(serving)}"
        )
        lines.append(
            f"targets      TTFT {t['max_ttft_ms'] / 1000:g} s, TPOT {t['max_tpot_ms']:g} ms: "
            f"{'met' if serving['meets_targets'] else 'MISSED'}; up to "
            f"{serving['max_concurrency_within_targets']} user(s) within them"
        )
    lines += [f"  - {r}" for r in doc["reasons"]]
    if doc["notes"]:
        lines.append("notes")
        lines += [f"  - {n}" for n in doc["notes"]]
    if serving and serving.get("sweep"):
        from xinf_planner.cli.output import table

        rows = [("users", "TTFT s", "TPOT ms", "tok/s/user", "tok/s", "tok/s/GPU", "targets")]
        for p in serving["sweep"]:
            ok = p["tpot_s"] is not None and p["ttft_s"] * 1000 <= t["max_ttft_ms"] + 1e-9
            ok = ok and p["tpot_s"] * 1000 <= t["max_tpot_ms"] + 1e-9
            rows.append(
                (
                    str(p["concurrency"]),
                    "-" if p["ttft_s"] is None else f"{p['ttft_s']:.2f}",
                    "-" if p["tpot_s"] is None else f"{p['tpot_s'] * 1000:.1f}",
                    f"{p['tokens_per_s_per_user']:.1f}",
                    f"{p['output_tokens_per_s']:.0f}",
                    "-" if p.get("output_tokens_per_s_per_gpu") is None else f"{p['output_tokens_per_s_per_gpu']:.0f}",
                    "met" if ok else "missed",
                )
            )
        lines.append("")
        lines.extend(table(rows))
    return "\n".join(lines)


def _serving_text(s: dict) -> str:
    if s["tpot_s"] is None:
        return "no room for one request of this workload"
    return (
        f"TTFT {s['ttft_s']:.2f} s, TPOT {s['tpot_s'] * 1000:.1f} ms ({s['tokens_per_s_per_user']:.1f} tok/s each), "
        f"{s['output_tokens_per_s']:.0f} tok/s in all"
        + ("" if s.get("output_tokens_per_s_per_gpu") is None else f", {s['output_tokens_per_s_per_gpu']:.0f} per GPU")
    )
