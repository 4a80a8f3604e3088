"""KV-cache bytes per token, per GPU.

Dense attention: 2 (K and V) x layers x KV heads x head_dim x bytes; under tensor parallelism each
rank holds max(1, kv_heads / TP) heads (past TP = kv_heads the heads are replicated, not split).
MLA (DeepSeek-R1) in vLLM, SGLang and llama.cpp caches the compressed latent and the rope key:
layers x (kv_lora_rank + qk_rope_head_dim) x bytes, the same on every TP rank. Transformers'
DeepseekV3 caches the decompressed K and V of every head.
"""

from __future__ import annotations

from xinf_planner.core.catalog.models import ModelArch
from xinf_planner.core.memory.constants import constants
from xinf_planner.errors import InvalidInput

_FP8 = {"fp8", "fp8_e4m3", "fp8_e5m2", "fp8_inc"}


def kv_element_bytes(kv_cache_dtype: str, engine: str, model_dtype_bytes: int = 2) -> float:
    d = (kv_cache_dtype or "auto").lower()
    if d in ("auto", "none", ""):
        return float(model_dtype_bytes)
    if d in _FP8:
        return 1.0
    if d in ("bfloat16", "float16", "half"):
        return 2.0
    table = constants("llama.cpp")["kv_type_bytes"]
    if d in table and (engine == "llama.cpp" or d in ("f16", "bf16", "f32")):
        return float(table[d])
    raise InvalidInput(
        f"unknown KV cache dtype {kv_cache_dtype!r} for {engine}; choose one of: auto, fp8"
        + (", f16, q8_0, q4_0" if engine == "llama.cpp" else "")
    )


def kv_heads_per_rank(m: ModelArch, tp: int) -> int:
    return max(1, m.num_kv_heads // max(1, tp))


def kv_width_per_layer(m: ModelArch, tp: int = 1, engine: str = "vllm") -> int:
    """Cached values per token per layer on one rank (K and V together)."""
    if m.is_mla:
        if engine == "transformers":
            heads = m.num_attention_heads
            return heads * (m.qk_nope_head_dim + m.qk_rope_head_dim) + heads * m.v_head_dim
        return m.kv_lora_rank + m.qk_rope_head_dim
    return 2 * kv_heads_per_rank(m, tp) * m.head_dim


def kv_bytes_per_token(
    m: ModelArch, *, tp: int = 1, layers: int | None = None, kv_cache_dtype: str = "auto", engine: str = "vllm"
) -> float:
    """KV bytes one token occupies on one GPU holding ``layers`` layers (default: all)."""
    n = m.num_layers if layers is None else layers
    return n * kv_width_per_layer(m, tp, engine) * kv_element_bytes(kv_cache_dtype, engine)
