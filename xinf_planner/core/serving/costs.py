"""The costs of an engine step, part by part: the weight and KV bytes it reads, the kernels and
all-reduces it launches, the routed-MoE floor. ``step.py`` combines them; ``decode.py`` is the
batch-1 decode speed they were calibrated on.

First-order decode speed: bytes each step reads against bandwidth, plus a fixed step latency.

Decoding is memory-bound: each step reads the active weights on a GPU once (for MoE only the
experts the batch's tokens chose) plus the KV cache of every sequence. So, per step,

  time = weight bytes per GPU / (efficiency x bandwidth)      the bandwidth term
       + batch x KV bytes per sequence / (efficiency x bandwidth)
       + layers x kernels per layer x kernel latency           the fixed term
       + layers x 2 all-reduces x all-reduce latency           (tensor parallel only)

and tokens/s per sequence = 1 / time. The parts, as engines run them:
* Bytes: tensor by tensor (memory/weights.py), sharded as the engine shards them under tensor
  parallelism (replicated tensors are read in full by every rank); the embedding is a lookup.
  llama.cpp splits layers over GPUs and runs them one after another, so a step reads every
  layer's bytes in turn (the same time as one GPU of that bandwidth) plus a hop per boundary;
  layers left in host memory are read at the CPU's bandwidth. Pipeline stages likewise add up.
* Efficiency: the fraction of the datasheet bandwidth a batch-1 step achieves depends on the
  engine and the memory (GDDR, HBM, Apple unified memory, CPU DRAM): llama.cpp's matrix-vector
  kernels come close to the peak of GDDR cards but reach under half of it on HBM parts.
* Fixed term: every layer launches a set of small kernels (norms, rotary, attention, the
  activation, MoE routing) whose time does not scale with bytes; an MLA + MoE layer (R1) runs
  about twice a dense layer's kernels. Tensor parallelism adds two all-reduces per layer: a few
  microseconds over NVLink, tens over a network between hosts.
* A batch shares the weight read, so the aggregate grows with the batch until the KV reads, the
  experts more tokens touch, or the compute roofline (2 FLOPs per active parameter) bind.
Constants and their sources: core/serving/constants.yaml; measured rows and the accuracy:
benchmarks/data/decode_measurements.yaml, benchmarks/decode_speed_accuracy.py.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import yaml

from xinf_planner.core import engines
from xinf_planner.core.catalog._data import load
from xinf_planner.core.catalog.gpus import cpu_default_bandwidth_gbps  # noqa: F401  (re-exported)
from xinf_planner.core.memory.tensors import model_tensors, shard_fraction
from xinf_planner.core.memory.types import EstimateInput
from xinf_planner.core.memory.weights import tensor_bytes

MEMORY_KINDS = ("hbm", "gddr", "unified", "cpu")


@lru_cache(maxsize=1)
def speed_constants() -> dict:
    """The speed constants (``constants.yaml`` beside this module)."""
    text = resources.files("xinf_planner.core.serving").joinpath("constants.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)["speed"]


@lru_cache(maxsize=1)
def _kind_by_bandwidth() -> dict[float, str]:
    """Memory kind of every GPU of the table by its bandwidth (no bandwidth maps to two kinds)."""
    return {float(g["bandwidth_gbps"]): g["memory"] for g in load("gpus.yaml")["gpus"]}


def memory_kind(inp: EstimateInput) -> str:
    """hbm | gddr | unified | cpu | unknown (a GPU bandwidth the table does not list)."""
    if inp.engine == "mlx" or inp.unified_memory:
        return "unified"
    if inp.gpu_total_gib is None:
        return "cpu"
    return _kind_by_bandwidth().get(float(inp.gpu_bandwidth_gbps or 0.0), "unknown")


def experts_touched(inp: EstimateInput, batch: int) -> float | None:
    """Expected distinct routed experts per MoE layer for ``batch`` tokens routed independently."""
    m = inp.model
    if not m.is_moe:
        return None
    e, k = m.n_routed_experts, m.num_experts_per_tok
    return e * (1 - (1 - k / e) ** batch)


def step_weight_bytes(inp: EstimateInput, batch: int, ranks: int) -> tuple[float, float]:
    """(other, routed-expert) weight bytes one of ``ranks`` tensor-parallel GPUs reads per step."""
    m = inp.model
    other, all_experts = _rank_weight_bytes(m, *inp.weight_scheme, inp.dtype, ranks)
    if not all_experts:
        return other, 0.0
    touched = experts_touched(inp, batch)
    return other, all_experts * min(touched, m.n_routed_experts) / m.n_routed_experts


@lru_cache(maxsize=1024)
def _rank_weight_bytes(m, fmt: str, quant: str, dtype: str | None, ranks: int) -> tuple[float, float]:
    """(non-expert weights without the embedding, every routed expert) on one of ``ranks`` GPUs."""
    other = experts = 0.0
    for t, b in zip(model_tensors(m), tensor_bytes(m, fmt, quant, dtype)):
        if t.part == "embed":
            continue  # an embedding lookup reads one row, not the table
        if t.part == "experts":
            experts += b * shard_fraction(t, m, ranks)
        else:
            other += b * shard_fraction(t, m, ranks)
    return other, experts


def attention_bytes(inp: EstimateInput) -> float:
    """Weight bytes of every attention projection (all ranks together)."""
    return _attention_bytes(inp.model, *inp.weight_scheme, inp.dtype)


@lru_cache(maxsize=1024)
def _attention_bytes(m, fmt: str, quant: str, dtype: str | None) -> float:
    return sum(b for t, b in zip(model_tensors(m), tensor_bytes(m, fmt, quant, dtype)) if t.part == "attention")


def active_params(inp: EstimateInput) -> float:
    return _active_params(inp.model)


@lru_cache(maxsize=256)
def _active_params(m) -> float:
    n = 0.0
    for t in model_tensors(m):
        if t.part == "embed":
            continue
        n += t.numel * (m.num_experts_per_tok / m.n_routed_experts if t.part == "experts" else 1.0)
    return n


def moe_layers(inp: EstimateInput) -> int:
    m = inp.model
    return m.num_layers - (m.first_k_dense_replace or 0) if m.is_moe else 0


def routed_floor_us(inp: EstimateInput, kind: str) -> float | None:
    """Latency floor of a layer's routed-expert path where the engine has one (vLLM/SGLang)."""
    return speed_constants()["routed_moe_floor_us"].get(backend(inp, kind)) if inp.model.is_moe else None


def kernels_per_layer(inp: EstimateInput, kind: str = "hbm") -> float:
    """Small kernels one decode step launches per layer (mean over the layers); an engine with a
    routed-expert latency floor counts that path separately."""
    k = speed_constants()["kernels_per_layer"]
    m = inp.model
    attention = k["attention_mla"] if m.is_mla else k["attention"]
    if not m.is_moe:
        return attention + k["mlp"]
    moe = k["moe_shared"] + (0 if routed_floor_us(inp, kind) is not None else k["moe_routed"])
    n_moe = moe_layers(inp)
    return attention + ((m.num_layers - n_moe) * k["mlp"] + n_moe * moe) / m.num_layers


def backend(inp: EstimateInput, kind: str) -> str:
    if engines.tensor_parallel(inp.engine):
        return "cuda_graphs"
    if inp.engine == "mlx" or (inp.engine == "llama.cpp" and kind == "unified"):
        return "metal"
    if inp.engine == "llama.cpp":
        return "llama.cpp_cpu" if kind == "cpu" else "llama.cpp_cuda"
    return inp.engine


def fixed_step_seconds(
    inp: EstimateInput, kind: str, interconnect: str | None = None, with_allreduce: bool = True
) -> float:
    """The per-step latency that does not scale with bytes: kernels, GPU hops, and (unless
    ``with_allreduce`` is off: ``step.py`` counts them with their size) the all-reduces' latency."""
    cfg = speed_constants()
    m = inp.model
    per_layer = kernels_per_layer(inp, kind) * cfg["kernel_us"].get(backend(inp, kind), 0.0)
    if engines.tensor_parallel(inp.engine) and inp.tp > 1 and with_allreduce:
        per_layer += 2 * cfg["allreduce_us"][interconnect or "nvlink"]
    hops = 0.0
    if inp.engine == "llama.cpp" and kind != "cpu":
        hops = (max(1, inp.tp * inp.pp) - 1) * cfg["layer_split_hop_us"]
    elif engines.tensor_parallel(inp.engine):
        hops = (inp.pp - 1) * cfg["layer_split_hop_us"]
    return (m.num_layers * per_layer + hops) * 1e-6
