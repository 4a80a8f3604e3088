"""The autostart entries and launch-history records xinf-plan writes (core/persist.py), for the
placements Xinference 4.1.0's autostart can and cannot bring back."""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from support.paths import EXAMPLES

from xinf_planner.core.inventory import Inventory
from xinf_planner.core.persist import (
    REDACTED,
    autostart_form,
    entry_differences,
    forms,
    history_record,
    persist_key,
    refusals,
    server_view,
    targets,
)
from xinf_planner.core.planning import make_plan
from xinf_planner.core.request import request_from_intent


def _plan(hosts_file: str, intent: dict) -> dict:
    inv = Inventory.from_dict(yaml.safe_load((EXAMPLES / "hosts" / hosts_file).read_text()))
    return make_plan(inv, request_from_intent(intent))


def _with_worker(hosts_file: str, addresses: list[str]) -> Inventory:
    doc = yaml.safe_load((EXAMPLES / "hosts" / hosts_file).read_text())
    for host, address in zip(doc["hosts"], addresses):
        host["worker_address"] = address
    return Inventory.from_dict(doc)


def test_a_cpu_deployment_is_written_with_device_cpu_not_a_null_n_gpu():
    plan = _plan("cpu-only-16c-64g.yaml", {"model": "deepseek-r1-distill-qwen:1.5"})
    launch = plan["deployments"][0]["launch"]
    assert "n_gpu" in launch and launch["n_gpu"] is None
    form = autostart_form(plan, plan["deployments"][0])
    assert form.refused is None
    entry = form.entry
    assert "n_gpu" not in entry["launch"] and entry["launch"]["device"] == "cpu"
    # everything else is the plan's launch, keyword for keyword
    rest = {k: v for k, v in launch.items() if k != "n_gpu"}
    assert {k: v for k, v in entry["launch"].items() if k != "device"} == rest
    assert entry["enabled"] is True and entry["priority"] == 100
    assert any("device: cpu" in c for c in form.changes)
    # what the server will show is what we compare against: nothing lost
    assert None not in server_view(entry)["launch"].values()


def test_a_single_host_gpu_plan_is_written_as_it_is():
    plan = _plan("8xh100-sxm.yaml", {"model": "deepseek-r1-distill-qwen:7", "concurrency": 64})
    dep = plan["deployments"][0]
    assert "replica_config" not in dep["launch"] and dep["launch"]["gpu_idx"]
    form = autostart_form(plan, dep)
    assert form.entry["launch"] == dep["launch"] and form.changes == []


def test_replicas_pinned_to_one_worker_become_worker_ip_and_gpu_idx_in_replica_order():
    inv = _with_worker("4x4090-pcie.yaml", ["10.0.0.7:30001"])
    plan = make_plan(inv, request_from_intent({"model": "deepseek-r1-distill-qwen:7", "replicas": 2}))
    dep = plan["deployments"][0]
    rc = dep["launch"]["replica_config"]
    assert len(rc) > 1 and {c["devices"][0]["worker_ip"] for c in rc} == {"10.0.0.7:30001"}
    form = autostart_form(plan, dep)
    launch = form.entry["launch"]
    assert "replica_config" not in launch and "n_gpu" not in launch
    assert launch["worker_ip"] == "10.0.0.7:30001"
    # Xinference gives replica i the i-th equal share of gpu_idx (utils.assign_replica_gpu)
    width = len(rc[0]["devices"][0]["gpu_idx"])
    shares = [launch["gpu_idx"][i * width : (i + 1) * width] for i in range(launch["replica"])]
    assert shares == [c["devices"][0]["gpu_idx"] for c in rc]
    assert "the same placement" in form.changes[0]


def test_replicas_on_several_workers_are_refused_with_the_reason():
    inv = _with_worker("2x8xa100-cluster.yaml", ["10.0.0.11:30001", "10.0.0.12:30001"])
    plan = make_plan(inv, request_from_intent({"model": "deepseek-r1-distill-qwen:7", "replicas": 2}))
    rc = plan["deployments"][0]["launch"]["replica_config"]
    assert {c["devices"][0]["worker_ip"] for c in rc} == {"10.0.0.11:30001", "10.0.0.12:30001"}  # spread
    form = autostart_form(plan, plan["deployments"][0])
    assert form.entry is None
    assert "'dict' object has no attribute 'devices'" in form.refused
    assert "--strategy pack" in form.refused
    assert refusals(plan, [form.name]) == [f"{form.name}: {form.refused}"]
    # packed onto one worker, as the refusal suggests, the same workload can be persisted
    packed = make_plan(
        inv, request_from_intent({"model": "deepseek-r1-distill-qwen:7", "replicas": 2, "strategy": "pack"})
    )
    rc = packed["deployments"][0]["launch"]["replica_config"]
    assert {c["devices"][0]["worker_ip"] for c in rc} == {"10.0.0.11:30001"}
    assert refusals(packed, [packed["deployments"][0]["name"]]) == []
    launch = autostart_form(packed, packed["deployments"][0]).entry["launch"]
    assert launch["worker_ip"] == "10.0.0.11:30001" and launch["gpu_idx"] == [0, 1]


def test_a_replica_sharded_over_hosts_keeps_n_worker_worker_ip_and_gpu_idx():
    plan = yaml.safe_load((EXAMPLES / "cluster" / "plan-r1-fp8.yaml").read_text())
    dep = plan["deployments"][0]
    form = autostart_form(plan, dep)
    launch = form.entry["launch"]
    for key in ("n_worker", "worker_ip", "gpu_idx", "n_gpu", "tensor_parallel_size", "pipeline_parallel_size"):
        assert launch[key] == dep["launch"][key]


def test_server_view_masks_like_xinference_and_differences_never_show_a_secret():
    entry = {
        "enabled": True,
        "priority": 100,
        "max_retries": 3,
        "retry_interval_seconds": 30,
        "launch": {
            "model_uid": "a",
            "model_name": "m",
            "n_gpu": None,
            "wait_ready": False,
            "envs": {"NCCL_SOCKET_IFNAME": "eth0"},
            "hf_token": "s3cret",
        },
    }
    view = server_view(entry)
    assert view["launch"] == {
        "model_uid": "a",
        "model_name": "m",
        "model_type": "LLM",
        "envs": {"NCCL_SOCKET_IFNAME": REDACTED},
        "hf_token": REDACTED,
    }
    assert entry_differences(entry, copy.deepcopy(view)) == []
    changed = copy.deepcopy(view)
    changed["launch"]["context_length"] = 512
    changed["priority"] = 7
    diffs = entry_differences(entry, changed)
    assert diffs == [
        "priority: 100 written, 7 on the server",
        "launch.context_length: not written, 512 on the server",
    ]
    assert "s3cret" not in json.dumps(diffs) and "eth0" not in json.dumps(diffs)
    assert entry_differences(entry, None) == ["no autostart entry"]


def test_sizes_compare_as_the_json_round_trip_gives_them():
    entry = {"enabled": True, "priority": 100, "max_retries": 3, "retry_interval_seconds": 30}
    entry["launch"] = {"model_uid": "a", "model_name": "m", "model_size_in_billions": "1_5"}
    view = server_view(entry)
    assert entry_differences(entry, view) == []
    view["launch"]["model_size_in_billions"] = "7"
    assert entry_differences(entry, view) == ["launch.model_size_in_billions: '1_5' written, '7' on the server"]


def test_who_is_persisted_flag_then_plan_keys_then_what_an_earlier_apply_wrote():
    plan = _plan(
        "8xh100-sxm.yaml",
        {"models": [{"model": "deepseek-r1-distill-qwen:7"}, {"model": "deepseek-r1-distill-qwen:1.5"}]},
    )
    a, b = (d["name"] for d in plan["deployments"])
    assert targets(plan, None) == []
    assert targets(plan, True) == [a, b] and targets(plan, False, {a: "x"}) == []
    assert targets(plan, None, {a: "uid"}) == [a]  # sticky
    plan["request"]["persist"] = True
    assert targets(plan, None) == [a, b]
    plan["deployments"][1]["persist"] = False  # a deployment's own key wins, over sticky too
    assert targets(plan, None, {b: "uid"}) == [a]
    assert persist_key(plan, plan["deployments"][1]) is False


def test_the_intent_key_is_recorded_in_the_plan_request():
    plan = _plan("8xh100-sxm.yaml", {"model": "deepseek-r1-distill-qwen:7", "persist": True})
    assert plan["request"]["persist"] is True
    assert targets(plan, None) == [plan["deployments"][0]["name"]]
    assert "persist" not in _plan("8xh100-sxm.yaml", {"model": "deepseek-r1-distill-qwen:7"})["request"]


def test_priorities_follow_plan_order():
    plan = _plan(
        "8xh100-sxm.yaml",
        {"models": [{"model": "deepseek-r1-distill-qwen:7"}, {"model": "deepseek-r1-distill-qwen:1.5"}]},
    )
    assert [f.entry["priority"] for f in forms(plan)] == [100, 101]


@pytest.mark.parametrize("persisted", [False, True])
def test_history_record(persisted):
    plan = _plan("cpu-only-16c-64g.yaml", {"model": "deepseek-r1-distill-qwen:1.5"})
    dep = plan["deployments"][0]
    form = autostart_form(plan, dep) if persisted else None
    record = history_record(plan, dep, form)
    assert record["model_name"] == dep["launch"]["model_name"] and record["model_uid"] == dep["launch"]["model_uid"]
    assert record["ui_data"] == {"n_gpu": "CPU"}
    if persisted:  # the autostart row's launch must not change when the same row is published
        assert record["data"] == form.entry["launch"]
    else:
        assert record["data"] == dep["launch"] and record["data"]["n_gpu"] is None
