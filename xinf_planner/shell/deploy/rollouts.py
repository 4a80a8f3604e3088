"""Rollouts, the imperative part: read what runs, and carry out the steps that
``core/rollout/steps.py`` ordered, one replica at a time, with a health check after each launch and
the previous configuration restored when a step fails.

A launch step on a model uid that runs is ``add_model_replica(uid, replica_config=PIN)``,
where PIN names the worker (its exact registered address, read from the cluster info: on
``xinference-local`` too) and the GPUs (``gpu_idx``) or the CPU (``n_gpu: 0``). On a uid
that does not run yet it is ``launch_model(**launch, replica=1)`` with the same pin. A
terminate step is ``terminate_model_replica(uid, replica_id)``; the server drops the model
with its last replica. ``add_model_replica`` answers once the replica is loaded, and the
server removes a replica that fails to load (Xinference 4.1.0, core/supervisor.py
``_add_model_replica``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from xinf_planner.core.plan.document import Deployment, Plan
from xinf_planner.core.rollout.diff import (
    REMOVE,
    REPLACE,
    ROLLED,
    SCALE,
    UNCHANGED,
    Change,
    diff_plans,
)
from xinf_planner.core.rollout.steps import (
    LAUNCH,
    NeedsDowntime,
    Step,
    capacities,
    replicas_of,
    rollout_steps,
    steps_dict,
    usage_of,
)
from xinf_planner.errors import ApplyFailed, XinfPlanError
from xinf_planner.shell.deploy.wait import LaunchFailed, terminate, wait_ready
from xinf_planner.shell.state import save_state, save_state_noting


@dataclass
class Facts:
    """What runs, as the server reports it, and what the state says was applied."""

    running: dict
    replica_ids: dict  # uid -> [replica id, ...] ascending
    workers: list  # registered worker addresses
    old_plan: dict | None
    owned: set


def last_applied(state) -> dict | None:
    return state.history[-1]["plan"] if state.history else None


def gather(conn, plan, state, running: dict | None = None) -> Facts:
    running = conn.running() if running is None else running
    old_plan = last_applied(state)
    ids = {}
    names = {}
    for doc in (old_plan, plan):
        for dep in Plan.of(doc):
            names[dep.uid] = dep.model_name
    for uid in running:
        if uid in names:
            inst = conn.instance(running[uid].get("model_name") or names[uid], uid)
            reps = (inst or {}).get("replica_statuses") or []
            ids[uid] = sorted(int(r["replica_id"]) for r in reps if r.get("replica_id") is not None)
    try:
        workers = sorted(w.get("ip_address") for w in conn.workers())
    except XinfPlanError:
        workers = []
    owned = set(state.owned_uids()) | set(Plan.of(old_plan).uids)
    return Facts(running, ids, workers, old_plan, owned)


@dataclass
class Rollout:
    """The changes of a plan against the server, and the steps of each scale/replace."""

    changes: list[Change]
    steps: dict = field(default_factory=dict)  # deployment name -> [Step]
    blocked: dict = field(default_factory=dict)  # deployment name -> why it cannot roll

    @property
    def pending(self) -> bool:
        return any(c.kind != UNCHANGED for c in self.changes)

    def rolled(self) -> list[Change]:
        return [c for c in self.changes if c.kind in ROLLED]

    def to_dict(self) -> dict:
        rows = []
        for c in self.changes:
            row = c.to_dict()
            if c.name in self.steps:
                row["steps"] = steps_dict(self.steps[c.name])
            if c.name in self.blocked:
                row["blocked"] = self.blocked[c.name]
            rows.append(row)
        return {"in_sync": not self.pending, "deployments": rows}


def prepare(plan, facts: Facts, max_unavailable: int = 1, allow_downtime: bool = False) -> Rollout:
    """Classify and order every change (pure over ``facts``); a change that cannot keep a
    replica answering is recorded in ``blocked`` with the reason."""
    plan, old = Plan.of(plan), Plan.of(facts.old_plan)
    changes = diff_plans(plan, old, facts.running, facts.replica_ids, facts.owned)
    out = Rollout(changes)
    capacity = capacities(plan)
    for c in changes:
        if c.kind not in (SCALE, REPLACE):
            continue
        base = _others_usage(plan, c.name, facts.running)
        old_dep = old.get(c.name)
        if old_dep is not None and old_dep.uid != c.old_uid:
            old_dep = None
        try:
            out.steps[c.name] = rollout_steps(
                c,
                plan.get(c.name),
                old_dep,
                facts.replica_ids.get(c.old_uid) or [],
                capacity,
                base,
                max_unavailable,
                allow_downtime,
            )
        except NeedsDowntime as exc:
            out.blocked[c.name] = str(exc)
    return out


def _others_usage(plan: Plan, name: str, running: dict) -> dict:
    used: dict = {}
    for dep in plan:
        if dep.name != name and dep.uid in running:
            for dev, gib in usage_of(replicas_of(dep)).items():
                used[dev] = used.get(dev, 0.0) + gib
    return used


# --- execution ----------------------------------------------------------------------------------
@dataclass
class Done:
    """One step carried out: what to undo."""

    step: Step
    uid: str
    replica_id: int
    pin: dict | None


def pin_for(plan, dep, place: dict, index: int, workers: list[str]) -> dict:
    """The ``replica_config`` entry that puts one replica where the plan places it."""
    plan, dep = Plan.of(plan), Deployment.of(dep)
    rc = dep.launch.get("replica_config")
    if rc and index < len(rc):
        return {"devices": [dict(rc[index]["devices"][0])]}
    host = plan.hosts.get(place.get("host")) or {}
    worker = host.get("worker_address") or dep.launch.get("worker_ip")
    if not worker and len(workers) == 1:
        worker = workers[0]
    if not worker:
        raise ApplyFailed(
            f"{dep.name}: cannot tell which worker hosts {place.get('host')!r} "
            f"(workers: {', '.join(workers) or 'none'}); set worker_address in the inventory"
        )
    gpus = place.get("gpus") or []
    device = {"worker_ip": worker, "gpu_idx": list(gpus)} if gpus else {"worker_ip": worker, "n_gpu": 0}
    return {"devices": [device]}


def first_launch(launch: dict, pin: dict) -> dict:
    """``launch_model`` kwargs for the first replica of a uid, pinned like the others. A CPU
    pin cannot go in replica_config at launch (the worker refuses ``n_gpu`` 0), so a CPU
    replica is launched with ``n_gpu=None`` and ``worker_ip``."""
    args = {k: v for k, v in launch.items() if k not in ("replica_config", "gpu_idx", "worker_ip", "n_gpu")}
    args["replica"] = 1
    device = pin["devices"][0]
    if device.get("gpu_idx") or device.get("n_gpu") not in (0, None):
        args["replica_config"] = [pin]
    else:
        args["n_gpu"] = None
        args["worker_ip"] = device["worker_ip"]
    return args


class RolloutFailed(ApplyFailed):
    pass


def execute(
    conn, plan, change: Change, steps: list[Step], facts: Facts, state, state_path, reporter, options
) -> list[str]:
    """Carry out one change's steps; on failure restore what was changed and raise
    RolloutFailed naming both. Returns the lines it reported."""
    plan = Plan.of(plan)
    new_dep = plan.get(change.name)
    old_dep = Plan.of(facts.old_plan).get(change.name)
    old_launch = old_dep.launch if old_dep else None
    done: list[Done] = []
    lines = []

    def say(text):
        lines.append(text)
        reporter.line(text)

    say(f"{change.kind} {change.name}: {'; '.join(change.fields) or 'no field changes'}")
    total = len(steps)
    try:
        for n, step in enumerate(steps, 1):
            say(f"  step {n}/{total}: {step.text()}")
            t0 = time.monotonic()
            if step.action == LAUNCH:
                rep_id, pin = _launch(conn, plan, new_dep, step, facts, reporter, options)
                done.append(Done(step, step.replica.uid, rep_id, pin))
                if step.replica.uid not in state.owned_uids():  # a new uid: owned from its first replica
                    state.record_launch(_rolling_key(change), step.replica.uid, new_dep.model_name)
                    save_state(state_path, state)
                smoke = _health(conn, step.replica.uid, options)
                say(f"    {step.replica.uid}-rep{rep_id} ready in {time.monotonic() - t0:.1f} s{smoke}")
            else:
                rep_id = _actual_id(done, step)
                pin = _old_pin(plan, old_dep or new_dep, step, facts)
                remaining = conn.terminate_replica(step.replica.uid, rep_id)
                done.append(Done(step, step.replica.uid, rep_id, pin))
                say(
                    f"    {step.replica.uid}-rep{rep_id} terminated; {remaining} replica(s) of "
                    f"{step.replica.uid} remain"
                )
    except (XinfPlanError, KeyboardInterrupt) as exc:
        reason = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else str(exc)
        failed = f"{change.kind} {change.name} failed at step {len(done) + 1}/{total}: {reason}"
        say(f"error: {failed}")
        restored, left = _restore(
            conn, done, old_launch or new_dep.launch, change, state, state_path, reporter, options
        )
        text = (
            f"{failed}; changed before the failure: {', '.join(_changed(done)) or 'nothing'}; "
            f"restored: {', '.join(restored) or 'nothing to restore'}"
        )
        if left:
            text += f"; COULD NOT restore: {', '.join(left)}"
        raise RolloutFailed(text) from None
    rolled = state.deployments.pop(_rolling_key(change), None)
    if rolled is not None:
        state.deployments[change.name] = rolled
    save_state(state_path, state)
    return lines


def _rolling_key(change: Change) -> str:
    """Where the state records a new uid while a rollout runs (the old uid keeps the
    deployment's own entry until the rollout is through)."""
    return f"{change.name}@{change.model_uid}"


def _actual_id(done: list[Done], step: Step) -> int:
    """A replica this rollout launched has the id the server gave it; an old one its own."""
    for d in done:
        if d.step.action == LAUNCH and d.step.replica == step.replica:
            return d.replica_id
    return step.replica.index


def _old_pin(plan, dep, step: Step, facts: Facts) -> dict | None:
    placements = Deployment.of(dep).placement or [{}]
    index = next((i for i, p in enumerate(placements) if p is step.replica.place), 0)
    try:
        return pin_for(plan, dep, step.replica.place or placements[0], index, facts.workers)
    except XinfPlanError:
        return None


def _launch(conn, plan, dep: Deployment, step: Step, facts: Facts, reporter, options) -> tuple[int, dict]:
    uid = step.replica.uid
    placements = dep.placement
    index = next((i for i, p in enumerate(placements) if p is step.replica.place), 0)
    pin = pin_for(plan, dep, step.replica.place or placements[index], index, facts.workers)
    if uid in conn.running():
        added = conn.add_replica(uid, pin, timeout=options.launch_timeout_s)
        return int(added["replica_id"]), pin
    conn.launch(first_launch(dep.launch_args(), pin))
    try:
        wait_ready(conn, dep.model_name, uid, reporter, options.launch_timeout_s)
    except LaunchFailed as exc:  # the server's own message
        raise ApplyFailed(str(exc)) from None
    inst = conn.instance(dep.model_name, uid) or {}
    ids = [int(r["replica_id"]) for r in inst.get("replica_statuses") or [] if r.get("replica_id") is not None]
    return (max(ids) if ids else 0), pin


def _health(conn, uid: str, options) -> str:
    """A smoke chat per replica of ``uid`` (the server routes round robin, so each replica
    answers one); '' when smoke tests are off."""
    if not options.smoke_test:
        return ""
    n = int((conn.running().get(uid) or {}).get("replica") or 1)
    tokens = []
    for _ in range(n):
        smoke = conn.smoke_chat(uid, max_tokens=options.smoke_max_tokens)
        if smoke.completion_tokens < 1:
            raise ApplyFailed(f"the health check of {uid} got no tokens back (finish_reason {smoke.finish_reason!r})")
        tokens.append(smoke.completion_tokens)
    return f"; health check: {n} chat completion(s), {sum(tokens)} tokens"


def _changed(done: list[Done]) -> list[str]:
    return [f"{'launched' if d.step.action == LAUNCH else 'terminated'} {d.uid}-rep{d.replica_id}" for d in done]


def _restore(
    conn, done: list[Done], old_launch: dict, change: Change, state, state_path, reporter, options
) -> tuple[list[str], list[str]]:
    """Undo the steps in reverse: terminate what was launched, relaunch what was terminated
    (on the old uid, with the old configuration and its pin)."""
    restored, left = [], []
    for d in reversed(done):
        label = f"{d.uid}-rep{d.replica_id}"
        try:
            if d.step.action == LAUNCH:
                if d.uid in conn.running():
                    conn.terminate_replica(d.uid, d.replica_id)
                restored.append(f"terminated {label}")
            elif d.uid in conn.running():
                added = conn.add_replica(d.uid, d.pin, timeout=options.launch_timeout_s)
                restored.append(f"relaunched {label} as {d.uid}-rep{added['replica_id']}")
            else:
                conn.launch(first_launch(old_launch, d.pin))
                wait_ready(conn, old_launch["model_name"], d.uid, reporter, options.launch_timeout_s)
                restored.append(f"relaunched {label} as {d.uid}-rep0")
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - keep undoing the rest
            left.append(f"{label} ({exc})")
    if not any(d.step.action == LAUNCH and d.uid in conn.running() for d in done):
        state.deployments.pop(_rolling_key(change), None)
    save_state_noting(state_path, state, left)
    for item in restored:
        reporter.line(f"restore: {item}")
    return restored, left


def remove(conn, change: Change, model_name: str, state, state_path, reporter) -> None:
    terminate(conn, model_name, change.old_uid)
    reporter.line(f"remove {change.name}: terminated {change.old_uid}")
    state.forget_launch(change.name)
    save_state(state_path, state)


# --- the apply hook -------------------------------------------------------------------------------
def prepare_for_apply(conn, plan, state, running: dict, options) -> tuple[Rollout, Facts]:
    """Before apply changes anything: the changes of the plan, with the rollout of every
    scale/replace/remove, checked (NeedsDowntime when one cannot keep a replica answering)."""
    facts = gather(conn, plan, state, running)
    rollout = prepare(plan, facts, options.max_unavailable, options.allow_downtime)
    if rollout.blocked:
        raise NeedsDowntime(
            "; ".join(f"{name}: {why}" for name, why in rollout.blocked.items()) + " (nothing was changed)"
        )
    return rollout, facts


def run_change(
    conn, plan, change: Change, rollout: Rollout, facts: Facts, state, state_path, reporter, options
) -> None:
    """Carry out one scale, replace or remove of ``rollout`` (apply orders them: apply_order)."""
    if change.kind == REMOVE:
        remove(conn, change, Plan.of(facts.old_plan).get(change.name).model_name, state, state_path, reporter)
    else:
        execute(conn, plan, change, rollout.steps[change.name], facts, state, state_path, reporter, options)
