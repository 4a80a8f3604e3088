"""`scale` (core/planning/scale.py): more or fewer replicas, each launched exactly as planned,
placed by the planner's rules and checked by its memory model; a pure scale for diff/apply."""

from __future__ import annotations

import copy

import pytest
from support.paths import EXAMPLES

from xinf_planner.core.plan.validate import plan_errors
from xinf_planner.core.planning import make_plan
from xinf_planner.core.planning.scale import PLACEMENT_KEYWORDS, scale_plan
from xinf_planner.core.request import merge_flags, request_from_intent
from xinf_planner.core.rollout.diff import REPLACE, SCALE
from xinf_planner.errors import InvalidInput, NothingFits
from xinf_planner.shell.deploy.rollouts import Facts, prepare
from xinf_planner.shell.documents import load_inventory

HOSTS = EXAMPLES / "hosts"


def _plan(hosts: str, **flags) -> dict:
    inv = load_inventory(HOSTS / hosts if not str(hosts).startswith("/") else hosts)
    return make_plan(inv, request_from_intent(merge_flags(None, flags)))


def _config(launch: dict) -> dict:
    return {k: v for k, v in launch.items() if k not in PLACEMENT_KEYWORDS}


@pytest.fixture(scope="module")
def t4():
    """6× T4 in two NUMA halves: 2 replicas of TP 2 leave room for a third."""
    return _plan("6xt4.yaml", model="deepseek-r1-distill-qwen:7", replicas=2, concurrency=8)


@pytest.fixture(scope="module")
def h100():
    """The issue's case: 8× H100, the 7B at 16k × 16, re-planned with 2 and with 4 replicas."""
    common = dict(model="deepseek-r1-distill-qwen:7", context_length=16384, concurrency=16)
    return _plan("8xh100-sxm.yaml", replicas=4, **common), _plan("8xh100-sxm.yaml", replicas=2, **common)


# -- the figures are the planner's --------------------------------------------------------------
SWEEP = [
    (inv, model, flags)
    for inv in sorted(p.name for p in HOSTS.glob("*.yaml"))
    for model in ("deepseek-r1-distill-qwen:7", "deepseek-r1-distill-qwen:1.5")
    for flags in ({}, {"concurrency": 8, "context_length": 16384})
]


@pytest.mark.parametrize("inv, model, flags", SWEEP)
def test_the_same_count_reproduces_the_planners_estimate_exactly(inv, model, flags):
    """Made again with the deployment's own keywords at its own replica count, the estimate is
    byte for byte the planner's: scale sizes the way the planner does."""
    try:
        doc = _plan(inv, model=model, **flags)
    except NothingFits:
        pytest.skip("nothing fits here")
    dep = doc["deployments"][0]
    out = scale_plan(doc, dep["launch"]["replica"], concurrency=doc["request"]["models"][0]["concurrency"])
    new = out.doc["deployments"][0]
    assert new["estimate"] == dep["estimate"]
    assert new["launch"] == dep["launch"] and new["placement"] == dep["placement"]


def test_up_keeps_every_replicas_configuration_and_places_by_the_planners_rules(t4):
    out = scale_plan(t4, 3)
    old, new = t4["deployments"][0], out.doc["deployments"][0]
    assert _config(new["launch"]) == _config(old["launch"])  # gpu_memory_utilization, dtype, ... kept
    assert new["launch"]["replica"] == 3 and new["placement"][:2] == old["placement"]
    assert new["placement"][2] == {"host": "t4x6", "gpus": [2, 3]}  # the two GPUs still free
    assert new["launch"]["gpu_idx"] == [0, 1, 4, 5, 2, 3]  # Xinference's slice per replica
    assert new["estimate"]["served_sequences"] == 3 * old["estimate"]["served_sequences"] // 2
    assert plan_errors(out.doc) == []
    assert out.doc["inventory"] == t4["inventory"]  # the same inventory, the same fingerprint
    assert out.doc["request"]["models"][0]["replicas"] == 3
    # the new replica's GPUs are worse linked than the others': said, on one line
    (note,) = [r for r in out.reasons if r.startswith("Not as before")]
    assert "t4x6:2,3" in note and "SYS" in note and "\n" not in note
    assert t4["deployments"][0]["launch"]["replica"] == 2  # the input is not changed


def test_down_then_up_gives_the_planned_deployment_back(h100):
    four, _ = h100
    two = scale_plan(four, 2).doc
    back = scale_plan(two, 4).doc
    a, b = four["deployments"][0], back["deployments"][0]
    assert (b["launch"], b["placement"], b["estimate"]) == (a["launch"], a["placement"], a["estimate"])
    assert back["request"] == four["request"]
    scaled = [r for r in b["reasons"] if r.startswith("Scaled by")]
    assert len(scaled) == 1 and "4 replica(s) as planned" in scaled[0]  # one line, not a history


def _running(doc):
    dep = doc["deployments"][0]
    return {"model_name": dep["launch"]["model_name"], "model_engine": "vLLM", "replica": dep["launch"]["replica"]}


def test_diff_sees_a_pure_scale_rolled_one_replica_at_a_time_where_replanning_is_a_replace(h100):
    """On 8× H100, re-planning the 7B with 2 replicas instead of 4 sizes each replica again
    (its gpu_memory_utilization and TP change): a replace, which apply refuses here.
    `scale` keeps the configuration: a scale, one terminate at a time."""
    four, replanned = h100
    uid = four["deployments"][0]["launch"]["model_uid"]
    facts = Facts({uid: _running(four)}, {uid: [0, 1, 2, 3]}, [], four, {uid})
    bad = prepare(replanned, facts)
    assert bad.changes[0].kind == REPLACE
    assert any(f.startswith("gpu_memory_utilization: ") for f in bad.changes[0].fields), bad.changes[0].fields
    assert bad.changes[0].name in bad.blocked  # apply refuses it before changing anything

    two = scale_plan(four, 2).doc
    good = prepare(two, facts)
    (change,) = good.changes
    assert (change.kind, change.fields) == (SCALE, ["replica: 4 -> 2"]) and not good.blocked
    steps = good.steps[change.name]
    assert [(s.action, s.replica.label()) for s in steps] == [
        ("terminate", f"{uid}-rep3"),
        ("terminate", f"{uid}-rep2"),
    ]
    facts2 = Facts({uid: _running(two)}, {uid: [0, 1]}, [], two, {uid})
    up = prepare(four, facts2)
    assert up.changes[0].kind == SCALE
    assert [(s.action, s.serving) for s in up.steps[change.name]] == [("launch", 3), ("launch", 4)]


def test_no_room_for_an_identical_replica_is_exit_3_with_why():
    eight = _plan("8xh100-sxm.yaml", model="deepseek-r1-distill-qwen:7", replicas=8, context_length=16384)
    assert sum(len(p["gpus"]) for p in eight["deployments"][0]["placement"]) == 8  # all GPUs held
    with pytest.raises(NothingFits) as exc:
        scale_plan(eight, 9)
    msg = str(exc.value)
    assert exc.value.exit_code == 3 and "\n" not in msg
    assert "1 free NVIDIA H100 80GB HBM3 GPU(s)" in msg
    assert "no NVIDIA H100 80GB HBM3 GPU is free" in msg and "xinf-plan plan --replicas 9" in msg


def test_fewer_replicas_than_the_concurrency_needs_points_to_plan():
    doc = _plan("cpu-only-16c-64g.yaml", model="deepseek-r1-distill-qwen:1.5", replicas=2, concurrency=2)
    assert doc["deployments"][0]["launch"]["n_parallel"] == 1
    with pytest.raises(NothingFits) as exc:  # one slot for two users: the second waits minutes
        scale_plan(doc, 1)
    msg = str(exc.value)
    assert "n_parallel 1" in msg and "at the 2 user(s) the plan's request asks for" in msg
    assert "outside its targets" in msg and "xinf-plan plan --replicas 1" in msg and "\n" not in msg
    out = scale_plan(doc, 1, concurrency=1)  # the workload says one user: then it is a scale
    assert out.doc["request"]["models"][0]["concurrency"] == 1 and out.concurrency == (2, 1)
    assert _config(out.doc["deployments"][0]["launch"]) == _config(doc["deployments"][0]["launch"])


def test_cpu_threads_are_kept_and_oversubscription_is_said():
    doc = _plan("cpu-only-16c-64g.yaml", model="deepseek-r1-distill-qwen:1.5", replicas=2)
    out = scale_plan(doc, 3)
    launch = out.doc["deployments"][0]["launch"]
    assert (launch["n_threads"], launch["n_parallel"], launch["replica"]) == (8, 1, 3)
    (note,) = [r for r in out.reasons if r.startswith("Not as before")]
    assert "24 threads" in note and "16 cores" in note
    with pytest.raises(NothingFits, match="GiB of RAM"):
        scale_plan(doc, 40)  # 40 replicas of the 1.5B's GiB or two do not fit in 57 GiB


def test_spread_takes_the_host_with_fewest_replicas_pack_fills_the_first():
    spread = _plan("2x8xa100-cluster.yaml", model="deepseek-r1-distill-qwen:7", replicas=1, concurrency=8)
    hosts = [p["host"] for p in scale_plan(spread, 3).doc["deployments"][0]["placement"]]
    assert hosts == ["a100-node-1", "a100-node-2", "a100-node-1"]
    pack = _plan(
        "2x8xa100-cluster.yaml", model="deepseek-r1-distill-qwen:7", replicas=1, concurrency=8, strategy="pack"
    )
    out = scale_plan(pack, 3).doc["deployments"][0]  # one GPU a replica: node 1 holds all three
    assert [p["host"] for p in out["placement"]] == ["a100-node-1"] * 3
    workers = [c["devices"][0]["worker_ip"] for c in out["launch"]["replica_config"]]
    assert workers == ["10.0.0.11:30001"] * 3


def test_another_deployments_gpus_are_never_taken():
    doc = _plan(
        "2x8xa100-cluster.yaml",
        models=[
            {"model": "deepseek-r1-distill-qwen:7", "share": 0.5, "replicas": 1},
            {"model": "deepseek-r1-distill-qwen:1.5", "share": 0.5, "replicas": 1},
        ],
        concurrency=2,
    )

    def gpus(dep):
        return {(p["host"], i) for p in dep["placement"] for i in p["gpus"]}

    other = gpus(doc["deployments"][1])
    assert ("a100-node-1", 1) in other  # the 1.5B holds node 1's GPU 1, next to the 7B's GPU 0
    out = scale_plan(doc, 3, deployment=doc["deployments"][0]["name"])
    assert not gpus(out.doc["deployments"][0]) & other and out.doc["deployments"][1] == doc["deployments"][1]
    assert [p["host"] for p in out.doc["deployments"][0]["placement"]] == ["a100-node-1", "a100-node-2", "a100-node-1"]
    assert plan_errors(out.doc) == []


def test_bad_requests_are_one_line(h100, t4):
    four, _ = h100
    with pytest.raises(InvalidInput, match="no deployment 'nope' in the plan"):
        scale_plan(four, 2, deployment="nope")
    with pytest.raises(InvalidInput, match="at least 1 replica"):
        scale_plan(four, 0)
    two = copy.deepcopy(t4)
    extra = copy.deepcopy(two["deployments"][0])
    extra["name"] = "other"
    two["deployments"].append(extra)
    with pytest.raises(InvalidInput, match="has 2 deployments .*--deployment NAME"):
        scale_plan(two, 3)


def test_a_sharded_replica_cannot_be_scaled():
    from support.intents import R1_FP8

    doc = _plan(str(EXAMPLES / "cluster" / "2x8xh100.yaml"), **R1_FP8)
    with pytest.raises(InvalidInput, match="sharded over 2 hosts .*xinf-plan plan"):
        scale_plan(doc, 2)


def test_the_same_count_changes_nothing(t4):
    out = scale_plan(t4, 2)
    assert out.doc == t4 and out.added == [] and out.removed == []


# -- issue 11's serving block -------------------------------------------------------------------
def test_a_scaled_plan_carries_the_serving_models_figures_for_its_replicas(t4):
    """The serving block is the serving model's at the new replica count, as `plan --replicas`
    would compute it, and it meets the plan's targets (or the scale is refused)."""
    out = scale_plan(copy.deepcopy(t4), t4["deployments"][0]["launch"]["replica"] + 1)
    block = out.doc["deployments"][0]["estimate"]["serving"]
    old = t4["deployments"][0]["estimate"]["serving"]
    assert block["meets_targets"] and block["concurrency"] == old["concurrency"]
    assert (
        block["gpus"] > old["gpus"] and block["max_concurrency_within_targets"] >= old["max_concurrency_within_targets"]
    )
    assert plan_errors(out.doc) == []
