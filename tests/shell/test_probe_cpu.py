"""The CPU probe, for real on this machine, and its parsers on recorded /proc text."""

from __future__ import annotations

import os
import re
from pathlib import Path

from xinf_planner.shell.probe.cpu import (
    parse_cpuinfo_model,
    parse_meminfo,
    probe_linux_cpu,
)


def _meminfo_kib(field: str) -> int:
    text = Path("/proc/meminfo").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB$", text, re.M).group(1))


def test_this_machine():
    facts = probe_linux_cpu()
    assert facts["cpu_cores"] == len(os.sched_getaffinity(0))
    assert facts["cpu_cores"] <= os.cpu_count()
    assert facts["memory_total_bytes"] == _meminfo_kib("MemTotal") * 1024
    # MemAvailable moves between two reads; it must be a plausible share of the total
    assert 0 < facts["memory_available_bytes"] <= facts["memory_total_bytes"]
    first_model = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    if first_model:
        assert facts["cpu_model"] == first_model.group(1).strip()


def test_unreadable_proc_gives_notes_not_errors(tmp_path):
    facts = probe_linux_cpu(tmp_path)
    assert facts["cpu_cores"] >= 1
    assert facts["memory_total_bytes"] > 0  # from sysconf, the fallback
    assert "memory_available_bytes" not in facts
    assert any("meminfo" in n for n in facts["notes"]) and any("cpuinfo" in n for n in facts["notes"])


# From an AWS Graviton2 (m6g) instance: /proc/cpuinfo on Arm has no "model name"
GRAVITON = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1
"""

# A Raspberry Pi 4 adds a "Model" line at the end of /proc/cpuinfo
RASPBERRY = GRAVITON + "\nHardware\t: BCM2835\nRevision\t: c03114\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"

X86 = (
    "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n"
    "model name\t: AMD EPYC 7763 64-Core Processor\n"
)


def test_cpuinfo_model_names():
    assert parse_cpuinfo_model(X86) == "AMD EPYC 7763 64-Core Processor"
    assert parse_cpuinfo_model(RASPBERRY) == "Raspberry Pi 4 Model B Rev 1.4"
    assert parse_cpuinfo_model(GRAVITON) is None
    assert parse_cpuinfo_model("model\t\t: 143\n") is None  # x86's model number is not a name


def test_meminfo_units():
    mem = parse_meminfo("MemTotal:       65536000 kB\nMemAvailable:   1024 kB\nHugePages_Total:       4\n")
    assert mem == {"MemTotal": 65536000 * 1024, "MemAvailable": 1024 * 1024, "HugePages_Total": 4}
