"""The memory model as the planner calls it: one estimate per (option, device, width, free
memory, context, sequences, engine kwargs), made once per run and reused (``EstimateCache``).

Also the engine kwargs a probe or a layout starts from: the largest reservation the GPU allows
(vLLM ``gpu_memory_utilization``, SGLang ``mem_fraction_static``) or llama.cpp's slots.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from xinf_planner.core import engines
from xinf_planner.core.memory.pool import short_pool_note


class EstimateCache:
    """Estimates made in one planning run (and its explanation), by their inputs."""

    def __init__(self) -> None:
        self._memo: dict = {}

    def get(self, key, make):
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]


def estimate_input(cls, kwargs: dict):
    """Build an EstimateInput from the keywords it has (the memory model may not know them all)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in kwargs.items() if k in names})


def slot_kwargs(context: int, seqs: int) -> dict:
    """llama.cpp's engine kwargs for ``seqs`` slots of ``context`` tokens."""
    return {"n_parallel": seqs, "n_ctx": engines.slot_context(context, seqs)}


def slots(engine: str, concurrency: int, replicas: int) -> int:
    """Sequences one of ``replicas`` replicas serves at once: its share of the concurrency,
    at most the engine's slot limit (llama.cpp)."""
    target = math.ceil(concurrency / replicas)
    limit = engines.max_slots(engine)
    return max(1, min(target, limit) if limit else target)


def estimate(
    ctx,
    opt,
    device,
    width: int,
    free_gib: float | None,
    context: int,
    seqs: int,
    dtype: str | None,
    extra: dict,
    host=None,
    cpu_share: int = 1,
):
    """The memory estimate of one replica of ``opt`` on ``width`` GPUs of ``device`` (None:
    the CPU of ``host``, shared by ``cpu_share`` replicas)."""
    from xinf_planner.core.memory import EstimateInput
    from xinf_planner.core.memory import estimate as memory_estimate

    ram = None if host is None else ctx.capacity.free_ram[host.name]
    key = (
        opt.key,
        device,
        width,
        None if free_gib is None else round(free_gib, 2),
        context,
        seqs,
        dtype,
        tuple(sorted(extra.items())),
        None if host is None else _host_key(host),
        ram,
        cpu_share,
    )

    def make():
        kwargs: dict[str, Any] = dict(
            model=opt.arch,
            engine=opt.engine,
            model_format=opt.spec.model_format,
            quantization=opt.spec.quantization,
            context_length=context,
            concurrency=seqs,
            dtype=dtype,
            kv_cache_dtype=opt.kv_cache_dtype,
            runtime_quantization=opt.runtime_quantization,
        )
        if device is not None:
            # tp: the GPUs of one replica (vLLM/SGLang shard; llama.cpp/Transformers split layers)
            kwargs.update(
                tp=width,
                gpu_total_gib=device.total_gib,
                gpu_used_gib=max(0.0, device.total_gib - free_gib),
                gpu_bandwidth_gbps=device.bandwidth_gbps,
                unified_memory=device.unified,
                gpu_wired_limit_gib=device.wired_limit_gib,
                host_memory_gib=device.host_ram_gib,
                gpu_tflops=device.tflops,
            )
        if host is not None:
            kwargs["host_memory_gib"] = ram
            measured = host.memory_bandwidth_measured_gbps
            bw = measured or host.memory_bandwidth_gbps
            if bw:
                kwargs["cpu_bandwidth_gbps"] = bw / cpu_share
                kwargs["cpu_bandwidth_measured"] = bool(measured)
            kwargs["cpu_threads"] = max(1, host.cpu_cores // max(1, cpu_share))
        kwargs.update(extra)
        return memory_estimate(estimate_input(EstimateInput, kwargs))

    return ctx.estimates.get(key, make)


def _host_key(host) -> tuple:
    return (host.os, host.arch, host.cpu_cores, host.memory_bandwidth_gbps, host.memory_bandwidth_measured_gbps)


def engine_extra(opt, device, free_gib: float, context: int, seqs: int) -> dict | None:
    """Engine kwargs at the largest reservation the GPU allows (vLLM/SGLang), or the slots
    (llama.cpp); None when nothing is free to reserve."""
    engine = opt.engine
    res = engines.reservation(engine)
    if res is not None:
        cap = min(res.cap, free_gib / device.total_gib)
        if cap <= 0:
            return None
        return {res.key: int(cap * 10000) / 10000}
    if engine == "llama.cpp":
        return slot_kwargs(context, seqs)
    return {}


def llama_layers(ctx, opt, device, width: int, free_gib: float, context: int, seqs: int):
    """llama.cpp on GPUs: (estimate, None) with every layer offloaded when that fits, else
    (estimate, k) with the most layers k that fit (partial offload), else (None, None)."""
    extra = slot_kwargs(context, seqs)
    est = estimate(ctx, opt, device, width, free_gib, context, seqs, None, extra)
    if est.fits:
        return est, None
    lo, hi, best = 1, opt.arch.num_layers - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        trial = estimate(ctx, opt, device, width, free_gib, context, seqs, None, {**extra, "n_gpu_layers": mid})
        if trial.fits:
            best, lo = (trial, mid), mid + 1
        else:
            hi = mid - 1
    return best if best else (None, None)


def fit_probe(ctx, opt, device, width: int, free_gib: float, context: int, dtype: str | None):
    """(estimate, None) when one sequence of ``context`` fits on a group with ``free_gib``
    free per GPU at the engine's largest allowed reservation; else (None, reason)."""
    extra = engine_extra(opt, device, free_gib, context, 1)
    if extra is None:
        return None, (
            f"only {free_gib:.1f} GiB of the {device.total_gib:.1f} GiB is free per GPU, "
            "below what the engine must reserve."
        )
    if opt.engine == "llama.cpp":
        est, _layers = llama_layers(ctx, opt, device, width, free_gib, context, 1)
        if est is None:
            full = estimate(ctx, opt, device, width, free_gib, context, 1, None, extra)
            return None, " ".join(full.reasons) + " (not even one layer fits)."
        return est, None
    est = estimate(ctx, opt, device, width, free_gib, context, 1, dtype, extra)
    if not est.fits:
        return None, " ".join(est.reasons) or "it does not fit."
    if est.kv_cache_tokens < context:  # SGLang starts, but would refuse the longest requests asked for
        return None, f"{short_pool_note(est.kv_cache_tokens, context)}; a plan serves the whole context."
    if est.per_gpu_gib["total"] > free_gib + 1e-6 and engines.reservation(opt.engine) is None:
        return None, (f"it needs {est.per_gpu_gib['total']:.1f} GiB per GPU; {free_gib:.1f} GiB is free.")
    return est, None


def cpu_slot_extra(engine: str, context: int, seqs: int) -> dict:
    return slot_kwargs(context, seqs) if engine == "llama.cpp" else {}


def cpu_estimate_any(ctx, opt, host, context: int, mreq):
    """The CPU estimate of one replica whether or not it fits (for explanations)."""
    seqs = slots(opt.engine, mreq.concurrency, 1)
    return estimate(ctx, opt, None, 0, None, context, seqs, None, cpu_slot_extra(opt.engine, context, seqs), host=host)


def cpu_estimate(ctx, opt, host, context: int, replicas_here: int, mreq, total_replicas: int):
    """One of ``total_replicas`` CPU replicas, ``replicas_here`` of them on ``host``; None when
    it does not fit."""
    seqs = slots(opt.engine, mreq.concurrency, total_replicas)
    est = estimate(
        ctx,
        opt,
        None,
        0,
        None,
        context,
        seqs,
        None,
        cpu_slot_extra(opt.engine, context, seqs),
        host=host,
        cpu_share=replicas_here,
    )
    return est if est.fits else None
