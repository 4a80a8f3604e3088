"""What vLLM and SGLang share: weights as loaded on the busiest GPU, the binding stage's per-token
KV bytes, and the verdict on a KV pool of a given size."""

from __future__ import annotations

from xinf_planner.core.memory.kv import kv_bytes_per_token
from xinf_planner.core.memory.tensors import pp_layer_ranges
from xinf_planner.core.memory.types import EstimateInput, gib
from xinf_planner.core.memory.weights import per_gpu_bytes, rotary_cache_bytes


def loaded_weights_gib(inp: EstimateInput) -> float:
    """Weights on the most loaded GPU, with the rotary cache every rank allocates at load."""
    stages = per_gpu_bytes(inp.model, *inp.weight_scheme, inp.tp, inp.pp, inp.dtype)
    return gib(max(stages) + rotary_cache_bytes(inp.model, inp.dtype))


def binding_layers(inp: EstimateInput) -> int:
    """Layers of the pipeline stage holding the most (it runs out of KV first)."""
    return max(len(r) for r in pp_layer_ranges(inp.model.num_layers, inp.pp))


def per_token_bytes(inp: EstimateInput) -> float:
    return kv_bytes_per_token(
        inp.model, tp=inp.tp, layers=binding_layers(inp), kv_cache_dtype=inp.kv_cache_dtype, engine=inp.engine
    )


SHORT_POOL_MARGIN = 6  # SGLang: max_req_input_len = min(context, pool) - 1 - 5 (tp_worker.py)


def short_pool_note(tokens: int, context_length: int) -> str:
    """What SGLang does when its pool is shorter than the context length: it starts."""
    return (
        f"SGLang starts with a KV pool of {tokens} tokens, fewer than context_length {context_length}: "
        f"a prompt of {max(0, tokens - SHORT_POOL_MARGIN)} tokens or more is refused (HTTP 400 'Input length "
        f"... exceeds the maximum allowed length'), and an output is cut at about {tokens} tokens in all"
    )


def verdict(
    inp: EstimateInput, tokens: int, kv_gib: float, no_room: str, refuses: str = "", starts_short: bool = False
) -> tuple[list, list]:
    """(reasons, notes) for a pool of ``tokens`` tokens (``kv_gib`` GiB). ``starts_short``: the
    engine starts with a pool shorter than one sequence (SGLang) rather than refusing to."""
    reasons, notes = [], []
    if kv_gib <= 0 or tokens <= SHORT_POOL_MARGIN:
        reasons.append(no_room)
    elif tokens < inp.context_length and starts_short:
        notes.append(short_pool_note(tokens, inp.context_length))
        return reasons, notes
    elif tokens < inp.context_length:
        reasons.append(
            f"one sequence of {inp.context_length} tokens does not fit: the KV pool holds {tokens} tokens{refuses}"
        )
    if not reasons and inp.concurrency * inp.context_length > tokens:
        notes.append(
            f"{inp.concurrency} sequences of {inp.context_length} tokens need "
            f"{inp.concurrency * inp.context_length} KV tokens; the pool holds {tokens}, so some wait"
        )
    return reasons, notes
