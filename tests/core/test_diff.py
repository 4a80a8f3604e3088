"""Diff classification (pure): every kind, the changed fields, removals, and the steps a
scale or replace gets. The server description is the one recorded from a real
Xinference 4.1.0 (GET /v1/models on the 2-core test VM, tiny GGUF of tests/integration)."""

from __future__ import annotations

import copy

import pytest

from xinf_planner.core.rollout.diff import (
    ADD,
    REMOVE,
    REPLACE,
    SCALE,
    UNCHANGED,
    classify,
    diff_plans,
)
from xinf_planner.shell.deploy.rollouts import Facts, prepare

# GET /v1/models, one entry (recorded on 4.1.0); "context_length" is the registration's, not the launch's
RUNNING = {
    "id": "tiny-a",
    "object": "model",
    "created": 0,
    "owned_by": "xinference",
    "model_type": "LLM",
    "address": "127.0.0.1:41869",
    "accelerators": [],
    "model_name": "tiny-r1",
    "model_lang": ["en", "zh"],
    "model_ability": ["chat", "reasoning"],
    "model_format": "ggufv2",
    "model_size_in_billions": "0_00012",
    "model_family": "deepseek-r1-distill-qwen",
    "quantization": "F32",
    "multimodal_projector": None,
    "model_hub": "huggingface",
    "revision": None,
    "context_length": 2048,
    "strict_system_first": False,
    "model_engine": "llama.cpp",
    "replica": 2,
}


def dep(name="chat", uid="tiny-a", replicas=2, gpus=None, **launch):
    base = {
        "model_uid": uid,
        "model_name": "tiny-r1",
        "model_engine": "llama.cpp",
        "model_format": "ggufv2",
        "model_size_in_billions": "0_00012",
        "quantization": "F32",
        "replica": replicas,
        "n_gpu": None,
        "context_length": 512,
    }
    base.update(launch)
    places = [{"host": "h1", "gpus": (gpus or [[]] * replicas)[i]} for i in range(replicas)]
    return {
        "name": name,
        "launch": base,
        "placement": places,
        "estimate": {"per_gpu_gib": {"total": 30.0}, "host_gib": 1.0},
    }


def plan(*deps, gpus=2):
    return {
        "version": 1,
        "deployments": list(deps),
        "inventory": {
            "fingerprint": "x",
            "document": {
                "hosts": [
                    {
                        "name": "h1",
                        "memory_total_bytes": 64 * 1024**3,
                        "gpus": [{"index": i, "memory_total_bytes": 80 * 1024**3} for i in range(gpus)],
                    }
                ]
            },
        },
    }


def test_unchanged_when_plan_and_server_agree():
    c = classify(dep(), dep(), RUNNING, 2)
    assert (c.kind, c.fields, c.old_uid) == (UNCHANGED, [], "tiny-a")


def test_add_when_nothing_runs_for_the_deployment():
    c = classify(dep(replicas=3), None, None, None)
    assert (c.kind, c.old_replicas, c.new_replicas) == (ADD, 0, 3)


def test_scale_is_the_replica_count_alone():
    c = classify(dep(replicas=3), dep(), RUNNING, 2)
    assert (c.kind, c.fields) == (SCALE, ["replica: 2 -> 3"])


@pytest.mark.parametrize(
    "change, field",
    [
        ({"context_length": 1024}, "context_length: 512 -> 1024"),
        ({"model_engine": "vLLM"}, "model_engine: 'llama.cpp' -> 'vLLM'"),
        ({"quantization": "Q4_K_M"}, "quantization: 'F32' -> 'Q4_K_M'"),
        ({"model_format": "pytorch"}, "model_format: 'ggufv2' -> 'pytorch'"),
        ({"n_parallel": 4}, "n_parallel: None -> 4"),
        ({"model_uid": "tiny-b"}, "model_uid: 'tiny-a' -> 'tiny-b'"),
    ],
)
def test_replace_names_each_changed_field(change, field):
    c = classify(dep(**change), dep(), RUNNING, 2)
    assert c.kind == REPLACE and c.fields == [field]


def test_replace_on_a_placement_change_and_scale_together():
    old = dep(gpus=[[0], [1]])
    new = dep(replicas=3, gpus=[[0], [0], [1]])
    c = classify(new, old, RUNNING, 2)
    assert c.kind == REPLACE and c.fields == ["placement[1]: h1:1 -> h1:0"]


def test_engine_names_compare_as_the_server_matches_them():
    # the server reports "llama.cpp"; a plan may spell engines in another case
    assert classify(dep(model_engine="LLAMA.CPP"), dep(), RUNNING, 2).kind == UNCHANGED


def test_without_a_recorded_plan_only_what_the_server_shows_is_compared():
    assert classify(dep(context_length=4096), None, RUNNING, 2).kind == UNCHANGED
    c = classify(dep(quantization="Q8_0"), None, RUNNING, 2)
    assert c.kind == REPLACE and c.fields == ["quantization: 'F32' -> 'Q8_0'"]


def test_diff_plans_removes_only_what_xinf_plan_launched():
    old = plan(dep(), dep(name="gone", uid="tiny-g"), dep(name="foreign", uid="tiny-f"))
    new = plan(dep(replicas=1), dep(name="fresh", uid="tiny-n"))
    running = {"tiny-a": RUNNING, "tiny-g": dict(RUNNING, id="tiny-g"), "tiny-f": dict(RUNNING, id="tiny-f")}
    changes = diff_plans(new, old, running, {"tiny-a": [0, 1], "tiny-g": [0, 1]}, owned={"tiny-a", "tiny-g"})
    assert [(c.name, c.kind) for c in changes] == [("chat", SCALE), ("fresh", ADD), ("gone", REMOVE)]


def test_a_new_uid_matches_the_deployment_by_name():
    changes = diff_plans(plan(dep(uid="tiny-b")), plan(dep()), {"tiny-a": RUNNING}, {"tiny-a": [0, 1]}, {"tiny-a"})
    (c,) = changes
    assert (c.kind, c.old_uid, c.model_uid) == (REPLACE, "tiny-a", "tiny-b")


def _facts(old_plan, ids):
    return Facts(
        running={"tiny-a": RUNNING},
        replica_ids={"tiny-a": ids},
        workers=["127.0.0.1:45766"],
        old_plan=old_plan,
        owned={"tiny-a"},
    )


def test_prepare_orders_a_gpu_replace_and_reports_it():
    # two 30 GiB replicas on two 80 GiB GPUs: a new one fits beside an old one
    old = plan(dep(gpus=[[0], [1]]))
    new = copy.deepcopy(old)
    new["deployments"][0]["launch"].update(model_uid="tiny-b", context_length=1024)
    report = prepare(new, _facts(old, [0, 1])).to_dict()
    (row,) = report["deployments"]
    assert report["in_sync"] is False and row["change"] == REPLACE
    assert [(s["action"], s["replica"]) for s in row["steps"]] == [
        ("launch", "tiny-b-rep0"),
        ("terminate", "tiny-a-rep1"),
        ("launch", "tiny-b-rep1"),
        ("terminate", "tiny-a-rep0"),
    ]


def test_prepare_blocks_a_same_uid_config_change_unless_downtime_is_allowed():
    old = plan(dep(gpus=[[0], [1]]))
    new = copy.deepcopy(old)
    new["deployments"][0]["launch"]["context_length"] = 1024
    blocked = prepare(new, _facts(old, [0, 1]))
    assert "one configuration per model uid" in blocked.blocked["chat"] and "chat" not in blocked.steps
    allowed = prepare(new, _facts(old, [0, 1]), allow_downtime=True)
    assert [(s.action, s.replica.label()) for s in allowed.steps["chat"]] == [
        ("terminate", "tiny-a-rep1"),
        ("terminate", "tiny-a-rep0"),
        ("launch", "tiny-a-rep2"),
        ("launch", "tiny-a-rep3"),
    ]


def test_prepare_scales_down_from_the_highest_running_replica_id():
    old = plan(dep(replicas=3, gpus=[[0], [1], [1]]))
    running = dict(RUNNING, replica=3)
    facts = Facts({"tiny-a": running}, {"tiny-a": [0, 2, 5]}, ["w:1"], old, {"tiny-a"})
    steps = prepare(plan(dep(replicas=1, gpus=[[0]])), facts).steps["chat"]
    assert [(s.action, s.replica.label()) for s in steps] == [
        ("terminate", "tiny-a-rep5"),
        ("terminate", "tiny-a-rep2"),
    ]


def test_a_scale_counts_the_replicas_it_keeps_as_answering():
    old = plan(dep(gpus=[[0], [1]]))
    steps = prepare(plan(dep(replicas=3, gpus=[[0], [1], [0]])), _facts(old, [0, 1])).steps["chat"]
    assert [(s.action, s.replica.label(), s.serving, s.reason) for s in steps] == [
        ("launch", "tiny-a-rep2", 3, "fits beside what runs")
    ]
    steps = prepare(plan(dep(replicas=1, gpus=[[0]])), _facts(old, [0, 1])).steps["chat"]
    assert [(s.action, s.replica.label(), s.serving) for s in steps] == [("terminate", "tiny-a-rep1", 1)]
