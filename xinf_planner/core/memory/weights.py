"""Weight bytes, tensor by tensor, for each checkpoint format, and their share on one GPU.

pytorch: the model dtype (bf16/fp16), except DeepSeek-R1's native FP8 checkpoint (e4m3 linear
weights plus an fp32 scale per 128x128 block). awq/gptq/fp8: linear weights quantised with their
group scales and zero points (or channel scales); the token embedding, LM head, norms, biases and
MoE router stay 16-bit. mlx: every linear and the embedding quantised with a 16-bit scale and
bias per group of 64. ggufv2: llama.cpp's real type per tensor (memory/gguf.py).
"""

from __future__ import annotations

import math
from functools import lru_cache

from xinf_planner.core.catalog._data import load
from xinf_planner.core.catalog.models import ModelArch
from xinf_planner.core.memory import gguf
from xinf_planner.core.memory.tensors import (
    Tensor,
    model_tensors,
    shard_fraction,
    stage_tensors,
)
from xinf_planner.errors import InvalidInput

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "half": 2, "float32": 4}


def _scheme(model_format: str, quantization: str) -> dict:
    table = load("quant.yaml")["checkpoint_quants"].get(model_format, {})
    for name, scheme in table.items():
        if name.lower() == quantization.lower():
            return scheme
    raise InvalidInput(f"no weight data for {model_format} {quantization}; known: {', '.join(table) or 'none'}")


def _grouped(t: Tensor, bits: float, group: int, extra_per_group: float, g_idx: bool) -> float:
    groups = math.ceil(t.cols / group)
    per_row = t.cols * bits / 8 + groups * extra_per_group
    return (t.rows * per_row + (t.cols * 4 if g_idx else 0)) * t.count


def _tensor_bytes(t: Tensor, m: ModelArch, model_format: str, quantization: str, dtype_bytes: int) -> float:
    linear = not t.is_1d and t.part not in ("embed", "lm_head", "router")
    if model_format == "pytorch":
        if linear and m.checkpoint_quant == "fp8" and m.weight_block_size:
            br, bc = m.weight_block_size
            return (t.rows * t.cols + math.ceil(t.rows / br) * math.ceil(t.cols / bc) * 4) * t.count
        return t.numel * dtype_bytes
    s = _scheme(model_format, quantization)
    if model_format == "mlx":
        if s["bits"] >= 16 or t.is_1d or t.part == "router":
            return t.numel * 2
        return _grouped(t, s["bits"], s["group_size"], s["scale_bias_bytes"], False)
    if not linear:
        return t.numel * dtype_bytes
    if model_format == "fp8":
        return (t.rows * t.cols + t.rows * s["channel_scale_bytes"]) * t.count
    bits = s["bits"]
    if s.get("bits_attention") and t.part in ("attention", "shared", "mlp"):
        bits = s["bits_attention"]
    zero_bytes = s["zero_bits"] / 8 if bits == s["bits"] else bits / 8
    return _grouped(t, bits, s["group_size"], 2 + zero_bytes, bool(s.get("g_idx")))


@lru_cache(maxsize=512)
def tensor_bytes(m: ModelArch, model_format: str, quantization: str, dtype: str | None = None) -> tuple[float, ...]:
    """Bytes of each tensor of ``model_tensors(m)`` (same order)."""
    if model_format == "ggufv2":
        return gguf.tensor_bytes_table(m, quantization)
    dtype_bytes = DTYPE_BYTES.get(dtype or m.torch_dtype, 2)
    return tuple(_tensor_bytes(t, m, model_format, quantization, dtype_bytes) for t in model_tensors(m))


def total_bytes(m: ModelArch, model_format: str, quantization: str, dtype: str | None = None) -> float:
    return sum(tensor_bytes(m, model_format, quantization, dtype))


def rotary_cache_bytes(m: ModelArch, dtype: str | None = None) -> float:
    """vLLM/SGLang's cos/sin cache: max_position_embeddings x rotary dim in the model dtype, per rank."""
    rot = m.qk_rope_head_dim or m.head_dim
    return m.max_position_embeddings * rot * DTYPE_BYTES.get(dtype or m.torch_dtype, 2)


@lru_cache(maxsize=4096)
def stage_bytes_per_gpu(
    m: ModelArch, model_format: str, quantization: str, tp: int, pp: int, stage: int, dtype: str | None = None
) -> float:
    """Weight bytes on one GPU of pipeline stage ``stage`` under ``tp``-way tensor parallelism."""
    table = dict(zip(model_tensors(m), tensor_bytes(m, model_format, quantization, dtype)))
    return sum(table[t] * shard_fraction(t, m, tp) for t in stage_tensors(m, pp, stage))


def per_gpu_bytes(
    m: ModelArch, model_format: str, quantization: str, tp: int = 1, pp: int = 1, dtype: str | None = None
) -> list[float]:
    """Weight bytes per GPU for each pipeline stage."""
    return [stage_bytes_per_gpu(m, model_format, quantization, tp, pp, s, dtype) for s in range(pp)]


def active_bytes(
    m: ModelArch, model_format: str, quantization: str, experts_touched: float | None = None, dtype: str | None = None
) -> float:
    """Weight bytes one decode step reads: everything but the routed experts no token chose.

    ``experts_touched``: distinct routed experts a step uses per MoE layer (default: one token's)."""
    total = 0.0
    for t, b in zip(model_tensors(m), tensor_bytes(m, model_format, quantization, dtype)):
        if t.part == "embed":
            continue  # an embedding lookup reads one row, not the table
        if t.part == "experts":
            used = experts_touched if experts_touched is not None else m.num_experts_per_tok
            b *= min(used, m.n_routed_experts) / m.n_routed_experts
        total += b
    return total
