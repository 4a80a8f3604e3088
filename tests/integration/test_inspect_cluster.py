"""The cluster flow end to end on a real supervisor + two workers (the session's ``xinf_cluster``):
inspect --endpoint -> plan (2 replicas spread, one per worker) -> apply -> status -> destroy,
and a worker stopped during apply. No mocks: every call goes to the real Xinference 4.1.0.

The fault test stops a worker for good, so it runs last in this file (and this file after
test_apply_cluster.py, the other user of the cluster).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.cluster]
XINF_PLAN = str(Path(sys.executable).parent / "xinf-plan")


@pytest.fixture
def cluster(xinf_cluster, monkeypatch):
    monkeypatch.setenv("XINFERENCE_PASSWORD", xinf_cluster.password)
    monkeypatch.delenv("XINFERENCE_ENDPOINT", raising=False)
    monkeypatch.delenv("XINFERENCE_API_KEY", raising=False)
    return xinf_cluster


def _auth(cluster):
    return ["-e", cluster.url, "--username", cluster.username]


def _plan(run_cli, cluster, model_dir, tmp_path) -> tuple[Path, dict]:
    inv_path = tmp_path / "cluster.yaml"
    code, out, err = run_cli("inspect", *_auth(cluster), "-o", inv_path)
    assert code == 0, out + err
    intent = {
        "model": "deepseek-r1-distill-qwen",
        "model_path": str(model_dir),
        "replicas": 2,
        "model_path_on_every_worker": True,
        "context_length": 512,
        "enable_virtual_env": False,
    }
    (tmp_path / "intent.yaml").write_text(yaml.safe_dump(intent))
    plan_path = tmp_path / "plan.yaml"
    code, out, err = run_cli("plan", "--hardware", inv_path, "--intent", tmp_path / "intent.yaml", "-o", plan_path)
    assert code == 0, out + err
    return plan_path, yaml.safe_load(plan_path.read_text())


def test_inspect_endpoint_reads_the_live_cluster(run_cli, cluster):
    live = [n for n in cluster.get("/v1/cluster/info", detailed="true") if n["node_type"] == "Worker"]
    # the response shape probe/cluster.py relies on
    for node in live:
        assert {
            "ip_address",
            "gpu_count",
            "gpu_vram_total",
            "gpu_vram_available",
            "cpu_count",
            "mem_total",
            "mem_available",
        } <= set(node)
    code, out, err = run_cli("inspect", *_auth(cluster), "--format", "json")
    assert code == 0, out + err
    inv = json.loads(out)
    by_address = {h["worker_address"]: h for h in inv["hosts"]}
    assert sorted(by_address) == sorted(cluster.worker_ips)
    for node in live:
        host = by_address[node["ip_address"]]
        assert host["cpu_cores"] == node["cpu_count"] and host["memory_total_bytes"] == node["mem_total"]
        assert host["gpus"] == []


def test_plan_spread_over_workers_apply_status_destroy(run_cli, cluster, tiny_model_dir, tmp_path):
    plan_path, plan = _plan(run_cli, cluster, tiny_model_dir, tmp_path)
    dep = plan["deployments"][0]
    planned = [c["devices"][0]["worker_ip"] for c in dep["launch"]["replica_config"]]
    assert sorted(planned) == sorted(cluster.worker_ips)  # spread: one replica per worker
    assert "worker_ip" not in dep["registration"]  # at the supervisor: every worker checks the path
    code, out, err = run_cli("validate", plan_path)
    assert code == 0, out + err
    code, out, err = run_cli("apply", plan_path, *_auth(cluster))
    try:
        assert code == 0, out + err
        assert "smoke test" in out and "finish_reason" in out  # each deployment answered
        code, out, err = run_cli("status", plan_path, *_auth(cluster), "--format", "json")
        assert code == 0, out + err
        rows = json.loads(out)["replicas"]
        assert [(r["status"], r["worker"]) for r in rows] == [("READY", w) for w in planned]
    finally:
        code, out, err = run_cli("destroy", plan_path, *_auth(cluster), "--yes")
    assert code == 0, out + err
    assert cluster.running_models() == {}


def test_weights_missing_on_the_workers_fail_before_any_launch(run_cli, cluster, tiny_model_dir, tmp_path):
    import shutil

    weights = tmp_path / "weights"
    shutil.copytree(tiny_model_dir, weights)
    plan_path, plan = _plan(run_cli, cluster, weights, tmp_path)
    shutil.rmtree(weights)  # gone from every worker (one filesystem here)
    code, out, err = run_cli("apply", plan_path, *_auth(cluster))
    assert code == 7, out + err
    assert "register" in err  # the step that failed
    assert not any(line.startswith("launch ") for line in out.splitlines())
    assert cluster.running_models() == {}
    assert not cluster.registered(plan["deployments"][0]["registration"]["model_name"])


def test_worker_stopped_during_apply_leaves_nothing_behind(run_cli, cluster, tiny_model_dir, tmp_path):
    plan_path, plan = _plan(run_cli, cluster, tiny_model_dir, tmp_path)
    name = plan["deployments"][0]["registration"]["model_name"]
    state_file = tmp_path / ".xinf-plan" / "state.json"
    env = dict(os.environ, XINFERENCE_PASSWORD=cluster.password)
    proc = subprocess.Popen(
        [XINF_PLAN, "apply", str(plan_path), *_auth(cluster)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not (state_file.exists() and json.loads(state_file.read_text())["deployments"]):
            assert time.monotonic() < deadline and proc.poll() is None, "apply never recorded its launch"
            time.sleep(0.2)
        cluster._procs[-1].kill()  # the second worker dies mid-launch
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 7, out + err
    assert "rolled back" in err + out
    assert cluster.running_models() == {}  # nothing left on the surviving worker
    assert not cluster.registered(name)
