"""The estimator's input and output (see docs/contracts.md). Figures are GiB (2^30) per GPU."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from xinf_planner.core.catalog.models import ModelArch
from xinf_planner.core.units import GIB


@dataclass
class EstimateInput:
    model: ModelArch
    engine: str  # "vllm" | "sglang" | "llama.cpp" | "mlx" | "transformers"
    model_format: str = "pytorch"
    quantization: str = "none"
    tp: int = 1
    pp: int = 1
    gpu_total_gib: float | None = None  # None => CPU only (llama.cpp/transformers count RAM)
    gpu_used_gib: float = 0.0
    gpu_memory_utilization: float | None = None  # vLLM; default 0.90 as vLLM/Xinference
    mem_fraction_static: float | None = None  # SGLang; default by TP as Xinference does
    context_length: int = 4096
    concurrency: int = 1
    kv_cache_dtype: str = "auto"  # auto | fp8 | f16 | q8_0 | q4_0
    dtype: str | None = None  # bfloat16 | float16 (None: the model's)
    n_ctx: int | None = None
    n_parallel: int | None = None
    n_gpu_layers: int | None = None
    host_memory_gib: float | None = None
    gpu_bandwidth_gbps: float | None = None
    cpu_bandwidth_gbps: float | None = None
    unified_memory: bool = False
    gpu_wired_limit_gib: float | None = None
    # optional extensions
    max_num_seqs: int | None = None  # vLLM; None: the 256 Xinference passes
    max_num_batched_tokens: int | None = None
    enforce_eager: bool = False  # vLLM: no CUDA graphs
    engine_version: str | None = None  # e.g. "0.19.0"; None: a current release
    flash_attn: bool | None = None  # llama.cpp; None: on (llama.cpp's "auto" on CUDA/Metal)
    gpu_tflops: float | None = None  # dense 16-bit tensor TFLOPS, for the decode compute roofline
    cpu_bandwidth_measured: bool = False  # cpu_bandwidth_gbps was measured on the host (not a datasheet)
    cpu_threads: int | None = None  # threads a CPU replica runs (the CPU's compute limit; None: not limited)
    runtime_quantization: str | None = None  # vLLM's own quantisation at load ("fp8": W8A8 from a bf16 checkpoint)

    @property
    def weight_scheme(self) -> tuple[str, str]:
        """(format, quantization) of the weights as loaded: a bf16 checkpoint quantised to FP8 by
        vLLM at load holds its linear weights like an FP8 checkpoint."""
        if self.runtime_quantization == "fp8" and self.model_format == "pytorch":
            return "fp8", "fp8"
        return self.model_format, self.quantization


@dataclass
class Estimate:
    per_gpu_gib: dict[str, float]  # weights, kv_cache, activation, overhead, total (+ detail keys)
    kv_cache_tokens: int  # whole KV pool of one replica, in tokens
    max_concurrent_sequences: float  # at context_length
    fits: bool
    reasons: list[str]  # why not, plain sentences
    decode_tokens_per_s: dict[str, float | None] = field(default_factory=dict)
    host_gib: float = 0.0  # system RAM the engine needs (llama.cpp offload / CPU)
    notes: list[str] = field(default_factory=list)
    input: EstimateInput | None = field(default=None, repr=False, compare=False)  # what it was made from

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("input", None)
        d["per_gpu_gib"] = {k: round(v, 2) for k, v in self.per_gpu_gib.items()}
        d["max_concurrent_sequences"] = round(self.max_concurrent_sequences, 2)
        d["host_gib"] = round(self.host_gib, 2)
        d["decode_tokens_per_s"] = {
            k: (None if v is None else round(v, 1)) for k, v in self.decode_tokens_per_s.items()
        }
        return d


def gib(nbytes: float) -> float:
    return nbytes / GIB


def version_at_least(version: str | None, floor: str) -> bool:
    """None means a current release (newer than any floor)."""
    if version is None:
        return True

    def parts(v: str) -> tuple[int, ...]:
        out = []
        for p in v.strip().lstrip("v~").split("."):
            digits = "".join(ch for ch in p if ch.isdigit())
            out.append(int(digits) if digits else 0)
        return tuple(out)

    return parts(version) >= parts(floor)
