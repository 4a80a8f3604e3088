"""Step 3 of a plan: how the layouts that meet the request are ranked for each objective. Only
layouts whose serving figures meet both targets (TTFT, TPOT) at the requested users are ranked;
the rule of each objective is stated in ``OBJECTIVES`` and copied into every plan's reasons.
Ties break explicitly (engine order, width, link, label), so the same input gives the same plan.

Why ``balanced`` is what it is (docs/planning.md): a deployment's value is the model's quality
at the users it must serve; GPUs beyond what the targets need buy headroom nobody asked for
and are taken from other models. So it chooses the option (size, quantisation, engine) by its
quality points, discounted by up to 10% when even its smallest layout that meets the targets has
no room for more users than asked (a 4-bit model with room for bursts beats a 5-bit one that
serves exactly the request), and then takes that option's fewest GPUs that meet the targets.
"""

from __future__ import annotations

import math

from xinf_planner.core import engines, rules

OBJECTIVES = {
    "quality": "the largest model, then the highest precision, that meets the targets at the requested "
    "users; then the most users within the targets (headroom), then the fewest GPUs",
    "throughput": "the most output tokens/s the deployment sustains within the targets (its capacity: "
    "the output rate at the most users that still meet both), then quality",
    "latency": "the lowest time per output token at the requested users, then the lowest time to first "
    "token, then quality",
    "efficiency": "the fewest GPUs that meet the workload and the targets (the rest stay free), then "
    "quality, then headroom",
    "balanced": "the option (size, quantisation, engine) with the most quality points × headroom, then its "
    "fewest GPUs that meet the targets (never more GPUs than the targets need); quality points = log2(1 + "
    "size in B) × the share of quality the precision keeps (1.0 bf16, 0.99 fp8 … 0.9 4-bit … 0.5 2-bit) × "
    "the KV cache's (0.99 for fp8); headroom = 0.9 + 0.1 × min(1, (users its fewest-GPU layout serves "
    "within the targets − users asked) ÷ users asked): 1 with room for twice the users, 0.9 with none",
}

HEADROOM_DISCOUNT = 0.1  # what no room for a burst costs in 'balanced' (the 4-bit vs 5/8-bit gap)


def quality_points(lay) -> float:
    opt = lay.option
    return (
        math.log2(1 + opt.arch.size_b)
        * rules.precision_quality(opt.precision)
        * rules.kv_cache_quality(opt.kv_cache_dtype)
    )


def headroom_factor(users_within: int, users_asked: int) -> float:
    """1.0 when the targets hold for twice the users asked, falling linearly to 0.9 when they hold
    for exactly the users asked."""
    asked = max(1, users_asked)
    spare = min(1.0, max(0, users_within - asked) / asked)
    return 1.0 - HEADROOM_DISCOUNT + HEADROOM_DISCOUNT * spare


def balanced_score(size_b: float, precision: str, users_within: int, users_asked: int, kv: str = "auto") -> float:
    """The option score of 'balanced': quality points × headroom."""
    points = math.log2(1 + size_b) * rules.precision_quality(precision) * rules.kv_cache_quality(kv)
    return points * headroom_factor(users_within, users_asked)


def rank(layouts: list, mreq, objective: str) -> list:
    """The layouts that meet the request, best first, for ``objective``."""
    if objective != "balanced":
        return sorted(layouts, key=lambda lay: score(lay, mreq, objective), reverse=True)
    smallest: dict = {}  # option key -> its fewest-GPU layout that meets the targets
    for lay in layouts:
        key = lay.option.key
        best = smallest.get(key)
        if best is None or (lay.gpus_used, -lay.within(mreq)) < (best.gpus_used, -best.within(mreq)):
            smallest[key] = lay
    option_score = {
        key: balanced_score(
            lay.option.arch.size_b, lay.option.precision, lay.within(mreq), mreq.concurrency, lay.option.kv_cache_dtype
        )
        for key, lay in smallest.items()
    }

    def key(lay) -> tuple:
        opt = lay.option
        tie = (-engines.order(opt.engine), -lay.width, -lay.worst_link, lay.label)
        head = (round(option_score[opt.key], 6), -lay.gpus_used, lay.within(mreq), -round(lay.point.tpot_s, 6))
        return head + tie

    return sorted(layouts, key=key, reverse=True)


def score(lay, mreq, objective: str) -> tuple:
    """The sort key of a layout that meets the request, for the objectives other than 'balanced'
    (higher is better)."""
    opt = lay.option
    rank = rules.precision_rank(opt.precision)
    kv = rules.kv_cache_quality(opt.kv_cache_dtype)
    size = opt.arch.size_b
    gpus = lay.gpus_used
    tpot = lay.point.tpot_s
    tie = (-engines.order(opt.engine), -lay.width, -lay.worst_link, lay.label)
    if objective == "quality":
        head = (size, rank, kv, lay.within(mreq), -gpus, -round(tpot, 6))
    elif objective == "throughput":
        head = (round(lay.capacity_tps(mreq), 1), round(quality_points(lay), 6), -gpus)
    elif objective == "latency":
        head = (-round(tpot, 6), -round(lay.point.ttft_s, 4), round(quality_points(lay), 6))
    elif objective == "efficiency":
        head = (-gpus, round(quality_points(lay), 6), lay.within(mreq), -round(tpot, 6))
    else:
        raise ValueError(f"unknown objective {objective!r}")
    return head + tie


def figures_text(lay) -> str:
    """A layout's serving figures in one phrase (for why-not lines and explanations)."""
    p = lay.point
    if not math.isfinite(p.tpot_s):
        return "no room for one request of the workload"
    return f"TTFT {p.ttft_s:.2f} s, TPOT {p.tpot_s * 1000:.0f} ms, {p.output_tokens_per_s:.0f} output tokens/s " + (
        f"on {lay.gpus_used} GPU(s)" if lay.gpus_used else "on the CPU"
    )


def why_not(best, lay, objective: str, mreq) -> str:
    """Why ``lay`` lost to ``best``, in the figures the objective ranks by."""
    return (
        f"scored lower for '{objective}' (the objective's rule is in the deployment's reasons): "
        f"{figures_text(lay)}, up to {lay.within(mreq)} users within the targets, against "
        f"{figures_text(best)} and {best.within(mreq)} for the choice."
    )
