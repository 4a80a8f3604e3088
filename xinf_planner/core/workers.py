"""A cluster's inventory from what each worker's xinf-plan extension reports (pure).

Every Xinference worker that loads the extension (``xinf_planner/extension.py``) answers
``worker_metadata()`` with the inventory host that ``xinf-plan inspect`` would write on that
machine (the same NVML, sysctl and /proc probes), wrapped as::

    {"version": 1, "xinf_plan": "0.1.0", "host": {...inventory host...}, "probe_s": 0.012}

``inventory_from_workers`` joins those hosts, one per registered worker, into a version 1
inventory: each host carries its worker's registered ``ip:port`` as ``worker_address`` and, as
``xinference_models``, the replicas that worker serves now. A worker whose answer cannot be
read is left out, with a note (the inventory must stay valid for the planner).
"""

from __future__ import annotations

from typing import Any

from xinf_planner.core.inventory import Inventory
from xinf_planner.errors import InvalidInput, XinfPlanError

EXTENSION_NAME = "xinf-plan"  # the extension's name: its key in Xinference's worker metadata
METADATA_VERSION = 1
MODELS_KEY = "xinference_models"  # host key: replica uids that worker serves now


def worker_metadata_document(host: dict, probe_s: float, version: str) -> dict:
    """What ``worker_metadata()`` returns: small, JSON- and pickle-safe."""
    return {"version": METADATA_VERSION, "xinf_plan": version, "host": host, "probe_s": round(float(probe_s), 4)}


def _port(address: str) -> str:
    return address.rpartition(":")[2]


def host_names(entries: list[tuple[str, dict]]) -> dict[str, str]:
    """worker address -> host name: the host's own name (the hostname) when no other worker
    has it; otherwise the name and the worker's port ('gpu-a-30001'), as two workers on one
    machine have one hostname."""
    counts: dict[str, int] = {}
    for _, host in entries:
        counts[host["name"]] = counts.get(host["name"], 0) + 1
    out = {}
    for address, host in entries:
        name = host["name"]
        out[address] = name if counts[name] == 1 else f"{name}-{_port(address)}"
    return out


def inventory_from_workers(workers: list[dict[str, Any]], local: bool = False) -> tuple[Inventory, list[str]]:
    """(inventory, notes) from ``[{"address", "resources" (get_extension_resources() of the
    worker, or None), "models": [replica uid, ...], "error": str | None}]``.

    ``local``: the server is ``xinference-local``, whose one worker gets a new random port at
    every start; its address is left out so that plans place replicas by ``gpu_idx`` (which
    a restart keeps) instead of pinning them to an address that will not come back.

    Raises InvalidInput when no worker answered usably (there is no inventory to give)."""
    usable: list[tuple[str, dict]] = []
    notes: list[str] = []
    models: dict[str, list[str]] = {}
    for w in sorted(workers, key=lambda w: str(w.get("address"))):
        address = str(w.get("address"))
        if w.get("error"):
            notes.append(f"worker {address} left out: {w['error']}")
            continue
        host, why = _host_of(w.get("resources"))
        if host is None:
            notes.append(f"worker {address} left out: {why}")
            continue
        usable.append((address, host))
        models[address] = sorted(str(m) for m in w.get("models") or [])
    if not usable:
        raise InvalidInput("no worker reported an xinf-plan inventory" + (f" ({'; '.join(notes)})" if notes else ""))
    names = host_names(usable)
    hosts = []
    for address, host in usable:
        doc = dict(host)
        doc["name"] = names[address]
        if not local:
            doc["worker_address"] = address
        doc[MODELS_KEY] = models[address]
        hosts.append(doc)
    doc = {
        "version": 1,
        "hosts": hosts,
        "notes": [f"read from the xinf-plan extension of {len(hosts)} Xinference worker(s)", *notes],
    }
    if local:
        doc["notes"].insert(
            1,
            f"xinference-local: the worker address ({usable[0][0]} now) changes at every start, so the "
            "inventory leaves it out and plans place replicas by GPU index",
        )
    try:
        return Inventory.from_dict(doc, "cluster inventory"), notes
    except XinfPlanError as exc:  # one bad host must not hide the others
        raise InvalidInput(f"the workers' inventories do not join: {exc}") from None


def _host_of(resources: Any) -> tuple[dict | None, str | None]:
    """The host a worker's ``get_extension_resources()`` carries, checked alone."""
    if not isinstance(resources, dict):
        return None, "it sent no extension resources"
    meta = (resources.get("extensions") or {}).get(EXTENSION_NAME)
    if not isinstance(meta, dict):
        return None, f"it runs no {EXTENSION_NAME!r} extension"
    if meta.get("version") != METADATA_VERSION or not isinstance(meta.get("host"), dict):
        return None, f"its xinf-plan ({meta.get('xinf_plan')}) reports metadata version {meta.get('version')!r}"
    host = meta["host"]
    try:
        Inventory.from_dict({"version": 1, "hosts": [host]}, "worker inventory")
    except XinfPlanError as exc:
        return None, f"its inventory is not valid ({exc})"
    return host, None
