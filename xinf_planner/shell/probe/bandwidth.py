"""This host's memory read bandwidth, measured in about a second with the standard library.

What is measured: the C library's ``memchr`` scanning buffers for a byte they do not hold. A
scan for an absent byte reads every byte once and writes nothing, with the library's vector
loop (glibc: AVX2/EVEX on x86-64, NEON/SVE on Arm), so it is a read-only stream, like the
weight reads of a memory-bound decode step. GB/s counts **bytes read** (1e9 bytes per second);
nothing written is counted because nothing is written. Where ``memchr`` cannot be found the
probe falls back to ``ctypes.memmove`` (a copy) and counts only the bytes it **reads** (the
source), which understates the read bandwidth (the copy also writes as many bytes); the
``method`` string says which ran.

* One thread scans every buffer in turn (the whole working set, larger than a last-level
  cache); then ``threads`` threads each scan their own buffer at the same time. ctypes releases
  the GIL for the length of a foreign call, so the threads really run in parallel. Each figure
  is the best of the passes that fitted in the budget.
* Bounded: the working set is at most 512 MiB, less where the host has little available memory
  (an eighth of MemAvailable); the time is about ``budget_s`` (clamped to 0.05..2 s): the clock
  is read between passes, a slow first touch of the buffers shrinks them, and the length of a
  pass is sized from the first one so that a slow machine still stops in time.
* Never raises for an environment problem: a failed step gives ``None`` figures and a note.
  The result always has the same fields.

Caveat: a host whose last-level cache is not small against the working set (large stacked
caches) reads partly from cache; a note says so when /sys shows such a cache.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import mmap
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

MIB = 1 << 20
MAX_TOTAL_BYTES = 512 * MIB
MIN_BUFFER_BYTES = 4 * MIB
MAX_THREADS = 8
MAX_BUDGET_S = 2.0
MIN_BUDGET_S = 0.05
_CHUNK = 16 * MIB  # first touch is done in chunks so that the clock can be read between them
_FILL = 1  # the buffers hold this byte; the scan looks for _ABSENT
_ABSENT = 0


@dataclass(frozen=True)
class BandwidthResult:
    """Read bandwidth in GB/s (1e9 bytes/s), None where it could not be measured."""

    gbps_1_thread: float | None
    gbps_all_threads: float | None
    threads: int  # threads of the all-threads figure (1 when only one could run)
    bytes_moved: int  # bytes read in the timed passes, both figures together
    seconds: float  # wall time of the whole probe, setup included
    method: str
    buffer_bytes: int = 0  # working set (all buffers together)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _available_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        pages, size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and size > 0:
            return pages * size
    except (AttributeError, ValueError, OSError):
        pass
    return None


def _last_level_cache_bytes() -> int | None:
    """Largest cache of cpu0 per /sys (Linux), None elsewhere."""
    best = None
    try:
        for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
            text = (index / "size").read_text().strip().upper()
            scale = {"K": 1024, "M": MIB, "G": 1024 * MIB}.get(text[-1:], 1)
            value = int(text.rstrip("KMG")) * scale
            best = value if best is None else max(best, value)
    except (OSError, ValueError):
        return None
    return best


def _scan_function():
    """(scan(address, nbytes), method): a read-only memchr scan, else a memmove copy."""
    names = [None] if sys.platform != "win32" else []
    found = ctypes.util.find_library("c")
    if found:
        names.append(found)
    if sys.platform == "win32":
        names.append("msvcrt")
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            memchr = lib.memchr
        except (OSError, AttributeError):
            continue
        memchr.restype = ctypes.c_void_p
        memchr.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]

        def scan(address: int, nbytes: int, _memchr=memchr) -> bool:
            return _memchr(address, _ABSENT, nbytes) is None  # True: every byte was read

        return scan, "memchr read scan (read-only; bytes read counted)"
    return None, "memmove copy (reads and writes; only the bytes read counted)"


class _Buffers:
    """Anonymous mappings, one per thread (a copy target beside each source for the memmove
    fallback). Their pages are backed on first touch, not when mapped."""

    def __init__(self, per_thread: int, threads: int, with_targets: bool):
        self.maps: list[mmap.mmap] = []
        self.sources = [self._map(per_thread) for _ in range(threads)]
        self.targets = [self._map(per_thread) for _ in range(threads)] if with_targets else []
        self.touched = [0] * threads  # bytes of each source (and target) written so far

    def _map(self, size: int) -> int:
        m = mmap.mmap(-1, size)
        self.maps.append(m)
        if hasattr(m, "madvise") and hasattr(mmap, "MADV_HUGEPAGE"):
            try:
                m.madvise(mmap.MADV_HUGEPAGE)
            except OSError:
                pass
        view = ctypes.c_char.from_buffer(m)
        address = ctypes.addressof(view)
        del view  # the mapping stays; only the export is released, so that close() can run later
        return address

    def touch(self, i: int, chunk: int, per_thread: int, deadline: float) -> None:
        """Write buffer ``i`` chunk by chunk until it is all written or the deadline passes."""
        for offset in range(0, per_thread, chunk):
            length = min(chunk, per_thread - offset)
            ctypes.memset(self.sources[i] + offset, _FILL, length)
            if self.targets:
                ctypes.memset(self.targets[i] + offset, 0, length)
            self.touched[i] = offset + length
            if time.perf_counter() > deadline:
                return

    def close(self) -> None:
        for m in self.maps:
            try:
                m.close()
            except (BufferError, ValueError, OSError):  # pragma: no cover
                pass
        self.maps = []


_LEAKED: list[_Buffers] = []  # buffers a stuck worker thread may still read: never unmapped


def measure_memory_bandwidth(budget_s: float = 1.0, threads: int | None = None) -> BandwidthResult:
    """Measure this host's memory read bandwidth with 1 thread and with ``threads`` threads
    (default: the usable cores, at most 8) in about ``budget_s`` seconds (at most 2 s)."""
    start = time.perf_counter()
    try:
        return _probe(budget_s, threads, start)
    except Exception as exc:  # an environment this probe did not foresee: figures unknown, no error
        return BandwidthResult(
            gbps_1_thread=None,
            gbps_all_threads=None,
            threads=1,
            bytes_moved=0,
            seconds=time.perf_counter() - start,
            method="none",
            notes=[f"bandwidth probe failed: {exc!r}"],
        )


def _probe(budget_s, threads, start: float) -> BandwidthResult:
    notes: list[str] = []
    try:
        budget = float(budget_s)
        if not math.isfinite(budget):
            raise ValueError
    except (TypeError, ValueError):
        notes.append(f"budget_s {budget_s!r} is not a number: 1.0 s used")
        budget = 1.0
    if not MIN_BUDGET_S <= budget <= MAX_BUDGET_S:
        clamped = min(MAX_BUDGET_S, max(MIN_BUDGET_S, budget))
        notes.append(f"budget_s {budget:g} outside {MIN_BUDGET_S:g}..{MAX_BUDGET_S:g} s: {clamped:g} s used")
        budget = clamped
    deadline = start + 0.9 * budget  # the rest: unmapping the buffers, joining the threads
    cores = _usable_cores()
    n = threads if isinstance(threads, int) and threads >= 1 else min(cores, MAX_THREADS)
    if isinstance(threads, int) and threads > MAX_THREADS * 8:
        notes.append(f"threads {threads} capped at {MAX_THREADS * 8}")
        n = MAX_THREADS * 8
    scan, method = _scan_function()

    def result(g1=None, gn=None, moved=0, buffer_bytes=0, used_threads=n) -> BandwidthResult:
        return BandwidthResult(
            gbps_1_thread=g1,
            gbps_all_threads=gn,
            threads=used_threads,
            bytes_moved=int(moved),
            seconds=time.perf_counter() - start,
            method=method,
            buffer_bytes=int(buffer_bytes),
            notes=notes,
        )

    total = MAX_TOTAL_BYTES
    available = _available_bytes()
    if available is not None:
        total = min(total, available // 8)
    elif sys.platform.startswith("linux"):
        notes.append("available memory unknown: 256 MiB working set")
        total = 256 * MIB
    if scan is None:
        total //= 2  # a copy needs a target as large as its source
    per_thread = (total // n) // MIB * MIB
    if per_thread < MIN_BUFFER_BYTES:
        if total < MIN_BUFFER_BYTES:
            notes.append(f"too little available memory for the probe ({(available or 0) // MIB} MiB)")
            return result()
        n = max(1, total // MIN_BUFFER_BYTES)
        per_thread = MIN_BUFFER_BYTES
        notes.append(f"little available memory: {n} thread(s) of {MIN_BUFFER_BYTES // MIB} MiB")

    # Map the buffers (lazily), then write every byte: a never-written page reads as the shared
    # zero page, from cache. The threads touch their own buffers at once (the page faults are
    # most of the setup time), chunk by chunk, until done or 35 % of the budget has gone.
    try:
        bufs = _Buffers(per_thread, n, with_targets=scan is None)
    except (MemoryError, OSError, ValueError, OverflowError) as exc:
        notes.append(f"could not map {n} x {per_thread // MIB} MiB: {exc!r}")
        return result()
    try:
        return _measure(bufs, scan, n, cores, per_thread, budget, start, deadline, notes, result)
    finally:
        if any(t.is_alive() for t in threading.enumerate() if t.name.startswith("bw-probe-")):
            _LEAKED.append(bufs)  # pragma: no cover - a worker stuck in a foreign call
        else:
            bufs.close()


def _measure(
    bufs: _Buffers,
    scan,
    n: int,
    cores: int,
    per_thread: int,
    budget: float,
    start: float,
    deadline: float,
    notes: list[str],
    result,
) -> BandwidthResult:
    touch_deadline = start + 0.35 * budget
    toucher = [
        threading.Thread(
            target=bufs.touch, args=(i, _CHUNK, per_thread, touch_deadline), daemon=True, name=f"bw-probe-touch-{i}"
        )
        for i in range(n)
    ]
    try:
        for t in toucher:
            t.start()
    except RuntimeError:  # cannot start threads: touch in this one
        for i in range(n):
            if not bufs.touched[i]:
                bufs.touch(i, _CHUNK, per_thread, touch_deadline)
    for t in toucher:
        if t.ident is not None:
            t.join()
    length = min(bufs.touched)
    if length < per_thread:
        notes.append(f"slow first touch: buffers cut to {length // MIB} MiB per thread to keep the budget")
    if length <= 0:
        return result()
    working_set = length * n
    llc = _last_level_cache_bytes()
    if llc is not None and working_set < 4 * llc:
        notes.append(
            f"working set {working_set // MIB} MiB is under 4x the {llc // MIB} MiB last-level "
            f"cache: part of the reads may come from cache"
        )

    def one_pass(i: int, offset: int, nbytes: int) -> None:
        if scan is not None:
            scan(bufs.sources[i] + offset, nbytes)
        else:
            ctypes.memmove(bufs.targets[i] + offset, bufs.sources[i] + offset, nbytes)

    # The first touch gives a lower bound of the read rate (page faults and writes are slower
    # than reads): a pass is sized from it, then from the measured rate, to about a tenth of the
    # budget. A pass shorter than the buffers starts where the last one ended, so that every
    # pass reads bytes the others have pushed out of the caches.
    touch_rate = working_set / max(time.perf_counter() - start, 1e-6)

    def pass_length(rate: float) -> int:
        per_buffer = int(rate * budget / 10 / n) // MIB * MIB
        return max(min(length, _CHUNK), min(length, per_buffer))

    moved = 0
    scan_len = pass_length(touch_rate)
    offset = 0
    now = time.perf_counter()
    phase_end = now + (deadline - now) / 2 if n > 1 else deadline
    best1 = None
    while True:
        if offset + scan_len > length:
            offset = 0  # no short tail pass: a whole window, from the start
        nbytes = scan_len
        t0 = time.perf_counter()
        for i in range(n):
            one_pass(i, offset, nbytes)
        dt = time.perf_counter() - t0
        moved += nbytes * n
        offset = (offset + nbytes) % length
        if dt > 0:
            rate = nbytes * n / dt
            best1 = rate if best1 is None else max(best1, rate)
            scan_len = pass_length(rate)
        if time.perf_counter() + dt > phase_end:
            break
    gbps1 = best1 / 1e9 if best1 else None

    gbpsn = None
    if n == 1:
        gbpsn = gbps1
    elif time.perf_counter() < deadline:
        # sized as if n threads read no faster than one: a pass stays within a tenth of the budget
        per_thread_len = pass_length(best1) if best1 else min(length, _CHUNK)
        gbpsn, moved_n, failure = _parallel_passes(one_pass, n, length, per_thread_len, deadline)
        moved += moved_n
        if failure:
            notes.append(failure)
    else:
        notes.append("no time left for the all-threads passes")
    if n > cores:
        notes.append(f"{n} threads on {cores} usable cores")
    return result(_finite(gbps1), _finite(gbpsn), moved, working_set, n)


def _parallel_passes(
    one_pass, n: int, length: int, nbytes: int, deadline: float
) -> tuple[float | None, int, str | None]:
    """Passes in which ``n`` workers each scan ``nbytes`` of their own buffer (``length`` bytes)
    at once, the window moving on each pass; (best GB/s, bytes read, note)."""
    go = threading.Barrier(n + 1)
    done = threading.Barrier(n + 1)
    stop = threading.Event()
    window = [0, min(nbytes, length)]  # offset, bytes: written by the main thread between passes
    errors: list[str] = []

    def worker(i: int) -> None:
        try:
            while True:
                go.wait()
                if stop.is_set():
                    return
                one_pass(i, window[0], window[1])
                done.wait()
        except threading.BrokenBarrierError:
            return
        except Exception as exc:  # pragma: no cover - a foreign call failing in a thread
            errors.append(repr(exc))
            go.abort()
            done.abort()

    workers = [threading.Thread(target=worker, args=(i,), daemon=True, name=f"bw-probe-{i}") for i in range(n)]
    started = []
    best = None
    moved = 0
    try:
        for w in workers:
            w.start()
            started.append(w)
        while True:
            t0 = time.perf_counter()  # before the release: a late main thread only lowers the rate
            go.wait(timeout=MAX_BUDGET_S)
            done.wait(timeout=MAX_BUDGET_S * 2)
            dt = time.perf_counter() - t0
            moved += window[1] * n
            if dt > 0:
                rate = window[1] * n / dt
                best = rate if best is None else max(best, rate)
            offset = window[0] + window[1]
            window[0] = offset if offset + window[1] <= length else 0
            if time.perf_counter() + dt > deadline:
                break
    except threading.BrokenBarrierError:
        pass
    except RuntimeError as exc:  # cannot start a thread
        errors.append(f"could not start {n} threads: {exc}")
    finally:
        stop.set()
        try:
            go.wait(timeout=0.2)
        except threading.BrokenBarrierError:
            pass
        go.abort()
        done.abort()
        for w in started:
            w.join(timeout=0.5)
    if errors:
        return None, moved, f"all-threads pass failed: {errors[0]}"
    return (best / 1e9 if best else None), moved, None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) and value > 0 else None


if __name__ == "__main__":  # pragma: no cover - a manual check: python -m xinf_planner.shell.probe.bandwidth
    import json

    print(json.dumps(measure_memory_bandwidth(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0).as_dict(), indent=2))
