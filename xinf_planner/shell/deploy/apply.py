"""Make a plan real on an Xinference server: preflight, apply with rollback, status, destroy.

The comparisons (``diff``, ``status_report``) are pure functions over plain data (the plan
and what the server lists), so a later ``diff``/rollout feature can reuse them. The rest
drives a ``xinference.Connection`` and keeps the state file current after every change.

Apply, in order (``apply_order``):
1. preflight (nothing changed yet; every problem reported together; the GPU memory that
   the removals below free is counted as free);
2. register the custom models the plan needs (idempotent: an identical registration is
   left as it is);
3. remove the deployments the last applied plan had and this one drops (they free memory);
4. scale or replace, one replica at a time, the deployments that run differently
   (rolling.py);
5. launch each deployment that is not running, in plan order, with ``wait_ready=False``,
   and poll ``get_instance_info``/``get_launch_model_progress`` until every replica is
   READY (or one fails), and smoke-test it with a short chat completion at temperature 0.
On any failure (or Ctrl-C) what this apply launched is terminated and what it registered
is unregistered, unless ``keep_on_failure``; a failed scale/replace first restores its own
deployment (rolling.py). Removals and completed scales/replaces are not undone (the
message names them); everything that ran before is left alone.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable, TextIO

from xinf_planner.errors import (
    ApplyFailed,
    AuthFailed,
    ServerTooOld,
    ServerUnreachable,
    XinfPlanError,
)
from xinf_planner.core.planning.sharding import launch_args, parse_worker_ips, placement_mismatches, unfilled_env
from xinf_planner.shell.state import State, save_state, save_state_noting

LAUNCH_TIMEOUT_S = 900.0
POLL_INTERVAL_S = 1.0
MIN_VERSION = {"context_length": (4, 1), "replica_config": (4, 1)}  # checked against 4.1.0 only
READY, ERROR, CREATING = "READY", "ERROR", "CREATING"
# Launch failures that a second identical launch clears, with why (Xinference 4.1.0):
# replicas of a just-registered local model race to create its cache link
# (model/llm/cache_manager.py, cache_uri: islink check, then os.symlink), and the loser
# fails with "[Errno 17] File exists"; the link then exists and a relaunch succeeds.
TRANSIENT_LAUNCH_ERRORS = [("[Errno 17] File exists", "replicas raced to create the model's cache link")]


def transient_cause(message: str) -> str | None:
    for pattern, cause in TRANSIENT_LAUNCH_ERRORS:
        if pattern in message:
            return cause
    return None


# --- plan helpers (pure) ---------------------------------------------------------------------
def deployments(plan: dict) -> list[dict]:
    return list(plan.get("deployments") or [])


def owned_uids(plan: dict) -> list[str]:
    return [d["launch"]["model_uid"] for d in deployments(plan)]


def _norm_size(value) -> str:
    from xinf_planner.core.sizes import size_key

    return size_key(value)


def _lower(value) -> str:
    return str(value).lower() if value is not None else ""


# fields of a launch that a running model's description also shows, and how to compare them
_COMPARED = [
    ("model_name", str),
    ("model_engine", _lower),
    ("model_format", _lower),
    ("quantization", _lower),
    ("model_size_in_billions", _norm_size),
    ("replica", int),
]


def compare(launch: dict, running: dict) -> list[str]:
    """What differs between a planned launch and a running model's description."""
    out = []
    for key, norm in _COMPARED:
        want = launch.get(key, 1 if key == "replica" else None)
        have = running.get(key)
        if want is None or have is None:
            continue
        try:
            if norm(want) != norm(have):
                out.append(f"{key}: planned {want!r}, running {have!r}")
        except (TypeError, ValueError):
            out.append(f"{key}: planned {want!r}, running {have!r}")
    return out


@dataclass
class Diff:
    to_launch: list[str] = field(default_factory=list)          # deployment names
    unchanged: list[str] = field(default_factory=list)
    differing: list[tuple[str, list[str]]] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{len(self.to_launch)} to launch, {len(self.unchanged)} unchanged"
        if self.differing:
            text += f", {len(self.differing)} differ"
        return text


def diff(plan: dict, running: dict[str, dict]) -> Diff:
    """Plan deployments against the server's models (uid -> description)."""
    out = Diff()
    for dep in deployments(plan):
        uid = dep["launch"]["model_uid"]
        if uid not in running:
            out.to_launch.append(dep["name"])
            continue
        differences = compare(dep["launch"], running[uid])
        if differences:
            out.differing.append((dep["name"], differences))
        else:
            out.unchanged.append(dep["name"])
    return out


def plan_hosts(plan: dict) -> dict[str, dict]:
    """Inventory hosts embedded in the plan, by name."""
    doc = (plan.get("inventory") or {}).get("document") or {}
    return {h.get("name"): h for h in doc.get("hosts") or [] if h.get("name")}


def planned_workers(plan: dict, dep: dict) -> list[str | None]:
    """The worker address each replica is planned on (None when the plan does not say)."""
    cfg = dep["launch"].get("replica_config")
    if cfg:
        return [rc["devices"][0].get("worker_ip") for rc in cfg]
    hosts = plan_hosts(plan)
    out = []
    for place in dep.get("placement") or []:
        host = hosts.get(place.get("host")) or {}
        out.append(host.get("worker_address") or dep["launch"].get("worker_ip"))
    return out


def status_report(plan: dict, running: dict[str, dict], instances: dict[str, dict | None]) -> dict:
    """Planned vs running (pure): one row per replica, plus models no plan owns.

    ``instances`` maps a planned model uid to its ``get_instance_info`` record.
    """
    rows = []
    drift = False
    for dep in deployments(plan):
        launch = dep["launch"]
        uid = launch["model_uid"]
        placement = dep.get("placement") or []
        workers = planned_workers(plan, dep)
        inst = instances.get(uid)
        differences = compare(launch, running[uid]) if uid in running else []
        replicas = (inst or {}).get("replica_statuses") or []
        n = max(int(launch.get("replica", 1)), len(replicas))
        for i in range(n):
            rep = replicas[i] if i < len(replicas) else {}
            planned_gpus = placement[i].get("gpus") if i < len(placement) else None
            planned_worker = workers[i] if i < len(workers) else None
            status = rep.get("status") or ("MISSING" if uid not in running else "UNKNOWN")
            problems = list(differences) if i == 0 else []
            if i >= int(launch.get("replica", 1)):
                problems.append("replica not in the plan")
            worker = rep.get("worker_address")
            if planned_worker and worker and worker not in parse_worker_ips(planned_worker):
                problems.append(f"worker: planned {planned_worker}, running {worker}")
            gpus = rep.get("gpu_idx")
            if planned_gpus and gpus is not None and sorted(gpus) != sorted(planned_gpus):
                problems.append(f"gpus: planned {planned_gpus}, running {gpus}")
            if status != READY or problems:
                drift = True
            rows.append({
                "deployment": dep["name"], "model_uid": uid, "replica": i, "status": status,
                "worker": worker or planned_worker, "gpus": gpus if gpus is not None else planned_gpus,
                "error": rep.get("error_message"), "differences": problems,
            })
    owned = set(owned_uids(plan))
    unowned = [{"model_uid": uid, "model_name": d.get("model_name"), "model_engine": d.get("model_engine"),
                "replica": d.get("replica")} for uid, d in sorted(running.items()) if uid not in owned]
    return {"in_sync": not drift, "replicas": rows, "unowned": unowned}


# --- output -----------------------------------------------------------------------------------
class Reporter:
    """Progress lines: redrawn in place on a terminal, plain lines (on change) otherwise."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self._drawn = 0
        self._last: dict[str, str] = {}

    def line(self, text: str) -> None:
        self._drawn = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def replicas(self, rows: list[tuple[str, str, str]]) -> None:
        """rows: (key, state, text) per replica; off a terminal a line is written only when
        the replica's state changes."""
        if self.tty:
            if self._drawn:
                self.stream.write(f"\x1b[{self._drawn}F")
            for _, _, text in rows:
                self.stream.write("\x1b[2K" + text + "\n")
            self._drawn = len(rows)
            self.stream.flush()
            return
        for key, state, text in rows:
            if self._last.get(key) != state:
                self._last[key] = state
                self.stream.write(text + "\n")
        self.stream.flush()

    def end_replicas(self) -> None:
        self._drawn = 0


def replica_line(uid: str, rep: dict, elapsed: float, progress: float | None) -> str:
    status = rep.get("status") or CREATING
    if status == CREATING and progress is not None:
        status = f"{CREATING} {progress:4.0%}"
    gpus = rep.get("gpu_idx")
    gpu_text = ",".join(map(str, gpus)) if gpus else "cpu" if gpus == [] else "-"
    return (f"  {rep.get('replica_model_uid') or uid}  {status}  worker {rep.get('worker_address') or '-'}"
            f"  gpus {gpu_text}  {elapsed:5.1f}s")


# --- preflight --------------------------------------------------------------------------------
@dataclass
class Preflight:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    to_register: list[tuple[dict, dict]] = field(default_factory=list)  # (block, v2 spec)
    already_registered: list[str] = field(default_factory=list)


def uses_kwarg(plan: dict, key: str) -> bool:
    return any(key in d["launch"] for d in deployments(plan))


def check_version(version: str | None, plan: dict) -> list[str]:
    """Problems when the server is older than a kwarg the plan uses needs (pure)."""
    from xinf_planner.shell.server import parse_version

    have = parse_version(version)
    out = []
    for key, floor in MIN_VERSION.items():
        if have is not None and uses_kwarg(plan, key) and have[:2] < floor:
            out.append(f"the plan uses {key!r}, which needs Xinference >= "
                       f"{'.'.join(map(str, floor))}; the server runs {version}")
    return out


def registration_specs(plan: dict) -> list[tuple[dict, dict]]:
    """(registration block, v2 JSON) for each distinct custom model of the plan (pure)."""
    from xinf_planner.core.registration import registration_spec

    seen, out = set(), []
    for dep in deployments(plan):
        block = dep.get("registration")
        if block and block["model_name"] not in seen:
            seen.add(block["model_name"])
            out.append((block, registration_spec(block, dep["launch"]["model_size_in_billions"])))
    return out


def same_registration(spec: dict, existing: dict) -> bool:
    want = spec["model_specs"][0]
    for have in existing.get("model_specs") or []:
        if (have.get("model_uri") == want["model_uri"] and _lower(have.get("model_format")) == _lower(want["model_format"])
                and _lower(have.get("quantization")) == _lower(want["quantization"])
                and _norm_size(have.get("model_size_in_billions")) == _norm_size(want["model_size_in_billions"])):
            return True
    return False


def _spec_matches(reg: dict, launch: dict) -> bool:
    for spec in reg.get("model_specs") or []:
        if _lower(spec.get("model_format")) != _lower(launch.get("model_format")):
            continue
        if _norm_size(spec.get("model_size_in_billions")) != _norm_size(launch.get("model_size_in_billions")):
            continue
        quants = spec.get("quantizations") or [spec.get("quantization")]
        if any(_lower(q) == _lower(launch.get("quantization")) for q in quants if q is not None):
            return True
    return False


def preflight(conn, plan: dict, todo: list[str], gpu_probe: Callable | None = None,
              old_plan: dict | None = None, removed: list[str] = ()) -> Preflight:
    """Check everything apply relies on, before changing anything. ``todo``: deployment names
    that apply would launch; ``removed``: deployments of ``old_plan`` (the last applied) that
    apply terminates before it launches, whose GPU memory counts as free."""
    result = Preflight()
    deps = [d for d in deployments(plan) if d["name"] in todo]
    gone = [d for d in deployments(old_plan or {}) if d["name"] in removed]

    workers = conn.workers()
    addresses = sorted(w.get("ip_address") for w in workers)
    _check_workers(plan, deps, addresses, result)
    _check_memory(plan, deps, workers, result, gpu_probe, old_plan, gone)
    for dep in deps:
        unfilled = unfilled_env(dep.get("env"))
        if unfilled:
            result.problems.append(f"{dep['name']}: fill in {', '.join(unfilled)} in the plan's env (the network "
                                   "interface that joins the hosts) before apply")

    for block, spec in registration_specs(plan):
        existing = conn.registration(block["model_name"])
        if existing is None:
            result.to_register.append((block, spec))
        elif existing.get("is_builtin") or not same_registration(spec, existing):
            uri = ", ".join(s.get("model_uri") or "?" for s in existing.get("model_specs") or [])
            result.problems.append(f"a different model is already registered as {block['model_name']!r} "
                                   f"({uri or 'builtin'}); rename the plan's registration or unregister it")
        else:
            result.already_registered.append(block["model_name"])

    for dep in deps:
        launch = dep["launch"]
        name = launch["model_name"]
        reg = dep.get("registration")
        if not reg:
            existing = conn.registration(name)
            if existing is None:
                result.problems.append(f"{dep['name']}: model {name!r} is not in the server's registry")
                continue
            if not _spec_matches(existing, launch):
                result.problems.append(
                    f"{dep['name']}: the registry has no {launch.get('model_format')} spec of {name!r} with "
                    f"size {launch.get('model_size_in_billions')} and quantization {launch.get('quantization')!r}")
        engine_model = reg["model_family"] if reg and reg["model_name"] in [b["model_name"] for b, _ in
                                                                              result.to_register] else name
        _check_engine(conn, dep, engine_model, result)
    return result


def _check_workers(plan, deps, addresses, result: Preflight) -> None:
    hosts = plan_hosts(plan)
    for dep in deps:
        for want in [w for ws in planned_workers(plan, dep) for w in parse_worker_ips(ws)]:
            if want and want not in addresses:
                result.problems.append(f"{dep['name']}: worker {want} is not one of the server's workers "
                                       f"({', '.join(addresses) or 'none'})")
        names = {p.get("host") for p in dep.get("placement") or [] if p.get("host")}
        if len(names) > len(addresses):
            result.problems.append(f"{dep['name']}: placed on {len(names)} hosts, but the server has "
                                   f"{len(addresses)} worker(s)")
        for name in sorted(names):
            host = hosts.get(name) or {}
            if not host.get("worker_address") and not dep["launch"].get("replica_config") and len(addresses) > 1:
                result.problems.append(f"{dep['name']}: host {name!r} has no worker address in the plan's "
                                       f"inventory, and the server has {len(addresses)} workers")


def gpu_needs(plan: dict, deps: list[dict], workers: list[str]) -> dict[tuple[str | None, int], float]:
    """GiB the plan counts on per (worker address, GPU index) (pure). A placement that names
    no worker is on the only worker when there is one."""
    only = workers[0] if len(workers) == 1 else None
    needs: dict[tuple[str | None, int], float] = {}
    for dep in deps:
        total = float(((dep.get("estimate") or {}).get("per_gpu_gib") or {}).get("total") or 0)
        workers_of = planned_workers(plan, dep)
        for i, place in enumerate(dep.get("placement") or []):
            worker = (workers_of[i] if i < len(workers_of) else None) or only
            for worker in parse_worker_ips(worker) or [worker]:       # every shard of a sharded replica
                for gpu in place.get("gpus") or []:
                    needs[(worker, gpu)] = needs.get((worker, gpu), 0.0) + total
    return needs


def _freed_text(gib: float) -> str:
    return f" (+{gib:.2f} GiB that the removals free)" if gib > 0 else ""


def memory_problems(needs: dict, workers: list[dict], local_worker: str | None,
                    local_free_gib: dict[int, float] | None,
                    freed: dict | None = None) -> tuple[list[str], list[str]]:
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
                problems.append(f"GPU {idx} has {local_free_gib[idx]:.2f} GiB free{_freed_text(back)}; the "
                                f"plan counted on {need:.2f} GiB")
        elif worker is not None:
            per_worker[worker] = per_worker.get(worker, 0.0) + need
    for worker, need in sorted(per_worker.items()):
        info = by_worker.get(worker)
        if info is None:
            continue  # reported by the worker check
        avail = float(info.get("gpu_vram_available") or 0) / (1 << 30)
        back = sum(gib for (w, _), gib in freed.items() if w == worker)
        if avail + back + 1e-6 < need:
            problems.append(f"worker {worker} has {avail:.2f} GiB of GPU memory free{_freed_text(back)}; the "
                            f"plan counted on {need:.2f} GiB")
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


def _check_memory(plan, deps, workers, result: Preflight, gpu_probe, old_plan=None, gone=()) -> None:
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


def _check_engine(conn, dep: dict, model_name: str, result: Preflight) -> None:
    launch = dep["launch"]
    want = _lower(launch.get("model_engine"))
    try:
        engines = conn.engines(model_name)
    except XinfPlanError as exc:
        if isinstance(exc, (AuthFailed, ServerUnreachable)):
            raise
        result.notes.append(f"{dep['name']}: engines not checked ({exc})")
        return
    found = {_lower(k): v for k, v in (engines or {}).items()}
    if want not in found:
        result.problems.append(f"{dep['name']}: engine {launch.get('model_engine')!r} is unknown to the server "
                               f"for {model_name!r} (known: {', '.join(sorted(engines or {}))})")
        return
    value = found[want]
    if isinstance(value, list):
        formats = {_lower(s.get("model_format")) for s in value if isinstance(s, dict)}
        if formats and _lower(launch.get("model_format")) not in formats:
            result.problems.append(f"{dep['name']}: engine {launch.get('model_engine')} does not serve "
                                   f"{launch.get('model_format')} for {model_name!r}")
        return
    if launch.get("enable_virtual_env") is False:
        result.problems.append(f"{dep['name']}: engine {launch.get('model_engine')} is not installed on the "
                               f"worker ({value}) and the plan turns virtual envs off")
    else:
        result.notes.append(f"{dep['name']}: engine {launch.get('model_engine')} is not installed on the worker "
                            f"({value}); Xinference would install it into a virtual env at launch")


# --- apply -------------------------------------------------------------------------------------
@dataclass
class ApplyOptions:
    smoke_test: bool = True
    keep_on_failure: bool = False
    launch_timeout_s: float = LAUNCH_TIMEOUT_S
    smoke_max_tokens: int = 8
    max_unavailable: int = 1        # rollouts: replicas down at once (rolling.py)
    allow_downtime: bool = False    # rollouts: may a change leave no replica answering


@dataclass
class ApplyResult:
    diff: Diff
    launched: list[str] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)
    smoke: dict = field(default_factory=dict)  # deployment -> SmokeResult
    notes: list[str] = field(default_factory=list)
    rolled: list[str] = field(default_factory=list)  # "scale NAME", "replace NAME", "remove NAME"


class _Step(Exception):
    """Internal: a failure during apply, with the server's message."""


def check_server(conn, plan: dict) -> list[str]:
    """Version floor for the kwargs the plan uses (ServerTooOld, exit 5); returns notes."""
    version = conn.version()
    problems = check_version(version, plan)
    if problems:
        raise ServerTooOld("; ".join(problems))
    if version is None and any(uses_kwarg(plan, key) for key in MIN_VERSION):
        return ["the server's version is unreadable with these credentials (it needs the admin "
                "scope); assuming Xinference >= 4.1"]
    return []


LAUNCH_STEP = "launch"


def apply_order(d: Diff, rollout) -> list[tuple[str, str]]:
    """(kind, deployment name) in the order apply changes things (pure): the removals first,
    since they free memory the rest may need; then the scales and replaces, whose rollout
    ledger (``rolling.prepare``) counts what runs without the removed deployments and
    before the new ones; then the new launches, in plan order."""
    from xinf_planner.core.rollout.steps import REMOVE

    rolled = rollout.rolled()
    return ([(c.kind, c.name) for c in rolled if c.kind == REMOVE]
            + [(c.kind, c.name) for c in rolled if c.kind != REMOVE]
            + [(LAUNCH_STEP, name) for name in d.to_launch])


def apply_plan(conn, plan: dict, state: State, state_path, plan_path: str | None,
               reporter: Reporter, options: ApplyOptions = ApplyOptions(),
               gpu_probe: Callable | None = None) -> ApplyResult:
    """Apply a plan that passed ``plan.check_plan`` (the commands check it before they connect)."""
    from xinf_planner.shell.deploy.rollouts import RolloutFailed, prepare_for_apply, run_change
    from xinf_planner.core.rollout.steps import REMOVE
    from xinf_planner.shell.server import mask_url

    for note in check_server(conn, plan):
        reporter.line(f"note: {note}")
    endpoint = mask_url(conn.url)
    running = conn.running()
    d = diff(plan, running)
    # every deployment that runs differently leaves d as a scale or replace (or NeedsDowntime)
    rollout, facts = prepare_for_apply(conn, plan, state, running, d, options)
    order = apply_order(d, rollout)
    removed = [name for kind, name in order if kind == REMOVE]
    pre = preflight(conn, plan, d.to_launch, gpu_probe, facts.old_plan, removed)
    for note in pre.notes:
        reporter.line(f"note: {note}")
    if pre.problems:
        for problem in pre.problems:
            reporter.line(f"preflight: {problem}")
        raise ApplyFailed(f"preflight found {len(pre.problems)} problem(s); nothing was changed: "
                          + " | ".join(pre.problems))
    result = ApplyResult(diff=d, notes=pre.notes)
    reporter.line(f"plan: {d.summary()}" + "".join(f", {kind} {name}" for kind, name in order
                                                    if kind != LAUNCH_STEP))
    if not order and not pre.to_register:
        state.record_applied(plan, plan_path, endpoint)
        save_state(state_path, state)
        return result

    step = "start"
    changes = {c.name: c for c in rollout.rolled()}
    by_name = {dep["name"]: dep for dep in deployments(plan)}
    try:
        for block, spec in pre.to_register:
            step = f"register {block['model_name']}"
            reporter.line(f"register {block['model_name']} ({block['model_format']}, {block['model_uri']})")
            conn.register(spec, worker_ip=block.get("worker_ip"))
            result.registered.append(block["model_name"])
            state.record_registration(block["model_name"])
            save_state(state_path, state)
        for kind, name in order:
            step = f"{kind} {name}"
            if kind != LAUNCH_STEP:
                run_change(conn, plan, changes[name], rollout, facts, state, state_path, reporter, options)
                result.rolled.append(step)
                continue
            dep = by_name[name]
            launch = dep["launch"]
            reporter.line(f"launch {name}: {launch['model_name']} on {launch['model_engine']}, "
                          f"{launch.get('replica', 1)} replica(s)")
            for attempt in (1, 2):
                step = f"launch {name}"
                uid = conn.launch(launch_args(dep))
                if attempt == 1:
                    result.launched.append(name)
                    state.record_launch(name, uid, launch["model_name"])
                    save_state(state_path, state)
                step = f"wait for {name}"
                try:
                    _wait_ready(conn, launch["model_name"], uid, reporter, options.launch_timeout_s)
                    misplaced = placement_mismatches(dep, planned_workers(plan, dep),
                                                     conn.instance(launch["model_name"], uid))
                    if misplaced:
                        raise _Step("not where the plan put it: " + "; ".join(misplaced))
                    break
                except _Step as exc:
                    cause = transient_cause(str(exc))
                    if attempt == 2 or cause is None:
                        raise
                    reporter.line(f"retry {name} once: {exc} ({cause})")
                    terminate(conn, launch["model_name"], uid)
            if options.smoke_test:
                step = f"smoke test {name}"
                smoke = conn.smoke_chat(uid, max_tokens=options.smoke_max_tokens)
                if smoke.completion_tokens < 1:
                    raise _Step(f"the smoke test of {name} got no tokens back "
                                f"(finish_reason {smoke.finish_reason!r})")
                result.smoke[name] = smoke
                reporter.line(f"smoke test {name}: {smoke.completion_tokens} tokens, first token "
                              f"{smoke.first_token_s * 1000:.0f} ms, {smoke.tokens_per_s:.1f} tokens/s"
                              f"{' (engine)' if smoke.engine_tokens_per_s else ' (end to end)'}, "
                              f"finish_reason {smoke.finish_reason}")
    except (XinfPlanError, _Step, KeyboardInterrupt) as exc:
        raise _failed(exc, step, conn, plan, state, state_path, result, reporter, options,
                      isinstance(exc, RolloutFailed)) from None

    state.record_applied(plan, plan_path, endpoint)
    save_state(state_path, state)
    return result


def _failed(exc, step: str, conn, plan: dict, state: State, state_path, result: ApplyResult,
            reporter: Reporter, options: ApplyOptions, rollout_failed: bool) -> ApplyFailed:
    """The ApplyFailed for a failure at ``step``, after undoing what this apply launched and
    registered (unless keep_on_failure). A failed scale/replace (RolloutFailed) has restored
    its own deployment already and says so; removals and completed changes stay done."""
    reason = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else str(exc)
    failed = reason if rollout_failed else f"{step} failed: {reason}"
    if not rollout_failed:
        reporter.line(f"error: {failed}")      # a rollout reported its own failure
    if result.rolled:
        failed += f"; done before the failure and not undone: {', '.join(result.rolled)}"
    if options.keep_on_failure:
        kept = ", ".join(result.launched + result.registered) or "nothing"
        return ApplyFailed(f"{failed}; kept on the server as asked (--keep-on-failure): {kept}")
    undone, left = rollback(conn, plan, state, state_path, result, reporter)
    what = "also rolled back what this apply launched and registered" if rollout_failed else "rolled back"
    text = f"{failed}; {what}: {', '.join(undone) or 'nothing to undo'}"
    if left:
        text += f"; COULD NOT roll back: {', '.join(left)} (recorded in the state file; run destroy later)"
    return ApplyFailed(text)


def _wait_ready(conn, model_name: str, uid: str, reporter: Reporter, timeout: float) -> None:
    start = time.monotonic()
    seen = False
    try:
        while True:
            inst = conn.instance(model_name, uid)
            elapsed = time.monotonic() - start
            if inst is None:
                if seen or elapsed > 30:
                    raise _Step(f"{uid} disappeared from the server while launching")
                time.sleep(POLL_INTERVAL_S)
                continue
            seen = True
            reps = inst.get("replica_statuses") or []
            errors = [f"{r.get('replica_model_uid')}: {r.get('error_message') or 'failed'}"
                      for r in reps if r.get("status") == ERROR]
            if inst.get("status") == ERROR and not errors:
                errors = [inst.get("error_message") or f"{uid} failed"]
            progress = conn.progress(uid) if not errors else None
            per_rep = {p.get("replica_model_uid"): p.get("progress")
                       for p in (progress or {}).get("replicas") or []}
            reporter.replicas([(r.get("replica_model_uid") or uid,
                                f"{r.get('status')} {r.get('worker_address')} {r.get('gpu_idx')}",
                                replica_line(uid, r, elapsed, per_rep.get(r.get("replica_model_uid"))))
                               for r in reps])
            if errors:
                raise _Step("; ".join(errors))
            if reps and all(r.get("status") == READY for r in reps):
                return
            if elapsed > timeout:
                raise _Step(f"{uid} not ready after {timeout:.0f} s")
            time.sleep(POLL_INTERVAL_S)
    finally:
        reporter.end_replicas()


def rollback(conn, plan: dict, state: State, state_path, result: ApplyResult,
             reporter: Reporter) -> tuple[list[str], list[str]]:
    """Undo what this apply started (launches in reverse, then registrations)."""
    undone, left = [], []
    by_name = {dep["name"]: dep for dep in deployments(plan)}
    for name in reversed(result.launched):
        uid = by_name[name]["launch"]["model_uid"]
        try:
            stopped = terminate(conn, by_name[name]["launch"]["model_name"], uid)
            state.forget_launch(name)
            undone.append(f"terminated {uid}" if stopped else f"{uid} already gone")
        except (XinfPlanError, KeyboardInterrupt) as exc:
            left.append(f"{uid} ({exc})")
    for model_name in reversed(result.registered):
        try:
            conn.unregister(model_name)
            state.forget_registration(model_name)
            undone.append(f"unregistered {model_name}")
        except (XinfPlanError, KeyboardInterrupt) as exc:
            left.append(f"registration {model_name} ({exc})")
    save_state_noting(state_path, state, left)
    for item in undone:
        reporter.line(f"rollback: {item}")
    return undone, left


def terminate(conn, model_name: str, uid: str, timeout: float = 120.0) -> bool:
    """Terminate a model, also one still launching: the server refuses to terminate a
    replica it is still creating ("Model not found in the model list"), so wait for the
    launch to settle, retrying. A model already gone is fine: returns False then."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        if uid not in conn.running():
            inst = conn.instance(model_name, uid)
            if inst is None or inst.get("status") == ERROR:
                return last is not None
        try:
            conn.terminate(uid)
        except (ServerTooOld, AuthFailed, ServerUnreachable):
            raise
        except XinfPlanError as exc:
            last = exc
        else:
            if uid not in conn.running():
                return True
        if time.monotonic() > deadline:
            raise ApplyFailed(f"could not terminate {uid}: {last}")
        time.sleep(2.0)


# --- status and destroy --------------------------------------------------------------------------
def collect_status(conn, plan: dict) -> dict:
    running = conn.running()
    instances = {}
    for dep in deployments(plan):
        uid = dep["launch"]["model_uid"]
        instances[uid] = conn.instance(dep["launch"]["model_name"], uid) if uid in running else None
    return status_report(plan, running, instances)


@dataclass
class DestroyTargets:
    terminate: list[tuple[str, str]] = field(default_factory=list)   # (model_name, uid)
    unregister: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def destroy_targets(plan: dict, state: State, running: dict) -> DestroyTargets:
    """What destroy would touch (pure): the plan's models that the state says xinf-plan
    launched and that still run, and the plan's registrations that xinf-plan made."""
    out = DestroyTargets()
    launched = {d["model_uid"] for d in state.deployments.values()}
    for dep in deployments(plan):
        uid = dep["launch"]["model_uid"]
        if uid not in launched:
            if uid in running:
                out.skipped.append(f"{uid} (running, but not launched by xinf-plan with this state)")
            continue
        if uid in running:
            out.terminate.append((dep["launch"]["model_name"], uid))
    names = {b["model_name"] for b, _ in registration_specs(plan)}
    out.unregister = [n for n in state.registered if n in names]
    return out


def destroy(conn, plan: dict, state: State, state_path, reporter: Reporter,
            targets: DestroyTargets | None = None) -> DestroyTargets:
    targets = targets or destroy_targets(plan, state, conn.running())
    by_uid = {d["model_uid"]: name for name, d in state.deployments.items()}
    for model_name, uid in targets.terminate:
        terminate(conn, model_name, uid)
        reporter.line(f"terminated {uid}")
        state.forget_launch(by_uid.get(uid, ""))
        save_state(state_path, state)
    # launches recorded in the state that no longer run are forgotten too
    for dep in deployments(plan):
        uid = dep["launch"]["model_uid"]
        if uid in by_uid:
            state.forget_launch(by_uid[uid])
    for name in targets.unregister:
        try:
            conn.unregister(name)
            reporter.line(f"unregistered {name}")
        except XinfPlanError as exc:
            if conn.registration(name) is not None:
                raise
            reporter.line(f"{name} was already unregistered ({exc})")
        state.forget_registration(name)
        save_state(state_path, state)
    save_state(state_path, state)
    return targets


def dry_run_calls(plan: dict, endpoint: str, auth_text: str, options: ApplyOptions = ApplyOptions()) -> list[str]:
    """Every client call apply would make, with its arguments (secrets masked), in order (pure).

    Apply skips the register/launch calls of what already runs, which a dry run cannot
    know without calling the server, so every deployment is listed."""
    import json

    def js(value) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)

    calls = [f"Client({endpoint!r})  # {auth_text}",
             "GET /v1/cluster/version",
             "list_models()",
             "GET /v1/cluster/info?detailed=true"]
    specs = registration_specs(plan)
    for block, _ in specs:
        calls.append(f"get_model_registration('LLM', {block['model_name']!r})")
    for dep in deployments(plan):
        launch = dep["launch"]
        if not dep.get("registration"):
            calls.append(f"get_model_registration('LLM', {launch['model_name']!r})")
        reg = dep.get("registration")
        queried = reg["model_family"] if reg else launch["model_name"]  # until registered: its family
        calls.append(f"query_engine_by_model_name({queried!r}, model_type='LLM', enable_virtual_env=False)")
    for block, spec in specs:
        calls.append(f"register_model('LLM', {js(spec)}, persist=True, worker_ip={block.get('worker_ip')!r})")
    for dep in deployments(plan):
        launch = dep["launch"]
        uid = launch["model_uid"]
        args = ", ".join(f"{k}={js(v)}" for k, v in launch_args(dep).items())
        calls.append(f"launch_model({args}, wait_ready=False)")
        calls.append(f"get_instance_info({launch['model_name']!r}, {uid!r}) and "
                     f"get_launch_model_progress({uid!r}), every {POLL_INTERVAL_S:.0f} s until every replica is READY")
        if options.smoke_test:
            calls.append(f"POST /v1/chat/completions {js({'model': uid, 'max_tokens': options.smoke_max_tokens, 'temperature': 0, 'stream': True})}")
    return calls
