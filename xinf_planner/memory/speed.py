"""First-order decode speed from memory bandwidth.

Decoding is memory-bound: each step reads the active weights once (for MoE only the experts the
batch's tokens chose) plus the KV cache of every sequence. Per GPU under tensor parallelism each
rank reads its shard at the same time; pipeline stages run one after another for one token.
tokens/s per sequence = efficiency x bandwidth / (active weight bytes + KV bytes at the context).
A batch of B shares the weight read, so the aggregate grows with B until the KV reads dominate or
the compute roofline (2 FLOPs per active parameter per token) binds. vLLM and SGLang steps also
pay a per-layer latency floor (kernels, TP all-reduces). Efficiencies, floors and their sources:
catalog/data/engines.yaml `speed`.
"""

from __future__ import annotations

from xinf_planner.catalog._data import load
from xinf_planner.catalog.gpus import cpu_default_bandwidth_gbps
from xinf_planner.memory.kv import kv_bytes_per_token
from xinf_planner.memory.tensors import model_tensors
from xinf_planner.memory.types import Estimate, EstimateInput
from xinf_planner.memory.weights import active_bytes, tensor_bytes


def experts_touched(inp: EstimateInput, batch: int) -> float | None:
    """Expected distinct routed experts per MoE layer for ``batch`` tokens routed independently."""
    m = inp.model
    if not m.is_moe:
        return None
    e, k = m.n_routed_experts, m.num_experts_per_tok
    return e * (1 - (1 - k / e) ** batch)


def _weights_read(inp: EstimateInput, batch: int) -> float:
    return active_bytes(inp.model, inp.model_format, inp.quantization, experts_touched(inp, batch), inp.dtype)


def _active_params(inp: EstimateInput) -> float:
    m = inp.model
    n = 0.0
    for t in model_tensors(m):
        if t.part == "embed":
            continue
        n += t.numel * (m.num_experts_per_tok / m.n_routed_experts if t.part == "experts" else 1.0)
    return n


def decode_speed(inp: EstimateInput, est: Estimate) -> dict[str, float | None]:
    cfg = load("engines.yaml")["speed"]
    on_gpu = inp.gpu_total_gib is not None and inp.engine != "mlx" or inp.unified_memory
    bw = inp.gpu_bandwidth_gbps if on_gpu else (inp.cpu_bandwidth_gbps or cpu_default_bandwidth_gbps())
    if inp.engine == "mlx":
        bw = inp.gpu_bandwidth_gbps
    if not bw:
        return {"per_sequence": None, "aggregate": None, "batch": None}
    eff_key = inp.engine if on_gpu or inp.engine == "mlx" else "cpu"
    eff = cfg["bandwidth_efficiency"].get(eff_key, 0.5)
    ranks = max(1, inp.tp) if inp.engine in ("vllm", "sglang") else 1
    kv_engine = "llama.cpp" if inp.engine == "llama.cpp" else inp.engine
    kv_dtype = inp.kv_cache_dtype if inp.engine in ("vllm", "sglang", "llama.cpp") else "auto"
    if kv_engine == "llama.cpp" and kv_dtype == "auto":
        kv_dtype = "f16"
    kv_seq = kv_bytes_per_token(inp.model, tp=ranks, kv_cache_dtype=kv_dtype, engine=kv_engine) * inp.context_length

    gpu_bw = bw * 1e9 * eff
    cpu_bw = (inp.cpu_bandwidth_gbps or cpu_default_bandwidth_gbps()) * 1e9 * cfg["bandwidth_efficiency"]["cpu"]

    floor = 0.0
    if inp.engine in ("vllm", "sglang"):
        per_layer = cfg["layer_floor_us"] + (2 * cfg["allreduce_us"] if ranks > 1 else 0.0)
        floor = inp.model.num_layers * per_layer * 1e-6

    def step_seconds(batch: int) -> float:
        w = _weights_read(inp, batch)
        if inp.engine == "llama.cpp" and on_gpu:
            # layers left in host memory are read at the CPU's bandwidth (the embedding is a lookup)
            embed = tensor_bytes(inp.model, inp.model_format, inp.quantization)[0]
            host = max(0.0, est.per_gpu_gib.get("host_weights", 0.0) * 2**30 - embed)
            return (w - host + batch * kv_seq) / gpu_bw + host / cpu_bw
        mem = (w / ranks + batch * kv_seq) / gpu_bw + floor
        if inp.gpu_tflops:
            flops = batch * 2 * _active_params(inp) / ranks
            mem = max(mem, flops / (inp.gpu_tflops * 1e12 * cfg["compute_efficiency"]))
        return mem

    batch = max(1, min(inp.concurrency, int(est.max_concurrent_sequences) or 1))
    return {"per_sequence": 1.0 / step_seconds(1), "aggregate": batch / step_seconds(batch), "batch": batch}
