"""The plan document: building, reading, and semantic validation against its embedded inventory.

A plan is plain data (``plan.schema.json``). ``plan_errors`` checks the schema first, then
what the schema cannot: that the GPUs exist and are free enough, that the engine runs there,
the TP and compute-capability rules, and the launch keywords Xinference itself would reject.
Every error is ``(json_path, message)``. Pure: apply reuses it before it launches anything.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Iterator

from xinf_planner.core import engines, rules
from xinf_planner.core.documents import schema_errors
from xinf_planner.core.inventory import GIB, Inventory, fingerprint
from xinf_planner.core.planning.placement import gpu_key, gpu_kind, reserved_gib
from xinf_planner.errors import InvalidInput, XinfPlanError

SCHEMA = "plan.schema.json"
TOLERANCE_GIB = 0.005  # rounding of the figures a plan prints
LLAMA_CPP_MAX_CONTEXT = 2**31 - 1
_REPLICA_SUFFIX = re.compile(r"-rep\d+$")
_BAD_NAME_CHARS = re.compile(r"[+\\/?%#&=\s]")

Error = tuple[str, str]


def check_plan(doc: Any, name: str = "plan") -> None:
    """Raise InvalidInput naming the first error's JSON path (and how many more)."""
    errors = plan_errors(doc)
    if errors:
        path, msg = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InvalidInput(f"{name}: {path}: {msg}{more}")


def plan_errors(doc: Any) -> list[Error]:
    """Schema errors; when there are none, the semantic errors. Stable order."""
    errors = schema_errors(doc, SCHEMA)
    if errors:
        return errors
    inv, inv_errors = _inventory_of(doc)
    if inv is None:
        return inv_errors
    found = list(inv_errors)
    excluded = set((doc.get("request") or {}).get("exclude_gpus") or [])
    ledger: dict[tuple[str, int], list[tuple[str, float]]] = defaultdict(list)
    ram: dict[str, list[tuple[str, float]]] = defaultdict(list)
    uids: dict[str, int] = {}
    names: dict[str, int] = {}
    for i, dep in enumerate(doc["deployments"]):
        base = f"$.deployments[{i}]"
        found.extend(_identity_errors(dep, base, i, uids, names))
        found.extend(_deployment_errors(dep, base, inv, excluded, ledger, ram))
    found.extend(_ledger_errors(inv, ledger, ram))
    return list(dict.fromkeys(found))  # a rule broken by every replica is one error


# -- inventory -------------------------------------------------------------------------------


def _inventory_of(doc: dict) -> tuple[Inventory | None, list[Error]]:
    section = doc["inventory"]
    if "document" not in section:
        return None, [
            ("$.inventory.document", "is required: validate checks the plan against the inventory it was made for")
        ]
    try:
        inv = Inventory.from_dict(section["document"], "inventory")
    except XinfPlanError as exc:
        text = str(exc).removeprefix("inventory: ")
        path, _, msg = text.partition(": ")
        return None, [("$.inventory.document" + path.removeprefix("$"), msg or text)]
    errors = []
    if section["fingerprint"] != fingerprint(inv):
        errors.append(
            (
                "$.inventory.fingerprint",
                f"{section['fingerprint']} does not match the embedded "
                f"inventory ({fingerprint(inv)}): the inventory was edited after planning",
            )
        )
    return inv, errors


# -- one deployment --------------------------------------------------------------------------


def _identity_errors(dep: dict, base: str, i: int, uids: dict, names: dict) -> Iterator[Error]:
    uid = dep["launch"]["model_uid"]
    if uid in uids:
        yield f"{base}.launch.model_uid", f"{uid!r} is used twice (also $.deployments[{uids[uid]}])"
    uids.setdefault(uid, i)
    if _REPLICA_SUFFIX.search(uid):
        yield f"{base}.launch.model_uid", (f"{uid!r} ends in -rep<N>, which Xinference reserves for replica uids")
    if dep["name"] in names:
        yield f"{base}.name", f"{dep['name']!r} is used twice (also $.deployments[{names[dep['name']]}])"
    names.setdefault(dep["name"], i)


def _deployment_errors(dep: dict, base: str, inv: Inventory, excluded: set, ledger, ram) -> Iterator[Error]:
    launch = dep["launch"]
    lp = f"{base}.launch"
    engine = engines.canonical(launch["model_engine"])
    if engine not in engines.NAMES:
        yield (
            f"{lp}.model_engine",
            f"{launch['model_engine']!r} is not an engine xinf-plan knows ({', '.join(engines.NAMES)})",
        )
        return
    if "context_length" not in launch:
        yield (
            f"{lp}.context_length",
            (
                "is required: without it the engine takes the model's maximum "
                "(131072 or 163840 tokens) and may not start"
            ),
        )
    yield from _placement_kwarg_errors(launch, lp, dep, inv)
    arch, spec, catalog_errors = _catalog_facts(dep, base)
    yield from catalog_errors
    fmt = launch["model_format"]
    if fmt != "mlx" and rules.format_reason(engine, fmt):
        yield f"{lp}.model_format", rules.format_reason(engine, fmt)
    elif fmt == "mlx" and engine != "mlx":
        yield f"{lp}.model_format", rules.format_reason(engine, fmt)
    precision = rules.precision_of(fmt, launch["quantization"], getattr(arch, "checkpoint_quant", None))
    yield from _engine_kwarg_errors(launch, lp, engine)
    for r, place in enumerate(dep["placement"]):
        yield from _replica_errors(dep, place, base, r, inv, engine, arch, precision, excluded, ledger, ram)


def _placement_kwarg_errors(launch: dict, lp: str, dep: dict, inv: Inventory) -> Iterator[Error]:
    replica = launch["replica"]
    placement = dep["placement"]
    if len(placement) != replica:
        yield f"{lp}.replica", f"is {replica} but the placement lists {len(placement)} replicas"
    config = launch.get("replica_config")
    if config is None and (launch.get("n_worker", 1) > 1 or any("hosts" in p for p in placement)):
        yield from _sharded_kwarg_errors(launch, lp, placement, inv)
        return
    if config is not None:
        for key in ("gpu_idx", "worker_ip"):
            if key in launch:
                yield f"{lp}.{key}", "cannot be combined with replica_config (Xinference rejects it)"
        if "n_gpu" in launch and launch["n_gpu"] != "auto":
            yield f"{lp}.n_gpu", "cannot be combined with replica_config (Xinference rejects it)"
        if launch.get("n_worker", 1) > 1:
            yield f"{lp}.n_worker", "cannot be more than 1 with replica_config (Xinference rejects it)"
        if len(config) != replica:
            yield f"{lp}.replica_config", f"has {len(config)} entries but replica is {replica}"
        for r, entry in enumerate(config):
            device = entry["devices"][0]
            n_gpu, idx = device.get("n_gpu", "auto"), device.get("gpu_idx") or []
            if idx and n_gpu != "auto" and n_gpu != len(idx):
                yield (
                    f"{lp}.replica_config[{r}].devices[0].n_gpu",
                    f"is {n_gpu} but gpu_idx lists {len(idx)} GPUs (it must equal it, or be 'auto')",
                )
            if len(set(idx)) != len(idx):
                yield f"{lp}.replica_config[{r}].devices[0].gpu_idx", "lists a GPU twice"
            if r < len(placement):
                yield from _config_matches_placement(entry, placement[r], f"{lp}.replica_config[{r}]", inv)
        return
    gpu_idx = launch.get("gpu_idx")
    apple = _on_apple(placement, inv)
    on_gpus = any(p["gpus"] for p in placement) and not apple
    if apple and gpu_idx is not None:
        yield (
            f"{lp}.gpu_idx",
            (
                "must not be set on Apple silicon: Xinference counts no MPS devices, so the "
                "worker refuses every GPU index"
            ),
        )
        return
    if gpu_idx is not None:
        if len(gpu_idx) % replica:
            yield (
                f"{lp}.gpu_idx",
                (f"has {len(gpu_idx)} GPUs, not a multiple of replica {replica} (Xinference rejects it)"),
            )
        elif len(set(gpu_idx)) != len(gpu_idx):
            yield f"{lp}.gpu_idx", "lists a GPU twice"
        else:
            k = len(gpu_idx) // replica
            for r, place in enumerate(placement[:replica]):
                got = gpu_idx[r * k : (r + 1) * k]
                if list(place["gpus"]) != got:
                    yield (
                        f"{base_of(lp)}.placement[{r}].gpus",
                        f"is {place['gpus']} but Xinference gives replica {r} the slice {got} of gpu_idx",
                    )
        hosts = {p.get("host") for p in placement}
        if len(hosts) > 1 or any("hosts" in p for p in placement):
            yield f"{lp}.gpu_idx", "places replicas on one worker only; several hosts need replica_config"
    elif on_gpus:
        yield (
            f"{lp}",
            ("has no gpu_idx or replica_config: Xinference would choose the GPUs itself, by model count, not memory"),
        )
    elif not apple and launch.get("n_gpu", "auto") is not None:
        yield f"{lp}.n_gpu", ("must be null for replicas on the CPU: 'auto' takes one GPU wherever the worker has one")


def _sharded_kwarg_errors(launch: dict, lp: str, placement: list[dict], inv: Inventory) -> Iterator[Error]:
    """One replica over several workers (n_worker > 1): the hosts, workers and GPUs named must
    agree with each other and with the inventory (Xinference 4.1.0 rules: rules.yaml multi_host)."""
    from xinf_planner.core.planning import sharding as cluster

    base = base_of(lp)
    engine = engines.canonical(launch["model_engine"])
    if not cluster.shards(engine):
        yield (
            f"{lp}.n_worker",
            (
                f"{launch['model_engine']} cannot shard one replica over several workers "
                f"(xinf-plan shards {', '.join(e for e in engines.NAMES if engines.multi_host(e))})"
            ),
        )
    if launch["replica"] != 1 or len(placement) != 1:
        yield (
            f"{lp}.replica",
            (
                "a sharded deployment has exactly one replica: Xinference cannot pin the "
                "workers of each replica of an n_worker launch"
            ),
        )
    place = placement[0]
    hosts = place.get("hosts")
    if not hosts:
        yield f"{base}.placement[0]", "a replica with n_worker > 1 is placed as {hosts: [...], gpus: [...]}"
        return
    n_worker = launch.get("n_worker", 1)
    if n_worker != len(hosts):
        yield f"{lp}.n_worker", f"is {n_worker} but the placement spans {len(hosts)} hosts"
    if len(set(hosts)) != len(hosts):
        yield f"{base}.placement[0].hosts", "lists a host twice"
    addresses = []
    for k, name in enumerate(hosts):
        try:
            address = inv.host(name).worker_address
        except KeyError:
            yield f"{base}.placement[0].hosts[{k}]", f"{name!r} is not in the embedded inventory"
            continue
        if not address:
            yield (
                f"{base}.placement[0].hosts[{k}]",
                f"host {name} has no worker_address, so no shard can be pinned to it",
            )
        addresses.append(address)
    listed = cluster.parse_worker_ips(launch.get("worker_ip"))
    if not listed:
        yield (
            f"{lp}.worker_ip",
            ("is required with n_worker > 1: without it Xinference's scheduler chooses the workers"),
        )
    elif sorted(listed) != sorted(a for a in addresses if a):
        yield (
            f"{lp}.worker_ip",
            f"lists {', '.join(listed)} but the placement's hosts are {', '.join(map(str, addresses))}",
        )
    gpus = list(place["gpus"])
    if launch.get("gpu_idx") != gpus:
        yield f"{lp}.gpu_idx", f"is {launch.get('gpu_idx')} but the placement gives every shard GPUs {gpus}"
    if launch.get("n_gpu") != len(gpus):
        yield (
            f"{lp}.n_gpu",
            (
                f"is {launch.get('n_gpu')!r} but each shard uses {len(gpus)} GPU(s) "
                "(with n_worker, n_gpu is GPUs per worker)"
            ),
        )
    tp, pp = launch.get("tensor_parallel_size"), launch.get("pipeline_parallel_size")
    if engine == "vllm" and tp is not None and (tp * (pp or 1)) != len(gpus) * len(hosts):
        yield (
            f"{lp}.tensor_parallel_size",
            (f"TP {tp} × PP {pp or 1} is not the {len(gpus) * len(hosts)} GPUs of {len(hosts)} hosts × {len(gpus)}"),
        )
    kinds = set()
    for name in hosts:
        try:
            host = inv.host(name)
            kinds.update(gpu_kind(host.gpu(i)) for i in gpus)
        except KeyError:
            continue
    if len(kinds) > 1:
        yield f"{base}.placement[0].hosts", "mixes GPU models across the shards of one replica"


def _on_apple(placement: list[dict], inv: Inventory) -> bool:
    for place in placement:
        try:
            host = inv.host(place.get("host"))
            if any(host.gpu(i).vendor == "apple" for i in place["gpus"]):
                return True
        except KeyError:
            continue
    return False


def base_of(lp: str) -> str:
    return lp.rsplit(".launch", 1)[0]


def _config_matches_placement(entry: dict, place: dict, path: str, inv: Inventory) -> Iterator[Error]:
    device = entry["devices"][0]
    want = [] if _on_apple([place], inv) else list(place["gpus"])
    got = device.get("gpu_idx") or []
    if got != want:
        yield f"{path}.devices[0].gpu_idx", f"is {got} but the placement says {want}"
    host = place.get("host")
    try:
        address = inv.host(host).worker_address
    except KeyError:
        return
    if address and device["worker_ip"] != address:
        yield f"{path}.devices[0].worker_ip", f"is {device['worker_ip']!r} but host {host} is {address!r}"


def _engine_kwarg_errors(launch: dict, lp: str, engine: str) -> Iterator[Error]:
    key = engines.reservation_key(engine)
    if key and key in launch:
        value = launch[key]
        if not isinstance(value, (int, float)) or not 0 < value <= 1:
            yield f"{lp}.{key}", f"is {value!r}; it must be a fraction in (0, 1]"
    if engine == "llama.cpp" and "context_length" in launch:
        slots = launch.get("n_parallel")
        if slots is not None:
            if not isinstance(slots, int) or isinstance(slots, bool) or slots <= 0:
                yield f"{lp}.n_parallel", "must be a positive integer when context_length is set"
            elif engines.slot_context(launch["context_length"], slots) > LLAMA_CPP_MAX_CONTEXT:
                yield f"{lp}.n_parallel", "context_length × n_parallel exceeds llama.cpp's context limit"
        if "n_ctx" in launch and launch["n_ctx"] != engines.slot_context(launch["context_length"], slots or 1):
            yield f"{lp}.n_ctx", "conflicts with context_length (Xinference sets n_ctx itself)"
    if (
        engine == "vllm"
        and "max_model_len" in launch
        and "context_length" in launch
        and launch["max_model_len"] != launch["context_length"]
    ):
        yield f"{lp}.max_model_len", "conflicts with context_length (Xinference rejects both differing)"


def _catalog_facts(dep: dict, base: str):
    """(arch, spec, errors): the model's architecture and the launch's spec in the catalog."""
    from xinf_planner.core import catalog

    launch = dep["launch"]
    errors: list[Error] = []
    arch = None
    spec = None
    local = dep.get("arch")
    try:
        arch = catalog.get_model(dep["model"])
    except XinfPlanError as exc:
        if local is None:
            errors.append((f"{base}.model", str(exc)))
    if local is not None:
        arch = _LocalArch(local, arch)
    registration = dep.get("registration")
    if registration is not None:
        if launch["model_name"] != registration["model_name"]:
            errors.append(
                (
                    f"{base}.launch.model_name",
                    f"is {launch['model_name']!r} but the registration registers {registration['model_name']!r}",
                )
            )
        if _BAD_NAME_CHARS.search(registration["model_name"]):
            errors.append((f"{base}.registration.model_name", "may not contain + \\ / ? % # & = or whitespace"))
        if registration["model_name"] in catalog.families():
            errors.append((f"{base}.registration.model_name", "clashes with a builtin model name"))
        if registration["model_family"] not in catalog.families():
            errors.append(
                (f"{base}.registration.model_family", f"{registration['model_family']!r} is not a builtin R1 family")
            )
        return arch, None, errors
    if arch is None or isinstance(arch, _LocalArch) and arch.catalog is None:
        return arch, None, errors
    if launch["model_name"] != arch.family:
        errors.append(
            (
                f"{base}.launch.model_name",
                f"is {launch['model_name']!r} but the model is {arch.ref} (family {arch.family!r})",
            )
        )
    try:
        spec = catalog.find_spec(arch, launch["model_format"], launch["quantization"])
    except XinfPlanError as exc:
        errors.append((f"{base}.launch.quantization", str(exc)))
        return arch, None, errors
    if not spec.launchable:
        errors.append(
            (
                f"{base}.launch",
                f"{arch.ref} {spec.model_format}/{spec.quantization} is listed "
                f"but Xinference cannot launch it: {'; '.join(spec.notes) or 'not launchable'}",
            )
        )
    hub = launch.get("download_hub") or catalog.DEFAULT_HUB
    if hub not in spec.model_ids:
        errors.append(
            (
                f"{base}.launch.download_hub",
                f"{arch.ref} {spec.model_format}/{spec.quantization} is not on {hub}; it is on {', '.join(spec.hubs)}",
            )
        )
    else:
        want = spec.launch_size(hub)
        got = str(launch["model_size_in_billions"]).replace(".", "_")
        if got != want:
            errors.append(
                (
                    f"{base}.launch.model_size_in_billions",
                    f"is {launch['model_size_in_billions']!r} but this spec is labelled {want!r} on {hub}",
                )
            )
    return arch, spec, errors


class _LocalArch:
    """Architecture facts recorded in a deployment (local weights), over the catalog's."""

    def __init__(self, facts: dict, catalog_arch):
        self.catalog = catalog_arch
        self._facts = facts

    def __getattr__(self, name):
        if name in self._facts:
            return self._facts[name]
        if self.catalog is not None:
            return getattr(self.catalog, name)
        raise AttributeError(name)


def _replica_errors(
    dep, place, base, r, inv, engine, arch, precision, excluded, ledger, ram, shard: tuple[int, int] | None = None
) -> Iterator[Error]:
    launch = dep["launch"]
    path = f"{base}.placement[{r}]"
    if shard is not None:
        path += f".hosts[{shard[0]}]"
    hosts = place.get("hosts")
    if hosts:
        for k, name in enumerate(hosts):
            if name in hosts[:k]:
                continue
            try:
                inv.host(name)
            except KeyError:
                continue  # reported with the launch keywords
            yield from _replica_errors(
                dep,
                {"host": name, "gpus": place["gpus"]},
                base,
                r,
                inv,
                engine,
                arch,
                precision,
                excluded,
                ledger,
                ram,
                shard=(k, len(hosts)),
            )
        return
    try:
        host = inv.host(place["host"])
    except KeyError:
        yield f"{path}.host", f"{place['host']!r} is not in the embedded inventory"
        return
    gpus = []
    for j, idx in enumerate(place["gpus"]):
        try:
            gpus.append(host.gpu(idx))
        except KeyError:
            yield f"{path}.gpus[{j}]", f"host {host.name} has no GPU {idx}"
            return
        if gpu_key(host.name, idx) in excluded:
            yield f"{path}.gpus[{j}]", f"GPU {gpu_key(host.name, idx)} is excluded by the request"
    if len(set(place["gpus"])) != len(place["gpus"]):
        yield f"{path}.gpus", "lists a GPU twice"
        return
    config = launch.get("replica_config")
    if config is not None and not host.worker_address:
        yield f"{path}.host", f"host {host.name} has no worker_address, so replica_config cannot pin it"
    vendor = gpus[0].vendor if gpus else None
    reason = rules.platform_reason(engine, host, vendor)
    if reason:
        yield path, reason
        return
    if len({gpu_kind(g) for g in gpus}) > 1:
        yield f"{path}.gpus", "mixes GPU models in one replica"
        return
    estimate = dep["estimate"]
    per_gpu = estimate["per_gpu_gib"]
    if not gpus:
        need = float(estimate.get("host_gib", per_gpu["total"]))
        ram[host.name].append((path, need))
        return
    cc = gpus[0].cc
    reason = rules.cc_reason(engine, launch["model_format"], precision, cc, gpus[0].name)
    if reason:
        yield path, reason
    if precision == "16" and rules.dtype_for(engine, precision, cc) == "float16" and launch.get("dtype") != "float16":
        yield (
            f"{base}.launch.dtype",
            (f"must be float16: {gpus[0].name} (compute capability {rules.cc_text(cc)}) has no bf16"),
        )
    if engines.tensor_parallel(engine) and arch is not None:
        tp = launch.get("tensor_parallel_size") or launch.get("tp_size") or len(gpus)
        reason = rules.tp_reason(arch, tp, launch["model_format"])
        if reason:
            yield f"{path}.gpus", reason
    too_big = None
    for g in gpus:
        total = g.memory_total_gib
        held = reserved_gib(engine, launch, total, float(per_gpu["total"]))
        ledger[(host.name, g.index)].append((path, held))
        if too_big is None and float(per_gpu["total"]) > g.memory_free_gib + TOLERANCE_GIB:
            too_big = g
    if too_big is not None:
        yield (
            f"{base}.estimate.per_gpu_gib.total",
            f"{per_gpu['total']} GiB does not fit in the {too_big.memory_free_gib:.2f} GiB free on "
            f"{host.name} GPU {too_big.index} (replica {r})",
        )


def _ledger_errors(inv: Inventory, ledger, ram) -> Iterator[Error]:
    for (host_name, idx), holds in sorted(ledger.items()):
        gpu = inv.host(host_name).gpu(idx)
        total = sum(h for _, h in holds)
        if total > gpu.memory_free_gib + TOLERANCE_GIB:
            who = ", ".join(p for p, _ in holds)
            yield (
                holds[-1][0],
                f"reservations on {host_name} GPU {idx} add up to {total:.2f} GiB, more than "
                f"the {gpu.memory_free_gib:.2f} GiB free ({who})",
            )
    for host_name, needs in sorted(ram.items()):
        host = inv.host(host_name)
        avail = (host.memory_available_bytes or host.memory_total_bytes) / GIB
        total = sum(n for _, n in needs)
        if total > avail + TOLERANCE_GIB:
            yield (
                needs[-1][0],
                f"CPU replicas on {host_name} need {total:.2f} GiB of RAM, more than the {avail:.2f} GiB available",
            )
