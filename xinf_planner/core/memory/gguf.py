"""GGUF weight bytes: llama.cpp's per-tensor type choice (data/quant.yaml) and ggml type sizes."""

from __future__ import annotations

from functools import lru_cache

from xinf_planner.core.catalog._data import load
from xinf_planner.core.catalog.models import ModelArch
from xinf_planner.core.memory.tensors import Tensor, model_tensors
from xinf_planner.errors import InvalidInput


def type_bytes(type_name: str, n_elements: float) -> float:
    block, nbytes = load("quant.yaml")["ggml_types"][type_name]
    return n_elements * nbytes / block


def bits_per_weight(type_name: str) -> float:
    block, nbytes = load("quant.yaml")["ggml_types"][type_name]
    return 8.0 * nbytes / block


def use_more_bits(i: int, n: int) -> bool:
    """llama-quant.cpp's use_more_bits(): the first and last eighth, and every third layer between."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _layers_match(sel, i: int, n: int) -> bool:
    if sel == "all":
        return True
    if sel == "more_bits":
        return use_more_bits(i, n)
    if isinstance(sel, dict) and "first_n" in sel:
        return i < sel["first_n"]
    if isinstance(sel, dict) and "first_div" in sel:
        return i < n // sel["first_div"]
    raise ValueError(f"unknown layer selector {sel!r}")


def _condition(when: str | None, m: ModelArch) -> bool:
    if when is None:
        return True
    if when == "gqa_ge_4":
        return m.num_attention_heads // max(1, m.num_kv_heads) >= 4
    raise ValueError(f"unknown condition {when!r}")


def _is_llama_70b(m: ModelArch) -> bool:
    return m.architecture == "LlamaForCausalLM" and m.num_layers == 80


def tensor_type(t: Tensor, m: ModelArch, quant: str) -> str:
    mix = load("quant.yaml")["gguf_mixes"][quant]
    if t.is_1d or t.part == "router":
        return "F32"
    if t.name == "output":
        return mix["output"]
    if t.name == "token_embd":
        return mix.get("token_embd", mix["base"])
    chosen = mix["base"]
    for role, rules in (mix.get("rules") or {}).items():
        if role == "attn_v" and t.name != "attn_v":
            continue
        if role != "attn_v" and role not in t.name:
            continue
        for rule in rules:
            if _condition(rule.get("when"), m) and _layers_match(rule["layers"], t.layer, m.num_layers):
                chosen = rule["type"]
                break
        break
    if t.name == "attn_v" and mix.get("upgrade_70b") and _is_llama_70b(m) and chosen in ("Q3_K", "Q4_K"):
        chosen = "Q5_K"
    return chosen


def has_mix(quant: str) -> bool:
    return quant in load("quant.yaml")["gguf_mixes"]


def published_total(m: ModelArch, quant: str) -> float | None:
    return (load("quant.yaml").get("gguf_published_totals") or {}).get(m.ref, {}).get(quant)


@lru_cache(maxsize=256)
def tensor_bytes_table(m: ModelArch, quant: str) -> tuple[float, ...]:
    """Bytes of each tensor of ``model_tensors(m)`` in the GGUF file of ``quant``."""
    tensors = model_tensors(m)
    if has_mix(quant):
        return tuple(type_bytes(tensor_type(t, m, quant), t.numel) for t in tensors)
    total = published_total(m, quant)
    if total is None:
        known = sorted(load("quant.yaml")["gguf_mixes"])
        raise InvalidInput(f"no GGUF size data for {m.ref} {quant}; known mixes: {', '.join(known)}")
    # a published total only: spread it over the 2-D weights by element count, 1-D tensors in F32
    one_d = sum(type_bytes("F32", t.numel) for t in tensors if t.is_1d)
    two_d = sum(t.numel for t in tensors if not t.is_1d)
    per = (total - one_d) / two_d
    return tuple(type_bytes("F32", t.numel) if t.is_1d else t.numel * per for t in tensors)


def file_bytes(m: ModelArch, quant: str) -> float:
    return sum(tensor_bytes_table(m, quant))
