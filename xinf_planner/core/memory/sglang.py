"""SGLang memory: the static pool set by mem_fraction_static.

SGLang measures the free memory before loading the weights (already below the physical total by
the CUDA context and, at TP >= 2, NCCL's initialisation), loads the weights, and sizes the KV pool
so that ``(1 - mem_fraction_static) x free-before`` stays free for activations and CUDA graphs:
KV = free-after-weights - (1 - frac) x free-before = frac x free-before - weights.
Xinference passes its own fraction by TP when none is given (core/engines.yaml).
"""

from __future__ import annotations

import math
from functools import lru_cache

from xinf_planner.core import engines
from xinf_planner.core.memory.activation import logits_bytes, prefill_bytes
from xinf_planner.core.memory.constants import constants
from xinf_planner.core.memory.pool import per_token_bytes, verdict
from xinf_planner.core.memory.tensors import model_tensors, shard_fraction, stage_tensors
from xinf_planner.core.memory.types import GIB, Estimate, EstimateInput, gib
from xinf_planner.core.memory.weights import tensor_bytes


def cfg() -> dict:
    return constants("sglang")


def default_fraction(tp: int) -> float:
    return engines.reservation("sglang").default_for(tp)


def fraction(inp: EstimateInput) -> float:
    return inp.mem_fraction_static if inp.mem_fraction_static is not None else default_fraction(inp.tp * inp.pp)


def context_gib(inp: EstimateInput) -> float:
    """What is taken before the weights load: the CUDA context and, at TP > 1, the communicators."""
    c = cfg()
    ranks = inp.tp * inp.pp
    if ranks <= 1:
        return c["cuda_context_gib"]
    dist = c["dist_init_gib"]["tp_8_or_more" if ranks >= 8 else "tp_2_to_4"]
    return c["cuda_context_gib"] + dist


FUSED = {
    "attn_q": "attn_qkv",
    "attn_k": "attn_qkv",
    "attn_v": "attn_qkv",
    "ffn_gate": "ffn_gate_up",
    "ffn_up": "ffn_gate_up",
}


def resident_weights_gib(inp: EstimateInput) -> float:
    """The weights of the busiest rank as the caching allocator holds them (fused parameters of
    10 MiB or more rounded up to 2 MiB each), plus the fp32 RoPE cache."""
    return _resident_gib(inp.model, *inp.weight_scheme, inp.dtype, inp.tp, inp.pp)


@lru_cache(maxsize=1024)
def _resident_gib(m, fmt: str, quant: str, dtype: str | None, tp: int, pp: int) -> float:
    c = cfg()
    table = dict(zip(model_tensors(m), tensor_bytes(m, fmt, quant, dtype)))
    step, large = c["allocator_round_bytes"], c["allocator_min_large_bytes"]
    busiest = 0.0
    for stage in range(pp):
        params: dict = {}
        for t in stage_tensors(m, pp, stage):
            key = (t.layer, FUSED.get(t.name, t.name))
            params[key] = params.get(key, 0.0) + table[t] * shard_fraction(t, m, tp)
        held = sum(math.ceil(b / step) * step if b >= large else b for b in params.values())
        busiest = max(busiest, held)
    rope = m.max_position_embeddings * (m.qk_rope_head_dim or m.head_dim) * c["rope_cache_bytes_per_elem"]
    return gib(busiest + rope)


def free_before_gib(inp: EstimateInput) -> float:
    return inp.gpu_total_gib - inp.gpu_used_gib - context_gib(inp)


def estimate(inp: EstimateInput) -> Estimate:
    frac = fraction(inp)
    before = free_before_gib(inp)
    weights = resident_weights_gib(inp)
    kv_gib = frac * before - weights
    tokens = max(0, math.floor(kv_gib * GIB / per_token_bytes(inp)))
    headroom = (1 - frac) * before
    reasons, notes = verdict(
        inp,
        tokens,
        kv_gib,
        f"no room for the KV cache: mem_fraction_static {frac:.2f} x {before:.2f} GiB free "
        f"= {frac * before:.2f} GiB does not cover the {weights:.2f} GiB of weights",
        starts_short=True,
    )
    ctx = context_gib(inp)
    # What SGLang allocates in the slack it leaves: one chunked-prefill step's activations (the
    # 2048/8192-token chunk, engines.yaml) and the logits of a full batch; the rest stays free.
    chunk = engines.step_tokens("sglang", inp.gpu_total_gib) or 2048
    seqs = inp.max_num_seqs or engines.max_batch("sglang") or 256
    activation = min(headroom, gib(max(prefill_bytes(inp.model, chunk, inp.tp), logits_bytes(inp.model, seqs))))
    per_gpu = {
        "weights": weights,
        "kv_cache": max(0.0, kv_gib),
        "activation": activation,
        "overhead": ctx,
        "total": ctx + weights + max(0.0, kv_gib) + activation,
        "mem_fraction_static": frac,
        "free_before_load": before,
        "left_for_activations": headroom,
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
    need = resident_weights_gib(inp) + gib(tokens_needed * per_token_bytes(inp))
    frac = math.ceil(need / before * 100 - 1e-9) / 100
    return frac if frac <= 0.95 else None
