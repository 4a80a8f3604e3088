"""The memory model: per-engine GPU memory and decode-speed estimates, pure functions.

Figures are GiB (2^30 bytes) per GPU, broken into weights, KV cache, activation and overhead.
See docs/contracts.md for the interface and docs/estimator.md for the accuracy.
"""

from __future__ import annotations

from xinf_planner.core import engines
from xinf_planner.core.memory.types import Estimate, EstimateInput
from xinf_planner.errors import InvalidInput

__all__ = ["Estimate", "EstimateInput", "estimate", "min_gpu_memory_utilization"]


def _module(engine: str):
    from importlib import import_module

    return import_module(f"xinf_planner.core.memory.{ {'llama.cpp': 'llamacpp'}.get(engine, engine) }")


def _check(inp: EstimateInput) -> EstimateInput:
    inp.engine = engines.require(inp.engine)
    if inp.tp < 1 or inp.pp < 1:
        raise InvalidInput("tp and pp must be at least 1")
    if inp.context_length < 1 or inp.concurrency < 1:
        raise InvalidInput("context length and concurrency must be at least 1")
    if engines.tensor_parallel(inp.engine) and inp.gpu_total_gib is None:
        raise InvalidInput(f"{inp.engine} runs on GPUs: give the GPU memory (or a GPU name)")
    if inp.engine == "llama.cpp" and inp.model_format != "ggufv2":
        raise InvalidInput("llama.cpp runs ggufv2 only; choose --model-format ggufv2 and a GGUF quantization")
    if inp.engine == "mlx" and inp.model_format != "mlx":
        raise InvalidInput("MLX runs the mlx format only; choose --model-format mlx")
    if inp.engine != "llama.cpp" and inp.model_format == "ggufv2" and inp.engine != "vllm":
        raise InvalidInput(f"{inp.engine} does not run ggufv2; use llama.cpp (or vLLM)")
    if inp.gpu_memory_utilization is not None and not 0 < inp.gpu_memory_utilization <= 1:
        raise InvalidInput("gpu_memory_utilization must be in (0, 1]")
    if inp.mem_fraction_static is not None and not 0 < inp.mem_fraction_static < 1:
        raise InvalidInput("mem_fraction_static must be in (0, 1)")
    return inp


def estimate(inp: EstimateInput) -> Estimate:
    from xinf_planner.core.serving.decode import decode_speed

    inp = _check(inp)
    if inp.engine == "vllm" and inp.model_format == "ggufv2":
        from xinf_planner.core.memory import vllm

        est = vllm.estimate(inp)
    else:
        est = _module(inp.engine).estimate(inp)
    est.decode_tokens_per_s = decode_speed(inp, est)
    est.input = inp
    return est


def min_gpu_memory_utilization(inp: EstimateInput, tokens_needed: int) -> float | None:
    """Smallest vLLM gpu_memory_utilization (SGLang: mem_fraction_static) whose KV pool holds
    ``tokens_needed`` tokens; None when even the free memory cannot, or for other engines."""
    inp = _check(inp)
    if inp.engine == "vllm":
        from xinf_planner.core.memory import vllm

        return vllm.min_utilization(inp, tokens_needed)
    if inp.engine == "sglang":
        from xinf_planner.core.memory import sglang

        return sglang.min_fraction(inp, tokens_needed)
    return None
