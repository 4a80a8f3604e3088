"""This machine's inventory: the OS-specific probes joined into one ``Host``."""

from __future__ import annotations

import platform
import socket

from xinf_planner.core.inventory import Host, Inventory
from xinf_planner.shell.probe.apple import probe_apple, run_command
from xinf_planner.shell.probe.cpu import probe_linux_cpu
from xinf_planner.shell.probe.nvml import probe_nvidia

_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "arm64": "arm64", "aarch64": "aarch64"}


def probe_local(
    name: str | None = None,
    worker_address: str | None = None,
    *,
    nvml=None,
    system: str | None = None,
    machine: str | None = None,
    run=run_command,
    proc: str = "/proc",
    sysfs: str = "/sys",
    bandwidth: float | None = None,
    measure_bandwidth=None,
) -> Inventory:
    """Probe this host. The keyword arguments replace the live sources (tests, recorded machines).

    ``bandwidth``: the host's memory bandwidth stated by hand (GB/s); else ``measure_bandwidth``
    (a callable returning a ``BandwidthResult``, e.g. ``bandwidth.measure_memory_bandwidth``)
    measures it; neither: none is recorded."""
    system = (system or platform.system()).lower()
    machine = (machine or platform.machine()).lower()
    notes: list[str] = []
    if system == "darwin":
        facts = probe_apple(run)
    else:
        facts = probe_linux_cpu(proc)
        if system in ("linux", "windows") or nvml is not None:
            nv = probe_nvidia(nvml, sysfs=sysfs)
            facts["gpus"] = nv.gpus
            facts["topology"] = nv.topology
            facts["driver_version"] = nv.driver_version
            facts["cuda_version"] = nv.cuda_version
            facts["notes"] = facts["notes"] + nv.notes
    notes.extend(facts.pop("notes", []))
    arch = _ARCH.get(machine)
    if arch is None:
        notes.append(f"unknown CPU architecture {machine!r}; recorded as x86_64")
        arch = "x86_64"
    os_name = system if system in ("linux", "darwin", "windows") else "linux"
    host = Host(
        name=name or socket.gethostname() or "localhost",
        worker_address=worker_address,
        os=os_name,
        arch=arch,
        cpu_cores=facts.pop("cpu_cores", None) or 1,
        memory_total_bytes=facts.pop("memory_total_bytes", None) or 1,
        gpus=facts.pop("gpus", None) or [],
        notes=notes,
        **{k: v for k, v in facts.items() if v is not None},
    )
    if host.memory_total_bytes == 1:
        notes.append("memory_total_bytes unknown: recorded as 1 byte")
    if bandwidth is not None:
        host.memory_bandwidth_measured_gbps = float(bandwidth)
        notes.append(f"memory bandwidth {bandwidth:g} GB/s stated by hand (--memory-bandwidth)")
    elif measure_bandwidth is not None:
        result = measure_bandwidth()
        best = max(result.gbps_all_threads or 0.0, result.gbps_1_thread or 0.0)  # more threads can idle
        if best:
            host.memory_bandwidth_measured_gbps = round(best, 1)
            notes.append(
                f"memory bandwidth measured: {result.gbps_all_threads or 0:.1f} GB/s read with {result.threads} "
                f"thread(s), {result.gbps_1_thread or 0:.1f} with one ({result.method}, {result.seconds:.2f} s); "
                f"{best:.1f} recorded"
            )
        else:
            notes.append("memory bandwidth not measured: " + ("; ".join(result.notes) or "the probe failed"))
        notes.extend(n for n in result.notes if best)
    return Inventory(hosts=[host])
