"""The hardware inventory, format version 1: dataclasses, merge, validation, fingerprint.
Files are read and written by ``shell/documents.py``.

This is a contract: see the README's "Inventory format" section and
``xinf_planner/schemas/inventory.schema.json``. Unknown optional fields are kept
(round-tripped through ``extra``) so that newer inventories survive older tools.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Iterable

from xinf_planner.core.documents import dump_document, validate_schema
from xinf_planner.core.units import GIB  # noqa: F401  (re-exported: GPU figures are in GiB)
from xinf_planner.errors import InvalidInput

SCHEMA = "inventory.schema.json"


@dataclass
class GPU:
    index: int
    vendor: str
    name: str
    memory_total_bytes: int
    memory_used_bytes: int = 0
    compute_capability: str | None = None
    uuid: str | None = None
    numa_node: int | None = None
    pci_bus_id: str | None = None
    unified_memory: bool = False
    memory_bandwidth_gbps: float | None = None
    mig_mode: bool | None = None
    compute_processes: int | None = None
    gpu_cores: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def memory_free_bytes(self) -> int:
        return max(0, self.memory_total_bytes - self.memory_used_bytes)

    @property
    def memory_total_gib(self) -> float:
        return self.memory_total_bytes / GIB

    @property
    def memory_free_gib(self) -> float:
        return self.memory_free_bytes / GIB

    @property
    def cc(self) -> tuple[int, int] | None:
        """Compute capability as (major, minor), or None when unknown (non-NVIDIA)."""
        if not self.compute_capability:
            return None
        major, _, minor = self.compute_capability.partition(".")
        return int(major), int(minor or 0)


@dataclass
class Host:
    name: str
    os: str
    arch: str
    cpu_cores: int
    memory_total_bytes: int
    gpus: list[GPU] = field(default_factory=list)
    worker_address: str | None = None
    cpu_model: str | None = None
    memory_available_bytes: int | None = None
    memory_bandwidth_gbps: float | None = None  # datasheet (GB/s)
    memory_bandwidth_measured_gbps: float | None = None  # measured by `inspect` (GB/s, read, all threads)
    driver_version: str | None = None
    cuda_version: str | None = None
    gpu_wired_limit_bytes: int | None = None
    topology: list[list[str]] | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def is_apple_silicon(self) -> bool:
        return self.os == "darwin" and self.arch in ("arm64", "aarch64")

    def gpu(self, index: int) -> GPU:
        for g in self.gpus:
            if g.index == index:
                return g
        raise KeyError(index)

    def link(self, a: int, b: int) -> str | None:
        """The topology entry between GPU indexes a and b (nvidia-smi topo vocabulary)."""
        if not self.topology:
            return None
        pos = {g.index: i for i, g in enumerate(self.gpus)}
        try:
            return self.topology[pos[a]][pos[b]]
        except (KeyError, IndexError):
            return None


@dataclass
class Inventory:
    hosts: list[Host]
    version: int = 1
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    # -- (de)serialisation -------------------------------------------------
    def to_dict(self) -> dict:
        out: dict[str, Any] = {"version": self.version, "hosts": [_host_to_dict(h) for h in self.hosts]}
        if self.notes:
            out["notes"] = list(self.notes)
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, doc: Any, name: str = "inventory") -> "Inventory":
        validate_schema(doc, SCHEMA, name)
        inv = cls(
            version=doc["version"],
            hosts=[_host_from_dict(h) for h in doc["hosts"]],
            notes=list(doc.get("notes", [])),
            extra={k: v for k, v in doc.items() if k not in ("version", "hosts", "notes")},
        )
        check_semantics(inv, name)
        return inv


def _split(cls, data: dict) -> tuple[dict, dict]:
    names = {f.name for f in fields(cls)} - {"extra", "gpus"}
    known = {k: v for k, v in data.items() if k in names}
    extra = {k: v for k, v in data.items() if k not in names and k != "gpus"}
    return known, extra


def _gpu_from_dict(d: dict) -> GPU:
    known, extra = _split(GPU, d)
    return GPU(**known, extra=extra)


def _host_from_dict(d: dict) -> Host:
    known, extra = _split(Host, d)
    return Host(**known, gpus=[_gpu_from_dict(g) for g in d.get("gpus", [])], extra=extra)


def _compact(obj, defaults: dict) -> dict:
    out = {}
    for f in fields(obj):
        if f.name in ("extra", "gpus"):
            continue
        value = getattr(obj, f.name)
        if value is None or (f.name in defaults and value == defaults[f.name]):
            continue
        out[f.name] = value
    return out


def _gpu_to_dict(g: GPU) -> dict:
    d = _compact(g, {"notes": []})
    d.setdefault("memory_used_bytes", g.memory_used_bytes)
    d["unified_memory"] = g.unified_memory
    d.update(g.extra)
    return d


def _host_to_dict(h: Host) -> dict:
    d = _compact(h, {"notes": []})
    d["gpus"] = [_gpu_to_dict(g) for g in h.gpus]
    # keep the document order of the README: name first, gpus then topology last
    order = [
        "name",
        "worker_address",
        "os",
        "arch",
        "cpu_model",
        "cpu_cores",
        "memory_total_bytes",
        "memory_available_bytes",
        "memory_bandwidth_gbps",
        "memory_bandwidth_measured_gbps",
        "driver_version",
        "cuda_version",
        "gpu_wired_limit_bytes",
        "gpus",
        "topology",
        "notes",
    ]
    out = {k: d[k] for k in order if k in d}
    out.update({k: v for k, v in d.items() if k not in out})
    out.update(h.extra)
    return out


def check_semantics(inv: Inventory, name: str = "inventory") -> None:
    """Rules the schema cannot express: unique names, GPU indexes, topology shape."""
    seen_names: dict[str, int] = {}
    seen_workers: dict[str, int] = {}
    for i, h in enumerate(inv.hosts):
        if h.name in seen_names:
            raise InvalidInput(
                f"{name}: $.hosts[{i}].name: host name {h.name!r} is used twice (also $.hosts[{seen_names[h.name]}])"
            )
        seen_names[h.name] = i
        if h.worker_address:
            if h.worker_address in seen_workers:
                raise InvalidInput(
                    f"{name}: $.hosts[{i}].worker_address: {h.worker_address!r} is used twice "
                    f"(also $.hosts[{seen_workers[h.worker_address]}])"
                )
            seen_workers[h.worker_address] = i
        seen_idx: set[int] = set()
        for j, g in enumerate(h.gpus):
            if g.index in seen_idx:
                raise InvalidInput(f"{name}: $.hosts[{i}].gpus[{j}].index: GPU index {g.index} is used twice")
            seen_idx.add(g.index)
            if g.memory_used_bytes > g.memory_total_bytes:
                raise InvalidInput(f"{name}: $.hosts[{i}].gpus[{j}].memory_used_bytes: larger than memory_total_bytes")
            if g.vendor == "nvidia" and not g.compute_capability:
                raise InvalidInput(f"{name}: $.hosts[{i}].gpus[{j}].compute_capability: is required for NVIDIA GPUs")
        if h.topology is not None:
            n = len(h.gpus)
            if len(h.topology) != n:
                raise InvalidInput(
                    f"{name}: $.hosts[{i}].topology: has {len(h.topology)} rows but the host has {n} GPUs"
                )
            for r, row in enumerate(h.topology):
                if len(row) != n:
                    raise InvalidInput(f"{name}: $.hosts[{i}].topology[{r}]: has {len(row)} columns, expected {n}")
                if row[r] != "X":
                    raise InvalidInput(f"{name}: $.hosts[{i}].topology[{r}][{r}]: the diagonal must be 'X'")
                for c, cell in enumerate(row):
                    if c != r and cell == "X":
                        raise InvalidInput(f"{name}: $.hosts[{i}].topology[{r}][{c}]: 'X' only on the diagonal")


def inventory_to_text(inv: Inventory, fmt: str = "yaml") -> str:
    return dump_document(inv.to_dict(), fmt)


def merge_inventories(parts: Iterable[tuple[str, Inventory]]) -> Inventory:
    """Join per-host inventories into one. A host name or worker address used twice is an error."""
    hosts: list[Host] = []
    notes: list[str] = []
    owner: dict[str, str] = {}
    owner_worker: dict[str, str] = {}
    for source, inv in parts:
        for h in inv.hosts:
            if h.name in owner:
                raise InvalidInput(f"host name {h.name!r} appears in both {owner[h.name]} and {source}")
            if h.worker_address and h.worker_address in owner_worker:
                raise InvalidInput(
                    f"worker address {h.worker_address!r} appears in both {owner_worker[h.worker_address]} and {source}"
                )
            owner[h.name] = source
            if h.worker_address:
                owner_worker[h.worker_address] = source
            hosts.append(h)
        notes.extend(inv.notes)
    merged = Inventory(hosts=hosts, notes=notes)
    check_semantics(merged, "merged inventory")
    return merged


def fingerprint(inv: Inventory) -> str:
    """A stable short hash of the inventory's content, for plans that refer to it."""
    import hashlib
    import json

    text = json.dumps(inv.to_dict(), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]
