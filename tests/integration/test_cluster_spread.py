"""`--strategy spread` on a real supervisor with two workers, planned by the CLI from the
live cluster's inventory: with local weights on one worker the plan says why both replicas
share it; with --model-path-on-every-worker they land on both workers, and `scale` down and
up again keeps them spread. (Runs before test_inspect_cluster.py, whose last test stops a
worker for good.)"""

from __future__ import annotations

import json

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


@pytest.fixture
def cluster(xinf_cluster, monkeypatch):
    monkeypatch.setenv("XINFERENCE_PASSWORD", xinf_cluster.password)
    monkeypatch.delenv("XINFERENCE_ENDPOINT", raising=False)
    monkeypatch.delenv("XINFERENCE_API_KEY", raising=False)
    return xinf_cluster


def _auth(cluster):
    return ["-e", cluster.url, "--username", cluster.username]


def _workers(run_cli, cluster, plan_path, state) -> list[tuple[str, str]]:
    code, out, err = run_cli("status", plan_path, *_auth(cluster), *state, "--format", "json")
    assert code == 0, out + err
    return [(r["status"], r["worker"]) for r in json.loads(out)["replicas"]]


def test_spread_replicas_land_on_both_workers(run_cli, cluster, tiny_model_dir, tmp_path):
    inv = tmp_path / "cluster.yaml"
    code, out, err = run_cli("inspect", *_auth(cluster), "-o", inv)
    assert code == 0, out + err
    plan = ["plan", "--hardware", inv, "--model", "deepseek-r1-distill-qwen", "--model-path", tiny_model_dir,
            "--replicas", "2", "--strategy", "spread", "--context-length", "512", "--disable-virtual-env"]  # fmt: skip

    code, out, err = run_cli(*plan, "--format", "table")  # the weights on one worker: said, not silent
    assert code == 0, out + err
    (line,) = [x.strip() for x in out.splitlines() if "Not as asked" in x]
    assert "strategy spread, but all 2 replicas are on" in line and "--model-path-on-every-worker" in line

    path = tmp_path / "plan.yaml"
    code, out, err = run_cli(*plan, "--model-path-on-every-worker", "-o", path)
    assert code == 0, out + err
    assert "Not as asked" not in out
    dep = yaml.safe_load(path.read_text())["deployments"][0]
    planned = [c["devices"][0]["worker_ip"] for c in dep["launch"]["replica_config"]]
    assert sorted(planned) == sorted(cluster.worker_ips)
    state = ["--state", tmp_path / "state.json"]
    code, out, err = run_cli("apply", path, *_auth(cluster), *state, "--no-smoke-test")
    try:
        assert code == 0, out + err
        assert _workers(run_cli, cluster, path, state) == [("READY", w) for w in planned]

        one = tmp_path / "one.yaml"
        code, out, err = run_cli("scale", path, "--replicas", "1", "-o", one)
        assert code == 0, out + err
        code, out, err = run_cli("apply", one, *_auth(cluster), *state)
        assert code == 0 and "scale " in out, out + err
        assert _workers(run_cli, cluster, one, state) == [("READY", planned[0])]

        again = tmp_path / "again.yaml"
        code, out, err = run_cli("scale", one, "--replicas", "2", "-o", again)
        assert code == 0, out + err
        code, out, err = run_cli("diff", again, *_auth(cluster), *state, "--format", "json")
        (row,) = json.loads(out)["deployments"]
        assert code == 2 and (row["change"], row["replicas"]) == ("scale", [1, 2]), row
        code, out, err = run_cli("apply", again, *_auth(cluster), *state)
        assert code == 0, out + err
        assert _workers(run_cli, cluster, again, state) == [("READY", w) for w in planned]  # spread again
    finally:
        code, out, err = run_cli("destroy", path, *_auth(cluster), *state, "--yes")
    assert code == 0, out + err
    assert cluster.running_models() == {}
