"""apply -> chat -> status -> re-apply -> destroy against a real Xinference server."""

from __future__ import annotations

import json

import pytest
import requests
import yaml

pytestmark = pytest.mark.integration

UID = "deepseek-r1-distill-qwen-local"  # the planner's uid for local weights of that family

# A CPU-only host, as `xinf-plan inspect --name localhost` wrote it on the 2-core test VM.
CPU_HOST = {
    "version": 1,
    "hosts": [
        {
            "name": "localhost",
            "os": "linux",
            "arch": "x86_64",
            "cpu_model": "Intel(R) Xeon(R) Processor",
            "cpu_cores": 2,
            "memory_total_bytes": 25276510208,
            "memory_available_bytes": 24557453312,
            "gpus": [],
        }
    ],
}


def test_apply_status_destroy_two_replicas(run_cli, login_env, tiny_model_dir, tmp_path):
    server = login_env
    hardware = tmp_path / "host.yaml"
    hardware.write_text(yaml.safe_dump(CPU_HOST))
    plan_path = tmp_path / "plan.yaml"
    # the real planner: CPU host -> llama.cpp, with a registration block for the local GGUF
    code, out, err = run_cli(
        "plan",
        "--hardware",
        hardware,
        "--model",
        "deepseek-r1-distill-qwen",
        "--model-path",
        tiny_model_dir,
        "--replicas",
        2,
        "--context-length",
        512,
        "--concurrency",
        1,
        "--disable-virtual-env",
        "-o",
        plan_path,
    )
    assert code == 0, out + err
    code, out, err = run_cli("validate", plan_path)
    assert code == 0, out + err
    auth = ["-e", server.url, "--username", server.username]

    code, out, err = run_cli("apply", plan_path, *auth)
    assert code == 0, out + err
    assert "1 to launch, 0 unchanged" in out
    assert f"smoke test {UID}: 8 tokens" in out

    # the server really runs it: two READY replicas, and it answers a chat completion
    models = server.running_models()
    assert set(models) == {UID}
    assert models[UID]["replica"] == 2
    inst = server.get("/v1/models/instances", model_name=UID, model_uid=UID)
    assert [r["status"] for r in inst[0]["replica_statuses"]] == ["READY", "READY"]
    answer = requests.post(
        f"{server.url}/v1/chat/completions",
        timeout=60,
        headers={"Authorization": f"Bearer {server.api_key('lifecycle')}"},
        json={"model": UID, "max_tokens": 5, "temperature": 0, "messages": [{"role": "user", "content": "hi"}]},
    ).json()
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 5

    # the state records what apply did, and no secret
    state_file = tmp_path / ".xinf-plan" / "state.json"
    state_text = state_file.read_text()
    state = json.loads(state_text)
    assert state["deployments"][UID]["model_uid"] == UID
    assert state["registered"] == [UID]
    assert [h["plan_hash"] for h in state["history"]] == [state["plan_hash"]]
    assert server.password not in state_text and server.password not in out + err
    assert "Bearer" not in state_text

    # idempotent: nothing to launch the second time
    code, out, err = run_cli("apply", plan_path, *auth, "--no-smoke-test")
    assert code == 0, out + err
    assert "0 to launch, 1 unchanged" in out
    assert f"launch {UID}" not in out

    # status needs no login: an API key (list/describe only) is enough
    code, out, err = run_cli("status", plan_path, "-e", server.url, "--api-key", server.api_key("status"))
    assert code == 0, out + err
    assert "in sync with the plan" in out

    code, out, err = run_cli("status", plan_path, *auth, "--format", "json")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["in_sync"] is True
    assert [(r["replica"], r["status"]) for r in report["replicas"]] == [(0, "READY"), (1, "READY")]
    assert report["unowned"] == []

    # without PLAN: the plan last applied with this state
    code, out, err = run_cli("status", *auth, "--state", tmp_path / ".xinf-plan" / "state.json")
    assert code == 0, out + err
    assert f"{UID}-rep1" in out and "in sync with the plan" in out

    # a plan that differs from what runs: diff says what apply would change, and changes nothing
    # (apply itself rolls the change: tests/integration/test_rollout_live.py)
    changed = yaml.safe_load(plan_path.read_text())
    changed["deployments"][0]["launch"]["replica"] = 3
    changed["deployments"][0]["placement"].append(changed["deployments"][0]["placement"][0])  # as validate asks
    changed_path = tmp_path / "changed.yaml"
    changed_path.write_text(yaml.safe_dump(changed))
    code, out, err = run_cli("diff", changed_path, *auth, "--state", tmp_path / ".xinf-plan" / "state.json")
    assert code == 2, out + err
    assert "scale" in out and "replica: 2 -> 3" in out
    assert server.running_models()[UID]["replica"] == 2

    # destroy asks first; "no" changes nothing
    code, out, err = run_cli("destroy", plan_path, *auth, input="n\n")
    assert code != 0 and UID in server.running_models()

    code, out, err = run_cli("destroy", plan_path, *auth, "--yes")
    assert code == 0, out + err
    assert server.running_models() == {}
    assert server.custom_llm_names() == []
    assert json.loads(state_file.read_text())["deployments"] == {}

    code, out, err = run_cli("status", plan_path, *auth)
    assert code == 4, out + err
    assert "MISSING" in out
