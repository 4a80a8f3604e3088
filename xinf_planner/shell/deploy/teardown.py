"""``destroy``: terminate what a plan launched (as the state file records) and unregister
what it registered; nothing else on the server is touched. The autostart entries of those
deployments go first (those ``apply --persist`` recorded, and any enabled entry of a model
destroy terminates), so that Xinference does not launch them again."""

from __future__ import annotations

from dataclasses import dataclass, field

from xinf_planner.core.plan.document import Plan
from xinf_planner.errors import XinfPlanError
from xinf_planner.shell.deploy.wait import terminate
from xinf_planner.shell.state import State, save_state


@dataclass
class DestroyTargets:
    terminate: list[tuple[str, str]] = field(default_factory=list)  # (model_name, uid)
    unregister: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    autostart: list[tuple[str, str]] = field(default_factory=list)  # (deployment, uid) entries to remove


def destroy_targets(plan, state: State, running: dict, entries: set[str] | None = None) -> DestroyTargets:
    """What destroy would touch (pure): the plan's models that the state says xinf-plan
    launched and that still run, and the plan's registrations that xinf-plan made; and the
    autostart entries of those deployments (``entries``: the uids with an enabled entry)."""
    plan = Plan.of(plan)
    out = DestroyTargets()
    launched = set(state.owned_uids())
    enabled = entries or set()
    for dep in plan:
        uid = state.autostart.get(dep.name)
        if uid is None and dep.uid in launched and dep.uid in enabled:
            uid = dep.uid
        if uid is not None and (uid in enabled or entries is None):
            out.autostart.append((dep.name, uid))
    for dep in plan:
        if dep.uid not in launched:
            if dep.uid in running:
                out.skipped.append(f"{dep.uid} (running, but not launched by xinf-plan with this state)")
            continue
        if dep.uid in running:
            out.terminate.append((dep.model_name, dep.uid))
    names = {b["model_name"] for b, _ in plan.registrations()}
    out.unregister = [n for n in state.registered if n in names]
    return out


def destroy(conn, plan, state: State, state_path, reporter, targets: DestroyTargets | None = None) -> DestroyTargets:
    plan = Plan.of(plan)
    targets = targets or destroy_targets(plan, state, conn.running())
    by_uid = {d["model_uid"]: name for name, d in state.deployments.items()}
    for name, uid in targets.autostart:
        conn.remove_autostart(uid)
        reporter.line(f"removed the autostart entry of {uid}")
        state.autostart.pop(name, None)
        save_state(state_path, state)
    for name in [n for n in state.autostart if n in plan.names]:  # entries already gone
        state.autostart.pop(name, None)
    for model_name, uid in targets.terminate:
        terminate(conn, model_name, uid)
        reporter.line(f"terminated {uid}")
        state.forget_launch(by_uid.get(uid, ""))
        save_state(state_path, state)
    # launches recorded in the state that no longer run are forgotten too
    for dep in plan:
        if dep.uid in by_uid:
            state.forget_launch(by_uid[dep.uid])
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
