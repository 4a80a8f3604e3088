"""The time of one engine step: a batch of decoding sequences, plus any prompt tokens (prefill)
scheduled in the same step, on one replica.

One step reads each GPU's share of the weights once for the whole batch (for MoE, the experts
the step's tokens touch), plus the KV cache of every decoding sequence at its current length; it
computes about 2 FLOPs per active parameter per token, plus the attention over the prompt of
each prefill chunk; tensor parallelism adds two all-reduces per layer of the step's activations
over the real link; and every step pays small fixed costs (kernel launches, the routed-MoE
path's latency floor, GPU hops of a layer split, and the scheduler's per-sequence work):

  step = max(bytes / (efficiency x bandwidth), FLOPs / (efficiency x tensor rate))
         + 2 x layers x all-reduce(tokens x hidden x 2 bytes) + fixed

The tensor rate is the GPU's dense rate for the precision the kernels run at: bf16/fp16; FP8
W8A8 on compute capability >= 8.9; AWQ/GPTQ (Marlin) and weight-only FP8 dequantise, so they
reach a fraction of the 16-bit rate (they win on bytes at small batches and lose at large ones).
On the CPU the rate is cores x an effective rate per core. Constants, each with its source:
``constants.yaml``; at batch 1 without prefill this is ``costs.py``'s calibrated decode step.
"""

from __future__ import annotations

from dataclasses import dataclass

from xinf_planner.core import engines
from xinf_planner.core.memory.kv import kv_bytes_per_token
from xinf_planner.core.memory.types import Estimate, EstimateInput
from xinf_planner.core.memory.weights import tensor_bytes
from xinf_planner.core.serving import costs
from xinf_planner.core.units import GIB

LINKS = ("nvlink", "pcie", "pcie_host", "sys", "network", "infiniband")


@dataclass(frozen=True)
class Hardware:
    """What one replica's GPUs (or CPU) can do, beyond memory: the tensor rates and the link
    between its tensor-parallel ranks."""

    tflops: float | None = None  # dense 16-bit tensor TFLOPS per GPU (or the CPU's rate)
    tflops_fp8: float | None = None  # dense FP8 TFLOPS (CC >= 8.9)
    link: str = "nvlink"  # between the TP ranks (LINKS)
    cc: tuple[int, int] | None = None
    cpu_cores: int | None = None  # the CPU's threads, for CPU replicas
    attention_dp: int = 1  # SGLang --enable-dp-attention: attention data-parallel over the TP ranks


def _cfg() -> dict:
    return costs.speed_constants()


def cpu_rates_flops(inp: EstimateInput, hw: Hardware) -> tuple[float, float]:
    """(decode, prefill) FLOP/s of llama.cpp's CPU kernels for the weights' type, over the
    replica's threads: matrix-vector products for decoding (no weight reuse across the slots
    of a batch) and matrix-matrix products for prompts. Unknown threads: unlimited."""
    threads = hw.cpu_cores or inp.cpu_threads
    if not threads:
        return float("inf"), float("inf")
    table = _cfg()["serving"]["cpu_gflops_per_thread"]
    bits = _cpu_weight_class(inp)
    decode, prefill = table.get(bits, table["q4"])
    return threads * decode * 1e9, threads * prefill * 1e9


def _cpu_weight_class(inp: EstimateInput) -> str:
    q = (inp.quantization or "").upper()
    if inp.model_format != "ggufv2" or q in ("F16", "BF16", "F32", "NONE"):
        return "f16"
    if q.startswith(("Q8", "Q6")):
        return "q8"
    if q.startswith("Q5"):
        return "q5"
    return "q4"


def gemm_rate_flops(inp: EstimateInput, hw: Hardware, kind: str) -> float:
    """FLOP/s one GPU achieves on the model's matrix products (the CPU: ``cpu_rates_flops``)."""
    cfg = _cfg()
    serving = cfg["serving"]
    if kind == "cpu":
        return cpu_rates_flops(inp, hw)[1]
    base = hw.tflops or _assumed_tflops(inp)
    eff = compute_efficiency(inp, hw)
    rate = base * 1e12 * eff
    fmt = inp.model_format
    precision = _precision(inp)
    if fmt in ("awq", "gptq"):
        return rate * serving["dequant_rate"]["int4"]
    if precision == "fp8":
        if hw.tflops_fp8 and (hw.cc is None or hw.cc >= (8, 9)):
            return hw.tflops_fp8 * 1e12 * eff * serving["fp8_rate"]
        return rate * serving["dequant_rate"]["fp8_weight_only"]
    if fmt == "ggufv2":
        return rate * serving["dequant_rate"]["gguf"]
    return rate


def compute_efficiency(inp: EstimateInput, hw: Hardware) -> float:
    """The share of the dense tensor rate the engine's GEMMs reach: by engine, by GPU
    generation (compute capability), lower for MoE layers (many small expert GEMMs)."""
    table = _cfg()["serving"]["compute_efficiency"]
    eff = table["engine"].get(inp.engine, table["engine"]["default"])
    cc = hw.cc
    if cc is not None:
        generation = "hopper" if cc >= (9, 0) else "ada" if cc >= (8, 9) else "ampere" if cc >= (8, 0) else "older"
        eff *= table["generation"].get(generation, 1.0)
    if inp.model.is_moe:
        eff *= table["moe"]
    return eff


def _precision(inp: EstimateInput) -> str:
    from xinf_planner.core.rules import precision_of

    fmt, quant = inp.weight_scheme
    return precision_of(fmt, quant, inp.model.checkpoint_quant)


def _assumed_tflops(inp: EstimateInput) -> float:
    """A GPU the table gives no tensor rate for: its bandwidth x the ridge ops/byte of the
    table's GPUs of the same memory kind (constants.yaml)."""
    ridge = _cfg()["serving"]["assumed_flops_per_byte"]
    return (inp.gpu_bandwidth_gbps or 100.0) * ridge / 1000.0


class StepModel:
    """Step times of one replica; built once per (estimate input, hardware)."""

    def __init__(self, inp: EstimateInput, est: Estimate, hw: Hardware = Hardware(), kind: str | None = None):
        self.inp = inp
        self.hw = hw
        self.kind = kind or costs.memory_kind(inp)
        cfg = _cfg()
        self.cfg = cfg
        tp = engines.tensor_parallel(inp.engine)
        self.ranks = max(1, inp.tp) if tp else 1
        cpu_gbps = inp.cpu_bandwidth_gbps or costs.cpu_default_bandwidth_gbps()
        bw_gbps = cpu_gbps if self.kind == "cpu" else (inp.gpu_bandwidth_gbps or 0.0)
        self.bandwidth_known = bool(bw_gbps)
        eff_table = cfg["bandwidth_efficiency"].get(inp.engine, {})
        cpu_key = "cpu_measured" if inp.cpu_bandwidth_measured else "cpu"
        eff = eff_table.get(cpu_key if self.kind == "cpu" else self.kind, eff_table.get("unknown", 0.5))
        self.bw = max(1.0, bw_gbps) * 1e9 * eff
        self.cpu_bw = cpu_gbps * 1e9 * cfg["bandwidth_efficiency"]["llama.cpp"][cpu_key]
        kv_dtype = inp.kv_cache_dtype if engines.supports_kv_cache_dtype(inp.engine) else "auto"
        if inp.engine == "llama.cpp" and kv_dtype == "auto":
            kv_dtype = "f16"
        self.kv_per_token = kv_bytes_per_token(inp.model, tp=self.ranks, kv_cache_dtype=kv_dtype, engine=inp.engine)
        self.floor = costs.routed_floor_us(inp, self.kind)
        self.n_moe = costs.moe_layers(inp)
        self.active = costs.active_params(inp)
        self.fixed = costs.fixed_step_seconds(inp, self.kind, with_allreduce=False)
        self.gemm_rate = gemm_rate_flops(inp, hw, self.kind)
        self.decode_rate = cpu_rates_flops(inp, hw)[0] if self.kind == "cpu" else self.gemm_rate
        self.attn_rate = (
            self.gemm_rate
            if self.kind == "cpu"
            else (hw.tflops or _assumed_tflops(inp)) * 1e12 * (cfg["serving"]["attention_efficiency"])
        )
        self.host_weights = 0.0
        if inp.engine == "llama.cpp" and self.kind != "cpu":
            embed = tensor_bytes(inp.model, *inp.weight_scheme)[0]
            self.host_weights = max(0.0, est.per_gpu_gib.get("host_weights", 0.0) * GIB - embed)
        self.per_seq = cfg["serving"]["per_sequence_us"].get(costs.backend(inp, self.kind), 0.0) * 1e-6
        m = inp.model
        heads = m.num_attention_heads / self.ranks
        head_dim = (m.qk_nope_head_dim + m.qk_rope_head_dim) if m.is_mla else m.head_dim
        self.attn_flops_per_pair = 4.0 * m.num_layers * heads * head_dim
        link = cfg["serving"]["links"].get(hw.link, cfg["serving"]["links"]["pcie"])
        self.ar_latency = link["latency_us"] * 1e-6
        self.ar_bw = link["gbps"] * 1e9
        self.ar_bytes_per_token = m.hidden_size * 2.0
        m = inp.model
        self.n_experts = m.n_routed_experts or 0
        # the weight bytes per rank a step reads: all but the routed experts, and the routed
        # experts in full (a step reads the share its tokens touch)
        self.other_bytes, experts_one = costs.step_weight_bytes(inp, 1, self.ranks)
        touched_one = costs.experts_touched(inp, 1)
        self.expert_full_bytes = experts_one * self.n_experts / touched_one if touched_one else 0.0
        self.dp = max(1, hw.attention_dp)
        if self.dp > 1:  # each rank holds the whole attention and its own requests' KV cache
            self.other_bytes += costs.attention_bytes(inp) * (1 - 1 / self.ranks)

    def _weight_bytes(self, tokens: float) -> tuple[float, float]:
        if not self.n_experts:
            return self.other_bytes, 0.0
        touched = costs.experts_touched(self.inp, max(1.0, tokens))
        return self.other_bytes, self.expert_full_bytes * min(touched, self.n_experts) / self.n_experts

    def allreduce_seconds(self, tokens: int) -> float:
        """The two all-reduces per layer of one step on the TP link (0 without TP)."""
        if self.ranks <= 1:
            return 0.0
        size = tokens * self.ar_bytes_per_token
        one = self.ar_latency + 2.0 * (self.ranks - 1) / self.ranks * size / self.ar_bw
        return 2 * self.inp.model.num_layers * one

    def seconds(self, decode_seqs: int, kv_len: float, prefill: float = 0.0, prefill_ctx: float = 0.0) -> float:
        """One step: ``decode_seqs`` sequences decoding one token each over a mean KV length of
        ``kv_len`` tokens, plus ``prefill`` prompt tokens attending to about ``prefill_ctx``
        earlier tokens each."""
        tokens = max(1.0, decode_seqs + prefill)
        other, experts = self._weight_bytes(tokens)
        if self.floor is not None:
            routed = self.n_moe * max(experts / max(1, self.n_moe) / self.bw, self.floor * 1e-6)
            w = other
        else:
            routed, w = 0.0, other + experts
        kv = decode_seqs / self.dp * kv_len * self.kv_per_token
        if self.host_weights:
            host = min(w, self.host_weights)
            mem = (w - host + kv) / self.bw + host / self.cpu_bw
        else:
            mem = (w + kv) / self.bw
        per_token = 2.0 * self.active / self.ranks
        attn = self.attn_flops_per_pair * prefill * prefill_ctx
        if self.decode_rate is self.gemm_rate:
            compute = per_token * (decode_seqs + prefill) / self.gemm_rate + attn / self.attn_rate
        else:  # the CPU: decoding and prompts run different kernels
            compute = per_token * (decode_seqs / self.decode_rate + prefill / self.gemm_rate) + attn / self.attn_rate
        step = max(mem + routed, compute) + self.fixed + self.allreduce_seconds(tokens)
        return step + self.per_seq * decode_seqs
