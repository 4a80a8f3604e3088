"""First-order decode speed: bytes each step reads against bandwidth, plus a fixed step latency.

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
from xinf_planner.core.catalog.gpus import cpu_default_bandwidth_gbps
from xinf_planner.core.memory.kv import kv_bytes_per_token
from xinf_planner.core.memory.tensors import model_tensors, shard_fraction
from xinf_planner.core.memory.types import Estimate, EstimateInput
from xinf_planner.core.memory.weights import tensor_bytes
from xinf_planner.core.units import GIB

MEMORY_KINDS = ("hbm", "gddr", "unified", "cpu")


@lru_cache(maxsize=1)
def _cfg() -> dict:
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


def _step_weight_bytes(inp: EstimateInput, batch: int, ranks: int) -> tuple[float, float]:
    """(other, routed-expert) weight bytes one of ``ranks`` tensor-parallel GPUs reads per step."""
    m = inp.model
    touched = experts_touched(inp, batch)
    other = experts = 0.0
    for t, b in zip(model_tensors(m), tensor_bytes(m, inp.model_format, inp.quantization, inp.dtype)):
        if t.part == "embed":
            continue  # an embedding lookup reads one row, not the table
        if t.part == "experts":
            experts += b * min(touched, m.n_routed_experts) / m.n_routed_experts * shard_fraction(t, m, ranks)
        else:
            other += b * shard_fraction(t, m, ranks)
    return other, experts


def _active_params(inp: EstimateInput) -> float:
    m = inp.model
    n = 0.0
    for t in model_tensors(m):
        if t.part == "embed":
            continue
        n += t.numel * (m.num_experts_per_tok / m.n_routed_experts if t.part == "experts" else 1.0)
    return n


def _moe_layers(inp: EstimateInput) -> int:
    m = inp.model
    return m.num_layers - (m.first_k_dense_replace or 0) if m.is_moe else 0


def routed_floor_us(inp: EstimateInput, kind: str) -> float | None:
    """Latency floor of a layer's routed-expert path where the engine has one (vLLM/SGLang)."""
    return _cfg()["routed_moe_floor_us"].get(_backend(inp, kind)) if inp.model.is_moe else None


def kernels_per_layer(inp: EstimateInput, kind: str = "hbm") -> float:
    """Small kernels one decode step launches per layer (mean over the layers); an engine with a
    routed-expert latency floor counts that path separately."""
    k = _cfg()["kernels_per_layer"]
    m = inp.model
    attention = k["attention_mla"] if m.is_mla else k["attention"]
    if not m.is_moe:
        return attention + k["mlp"]
    moe = k["moe_shared"] + (0 if routed_floor_us(inp, kind) is not None else k["moe_routed"])
    n_moe = _moe_layers(inp)
    return attention + ((m.num_layers - n_moe) * k["mlp"] + n_moe * moe) / m.num_layers


def _backend(inp: EstimateInput, kind: str) -> str:
    if engines.tensor_parallel(inp.engine):
        return "cuda_graphs"
    if inp.engine == "mlx" or (inp.engine == "llama.cpp" and kind == "unified"):
        return "metal"
    if inp.engine == "llama.cpp":
        return "llama.cpp_cpu" if kind == "cpu" else "llama.cpp_cuda"
    return inp.engine


def fixed_step_seconds(inp: EstimateInput, kind: str, interconnect: str | None = None) -> float:
    """The per-step latency that does not scale with bytes: kernels, all-reduces, GPU hops."""
    cfg = _cfg()
    m = inp.model
    per_layer = kernels_per_layer(inp, kind) * cfg["kernel_us"].get(_backend(inp, kind), 0.0)
    if engines.tensor_parallel(inp.engine) and inp.tp > 1:
        per_layer += 2 * cfg["allreduce_us"][interconnect or "nvlink"]
    hops = 0.0
    if inp.engine == "llama.cpp" and kind != "cpu":
        hops = (max(1, inp.tp * inp.pp) - 1) * cfg["layer_split_hop_us"]
    elif engines.tensor_parallel(inp.engine):
        hops = (inp.pp - 1) * cfg["layer_split_hop_us"]
    return (m.num_layers * per_layer + hops) * 1e-6


def decode_speed(
    inp: EstimateInput, est: Estimate, *, memory_kind_override: str | None = None, interconnect: str | None = None
) -> dict[str, float | None]:
    """tokens/s per sequence at batch 1 and in aggregate at the estimate's batch, and that batch.

    ``memory_kind_override`` (hbm | gddr | unified | cpu) for a GPU the table lacks; ``interconnect``
    (nvlink | pcie | network) between tensor-parallel ranks, nvlink when not given."""
    cfg = _cfg()
    kind = memory_kind_override or memory_kind(inp)
    cpu_gbps = inp.cpu_bandwidth_gbps or cpu_default_bandwidth_gbps()
    bw_gbps = cpu_gbps if kind == "cpu" else inp.gpu_bandwidth_gbps
    if not bw_gbps:
        return {"per_sequence": None, "aggregate": None, "batch": None}
    eff_table = cfg["bandwidth_efficiency"].get(inp.engine, {})
    eff = eff_table.get(kind, eff_table.get("unknown", 0.5))
    bw = bw_gbps * 1e9 * eff
    cpu_bw = cpu_gbps * 1e9 * cfg["bandwidth_efficiency"]["llama.cpp"]["cpu"]

    ranks = max(1, inp.tp) if engines.tensor_parallel(inp.engine) else 1
    kv_dtype = inp.kv_cache_dtype if engines.supports_kv_cache_dtype(inp.engine) else "auto"
    if inp.engine == "llama.cpp" and kv_dtype == "auto":
        kv_dtype = "f16"
    kv_seq = kv_bytes_per_token(inp.model, tp=ranks, kv_cache_dtype=kv_dtype, engine=inp.engine) * inp.context_length
    fixed = fixed_step_seconds(inp, kind, interconnect)

    floor = routed_floor_us(inp, kind)
    n_moe = _moe_layers(inp)

    def step_seconds(batch: int) -> float:
        other, experts = _step_weight_bytes(inp, batch, ranks)
        if floor is not None:
            # the routed experts' path is latency-bound until its bytes take longer than the floor
            routed = n_moe * max(experts / n_moe / bw, floor * 1e-6)
            w = other
        else:
            routed, w = 0.0, other + experts
        if inp.engine == "llama.cpp" and kind != "cpu":
            # layers left in host memory are read at the CPU's bandwidth (the embedding is a lookup)
            embed = tensor_bytes(inp.model, inp.model_format, inp.quantization)[0]
            host = min(w, max(0.0, est.per_gpu_gib.get("host_weights", 0.0) * GIB - embed))
            mem = (w - host + batch * kv_seq) / bw + host / cpu_bw
        else:
            mem = (w + batch * kv_seq) / bw
        step = mem + routed + fixed
        if inp.gpu_tflops and kind not in ("cpu", "unified"):
            flops = batch * 2 * _active_params(inp) / ranks
            step = max(step, flops / (inp.gpu_tflops * 1e12 * cfg["compute_efficiency"]))
        return step

    batch = max(1, min(inp.concurrency, int(est.max_concurrent_sequences) or 1))
    return {"per_sequence": 1.0 / step_seconds(1), "aggregate": batch / step_seconds(batch), "batch": batch}
