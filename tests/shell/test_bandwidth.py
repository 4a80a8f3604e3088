"""The memory-bandwidth probe, for real on this machine, with small budgets.

Bandwidth on a shared machine moves from one pass to the next, so the checks are bounds, not
values: time within the cap, finite positive figures, a plausible range, and threads that do
not read much slower together than one alone (the best of a few tries, the probe being cheap).
"""

from __future__ import annotations

import dataclasses
import math
import time

from xinf_planner.shell.probe import bandwidth
from xinf_planner.shell.probe.bandwidth import BandwidthResult, measure_memory_bandwidth

FIELDS = ["gbps_1_thread", "gbps_all_threads", "threads", "bytes_moved", "seconds", "method", "buffer_bytes", "notes"]


def _positive_finite(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_small_budget_is_bounded_and_gives_plausible_figures():
    t0 = time.perf_counter()
    r = measure_memory_bandwidth(budget_s=0.3)
    wall = time.perf_counter() - t0
    assert wall < 4.0 and r.seconds <= wall, r  # 0.3 s asked; a loaded 2-core machine stretches it
    assert [f.name for f in dataclasses.fields(r)] == FIELDS
    assert _positive_finite(r.gbps_1_thread), r
    assert _positive_finite(r.gbps_all_threads), r
    # from a slow laptop's DRAM to a many-channel server (GB/s); outside it the probe read a cache
    assert 0.5 < r.gbps_1_thread < 2000 and 0.5 < r.gbps_all_threads < 5000
    assert 1 <= r.threads <= bandwidth.MAX_THREADS
    assert 0 < r.buffer_bytes <= bandwidth.MAX_TOTAL_BYTES
    assert r.bytes_moved >= r.buffer_bytes  # at least one full pass
    assert "bytes read counted" in r.method or "only the bytes read counted" in r.method
    assert isinstance(r.as_dict(), dict) and r.as_dict()["threads"] == r.threads


def test_more_threads_do_not_read_slower_than_one():
    ratios = []
    for _ in range(3):  # a neighbour's burst can dip one all-threads phase: keep the best try
        r = measure_memory_bandwidth(budget_s=0.4)
        assert r.gbps_1_thread and r.gbps_all_threads, r
        ratios.append(r.gbps_all_threads / r.gbps_1_thread)
        if ratios[-1] >= 0.8:
            break
    assert max(ratios) >= 0.8, ratios


def test_budget_is_clamped_and_bad_arguments_do_not_raise(monkeypatch):
    monkeypatch.setattr(bandwidth, "MAX_BUDGET_S", 0.3)  # the 2 s cap, scaled down for the test
    t0 = time.perf_counter()
    r = measure_memory_bandwidth(budget_s=60.0, threads=1)
    assert time.perf_counter() - t0 < 0.3 + 0.5
    assert r.threads == 1 and r.gbps_all_threads == r.gbps_1_thread
    assert any("outside" in n for n in r.notes)
    r = measure_memory_bandwidth(budget_s="soon", threads=-3)  # 1 s, then capped at 0.3 s  # type: ignore[arg-type]
    assert isinstance(r, BandwidthResult) and any("not a number" in n for n in r.notes)


def test_environment_failures_give_none_and_a_note(monkeypatch):
    def no_memory():
        return 1 << 20  # 1 MiB available: too little for a buffer

    monkeypatch.setattr(bandwidth, "_available_bytes", no_memory)
    r = measure_memory_bandwidth(budget_s=0.1)
    assert r.gbps_1_thread is None and r.gbps_all_threads is None and r.notes

    def broken(*_a, **_k):
        raise OSError("mmap refused")

    monkeypatch.setattr(bandwidth, "_available_bytes", lambda: None)
    monkeypatch.setattr(bandwidth._Buffers, "_map", broken)
    r = measure_memory_bandwidth(budget_s=0.1)
    assert r.gbps_1_thread is None and any("mmap refused" in n for n in r.notes)
    assert [f.name for f in dataclasses.fields(r)] == FIELDS


def test_copy_fallback_counts_bytes_read(monkeypatch):
    monkeypatch.setattr(
        bandwidth, "_scan_function", lambda: (None, "memmove copy (reads and writes; only the bytes read counted)")
    )
    r = measure_memory_bandwidth(budget_s=0.2, threads=2)
    assert _positive_finite(r.gbps_1_thread) and r.method.startswith("memmove")
    assert r.buffer_bytes <= bandwidth.MAX_TOTAL_BYTES // 2
