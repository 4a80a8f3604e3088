"""MLX memory on Apple silicon: unified memory, budgeted against the GPU's wired limit.

macOS lets the GPU wire at most about 75% of system memory by default (Metal's recommended
working set; ``iogpu.wired_limit_mb`` raises it). Weights (with group scales and biases), the KV
cache of every sequence at its full length (mlx-lm's cache, 16-bit) and one prefill chunk must fit.
"""

from __future__ import annotations

import math

from xinf_planner.core.memory.activation import prefill_bytes
from xinf_planner.core.memory.constants import constants
from xinf_planner.core.memory.kv import kv_bytes_per_token
from xinf_planner.core.memory.types import GIB, Estimate, EstimateInput, gib
from xinf_planner.core.memory.weights import total_bytes

PREFILL_STEP = 2048  # mlx-lm's prefill_step_size


def budget_gib(inp: EstimateInput) -> float | None:
    if inp.gpu_wired_limit_gib is not None:
        return inp.gpu_wired_limit_gib
    ram = inp.host_memory_gib if inp.host_memory_gib is not None else inp.gpu_total_gib
    return None if ram is None else ram * constants("mlx")["wired_limit_fraction"]


def estimate(inp: EstimateInput) -> Estimate:
    m = inp.model
    weights = gib(total_bytes(m, inp.model_format, inp.quantization, inp.dtype))
    per_token = kv_bytes_per_token(m, kv_cache_dtype="auto", engine="mlx")
    kv = gib(per_token * inp.context_length * inp.concurrency)
    act = gib(prefill_bytes(m, min(PREFILL_STEP, inp.context_length)))
    overhead = constants("mlx")["overhead_gib"]
    total = weights + kv + act + overhead
    budget = budget_gib(inp)
    reasons, notes = [], []
    if budget is None:
        notes.append("no memory size given: pass --gpu-memory-gib (the Mac's RAM) to check the fit")
        tokens = 0
    else:
        tokens = max(0, math.floor((budget - weights - act - overhead - inp.gpu_used_gib) * GIB / per_token))
        if total + inp.gpu_used_gib > budget:
            reasons.append(
                f"needs {total:.2f} GiB of unified memory, above the GPU wired limit of {budget:.2f} GiB "
                f"(about 75% of RAM by default; raise iogpu.wired_limit_mb or use a smaller quantization)"
            )
    per_gpu = {"weights": weights, "kv_cache": kv, "activation": act, "overhead": overhead, "total": total}
    if budget is not None:
        per_gpu["wired_limit"] = budget
    return Estimate(
        per_gpu_gib=per_gpu,
        kv_cache_tokens=tokens,
        max_concurrent_sequences=tokens / inp.context_length if inp.context_length else 0.0,
        fits=not reasons,
        reasons=reasons,
        host_gib=total,
        notes=notes,
    )
