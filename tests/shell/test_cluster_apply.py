"""The pure parts of apply on a cluster: env placeholders, the launch arguments sent, the
check that replicas landed where the plan put them, and the worker/GPU needs of a sharded
replica (plans from the planner on examples/cluster/2x8xh100.yaml)."""

from __future__ import annotations

import copy

from support.intents import R1_FP8
from support.paths import EXAMPLES

from xinf_planner.core.plan.document import Deployment, Plan
from xinf_planner.core.planning import make_plan
from xinf_planner.core.planning.sharding import (
    launch_args,
    placement_mismatches,
    unfilled_env,
)
from xinf_planner.core.request import request_from_intent
from xinf_planner.core.rollout.status import status_report
from xinf_planner.shell.deploy.preflight import gpu_needs
from xinf_planner.shell.documents import load_inventory


def _r1_plan() -> dict:
    return make_plan(load_inventory(EXAMPLES / "cluster/2x8xh100.yaml"), request_from_intent(R1_FP8))


def test_placeholders_are_refused_and_filled_env_is_sent_as_envs():
    dep = _r1_plan()["deployments"][0]
    assert unfilled_env(dep["env"]) == ["GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"]
    dep["env"] = {"NCCL_SOCKET_IFNAME": "ib0", "GLOO_SOCKET_IFNAME": "ib0"}
    assert unfilled_env(dep["env"]) == []
    args = launch_args(dep)
    assert args["envs"] == {"NCCL_SOCKET_IFNAME": "ib0", "GLOO_SOCKET_IFNAME": "ib0"}
    assert {k: v for k, v in args.items() if k != "envs"} == dep["launch"]


def test_sharded_replica_counts_memory_on_every_worker():
    plan = _r1_plan()
    dep = plan["deployments"][0]
    workers = ["10.0.1.11:30001", "10.0.1.12:30001"]
    needs = gpu_needs(plan, [dep], workers)
    assert sorted(needs) == sorted((w, g) for w in workers for g in range(8))
    assert set(needs.values()) == {dep["estimate"]["per_gpu_gib"]["total"]}


def test_replicas_off_their_planned_worker_or_gpus_are_reported():
    plan = _r1_plan()
    dep = plan["deployments"][0]
    planned = Plan(plan).planned_workers(Deployment(dep))
    good = {
        "replica_statuses": [
            {
                "replica_model_uid": "deepseek-r1-671b-rep0",
                "status": "READY",
                "worker_address": "10.0.1.12:30001",
                "gpu_idx": list(range(8)),
            }
        ]
    }
    assert placement_mismatches(dep, planned, good) == []
    bad = copy.deepcopy(good)
    bad["replica_statuses"][0].update(worker_address="10.0.1.99:30001", gpu_idx=[0, 1])
    problems = placement_mismatches(dep, planned, bad)
    assert len(problems) == 2 and "10.0.1.99" in problems[0] and "[0, 1]" in problems[1]
    # status reads the sharded replica's worker as one of its workers, not as drift
    report = status_report(plan, {"deepseek-r1-671b": dict(dep["launch"])}, {"deepseek-r1-671b": good})
    assert report["replicas"][0]["differences"] == []
