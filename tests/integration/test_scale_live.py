"""`scale` against a real Xinference 4.1 server: a plan made by the CLI for this machine,
scaled 1 -> 2 -> 1 with every replica launched as planned; `diff` sees a pure scale, `apply`
rolls it one replica at a time while a background client gets every answer; then `destroy`.
Re-planning with --replicas 2 instead is a replace (n_threads changes), which is the point."""

from __future__ import annotations

import json

import pytest
import yaml
from test_rollout_live import Client, _replica_going_away, _replicas

pytestmark = pytest.mark.integration


def _auth(server):
    return ["-e", server.url, "--username", server.username]


def test_scale_up_and_back_under_a_client_then_destroy(run_cli, login_env, tiny_model_dir, tmp_path):
    server = login_env
    state = ["--state", tmp_path / "state.json"]
    inv = tmp_path / "host.yaml"
    code, out, err = run_cli("inspect", "-o", inv)
    assert code == 0, out + err
    plan = ["plan", "--hardware", inv, "--model", "deepseek-r1-distill-qwen", "--model-path", tiny_model_dir,
            "--context-length", "512", "--concurrency", "1", "--disable-virtual-env"]  # fmt: skip
    one = tmp_path / "one.yaml"
    code, out, err = run_cli(*plan, "--replicas", "1", "-o", one)
    assert code == 0, out + err
    code, out, err = run_cli("apply", one, *_auth(server), *state, "--no-smoke-test")
    assert code == 0, out + err
    uid = yaml.safe_load(one.read_text())["deployments"][0]["launch"]["model_uid"]

    # re-planning for 2 replicas sizes each replica again: a replace, which apply refuses
    replanned = tmp_path / "replanned.yaml"
    code, out, err = run_cli(*plan, "--replicas", "2", "-o", replanned)
    assert code == 0, out + err
    code, out, err = run_cli("diff", replanned, *_auth(server), *state, "--format", "json")
    (row,) = json.loads(out)["deployments"]
    assert code == 2 and row["change"] == "replace", row

    two = tmp_path / "two.yaml"
    code, out, err = run_cli("scale", one, "--replicas", "2", "-o", two)
    assert code == 0, out + err
    code, out, err = run_cli("validate", two)
    assert code == 0, out + err
    before, after = (yaml.safe_load(p.read_text())["deployments"][0]["launch"] for p in (one, two))
    for key in ("n_parallel", "n_threads", "context_length", "model_uid"):
        assert after[key] == before[key], key
    code, out, err = run_cli("diff", two, *_auth(server), *state, "--format", "json")
    (row,) = json.loads(out)["deployments"]
    assert code == 2, out + err
    assert (row["change"], row["replicas"], row["fields"]) == ("scale", [1, 2], ["replica: 1 -> 2"])
    assert [s["action"] for s in row["steps"]] == ["launch"]

    client = Client(server, [uid])
    client.start()
    try:
        code, out, err = run_cli("apply", two, *_auth(server), *state)
        assert code == 0, out + err
        assert f"scale {yaml.safe_load(two.read_text())['deployments'][0]['name']}" in out
        assert f"launch {uid}-rep1" in out
        assert _replicas(server, uid) == [(0, "READY"), (1, "READY")]
        code, out, err = run_cli("diff", two, *_auth(server), *state)
        assert code == 0 and "unchanged" in out, out + err

        back = tmp_path / "back.yaml"
        code, out, err = run_cli("scale", two, "--replicas", "1", "-o", back)
        assert code == 0, out + err
        code, out, err = run_cli("apply", back, *_auth(server), *state)
        assert code == 0, out + err
        assert f"terminate {uid}-rep1" in out
        assert _replicas(server, uid) == [(0, "READY")]
    finally:
        client.stop()
    assert client.records and not client.failures(), client.failures()[:3]
    assert all(_replica_going_away(r) for r in client.retried), client.retried[:3]

    code, out, err = run_cli("destroy", back, *_auth(server), *state, "--yes")
    assert code == 0, out + err
    assert server.running_models() == {} and server.custom_llm_names() == []
