"""Topology-aware grouping, spreading/packing, reservations and the launch placement keywords,
on the example inventories (real nvidia-smi topo layouts)."""

import itertools

import pytest
from support.paths import EXAMPLES

from xinf_planner.core.inventory import GIB, Host
from xinf_planner.core.planning.placement import (
    Group,
    group_gpus,
    host_groups,
    link_rank,
    pick_groups,
    placement_kwargs,
    reservation_fraction,
    reserved_gib,
)
from xinf_planner.shell.documents import load_inventory

HOSTS = EXAMPLES / "hosts"


def _host(name):
    return load_inventory(HOSTS / name).hosts[0]


def test_six_t4_pairs_stay_within_a_socket():
    host = _host("6xt4.yaml")  # 0-2 on socket 0 (NODE), 3-5 on socket 1; SYS across
    groups = group_gpus(host, [g.index for g in host.gpus], 2)
    assert len(groups) == 3
    pairs = [set(g) for g, _ in groups]
    # two pairs can stay on one socket; the third must cross, and it comes last
    within = [p for p in pairs if p <= {0, 1, 2} or p <= {3, 4, 5}]
    assert len(within) == 2
    assert groups[-1][1] == link_rank(host, *sorted(groups[-1][0]))
    assert groups[0][1] < groups[-1][1]


def test_groups_are_disjoint_and_complete():
    host = _host("8xh100-sxm.yaml")
    for size in (1, 2, 4, 8):
        groups = group_gpus(host, [g.index for g in host.gpus], size)
        used = list(itertools.chain.from_iterable(g for g, _ in groups))
        assert len(used) == len(set(used)) == 8
        assert all(len(g) == size for g, _ in groups)
        assert all(w == 0 for _, w in groups)  # NVSwitch: every pair is NV18


def test_nvlink_pairs_preferred_over_pcie():
    # a made-up 4-GPU box: NVLink bridges 0-2 and 1-3, PCIe (PHB) otherwise
    host = Host(
        name="h",
        os="linux",
        arch="x86_64",
        cpu_cores=8,
        memory_total_bytes=1 << 36,
        topology=[
            ["X", "PHB", "NV4", "PHB"],
            ["PHB", "X", "PHB", "NV4"],
            ["NV4", "PHB", "X", "PHB"],
            ["PHB", "NV4", "PHB", "X"],
        ],
    )
    from xinf_planner.core.inventory import GPU

    host.gpus = [
        GPU(index=i, vendor="nvidia", name="RTX 3090", memory_total_bytes=24 << 30, compute_capability="8.6")
        for i in range(4)
    ]
    groups = group_gpus(host, [0, 1, 2, 3], 2)
    assert sorted(g for g, _ in groups) == [(0, 2), (1, 3)]


def test_memoised_grouping_matches_direct_grouping():
    host = _host("8xl40s-pcie.yaml")
    idx = [g.index for g in host.gpus]
    free = {i: 40.0 for i in idx}
    for size in (2, 4):
        direct = group_gpus(host, idx, size)
        memo = host_groups(host, idx, size, free)
        assert [(g.gpus, g.worst_link) for g in memo] == direct


def test_spread_and_pack():
    a = [Group("a", (0,), 0, 10.0), Group("a", (1,), 0, 10.0)]
    b = [Group("b", (0,), 0, 10.0), Group("b", (1,), 0, 10.0)]
    spread = pick_groups([a, b], 3, "spread")
    assert [g.host for g in spread] == ["a", "b", "a"]
    pack = pick_groups([a, b], 3, "pack")
    assert [g.host for g in pack] == ["a", "a", "b"]
    assert len(pick_groups([a, b], 9, "spread")) == 4


def test_reservation_fraction():
    # needs 0.50 of the GPU, margin 0.03, cap 0.95, all free -> 0.53
    assert reservation_fraction(0.50, 0.03, 0.95, 1.0) == 0.53
    # only 0.52 free: the margin is cut, never past what is free
    got = reservation_fraction(0.50, 0.03, 0.95, 0.52)
    assert 0.50 <= got <= 0.52
    assert reservation_fraction(0.60, 0.03, 0.95, 0.55) is None
    assert reservation_fraction(0.94, 0.03, 0.95, 1.0) == 0.95


def test_reserved_gib_uses_the_engine_fraction():
    assert reserved_gib("vllm", {"gpu_memory_utilization": 0.5}, 80.0, 10.0) == 40.0
    assert reserved_gib("sglang", {"mem_fraction_static": 0.25}, 80.0, 10.0) == 20.0
    assert reserved_gib("llama.cpp", {}, 80.0, 10.0) == 10.0


def test_placement_kwargs_single_host_gpu_idx_slices():
    host = _host("6xt4.yaml")  # no worker address
    kw = placement_kwargs([(host, (0, 1)), (host, (2, 4)), (host, (3, 5))])
    assert kw == {"replica": 3, "gpu_idx": [0, 1, 2, 4, 3, 5]}
    # Xinference gives replica i the slice gpu_idx[i*k:(i+1)*k] (core/utils.assign_replica_gpu)
    from xinference.core.utils import assign_replica_gpu

    assert assign_replica_gpu("m-rep1", 3, kw["gpu_idx"]) == [2, 4]


def test_placement_kwargs_cluster_uses_replica_config():
    inv = load_inventory(HOSTS / "2x8xa100-cluster.yaml")
    a, b = inv.hosts
    kw = placement_kwargs([(a, (0, 1)), (b, (0, 1))])
    assert set(kw) == {"replica", "replica_config"}
    assert kw["replica_config"][1]["devices"][0] == {"worker_ip": b.worker_address, "gpu_idx": [0, 1], "n_gpu": 2}
    # the structure Xinference validates (core/replica_config.py) accepts it
    from xinference.core.replica_config import ReplicaConfig, normalize_replica_configs

    normalize_replica_configs("uid", 2, [ReplicaConfig(**c) for c in kw["replica_config"]])


def test_placement_kwargs_cpu():
    host = _host("cpu-only-16c-64g.yaml")
    assert placement_kwargs([(host, ()), (host, ())]) == {"replica": 2, "n_gpu": None}
    with_worker = Host(
        name="c", os="linux", arch="x86_64", cpu_cores=8, memory_total_bytes=1 << 36, worker_address="10.0.0.9:30001"
    )
    kw = placement_kwargs([(with_worker, ())])
    assert kw["replica_config"][0]["devices"][0] == {"worker_ip": "10.0.0.9:30001", "n_gpu": "auto"}


def test_several_hosts_without_workers_cannot_be_pinned():
    a = Host(name="a", os="linux", arch="x86_64", cpu_cores=8, memory_total_bytes=1 << 36)
    b = Host(name="b", os="linux", arch="x86_64", cpu_cores=8, memory_total_bytes=1 << 36)
    with pytest.raises(ValueError):
        placement_kwargs([(a, (0,)), (b, (0,))])


def test_free_memory_counts_used_memory():
    from xinf_planner.core.planning.placement import free_gib_after_headroom

    host = _host("rtx4090-workstation.yaml")
    g = host.gpus[0]
    assert free_gib_after_headroom(g, 0) == pytest.approx((g.memory_total_bytes - g.memory_used_bytes) / GIB)
    assert free_gib_after_headroom(g, 1.0) == pytest.approx(free_gib_after_headroom(g, 0) - 1.0)


def test_apple_silicon_gets_no_gpu_indexes():
    # Xinference's device registry counts 0 MPS devices (xinference/device_utils.py), so a
    # worker on a Mac refuses any gpu_idx: only the replica count (and the worker) is pinned.
    from xinference.device_utils import DEVICE_REGISTRY

    mps = [d for d in DEVICE_REGISTRY if d.name == "mps"][0]
    assert mps.device_count_fn() == 0
    host = _host("mac-studio-m2-ultra-192gb.yaml")
    assert placement_kwargs([(host, (0,))]) == {"replica": 1}
