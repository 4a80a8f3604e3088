"""Serving at a load: time to first token (TTFT), time per output token (TPOT) and throughput of
a deployment whose users each send a request, wait for the whole answer, and send the next
(a closed loop, as a chat or an agent does), as vLLM and SGLang serve them.

Aggregated serving with chunked prefill: every step decodes one token of each running sequence
and fills the rest of its token budget with prompt chunks. At steady state requests finish as
fast as they start, so each step carries, on average, ``P / O`` prompt tokens per decoding
sequence (P prompt, O output tokens): every output token pays its share of prefill. A
replica admits as many sequences as its KV cache holds at the workload's length (and its batch
cap); the rest wait. So, per replica with ``C`` users, ``B = min(C, capacity)`` admitted, and a
fixed point of

  completions per step  lam = B / (O + S)           (S: steps a request spends in prefill)
  decoding sequences    d = lam * O,   prompt tokens per step  p = lam * P
  prefill budget        R = step tokens - d;  its utilisation  rho = p / R
  steps in prefill      S = ceil(P / R) chunks + P / R x rho / (2 (1 - rho)) steps waiting
  step time             s = step(d sequences at P + O/2 tokens of KV, p prompt tokens)

gives TPOT = s, TTFT = the wait for admission + the steps waiting for the budget (at s) + the
steps carrying the request's own chunks (each a step with min(P, R) prompt tokens) + one
decode step, and output tokens/s = d / s per replica. When the prompt work exceeds the budget
(rho -> 1) throughput is capped at step tokens / (P + O) completions per step and the excess
users wait.

``burst`` (all requests at once) and ``static_batch`` (one offline batch) describe the loads of
some published benchmarks (benchmarks/serving_accuracy.py); the planner plans closed loops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Workload:
    input_tokens: int
    output_tokens: int
    concurrency: int  # users at once, whole deployment


@dataclass(frozen=True)
class Capacity:
    """What one replica can hold and schedule."""

    kv_tokens: int  # the KV pool of one replica, in tokens
    max_batch: int  # sequences one replica runs at once (max_num_seqs, slots)
    step_tokens: int | None  # tokens one step schedules; None: a prompt is prefilled whole


@dataclass(frozen=True)
class Point:
    concurrency: int
    ttft_s: float
    tpot_s: float
    output_tokens_per_s: float  # whole deployment
    running: float  # sequences decoding per replica (mean)
    waiting: float  # users waiting for admission per replica

    @property
    def tokens_per_s_per_user(self) -> float:
        return 1.0 / self.tpot_s if self.tpot_s > 0 else 0.0


def admitted(capacity: Capacity, workload: Workload, users: int) -> int:
    """Sequences one replica runs at once for ``users`` users: what its KV cache holds at the
    workload's full length (prompt + output) and its batch cap allow."""
    per_seq = max(1, workload.input_tokens + workload.output_tokens)
    by_kv = capacity.kv_tokens // per_seq
    return max(0, min(users, by_kv, capacity.max_batch))


def closed_loop(step, workload: Workload, replicas: int, capacity: Capacity) -> Point:
    """The steady state of ``workload.concurrency`` users over ``replicas`` replicas."""
    users = max(1, math.ceil(workload.concurrency / max(1, replicas)))
    P = max(1, workload.input_tokens)
    n_out = max(1, workload.output_tokens)
    B = admitted(capacity, workload, users)
    if B < 1:
        return Point(workload.concurrency, math.inf, math.inf, 0.0, 0.0, float(users))
    budget = capacity.step_tokens or (P + B)  # no chunking: a whole prompt joins a step
    kv_len = P + n_out / 2.0
    S = max(1.0, math.ceil(P / budget))
    s = step.seconds(B, kv_len)
    lam = B / (n_out + S)
    chunks, wait_steps, room = S, 0.0, float(budget)
    for _ in range(60):
        lam_cap = budget / (n_out + P)  # the step budget's share of whole requests per step
        lam = min(B / (n_out + S), lam_cap)
        d = lam * n_out
        p = lam * P
        room = max(1.0, budget - d)
        rho = min(0.99, p / room)
        chunks = max(1.0, math.ceil(P / room))
        wait_steps = P / room * rho / (2.0 * (1.0 - rho))  # waiting for the budget
        new_S = chunks + wait_steps
        if lam >= lam_cap * 0.999:  # prefill-bound: admitted users queue for the budget
            new_S = max(new_S, B / lam - n_out)
            wait_steps = new_S - chunks
        s = step.seconds(d, kv_len, p, P / 2.0)
        if abs(new_S - S) < 1e-3 * max(1.0, S):
            S = new_S
            break
        S = 0.5 * (S + new_S)
    d = lam * n_out
    # the steps that carry this request's own prompt chunks are longer than the mean step
    chunk_s = step.seconds(d, kv_len, min(float(P), room), P / 2.0)
    per_second = lam / s  # completions per second per replica
    queue = users - B
    admission_s = queue / per_second if queue > 0 and per_second > 0 else 0.0
    ttft = wait_steps * s + chunks * chunk_s + s + admission_s
    return Point(workload.concurrency, ttft, s, replicas * d / s, d, float(max(0, queue)))


def burst(step, workload: Workload, replicas: int, capacity: Capacity) -> Point:
    """``concurrency`` requests released at once (each once): the engine runs saturated, as a
    closed loop of that many users, until the queue drains; throughput and TPOT are the
    saturated ones (the ramp and the drain are not modelled), and a request's first token waits
    for the prompts of those ahead of it."""
    n = max(1, math.ceil(workload.concurrency / max(1, replicas)))
    sat = closed_loop(step, Workload(workload.input_tokens, workload.output_tokens, n), 1, capacity)
    if not math.isfinite(sat.tpot_s) or sat.output_tokens_per_s <= 0:
        return replace(sat, concurrency=workload.concurrency)
    # Prompts are prefilled first come, first served: the k-th request's first token comes after
    # the k-1 before it, at the rate requests complete once the engine is saturated (one in,
    # one out), or at the rate the step budget prefills prompts while they all fit at once.
    per_request_s = workload.output_tokens / sat.output_tokens_per_s
    if sat.waiting <= 0:
        budget = capacity.step_tokens or workload.input_tokens
        per_request_s = min(per_request_s, max(1.0, workload.input_tokens / budget) * sat.tpot_s)
    own = sat.ttft_s - sat.waiting * workload.output_tokens / sat.output_tokens_per_s  # without admission
    ttft = own + (n - 1) / 2.0 * per_request_s
    return Point(workload.concurrency, ttft, sat.tpot_s, replicas * sat.output_tokens_per_s, sat.running, sat.waiting)


def static_batch(step, workload: Workload, capacity: Capacity) -> tuple[float, float, float]:
    """One offline batch of ``concurrency`` sequences: (prefill seconds, TPOT, end-to-end seconds)."""
    n = max(1, workload.concurrency)
    P = max(1, workload.input_tokens)
    n_out = max(1, workload.output_tokens)
    budget = capacity.step_tokens or (P * n)
    steps = max(1.0, n * P / budget)
    prefill = steps * step.seconds(0, 0.0, min(budget, n * P), P / 2.0)
    tpot = step.seconds(n, P + n_out / 2.0)
    return prefill, tpot, prefill + (n_out - 1) * tpot
