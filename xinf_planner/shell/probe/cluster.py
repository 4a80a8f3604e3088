"""A cluster's inventory, read from its supervisor: ``GET /v1/cluster/info?detailed=true``.

The supervisor lists each worker by its registered ``ip:port`` with a GPU count, the VRAM
total and available summed over its GPUs, and CPU and memory figures (Xinference 4.1.0,
``core/supervisor.py`` ``get_cluster_device_info``; the shape is checked against a real
supervisor in ``tests/integration/test_inspect_cluster.py``). It gives no per-GPU detail: no
GPU model, compute capability, topology, OS or CPU architecture. So:

- a worker with a per-host inventory (``xinf-plan inspect`` run on that host, matched by
  ``worker_address``) takes its GPUs, topology, OS and CPU from it, and its live memory
  figures from the supervisor;
- any other worker is built from the cluster info alone: its GPUs are assumed identical
  (the total divided by the count), named by ``gpu_name`` (looked up in the GPU table for
  the compute capability), on Linux x86_64; each assumption is written in the host's notes.

``inventory_from_cluster_info`` is pure; ``probe_cluster`` adds the one REST call.
"""

from __future__ import annotations

from dataclasses import replace

from xinf_planner.core.inventory import GIB, GPU, Host, Inventory
from xinf_planner.errors import InvalidInput

ASSUMED_OS, ASSUMED_ARCH = "linux", "x86_64"


def worker_host_name(address: str) -> str:
    """A host name for a worker known only by its address: '10.0.0.11:30001' -> '10.0.0.11-30001'."""
    return address.replace(":", "-")


def inventory_from_cluster_info(
    info: list[dict], hosts: Inventory | None = None, gpu_name: str | None = None
) -> tuple[Inventory, list[str]]:
    """(inventory, warnings) from the supervisor's detailed cluster info.

    ``hosts``: per-host inventories (their ``worker_address`` decides which worker each
    describes). ``gpu_name``: the GPU model of workers without one. ``warnings`` are the
    assumptions made, one line each (the command prints them on stderr).
    """
    if not isinstance(info, list):
        raise InvalidInput("the cluster info is not a list of nodes (is this an Xinference supervisor?)")
    workers = sorted(
        (n for n in info if isinstance(n, dict) and n.get("node_type") == "Worker"),
        key=lambda n: str(n.get("ip_address")),
    )
    if not workers:
        raise InvalidInput("the cluster lists no workers: start xinference-worker on each GPU host first")
    known = {h.worker_address: h for h in (hosts.hosts if hosts else []) if h.worker_address}
    addresses = {str(w.get("ip_address")) for w in workers}
    stray = sorted(a for a in known if a not in addresses)
    if stray:
        raise InvalidInput(
            f"--hosts describes worker(s) {', '.join(stray)} that the cluster does not list "
            f"(it lists {', '.join(sorted(addresses))})"
        )
    out: list[Host] = []
    warnings: list[str] = []
    for node in workers:
        address = str(node["ip_address"])
        if address in known:
            out.append(_from_host_inventory(node, known[address]))
            continue
        host, warning = _from_cluster_only(node, gpu_name)
        out.append(host)
        if warning:
            warnings.append(warning)
    inv = Inventory(hosts=out, notes=[f"read from the cluster's supervisor: {len(out)} worker(s)"])
    return Inventory.from_dict(inv.to_dict(), "cluster inventory"), warnings


def _memory(node: dict) -> tuple[int | None, int | None]:
    total = node.get("mem_total")
    avail = node.get("mem_available")
    return (int(total) if total else None), (int(avail) if avail is not None else None)


def _from_host_inventory(node: dict, host: Host) -> Host:
    """The per-host inventory, with the supervisor's live memory figures and a check that the
    GPU count agrees."""
    count = int(node.get("gpu_count") or 0)
    notes = list(host.notes)
    if count != len(host.gpus):
        raise InvalidInput(
            f"worker {node['ip_address']}: the cluster counts {count} GPU(s), the inventory of "
            f"host {host.name} lists {len(host.gpus)}; run xinf-plan inspect on it again"
        )
    total, avail = _memory(node)
    used_now = _used_per_gpu(node, host.gpus)
    gpus = [
        replace(g, memory_used_bytes=min(g.memory_total_bytes, used_now)) if used_now is not None else g
        for g in host.gpus
    ]
    notes.append("GPU detail from this host's own inventory; memory in use from the cluster info")
    return replace(
        host,
        gpus=gpus,
        memory_total_bytes=total or host.memory_total_bytes,
        memory_available_bytes=avail if avail is not None else host.memory_available_bytes,
        notes=notes,
    )


def _used_per_gpu(node: dict, gpus: list[GPU]) -> int | None:
    """The supervisor sums VRAM over a worker's GPUs: spread what is in use evenly (None when
    it does not say)."""
    total, free = node.get("gpu_vram_total"), node.get("gpu_vram_available")
    if not gpus or not isinstance(total, (int, float)) or not isinstance(free, (int, float)) or not total:
        return None
    return max(0, int((total - free) / len(gpus)))


def _from_cluster_only(node: dict, gpu_name: str | None) -> tuple[Host, str | None]:
    from xinf_planner.core.catalog import lookup_gpu

    address = str(node["ip_address"])
    count = int(node.get("gpu_count") or 0)
    total, avail = _memory(node)
    notes = [f"built from the cluster info alone: OS and CPU architecture assumed {ASSUMED_OS} {ASSUMED_ARCH}"]
    gpus: list[GPU] = []
    warning = None
    if count:
        vram_total = node.get("gpu_vram_total")
        if not isinstance(vram_total, (int, float)) or vram_total <= 0:
            raise InvalidInput(f"worker {address}: the cluster counts {count} GPU(s) but no VRAM total")
        if not gpu_name:
            raise InvalidInput(
                f"worker {address} has {count} GPU(s) and the cluster info does not say which: "
                "pass --hosts with the inventory of that host (xinf-plan inspect "
                "--worker-address ...), or --gpu-name"
            )
        info = lookup_gpu(gpu_name)
        if info is None:
            raise InvalidInput(
                f"--gpu-name {gpu_name!r} is not in the GPU table; use the name nvidia-smi prints, or pass --hosts"
            )
        per_gpu = int(vram_total // count)
        used = _used_per_gpu(node, [None] * count) or 0
        for i in range(count):
            gpus.append(
                GPU(
                    index=i,
                    vendor="nvidia",
                    name=info.name,
                    memory_total_bytes=per_gpu,
                    memory_used_bytes=min(per_gpu, used),
                    compute_capability=info.cc,
                    memory_bandwidth_gbps=info.bandwidth_gbps,
                )
            )
        note = (
            f"{count} GPU(s) assumed identical {info.name} of {per_gpu / GIB:.1f} GiB each (the cluster "
            "info sums VRAM per worker and names no GPU model); no topology, so no NVLink is assumed"
        )
        notes.append(note)
        warning = f"worker {address}: {note}"
    host = Host(
        name=worker_host_name(address),
        worker_address=address,
        os=ASSUMED_OS,
        arch=ASSUMED_ARCH,
        cpu_cores=int(node.get("cpu_count") or 1),
        memory_total_bytes=total or 1,
        memory_available_bytes=avail,
        gpus=gpus,
        notes=notes,
    )
    return host, warning


def probe_cluster(conn, hosts: Inventory | None = None, gpu_name: str | None = None) -> tuple[Inventory, list[str]]:
    """The inventory of the cluster behind ``conn`` (an ``xinference.Connection``)."""
    return inventory_from_cluster_info(conn.cluster_info(), hosts, gpu_name)
