"""``status``: read what runs for a plan (the report itself is ``core/rollout/status.py``)."""

from __future__ import annotations

from xinf_planner.core.plan.document import Plan
from xinf_planner.core.rollout.status import status_report


def collect_status(conn, plan) -> dict:
    plan = Plan.of(plan)
    running = conn.running()
    instances = {dep.uid: conn.instance(dep.model_name, dep.uid) if dep.uid in running else None for dep in plan}
    return status_report(plan, running, instances)
