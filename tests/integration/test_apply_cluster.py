"""apply/status/destroy on a real supervisor with two workers: replicas pinned by worker
address through replica_config, and a plan naming a worker the cluster lacks."""

from __future__ import annotations

import json

import pytest
from plans import cpu_host, tiny_plan, with_hosts, write_plan

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


def _pinned_plan(model_dir, workers: list[str]) -> dict:
    plan = tiny_plan(model_dir, uid="spread", replicas=len(workers))
    launch = plan["deployments"][0]["launch"]
    del launch["n_gpu"]  # replica_config takes the placement; a top-level n_gpu is refused with it
    launch["replica_config"] = [{"devices": [{"worker_ip": w}]} for w in workers]
    with_hosts(plan, [cpu_host(f"w{i}", 16.0, w) for i, w in enumerate(workers)])
    plan["deployments"][0]["placement"] = [{"host": f"w{i}", "gpus": []} for i in range(len(workers))]
    return plan


def test_replicas_pinned_to_each_worker(run_cli, xinf_cluster, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("XINFERENCE_PASSWORD", xinf_cluster.password)
    auth = ["-e", xinf_cluster.url, "--username", xinf_cluster.username]

    wrong = _pinned_plan(tiny_model_dir, [xinf_cluster.worker_ips[0], "127.0.0.1:1"])
    code, out, err = run_cli("apply", write_plan(wrong, tmp_path / "wrong.yaml"), *auth)
    assert code == 7, out + err
    assert "worker 127.0.0.1:1 is not one of the server's workers" in out
    assert xinf_cluster.running_models() == {} and not xinf_cluster.registered("tiny-r1")

    plan_path = write_plan(_pinned_plan(tiny_model_dir, xinf_cluster.worker_ips), tmp_path / "plan.yaml")
    code, out, err = run_cli("apply", plan_path, *auth)
    assert code == 0, out + err
    try:
        code, out, err = run_cli("status", plan_path, *auth, "--format", "json")
        assert code == 0, out + err
        report = json.loads(out)
        assert [(r["status"], r["worker"]) for r in report["replicas"]] == [
            ("READY", w) for w in xinf_cluster.worker_ips
        ]
    finally:
        code, out, err = run_cli("destroy", plan_path, *auth, "--yes")
    assert code == 0, out + err
    assert xinf_cluster.running_models() == {} and not xinf_cluster.registered("tiny-r1")
