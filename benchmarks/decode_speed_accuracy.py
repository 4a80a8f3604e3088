#!/usr/bin/env python3
"""Decode-speed estimate against published single-stream measurements.

Rows: benchmarks/data/decode_measurements.yaml (llama.cpp llama-bench tg128 on NVIDIA GPUs, Apple
silicon and a CPU; vLLM, SGLang and TensorRT-LLM single requests on H100/H200). For each row it
prints the measured tokens/s per sequence, xinf-plan's estimate (xinf_planner.core.memory.estimate,
speed from memory/speed.py), their ratio, and whether the row is held out of tuning (every third
row of the file). Then the median absolute error over the tuning rows and over the held-out rows.

Run: python benchmarks/decode_speed_accuracy.py [--measurements FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xinf_planner.core.catalog.gpus import lookup_gpu  # noqa: E402
from xinf_planner.core.catalog.models import ModelArch, get_model  # noqa: E402
from xinf_planner.core.memory import estimate  # noqa: E402
from xinf_planner.core.memory.types import EstimateInput  # noqa: E402
from xinf_planner.core.serving.decode import decode_speed  # noqa: E402
from xinf_planner.shell.documents import load_document  # noqa: E402

MEASUREMENTS = ROOT / "benchmarks" / "data" / "decode_measurements.yaml"


def load_rows(path: Path = MEASUREMENTS) -> tuple[list[dict], dict]:
    doc = load_document(path)
    rows = doc["rows"]
    for position, row in enumerate(rows, start=1):
        row["held_out"] = position % 3 == 0
    return rows, doc.get("architectures") or {}


def row_model(row: dict, architectures: dict) -> ModelArch:
    spec = architectures.get(row["model"])
    if spec is None:
        return get_model(row["model"])
    return ModelArch(**spec, size_b=float(spec["size"]))


def row_input(row: dict, architectures: dict) -> tuple[EstimateInput, str | None]:
    """The estimate input a row describes, and the memory kind of an inline device (else None)."""
    kw: dict = {}
    kind = None
    if row.get("device"):
        dev = row["device"]
        kw.update(gpu_total_gib=float(dev["memory_gib"]), gpu_bandwidth_gbps=float(dev["bandwidth_gbps"]))
        kind = dev["memory_kind"]
    elif row.get("gpu"):
        info = lookup_gpu(row["gpu"])
        if info is None:
            raise ValueError(f"{row['id']}: unknown GPU {row['gpu']!r}")
        total = info.usable_total_gib if info.memory_bytes is not None else float(row["memory_gib"])
        kw.update(
            gpu_total_gib=total,
            gpu_bandwidth_gbps=info.bandwidth_gbps,
            gpu_tflops=info.tflops,
            unified_memory=bool(row.get("unified_memory")),
        )
        if row.get("unified_memory"):
            kw["host_memory_gib"] = float(row["memory_gib"])
    else:
        kw.update(cpu_bandwidth_gbps=float(row["cpu_bandwidth_gbps"]), host_memory_gib=float(row["memory_gib"]))
    engine = row["model_as"]
    if engine == "llama.cpp":
        kw["n_parallel"] = int(row["batch"])
    inp = EstimateInput(
        model=row_model(row, architectures),
        engine=engine,
        model_format=row["model_format"],
        quantization=row["quantization"],
        tp=int(row["tp"]),
        context_length=int(row["context"]),
        concurrency=int(row["batch"]),
        **kw,
    )
    return inp, kind


def estimated_per_sequence(row: dict, architectures: dict) -> float:
    """Estimated tokens/s of one sequence while ``batch`` sequences decode together."""
    inp, kind = row_input(row, architectures)
    est = estimate(inp)
    speed = decode_speed(inp, est, memory_kind_override=kind, interconnect=row.get("interconnect"))
    if int(row["batch"]) == 1:
        return float(speed["per_sequence"])
    return float(speed["aggregate"]) / int(speed["batch"])


def results(path: Path = MEASUREMENTS) -> list[dict]:
    rows, architectures = load_rows(path)
    out = []
    for row in rows:
        est = estimated_per_sequence(row, architectures)
        out.append({**row, "estimated": est, "ratio": est / float(row["measured"])})
    return out


def median_abs_error(res: list[dict]) -> float:
    return statistics.median(abs(r["ratio"] - 1.0) for r in res) if res else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--measurements", type=Path, default=MEASUREMENTS)
    args = ap.parse_args(argv)
    res = results(args.measurements)
    print("Decode tokens/s per sequence: published measurement vs xinf-plan's estimate")
    head = (
        f"{'row':<28} {'engine':<13} {'model':<30} {'quant':<6} {'device':<31} {'tp':>3} {'b':>2}"
        f" {'measured':>9} {'estimate':>9} {'ratio':>6}  set"
    )
    print(head)
    for r in res:
        device = r.get("gpu") or (r.get("device") or {}).get("name") or f"CPU {r.get('cpu_bandwidth_gbps')} GB/s"
        print(
            f"{r['id']:<28} {r['engine']:<13} {r['model']:<30} {r['quantization']:<6} {device:<31}"
            f" {r['tp']:>3} {r['batch']:>2} {float(r['measured']):>9.1f} {r['estimated']:>9.1f}"
            f" {r['ratio']:>6.2f}  {'held-out' if r['held_out'] else 'tuning'}"
        )
    tuning = [r for r in res if not r["held_out"]]
    held = [r for r in res if r["held_out"]]
    print()
    print(
        f"median |error|  tuning rows ({len(tuning)}): {100 * median_abs_error(tuning):.1f}%   "
        f"held-out rows ({len(held)}): {100 * median_abs_error(held):.1f}%   "
        f"all ({len(res)}): {100 * median_abs_error(res):.1f}%"
    )
    worst = max(res, key=lambda r: abs(r["ratio"] - 1.0))
    print(f"largest |error|: {worst['id']} {100 * (worst['ratio'] - 1):+.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
