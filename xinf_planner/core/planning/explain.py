"""When nothing fits: what was tried and why it failed, the largest model of the family that
does fit here, and the hardware the request would need. Also the notes a chosen plan carries
about the sizes it did not choose."""

from __future__ import annotations

import math

from xinf_planner.core import engines, rules
from xinf_planner.core.planning import estimates
from xinf_planner.core.planning.scoring import figures_text


def nothing_fits(ctx, mreq, archs, layouts, context: int, largest: str) -> str:
    """The explanation NothingFits carries (several lines); ``largest``: what does fit here
    (``search.largest_that_fits``)."""
    targets = mreq.targets
    workload = (
        f"{mreq.ref} for {mreq.concurrency} user(s) of {mreq.input_tokens} prompt + {mreq.output_tokens} output "
        f"tokens (context {context})"
    )
    if any(math.isfinite(lay.point.tpot_s) for lay in layouts):
        head = (
            f"nothing meets {workload} within TTFT {targets.max_ttft_ms / 1000:g} s and TPOT "
            f"{targets.max_tpot_ms:g} ms on this inventory ({ctx.describe()})."
        )
    else:
        head = f"nothing fits {workload} in memory on this inventory ({ctx.describe()})."
    parts = [head]
    parts.extend(reachable(layouts, mreq))
    reasons = {}
    for r in ctx.rejected:
        reasons.setdefault(r["reason"], r["candidate"])
    tried = len({r["candidate"] for r in ctx.rejected})
    if not tried and not layouts:
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
    elif reasons:
        parts.append(f"Tried {tried} option(s); the reasons they failed:")
    for reason, cand in sorted(reasons.items(), key=lambda kv: kv[1])[:8]:
        parts.append(f"  - {cand}: {reason}")
    if len(reasons) > 8:
        parts.append(f"  - … and {len(reasons) - 8} more reasons.")
    parts.append(largest)
    parts.append(hardware_needed(mreq, archs, context))
    return "\n".join(p for p in parts if p)


def missed_targets(lay, mreq) -> str:
    """Why a layout that fits in memory does not serve the request."""
    p = lay.point
    if not math.isfinite(p.tpot_s):
        return (
            f"no room for one request of {mreq.input_tokens} + {mreq.output_tokens} tokens in its KV cache "
            f"({lay.serving.capacity.kv_tokens} tokens per replica)."
        )
    misses = []
    if p.ttft_s * 1000 > mreq.max_ttft_ms:
        misses.append(f"TTFT {p.ttft_s:.2f} s (target {mreq.max_ttft_ms / 1000:g} s)")
    if p.tpot_s * 1000 > mreq.max_tpot_ms:
        misses.append(f"TPOT {p.tpot_s * 1000:.0f} ms (target {mreq.max_tpot_ms:g} ms)")
    return f"misses the targets at {mreq.concurrency} user(s): {' and '.join(misses)}."


def reachable(layouts, mreq) -> list[str]:
    """The best TTFT and TPOT reachable here, and the smallest change of targets or load that one
    of the layouts meets: what would work."""
    fit = [lay for lay in layouts if math.isfinite(lay.point.tpot_s)]
    if not fit:
        return []
    t = mreq.targets
    fastest = min(fit, key=lambda lay: (lay.point.tpot_s, lay.point.ttft_s))
    soonest = min(fit, key=lambda lay: (lay.point.ttft_s, lay.point.tpot_s))
    out = [
        f"The best reachable at {mreq.concurrency} user(s): TPOT {fastest.point.tpot_s * 1000:.0f} ms "
        f"({fastest.label}), TTFT {soonest.point.ttft_s:.2f} s ({soonest.label})."
    ]

    def stretch(lay) -> float:
        return max(lay.point.ttft_s * 1000 / t.max_ttft_ms, lay.point.tpot_s * 1000 / t.max_tpot_ms)

    easiest = min(fit, key=lambda lay: (stretch(lay), lay.gpus_used, lay.label))
    need_ttft = max(t.max_ttft_ms, _ceil_nice(easiest.point.ttft_s * 1000))
    need_tpot = max(t.max_tpot_ms, _ceil_nice(easiest.point.tpot_s * 1000))
    out.append(f"It would meet --max-ttft-ms {need_ttft:g} --max-tpot-ms {need_tpot:g} with {easiest.label}.")
    most = max(fit, key=lambda lay: (lay.within(mreq), -lay.gpus_used))
    users = most.within(mreq)
    if users:
        out.append(f"With the targets as they are, it serves at most {users} user(s) at once ({most.label}).")
    elif fastest.point.tpot_s * 1000 > t.max_tpot_ms:
        factor = fastest.point.tpot_s * 1000 / t.max_tpot_ms
        out.append(
            f"At {mreq.concurrency} user(s) the fastest layout gives {fastest.point.tpot_s * 1000:.0f} ms per "
            f"token: GPUs (or a CPU) with about {factor:.1f}× the memory bandwidth, fewer users or a smaller "
            f"model would meet TPOT {t.max_tpot_ms:g} ms."
        )
    return out


def _ceil_nice(ms: float) -> float:
    """Round up to 2 significant figures (a target a person would type)."""
    if ms <= 0 or not math.isfinite(ms):
        return ms
    mag = 10 ** (math.floor(math.log10(ms)) - 1)
    return math.ceil(ms / mag) * mag


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


def larger_sizes(best, ranked, archs, found, mreq) -> str:
    """Why no larger size of the family was chosen: each one's best layout that meets the
    request and scored lower, or how close it gets to the targets, or that it does not fit."""
    size = best.option.arch.size_b
    larger = sorted({a.size_b for a in archs if a.size_b > size})
    if not larger:
        return f"Largest: {size:g}B is the largest size of {best.option.arch.family} that Xinference offers."
    parts = []
    for b in larger:
        top = next((lay for lay in ranked if lay.option.arch.size_b == b), None)
        if top is not None:
            parts.append(
                f"{b:g}B meets the targets ({top.option.spec.model_format}/{top.option.spec.quantization} "
                f"on {top.option.engine}: {figures_text(top)}) and scores lower"
            )
            continue
        fits = [lay for lay in found if lay.option.arch.size_b == b and math.isfinite(lay.point.tpot_s)]
        if fits:
            near = min(fits, key=lambda lay: lay.point.tpot_s)
            parts.append(f"{b:g}B fits but misses the targets (at best {figures_text(near)})")
        else:
            parts.append(f"{b:g}B does not fit here")
    return "Larger sizes: " + "; ".join(parts) + "."


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
