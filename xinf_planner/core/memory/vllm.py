"""vLLM (V1) memory: what it reserves, and the KV pool that is left.

vLLM reserves ``gpu_memory_utilization x total`` on each GPU and refuses to start when less than
that is free. The KV pool is the reservation minus the weights, minus the activation peak of the
profiling run, minus non-torch memory (CUDA context extras, NCCL, custom all-reduce), minus CUDA
graph memory (subtracted since about v0.21). The pool is cut into blocks of ``block_size`` tokens.
See shared/docs/memory-notes.md for the mechanisms and core/memory/constants.yaml for the figures.
"""

from __future__ import annotations

import math

from xinf_planner.core import engines
from xinf_planner.core.memory.activation import logits_bytes, prefill_bytes
from xinf_planner.core.memory.constants import constants
from xinf_planner.core.memory.pool import (
    binding_layers,
    loaded_weights_gib,
    per_token_bytes,
    verdict,
)
from xinf_planner.core.memory.types import (
    GIB,
    Estimate,
    EstimateInput,
    gib,
    version_at_least,
)


def cfg() -> dict:
    return constants("vllm")


def utilization(inp: EstimateInput) -> float:
    return inp.gpu_memory_utilization if inp.gpu_memory_utilization is not None else engines.reservation("vllm").default


def activation_gib(inp: EstimateInput) -> float:
    c = cfg()
    m = inp.model
    seqs = inp.max_num_seqs or engines.max_batch("vllm")
    if version_at_least(inp.engine_version, c["v1_since"]):
        batched = inp.max_num_batched_tokens or c["max_num_batched_tokens"]
        sampler = c["sampler_logit_copies"] * logits_bytes(m, seqs)
        return gib(max(sampler, prefill_bytes(m, batched, inp.tp)))
    # V0: one prefill of max_num_batched_tokens (max_model_len without chunked prefill)
    batched = inp.max_num_batched_tokens or max(inp.context_length, 2048)
    return gib(max(prefill_bytes(m, batched, inp.tp), logits_bytes(m, seqs)))


def non_torch_gib(inp: EstimateInput) -> float:
    table = cfg()["non_torch_gib"]
    if inp.tp > 1:
        return table["tp_multi"]
    return table["pp_only"] if inp.pp > 1 else table["tp1"]


def cuda_graph_gib(inp: EstimateInput) -> float:
    c = cfg()
    if inp.enforce_eager or not version_at_least(inp.engine_version, c["cuda_graph_subtracted_since"]):
        return 0.0
    return c["cuda_graph_gib_per_layer_hidden"] * binding_layers(inp) * inp.model.hidden_size


def fixed_gib(inp: EstimateInput) -> dict[str, float]:
    return {
        "weights": loaded_weights_gib(inp),
        "activation": activation_gib(inp),
        "non_torch": non_torch_gib(inp),
        "cuda_graphs": cuda_graph_gib(inp),
    }


def estimate(inp: EstimateInput) -> Estimate:
    c = cfg()
    total = inp.gpu_total_gib
    util = utilization(inp)
    reservation = util * total
    free = total - inp.gpu_used_gib
    parts = fixed_gib(inp)
    kv_gib = reservation - sum(parts.values())
    per_token = per_token_bytes(inp)
    block = c["block_size"]
    tokens = max(0, math.floor(kv_gib * GIB / (per_token * block)) * block)
    no_room = (
        f"no room for the KV cache: weights {parts['weights']:.2f} + activation "
        f"{parts['activation']:.2f} + overhead {parts['non_torch'] + parts['cuda_graphs']:.2f} GiB "
        f"exceed the {reservation:.2f} GiB reservation"
    )
    reasons, notes = verdict(
        inp, tokens, kv_gib, no_room, f" (vLLM refuses to start; the largest context that fits is {tokens})"
    )
    if reservation > free + 1e-9:
        reasons.insert(
            0,
            f"vLLM reserves gpu_memory_utilization {util:.2f} x {total:.2f} GiB = {reservation:.2f} "
            f"GiB per GPU, but only {free:.2f} GiB is free",
        )
    overhead = parts["non_torch"] + parts["cuda_graphs"]
    per_gpu = {
        "weights": parts["weights"],
        "kv_cache": max(0.0, kv_gib),
        "activation": parts["activation"],
        "overhead": overhead,
        "total": parts["weights"] + max(0.0, kv_gib) + parts["activation"] + overhead,
        "non_torch": parts["non_torch"],
        "cuda_graphs": parts["cuda_graphs"],
        "reservation": reservation,
        "free": free,
    }
    return Estimate(
        per_gpu_gib=per_gpu,
        kv_cache_tokens=tokens,
        max_concurrent_sequences=tokens / inp.context_length if inp.context_length else 0.0,
        fits=not reasons,
        reasons=reasons,
        notes=notes,
    )


def min_utilization(inp: EstimateInput, tokens_needed: int) -> float | None:
    """Smallest gpu_memory_utilization (rounded up to 0.01) whose pool holds ``tokens_needed``."""
    block = cfg()["block_size"]
    blocks = math.ceil(tokens_needed / block)
    need = sum(fixed_gib(inp).values()) + gib(blocks * block * per_token_bytes(inp))
    util = math.ceil(need / inp.gpu_total_gib * 100 - 1e-9) / 100
    free_fraction = (inp.gpu_total_gib - inp.gpu_used_gib) / inp.gpu_total_gib
    return util if util <= min(free_fraction, 1.0) + 1e-12 else None
