"""Apple silicon Macs: chip, CPU, unified memory and the GPU's wired-memory limit.

Facts come from ``sysctl`` (hw.memsize, hw.logicalcpu, machdep.cpu.brand_string,
iogpu.wired_limit_mb), ``system_profiler SPDisplaysDataType`` (GPU core count) and
``vm_stat`` (available memory). Every command runs with a timeout; the parsers are pure.

The GPU may wire only part of unified memory. Metal's ``recommendedMaxWorkingSetSize``
is, by default, 2/3 of memory on Macs with up to 36 GiB and 3/4 above (llama.cpp logs:
16 GiB -> 10922.67 MiB, 32 GiB -> 21845.34 MiB, 64 GiB -> 49152 MiB, 96 GiB -> 73728 MiB).
``sudo sysctl iogpu.wired_limit_mb=N`` replaces it; 0 means the default.
"""

from __future__ import annotations

import re
import subprocess
from typing import Callable

from xinf_planner.core.inventory import GPU
from xinf_planner.core.units import GIB, MIB

SYSCTL_KEYS = (
    "hw.memsize",
    "hw.ncpu",
    "hw.logicalcpu",
    "hw.physicalcpu",
    "machdep.cpu.brand_string",
    "iogpu.wired_limit_mb",
)
COMMAND_TIMEOUT_S = 10.0

Runner = Callable[[list[str]], str]


class ProbeCommandError(Exception):
    """A probing command is missing, failed to start, or timed out."""


def run_command(argv: list[str], timeout: float = COMMAND_TIMEOUT_S) -> str:
    """stdout of a command (even when it exits non-zero, as sysctl does for an unknown key)."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, errors="replace"
        )
    except FileNotFoundError:
        raise ProbeCommandError(f"{argv[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise ProbeCommandError(f"{argv[0]} did not answer within {timeout:g} s") from None
    except OSError as exc:
        raise ProbeCommandError(f"{argv[0]} could not run ({exc.strerror})") from None
    return done.stdout


def parse_sysctl(text: str) -> dict[str, str]:
    """``sysctl a b c`` output ("name: value" lines) as a dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and " " not in key.strip():
            out[key.strip()] = value.strip()
    return out


def parse_gpu_cores(text: str) -> int | None:
    """'Total Number of Cores: 76' from ``system_profiler SPDisplaysDataType``."""
    m = re.search(r"Total Number of Cores:\s*(\d+)", text)
    return int(m.group(1)) if m else None


def parse_vm_stat_available(text: str) -> int | None:
    """Free plus inactive pages, in bytes (psutil's 'available' on macOS)."""
    m = re.search(r"page size of (\d+) bytes", text)
    if not m:
        return None
    page = int(m.group(1))
    pages = {}
    for key, value in re.findall(r"^Pages (free|inactive):\s+(\d+)\.?\s*$", text, re.M):
        pages[key] = int(value)
    if "free" not in pages:
        return None
    return (pages["free"] + pages.get("inactive", 0)) * page


def default_wired_limit(memory_bytes: int) -> int:
    """macOS's default GPU working-set limit: 2/3 of memory up to 36 GiB, 3/4 above."""
    return memory_bytes * 2 // 3 if memory_bytes <= 36 * GIB else memory_bytes * 3 // 4


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def probe_apple(run: Runner = run_command) -> dict:
    """Host facts of a Mac: cpu_model, cpu_cores, memory, gpu_wired_limit_bytes, gpus, notes."""
    notes: list[str] = []
    facts: dict = {"notes": notes, "gpus": []}
    try:
        sysctl = parse_sysctl(run(["sysctl", *SYSCTL_KEYS]))
    except ProbeCommandError as exc:
        notes.append(f"no Apple GPU recorded: sysctl failed ({exc})")
        return facts
    memory = _int(sysctl.get("hw.memsize"))
    cores = _int(sysctl.get("hw.logicalcpu")) or _int(sysctl.get("hw.ncpu"))
    chip = sysctl.get("machdep.cpu.brand_string") or None
    if cores:
        facts["cpu_cores"] = cores
    if chip:
        facts["cpu_model"] = chip
    if not memory:
        notes.append("no Apple GPU recorded: sysctl did not report hw.memsize")
        return facts
    facts["memory_total_bytes"] = memory
    try:
        available = parse_vm_stat_available(run(["vm_stat"]))
    except ProbeCommandError as exc:
        available = None
        notes.append(f"memory_available_bytes left out: vm_stat failed ({exc})")
    if available is not None:
        facts["memory_available_bytes"] = min(available, memory)
    if not chip or not chip.startswith("Apple"):
        notes.append(f"no Apple GPU recorded: the CPU is {chip or 'unknown'}, not Apple silicon")
        return facts
    wired_mb = _int(sysctl.get("iogpu.wired_limit_mb"))
    if wired_mb:
        facts["gpu_wired_limit_bytes"] = min(wired_mb * MIB, memory)
        notes.append(f"GPU wired-memory limit set by iogpu.wired_limit_mb={wired_mb}")
    else:
        facts["gpu_wired_limit_bytes"] = default_wired_limit(memory)
        share = "2/3" if memory <= 36 * GIB else "3/4"
        notes.append(
            f"GPU wired-memory limit is macOS's default ({share} of memory; "
            f"raise it with sudo sysctl iogpu.wired_limit_mb=N)"
        )
    gpu = GPU(index=0, vendor="apple", name=chip, memory_total_bytes=memory, unified_memory=True)
    try:
        gpu.gpu_cores = parse_gpu_cores(run(["system_profiler", "SPDisplaysDataType"]))
    except ProbeCommandError as exc:
        notes.append(f"GPU core count left out: system_profiler failed ({exc})")
    facts["gpus"] = [gpu]
    return facts
