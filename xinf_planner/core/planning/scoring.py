"""Step 3 of a plan: how layouts are ranked for each objective. The rule of each objective is
stated in ``OBJECTIVES`` and copied into every plan's reasons; ties break explicitly (engine
order, width, link, label) so that the same input always gives the same plan."""

from __future__ import annotations

import math

from xinf_planner.core import engines, rules

USABLE_TOKENS_PER_S = 20.0  # per sequence: reading speed with room to spare
TOO_SLOW_TOKENS_PER_S = 10.0  # per sequence: R1 thinks for thousands of tokens; below this, advise a smaller model

OBJECTIVES = {
    "quality": "the largest model, then the highest precision, that serves the concurrency at 10 "
    "tokens/s per sequence or more (when any option does); then the most GPUs put to use, "
    "then total tokens/s",
    "throughput": "the most total decode tokens/s (all replicas), then the most sequences served",
    "latency": "the fastest decode per sequence, then the largest model and precision",
    "balanced": "quality points × speed factor, where quality points = log2(1 + size in B) × the "
    "share of quality the precision keeps (1.0 bf16 … 0.9 4-bit … 0.5 2-bit) and speed "
    "factor = min(1, tokens/s per sequence / 20); "
    "then the most GPUs put to use, then total tokens/s",
}


def balanced_score(size_b: float, precision: str, per_seq_tps: float) -> float:
    quality = math.log2(1 + size_b) * rules.precision_quality(precision)
    return quality * min(1.0, per_seq_tps / USABLE_TOKENS_PER_S)


def score(lay, mreq, objective: str) -> tuple:
    """The sort key of a layout for ``objective`` (higher is better)."""
    opt = lay.option
    rank = rules.precision_rank(opt.precision)
    many = mreq.concurrency >= engines.paged_kv_concurrency()
    # 'balanced' plans a server: continuous batching serves the next user at the same quality,
    # so paged engines lead whenever they fit; the other objectives ask for it by concurrency.
    paged = engines.has_paged_kv(opt.engine) and (many or objective == "balanced")
    size = opt.arch.size_b
    tie = (-engines.order(opt.engine), -lay.width, -lay.worst_link, lay.label)
    used = lay.gpus_used
    if objective == "quality":
        usable = lay.per_seq_tps >= TOO_SLOW_TOKENS_PER_S
        head = (usable, size, rank, paged, used, round(lay.total_tps, 3))
    elif objective == "throughput":
        head = (paged, round(lay.total_tps, 3), lay.served, size, rank)
    elif objective == "latency":
        head = (paged, round(lay.per_seq_tps, 3), size, rank)
    else:
        head = (paged, round(balanced_score(size, opt.precision, lay.per_seq_tps), 6), used, round(lay.total_tps, 3))
    return head + tie


def why_not(best, lay, objective: str) -> str:
    """Why ``lay`` lost to ``best``, in the figures the objective ranks by."""
    return (
        f"scored lower for '{objective}' (the objective's rule is in the deployment's reasons): "
        f"{lay.per_seq_tps:.1f} tokens/s "
        f"per sequence, {lay.total_tps:.0f} in total, {lay.served} sequence(s) at once, against "
        f"{best.per_seq_tps:.1f}, {best.total_tps:.0f} and {best.served} for the choice."
    )
