#!/usr/bin/env python3
"""The serving model (xinf_planner/core/serving/) against published measurements at batch > 1,
side by side with NVIDIA's aiconfigurator 0.12.0, and the TP x replicas rankings both produce.

Part 1, measured rows: benchmarks/data/serving_measurements.yaml (each row with its source and a
verbatim quote; every third row, by id, is held out of tuning). Each row is modelled as it ran:
the engine's own defaults of that release for the step token budget and batch cap (``vllm
serve`` and SGLang, not Xinference's: see ENGINE_DEFAULTS), its TP, replicas, weights, lengths
and load (closed loop, a burst of requests released at once, or a static offline batch). TTFT,
TPOT and output tokens/s (or end-to-end latency for static batches) are compared; the error is
estimated / measured - 1. Rows of engines Xinference does not run (TensorRT-LLM, NIM) are
modelled with vLLM's constants and reported apart. Rows measured on this machine
(benchmarks/data/cpu_measured.json, from benchmarks/measure_cpu.py) are reported apart too.

Part 2, aiconfigurator: its figures for the same rows (benchmarks/data/aiconfigurator_results.json,
written by benchmarks/aiconfigurator_reference.py in its own venv: SILICON database, the engine
versions it has data for), with its errors on the rows both cover; then the ranking of every
TP x replicas layout of 8 GPUs in its scenarios, by both tools.

    python benchmarks/serving_accuracy.py            # tables
    python benchmarks/serving_accuracy.py --json     # the numbers, for scripts and tests
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from xinf_planner.core.catalog import get_model, lookup_gpu  # noqa: E402
from xinf_planner.core.memory import EstimateInput, estimate  # noqa: E402
from xinf_planner.core.serving.load import Capacity, Workload, burst, closed_loop, static_batch  # noqa: E402
from xinf_planner.core.serving.step import Hardware, StepModel  # noqa: E402

ROWS = ROOT / "benchmarks" / "data" / "serving_measurements.yaml"
AIC = ROOT / "benchmarks" / "data" / "aiconfigurator_results.json"
CPU_ROWS = ROOT / "benchmarks" / "data" / "cpu_measured.json"
XINFERENCE_ENGINES = ("vllm", "sglang")


def _qwen3(size: str, layers: int, heads: int, inter: int, params: int):
    """Qwen3 dense (config.json of Qwen/Qwen3-14B / -32B): hidden 5120, 8 KV heads of 128, q/k
    norms, no attention bias, vocab 151936."""
    base = get_model("deepseek-r1-distill-qwen:14")
    return replace(
        base,
        family="qwen3",
        size=size,
        size_b=float(size),
        hf_id=f"Qwen/Qwen3-{size}B",
        params=params,
        num_layers=layers,
        hidden_size=5120,
        intermediate_size=inter,
        num_attention_heads=heads,
        num_kv_heads=8,
        head_dim=128,
        vocab_size=151936,
        attention_bias=False,
        qk_norm=True,
    )


ARCHS = {
    "qwen2-1.5b": lambda: get_model("deepseek-r1-distill-qwen:1.5"),
    "qwen2.5-7b": lambda: get_model("deepseek-r1-distill-qwen:7"),
    "qwen2.5-14b": lambda: get_model("deepseek-r1-distill-qwen:14"),
    "qwen2.5-32b": lambda: get_model("deepseek-r1-distill-qwen:32"),
    "llama-3.1-8b": lambda: get_model("deepseek-r1-distill-llama:8"),
    "llama-3.1-70b": lambda: get_model("deepseek-r1-distill-llama:70"),
    "deepseek-v3": lambda: get_model("deepseek-r1:671"),
    "other:qwen3-14b": lambda: _qwen3("14", 40, 40, 17408, 14_768_307_200),
    "other:qwen3-32b": lambda: _qwen3("32", 64, 64, 25600, 32_762_123_264),
}

# The step token budget and batch cap each engine applied in the measured runs (the engines'
# own server defaults, which the benchmarks used), by (engine, GPU memory >= 70 GiB):
# vLLM >= 0.8 `vllm serve` (V1): max_num_batched_tokens 8192 / max_num_seqs 1024 on >= 70 GiB
# GPUs, else 2048 / 256 (engine/arg_utils.py _set_default_args); vLLM 0.7 (V0, chunked prefill
# on for long contexts) 2048 / 256; SGLang chunked_prefill_size 8192 on >= 25 GB GPUs, max
# running requests from its pool (cap 1024 here); TensorRT-LLM / NIM max_num_tokens 8192,
# max_batch_size 2048 (trtllm-serve defaults).
ENGINE_DEFAULTS = {
    ("vllm", True): (8192, 1024),
    ("vllm", False): (2048, 256),
    ("vllm-v0", True): (2048, 256),
    ("vllm-v0", False): (2048, 256),
    ("sglang", True): (8192, 1024),
    ("sglang", False): (8192, 1024),
    ("tensorrt-llm", True): (8192, 2048),
    ("tensorrt-llm", False): (8192, 2048),
    ("nim", True): (8192, 2048),
    ("nim", False): (8192, 2048),
}


def _engine_key(row) -> str:
    version = str(row.get("engine_version") or "")
    if row["engine"] == "vllm" and version.startswith("0.7"):
        return "vllm-v0"
    return row["engine"]


def current_release(row: dict) -> bool:
    """A release of the generation Xinference 4.1 installs (vLLM >= 0.10, SGLang >= 0.5; an
    unversioned CI nightly counts as current); older releases ran other kernels for MLA and MoE."""
    version = str(row.get("engine_version") or "")
    if not version:
        return True
    parts = [int(x) for x in version.split(".")[:2] if x.isdigit()]
    floor = {"vllm": (0, 10), "sglang": (0, 5)}.get(row["engine"], (0, 0))
    return tuple(parts) >= floor


def model_row(row: dict) -> dict:
    """Our figures for one measured row: {ttft_ms, tpot_ms, output_tokens_per_s, e2e_ms} or
    {error}."""
    arch = ARCHS.get(row["arch"])
    gpu = lookup_gpu(row["gpu"])
    if arch is None or gpu is None:
        return {"error": f"not modelled: {row['arch']} on {row['gpu']}"}
    arch = arch()
    engine = row["engine"] if row["engine"] in XINFERENCE_ENGINES else "vllm"
    fmt, quant, runtime = "pytorch", "none", None
    if row["weights"] == "fp8" and arch.checkpoint_quant != "fp8":
        runtime = "fp8"
    elif row["weights"] not in ("bf16", "fp16", "fp8"):
        return {"error": f"weights {row['weights']} not modelled"}
    replicas = max(1, int(row.get("replicas") or 1))
    n = int(row["concurrency"] or 1)
    users = max(1, math.ceil(n / replicas))
    total = gpu.usable_total_gib
    inp = EstimateInput(
        model=arch,
        engine=engine,
        model_format=fmt,
        quantization=quant,
        tp=int(row["tp"]),
        pp=int(row.get("pp") or 1),
        gpu_total_gib=total,
        gpu_memory_utilization=0.9 if engine == "vllm" else None,
        context_length=int(row["input_tokens"]) + int(row["output_tokens"]),
        concurrency=users,
        gpu_bandwidth_gbps=gpu.bandwidth_gbps,
        gpu_tflops=gpu.tflops,
        runtime_quantization=runtime,
    )
    est = estimate(inp)
    if not est.fits:
        return {"error": "does not fit by the memory model: " + "; ".join(est.reasons)}
    cc = tuple(int(x) for x in gpu.cc.split(".")) if gpu.cc else None
    link = "nvlink" if "SXM" in gpu.name or "H200" in gpu.name or "HBM3" in gpu.name else "pcie"
    hw = Hardware(
        tflops=gpu.tflops, tflops_fp8=gpu.tflops_fp8, link=link, cc=cc, attention_dp=int(row.get("attention_dp") or 1)
    )
    step = StepModel(inp, est, hw)
    budget, cap = ENGINE_DEFAULTS[(_engine_key(row), (total or 0) >= 70)]
    capacity = Capacity(kv_tokens=int(est.kv_cache_tokens), max_batch=cap, step_tokens=budget)
    work = Workload(int(row["input_tokens"]), int(row["output_tokens"]), n)
    if row["load"] == "static-batch":
        prefill, tpot, e2e = static_batch(step, work, capacity)
        return {"ttft_ms": prefill * 1000, "tpot_ms": tpot * 1000, "e2e_ms": e2e * 1000}
    point = (burst if row["load"] == "burst" else closed_loop)(step, work, replicas, capacity)
    return {
        "ttft_ms": point.ttft_s * 1000,
        "tpot_ms": point.tpot_s * 1000,
        "output_tokens_per_s": point.output_tokens_per_s,
        "gpus": int(row.get("gpus") or 1),
    }


def measured_of(row: dict) -> dict:
    m = row["measured"]
    out = {
        "ttft_ms": m.get("ttft_ms") or m.get("median_ttft_ms"),
        "tpot_ms": m.get("tpot_ms") or m.get("median_tpot_ms") or m.get("itl_ms"),
        "output_tokens_per_s": m.get("output_tokens_per_s"),
        "e2e_ms": m.get("mean_e2e_latency_ms"),
    }
    if out["output_tokens_per_s"] is None and m.get("output_tokens_per_s_per_gpu") is not None:
        out["output_tokens_per_s"] = m["output_tokens_per_s_per_gpu"] * int(row.get("gpus") or 1)
    return out


FIGURES = ("ttft_ms", "tpot_ms", "output_tokens_per_s", "e2e_ms")


def errors(ours: dict, measured: dict) -> dict:
    out = {}
    for key in FIGURES:
        a, b = ours.get(key), measured.get(key)
        if a is not None and b and math.isfinite(a):
            out[key] = a / b - 1
    return out


def evaluate(rows: list[dict]) -> list[dict]:
    out = []
    for row in rows:
        ours = model_row(row)
        meas = measured_of(row)
        out.append(
            {
                "id": row["id"],
                "engine": row["engine"],
                "load": row["load"],
                "held_out": bool(row["held_out"]),
                "xinference_engine": row["engine"] in XINFERENCE_ENGINES and current_release(row),
                "older_release": row["engine"] in XINFERENCE_ENGINES and not current_release(row),
                "ours": ours,
                "measured": meas,
                "error": errors(ours, meas) if "error" not in ours else {},
            }
        )
    return out


def summary(results: list[dict], pick) -> dict:
    rows = [r for r in results if pick(r)]
    out = {"rows": len(rows)}
    for key in FIGURES:
        errs = [abs(r["error"][key]) for r in rows if key in r["error"]]
        if errs:
            out[key] = {"n": len(errs), "median": statistics.median(errs), "worst": max(errs)}
    return out


def aic_rows() -> dict:
    if not AIC.exists():
        return {}
    data = json.loads(AIC.read_text(encoding="utf-8"))
    out = {}
    for rid, entry in data.get("rows", {}).items():
        res = entry.get("result") or {}
        if entry.get("covered") and res.get("ok"):
            out[rid] = {
                "ttft_ms": res.get("ttft_ms"),
                "tpot_ms": res.get("tpot_ms"),
                "output_tokens_per_s": res.get("output_tokens_per_s"),
                "e2e_ms": res.get("request_latency_ms"),
            }
    return out


def scenario_rankings() -> list[dict]:
    """Every layout of each aiconfigurator scenario, by our model and by aiconfigurator."""
    if not AIC.exists():
        return []
    data = json.loads(AIC.read_text(encoding="utf-8"))
    out = []
    for name, sc in data.get("scenarios", {}).items():
        spec = sc["spec"]
        arch_key = spec["arch"]
        rows = []
        for key, lay in sc["layouts"].items():
            row = {
                "arch": arch_key,
                "gpu": spec["gpu"],
                "engine": spec["engine"],
                "weights": spec["weights"],
                "tp": lay["tp"],
                "pp": 1,
                "replicas": lay["replicas"],
                "gpus": spec["gpus"],
                "input_tokens": spec["input_tokens"],
                "output_tokens": spec["output_tokens"],
                "concurrency": spec["concurrency"],
                "load": "closed-loop",
                "engine_version": None,
            }
            ours = model_row(row)
            rows.append(
                {
                    "layout": key,
                    "aic": lay.get("output_tokens_per_s") if lay.get("ok") else None,
                    "aic_note": None if lay.get("ok") else (lay.get("error") or "")[:60],
                    "ours": ours.get("output_tokens_per_s"),
                    "ours_note": ours.get("error"),
                    "ours_tpot_ms": ours.get("tpot_ms"),
                    "aic_tpot_ms": lay.get("tpot_ms"),
                }
            )
        out.append({"scenario": name, "layouts": rows})
    return out


def agreement(rankings: list[dict]) -> dict:
    """Pairs of layouts where aiconfigurator's throughputs differ by more than 10%: how often our
    order agrees."""
    agree = total = 0
    disagreements = []
    for sc in rankings:
        lays = [x for x in sc["layouts"] if x["aic"] and x["ours"]]
        for i in range(len(lays)):
            for j in range(i + 1, len(lays)):
                a, b = lays[i], lays[j]
                if max(a["aic"], b["aic"]) / min(a["aic"], b["aic"]) <= 1.10:
                    continue
                total += 1
                if (a["aic"] > b["aic"]) == (a["ours"] > b["ours"]):
                    agree += 1
                else:
                    disagreements.append(f"{sc['scenario']}: {a['layout']} vs {b['layout']}")
    return {"pairs": total, "agree": agree, "disagreements": disagreements}


def _pct(x) -> str:
    return "-" if x is None else f"{x * 100:+.0f}%"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args()
    rows = yaml.safe_load(ROWS.read_text(encoding="utf-8"))["rows"]
    results = evaluate(rows)
    aic = aic_rows()
    for r in results:
        r["aic"] = aic.get(r["id"])
        r["aic_error"] = errors(r["aic"], r["measured"]) if r["aic"] else {}
    groups = {
        "tuning (vLLM/SGLang, current releases)": lambda r: r["xinference_engine"] and not r["held_out"],
        "held out (vLLM/SGLang, current releases)": lambda r: r["xinference_engine"] and r["held_out"],
        "older releases (vLLM 0.7, SGLang 0.4)": lambda r: r["older_release"],
        "other engines (TRT-LLM, NIM; vLLM constants)": lambda r: not r["xinference_engine"] and not r["older_release"],
    }
    report = {"groups": {k: summary(results, f) for k, f in groups.items()}}
    both = [r for r in results if r["aic"] and r["error"]]
    report["vs_aiconfigurator"] = {}
    for label, f in (("all", lambda r: True), ("held out", lambda r: r["held_out"])):
        sel = [r for r in both if f(r)]
        entry = {"rows": len(sel)}
        for key in FIGURES:
            ours = [abs(r["error"][key]) for r in sel if key in r["error"] and key in r["aic_error"]]
            theirs = [abs(r["aic_error"][key]) for r in sel if key in r["error"] and key in r["aic_error"]]
            if ours:
                entry[key] = {
                    "n": len(ours),
                    "ours_median": statistics.median(ours),
                    "aic_median": statistics.median(theirs),
                    "ours_worst": max(ours),
                    "aic_worst": max(theirs),
                }
        report["vs_aiconfigurator"][label] = entry
    rankings = scenario_rankings()
    report["rankings"] = rankings
    report["agreement"] = agreement(rankings)
    report["rows"] = results
    if ns.json:
        print(json.dumps(report, indent=1, default=str))
        return 0
    print(
        f"{'row':<56}{'H':>2} {'TTFT meas':>10}{'ours':>8}{'aic':>8} {'TPOT meas':>10}{'ours':>8}{'aic':>8}"
        f" {'tok/s meas':>11}{'ours':>8}{'aic':>8}"
    )
    for r in results:
        m, e, a = r["measured"], r["error"], r["aic_error"]
        if "error" in r["ours"]:
            print(f"{r['id']:<56}{'H' if r['held_out'] else '':>2} {r['ours']['error'][:70]}")
            continue
        key = "e2e_ms" if r["load"] == "static-batch" else "output_tokens_per_s"
        print(
            f"{r['id']:<56}{'H' if r['held_out'] else '':>2} "
            f"{_fmt(m['ttft_ms']):>10}{_pct(e.get('ttft_ms')):>8}{_pct(a.get('ttft_ms')):>8} "
            f"{_fmt(m['tpot_ms']):>10}{_pct(e.get('tpot_ms')):>8}{_pct(a.get('tpot_ms')):>8} "
            f"{_fmt(m.get(key)):>11}{_pct(e.get(key)):>8}{_pct(a.get(key)):>8}"
        )
    print()
    print("median / worst |error| (estimated / measured - 1)")
    for label, s in report["groups"].items():
        parts = [
            f"{k.removesuffix('_ms')}: {v['median'] * 100:.0f}% / {v['worst'] * 100:.0f}% (n={v['n']})"
            for k, v in s.items()
            if k != "rows"
        ]
        print(f"  {label} [{s['rows']} rows]: " + "; ".join(parts))
    print()
    print("against aiconfigurator 0.12.0 on the rows both model (ours / aiconfigurator, median |error|)")
    for label, entry in report["vs_aiconfigurator"].items():
        parts = [
            f"{k.removesuffix('_ms')}: {v['ours_median'] * 100:.0f}% / {v['aic_median'] * 100:.0f}% (n={v['n']})"
            for k, v in entry.items()
            if k != "rows"
        ]
        print(f"  {label} [{entry['rows']} rows]: " + "; ".join(parts))
    print()
    print("rankings of the 8-GPU layouts (output tokens/s of the whole cluster; ours / aiconfigurator)")
    for sc in rankings:
        cells = []
        for x in sc["layouts"]:
            ours = f"{x['ours']:.0f}" if x["ours"] else "no"
            aic = f"{x['aic']:.0f}" if x["aic"] else "OOM"
            cells.append(f"{x['layout']} {ours}/{aic}")
        print(f"  {sc['scenario']}: " + ", ".join(cells))
    ag = report["agreement"]
    print(f"  order agrees on {ag['agree']} of {ag['pairs']} pairs that aiconfigurator separates by > 10%")
    for d in ag["disagreements"]:
        print(f"    disagrees: {d}")
    return 0


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.0f}" if x >= 100 else f"{x:.1f}"


if __name__ == "__main__":
    sys.exit(main())
