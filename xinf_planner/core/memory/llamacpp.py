"""llama.cpp memory (Xinference's xllamacpp engine).

Weights are the GGUF tensor bytes (memory/gguf.py). The token embedding stays in host memory even
with every layer offloaded; ``n_gpu_layers`` counts the repeating layers plus the output layer
(-1 or more than the layer count: all of them). Layers are split over the GPUs in proportion
(``tensor_split``), so each GPU holds about 1/n of the offloaded layers and their KV. The KV cache
is allocated for the whole ``n_ctx`` up front, shared by ``n_parallel`` slots (Xinference sets
n_ctx = context_length x n_parallel). A compute buffer per device holds the largest f32
intermediate of one ubatch. CPU-only: everything counts against RAM.
"""

from __future__ import annotations

from xinf_planner.core import engines
from xinf_planner.core.memory.activation import mlp_width
from xinf_planner.core.memory.constants import constants
from xinf_planner.core.memory.gguf import tensor_bytes_table
from xinf_planner.core.memory.kv import kv_bytes_per_token
from xinf_planner.core.memory.tensors import model_tensors
from xinf_planner.core.memory.types import Estimate, EstimateInput, gib
from xinf_planner.core.units import GIB


def cfg() -> dict:
    return constants("llama.cpp")


def slots(inp: EstimateInput) -> int:
    return inp.n_parallel or max(1, inp.concurrency)


def n_ctx(inp: EstimateInput) -> int:
    return inp.n_ctx or engines.slot_context(inp.context_length, slots(inp))


def offloaded_layers(inp: EstimateInput) -> tuple[int, bool]:
    """(repeating layers on GPU, output layer on GPU)."""
    if inp.gpu_total_gib is None:
        return 0, False
    L = inp.model.num_layers
    ngl = inp.n_gpu_layers
    if ngl is None or ngl < 0 or ngl > L:
        return L, True
    return ngl, False


def compute_buffer_bytes(inp: EstimateInput, ctx: int, with_logits: bool) -> float:
    c = cfg()
    m = inp.model
    ub = c["n_ubatch"]
    flash = c["flash_attn"] if inp.flash_attn is None else inp.flash_attn
    scores = 0 if flash else ub * ctx * m.num_attention_heads * 4
    logits = ub * m.vocab_size * 4 if with_logits else 0
    mlp = ub * 2 * mlp_width(m) * 4
    return max(scores, logits, mlp) + c["compute_scratch_gib"] * GIB


def estimate(inp: EstimateInput) -> Estimate:
    m = inp.model
    quant = inp.quantization
    tensors = model_tensors(m)
    sizes = tensor_bytes_table(m, quant)
    on_gpu_layers, output_on_gpu = offloaded_layers(inp)
    n_gpus = max(1, inp.tp * inp.pp)
    gpu_w = host_w = 0.0
    for t, b in zip(tensors, sizes):
        if t.layer is not None:
            on = t.layer >= m.num_layers - on_gpu_layers  # llama.cpp offloads the last layers first
        else:
            on = output_on_gpu and t.name in ("output", "output_norm")
        if on:
            gpu_w += b
        else:
            host_w += b
    ctx = n_ctx(inp)
    kv_type = "f16" if inp.kv_cache_dtype in ("auto", None) else inp.kv_cache_dtype
    kv_per_token_layer = kv_bytes_per_token(m, layers=1, kv_cache_dtype=kv_type, engine="llama.cpp")
    gpu_kv = ctx * kv_per_token_layer * on_gpu_layers
    host_kv = ctx * kv_per_token_layer * (m.num_layers - on_gpu_layers)
    # the output layer sits on the last GPU; the binding GPU carries its share plus the output
    out_bytes = sum(b for t, b in zip(tensors, sizes) if t.name == "output") if output_on_gpu else 0.0
    per_gpu_w = (gpu_w - out_bytes) / n_gpus + out_bytes
    per_gpu_kv = gpu_kv / n_gpus
    compute = compute_buffer_bytes(inp, ctx, with_logits=output_on_gpu) if on_gpu_layers else 0.0
    host_compute = compute_buffer_bytes(inp, ctx, with_logits=not output_on_gpu)
    host = gib(host_w + host_kv + host_compute)
    reasons, notes = [], []
    per_slot = ctx // slots(inp)
    if per_slot < inp.context_length:
        reasons.append(
            f"n_ctx {ctx} shared by {slots(inp)} slots gives {per_slot} tokens per sequence, "
            f"less than the context length {inp.context_length}"
        )
    total = gib(per_gpu_w + per_gpu_kv + compute)
    if inp.gpu_total_gib is not None:
        free = inp.gpu_total_gib - inp.gpu_used_gib
        if total > free:
            reasons.append(
                f"needs {total:.2f} GiB per GPU ({on_gpu_layers}/{m.num_layers} layers offloaded "
                f"over {n_gpus} GPU(s)) but only {free:.2f} GiB is free; offload fewer layers"
            )
    else:
        notes.append("CPU only: weights, KV cache and compute buffer count against system RAM")
    if inp.host_memory_gib is not None and host > inp.host_memory_gib:
        reasons.append(f"needs {host:.2f} GiB of system RAM, the host has {inp.host_memory_gib:.2f} GiB")
    notes.append(
        f"n_ctx {ctx} = context_length x n_parallel ({slots(inp)}); the token embedding "
        f"({gib(sizes[0]):.2f} GiB) stays in system RAM"
    )
    if m.is_mla:
        notes.append(
            "KV assumes a GGUF with MLA tensors (attn_k_b/attn_v_b, llama.cpp b5097 or later); "
            "older conversions cache the full K/V of every head"
        )
    per_gpu = {
        "weights": gib(per_gpu_w),
        "kv_cache": gib(per_gpu_kv),
        "activation": gib(compute),
        "overhead": 0.0,
        "total": total,
        "host_weights": gib(host_w),
        "host_kv_cache": gib(host_kv),
    }
    return Estimate(
        per_gpu_gib=per_gpu,
        kv_cache_tokens=ctx,
        max_concurrent_sequences=float(slots(inp))
        if per_slot >= inp.context_length
        else ctx / max(1, inp.context_length),
        fits=not reasons,
        reasons=reasons,
        host_gib=host,
        notes=notes,
    )
