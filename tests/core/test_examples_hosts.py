"""Every example inventory in examples/hosts/ is valid, says where its numbers come from,
and uses the memory sizes drivers really report."""

from __future__ import annotations

import pytest
from support.paths import EXAMPLES

from xinf_planner.core.inventory import Inventory
from xinf_planner.shell.documents import load_inventory

HOSTS = EXAMPLES / "hosts"
FILES = sorted(HOSTS.glob("*.yaml"))
GIB = 1 << 30

# (bytes, compute capability) as NVML reports them: MiB totals from published nvidia-smi output
DRIVER_REPORTED = {
    "NVIDIA H100 80GB HBM3": (81559 << 20, "9.0"),
    "NVIDIA A100-SXM4-80GB": (81920 << 20, "8.0"),
    "NVIDIA H200": (143771 << 20, "9.0"),
    "NVIDIA GeForce RTX 4090": (24564 << 20, "8.9"),
    "NVIDIA GeForce RTX 3090": (24576 << 20, "8.6"),
    "NVIDIA L40S": (46068 << 20, "8.9"),
    "Tesla T4": (15360 << 20, "7.5"),
}


def test_there_are_at_least_fourteen():
    assert len(FILES) >= 14


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_example_is_valid_and_documented(path):
    lines = path.read_text().splitlines()
    header = [line for line in lines[:12] if line.startswith("#")]
    assert lines[0].startswith("# ") and len(" ".join(header)) > 120, "needs a header saying where numbers come from"
    inv = load_inventory(path)
    assert Inventory.from_dict(inv.to_dict()).to_dict() == inv.to_dict()
    for host in inv.hosts:
        for gpu in host.gpus:
            if gpu.vendor == "nvidia":
                assert (gpu.memory_total_bytes, gpu.compute_capability) == DRIVER_REPORTED[gpu.name]
                assert host.driver_version and host.cuda_version
            if gpu.vendor == "apple":
                assert gpu.unified_memory and gpu.memory_total_bytes == host.memory_total_bytes
        if len(host.gpus) > 1:
            assert host.topology is not None


def _host(name: str):
    (host,) = load_inventory(HOSTS / name).hosts
    return host


def _links(host) -> set[str]:
    return {w for r, row in enumerate(host.topology) for c, w in enumerate(row) if r != c}


def test_topologies_say_what_the_headers_say():
    assert _links(_host("8xh100-sxm.yaml")) == {"NV18"}
    assert _links(_host("8xh200.yaml")) == {"NV18"}
    assert _links(_host("8xa100-sxm4-80gb.yaml")) == {"NV12"}
    assert _links(_host("2x3090-nvlink.yaml")) == {"NV4"}
    four = _host("4x4090-pcie.yaml")
    assert four.link(0, 1) == four.link(2, 3) == "PIX" and four.link(1, 2) == "NODE"
    l40s = _host("8xl40s-pcie.yaml")
    assert l40s.link(0, 1) == "PIX" and l40s.link(0, 3) == "NODE" and l40s.link(3, 4) == "SYS"


def test_macs_and_cpu_only():
    studio, mbp = _host("mac-studio-m2-ultra-192gb.yaml"), _host("macbook-pro-m3-max-36gb.yaml")
    assert studio.memory_total_bytes == 192 * GIB and studio.gpu_wired_limit_bytes == 144 * GIB
    assert mbp.memory_total_bytes == 36 * GIB and mbp.gpu_wired_limit_bytes == 24 * GIB
    assert studio.is_apple_silicon and mbp.is_apple_silicon
    cpu = _host("cpu-only-16c-64g.yaml")
    assert cpu.gpus == [] and cpu.cpu_cores == 16 and 60 * GIB < cpu.memory_total_bytes <= 64 * GIB


def test_cluster_has_two_workers():
    inv = load_inventory(HOSTS / "2x8xa100-cluster.yaml")
    assert [h.worker_address for h in inv.hosts] == ["10.0.0.11:30001", "10.0.0.12:30001"]
    assert [len(h.gpus) for h in inv.hosts] == [8, 8]
