"""The NVML probe on NVML answers of real machines, replayed through tests/support/fake_nvml.py.

Expected values come from the published nvidia-smi output each fixture cites (its
``source``), not from the probe: e.g. 81559 MiB for an H100 80GB HBM3, NV18 between
every pair of GPUs on NVSwitch, PIX/NODE on a PCIe box with two switches.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from support.fake_nvml import error, load_fixture, replay  # noqa: E402
from support.paths import ROOT  # noqa: E402

from xinf_planner.core.inventory import Inventory  # noqa: E402
from xinf_planner.shell.probe.local import probe_local  # noqa: E402
from xinf_planner.shell.probe.nvml import probe_nvidia  # noqa: E402

MIB = 1 << 20
NO_SYSFS = "/nonexistent-sysfs"


def probe(name, overrides=None, sysfs=NO_SYSFS):
    return probe_nvidia(replay(name, overrides), sysfs=sysfs)


def test_h100_sxm_on_nvswitch():
    r = probe("h100-sxm-8x")
    assert [g.index for g in r.gpus] == list(range(8))
    assert {g.name for g in r.gpus} == {"NVIDIA H100 80GB HBM3"}
    assert {g.memory_total_bytes for g in r.gpus} == {81559 * MIB} == {85520809984}
    assert {g.compute_capability for g in r.gpus} == {"9.0"}
    assert [g.numa_node for g in r.gpus] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert r.gpus[3].pci_bus_id == "00000000:5D:00.0"
    assert r.gpus[0].uuid.startswith("GPU-") and len(r.gpus[0].uuid) == 40
    assert {g.mig_mode for g in r.gpus} == {False}
    assert [g.compute_processes for g in r.gpus] == [1, 0, 0, 0, 0, 0, 0, 0]
    assert r.gpus[0].memory_used_bytes == 524 * MIB and r.gpus[1].memory_used_bytes == 0
    assert not any(g.unified_memory for g in r.gpus)
    assert (r.driver_version, r.cuda_version) == ("535.104.05", "12.2")
    assert all(r.topology[a][b] == ("X" if a == b else "NV18") for a in range(8) for b in range(8))
    assert r.notes == []


def test_rtx4090_pcie_two_switches():
    r = probe("rtx4090-pcie-4x")
    assert {g.memory_total_bytes for g in r.gpus} == {24564 * MIB} == {25757220864}
    assert {g.compute_capability for g in r.gpus} == {"8.9"}
    assert r.topology == [
        ["X", "PIX", "NODE", "NODE"],
        ["PIX", "X", "NODE", "NODE"],
        ["NODE", "NODE", "X", "PIX"],
        ["NODE", "NODE", "PIX", "X"],
    ]
    assert {g.mig_mode for g in r.gpus} == {None}  # GeForce: no MIG, and that is no news
    assert r.cuda_version == "12.4" and r.notes == []


def test_rtx3090_nvlink_bridge_and_numa_from_sysfs(tmp_path):
    for bus, node in (("0000:08:00.0", "0\n"), ("0000:09:00.0", "-1\n")):
        d = tmp_path / "bus" / "pci" / "devices" / bus
        d.mkdir(parents=True)
        (d / "numa_node").write_text(node)
    r = probe("rtx3090-nvlink-2x", sysfs=str(tmp_path))
    assert r.topology == [["X", "NV4"], ["NV4", "X"]]
    assert {g.memory_total_bytes for g in r.gpus} == {24576 * MIB} == {25769803776}
    assert [g.numa_node for g in r.gpus] == [0, -1]
    assert r.notes == []


def test_t4_single_gpu_without_numa():
    r = probe("t4-1x")
    (g,) = r.gpus
    assert (g.name, g.memory_total_bytes, g.compute_capability) == ("Tesla T4", 16106127360, "7.5")
    assert g.pci_bus_id == "00000000:00:04.0" and g.numa_node is None
    assert r.topology == [["X"]]
    assert any("GPU 0: numa_node left out" in n for n in r.notes)


@pytest.mark.parametrize("name", ["h100-sxm-8x", "rtx4090-pcie-4x", "rtx3090-nvlink-2x", "t4-1x"])
def test_every_fixture_names_its_source_and_probes_to_a_valid_inventory(name):
    assert len(load_fixture(name)["source"]) > 80
    inv = probe_local("box", "10.0.0.5:30001", nvml=replay(name), system="linux", machine="x86_64", sysfs=NO_SYSFS)
    again = Inventory.from_dict(inv.to_dict())  # schema and semantic checks
    assert again.hosts[0].gpus and again.hosts[0].driver_version
    assert len(again.hosts[0].topology) == len(again.hosts[0].gpus)


# --- NVML errors, as pynvml raises them -------------------------------------------------


@pytest.mark.parametrize(
    "code, words",
    [
        ("LIBRARY_NOT_FOUND", "driver library"),
        ("DRIVER_NOT_LOADED", "kernel driver is not loaded"),
        ("NO_PERMISSION", "no permission"),
        ("UNKNOWN", "Unknown Error"),
    ],
)
def test_init_failure_gives_no_gpus_and_says_why(code, words):
    r = probe("h100-sxm-8x", {"nvmlInit": {"": error(code)}})
    assert r.gpus == [] and r.topology is None
    assert len(r.notes) == 1 and words in r.notes[0]


def test_real_pynvml_on_this_gpu_less_machine():
    """No stand-in: this machine has no NVIDIA driver, and the real pynvml must say so."""
    if Path("/dev/nvidiactl").exists():
        pytest.skip("this machine has an NVIDIA driver")
    r = probe_nvidia()
    assert r.gpus == [] and len(r.notes) == 1 and "no NVIDIA GPUs" in r.notes[0]


def test_pynvml_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    r = probe_nvidia()
    assert r.gpus == [] and "nvidia-ml-py" in r.notes[0]


def test_count_failure_gives_no_gpus():
    r = probe("h100-sxm-8x", {"nvmlDeviceGetCount": {"": error("UNKNOWN")}})
    assert r.gpus == [] and "listing GPUs" in r.notes[0]


def test_lost_gpu_is_skipped_and_the_rest_keep_their_topology():
    r = probe("h100-sxm-8x", {"nvmlDeviceGetHandleByIndex": {"3": error("GPU_IS_LOST")}})
    assert [g.index for g in r.gpus] == [0, 1, 2, 4, 5, 6, 7]
    assert any(n.startswith("GPU 3 skipped") and "lost" in n for n in r.notes)
    assert len(r.topology) == 7 and r.topology[2][3] == "NV18"
    inv = probe_local(
        "h",
        nvml=replay("h100-sxm-8x", {"nvmlDeviceGetHandleByIndex": {"3": error("GPU_IS_LOST")}}),
        system="linux",
        machine="x86_64",
        sysfs=NO_SYSFS,
    )
    Inventory.from_dict(inv.to_dict())


def test_gpu_lost_midway_through_its_fields_is_skipped():
    r = probe("rtx4090-pcie-4x", {"nvmlDeviceGetUUID": {"2": error("GPU_IS_LOST")}})
    assert [g.index for g in r.gpus] == [0, 1, 3]
    assert r.topology == [["X", "PIX", "NODE"], ["PIX", "X", "NODE"], ["NODE", "NODE", "X"]]


def test_optional_fields_failing_are_left_out_with_a_note():
    r = probe(
        "rtx4090-pcie-4x",
        {
            "nvmlDeviceGetUUID": {"1": error("UNKNOWN")},
            "nvmlDeviceGetComputeRunningProcesses": {"2": error("NO_PERMISSION")},
        },
    )
    assert len(r.gpus) == 4
    assert r.gpus[1].uuid is None and r.gpus[0].uuid is not None
    assert r.gpus[2].compute_processes is None and r.gpus[3].compute_processes == 0
    assert any(n.startswith("GPU 1: uuid left out") for n in r.notes)
    assert any(n.startswith("GPU 2: compute_processes left out") for n in r.notes)


def test_mig_enabled_is_recorded_with_a_note():
    r = probe("h100-sxm-8x", {"nvmlDeviceGetMigMode": {"*": [1, 1]}})
    assert {g.mig_mode for g in r.gpus} == {True}
    assert sum("MIG is enabled" in n for n in r.notes) == 8


def test_an_unexpected_binding_error_is_a_note_not_an_exception():
    # a binding that answers garbage (here: a memory reading that is not a structure)
    r = probe("t4-1x", {"nvmlDeviceGetMemoryInfo": {"0": "garbage"}})
    assert r.gpus == [] and "the NVML probe failed" in r.notes[0]


def test_driver_version_failure_keeps_the_gpus():
    r = probe("t4-1x", {"nvmlSystemGetDriverVersion": {"": error("UNKNOWN")}})
    assert r.driver_version is None and len(r.gpus) == 1
    assert any("driver version unknown" in n for n in r.notes)


def test_nvlink_not_supported_falls_back_to_the_pcie_path():
    # the same 3090s without their bridge: NVML says Not Supported for NVLink queries
    r = probe(
        "rtx3090-nvlink-2x",
        {
            "nvmlDeviceGetNvLinkState": {"0,0": error("NOT_SUPPORTED"), "1,0": error("NOT_SUPPORTED")},
            "nvmlDeviceGetTopologyCommonAncestor": {"0,1": 30},
        },
    )
    assert r.topology == [["X", "PHB"], ["PHB", "X"]]


def test_old_driver_without_remote_device_type_still_counts_switch_links():
    r = probe("h100-sxm-8x", {"nvmlDeviceGetNvLinkRemoteDeviceType": {"*": error("FUNCTION_NOT_FOUND")}})
    assert r.topology[0][7] == "NV18" and r.topology[5][2] == "NV18"


def test_nvswitch_without_p2p_falls_back_to_pcie():
    # fabric manager down: the links are up but NVLink P2P is not possible (status 5)
    r = probe("h100-sxm-8x", {"nvmlDeviceGetP2PStatus": {"*": 5}, "nvmlDeviceGetTopologyCommonAncestor": {"*": 50}})
    assert {r.topology[a][b] for a in range(8) for b in range(8) if a != b} == {"SYS"}


def test_unknown_pcie_path_is_recorded_as_sys_with_a_note():
    r = probe("rtx4090-pcie-4x", {"nvmlDeviceGetTopologyCommonAncestor": {"0,1": error("UNKNOWN")}})
    assert r.topology[0][1] == r.topology[1][0] == "SYS"
    assert any(n.startswith("GPUs 0 and 1: PCIe path unknown") for n in r.notes)


# --- the recorder writes what the stand-in replays -----------------------------------------


def _recorder_module():
    path = ROOT / "tools" / "record_nvml.py"
    spec = importlib.util.spec_from_file_location("record_nvml", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["h100-sxm-8x", "rtx3090-nvlink-2x", "t4-1x"])
def test_recorder_round_trip(name):
    recorder = _recorder_module().RecordingNVML(replay(name))
    result = probe_nvidia(nvml=recorder, sysfs=NO_SYSFS)
    fixture = load_fixture(name)["calls"]
    for fn, answers in recorder.calls.items():
        for key, answer in answers.items():
            assert fixture[fn][key] == answer, (fn, key)
    # and replaying the recording gives the same inventory
    again = probe_nvidia(replay_recording(recorder.calls), sysfs=NO_SYSFS)
    assert again == result


def replay_recording(calls):
    from support.fake_nvml import ReplayNVML

    return ReplayNVML({"source": "round trip", "calls": calls})
