"""CPU and system memory of a Linux host, from /proc and the scheduler.

The parsers are pure (text in, values out); ``probe_linux_cpu`` reads the files.
macOS answers the same questions through sysctl: see ``apple.py``.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from xinf_planner.core.units import KIB


def parse_cpuinfo_model(text: str) -> str | None:
    """The CPU's model name from /proc/cpuinfo (x86 "model name"; Arm "Model" or "Hardware")."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if value and key in ("model name", "model", "hardware", "cpu model") and key not in found:
            found[key] = value
    for key in ("model name", "cpu model", "model", "hardware"):
        # on x86 "model" is a number, not a name
        if key in found and not found[key].isdigit():
            return found[key]
    return None


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as bytes per field ("MemTotal" -> 25276510208)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        parts = value.split()
        if not parts or not parts[0].isdigit():
            continue
        scale = KIB if len(parts) > 1 and parts[1].lower() == "kb" else 1
        out[key.strip()] = int(parts[0]) * scale
    return out


def usable_cpu_count() -> int | None:
    """Logical CPUs this process may run on (the affinity mask), else all of them."""
    try:
        return len(os.sched_getaffinity(0)) or None
    except (AttributeError, OSError):
        return os.cpu_count()


def probe_linux_cpu(proc: str | os.PathLike = "/proc") -> dict:
    """cpu_model, cpu_cores, memory_total_bytes, memory_available_bytes and notes for this host."""
    root = Path(proc)
    notes: list[str] = []
    facts: dict = {"notes": notes}
    try:
        facts["cpu_model"] = parse_cpuinfo_model((root / "cpuinfo").read_text(errors="replace"))
    except OSError as exc:
        notes.append(f"CPU model unknown: cannot read {root / 'cpuinfo'} ({exc.strerror})")
    if not facts.get("cpu_model"):
        facts["cpu_model"] = platform.processor() or None
    cores = usable_cpu_count()
    total_cores = os.cpu_count()
    facts["cpu_cores"] = cores or total_cores or 1
    if cores and total_cores and cores < total_cores:
        notes.append(
            f"this process may use {cores} of the machine's {total_cores} logical CPUs "
            f"(CPU affinity); cpu_cores counts the usable ones"
        )
    try:
        mem = parse_meminfo((root / "meminfo").read_text(errors="replace"))
    except OSError as exc:
        mem = {}
        notes.append(f"memory unknown: cannot read {root / 'meminfo'} ({exc.strerror})")
    if "MemTotal" in mem:
        facts["memory_total_bytes"] = mem["MemTotal"]
    else:
        pages = _sysconf("SC_PHYS_PAGES")
        page_size = _sysconf("SC_PAGE_SIZE")
        if pages and page_size:
            facts["memory_total_bytes"] = pages * page_size
    if "MemAvailable" in mem:
        facts["memory_available_bytes"] = mem["MemAvailable"]
    return facts


def _sysconf(name: str) -> int | None:
    try:
        value = os.sysconf(name)
    except (AttributeError, ValueError, OSError):
        return None
    return value if value > 0 else None
