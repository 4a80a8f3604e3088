"""Decode speed as ``estimate`` reports it: tokens/s of one sequence alone (batch 1), and in
aggregate at the estimate's batch with every sequence at the full context length (memory's
worst case). The serving figures at a workload (TTFT, TPOT, throughput) are ``load.py``'s."""

from __future__ import annotations

from xinf_planner.core.memory.types import Estimate, EstimateInput
from xinf_planner.core.serving.step import Hardware, StepModel


def decode_speed(
    inp: EstimateInput, est: Estimate, *, memory_kind_override: str | None = None, interconnect: str | None = None
) -> dict[str, float | None]:
    """tokens/s per sequence at batch 1 and in aggregate at the estimate's batch, and that batch.

    ``memory_kind_override`` (hbm | gddr | unified | cpu) for a GPU the table lacks; ``interconnect``
    (nvlink | pcie | network) between tensor-parallel ranks, nvlink when not given."""
    hw = Hardware(tflops=inp.gpu_tflops, link=interconnect or "nvlink")
    step = StepModel(inp, est, hw, kind=memory_kind_override)
    if not step.bandwidth_known:
        return {"per_sequence": None, "aggregate": None, "batch": None}
    batch = max(1, min(inp.concurrency, int(est.max_concurrent_sequences) or 1))
    ctx = inp.context_length
    return {"per_sequence": 1.0 / step.seconds(1, ctx), "aggregate": batch / step.seconds(batch, ctx), "batch": batch}
