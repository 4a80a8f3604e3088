"""What one planning run carries: the inventory and request, what is still free, the estimates
already made, and the record of rejected candidates and notes.

``Context`` is the state every planning step reads and writes; it is built fresh for each
plan (``Context.new``) and shares nothing with another run unless told to (the "nothing fits"
explanation plans again on a copy of the free capacity, reusing the same ``EstimateCache``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from xinf_planner.core.inventory import GIB, GPU, Host, Inventory
from xinf_planner.core.planning.placement import (
    Group,
    free_gib_after_headroom,
    gpu_key,
    gpu_kind,
    host_groups,
)
from xinf_planner.core.request import Request
from xinf_planner.errors import InvalidInput


@dataclass(frozen=True)
class Device:
    """What one replica runs on, as the estimate sees it."""

    kind: tuple | None  # placement.gpu_kind, None for the CPU
    label: str  # "Tesla T4" or "CPU"
    vendor: str | None
    cc: tuple[int, int] | None
    total_gib: float | None
    bandwidth_gbps: float | None
    unified: bool = False
    wired_limit_gib: float | None = None
    host_ram_gib: float | None = None  # the least free RAM among the hosts with these GPUs
    tflops: float | None = None  # dense 16-bit tensor TFLOPS (GPU table)
    tflops_fp8: float | None = None
    p2p: bool = True  # peer-to-peer between these GPUs over PCIe


CPU = Device(None, "CPU", None, None, None, None)


def device_of(host: Host, gpu: GPU) -> Device:
    from xinf_planner.core.catalog import lookup_gpu

    info = lookup_gpu(gpu.name)
    bandwidth = gpu.memory_bandwidth_gbps
    if bandwidth is None:
        bandwidth = info.bandwidth_gbps if info else None
    wired = host.gpu_wired_limit_bytes / GIB if host.gpu_wired_limit_bytes else None
    return Device(
        gpu_kind(gpu),
        gpu.name,
        gpu.vendor,
        gpu.cc,
        gpu.memory_total_gib,
        bandwidth,
        gpu.unified_memory,
        wired,
        tflops=info.tflops if info else None,
        tflops_fp8=info.tflops_fp8 if info else None,
        p2p=info.p2p if info else True,
    )


def unused_asks(inventory: Inventory, request: Request) -> list[str]:
    """Notes on what the request or the inventory offers that no plan can use, so that the
    plan never departs from them silently: GPUs in MIG mode (never placed on), and
    model_path_on_every_worker without local weights (it has no effect)."""
    notes = []
    mig = [gpu_key(h.name, g.index) for h in inventory.hosts for g in h.gpus if g.mig_mode]
    if mig:
        notes.append(
            f"GPU(s) {', '.join(mig)} are in MIG mode; xinf-plan places no replica on a MIG GPU "
            "(Xinference's gpu_idx names whole GPUs)."
        )
    if request.model_path_on_every_worker and not any(m.model_path for m in request.models):
        notes.append("model_path_on_every_worker is set but no model has a model_path: it has no effect.")
    return notes


class Capacity:
    """What is still free: GPUs (after headroom and exclusions) and host RAM."""

    def __init__(self, inventory: Inventory, request: Request):
        self.hosts = inventory.hosts
        self.free_gpu: dict[str, dict[int, float]] = {}
        self.free_ram: dict[str, float] = {}
        excluded = set(request.exclude_gpus)
        known = {gpu_key(h.name, g.index) for h in inventory.hosts for g in h.gpus}
        unknown = sorted(excluded - known)
        if unknown:
            raise InvalidInput(
                f"exclude_gpus: {', '.join(unknown)} is not a GPU of this inventory "
                f"(GPUs: {', '.join(sorted(known)) or 'none'})"
            )
        for h in inventory.hosts:
            self.free_gpu[h.name] = {
                g.index: free_gib_after_headroom(g, request.headroom_for(g.memory_total_gib))
                for g in h.gpus
                if gpu_key(h.name, g.index) not in excluded and not g.mig_mode
            }
            self.free_ram[h.name] = (h.memory_available_bytes or h.memory_total_bytes) / GIB

    def gpu_count(self) -> int:
        return sum(len(v) for v in self.free_gpu.values())

    def take(self, host: Host, gpus: tuple[int, ...], ram_gib: float) -> None:
        for i in gpus:
            self.free_gpu[host.name].pop(i, None)
        self.free_ram[host.name] -= ram_gib


@dataclass
class Context:
    inventory: Inventory
    request: Request
    capacity: Capacity
    estimates: object  # estimates.EstimateCache
    local_models: dict = field(default_factory=dict)
    rejected: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    quiet: bool = False  # refuse without the (costly) explanation
    groups: dict = field(default_factory=dict)  # (host, free GPU indexes, width) -> groups
    position: dict = field(default_factory=dict)  # host name -> its index in the inventory

    @classmethod
    def new(cls, inventory: Inventory, request: Request, local_models: dict | None = None, estimates=None) -> "Context":
        from xinf_planner.core.planning.estimates import EstimateCache

        ctx = cls(
            inventory,
            request,
            Capacity(inventory, request),
            estimates or EstimateCache(),
            dict(local_models or {}),
            position={h.name: n for n, h in enumerate(inventory.hosts)},
        )
        ctx.notes.extend(unused_asks(inventory, request))
        return ctx

    def reject(self, candidate: str, reason: str) -> None:
        self.rejected.append({"candidate": candidate, "reason": reason})

    def unique_rejections(self) -> list[dict]:
        """The rejections sorted, each (candidate, reason) once."""
        seen = set()
        out = []
        for r in sorted(self.rejected, key=lambda r: (r["candidate"], r["reason"])):
            key = (r["candidate"], r["reason"])
            if key not in seen:
                seen.add(key)
                out.append(r)
        return out

    def local(self, mreq):
        """The local weights' facts of a model request (None for catalog models)."""
        return self.local_models.get(mreq.model_path) if mreq.model_path else None

    def placeable(self, host: Host) -> bool:
        """Multi-host inventories pin replicas through worker addresses; hosts without one
        can only serve when the inventory has that single host."""
        if len(self.inventory.hosts) == 1 or host.worker_address:
            return True
        note = (
            f"Host {host.name} has no worker_address, so no replica can be pinned to it; "
            "add the worker's ip:port to the inventory to use it."
        )
        if note not in self.notes:
            self.notes.append(note)
        return False

    def host_groups(self, host: Host, idx: list[int], width: int) -> list[Group]:
        key = (host.name, tuple(idx), width)
        if key not in self.groups:
            self.groups[key] = host_groups(host, idx, width, self.capacity.free_gpu[host.name])
        return self.groups[key]

    def devices(self) -> list[tuple[Device, list[tuple[Host, list[int]]]]]:
        """GPU kinds with the free GPUs of that kind on each host, in inventory order."""
        kinds: dict[tuple, tuple[Device, list]] = {}
        for h in self.capacity.hosts:
            free = self.capacity.free_gpu[h.name]
            by_kind: dict[tuple, list[int]] = {}
            for g in h.gpus:
                if g.index in free:
                    by_kind.setdefault(gpu_kind(g), []).append(g.index)
            for kind, idx in by_kind.items():
                if kind not in kinds:
                    kinds[kind] = (device_of(h, h.gpu(idx[0])), [])
                kinds[kind][1].append((h, idx))
        out = []
        for k in sorted(kinds, key=lambda k: (k[1], k[3], k[0], k[2])):
            device, hosts = kinds[k]
            ram = min(self.capacity.free_ram[h.name] for h, _ in hosts)
            out.append((replace(device, host_ram_gib=round(ram, 2)), hosts))
        return out

    def describe(self) -> str:
        """The inventory's free GPUs and RAM, per host, in one line."""
        parts = []
        for h in self.inventory.hosts:
            kinds: dict[str, int] = {}
            for g in h.gpus:
                if g.index in self.capacity.free_gpu[h.name]:
                    kinds[g.name] = kinds.get(g.name, 0) + 1
            gpus = ", ".join(f"{c}× {n}" for n, c in kinds.items()) or "no usable GPU"
            parts.append(f"{h.name}: {gpus}, {h.memory_total_bytes / GIB:.0f} GiB RAM")
        if len(parts) > 4:
            return "; ".join(parts[:3]) + f"; and {len(parts) - 3} more hosts"
        return "; ".join(parts)
