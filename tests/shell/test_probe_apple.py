"""The Apple silicon probe on recorded sysctl / system_profiler / vm_stat output.

The recordings and where they come from: tests/support/fixtures/sysctl/README.md.
"""

from __future__ import annotations

import pytest
from support.paths import FIXTURES as _FIXTURES

from xinf_planner.core.inventory import Inventory
from xinf_planner.shell.probe.apple import ProbeCommandError, probe_apple, run_command
from xinf_planner.shell.probe.local import probe_local

FIXTURES = _FIXTURES / "sysctl"
GIB = 1 << 30
FILES = {"sysctl": "sysctl.txt", "system_profiler": "system_profiler.txt", "vm_stat": "vm_stat.txt"}


def recorded(mac: str, replace: dict | None = None, fail: dict | None = None):
    """A command runner that answers from the recording of one Mac."""

    def run(argv):
        tool = argv[0]
        if fail and tool in fail:
            raise ProbeCommandError(fail[tool])
        text = (FIXTURES / mac / FILES[tool]).read_text()
        for old, new in (replace or {}).get(tool, {}).items():
            text = text.replace(old, new)
        return text

    return run


def test_m2_ultra_192gb():
    facts = probe_apple(recorded("m2-ultra-192gb"))
    assert facts["cpu_model"] == "Apple M2 Ultra" and facts["cpu_cores"] == 24
    assert facts["memory_total_bytes"] == 192 * GIB
    assert facts["gpu_wired_limit_bytes"] == 144 * GIB  # 3/4, like 49152 MiB of 64 GiB
    (gpu,) = facts["gpus"]
    assert (gpu.vendor, gpu.name, gpu.unified_memory) == ("apple", "Apple M2 Ultra", True)
    assert gpu.memory_total_bytes == 192 * GIB and gpu.gpu_cores == 76
    # vm_stat: (free 9123456 + inactive 1422087) pages of 16 KiB
    assert facts["memory_available_bytes"] == (9123456 + 1422087) * 16384


def test_m3_max_36gb_gets_two_thirds():
    facts = probe_apple(recorded("m3-max-36gb"))
    assert facts["memory_total_bytes"] == 38654705664 == 36 * GIB
    assert facts["gpu_wired_limit_bytes"] == 24 * GIB
    assert facts["gpus"][0].gpu_cores == 30 and facts["cpu_cores"] == 14
    assert any("2/3" in n for n in facts["notes"])


def test_a_raised_wired_limit_is_used():
    run = recorded("m2-ultra-192gb", {"sysctl": {"iogpu.wired_limit_mb: 0": "iogpu.wired_limit_mb: 184320"}})
    facts = probe_apple(run)
    assert facts["gpu_wired_limit_bytes"] == 180 * GIB
    assert any("iogpu.wired_limit_mb=184320" in n for n in facts["notes"])


def test_older_macos_without_the_iogpu_key():
    run = recorded("m3-max-36gb", {"sysctl": {"iogpu.wired_limit_mb: 0\n": ""}})
    assert probe_apple(run)["gpu_wired_limit_bytes"] == 24 * GIB


def test_intel_mac_has_no_apple_gpu():
    run = recorded("m3-max-36gb", {"sysctl": {"Apple M3 Max": "Intel(R) Core(TM) i9-9980HK CPU @ 2.40GHz"}})
    facts = probe_apple(run)
    assert facts["gpus"] == [] and "gpu_wired_limit_bytes" not in facts
    assert facts["memory_total_bytes"] == 36 * GIB
    assert any("not Apple silicon" in n for n in facts["notes"])


def test_failing_commands_leave_fields_out_with_notes():
    facts = probe_apple(
        recorded(
            "m2-ultra-192gb",
            fail={"system_profiler": "system_profiler did not answer within 10 s", "vm_stat": "vm_stat not found"},
        )
    )
    assert facts["gpus"][0].gpu_cores is None and "memory_available_bytes" not in facts
    assert any("within 10 s" in n for n in facts["notes"]) and any("vm_stat" in n for n in facts["notes"])
    none = probe_apple(recorded("m2-ultra-192gb", fail={"sysctl": "sysctl not found"}))
    assert none["gpus"] == [] and "sysctl failed" in none["notes"][0]


def test_probe_local_on_a_recorded_mac_is_a_valid_inventory():
    inv = probe_local("studio", system="darwin", machine="arm64", run=recorded("m2-ultra-192gb"))
    host = Inventory.from_dict(inv.to_dict()).hosts[0]
    assert host.is_apple_silicon and host.gpu_wired_limit_bytes == 144 * GIB
    assert host.gpus[0].unified_memory and host.topology is None


def test_run_command_times_out_and_reports_missing_tools():
    with pytest.raises(ProbeCommandError, match="within 0.2 s"):
        run_command(["sleep", "5"], timeout=0.2)
    with pytest.raises(ProbeCommandError, match="not found"):
        run_command(["surely-no-such-command-xinf"])
    assert run_command(["sh", "-c", "echo hw.memsize: 1; exit 1"]) == "hw.memsize: 1\n"
