"""The final configuration of a layout, per engine: how many sequences each replica serves,
the engine kwargs it is launched with, and the estimate at that configuration.

* vLLM/SGLang: the reservation (``gpu_memory_utilization`` / ``mem_fraction_static``) sized to
  the smallest share of each GPU whose KV pool holds the replica's sequences, plus a margin;
* llama.cpp on GPUs: slots (``n_parallel``), halved until they fit, and the layers offloaded;
* other GPU engines: sequences halved until they fit;
* the CPU: llama.cpp slots and threads per replica.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from xinf_planner.core import engines
from xinf_planner.core.inventory import Host
from xinf_planner.core.planning import estimates, workload
from xinf_planner.core.planning.candidates import Option
from xinf_planner.core.planning.context import CPU, Device
from xinf_planner.core.planning.placement import Group, reservation_fraction


@dataclass
class Layout:
    option: Option
    device: Device
    width: int  # GPUs per replica (TP for vLLM/SGLang, layer split for llama.cpp)
    replicas: list[tuple[Host, Group | None]]
    estimate: Any  # memory.Estimate of one replica
    launch_extra: dict  # engine kwargs chosen for it
    per_replica_seqs: int
    served: int  # sequences served at once, all replicas
    per_seq_tps: float
    total_tps: float
    reasons: list[str] = field(default_factory=list)
    shard_hosts: tuple = ()  # one replica sharded over these hosts (n_worker); () otherwise
    tp: int = 0  # a sharded replica's TP and PP (sharding.Parallel)
    pp: int = 1
    serving: Any = None  # serving.figures.Serving of its replicas (workload.attach)
    point: Any = None  # serving.load.Point at the request's workload
    meets: bool = False  # the point meets the request's targets
    _within: dict = field(default_factory=dict, repr=False)

    def within(self, mreq) -> int:
        """The most users this layout serves within the request's targets (computed once)."""
        key = (mreq.input_tokens, mreq.output_tokens, mreq.targets)
        if key not in self._within:
            self._within[key] = self.serving.max_concurrency(mreq.input_tokens, mreq.output_tokens, mreq.targets)
        return self._within[key]

    def capacity_tps(self, mreq) -> float:
        """Output tokens/s at the most users within the targets (the deployment's capacity)."""
        n = self.within(mreq)
        return self.serving.at(mreq.input_tokens, mreq.output_tokens, n).output_tokens_per_s if n else 0.0

    @property
    def label(self) -> str:
        if self.shard_hosts:
            return (
                f"{self.option.label} TP{self.tp}×PP{self.pp}, 1 replica over {len(self.shard_hosts)} "
                f"hosts × {self.width}× {self.device.label}"
            )
        where = "CPU" if self.device.kind is None else f"{self.width}× {self.device.label}"
        par = f" TP{self.width}" if engines.tensor_parallel(self.option.engine) else ""
        return f"{self.option.label}{par}, {len(self.replicas)} replica(s) on {where}"

    @property
    def gpus_used(self) -> int:
        return self.width * max(len(self.replicas), len(self.shard_hosts))

    @property
    def worst_link(self) -> int:
        return max((g.worst_link for _, g in self.replicas if g is not None), default=0)


def finish(ctx, opt, mreq, context, device, width, chosen, dtype, cpu_counts=None, pp=1) -> Layout:
    """The layout of ``opt`` on the ``chosen`` (host, GPU group) replicas (device None: the CPU)."""
    n = len(chosen)
    if device is None:
        est, launch_extra, per_replica, reasons = _size_cpu(ctx, opt, mreq, context, chosen, cpu_counts)
    else:
        free = min(g.free_gib for _, g in chosen)
        if engines.reservation(opt.engine) is not None:
            sized = _size_reserving(ctx, opt, mreq, context, device, width, free, n, dtype, pp)
        elif opt.engine == "llama.cpp":
            sized = _size_llama_gpu(ctx, opt, mreq, context, device, width, free, n)
        else:
            sized = _size_halving(ctx, opt, mreq, context, device, width, free, n, dtype)
        est, launch_extra, per_replica, reasons = sized
        if dtype:
            launch_extra["dtype"] = dtype
    served = per_replica * n
    lay = Layout(opt, device or CPU, width, chosen, est, launch_extra, per_replica, served, 0.0, 0.0, reasons)
    return attach(ctx, mreq, lay)


def attach(ctx, mreq, lay: Layout) -> Layout:
    """The layout's serving figures at the request's workload (after any change of its replicas)."""
    workload.attach(ctx, mreq, lay)
    lay.per_seq_tps = lay.point.tokens_per_s_per_user
    lay.total_tps = lay.point.output_tokens_per_s
    return lay


def _size_cpu(ctx, opt, mreq, context, chosen, cpu_counts):
    engine = opt.engine
    n = len(chosen)
    host0 = chosen[0][0]
    share = max(cpu_counts.values()) if cpu_counts else 1
    seqs = estimates.slots(engine, mreq.concurrency, n)
    est = estimates.estimate(
        ctx,
        opt,
        None,
        0,
        None,
        context,
        seqs,
        None,
        estimates.cpu_slot_extra(engine, context, seqs),
        host=host0,
        cpu_share=share,
    )
    launch_extra = {}
    if engine == "llama.cpp":
        launch_extra = {"n_parallel": seqs, "n_threads": max(1, host0.cpu_cores // share)}
    per_replica = min(seqs, int(est.max_concurrent_sequences)) if est.max_concurrent_sequences else seqs
    return est, launch_extra, per_replica, []


def _size_reserving(ctx, opt, mreq, context, device, width, free, n, dtype, pp):
    """vLLM/SGLang: the reservation fraction, then the sequences its KV pool holds."""
    from xinf_planner.core.memory import EstimateInput, min_gpu_memory_utilization

    engine = opt.engine
    objective = ctx.request.objective
    target = math.ceil(mreq.concurrency / n)
    res = engines.reservation(engine)
    key = res.key
    reasons: list[str] = []
    fraction = estimates.engine_extra(opt, device, free, context, 1)[key]
    if objective != "throughput":
        kwargs = dict(
            model=opt.arch,
            engine=engine,
            model_format=opt.spec.model_format,
            quantization=opt.spec.quantization,
            tp=width,
            gpu_total_gib=device.total_gib,
            gpu_used_gib=device.total_gib - free,
            context_length=context,
            concurrency=target,
            dtype=dtype,
            gpu_bandwidth_gbps=device.bandwidth_gbps,
            pp=pp,
        )
        needed = min_gpu_memory_utilization(estimates.estimate_input(EstimateInput, kwargs), context * target)
        if needed is not None:
            sized = reservation_fraction(needed, res.margin, res.cap, free / device.total_gib)
            if sized is not None:
                fraction = sized
                reasons.append(
                    f"{key} {fraction}: the smallest share of each GPU's "
                    f"{device.total_gib:.1f} GiB whose KV cache holds {target} "
                    f"sequence(s) of {context} tokens ({needed:.3f}), plus a "
                    f"{res.margin} margin, capped at {res.cap} and at what is free."
                )
    if not reasons:
        reasons.append(
            f"{key} {fraction}: as much of each GPU as is free, capped at {res.cap}"
            + (", for throughput." if objective == "throughput" else ", since the KV cache needs all of it.")
        )
    stages = {"pp": pp} if pp > 1 else {}
    est = estimates.estimate(ctx, opt, device, width, free, context, target, dtype, {key: fraction, **stages})
    cap = engines.max_batch(engine)
    per_replica = min(int(est.max_concurrent_sequences), cap)
    if objective == "throughput" and per_replica > target:
        # speeds at capacity: every replica running as many sequences as its KV holds
        load = min(per_replica, cap)
        est = estimates.estimate(ctx, opt, device, width, free, context, load, dtype, {key: fraction, **stages})
    return est, {key: fraction}, per_replica, reasons


def _size_llama_gpu(ctx, opt, mreq, context, device, width, free, n):
    """llama.cpp on GPUs: the most slots (halving) whose layers fit, fully or partly offloaded."""
    seqs = estimates.slots(opt.engine, mreq.concurrency, n)
    est, layers = estimates.llama_layers(ctx, opt, device, width, free, context, seqs)
    while est is None and seqs > 1:
        seqs //= 2
        est, layers = estimates.llama_layers(ctx, opt, device, width, free, context, seqs)
    reasons = []
    launch_extra = {"n_parallel": seqs}
    if layers is None:
        launch_extra["n_gpu_layers"] = engines.all_layers("llama.cpp")
    else:
        launch_extra["n_gpu_layers"] = layers
        reasons.append(
            f"Partial offload: {layers} of {opt.arch.num_layers} layers fit on the GPU; "
            f"the rest run from system RAM ({est.host_gib:.1f} GiB), much slower."
        )
    return est, launch_extra, seqs, reasons


def _size_halving(ctx, opt, mreq, context, device, width, free, n, dtype):
    """Engines without paging or slots (MLX, Transformers): the most sequences (halving) that fit."""
    seqs = estimates.slots(opt.engine, mreq.concurrency, n)
    est = estimates.estimate(ctx, opt, device, width, free, context, seqs, dtype, {})
    while not est.fits and seqs > 1:
        seqs //= 2
        est = estimates.estimate(ctx, opt, device, width, free, context, seqs, dtype, {})
    return est, {}, seqs, []
