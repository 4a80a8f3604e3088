"""Before apply changes anything: every problem a launch would meet, reported together.

The workers the plan names exist; the GPUs have the memory the plan counts on (per GPU from
NVML on this host, per worker elsewhere, counting what removals free); the registrations do
not clash; the registry has each spec; the engine is installed (or a virtual env may bring
it); the server is new enough for the keywords the plan uses; cross-host env is filled in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from xinf_planner.core.plan.document import Deployment, Plan
from xinf_planner.core.planning.sharding import parse_worker_ips, unfilled_env
from xinf_planner.core.sizes import size_key
from xinf_planner.core.units import GIB
from xinf_planner.errors import (
    AuthFailed,
    ServerTooOld,
    ServerUnreachable,
    XinfPlanError,
)

MIN_VERSION = {"context_length": (4, 1), "replica_config": (4, 1)}  # checked against 4.1.0 only


def _lower(value) -> str:
    return str(value).lower() if value is not None else ""


@dataclass
class Preflight:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    to_register: list[tuple[dict, dict]] = field(default_factory=list)  # (block, v2 spec)
    already_registered: list[str] = field(default_factory=list)


def check_version(version: str | None, plan) -> list[str]:
    """Problems when the server is older than a kwarg the plan uses needs (pure)."""
    from xinf_planner.shell.server import parse_version

    plan = Plan.of(plan)
    have = parse_version(version)
    out = []
    for key, floor in MIN_VERSION.items():
        if have is not None and plan.uses_kwarg(key) and have[:2] < floor:
            out.append(
                f"the plan uses {key!r}, which needs Xinference >= "
                f"{'.'.join(map(str, floor))}; the server runs {version}"
            )
    return out


def check_server(conn, plan) -> list[str]:
    """Version floor for the kwargs the plan uses (ServerTooOld, exit 5); returns notes."""
    plan = Plan.of(plan)
    version = conn.version()
    problems = check_version(version, plan)
    if problems:
        raise ServerTooOld("; ".join(problems))
    if version is None and any(plan.uses_kwarg(key) for key in MIN_VERSION):
        return [
            "the server's version is unreadable with these credentials (it needs the admin "
            "scope); assuming Xinference >= 4.1"
        ]
    return []


def same_registration(spec: dict, existing: dict) -> bool:
    want = spec["model_specs"][0]
    for have in existing.get("model_specs") or []:
        if (
            have.get("model_uri") == want["model_uri"]
            and _lower(have.get("model_format")) == _lower(want["model_format"])
            and _lower(have.get("quantization")) == _lower(want["quantization"])
            and size_key(have.get("model_size_in_billions")) == size_key(want["model_size_in_billions"])
        ):
            return True
    return False


def _spec_matches(reg: dict, launch: dict) -> bool:
    for spec in reg.get("model_specs") or []:
        if _lower(spec.get("model_format")) != _lower(launch.get("model_format")):
            continue
        if size_key(spec.get("model_size_in_billions")) != size_key(launch.get("model_size_in_billions")):
            continue
        quants = spec.get("quantizations") or [spec.get("quantization")]
        if any(_lower(q) == _lower(launch.get("quantization")) for q in quants if q is not None):
            return True
    return False


def preflight(
    conn, plan, todo: list[str], gpu_probe: Callable | None = None, old_plan=None, removed: list[str] = ()
) -> Preflight:
    """Check everything apply relies on, before changing anything. ``todo``: deployment names
    that apply would launch; ``removed``: deployments of ``old_plan`` (the last applied) that
    apply terminates before it launches, whose GPU memory counts as free."""
    plan, old = Plan.of(plan), Plan.of(old_plan)
    result = Preflight()
    deps = [d for d in plan if d.name in todo]
    gone = [d for d in old if d.name in removed]

    workers = conn.workers()
    addresses = sorted(w.get("ip_address") for w in workers)
    _check_workers(plan, deps, addresses, result)
    _check_memory(plan, deps, workers, result, gpu_probe, old, gone)
    for dep in deps:
        unfilled = unfilled_env(dep.env)
        if unfilled:
            result.problems.append(
                f"{dep.name}: fill in {', '.join(unfilled)} in the plan's env (the network "
                "interface that joins the hosts) before apply"
            )

    for block, spec in plan.registrations():
        existing = conn.registration(block["model_name"])
        if existing is None:
            result.to_register.append((block, spec))
        elif existing.get("is_builtin") or not same_registration(spec, existing):
            uri = ", ".join(s.get("model_uri") or "?" for s in existing.get("model_specs") or [])
            result.problems.append(
                f"a different model is already registered as {block['model_name']!r} "
                f"({uri or 'builtin'}); rename the plan's registration or unregister it"
            )
        else:
            result.already_registered.append(block["model_name"])

    registering = [b["model_name"] for b, _ in result.to_register]
    for dep in deps:
        launch = dep.launch
        name = dep.model_name
        reg = dep.registration
        if not reg:
            existing = conn.registration(name)
            if existing is None:
                result.problems.append(f"{dep.name}: model {name!r} is not in the server's registry")
                continue
            if not _spec_matches(existing, launch):
                result.problems.append(
                    f"{dep.name}: the registry has no {launch.get('model_format')} spec of {name!r} with "
                    f"size {launch.get('model_size_in_billions')} and quantization {launch.get('quantization')!r}"
                )
        engine_model = reg["model_family"] if reg and reg["model_name"] in registering else name
        _check_engine(conn, dep, engine_model, result)
    return result


def _check_workers(plan: Plan, deps: list[Deployment], addresses, result: Preflight) -> None:
    for dep in deps:
        for want in [w for ws in plan.planned_workers(dep) for w in parse_worker_ips(ws)]:
            if want and want not in addresses:
                result.problems.append(
                    f"{dep.name}: worker {want} is not one of the server's workers ({', '.join(addresses) or 'none'})"
                )
        names = {p.get("host") for p in dep.placement if p.get("host")}
        if len(names) > len(addresses):
            result.problems.append(
                f"{dep.name}: placed on {len(names)} hosts, but the server has {len(addresses)} worker(s)"
            )
        for name in sorted(names):
            host = plan.hosts.get(name) or {}
            if not host.get("worker_address") and not dep.launch.get("replica_config") and len(addresses) > 1:
                result.problems.append(
                    f"{dep.name}: host {name!r} has no worker address in the plan's "
                    f"inventory, and the server has {len(addresses)} workers"
                )


def gpu_needs(plan, deps: list, workers: list[str]) -> dict[tuple[str | None, int], float]:
    """GiB the plan counts on per (worker address, GPU index) (pure). A placement that names
    no worker is on the only worker when there is one."""
    plan = Plan.of(plan)
    only = workers[0] if len(workers) == 1 else None
    needs: dict[tuple[str | None, int], float] = {}
    for dep in map(Deployment.of, deps):
        total = dep.gpu_gib
        workers_of = plan.planned_workers(dep)
        for i, place in enumerate(dep.placement):
            planned = (workers_of[i] if i < len(workers_of) else None) or only
            for worker in parse_worker_ips(planned) or [planned]:  # every shard of a sharded replica
                for gpu in place.get("gpus") or []:
                    needs[(worker, gpu)] = needs.get((worker, gpu), 0.0) + total
    return needs


def _freed_text(gib: float) -> str:
    return f" (+{gib:.2f} GiB that the removals free)" if gib > 0 else ""


def memory_problems(
    needs: dict,
    workers: list[dict],
    local_worker: str | None,
    local_free_gib: dict[int, float] | None,
    freed: dict | None = None,
) -> tuple[list[str], list[str]]:
    """(problems, notes) comparing free GPU memory with the plan's needs (pure): per GPU from
    NVML for the worker on this host, per worker (Xinference sums its GPUs) elsewhere.
    ``freed``: GiB per (worker, GPU) that deployments terminated before the launches hold
    now (``gpu_needs`` of the removed ones), counted as free."""
    problems, notes = [], []
    freed = freed or {}
    by_worker = {w.get("ip_address"): w for w in workers}
    per_worker: dict[str, float] = {}
    for (worker, idx), need in sorted(needs.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        back = freed.get((worker, idx), 0.0)
        if worker is not None and worker == local_worker:
            if local_free_gib is None:
                if "free GPU memory" not in " ".join(notes):
                    notes.append("free GPU memory not checked on this host: no NVIDIA GPU visible to NVML")
            elif idx not in local_free_gib:
                problems.append(f"GPU {idx} is not present on this host")
            elif local_free_gib[idx] + back + 1e-6 < need:
                problems.append(
                    f"GPU {idx} has {local_free_gib[idx]:.2f} GiB free{_freed_text(back)}; the "
                    f"plan counted on {need:.2f} GiB"
                )
        elif worker is not None:
            per_worker[worker] = per_worker.get(worker, 0.0) + need
    for worker, need in sorted(per_worker.items()):
        info = by_worker.get(worker)
        if info is None:
            continue  # reported by the worker check
        avail = float(info.get("gpu_vram_available") or 0) / GIB
        back = sum(gib for (w, _), gib in freed.items() if w == worker)
        if avail + back + 1e-6 < need:
            problems.append(
                f"worker {worker} has {avail:.2f} GiB of GPU memory free{_freed_text(back)}; the "
                f"plan counted on {need:.2f} GiB"
            )
    return problems, notes


def is_this_host(address: str | None) -> bool:
    """Whether a worker address (ip:port) is on the machine running xinf-plan."""
    import socket

    if not address:
        return False
    ip = address.rsplit(":", 1)[0].strip("[]")
    if ip in ("127.0.0.1", "localhost", "::1") or ip.startswith("127."):
        return True
    try:
        return ip in socket.gethostbyname_ex(socket.gethostname())[2]
    except OSError:
        return False


def _check_memory(plan: Plan, deps, workers, result: Preflight, gpu_probe, old_plan=None, gone=()) -> None:
    addresses = [w.get("ip_address") for w in workers]
    needs = gpu_needs(plan, deps, addresses)
    if not needs:
        return
    freed = gpu_needs(old_plan, list(gone), addresses) if gone else {}
    local = next((a for a in addresses if is_this_host(a)), None)
    free = None
    if local is not None and any(w == local for w, _ in needs) and gpu_probe is not None:
        gpus = gpu_probe()
        free = {g.index: g.memory_free_gib for g in gpus} if gpus else None
    problems, notes = memory_problems(needs, workers, local, free, freed)
    result.problems.extend(problems)
    result.notes.extend(notes)


def _check_engine(conn, dep: Deployment, model_name: str, result: Preflight) -> None:
    launch = dep.launch
    want = _lower(launch.get("model_engine"))
    try:
        engines = conn.engines(model_name)
    except XinfPlanError as exc:
        if isinstance(exc, (AuthFailed, ServerUnreachable)):
            raise
        result.notes.append(f"{dep.name}: engines not checked ({exc})")
        return
    found = {_lower(k): v for k, v in (engines or {}).items()}
    if want not in found:
        result.problems.append(
            f"{dep.name}: engine {launch.get('model_engine')!r} is unknown to the server "
            f"for {model_name!r} (known: {', '.join(sorted(engines or {}))})"
        )
        return
    value = found[want]
    if isinstance(value, list):
        formats = {_lower(s.get("model_format")) for s in value if isinstance(s, dict)}
        if formats and _lower(launch.get("model_format")) not in formats:
            result.problems.append(
                f"{dep.name}: engine {launch.get('model_engine')} does not serve "
                f"{launch.get('model_format')} for {model_name!r}"
            )
        return
    if launch.get("enable_virtual_env") is False:
        result.problems.append(
            f"{dep.name}: engine {launch.get('model_engine')} is not installed on the "
            f"worker ({value}) and the plan turns virtual envs off"
        )
    else:
        result.notes.append(
            f"{dep.name}: engine {launch.get('model_engine')} is not installed on the worker "
            f"({value}); Xinference would install it into a virtual env at launch"
        )
