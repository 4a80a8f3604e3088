#!/usr/bin/env python3
"""Estimator accuracy against real vLLM/SGLang start-up logs, side by side with two other rules.

Rows: benchmarks/data/memory_measurements.yaml (a copy of shared/calibration/measurements.yaml;
or --measurements). For every row that logs the weights per GPU, and every row whose KV pool is
logged together with the GPU total (or SGLang's free memory before loading), it prints the
measured figure and three estimates with their errors:

* ours      xinf_planner.core.memory.estimate
* xinf      Xinference's own estimate_llm_gpu_memory (4.1, allow_download=False): its model_mem per
            GPU (divided by TP) for weights; for the KV pool, the engine budget (vLLM: utilisation x
            total; SGLang: mem_fraction_static x free memory before loading) minus its weights per
            GPU, activation and overhead. It has no fp8 spec for these families, so fp8 rows feed
            its own estimate_llm_gpu_memory_details the "int8" path (8-bit weights).
* gpustack  GPUStack's published rule, VRAM = 1.2 x weights + 2 GiB, with weights = parameters x
            bytes per parameter (per GPU, divided by TP); its implied KV pool is the same budget
            minus 1.2 x weights + 2 GiB.

Then the median absolute error of each, per metric. Run: python benchmarks/estimator_accuracy.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xinf_planner.core.memory import estimate  # noqa: E402
from xinf_planner.core.memory.calibration import row_input  # noqa: E402
from xinf_planner.core.memory.kv import kv_bytes_per_token  # noqa: E402
from xinf_planner.core.memory.pool import binding_layers  # noqa: E402
from xinf_planner.shell.documents import load_document  # noqa: E402

GIB = 2**30
MIB = 2**20


def budget_gib(inp, est) -> float:
    p = est.per_gpu_gib
    if inp.engine == "vllm":
        return p["reservation"]
    return p["mem_fraction_static"] * p["free_before_load"]


def xinference_parts(inp):
    """(weights GiB per GPU, non-weight GiB per GPU) from Xinference's own estimator, or None."""
    try:
        from xinference.model.llm.memory import (
            estimate_llm_gpu_memory,
            estimate_llm_gpu_memory_details,
            get_model_layers_info,
        )
    except Exception:  # not installed
        return None
    m = inp.model
    ctx = inp.context_length
    if inp.model_format == "fp8":
        info = get_model_layers_info(m.size, m.family, "pytorch", "none", allow_download=False)
        mem = None if info is None else estimate_llm_gpu_memory_details(info, m.size_b, "int8", ctx, "pytorch")
    else:
        mem = estimate_llm_gpu_memory(m.size, inp.quantization, ctx, inp.model_format, m.family, allow_download=False)
    if mem is None:
        return None
    return mem.model_mem * MIB / GIB / (inp.tp * inp.pp), (mem.activation_mem + mem.overhead) * MIB / GIB


def gpustack_weights_gib(inp) -> float:
    bytes_per_param = 1 if inp.model_format == "fp8" else 2
    return inp.model.params * bytes_per_param / GIB / (inp.tp * inp.pp)


def pct(got, want):
    return None if got is None or want in (None, 0) else (got - want) / abs(want) * 100


def fmt(x, width=8, digits=2):
    return f"{'n/a':>{width}}" if x is None else f"{x:>{width}.{digits}f}"


def fmt_err(e):
    return f"{'n/a':>7}" if e is None else f"{e:>+6.1f}%"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="estimator accuracy against measured start-up logs")
    ap.add_argument("--measurements", type=Path, default=ROOT / "benchmarks" / "data" / "memory_measurements.yaml")
    args = ap.parse_args(argv)
    rows = load_document(args.measurements)["rows"]

    w_err = {"ours": [], "xinf": [], "gpustack": []}
    kv_err = {"ours": [], "xinf": [], "gpustack": []}
    print("Weights per GPU (GiB)")
    print(
        f"{'row':<7}{'model (engine, TPxPP, quant)':<46}{'measured':>9}{'ours':>9}{'err':>8}{'xinf':>9}{'err':>8}"
        f"{'gpustack':>9}{'err':>8}"
    )
    kv_lines = []
    for row in rows:
        m = row["measured"]
        inp = row_input(row)
        if inp.gpu_total_gib is None:
            inp.gpu_total_gib = 79.19  # weights do not depend on it
        est = estimate(inp)
        xinf = xinference_parts(inp)
        label = f"{inp.model.ref} ({row['engine']}, {inp.tp}x{inp.pp}, {row['quantization']})"
        if m.get("weights_gib_per_gpu"):
            want = m["weights_gib_per_gpu"]
            ours, xw, gw = est.per_gpu_gib["weights"], (xinf[0] if xinf else None), gpustack_weights_gib(inp)
            errs = [pct(ours, want), pct(xw, want), pct(gw, want)]
            for key, e in zip(w_err, errs):
                if e is not None:
                    w_err[key].append(abs(e))
            print(
                f"{row['id']:<7}{label:<46}{want:>9.2f}{fmt(ours, 9)}{fmt_err(errs[0]):>8}{fmt(xw, 9)}"
                f"{fmt_err(errs[1]):>8}{fmt(gw, 9)}{fmt_err(errs[2]):>8}"
            )
        has_total = row.get("gpu_total_gib") or (m.get("other") or {}).get("avail_mem_before_load_gib")
        kv_logged = m.get("kv_cache_gib_per_gpu")
        if has_total and kv_logged is not None and kv_logged > 0:
            budget = budget_gib(inp, est)
            per_token = kv_bytes_per_token(
                inp.model, tp=inp.tp, layers=binding_layers(inp), kv_cache_dtype=inp.kv_cache_dtype
            )
            to_tokens = lambda g, per_token=per_token: None if g is None else max(0.0, g) * GIB / per_token
            want_tokens = m.get("kv_cache_tokens") or kv_logged * GIB / per_token
            ours_t = est.kv_cache_tokens
            xinf_t = to_tokens(budget - xinf[0] - xinf[1]) if xinf else None
            gw = gpustack_weights_gib(inp)
            gs_t = to_tokens(budget - 1.2 * gw - 2.0)
            errs = [pct(ours_t, want_tokens), pct(xinf_t, want_tokens), pct(gs_t, want_tokens)]
            for key, e in zip(kv_err, errs):
                if e is not None:
                    kv_err[key].append(abs(e))
            kv_lines.append(
                f"{row['id']:<7}{label:<46}{inp.context_length:>7}{want_tokens / 1000:>9.1f}{ours_t / 1000:>9.1f}"
                f"{fmt_err(errs[0]):>8}{fmt(xinf_t and xinf_t / 1000, 9, 1)}{fmt_err(errs[1]):>8}"
                f"{fmt(gs_t / 1000, 9, 1)}{fmt_err(errs[2]):>8}"
            )
    print(
        f"{'median |error|':<53}{'':>9}{statistics.median(w_err['ours']):>16.1f}%"
        f"{statistics.median(w_err['xinf']):>16.1f}%{statistics.median(w_err['gpustack']):>16.1f}%"
    )
    print()
    print("KV pool per replica (thousand tokens; rows that log the pool and the GPU total; ctx = max_model_len)")
    print(
        f"{'row':<7}{'model (engine, TPxPP, quant)':<46}{'ctx':>7}{'measured':>9}{'ours':>9}{'err':>8}"
        f"{'xinf':>9}{'err':>8}{'gpustack':>9}{'err':>8}"
    )
    print("\n".join(kv_lines))
    print(
        f"{'median |error|':<60}{'':>9}{statistics.median(kv_err['ours']):>16.1f}%"
        f"{statistics.median(kv_err['xinf']):>16.1f}%{statistics.median(kv_err['gpustack']):>16.1f}%"
    )
    print(
        f"{'mean |error|':<60}{'':>9}{statistics.mean(kv_err['ours']):>16.1f}%"
        f"{statistics.mean(kv_err['xinf']):>16.1f}%{statistics.mean(kv_err['gpustack']):>16.1f}%"
    )
    best = min(kv_err, key=lambda k: statistics.median(kv_err[k]))
    print(f"\nlowest median KV error: {best}")
    return 0 if best == "ours" else 1


if __name__ == "__main__":
    sys.exit(main())
