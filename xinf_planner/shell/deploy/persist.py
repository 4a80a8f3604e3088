"""Autostart entries (deployments that come back after a restart) and launch templates, on the
server: the entries' form is ``core/persist.py``; this module reads and writes them.

Apply keeps entries in step with the deployments (``apply --persist``, a plan's ``persist``
key, or an entry an earlier apply wrote, recorded in the state's ``autostart``):

- before a deployment is scaled, replaced or removed, its entry is removed (``suspend``), so
  that Xinference's autostart, which re-launches an entry's model when its last replica dies
  or a worker registers, cannot bring back the old configuration mid-change;
- after every change went through, ``sync`` writes each target's entry (an entry that already
  matches is left alone) and removes the entries of deployments that are no longer targets;
- when the apply fails, ``undo`` removes what this apply wrote and puts back the suspended
  entries of deployments the rollback restored.

Xinference 4.1.0 keeps one enabled entry per model uid; ``POST /v1/autostart/models``
triggers an autostart pass at once, which leaves a READY model alone.
"""

from __future__ import annotations

from xinf_planner.core.persist import autostart_form, entry_differences, forms, history_record, targets
from xinf_planner.core.plan.document import Plan
from xinf_planner.errors import AuthFailed, XinfPlanError
from xinf_planner.shell.state import State, save_state, save_state_noting

MATCHES, MISSING, DIFFERS, REFUSED, UNREADABLE = "matches", "missing", "differs", "cannot persist", "exists"


def entries_by_uid(conn) -> dict[str, dict]:
    return {str((e.get("launch") or {}).get("model_uid")): e for e in conn.autostart_entries()}


def suspend(conn, old_plan, names: list[str], state: State, state_path, reporter) -> list[tuple[str, str, dict]]:
    """Remove the entries of ``names`` (deployments about to change) that the state records;
    returns (name, uid, the entry as the server had it) for ``undo``."""
    recorded = {n: u for n, u in state.autostart.items() if n in names}
    if not recorded:
        return []
    current = entries_by_uid(conn)
    out = []
    for name, uid in recorded.items():
        entry = current.get(uid)
        if entry is not None:
            conn.remove_autostart(uid)
            reporter.line(f"autostart {name}: entry of {uid} removed while {name} changes")
        state.autostart.pop(name, None)
        save_state(state_path, state)
        if entry is not None:
            old = Plan.of(old_plan)
            dep = old.get(name)
            if dep is not None:  # what we wrote before, in full (the server masks env values)
                entry = autostart_form(old, dep, old.names.index(name)).entry or entry
            out.append((name, uid, entry))
    return out


def sync(conn, plan, names: list[str], state: State, state_path, reporter) -> tuple[list[str], list[str]]:
    """Write the entry of every deployment in ``names``; remove the entries the state records
    for deployments that are no longer targets. Returns (written names, removed uids)."""
    plan = Plan.of(plan)
    if not names and not state.autostart:
        return [], []
    current = entries_by_uid(conn)
    written, removed = [], []
    wanted = {}
    for form in forms(plan, names):
        if form.entry is None:  # checked before anything changed (refusals); never silently skipped
            raise XinfPlanError(f"autostart {form.name}: {form.refused}")
        wanted[form.model_uid] = form.name
        if not entry_differences(form.entry, current.get(form.model_uid)):
            reporter.line(f"autostart {form.name}: entry of {form.model_uid} already matches")
        else:
            conn.upsert_autostart(form.entry)
            written.append(form.name)
            how = f" ({'; '.join(form.changes)})" if form.changes else ""
            reporter.line(f"autostart {form.name}: entry of {form.model_uid} written{how}")
        state.autostart[form.name] = form.model_uid
        save_state(state_path, state)
    for name, uid in list(state.autostart.items()):
        if name in names and wanted.get(uid) == name:
            continue
        if uid in current and uid not in wanted:
            conn.remove_autostart(uid)
            removed.append(uid)
            reporter.line(f"autostart {name}: entry of {uid} removed")
        state.autostart.pop(name, None)
        save_state(state_path, state)
    return written, removed


def undo(conn, written: list[str], suspended: list[tuple[str, str, dict]], restored: set[str], plan, state, state_path):
    """After a failed apply: remove the entries this apply wrote, and put back the suspended
    entries of the deployments in ``restored`` (their old configuration runs again).
    Returns (done, left) lines for the failure message."""
    plan = Plan.of(plan)
    done, left = [], []
    for name in written:
        dep = plan.get(name)
        if dep is None:
            continue
        try:
            conn.remove_autostart(dep.uid)
            state.autostart.pop(name, None)
            done.append(f"removed the autostart entry of {dep.uid}")
        except (XinfPlanError, KeyboardInterrupt) as exc:
            left.append(f"autostart entry of {dep.uid} ({exc})")
    for name, uid, entry in suspended:
        if name not in restored:
            left.append(f"autostart entry of {uid} (its deployment changed; apply again to write it)")
            continue
        try:
            conn.upsert_autostart(entry)
            state.autostart[name] = uid
            done.append(f"put back the autostart entry of {uid}")
        except (XinfPlanError, KeyboardInterrupt) as exc:
            left.append(f"autostart entry of {uid} ({exc})")
    save_state_noting(state_path, state, left)
    return done, left


def _read(conn) -> tuple[dict[str, dict] | None, set[str]]:
    """(entries by uid, or None when the credentials may not read them; uids with an enabled
    entry, from the summary any key may read)."""
    try:
        full = entries_by_uid(conn)
        return full, set(full)
    except AuthFailed:
        return None, {str(e.get("model_uid")) for e in conn.autostart_summary() if e.get("enabled", True)}


def report(conn, plan, state: State | None) -> list[dict]:
    """One row per deployment whose entry apply keeps (``status`` and ``diff``): ``entry`` is
    matches, missing, differs, 'cannot persist', or 'exists' (an API key may see only that it
    exists); ``in_step`` whether nothing needs doing. [] when no deployment is persisted."""
    plan = Plan.of(plan)
    recorded = dict(state.autostart) if state else {}
    names = targets(plan, None, recorded)
    stale = {n: u for n, u in recorded.items() if n not in names}
    if not names and not stale:
        return []
    full, enabled = _read(conn)
    rows = []
    for form in forms(plan, names):
        row = {"deployment": form.name, "model_uid": form.model_uid, "entry": MATCHES, "in_step": True, "detail": []}
        if form.entry is None:
            row.update(entry=REFUSED, in_step=False, detail=[form.refused])
        elif full is None:
            row.update(
                entry=UNREADABLE if form.model_uid in enabled else MISSING,
                in_step=form.model_uid in enabled,
                detail=["its contents need a login (--username): API keys may not read autostart entries"],
            )
        else:
            actual = full.get(form.model_uid)
            diffs = entry_differences(form.entry, actual)
            if actual is None:
                row.update(entry=MISSING, in_step=False, detail=["apply would write it"])
            elif diffs:
                row.update(entry=DIFFERS, in_step=False, detail=diffs)
            state_of = (actual or {}).get("state") or {}
            if state_of.get("status") not in (None, "active"):
                row["detail"].append(
                    f"autostart state {state_of.get('status')}: {state_of.get('last_error') or state_of.get('message')}"
                )
        rows.append(row)
    for name, uid in stale.items():
        exists = uid in enabled
        rows.append(
            {
                "deployment": name,
                "model_uid": uid,
                "entry": "stale" if exists else "gone",
                "in_step": not exists,
                "detail": ["no longer persisted by the plan: apply would remove it"] if exists else [],
            }
        )
    return rows


def publish(conn, plan, names: list[str], state: State | None, reporter) -> list[str]:
    """Post each deployment's launch to the launch history (the web UI's launch templates)."""
    plan = Plan.of(plan)
    persisted = set(targets(plan, None, dict(state.autostart) if state else {}))
    out = []
    for i, dep in enumerate(plan.deployments):
        if dep.name not in names:
            continue
        form = autostart_form(plan, dep, i) if dep.name in persisted else None
        conn.publish_launch(history_record(plan, dep, form if form and form.entry else None))
        out.append(dep.name)
        reporter.line(f"published {dep.name} ({dep.uid}): a launch template in the web UI")
    return out
