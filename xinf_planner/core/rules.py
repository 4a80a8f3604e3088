"""Feasibility rules: each check returns ``None`` (allowed) or the reason, as a plain sentence.

Pure functions over plain facts: an engine name, a host (``inventory.Host``), a GPU's compute
capability, a model's architecture (``catalog.ModelArch`` or anything with the same attribute
names). The engines' platforms and formats are in ``engines.yaml`` (``core/engines.py``); the
kernel, sharding and precision limits in ``rules.yaml`` next to this module, each with its source.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from xinf_planner.core import engines


@lru_cache(maxsize=1)
def facts() -> dict:
    text = resources.files("xinf_planner.core").joinpath("rules.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def parse_cc(value: str | tuple[int, int] | None) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, tuple):
        return value
    major, _, minor = str(value).partition(".")
    return int(major), int(minor or 0)


def cc_text(cc: tuple[int, int] | None) -> str:
    return "unknown" if cc is None else f"{cc[0]}.{cc[1]}"


# -- precision -------------------------------------------------------------------------------

_BITS_PATTERNS = (
    (re.compile(r"^(b?f16|bf16|fp16|float16|bfloat16|none)$", re.I), "16"),
    (re.compile(r"fp8|f8|e4m3", re.I), "fp8"),
    (re.compile(r"^(?:ud-)?i?q(\d)", re.I), None),  # GGUF: Q4_K_M, IQ2_XXS, UD-Q2_K_XL
    (re.compile(r"^int(\d+)$", re.I), None),  # AWQ/GPTQ: Int4, Int8
    (re.compile(r"^(\d+)[-_]?bits?$", re.I), None),  # MLX "4bit", bnb "8-bit"
    (re.compile(r"^w(\d+)a\d+", re.I), None),  # w8a8, w4a16
)


def precision_of(model_format: str, quantization: str, checkpoint_quant: str | None = None) -> str:
    """The precision class of a spec: "16", "fp8", "8", "6", "5", "4", "3", "2" or "1".

    ``checkpoint_quant`` is the model's own checkpoint quantisation ("fp8" for DeepSeek-R1,
    whose ``pytorch`` spec is the native FP8 release)."""
    if model_format == "fp8":
        return "fp8"
    if model_format == "pytorch" and checkpoint_quant == "fp8":
        return "fp8"
    q = (quantization or "none").strip()
    for pattern, fixed in _BITS_PATTERNS:
        m = pattern.search(q)
        if m:
            if fixed:
                return fixed
            bits = int(m.group(1))
            if bits >= 16:
                return "16"
            return str(bits) if bits <= 6 else "8"
    return "16"


def precision_rank(precision: str) -> int:
    return facts()["precision_rank"][precision]


def precision_quality(precision: str) -> float:
    """The share of a model's quality a precision keeps (a planning assumption, rules.yaml)."""
    return float(facts()["precision_quality"][precision])


def precision_label(precision: str) -> str:
    return {"16": "16-bit", "fp8": "fp8"}.get(precision, f"{precision}-bit")


# -- platform --------------------------------------------------------------------------------


def platform_reason(engine: str, host, gpu_vendor: str | None) -> str | None:
    """Can ``engine`` run on ``host``, on GPUs of ``gpu_vendor`` (None: on the CPU)?"""
    f = engines.facts(engine)
    if host.os not in f["os"]:
        return f"{engine} does not run on {host.os} (only on {', '.join(f['os'])})."
    if f.get("apple_silicon_only") and not host.is_apple_silicon:
        return f"{engine} runs only on macOS on Apple silicon; {host.name} is {host.os}/{host.arch}."
    if gpu_vendor is None:
        if not f["cpu"]:
            return f"{engine} needs a GPU; it cannot serve from the CPU alone."
        return None
    if gpu_vendor not in f["gpu_vendors"]:
        return f"{engine} does not use {gpu_vendor} GPUs (only {', '.join(f['gpu_vendors'])})."
    return None


def format_reason(engine: str, model_format: str) -> str | None:
    formats = engines.facts(engine)["formats"]
    if model_format not in formats:
        return f"{engine} does not load the {model_format} format (it loads {', '.join(formats)})."
    return None


def cpu_format_reason(engine: str, model_format: str) -> str | None:
    """On the CPU an engine may load fewer formats than on GPUs."""
    allowed = engines.facts(engine).get("cpu_formats")
    if allowed is not None and model_format not in allowed:
        return f"{engine} cannot run {model_format} on the CPU (its kernels need a GPU)."
    return None


def family_reason(engine: str, arch) -> str | None:
    """Xinference gates engines by the family's virtual-env markers (4.1.0)."""
    listed = {e.lower() for e in getattr(arch, "virtualenv_engines", ()) or ()}
    if listed and engine not in listed:
        return f"Xinference does not offer {engine} for the {arch.family} family."
    return None


# -- compute capability ----------------------------------------------------------------------


def dtype_for(engine: str, precision: str, cc: tuple[int, int] | None) -> str | None:
    """The ``dtype`` a vLLM/SGLang launch must set: float16 below CC 8.0, else None (the model's
    bf16). Transformers already loads float16 on CUDA (Xinference's preferred dtype for the
    device) and takes ``torch_dtype``, not ``dtype``; llama.cpp and MLX have no such switch."""
    if not engines.tensor_parallel(engine) or cc is None:
        return None
    if cc < parse_cc(facts()["compute_capability"]["bf16"]):
        return "float16"
    return None


def kv_cache_reason(
    engine: str, kv_cache_dtype: str, cc: tuple[int, int] | None, gpu_name: str = "this GPU"
) -> str | None:
    """Whether the KV cache dtype is planned for this engine and GPU."""
    if kv_cache_dtype == "auto":
        return None
    if not engines.facts(engine).get("fp8_kv_cache"):
        return f"{engine} has no {kv_cache_dtype} KV cache."
    floor = facts()["compute_capability"]["fp8_kv"]
    if cc is None or cc < parse_cc(floor):
        return (
            f"an {kv_cache_dtype} KV cache is planned on compute capability {floor} or newer; "
            f"{gpu_name} is {cc_text(cc)}."
        )
    return None


def kv_cache_quality(kv_cache_dtype: str) -> float:
    return float(facts()["kv_cache_quality"].get(kv_cache_dtype, 1.0))


def cc_reason(
    engine: str, model_format: str, precision: str, cc: tuple[int, int] | None, gpu_name: str = "this GPU"
) -> str | None:
    """Compute-capability floors of the engine and of the spec's kernels (NVIDIA only)."""
    if cc is None:
        return None
    floors = facts()["compute_capability"]
    need = engines.facts(engine).get("min_cc")
    if need and cc < parse_cc(need):
        return f"{engine} needs compute capability {need} or newer; {gpu_name} is {cc_text(cc)}."
    if engine in ("vllm", "sglang", "transformers"):
        kernel = None
        if model_format in ("awq", "gptq"):
            kernel = model_format
        elif precision == "fp8":
            kernel = "fp8"
        if kernel and cc < parse_cc(floors[kernel]):
            return (
                f"{kernel.upper()} kernels need compute capability {floors[kernel]} or newer; "
                f"{gpu_name} is {cc_text(cc)}."
            )
    return None


# -- tensor parallelism ----------------------------------------------------------------------


def tp_sizes() -> list[int]:
    return list(facts()["tensor_parallel"]["sizes"])


def tp_reason(arch: Any, tp: int, model_format: str) -> str | None:
    """vLLM/SGLang's sharding rules for TP size ``tp`` on ``arch``.

    - a power of two (never 3, 5, 6 or 7);
    - attention heads divisible by TP (vLLM ``verify_with_parallel_config``);
    - KV heads: divisible by TP, or TP a multiple of them when TP is larger (the KV heads are
      then replicated; vLLM ``QKVParallelLinear`` uses ``divide`` either way);
    - AWQ/GPTQ: the row-parallel input ``intermediate_size / TP`` stays a multiple of the
      quantisation group size (128), else the checkpoint's groups cannot be split.
    """
    if tp not in tp_sizes():
        return f"TP {tp} is not a power of two in {tp_sizes()}; the sharded layers would not divide."
    if tp == 1:
        return None
    heads = arch.num_attention_heads
    kv = arch.num_kv_heads
    if heads % tp:
        return f"TP {tp} does not divide the {heads} attention heads."
    if kv:
        if tp <= kv and kv % tp:
            return f"TP {tp} does not divide the {kv} KV heads."
        if tp > kv and tp % kv:
            return f"TP {tp} is not a multiple of the {kv} KV heads."
    if model_format in ("awq", "gptq"):
        group = facts()["tensor_parallel"]["quant_group_size"]
        inter = arch.intermediate_size
        if inter % tp or (inter // tp) % group:
            return (
                f"TP {tp} splits the intermediate size {inter} into shards of "
                f"{inter / tp:g}, not a multiple of the {model_format.upper()} group size {group}."
            )
    return None
