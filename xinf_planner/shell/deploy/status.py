"""``status``: read what runs for a plan (the report itself is ``core/rollout/status.py``)."""

from __future__ import annotations

from xinf_planner.core.plan.document import Plan
from xinf_planner.core.rollout.status import status_report


def collect_status(conn, plan, state=None) -> dict:
    """The report; with persisted deployments (the plan's ``persist`` keys, or entries an
    earlier ``apply --persist`` recorded in ``state``) also ``autostart``: one row per entry,
    and an entry that is missing or differs is drift."""
    from xinf_planner.shell.deploy.persist import report as autostart_report

    plan = Plan.of(plan)
    running = conn.running()
    instances = {dep.uid: conn.instance(dep.model_name, dep.uid) if dep.uid in running else None for dep in plan}
    out = status_report(plan, running, instances)
    rows = autostart_report(conn, plan, state)
    if rows:
        out["autostart"] = rows
        out["in_sync"] = out["in_sync"] and all(r["in_step"] for r in rows)
    return out
