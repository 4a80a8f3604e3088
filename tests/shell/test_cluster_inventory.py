"""`inspect --endpoint`: a cluster's inventory from the supervisor's /v1/cluster/info.

``fixtures/cluster/cluster-info-2-cpu-workers.json`` is the response a real Xinference 4.1.0
supervisor with two CPU workers gave (the ``Cluster`` harness, GET /v1/cluster/info?detailed=true
as the admin). GPU workers are that same record with the GPU fields the supervisor computes
(``core/supervisor.py``: ``gpu_count``, and ``gpu_vram_total``/``gpu_vram_available`` summed
over NVML's per-GPU totals) filled from the recorded DGX H100 in examples/hosts/8xh100-sxm.yaml.
"""

from __future__ import annotations

import json

import pytest
from support.paths import EXAMPLES, ROOT

from xinf_planner.errors import InvalidInput
from xinf_planner.shell.documents import load_inventory
from xinf_planner.shell.probe.cluster import inventory_from_cluster_info

RECORDED = json.loads((ROOT / "tests/support/fixtures/cluster/cluster-info-2-cpu-workers.json").read_text())


def _gpu_cluster(used_per_gpu: int = 0) -> tuple[list[dict], list[str]]:
    dgx = load_inventory(EXAMPLES / "hosts/8xh100-sxm.yaml").hosts[0]
    total = sum(g.memory_total_bytes for g in dgx.gpus)
    info = json.loads(json.dumps(RECORDED))
    for node in info:
        if node["node_type"] == "Worker":
            node.update(
                gpu_count=len(dgx.gpus), gpu_vram_total=total, gpu_vram_available=total - used_per_gpu * len(dgx.gpus)
            )
    return info, [n["ip_address"] for n in info if n["node_type"] == "Worker"]


def test_recorded_cpu_workers_become_hosts_with_their_addresses():
    inv, warnings = inventory_from_cluster_info(RECORDED)
    workers = sorted((n for n in RECORDED if n["node_type"] == "Worker"), key=lambda n: n["ip_address"])
    assert [h.worker_address for h in inv.hosts] == [w["ip_address"] for w in workers]
    assert len({h.name for h in inv.hosts}) == 2  # two workers on one IP keep distinct names
    for host, node in zip(inv.hosts, workers):
        assert host.gpus == []
        assert host.cpu_cores == node["cpu_count"]
        assert host.memory_total_bytes == node["mem_total"]
        assert host.memory_available_bytes == node["mem_available"]
        assert any("assumed linux x86_64" in n for n in host.notes)
    assert warnings == []  # nothing about GPUs was assumed
    assert "supervisor" not in " ".join(h.name for h in inv.hosts)


def test_gpu_workers_need_a_gpu_model():
    info, _ = _gpu_cluster()
    with pytest.raises(InvalidInput, match="does not say which"):
        inventory_from_cluster_info(info)
    with pytest.raises(InvalidInput, match="not in the GPU table"):
        inventory_from_cluster_info(info, gpu_name="Imaginary GPU 9000")


def test_gpu_name_assumes_identical_gpus_and_says_so():
    used = 3 << 30
    info, addresses = _gpu_cluster(used_per_gpu=used)
    inv, warnings = inventory_from_cluster_info(info, gpu_name="NVIDIA H100 80GB HBM3")
    dgx = load_inventory(EXAMPLES / "hosts/8xh100-sxm.yaml").hosts[0]
    for host in inv.hosts:
        assert len(host.gpus) == 8
        assert {g.memory_total_bytes for g in host.gpus} == {dgx.gpus[0].memory_total_bytes}
        assert {g.memory_used_bytes for g in host.gpus} == {used}
        assert {g.compute_capability for g in host.gpus} == {"9.0"}
        assert host.topology is None
        assert any("assumed identical" in n for n in host.notes)
    assert len(warnings) == 2 and all("assumed identical" in w for w in warnings)


def test_host_inventories_give_gpu_detail_by_worker_address():
    info, addresses = _gpu_cluster(used_per_gpu=1 << 30)
    dgx = load_inventory(EXAMPLES / "hosts/8xh100-sxm.yaml")
    dgx.hosts[0].worker_address = sorted(addresses)[0]
    inv, warnings = inventory_from_cluster_info(info, dgx, gpu_name="NVIDIA H100 80GB HBM3")
    first, second = inv.hosts
    assert first.name == "dgx-h100" and first.topology == dgx.hosts[0].topology
    assert [g.uuid for g in first.gpus] == [g.uuid for g in dgx.hosts[0].gpus]
    assert {g.memory_used_bytes for g in first.gpus} == {1 << 30}  # live figure from the supervisor
    assert second.topology is None and len(warnings) == 1 and sorted(addresses)[1] in warnings[0]


def test_host_inventory_that_disagrees_with_the_cluster_is_refused():
    info, addresses = _gpu_cluster()
    t4 = load_inventory(EXAMPLES / "hosts/1xt4.yaml")
    t4.hosts[0].worker_address = addresses[0]
    with pytest.raises(InvalidInput, match="counts 8 GPU"):
        inventory_from_cluster_info(info, t4, gpu_name="NVIDIA H100 80GB HBM3")
    t4.hosts[0].worker_address = "10.9.9.9:1"
    with pytest.raises(InvalidInput, match="does not list"):
        inventory_from_cluster_info(info, t4, gpu_name="NVIDIA H100 80GB HBM3")


def test_inspect_cluster_options_need_endpoint(run_cli, tmp_path):
    code, out, err = run_cli("inspect", "--gpu-name", "NVIDIA H100 80GB HBM3")
    assert code == 2 and "--endpoint" in err
    code, out, err = run_cli("inspect", "-e", "http://127.0.0.1:1", "--merge", "a.yaml")
    assert code == 2 and "cannot be used with" in err


def test_inspect_endpoint_unreachable_is_one_line(run_cli):
    code, out, err = run_cli("inspect", "-e", "http://127.0.0.1:1")
    assert code == 5
    assert err.strip().count("\n") == 0 and "cannot reach" in err
