"""Make a plan real on an Xinference server: preflight, then every change, with undo on failure.

Apply, in order (``apply_order``):
1. preflight (``preflight.py``: nothing changed yet; every problem reported together; the GPU
   memory that the removals below free is counted as free);
2. register the custom models the plan needs (idempotent: an identical registration is
   left as it is);
3. remove the deployments the last applied plan had and this one drops (they free memory);
4. scale or replace, one replica at a time, the deployments that run differently
   (``rollouts.py``);
5. launch each deployment that is not running, in plan order, with ``wait_ready=False``,
   wait until every replica is READY (or one fails, ``wait.py``), and smoke-test it with a
   short chat completion at temperature 0.
With ``--prefetch`` the weights are cached on the workers right after step 2 (``prefetch.py``);
the autostart entries of deployments about to change are removed before step 3 and every
persisted deployment's entry is written after step 5 (``persist.py``); ``--publish`` then adds
each launch to the launch history.
On any failure (or Ctrl-C) what this apply launched is terminated and what it registered
is unregistered (``undo``), unless ``keep_on_failure``; a failed scale/replace first restores
its own deployment (``rollouts.py``). Removals and completed scales/replaces are not undone
(the message names them); everything that ran before is left alone. The state file is saved
after every change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from xinf_planner.core.persist import refusals as persist_refusals
from xinf_planner.core.persist import targets as persist_targets
from xinf_planner.core.plan.document import Plan
from xinf_planner.core.planning.sharding import placement_mismatches
from xinf_planner.core.rollout.diff import (
    ADD,
    REMOVE,
    ROLLED,
    UNCHANGED,
    Change,
    names_of,
    summary,
)
from xinf_planner.errors import ApplyFailed, XinfPlanError
from xinf_planner.shell.deploy import persist
from xinf_planner.shell.deploy.prefetch import prefetch
from xinf_planner.shell.deploy.preflight import check_server, preflight
from xinf_planner.shell.deploy.wait import (
    LAUNCH_TIMEOUT_S,
    LaunchFailed,
    terminate,
    transient_cause,
    wait_ready,
)
from xinf_planner.shell.state import State, save_state, save_state_noting

LAUNCH_STEP = "launch"


@dataclass
class _At:
    """The step apply is at, for the failure message ("wait for NAME failed: ...")."""

    step: str = "start"


@dataclass
class ApplyOptions:
    smoke_test: bool = True
    keep_on_failure: bool = False
    launch_timeout_s: float = LAUNCH_TIMEOUT_S
    smoke_max_tokens: int = 8
    max_unavailable: int = 1  # rollouts: replicas down at once (rollouts.py)
    allow_downtime: bool = False  # rollouts: may a change leave no replica answering
    # autostart, launch templates, weights (persist.py, prefetch.py)
    persist: bool | None = None  # True --persist, False --no-persist, None: the plan and the state decide
    publish: bool = False  # --publish: every deployment's launch into the launch history
    prefetch: bool = False  # --prefetch: weights into the workers' caches before any launch


@dataclass
class ApplyResult:
    changes: list[Change]
    launched: list[str] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)
    smoke: dict = field(default_factory=dict)  # deployment -> SmokeResult
    notes: list[str] = field(default_factory=list)
    rolled: list[str] = field(default_factory=list)  # "scale NAME", "replace NAME", "remove NAME"
    autostart: list[str] = field(default_factory=list)  # deployments whose autostart entry this apply wrote
    suspended: list = field(default_factory=list)  # (name, uid, entry) removed while the deployment changed
    published: list[str] = field(default_factory=list)

    @property
    def unchanged(self) -> list[str]:
        return names_of(self.changes, UNCHANGED)


def apply_order(changes: list[Change]) -> list[tuple[str, str]]:
    """(kind, deployment name) in the order apply changes things (pure): the removals first,
    since they free memory the rest may need; then the scales and replaces, whose rollout
    ledger (``rollouts.prepare``) counts what runs without the removed deployments and
    before the new ones; then the new launches, in plan order."""
    return (
        [(c.kind, c.name) for c in changes if c.kind == REMOVE]
        + [(c.kind, c.name) for c in changes if c.kind in ROLLED and c.kind != REMOVE]
        + [(LAUNCH_STEP, name) for name in names_of(changes, ADD)]
    )


def apply_plan(
    conn,
    plan,
    state: State,
    state_path,
    plan_path: str | None,
    reporter,
    options: ApplyOptions = ApplyOptions(),
    gpu_probe: Callable | None = None,
) -> ApplyResult:
    """Apply a plan that passed ``plan.check_plan`` (the commands check it before they connect)."""
    from xinf_planner.shell.deploy.rollouts import (
        RolloutFailed,
        prepare_for_apply,
        run_change,
    )
    from xinf_planner.shell.server import mask_url

    doc = plan.doc if isinstance(plan, Plan) else plan
    plan = Plan.of(doc)
    for note in check_server(conn, plan):
        reporter.line(f"note: {note}")
    endpoint = mask_url(conn.url)
    running = conn.running()
    # every deployment that runs differently is a scale or replace (or NeedsDowntime)
    rollout, facts = prepare_for_apply(conn, plan, state, running, options)
    order = apply_order(rollout.changes)
    removed = [name for kind, name in order if kind == REMOVE]
    to_launch = names_of(rollout.changes, ADD)
    pre = preflight(conn, plan, to_launch, gpu_probe, facts.old_plan, removed)
    for note in pre.notes:
        reporter.line(f"note: {note}")
    if pre.problems:
        for problem in pre.problems:
            reporter.line(f"preflight: {problem}")
        raise ApplyFailed(
            f"preflight found {len(pre.problems)} problem(s); nothing was changed: " + " | ".join(pre.problems)
        )
    keep = persist_targets(plan, options.persist, state.autostart)
    refused = persist_refusals(plan, keep)
    if refused:
        raise ApplyFailed("cannot persist (nothing was changed): " + " | ".join(refused))
    result = ApplyResult(changes=rollout.changes, notes=pre.notes)
    reporter.line(
        f"plan: {summary(rollout.changes)}" + "".join(f", {kind} {name}" for kind, name in order if kind != LAUNCH_STEP)
    )
    if not order and not pre.to_register and not (keep or state.autostart or options.publish):
        state.record_applied(doc, plan_path, endpoint)
        save_state(state_path, state)
        return result

    at = _At()
    changes = {c.name: c for c in rollout.rolled()}
    try:
        for block, spec in pre.to_register:
            at.step = f"register {block['model_name']}"
            reporter.line(f"register {block['model_name']} ({block['model_format']}, {block['model_uri']})")
            conn.register(spec, worker_ip=block.get("worker_ip"))
            result.registered.append(block["model_name"])
            state.record_registration(block["model_name"])
            save_state(state_path, state)
        if options.prefetch:
            at.step = "prefetch"
            prefetch(conn, plan, names_of(rollout.changes, ADD, *ROLLED), reporter)
        result.suspended = persist.suspend(
            conn, facts.old_plan, [c.name for c in rollout.rolled()], state, state_path, reporter
        )
        for kind, name in order:
            at.step = f"{kind} {name}"
            if kind != LAUNCH_STEP:
                run_change(conn, plan, changes[name], rollout, facts, state, state_path, reporter, options)
                result.rolled.append(at.step)
                continue
            _launch(conn, plan, name, state, state_path, result, reporter, options, at)
        at.step = "autostart"
        result.autostart, _ = persist.sync(conn, plan, keep, state, state_path, reporter)
        if options.publish:
            at.step = "publish"
            result.published = persist.publish(conn, plan, plan.names, state, reporter)
    except (XinfPlanError, KeyboardInterrupt) as exc:
        raise _failed(
            exc, at.step, conn, plan, state, state_path, result, reporter, options, isinstance(exc, RolloutFailed)
        ) from None

    state.record_applied(doc, plan_path, endpoint)
    save_state(state_path, state)
    return result


def _launch(
    conn, plan: Plan, name: str, state: State, state_path, result: ApplyResult, reporter, options: ApplyOptions, at: _At
) -> None:
    """Launch one new deployment, wait for it, check where it landed, smoke-test it."""
    dep = plan.get(name)
    launch = dep.launch
    reporter.line(f"launch {name}: {dep.model_name} on {launch['model_engine']}, {dep.replicas} replica(s)")
    for attempt in (1, 2):
        at.step = f"launch {name}"
        uid = conn.launch(dep.launch_args())
        if attempt == 1:
            result.launched.append(name)
            state.record_launch(name, uid, dep.model_name)
            save_state(state_path, state)
        at.step = f"wait for {name}"
        try:
            wait_ready(conn, dep.model_name, uid, reporter, options.launch_timeout_s)
            misplaced = placement_mismatches(dep.doc, plan.planned_workers(dep), conn.instance(dep.model_name, uid))
            if misplaced:
                raise LaunchFailed("not where the plan put it: " + "; ".join(misplaced))
            break
        except LaunchFailed as exc:
            cause = transient_cause(str(exc))
            if attempt == 2 or cause is None:
                raise
            reporter.line(f"retry {name} once: {exc} ({cause})")
            terminate(conn, dep.model_name, uid)
    if options.smoke_test:
        at.step = f"smoke test {name}"
        smoke = conn.smoke_chat(uid, max_tokens=options.smoke_max_tokens)
        if smoke.completion_tokens < 1:
            raise LaunchFailed(f"the smoke test of {name} got no tokens back (finish_reason {smoke.finish_reason!r})")
        result.smoke[name] = smoke
        reporter.line(
            f"smoke test {name}: {smoke.completion_tokens} tokens, first token "
            f"{smoke.first_token_s * 1000:.0f} ms, {smoke.tokens_per_s:.1f} tokens/s"
            f"{' (engine)' if smoke.engine_tokens_per_s else ' (end to end)'}, "
            f"finish_reason {smoke.finish_reason}"
        )


def _failed(
    exc,
    step: str,
    conn,
    plan: Plan,
    state: State,
    state_path,
    result: ApplyResult,
    reporter,
    options: ApplyOptions,
    rollout_failed: bool,
) -> ApplyFailed:
    """The ApplyFailed for a failure at ``step``, after undoing what this apply launched and
    registered (unless keep_on_failure). A failed scale/replace (RolloutFailed) has restored
    its own deployment already and says so; removals and completed changes stay done."""
    reason = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else str(exc)
    failed = reason if rollout_failed else f"{step} failed: {reason}"
    if not rollout_failed:
        reporter.line(f"error: {failed}")  # a rollout reported its own failure
    if result.rolled:
        failed += f"; done before the failure and not undone: {', '.join(result.rolled)}"
    if options.keep_on_failure:
        kept = ", ".join(result.launched + result.registered) or "nothing"
        return ApplyFailed(f"{failed}; kept on the server as asked (--keep-on-failure): {kept}")
    completed = {step.split(" ", 1)[1] for step in result.rolled}
    restored = {name for name, _, _ in result.suspended if name not in completed}
    auto_done, auto_left = persist.undo(conn, result.autostart, result.suspended, restored, plan, state, state_path)
    undone, left = undo(conn, plan, state, state_path, result, reporter)
    undone, left = auto_done + undone, auto_left + left
    what = "also rolled back what this apply launched and registered" if rollout_failed else "rolled back"
    text = f"{failed}; {what}: {', '.join(undone) or 'nothing to undo'}"
    if left:
        text += f"; COULD NOT roll back: {', '.join(left)} (recorded in the state file; run destroy later)"
    return ApplyFailed(text)


def undo(conn, plan, state: State, state_path, result: ApplyResult, reporter) -> tuple[list[str], list[str]]:
    """Undo what this apply started (launches in reverse, then registrations): (done, left)."""
    plan = Plan.of(plan)
    undone, left = [], []
    for name in reversed(result.launched):
        dep = plan.get(name)
        try:
            stopped = terminate(conn, dep.model_name, dep.uid)
            state.forget_launch(name)
            undone.append(f"terminated {dep.uid}" if stopped else f"{dep.uid} already gone")
        except (XinfPlanError, KeyboardInterrupt) as exc:
            left.append(f"{dep.uid} ({exc})")
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
