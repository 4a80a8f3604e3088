"""Where replicas go: topology-aware GPU grouping, spreading or packing over hosts,
memory reservations, and the placement keyword arguments of ``launch_model``.

Pure functions over ``inventory.Host``/``GPU``. The link vocabulary is ``nvidia-smi topo -m``'s:
NV# (NVLink/NVSwitch) beats PIX/PXB (same PCIe switch) beats PHB/NODE (same NUMA node)
beats SYS (across the CPU interconnect).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

from xinf_planner.core import engines
from xinf_planner.core.inventory import GIB, GPU, Host

LINK_RANK = {"PIX": 1, "PXB": 2, "PHB": 3, "NODE": 3, "SYS": 5}
LINK_WORDS = {
    0: "NVLink",
    1: "one PCIe switch",
    2: "PCIe switches",
    3: "one NUMA node",
    4: "an unknown link",
    5: "the CPU interconnect (SYS)",
}
UNKNOWN_LINK = 4


def link_rank(host: Host, a: int, b: int) -> int:
    """0 NVLink, 1 PIX, 2 PXB, 3 PHB/NODE, 4 unknown, 5 SYS. Without a topology matrix,
    NUMA nodes decide (same node 3, different 5)."""
    link = host.link(a, b)
    if link:
        return 0 if link.startswith("NV") else LINK_RANK.get(link, UNKNOWN_LINK)
    na, nb = host.gpu(a).numa_node, host.gpu(b).numa_node
    if na is not None and nb is not None and na >= 0 and nb >= 0:
        return 3 if na == nb else 5
    return UNKNOWN_LINK


def gpu_kind(gpu: GPU) -> tuple:
    """GPUs of one kind may share a replica: same vendor, model, compute capability and size."""
    return (gpu.vendor, gpu.name, gpu.compute_capability or "", gpu.memory_total_bytes)


def gpu_key(host: str, index: int) -> str:
    """How the intent names a GPU: 'host:index'."""
    return f"{host}:{index}"


@dataclass(frozen=True)
class Group:
    """GPUs of one kind on one host that one replica would use."""

    host: str
    gpus: tuple[int, ...]
    worst_link: int  # link_rank of the worst pair (0 for a single GPU)
    free_gib: float  # the smallest free memory among the GPUs (after headroom)

    @property
    def size(self) -> int:
        return len(self.gpus)


def group_gpus(host: Host, indexes: Iterable[int], size: int) -> list[tuple[tuple[int, ...], int]]:
    """Disjoint groups of ``size`` GPUs out of ``indexes``, best-connected first.

    Greedy and deterministic: seed each group with the lowest remaining index, then add the
    GPU whose worst link to the group is best (lowest index on ties). Returns (gpus, worst_link).
    """
    remaining = sorted(indexes)
    groups: list[tuple[tuple[int, ...], int]] = []
    while len(remaining) >= size:
        group = [remaining[0]]
        worst = 0
        while len(group) < size:
            cost, pick = min((max(link_rank(host, c, g) for g in group), c) for c in remaining if c not in group)
            group.append(pick)
            worst = max(worst, cost)
        groups.append((tuple(sorted(group)), worst))
        remaining = [r for r in remaining if r not in group]
    groups.sort(key=lambda item: (item[1], item[0]))
    return groups


def _shape(host: Host, indexes: tuple[int, ...]) -> tuple:
    """What grouping depends on: the GPUs' numa nodes and the topology among them."""
    pos = {g.index: n for n, g in enumerate(host.gpus)}
    topo = host.topology
    out = []
    for i in indexes:
        row = topo[pos[i]] if topo else None
        links = tuple(row[pos[j]] for j in indexes) if row else (None,) * len(indexes)
        out.append((i, host.gpus[pos[i]].numa_node, links))
    return tuple(out)


@lru_cache(maxsize=4096)
def _grouped_by_shape(shape: tuple, size: int) -> tuple:
    host = _ShapeHost(shape)
    return tuple(group_gpus(host, [s[0] for s in shape], size))


class _ShapeHost:
    """A stand-in Host built from a shape, so identical hosts share one grouping."""

    def __init__(self, shape: tuple):
        self._idx = [s[0] for s in shape]
        self._numa = {s[0]: s[1] for s in shape}
        self._links = {s[0]: dict(zip(self._idx, s[2])) for s in shape}

    def link(self, a: int, b: int):
        return self._links[a][b]

    def gpu(self, index: int):
        return _Numa(self._numa[index])


@dataclass(frozen=True)
class _Numa:
    numa_node: int | None


def host_groups(host: Host, indexes: Iterable[int], size: int, free_gib: dict[int, float]) -> list[Group]:
    """``group_gpus`` memoised on the host's shape (identical hosts group once)."""
    idx = tuple(sorted(indexes))
    if len(idx) < size:
        return []
    shape = _shape(host, idx)
    return [
        Group(host.name, gpus, worst, min(free_gib[i] for i in gpus)) for gpus, worst in _grouped_by_shape(shape, size)
    ]


def pick_groups(groups_by_host: list[list[Group]], count: int, strategy: str = "spread") -> list[Group]:
    """Choose ``count`` groups: ``spread`` takes one per host in turn, ``pack`` fills each host
    before the next. Hosts are in inventory order; within a host, best-connected first."""
    chosen: list[Group] = []
    if strategy == "pack":
        for groups in groups_by_host:
            for g in groups:
                if len(chosen) == count:
                    return chosen
                chosen.append(g)
        return chosen
    depth = 0
    while len(chosen) < count:
        took = False
        for groups in groups_by_host:
            if depth < len(groups) and len(chosen) < count:
                chosen.append(groups[depth])
                took = True
        if not took:
            break
        depth += 1
    return chosen


# -- reservations ----------------------------------------------------------------------------


def reservation_fraction(needed: float, margin: float, cap: float, free_fraction: float) -> float | None:
    """The fraction of a GPU's total memory to reserve (vLLM ``gpu_memory_utilization``,
    SGLang ``mem_fraction_static``): what the estimate needs plus ``margin``, rounded up to a
    hundredth, never above ``cap`` nor above what is free. None when even that is too little."""
    limit = min(cap, free_fraction)
    if needed > limit + 1e-9:
        return None
    for candidate in (_ceil2(needed + margin), _floor2(limit), _ceil2(needed)):
        if needed <= candidate <= limit:
            return candidate
    return int(limit * 10000) / 10000


def _ceil2(x: float) -> float:
    import math

    return math.ceil(round(x * 100, 6)) / 100


def _floor2(x: float) -> float:
    import math

    return math.floor(round(x * 100, 6)) / 100


def reserved_gib(engine: str, launch: dict, gpu_total_gib: float, estimate_total_gib: float) -> float:
    """GiB one replica holds on each of its GPUs: the engine's reservation (a fraction of the
    total), or the estimate's total for engines that allocate as they go."""
    key = engines.reservation_key(engine)
    if key:
        fraction = launch.get(key)
        if fraction is None:
            for cfg in launch.get("replica_config") or []:
                fraction = (cfg.get("engine_config") or {}).get(key, fraction)
        if isinstance(fraction, (int, float)):
            return float(fraction) * gpu_total_gib
    return estimate_total_gib


# -- launch keyword arguments ----------------------------------------------------------------


def placement_kwargs(replicas: list[tuple[Host, tuple[int, ...]]]) -> dict:
    """The placement keywords of ``launch_model`` for replicas given as (host, gpu indexes).

    - Hosts with a ``worker_address``: ``replica_config``, one entry per replica pinning its
      worker and GPUs (it may not be combined with worker_ip, gpu_idx or n_gpu). A CPU replica
      there gets ``n_gpu: "auto"``, which on a worker without GPUs means the CPU.
    - One host without a worker address: ``gpu_idx`` (the replicas' GPUs concatenated: Xinference
      gives replica i the slice ``gpu_idx[i*k:(i+1)*k]``) with ``replica``; on the CPU,
      ``n_gpu: None`` (``"auto"`` would take one GPU where there is one).
    - A CPU replica on a host that has GPUs but a worker address: ``worker_ip`` + ``n_gpu: None``.
    - Apple silicon: no GPU indexes at all (see ``_apple_kwargs``).
    """
    n = len(replicas)
    hosts = {h.name: h for h, _ in replicas}
    if any(_vendor(host, i) == "apple" for host, gpus in replicas for i in gpus):
        return _apple_kwargs(replicas)
    on_cpu = all(not gpus for _, gpus in replicas)
    all_workers = all(h.worker_address for h in hosts.values())
    if all_workers and not (on_cpu and any(h.gpus for h in hosts.values())):
        config = []
        for host, gpus in replicas:
            device: dict = {"worker_ip": host.worker_address}
            if gpus:
                device["gpu_idx"] = list(gpus)
                device["n_gpu"] = len(gpus)
            else:
                device["n_gpu"] = "auto"
            config.append({"devices": [device]})
        return {"replica": n, "replica_config": config}
    if len(hosts) != 1:
        raise ValueError("replicas on several hosts need a worker_address on every host")
    host = next(iter(hosts.values()))
    if on_cpu:
        out: dict = {"replica": n, "n_gpu": None}
        if host.worker_address:
            out["worker_ip"] = host.worker_address
        return out
    gpu_idx = [i for _, gpus in replicas for i in gpus]
    return {"replica": n, "gpu_idx": gpu_idx}


def _apple_kwargs(replicas: list[tuple[Host, tuple[int, ...]]]) -> dict:
    """Apple silicon: Xinference's device registry reports 0 devices for MPS
    (xinference/device_utils.py), so a worker refuses any gpu_idx there; MLX and llama.cpp use
    the Metal GPU by themselves. Pin the worker only; ``n_gpu`` stays the default "auto", which
    allocates no device where the worker counts none."""
    n = len(replicas)
    hosts = {h.name: h for h, _ in replicas}
    if all(h.worker_address for h in hosts.values()):
        return {
            "replica": n,
            "replica_config": [{"devices": [{"worker_ip": h.worker_address, "n_gpu": "auto"}]} for h, _ in replicas],
        }
    if len(hosts) != 1:
        raise ValueError("replicas on several hosts need a worker_address on every host")
    return {"replica": n}


def _vendor(host: Host, index: int) -> str | None:
    try:
        return host.gpu(index).vendor
    except KeyError:
        return None


def free_gib_after_headroom(gpu: GPU, headroom_gib: float) -> float:
    return max(0.0, gpu.memory_free_bytes / GIB - headroom_gib)
