"""The pure rollout parts: step order and the memory check per step, on GPU inventories.

Capacities: an 80 GiB H100 SXM (as NVML reports it, tests/support/fixtures/nvml/h100-sxm-8x.json)
and a 24 GiB RTX 4090. Per-replica figures are what the plans carry
(``estimate.per_gpu_gib.total``): a vLLM replica reserves gpu_memory_utilization x total.
"""

from __future__ import annotations

import pytest

from xinf_planner.core.rollout.steps import (
    LAUNCH,
    RAM,
    TERMINATE,
    NeedsDowntime,
    Replica,
    capacities,
    overfull,
    plan_steps,
    replicas_of,
    usage_of,
)

H100 = 80.0
RTX4090 = 24.0


def rep(uid, index, gpus, gib, host="h1"):
    return Replica(uid, index, tuple((host, g) for g in gpus), gib)


def cap(n, gib, host="h1"):
    return {(host, i): gib for i in range(n)}


def actions(steps):
    return [(s.action, s.replica.uid, s.replica.index) for s in steps]


def check_ledger(steps, old, capacity, base=None):
    """Replay the steps: no device ever holds more than its capacity, and return the
    lowest number of replicas answering."""
    used = dict(base or {})
    for dev, gib in usage_of(old).items():
        used[dev] = used.get(dev, 0.0) + gib
    serving = len(old)
    low = serving
    for s in steps:
        sign = 1 if s.action == LAUNCH else -1
        if sign > 0:
            assert not overfull(used, capacity, s.replica), s.text()
        for dev in s.replica.devices:
            used[dev] = used.get(dev, 0.0) + sign * s.replica.gib
        serving += sign
        assert s.serving == serving
        low = min(low, serving)
    return low


def test_two_replicas_that_do_not_fit_twice_per_gpu_terminate_then_launch_per_gpu():
    # 0.9 x 80 GiB per replica (vLLM default reservation): two never share one H100
    old = [rep("r1-old", 0, [0], 72.0), rep("r1-old", 1, [1], 72.0)]
    new = [rep("r1-new", 0, [0], 72.0), rep("r1-new", 1, [1], 72.0)]
    steps = plan_steps(old, new, cap(2, H100))
    assert actions(steps) == [
        (TERMINATE, "r1-old", 0),
        (LAUNCH, "r1-new", 0),
        (TERMINATE, "r1-old", 1),
        (LAUNCH, "r1-new", 1),
    ]
    assert check_ledger(steps, old, cap(2, H100)) == 1  # one replica answers throughout
    assert "H100" not in steps[0].reason and "h1 GPU 0 would hold 144.0 of 80.0 GiB" in steps[0].reason


def test_replicas_that_fit_side_by_side_launch_then_terminate():
    # a 1.5B distill on vLLM at utilisation 0.4: 32 GiB per replica, two fit on one H100
    old = [rep("a", 0, [0], 32.0), rep("a", 1, [1], 32.0)]
    new = [rep("b", 0, [0], 32.0), rep("b", 1, [1], 32.0)]
    steps = plan_steps(old, new, cap(2, H100))
    # after each launch, the old replica that goes is the one on the next new replica's GPU
    assert actions(steps) == [(LAUNCH, "b", 0), (TERMINATE, "a", 1), (LAUNCH, "b", 1), (TERMINATE, "a", 0)]
    assert check_ledger(steps, old, cap(2, H100)) == 2  # never fewer than the deployment had


def test_memory_check_counts_what_other_deployments_hold():
    old = [rep("a", 0, [0], 32.0), rep("a", 1, [1], 32.0)]
    new = [rep("b", 0, [0], 32.0), rep("b", 1, [1], 32.0)]
    base = {("h1", 0): 20.0, ("h1", 1): 20.0}  # another model's 20 GiB on each GPU
    steps = plan_steps(old, new, cap(2, H100), base=base)
    assert [a for a, _, _ in actions(steps)] == [TERMINATE, LAUNCH, TERMINATE, LAUNCH]
    check_ledger(steps, old, cap(2, H100), base)


def test_single_replica_that_cannot_coexist_needs_downtime_and_says_so():
    old = [rep("a", 0, [0], 20.0)]
    new = [rep("b", 0, [0], 20.0)]
    with pytest.raises(NeedsDowntime, match="cannot run together even one at a time.*--allow-downtime"):
        plan_steps(old, new, cap(1, RTX4090))
    steps = plan_steps(old, new, cap(1, RTX4090), allow_downtime=True)
    assert actions(steps) == [(TERMINATE, "a", 0), (LAUNCH, "b", 0)]
    assert check_ledger(steps, old, cap(1, RTX4090)) == 0


def test_single_replica_that_fits_beside_needs_no_downtime():
    steps = plan_steps([rep("a", 0, [0], 10.0)], [rep("b", 0, [0], 10.0)], cap(1, RTX4090))
    assert actions(steps) == [(LAUNCH, "b", 0), (TERMINATE, "a", 0)]


def test_new_replica_wider_than_one_old_needs_two_down_then_max_unavailable():
    # TP 1 -> TP 2: the new replica needs both GPUs, each held by one old replica
    old = [rep("a", 0, [0], 72.0), rep("a", 1, [1], 72.0), rep("a", 2, [2], 72.0)]
    new = [rep("b", 0, [0, 1], 72.0)]
    with pytest.raises(NeedsDowntime, match="--max-unavailable 2"):
        plan_steps(old, new, cap(3, H100))
    steps = plan_steps(old, new, cap(3, H100), max_unavailable=2)
    assert actions(steps) == [(TERMINATE, "a", 1), (TERMINATE, "a", 0), (LAUNCH, "b", 0), (TERMINATE, "a", 2)]
    assert check_ledger(steps, old, cap(3, H100)) == 1


def test_same_uid_other_configuration_cannot_coexist():
    old = [rep("m", 0, [0], 10.0), rep("m", 1, [1], 10.0)]
    new = [rep("m", 2, [0], 10.0), rep("m", 3, [1], 10.0)]
    with pytest.raises(NeedsDowntime, match="one configuration per model uid.*new model_uid"):
        plan_steps(old, new, cap(2, H100), coexist=False)
    steps = plan_steps(old, new, cap(2, H100), coexist=False, allow_downtime=True, max_unavailable=1)
    assert [a for a, _, _ in actions(steps)] == [TERMINATE, TERMINATE, LAUNCH, LAUNCH]


def test_scale_down_terminates_highest_index_first_and_scale_up_launches_in_order():
    down = plan_steps([rep("m", 1, [0], 5.0), rep("m", 3, [1], 5.0), rep("m", 2, [1], 5.0)], [], cap(2, H100))
    assert actions(down) == [(TERMINATE, "m", 3), (TERMINATE, "m", 2), (TERMINATE, "m", 1)]
    up = plan_steps([], [rep("m", 1, [0], 5.0), rep("m", 2, [1], 5.0)], cap(2, H100))
    assert actions(up) == [(LAUNCH, "m", 1), (LAUNCH, "m", 2)]


def test_a_replica_that_does_not_fit_an_empty_gpu_is_refused_before_starting():
    with pytest.raises(NeedsDowntime, match="does not fit on h1:0 even with the old replicas there gone"):
        plan_steps([rep("a", 0, [1], 10.0)], [rep("b", 0, [0], 90.0)], cap(2, H100))


def test_cpu_replicas_are_checked_against_host_ram():
    old = [Replica("a", i, (("h1", RAM),), 6.0) for i in range(2)]
    new = [Replica("b", i, (("h1", RAM),), 6.0) for i in range(2)]
    capacity = {("h1", RAM): 16.0}  # 12 GiB held; a third 6 GiB replica does not fit
    steps = plan_steps(old, new, capacity)
    assert [a for a, _, _ in actions(steps)] == [TERMINATE, LAUNCH, TERMINATE, LAUNCH]
    assert check_ledger(steps, old, capacity) == 1


def test_capacities_and_replicas_come_from_the_plan_document():
    plan = {
        "inventory": {
            "document": {
                "hosts": [
                    {
                        "name": "gpu1",
                        "memory_total_bytes": 64 * 1024**3,
                        "gpus": [
                            {"index": 0, "memory_total_bytes": 85520809984},
                            {"index": 1, "memory_total_bytes": 85520809984},
                        ],
                    }
                ]
            }
        }
    }
    capacity = capacities(plan)
    assert capacity[("gpu1", RAM)] == 64.0
    assert capacity[("gpu1", 1)] == pytest.approx(85520809984 / 1024**3)
    dep = {
        "launch": {"model_uid": "m"},
        "placement": [{"host": "gpu1", "gpus": [0, 1]}],
        "estimate": {"per_gpu_gib": {"total": 71.7}, "host_gib": 3.0},
    }
    (r,) = replicas_of(dep, indices=[4])
    assert r.devices == (("gpu1", 0), ("gpu1", 1)) and r.gib == 71.7 and r.index == 4
    assert r.label() == "m-rep4" and r.where() == "gpu1:0,1"


def test_a_sharded_deployment_has_no_rolling_path_even_with_downtime():
    """Xinference 4.1 cannot add, terminate or replace replicas of an n_worker launch."""
    from support.paths import EXAMPLES

    from xinf_planner.core.rollout.diff import Change
    from xinf_planner.core.rollout.steps import rollout_steps
    from xinf_planner.shell.documents import load_document

    plan = load_document(EXAMPLES / "cluster" / "plan-r1-fp8.yaml")
    (dep,) = plan["deployments"]
    assert dep["launch"]["n_worker"] > 1
    new = {**dep, "launch": {**dep["launch"], "context_length": 2 * dep["launch"]["context_length"]}}
    change = Change(
        dep["name"], "replace", dep["launch"]["model_uid"], dep["launch"]["model_uid"], ["context_length"], 1, 1
    )
    for downtime in (False, True):
        with pytest.raises(NeedsDowntime, match="sharded over 2 workers.*destroy"):
            rollout_steps(change, new, dep, [0], capacities(plan), {}, allow_downtime=downtime)
