"""Planned against running, per replica (what ``status`` shows): pure over the plan and the
server's answers (``list_models`` and each planned model's ``get_instance_info``)."""

from __future__ import annotations

from xinf_planner.core.plan.document import Plan
from xinf_planner.core.planning.sharding import parse_worker_ips
from xinf_planner.core.rollout.diff import compare

READY = "READY"


def status_report(plan, running: dict[str, dict], instances: dict[str, dict | None]) -> dict:
    """One row per replica, plus the models no plan owns, and whether all is in sync.

    ``instances`` maps a planned model uid to its ``get_instance_info`` record."""
    plan = Plan.of(plan)
    rows = []
    drift = False
    for dep in plan:
        uid = dep.uid
        placement = dep.placement
        workers = plan.planned_workers(dep)
        inst = instances.get(uid)
        differences = compare(dep.launch, running[uid]) if uid in running else []
        replicas = (inst or {}).get("replica_statuses") or []
        n = max(dep.replicas, len(replicas))
        for i in range(n):
            rep = replicas[i] if i < len(replicas) else {}
            planned_gpus = placement[i].get("gpus") if i < len(placement) else None
            planned_worker = workers[i] if i < len(workers) else None
            status = rep.get("status") or ("MISSING" if uid not in running else "UNKNOWN")
            problems = list(differences) if i == 0 else []
            if i >= dep.replicas:
                problems.append("replica not in the plan")
            worker = rep.get("worker_address")
            if planned_worker and worker and worker not in parse_worker_ips(planned_worker):
                problems.append(f"worker: planned {planned_worker}, running {worker}")
            gpus = rep.get("gpu_idx")
            if planned_gpus and gpus is not None and sorted(gpus) != sorted(planned_gpus):
                problems.append(f"gpus: planned {planned_gpus}, running {gpus}")
            if status != READY or problems:
                drift = True
            rows.append(
                {
                    "deployment": dep.name,
                    "model_uid": uid,
                    "replica": i,
                    "status": status,
                    "worker": worker or planned_worker,
                    "gpus": gpus if gpus is not None else planned_gpus,
                    "error": rep.get("error_message"),
                    "differences": problems,
                }
            )
    owned = set(plan.uids)
    unowned = [
        {
            "model_uid": uid,
            "model_name": d.get("model_name"),
            "model_engine": d.get("model_engine"),
            "replica": d.get("replica"),
        }
        for uid, d in sorted(running.items())
        if uid not in owned
    ]
    return {"in_sync": not drift, "replicas": rows, "unowned": unowned}
