"""Faults against a real Xinference server: each leaves nothing behind and says why."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from plans import cpu_host, tiny_plan, with_hosts, write_plan
from xinf_server import free_port

pytestmark = pytest.mark.integration
XINF_PLAN = str(Path(sys.executable).parent / "xinf-plan")


@pytest.fixture
def server(login_env):
    return login_env


def _auth(server):
    return ["-e", server.url, "--username", server.username]


def _bystander(server, tiny_model_dir, launch: bool = True) -> None:
    """A model that ran before apply, registered (and launched) by someone else."""
    headers = {"Authorization": f"Bearer {server.token()}"}
    spec = tiny_plan(tiny_model_dir, model_name="tiny-bystander")["deployments"][0]
    from xinf_planner.core.registration import registration_spec

    doc = registration_spec(spec["registration"], spec["launch"]["model_size_in_billions"])
    r = requests.post(
        f"{server.url}/v1/model_registrations/LLM",
        headers=headers,
        timeout=60,
        json={"model": json.dumps(doc), "persist": False},
    )
    assert r.status_code == 200, r.text
    if not launch:
        return
    launch = dict(spec["launch"], model_uid="bystander", replica=1)
    r = requests.post(f"{server.url}/v1/models", headers=headers, json=launch, timeout=120)
    assert r.status_code == 200, r.text


def _spawn_apply(plan_path, server, *extra) -> subprocess.Popen:
    env = dict(os.environ, XINFERENCE_PASSWORD=server.password)
    # SIGINT as on a terminal: a test run started in the background (`cmd &`, some CI runners)
    # hands its children SIGINT ignored, and Python then installs no KeyboardInterrupt handler
    return subprocess.Popen(
        [XINF_PLAN, "apply", str(plan_path), *_auth(server), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for(pred, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _apply_interrupted(plan_path, server, interrupt) -> tuple[int, str, str]:
    """Run apply in its own process; once its state records the launch, call interrupt(proc).
    Returns (exit code, stdout, stderr); the process never outlives the test."""
    state_file = Path(plan_path).parent / ".xinf-plan" / "state.json"
    proc = _spawn_apply(plan_path, server)
    try:
        _wait_for(
            lambda: state_file.exists() and json.loads(state_file.read_text())["deployments"],
            what="apply to record its launch",
        )
        interrupt(proc)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, out, err


def test_failed_launch_rolls_back_only_what_apply_started(run_cli, server, tiny_model_dir, tmp_path):
    _bystander(server, tiny_model_dir)
    plan = tiny_plan(tiny_model_dir, uid="good", replicas=1)
    bad = json.loads(json.dumps(plan["deployments"][0]))
    bad["name"] = bad["launch"]["model_uid"] = "bad"
    bad["launch"]["model_path"] = str(tmp_path / "no-such-dir" / "model.gguf")  # not on the worker
    plan["deployments"].append(bad)
    plan_path = write_plan(plan, tmp_path / "plan.yaml")

    code, out, err = run_cli("apply", plan_path, *_auth(server), "--no-smoke-test")
    assert code == 7, out + err
    assert "launch bad failed" in err or "wait for bad failed" in err
    assert "no-such-dir" in err  # the server's own message is shown
    assert "rolled back: bad already gone, terminated good, unregistered tiny-r1" in err
    # what ran before is untouched; what apply started is gone
    assert set(server.running_models()) == {"bystander"}
    assert server.custom_llm_names() == ["tiny-bystander"]
    state = json.loads((tmp_path / ".xinf-plan" / "state.json").read_text())
    assert state["deployments"] == {} and state["registered"] == []


def test_keep_on_failure_leaves_what_started(run_cli, server, tiny_model_dir, tmp_path):
    plan = tiny_plan(tiny_model_dir, uid="kept", replicas=1)
    plan["deployments"][0]["launch"]["model_path"] = str(tmp_path / "missing.gguf")
    plan_path = write_plan(plan, tmp_path / "plan.yaml")
    code, out, err = run_cli("apply", plan_path, *_auth(server), "--keep-on-failure")
    assert code == 7, out + err
    assert "kept on the server as asked" in err
    assert server.custom_llm_names() == ["tiny-r1"]  # registration kept; the failed model is gone
    code, out, err = run_cli("destroy", plan_path, *_auth(server), "--yes")
    assert code == 0, out + err
    assert server.custom_llm_names() == [] and server.running_models() == {}


def test_server_killed_during_apply_then_restarted(run_cli, server, tiny_model_dir, tmp_path):
    plan_path = write_plan(tiny_plan(tiny_model_dir, uid="crash", replicas=2), tmp_path / "plan.yaml")
    state_file = tmp_path / ".xinf-plan" / "state.json"
    code, out, err = _apply_interrupted(plan_path, server, lambda proc: server.kill())
    assert code == 7, out + err
    assert "COULD NOT roll back" in err and "run destroy later" in err
    # the state still names what was started, for the next apply or destroy
    assert json.loads(state_file.read_text())["deployments"]["crash"]["model_uid"] == "crash"

    server.start()  # same home: the persisted registration survives, the models do not
    code, out, err = run_cli("apply", plan_path, *_auth(server), "--no-smoke-test")
    assert code == 0, out + err
    assert "1 to launch" in out
    assert server.running_models()["crash"]["replica"] == 2
    code, out, err = run_cli("destroy", plan_path, *_auth(server), "--yes")
    assert code == 0, out + err
    assert server.running_models() == {} and server.custom_llm_names() == []


def test_two_applies_at_once(run_cli, server, tiny_model_dir, tmp_path):
    plan_path = write_plan(tiny_plan(tiny_model_dir, uid="first", replicas=1), tmp_path / "plan.yaml")
    lock = tmp_path / ".xinf-plan" / "state.json.lock"
    proc = _spawn_apply(plan_path, server, "--no-smoke-test")
    try:
        _wait_for(lambda: lock.exists() and lock.read_text().strip() == str(proc.pid), what="the lock")
        code, out, err = run_cli("apply", plan_path, *_auth(server))
        assert code == 8, out + err
        assert f"pid {proc.pid}" in err
        out1, err1 = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out1 + err1
    code, out, err = run_cli("destroy", plan_path, *_auth(server), "--yes")
    assert code == 0, out + err
    assert server.running_models() == {} and server.custom_llm_names() == []


def test_wrong_credentials_exit_6(run_cli, server, tiny_model_dir, tmp_path, monkeypatch):
    plan_path = write_plan(tiny_plan(tiny_model_dir), tmp_path / "plan.yaml")
    monkeypatch.setenv("XINFERENCE_PASSWORD", "wrong-password-123")
    code, out, err = run_cli("apply", plan_path, *_auth(server))
    assert code == 6, out + err
    assert "wrong-password-123" not in out + err
    assert len(err.strip().splitlines()) == 1
    code, out, err = run_cli("status", plan_path, "-e", server.url, "--api-key", "sk-not-a-real-key-0000")
    assert code == 6, out + err
    assert "sk-not-a-real-key-0000" not in out + err
    # a real API key may list but not launch: refused before anything changes
    key = server.api_key("faults")
    code, out, err = run_cli("apply", plan_path, "-e", server.url, "--api-key", key)
    assert code == 6, out + err
    assert key not in out + err and "--username" in err
    assert server.running_models() == {} and server.custom_llm_names() == []
    assert not (tmp_path / ".xinf-plan" / "state.json").exists()


def test_unreachable_endpoint_exit_5_quickly(run_cli, tiny_model_dir, tmp_path):
    plan_path = write_plan(tiny_plan(tiny_model_dir), tmp_path / "plan.yaml")
    port = free_port()  # nothing listens there
    start = time.monotonic()
    code, out, err = run_cli("status", plan_path, "-e", f"http://127.0.0.1:{port}", "--api-key", "x")
    assert code == 5, out + err
    assert "cannot reach" in err and time.monotonic() - start < 10
    # a listening socket that never answers: the connect/read timeouts still bound it
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(0)
        start = time.monotonic()
        code, out, err = run_cli(
            "apply", plan_path, "-e", f"http://127.0.0.1:{silent.getsockname()[1]}", "--api-key", "x"
        )
        elapsed = time.monotonic() - start
    assert code == 5, out + err
    assert elapsed < 10


def test_dry_run_makes_no_call(run_cli, server, tiny_model_dir, tmp_path):
    plan_path = write_plan(tiny_plan(tiny_model_dir), tmp_path / "plan.yaml")
    key = "sk-dry-run-secret-1234"
    code, out, err = run_cli("apply", plan_path, "-e", server.url, "--api-key", key, "--dry-run")
    assert code == 0, out + err
    assert key not in out + err and "api key ***" in out
    assert "register_model('LLM'" in out and 'launch_model(model_uid="tiny-r1-a"' in out
    assert server.running_models() == {} and server.custom_llm_names() == []
    assert not (tmp_path / ".xinf-plan").exists()
    # and it needs no server at all
    code, out2, err = run_cli("apply", plan_path, "-e", f"http://127.0.0.1:{free_port()}", "--dry-run")
    assert code == 0 and "launch_model(" in out2


def test_a_plan_validate_rejects_is_refused_before_connecting(run_cli, tiny_model_dir, tmp_path):
    """apply runs `xinf-plan validate`'s rules first: exit 1 naming the JSON path, and no
    call at all (the endpoint has nothing listening)."""
    plan = tiny_plan(tiny_model_dir, uid="pf", replicas=1)
    other = json.loads(json.dumps(plan["deployments"][0]))
    other["name"] = other["launch"]["model_uid"] = "pf-builtin"
    del other["registration"], other["arch"]
    other["model"] = "deepseek-r1-distill-qwen:1.5"
    other["launch"].update(
        model_name="deepseek-r1-distill-qwen", model_size_in_billions="1_5", quantization="Q9_X"
    )  # no such spec
    plan["deployments"][0]["launch"]["model_engine"] = "NoSuchEngine"
    plan["deployments"].append(other)
    plan_path = write_plan(plan, tmp_path / "plan.yaml")
    for command in ("apply", "diff"):
        code, out, err = run_cli(command, plan_path, "-e", f"http://127.0.0.1:{free_port()}", "--api-key", "x")
        assert code == 1, out + err
        assert f"{plan_path}: $.deployments[0].launch.model_engine: 'NoSuchEngine' is not an engine" in err
        assert "(and 1 more)" in err and "cannot reach" not in err
    assert not (tmp_path / ".xinf-plan").exists()


def test_preflight_reports_every_problem_before_changing_anything(run_cli, server, tiny_model_dir, tmp_path):
    """Two problems only the server can show, in a plan that validates: a worker the cluster
    lacks, and another model registered under the plan's registration name."""
    _bystander(server, tiny_model_dir, launch=False)
    plan = tiny_plan(
        tiny_model_dir, uid="pf", model_name="tiny-bystander", replicas=1, model_uri=(tmp_path / "elsewhere").as_uri()
    )
    with_hosts(plan, [cpu_host(worker_address="127.0.0.1:1")])
    plan_path = write_plan(plan, tmp_path / "plan.yaml")
    code, out, err = run_cli("apply", plan_path, *_auth(server))
    assert code == 7, out + err
    assert "preflight found 2 problem(s); nothing was changed" in err
    assert "worker 127.0.0.1:1 is not one of the server's workers" in out
    assert "a different model is already registered as 'tiny-bystander'" in out
    assert server.running_models() == {} and server.custom_llm_names() == ["tiny-bystander"]


def test_ctrl_c_during_launch_rolls_back(server, tiny_model_dir, tmp_path):
    plan_path = write_plan(tiny_plan(tiny_model_dir, uid="interrupted", replicas=2), tmp_path / "plan.yaml")
    state_file = tmp_path / ".xinf-plan" / "state.json"
    # SIGINT is what Ctrl-C sends
    code, out, err = _apply_interrupted(plan_path, server, lambda proc: proc.send_signal(signal.SIGINT))
    assert code == 7, out + err
    assert "interrupted (Ctrl-C)" in err and "terminated interrupted" in err
    assert "unregistered tiny-r1" in err
    assert server.running_models() == {} and server.custom_llm_names() == []
    assert json.loads(state_file.read_text())["deployments"] == {}
