"""A deployment's serving figures at its workload, against its targets: the ``serving`` block of
an estimate and of every plan deployment (TTFT, TPOT, tokens/s per user, in total and per GPU,
the most users that still meet the targets, and the curve over concurrency).

Targets: the time to the first token and the time per output token every user must get. The
defaults fit DeepSeek-R1, whose answers think for thousands of tokens: a typical request is
taken as 1,000 prompt tokens and 4,000 output tokens (thinking included); at most 100 ms per
output token (10 tokens/s: slower than that an R1 answer takes over ten minutes, the planner's
old "too slow to use" line), and the first token within 10 s (an answer takes minutes anyway;
past 10 s users take the request for hung).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xinf_planner.core import engines
from xinf_planner.core.serving.load import Capacity, Point, Workload, closed_loop
from xinf_planner.core.serving.step import Hardware, StepModel

DEFAULT_INPUT_TOKENS = 1000
DEFAULT_OUTPUT_TOKENS = 4000
DEFAULT_MAX_TTFT_MS = 10_000.0
DEFAULT_MAX_TPOT_MS = 100.0
CURVE_POINTS = 12


@dataclass(frozen=True)
class Targets:
    max_ttft_ms: float = DEFAULT_MAX_TTFT_MS
    max_tpot_ms: float = DEFAULT_MAX_TPOT_MS

    def met_by(self, point: Point) -> bool:
        return point.ttft_s * 1000.0 <= self.max_ttft_ms + 1e-9 and point.tpot_s * 1000.0 <= self.max_tpot_ms + 1e-9

    def to_dict(self) -> dict:
        return {"max_ttft_ms": _num(self.max_ttft_ms), "max_tpot_ms": _num(self.max_tpot_ms)}


def _num(x: float):
    return int(x) if float(x).is_integer() else x


def capacity_of(inp, est) -> Capacity:
    """What one replica holds and schedules, from its memory estimate and the engine's facts."""
    engine = inp.engine
    step = engines.step_tokens(engine, inp.gpu_total_gib)
    if engine == "llama.cpp":
        slots = max(1, inp.n_parallel or inp.concurrency)
        return Capacity(kv_tokens=slots * inp.context_length, max_batch=slots, step_tokens=step)
    cap = engines.max_batch(engine) or max(1, inp.concurrency)
    if not engines.has_paged_kv(engine):
        # fixed allocations: the sequences the estimate made room for, at the full context
        seqs = max(1, min(cap, int(est.max_concurrent_sequences) or inp.concurrency))
        return Capacity(kv_tokens=seqs * inp.context_length, max_batch=seqs, step_tokens=step)
    return Capacity(kv_tokens=int(est.kv_cache_tokens), max_batch=cap, step_tokens=step)


class Serving:
    """One replica layout's serving model: the step model, its capacity and its replicas."""

    def __init__(self, inp, est, hw: Hardware, replicas: int, gpus: int):
        self.step = StepModel(inp, est, hw)
        self.capacity = capacity_of(inp, est)
        self.replicas = max(1, replicas)
        self.gpus = gpus
        self._points: dict[tuple, Point] = {}

    def at(self, input_tokens: int, output_tokens: int, concurrency: int) -> Point:
        key = (input_tokens, output_tokens, concurrency)
        if key not in self._points:
            self._points[key] = closed_loop(
                self.step, Workload(input_tokens, output_tokens, concurrency), self.replicas, self.capacity
            )
        return self._points[key]

    def max_concurrency(self, input_tokens: int, output_tokens: int, targets: Targets) -> int:
        """The most users (whole deployment) that still meet both targets; 0 when not even one."""
        if not targets.met_by(self.at(input_tokens, output_tokens, 1)):
            return 0
        lo, hi = 1, 2
        limit = self.replicas * max(1, self.capacity.max_batch) * 4
        while hi <= limit and targets.met_by(self.at(input_tokens, output_tokens, hi)):
            lo, hi = hi, hi * 2
        hi = min(hi, limit + 1)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if targets.met_by(self.at(input_tokens, output_tokens, mid)):
                lo = mid
            else:
                hi = mid
        return lo

    def figures(
        self, input_tokens: int, output_tokens: int, concurrency: int, targets: Targets, curve: bool = True
    ) -> dict:
        """The ``serving`` block (docs: SERVING in the README, plan.schema.json)."""
        point = self.at(input_tokens, output_tokens, concurrency)
        best = self.max_concurrency(input_tokens, output_tokens, targets)
        out = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "concurrency": concurrency,
            **point_dict(point, self.gpus),
            "max_concurrency_within_targets": best,
            "targets": targets.to_dict(),
            "meets_targets": targets.met_by(point),
            "gpus": self.gpus,
        }
        if curve:
            out["curve"] = [
                point_dict(self.at(input_tokens, output_tokens, c), None)
                for c in curve_concurrencies(concurrency, best)
            ]
        return out


def point_dict(point: Point, gpus: int | None) -> dict:
    finite = math.isfinite(point.tpot_s) and math.isfinite(point.ttft_s)
    out = {
        "concurrency": point.concurrency,
        "ttft_s": round(point.ttft_s, 4) if finite else None,
        "tpot_s": round(point.tpot_s, 5) if finite else None,
        "tokens_per_s_per_user": round(point.tokens_per_s_per_user, 2) if finite else 0.0,
        "output_tokens_per_s": round(point.output_tokens_per_s, 2),
    }
    if gpus is not None:
        out.pop("concurrency")
        out["output_tokens_per_s_per_gpu"] = round(point.output_tokens_per_s / gpus, 2) if gpus else None
    return out


def curve_concurrencies(planned: int, best: int) -> list[int]:
    """Powers of two up to past both the planned load and the most within targets, with both."""
    top = max(2, planned, best) * 2
    points = {1, planned}
    if best:
        points.add(best)
    c = 2
    while c <= top:
        points.add(c)
        c *= 2
    ordered = sorted(points)
    while len(ordered) > CURVE_POINTS:  # thin the powers of two, never the planned or best points
        drop = next(i for i in range(1, len(ordered) - 1) if ordered[i] not in (planned, best))
        ordered.pop(drop)
    return ordered
