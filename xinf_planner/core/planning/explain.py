"""When nothing fits: what was tried and why it failed, the largest model of the family that
does fit here, and the hardware the request would need. Also the notes a chosen plan carries
about the sizes it did not choose."""

from __future__ import annotations

import math

from xinf_planner.core import engines, rules
from xinf_planner.core.planning import estimates
from xinf_planner.core.planning.scoring import TOO_SLOW_TOKENS_PER_S


def nothing_fits(ctx, mreq, archs, layouts, context: int, largest: str) -> str:
    """The explanation NothingFits carries (several lines); ``largest``: what does fit here
    (``search.largest_that_fits``)."""
    parts = [
        f"nothing fits {mreq.ref} at {context} tokens × {mreq.concurrency} sequence(s) on this "
        f"inventory ({ctx.describe()})."
    ]
    if layouts:
        best = max(layouts, key=lambda lay: (lay.served, lay.option.arch.size_b))
        parts.append(f"The most it can serve is {best.served} sequence(s) at once with {best.label}.")
    reasons = {}
    for r in ctx.rejected:
        reasons.setdefault(r["reason"], r["candidate"])
    tried = len({r["candidate"] for r in ctx.rejected})
    if not tried:
        req = ctx.request
        filters = [
            f"{k} {', '.join(v)}"
            for k, v in (("engines", req.engines), ("formats", req.formats), ("quantizations", req.quantizations))
            if v
        ]
        parts.append(
            "No catalog spec of the model passes the filters"
            + (f" ({'; '.join(filters)})" if filters else "")
            + "; `xinf-plan estimate --help` and the catalog list the valid choices."
        )
    else:
        parts.append(f"Tried {tried} option(s); the reasons they failed:")
    for reason, cand in sorted(reasons.items(), key=lambda kv: kv[1])[:8]:
        parts.append(f"  - {cand}: {reason}")
    if len(reasons) > 8:
        parts.append(f"  - … and {len(reasons) - 8} more reasons.")
    parts.append(largest)
    parts.append(hardware_needed(mreq, archs, context))
    return "\n".join(parts)


def hardware_needed(mreq, archs, context: int) -> str:
    """GPU memory in all that the smallest spec of the model would need for this request."""
    from xinf_planner.core import catalog
    from xinf_planner.core.memory import EstimateInput, estimate

    arch = archs[-1] if archs else catalog.models_of(mreq.family)[0]
    if mreq.size is None:
        arch = catalog.models_of(mreq.family)[0]
    best = None
    slots = min(mreq.concurrency, engines.max_slots("llama.cpp"))
    for spec in catalog.specs_for(arch):
        if not spec.launchable:
            continue
        for engine in ("vllm", "llama.cpp"):  # the GPU engines of the smallest footprints
            if rules.format_reason(engine, spec.model_format):
                continue
            kwargs = dict(
                model=arch,
                engine=engine,
                model_format=spec.model_format,
                quantization=spec.quantization,
                tp=1,
                gpu_total_gib=4096.0,
                context_length=context,
                concurrency=mreq.concurrency,
            )
            if engine == "vllm":
                kwargs["gpu_memory_utilization"] = engines.reservation("vllm").default
            else:
                kwargs.update(estimates.slot_kwargs(context, slots))
            est = estimate(estimates.estimate_input(EstimateInput, kwargs))
            need = (
                est.per_gpu_gib["weights"]
                + est.per_gpu_gib["activation"]
                + est.per_gpu_gib["overhead"]
                + _kv_need(est, context, mreq.concurrency)
            )
            prec = rules.precision_of(spec.model_format, spec.quantization, arch.checkpoint_quant)
            item = (need, spec.model_format, spec.quantization, engine, prec)
            if best is None or item < best:
                best = item
    if best is None:
        return ""
    need, fmt, quant, engine, prec = best
    gpus = ", ".join(f"{_pow2(math.ceil(need / g))}× {n}" for n, g in (("24 GiB GPU", 22.0), ("80 GiB GPU", 76.0)))
    return (
        f"{arch.ref} at its smallest ({fmt}/{quant}, {rules.precision_label(prec)}, on {engine}) needs "
        f"about {need:.0f} GiB of GPU memory in all for this request (e.g. {gpus}; TP is a power of two)."
    )


def larger_sizes(best, ranked, archs) -> str:
    """Why no larger size of the family was chosen: each one's best layout, or 'does not fit'."""
    size = best.option.arch.size_b
    larger = sorted({a.size_b for a in archs if a.size_b > size})
    if not larger:
        return f"Largest: {size:g}B is the largest size of {best.option.arch.family} that Xinference offers."
    parts = []
    slow = []
    for b in larger:
        top = next((lay for lay in ranked if lay.option.arch.size_b == b), None)
        if top is None:
            parts.append(f"{b:g}B does not serve this workload here")
            continue
        parts.append(
            f"{b:g}B fits ({top.option.spec.model_format}/{top.option.spec.quantization} on "
            f"{top.option.engine}) at {top.per_seq_tps:.1f} tokens/s per sequence and "
            f"{top.served} sequence(s) at once, and scores lower"
        )
        if top.per_seq_tps < TOO_SLOW_TOKENS_PER_S:
            slow.append(f"{b:g}B")
    out = "Larger sizes: " + "; ".join(parts) + "."
    if slow:
        out += (
            f" {', '.join(slow)} would decode under {TOO_SLOW_TOKENS_PER_S:g} tokens/s per sequence "
            "here, too slow to use: R1 models think for hundreds to thousands of tokens before "
            "they answer."
        )
    return out


def faster_advice(mreq) -> str:
    from xinf_planner.core import catalog

    small = catalog.models_of(mreq.family)[0]
    return (
        f"Consider the small distill {small.ref} (about {small.size_b:g}B), "
        "which decodes several times faster on the same hardware."
    )


def _pow2(n: int) -> int:
    """The smallest power of two ≥ n (TP sizes)."""
    return 1 << max(0, (n - 1).bit_length())


def _kv_need(est, context: int, seqs: int) -> float:
    if est.kv_cache_tokens and est.per_gpu_gib["kv_cache"]:
        per_token = est.per_gpu_gib["kv_cache"] / est.kv_cache_tokens
        return per_token * context * seqs
    return est.per_gpu_gib["kv_cache"]
