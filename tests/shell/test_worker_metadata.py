"""The extension's worker side (xinf_planner/extension.py, shell/probe/workers.py): the metadata a
worker sends is the inventory host `xinf-plan inspect` writes, from the same probes; it is small
and fast; a probe that fails or hangs never stops the worker. The GPU answers are NVML answers
recorded on real machines (tests/support/fake_nvml.py), replayed in-process here and inside a
real worker process by tests/integration/test_extension_cluster.py."""

from __future__ import annotations

import json
import pickle
import threading
import time

import pytest
from support.fake_nvml import FIXTURES, replay

from xinf_planner.core.inventory import Inventory
from xinf_planner.core.workers import EXTENSION_NAME, METADATA_VERSION, inventory_from_workers
from xinf_planner.extension import ROUTES, TEST_NVML_ENV, create
from xinf_planner.shell.probe.local import probe_local
from xinf_planner.shell.probe.workers import worker_metadata

NAMES = sorted(p.stem for p in FIXTURES.glob("*.json"))


@pytest.mark.parametrize("name", NAMES)
def test_metadata_is_the_inspect_host_from_the_same_probes(name):
    meta = worker_metadata(nvml=replay(name), bandwidth=False)
    assert meta["version"] == METADATA_VERSION
    host = meta["host"]
    expected = probe_local(nvml=replay(name)).to_dict()["hosts"][0]
    for volatile in ("memory_available_bytes",):  # /proc changes between two reads
        host.pop(volatile, None)
        expected.pop(volatile, None)
    assert host == expected
    assert host["gpus"] and all(g["compute_capability"] for g in host["gpus"])
    Inventory.from_dict({"version": 1, "hosts": [meta["host"]]})


def test_metadata_is_small_fast_and_travels_as_json_and_pickle():
    meta = worker_metadata(nvml=replay("h100-sxm-8x"), bandwidth=False)
    text = json.dumps(meta)
    assert len(text) < 8000, len(text)  # 8 GPUs with an 8 x 8 topology matrix
    assert pickle.loads(pickle.dumps(meta)) == meta
    start = time.monotonic()
    for _ in range(20):
        worker_metadata(nvml=replay("h100-sxm-8x"), bandwidth=False)
    per_call = (time.monotonic() - start) / 20
    assert per_call < 1.0, per_call
    print(f"\nworker_metadata() on the replayed 8 x H100: {per_call * 1000:.1f} ms, {len(text)} bytes")


def test_the_memory_bandwidth_is_measured_once_in_the_background(monkeypatch):
    from xinf_planner.shell.probe import workers
    from xinf_planner.shell.probe.bandwidth import BandwidthResult

    monkeypatch.setattr(workers._Bandwidth, "thread", None)
    monkeypatch.setattr(workers._Bandwidth, "result", None)
    release = threading.Event()
    calls = []

    def measure():
        calls.append(1)
        release.wait(5)
        return BandwidthResult(
            gbps_1_thread=9.5, gbps_all_threads=20.0, threads=2, bytes_moved=1, seconds=1.0, method="memchr"
        )

    start = time.monotonic()
    first = worker_metadata(nvml=replay("t4-1x"), measure=measure, bandwidth=True)
    assert time.monotonic() - start < 1.0  # the hook does not wait for the measurement
    assert workers.MEASURING in first["host"]["notes"]
    assert "memory_bandwidth_measured_gbps" not in first["host"]
    release.set()
    workers._Bandwidth.thread.join(5)
    second = worker_metadata(nvml=replay("t4-1x"), measure=measure, bandwidth=True)
    assert second["host"]["memory_bandwidth_measured_gbps"] == 20.0
    assert any(n.startswith("memory bandwidth measured: 20.0 GB/s") for n in second["host"]["notes"])
    worker_metadata(nvml=replay("t4-1x"), measure=measure, bandwidth=True)
    assert calls == [1]  # once per process
    monkeypatch.setenv(workers.BANDWIDTH_ENV, "0")
    off = worker_metadata(nvml=replay("t4-1x"), measure=measure)
    assert "memory_bandwidth_measured_gbps" not in off["host"]


def test_a_failing_probe_reports_no_gpus_with_a_note():
    def broken():
        raise OSError("sysfs is gone")

    meta = worker_metadata(probe=broken)
    assert meta["host"]["gpus"] == []
    assert "no GPUs reported: the hardware probe failed (OSError: sysfs is gone)" in meta["host"]["notes"]
    Inventory.from_dict({"version": 1, "hosts": [meta["host"]]})


def test_a_hanging_probe_is_cut_off():
    def hangs():
        time.sleep(5)

    start = time.monotonic()
    meta = worker_metadata(probe=hangs, timeout_s=0.2)
    assert time.monotonic() - start < 2
    assert "did not finish within" in meta["host"]["notes"][0]


def test_an_invalid_probe_answer_is_replaced():
    meta = worker_metadata(probe=lambda: {"version": 1, "hosts": [{"name": "x"}]})
    assert meta["host"]["gpus"] == [] and "not a valid inventory" in meta["host"]["notes"][0]


def test_the_extension_object_xinference_loads():
    ext = create()
    assert ext.name == EXTENSION_NAME and ext.api_version == 1
    for hook in ("configure_api", "worker_metadata", "filter_worker_resources"):
        assert callable(getattr(ext, hook))
    worker = {"address": "a:1", "gpu_devices": [0, 1, 2]}
    assert ext.filter_worker_resources(worker, [worker]) == [0, 1, 2]
    assert ext.filter_worker_resources({"address": "b:1", "gpu_devices": []}, []) == []
    assert ROUTES == ("/v1/xinf-plan/inventory", "/v1/xinf-plan/plan", "/v1/xinf-plan/validate")


def test_the_test_only_switch_replays_a_fixture(monkeypatch):
    monkeypatch.setenv(TEST_NVML_ENV, str(FIXTURES / "t4-1x.json"))
    monkeypatch.setenv("XINF_PLAN_MEASURE_BANDWIDTH", "0")
    meta = create().worker_metadata()
    assert [g["name"] for g in meta["host"]["gpus"]] == ["Tesla T4"]
    resources = {"address": "10.0.0.9:30001", "gpu_devices": [0], "extensions": {EXTENSION_NAME: meta}}
    inv, _ = inventory_from_workers([{"address": "10.0.0.9:30001", "resources": resources, "models": []}])
    assert inv.hosts[0].gpus[0].name == "Tesla T4" and inv.hosts[0].worker_address == "10.0.0.9:30001"


def test_a_broken_switch_never_stops_the_worker(monkeypatch):
    monkeypatch.setenv(TEST_NVML_ENV, "/no/such/fixture.json")
    monkeypatch.setenv("XINF_PLAN_MEASURE_BANDWIDTH", "0")
    meta = create().worker_metadata()
    assert meta["host"]["gpus"] == []
    assert "test NVML replay" in meta["host"]["notes"][0]


def test_without_the_switch_the_real_probe_runs(monkeypatch):
    monkeypatch.delenv(TEST_NVML_ENV, raising=False)
    monkeypatch.setenv("XINF_PLAN_MEASURE_BANDWIDTH", "0")
    meta = create().worker_metadata()
    Inventory.from_dict({"version": 1, "hosts": [meta["host"]]})
