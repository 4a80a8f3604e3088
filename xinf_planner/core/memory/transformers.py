"""Transformers: the fallback estimate. Weights (split over the GPUs by device_map="auto"), the KV
cache of every sequence at full length (no paging), one prefill's activations and the CUDA context."""

from __future__ import annotations

import math

from xinf_planner.core.memory.activation import logits_bytes, prefill_bytes
from xinf_planner.core.memory.constants import constants
from xinf_planner.core.memory.kv import kv_bytes_per_token
from xinf_planner.core.memory.types import GIB, Estimate, EstimateInput, gib
from xinf_planner.core.memory.weights import total_bytes


def estimate(inp: EstimateInput) -> Estimate:
    m = inp.model
    n = max(1, inp.tp * inp.pp)
    weights = gib(total_bytes(m, inp.model_format, inp.quantization, inp.dtype)) / n
    per_token = kv_bytes_per_token(m, kv_cache_dtype="auto", engine="transformers") / n
    kv = gib(per_token * inp.context_length * inp.concurrency)
    act = gib(prefill_bytes(m, inp.context_length) + logits_bytes(m, inp.concurrency))
    cpu_only = inp.gpu_total_gib is None
    overhead = 0.0 if cpu_only else constants("transformers")["cuda_context_gib"]
    total = weights + kv + act + overhead
    reasons, notes = [], []
    if cpu_only:
        host = total * n
        notes.append("CPU only: everything counts against system RAM")
        if inp.host_memory_gib is not None and host > inp.host_memory_gib:
            reasons.append(f"needs {host:.2f} GiB of system RAM, the host has {inp.host_memory_gib:.2f} GiB")
        room = (inp.host_memory_gib or host) - weights - act
    else:
        host = 0.0
        free = inp.gpu_total_gib - inp.gpu_used_gib
        if total > free:
            reasons.append(f"needs {total:.2f} GiB per GPU but only {free:.2f} GiB is free")
        room = free - weights - act - overhead
    tokens = max(0, math.floor(room * GIB / per_token))
    per_gpu = {"weights": weights, "kv_cache": kv, "activation": act, "overhead": overhead, "total": total}
    return Estimate(
        per_gpu_gib=per_gpu,
        kv_cache_tokens=tokens,
        max_concurrent_sequences=tokens / inp.context_length if inp.context_length else 0.0,
        fits=not reasons,
        reasons=reasons,
        host_gib=host,
        notes=notes,
    )
