"""Choosing engine, quantisation, TP, replicas and GPUs for a workload: the plan.

Pure computation over an ``Inventory`` and a ``Request`` (and, for local weights, the facts
``shell/local_weights.detect`` read). For each model of the request:

1. **Options** (``candidates``): every (size, spec, engine) the catalog and the rules allow;
   each refusal kept with its reason.
2. **Layouts** (``layouts``, sized by ``sizing``): each option on each kind of device, estimated
   once per configuration (``estimates``) and placed on topology-aware GPU groups.
3. **Scores** (``scoring``) by objective, from the figures the plan shows, with explicit
   tie-breaks so that the same input gives the same plan. When nothing serves the request,
   ``explain`` says why and what would.

Several models share the inventory by ``share``: each gets that share of the GPUs (at least
one replica's worth), largest share first.
"""

from __future__ import annotations

import math
from dataclasses import replace

from xinf_planner.core import engines
from xinf_planner.core.planning import candidates, explain, scoring
from xinf_planner.core.planning.context import Context
from xinf_planner.core.planning.deployment import deployment
from xinf_planner.core.planning.layouts import layouts
from xinf_planner.core.planning.sizing import Layout
from xinf_planner.core.request import ModelRequest, Request
from xinf_planner.errors import NothingFits

REJECTED_ALTERNATIVES = 15  # feasible layouts not chosen that the plan lists


def make_plan(inventory, request: Request, *, local_models: dict | None = None, source: str | None = None) -> dict:
    """The plan document for ``request`` on ``inventory``; NothingFits when nothing does."""
    from xinf_planner.core.plan.document import new_plan

    ctx = Context.new(inventory, request, local_models)
    deployments = run(ctx)
    return new_plan(inventory, request.to_dict(), deployments, ctx.unique_rejections(), ctx.notes, source)


def run(ctx: Context) -> list[dict]:
    """Plan every model of the request, largest share first; the deployments in request order."""
    models = ctx.request.models
    order = sorted(range(len(models)), key=lambda i: (-models[i].share, i))
    chosen: dict[int, dict] = {}
    for n, i in enumerate(order):
        mreq = models[i]
        # this model's share of the GPUs still free; the last model gets all that is left
        rest = sum(models[j].share for j in order[n:])
        quota = max(1, math.floor(ctx.capacity.gpu_count() * mreq.share / rest + 1e-9))
        layout, context = choose(ctx, mreq, quota)
        chosen[i] = deployment(
            ctx, mreq, layout, context, uid_taken={d["launch"]["model_uid"] for d in chosen.values()}
        )
    return [chosen[i] for i in range(len(models))]


def choose(ctx: Context, mreq: ModelRequest, quota: int) -> tuple[Layout, int]:
    """The best layout of ``mreq`` within ``quota`` GPUs per replica, committed to the capacity."""
    local = ctx.local(mreq)
    archs = candidates.archs_of(mreq) if local is None else [candidates.local_arch(mreq, local)]
    context = mreq.context_length
    for arch in archs:
        limit = arch.max_position_embeddings or arch.context_length
        if limit and context > limit and local is None:
            ctx.reject(arch.ref, f"the context length {context} exceeds the model's maximum {limit}.")
    archs = [
        a for a in archs if local is not None or not a.max_position_embeddings or context <= a.max_position_embeddings
    ]
    found: list[Layout] = []
    for opt in candidates.options(ctx, archs, local):
        found.extend(layouts(ctx, opt, mreq, quota, context))
    found = _drop_last_resorts(ctx, found)
    meeting = [lay for lay in found if lay.meets]
    if not meeting:
        if ctx.quiet:
            raise NothingFits(f"nothing fits {mreq.ref}")
        raise NothingFits(explain.nothing_fits(ctx, mreq, archs, found, context, largest_that_fits(ctx, mreq, context)))
    objective = ctx.request.objective
    ranked = scoring.rank(meeting, mreq, objective)
    best = ranked[0]
    if mreq.size is None and local is None:
        best.reasons.append(explain.larger_sizes(best, ranked, archs, found, mreq))
    for lay in ranked[1 : 1 + REJECTED_ALTERNATIVES]:
        ctx.reject(lay.label, scoring.why_not(best, lay, objective, mreq))
    for lay in found:
        if not lay.meets:
            ctx.reject(lay.label, explain.missed_targets(lay, mreq))
    commit(ctx, best)
    return best, context


def largest_that_fits(ctx: Context, mreq: ModelRequest, context: int) -> str:
    """The largest size of the family that serves one sequence here, with no filters: planned
    again on a fresh copy of the free capacity, reusing this run's estimates."""
    from xinf_planner.core import catalog

    trial = Context.new(
        ctx.inventory,
        replace(ctx.request, engines=None, formats=None, quantizations=None),
        ctx.local_models,
        estimates=ctx.estimates,
    )
    trial.quiet = True
    for arch in reversed(catalog.models_of(mreq.family)):
        small = replace(mreq, size=arch.size, concurrency=1, replicas=None, model_path=None)
        try:
            lay, _ = choose(trial, small, trial.capacity.gpu_count() or 1)
        except NothingFits:
            continue
        return (
            f"The largest model of the family that meets the targets for one user is {lay.option.label} "
            f"({scoring.figures_text(lay)}; up to {lay.within(small)} users within the targets)."
        )
    return f"No size of {mreq.family} meets the targets for one user at {context} tokens on this inventory."


def _drop_last_resorts(ctx: Context, found: list[Layout]) -> list[Layout]:
    """Transformers only when nothing else fits (no paged KV cache, no continuous batching)."""
    if not any(not engines.is_last_resort(lay.option.engine) for lay in found):
        return found
    for lay in found:
        if engines.is_last_resort(lay.option.engine):
            ctx.reject(
                lay.label,
                "Transformers is a last resort (no paged KV cache, no continuous batching) and another engine fits.",
            )
    return [lay for lay in found if not engines.is_last_resort(lay.option.engine)]


def commit(ctx: Context, lay: Layout) -> None:
    """Take the layout's GPUs (and its CPU replicas' RAM) out of the free capacity."""
    for host in lay.shard_hosts:
        ctx.capacity.take(host, lay.replicas[0][1].gpus, 0.0)
    for host, group in lay.replicas[: 0 if lay.shard_hosts else None]:
        ram = lay.estimate.host_gib if group is None else 0.0
        ctx.capacity.take(host, () if group is None else group.gpus, ram)
