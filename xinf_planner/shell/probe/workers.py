"""This worker's inventory host, for the extension's ``worker_metadata()`` hook.

The same probes as ``xinf-plan inspect`` (``probe_local``: NVML, sysctl, /proc), run in a
thread with a time limit, because Xinference calls the hook inside the worker's actor loop at
registration and whenever the API asks. It never raises: a probe that fails or hangs gives
a host without GPUs and a note saying why, so the worker still registers.

The host's memory bandwidth, which ``inspect`` measures in about a second, is measured once
per worker process, in a background thread started by the first call (the hook must not
block for a second): until it is done the host carries a note instead, and every later answer
carries the figure. ``XINF_PLAN_MEASURE_BANDWIDTH=0`` in the worker's environment turns the
measurement off (as ``inspect --no-bandwidth``).
"""

from __future__ import annotations

import os
import platform
import socket
import threading
import time

from xinf_planner import __version__
from xinf_planner.core.inventory import Host, Inventory
from xinf_planner.core.workers import worker_metadata_document

PROBE_TIMEOUT_S = 10.0
BANDWIDTH_ENV = "XINF_PLAN_MEASURE_BANDWIDTH"
MEASURING = "memory bandwidth: being measured in the background (about a second); the next answer has it"


class _Bandwidth:
    """The one measurement of this process (started on first use, kept)."""

    lock = threading.Lock()
    thread: threading.Thread | None = None
    result = None


def _measured(measure):
    """The BandwidthResult once measured, else None (the measurement then runs)."""
    with _Bandwidth.lock:
        if _Bandwidth.result is not None:
            return _Bandwidth.result
        if _Bandwidth.thread is None:

            def run():
                try:
                    result = measure()
                except Exception:  # noqa: BLE001 - no figure; the probe's own note says so
                    result = None
                with _Bandwidth.lock:
                    _Bandwidth.result = result if result is not None else False

            _Bandwidth.thread = threading.Thread(target=run, name="xinf-plan-bandwidth", daemon=True)
            _Bandwidth.thread.start()
    return None


def _bandwidth_wanted(bandwidth: bool | None) -> bool:
    if bandwidth is not None:
        return bandwidth
    return os.environ.get(BANDWIDTH_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def worker_metadata(
    nvml=None, timeout_s: float = PROBE_TIMEOUT_S, probe=None, bandwidth: bool | None = None, measure=None
) -> dict:
    """The metadata document of ``core/workers.py`` for this machine. ``nvml`` replaces
    pynvml (the tests' replay); ``probe`` replaces ``probe_local`` (tests); ``bandwidth``
    False skips the memory bandwidth (default: on unless $XINF_PLAN_MEASURE_BANDWIDTH=0);
    ``measure`` replaces ``measure_memory_bandwidth`` (tests)."""
    result = None
    pending = False
    if _bandwidth_wanted(bandwidth):
        if measure is None:
            from xinf_planner.shell.probe.bandwidth import measure_memory_bandwidth as measure
        result = _measured(measure)
        pending = result is None
    start = time.monotonic()
    box: dict = {}

    def run():
        try:
            if probe is not None:
                box["inventory"] = probe()
            else:
                from xinf_planner.shell.probe import probe_local

                known = result if result else None
                box["inventory"] = probe_local(nvml=nvml, measure_bandwidth=(lambda: known) if known else None)
        except BaseException as exc:  # noqa: BLE001 - the worker must register whatever happens
            box["error"] = f"{type(exc).__name__}: {exc}"

    thread = threading.Thread(target=run, name="xinf-plan-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    elapsed = time.monotonic() - start
    if thread.is_alive():
        host = _fallback_host(f"no GPUs reported: the hardware probe did not finish within {timeout_s:.0f} s")
    elif "error" in box:
        host = _fallback_host(f"no GPUs reported: the hardware probe failed ({box['error']})")
    else:
        host = _checked(box["inventory"])
        if pending:
            host.setdefault("notes", []).append(MEASURING)
    return worker_metadata_document(host, elapsed, __version__)


def _checked(inventory) -> dict:
    """The probed host as a document, checked like any inventory (a bad answer becomes the
    fallback host with the reason)."""
    try:
        inv = inventory if isinstance(inventory, Inventory) else Inventory.from_dict(inventory)
        doc = inv.to_dict()
        Inventory.from_dict(doc, "probed inventory")
        return doc["hosts"][0]
    except Exception as exc:  # noqa: BLE001
        return _fallback_host(f"no GPUs reported: the probe's answer is not a valid inventory ({exc})")


def _fallback_host(note: str) -> dict:
    machine = platform.machine().lower()
    arch = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "arm64", "aarch64": "aarch64"}.get(machine, "x86_64")
    system = platform.system().lower()
    host = Host(
        name=socket.gethostname() or "localhost",
        os=system if system in ("linux", "darwin", "windows") else "linux",
        arch=arch,
        cpu_cores=os.cpu_count() or 1,
        memory_total_bytes=1,
        gpus=[],
        notes=[note, "memory_total_bytes unknown: recorded as 1 byte"],
    )
    return Inventory(hosts=[host]).to_dict()["hosts"][0]
