"""SGLang memory: the static pool set by mem_fraction_static.

SGLang measures the free memory before loading the weights (already below the physical total by
the CUDA context and, at TP >= 2, NCCL's initialisation), loads the weights, and sizes the KV pool
so that ``(1 - mem_fraction_static) x free-before`` stays free for activations and CUDA graphs:
KV = free-after-weights - (1 - frac) x free-before = frac x free-before - weights.
Xinference passes its own fraction by TP when none is given (core/engines.yaml).
"""

from __future__ import annotations

import math

from xinf_planner.core import engines
from xinf_planner.core.memory.constants import constants
from xinf_planner.core.memory.pool import loaded_weights_gib, per_token_bytes, verdict
from xinf_planner.core.memory.types import GIB, Estimate, EstimateInput, gib


def cfg() -> dict:
    return constants("sglang")


def default_fraction(tp: int) -> float:
    return engines.reservation("sglang").default_for(tp)


def fraction(inp: EstimateInput) -> float:
    return inp.mem_fraction_static if inp.mem_fraction_static is not None else default_fraction(inp.tp * inp.pp)


def context_gib(inp: EstimateInput) -> float:
    c = cfg()
    return c["cuda_context_gib"] + (c["nccl_init_gib"] if inp.tp * inp.pp > 1 else 0.0)


def free_before_gib(inp: EstimateInput) -> float:
    return inp.gpu_total_gib - inp.gpu_used_gib - context_gib(inp)


def estimate(inp: EstimateInput) -> Estimate:
    frac = fraction(inp)
    before = free_before_gib(inp)
    weights = loaded_weights_gib(inp)
    kv_gib = frac * before - weights
    tokens = max(0, math.floor(kv_gib * GIB / per_token_bytes(inp)))
    headroom = (1 - frac) * before
    reasons, notes = verdict(
        inp,
        tokens,
        kv_gib,
        f"no room for the KV cache: mem_fraction_static {frac:.2f} x {before:.2f} GiB free "
        f"= {frac * before:.2f} GiB does not cover the {weights:.2f} GiB of weights",
    )
    ctx = context_gib(inp)
    per_gpu = {
        "weights": weights,
        "kv_cache": max(0.0, kv_gib),
        "activation": headroom,
        "overhead": ctx,
        "total": ctx + weights + max(0.0, kv_gib) + headroom,
        "mem_fraction_static": frac,
        "free_before_load": before,
    }
    return Estimate(
        per_gpu_gib=per_gpu,
        kv_cache_tokens=tokens,
        max_concurrent_sequences=tokens / inp.context_length if inp.context_length else 0.0,
        fits=not reasons,
        reasons=reasons,
        notes=notes,
    )


def min_fraction(inp: EstimateInput, tokens_needed: int) -> float | None:
    """Smallest mem_fraction_static (rounded up to 0.01) whose pool holds ``tokens_needed``."""
    before = free_before_gib(inp)
    if before <= 0:
        return None
    need = loaded_weights_gib(inp) + gib(tokens_needed * per_token_bytes(inp))
    frac = math.ceil(need / before * 100 - 1e-9) / 100
    return frac if frac <= 0.95 else None
