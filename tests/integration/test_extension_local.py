"""The xinf-plan extension on a real ``xinference-local`` 4.1.0 with authentication on (the
session's ``ext_server``): its routes, ``inspect -e``, ``apply --persist`` across a restart,
``--publish`` into the launch history, and ``--prefetch`` through the model cache API. The
server serves the tests' tiny offline GGUF; nothing is mocked and nothing is downloaded.

The restart test stops the shared server and starts it again on the same home, so it runs
last in this file.
"""

from __future__ import annotations

import json
import time

import pytest
import requests
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.integration

UID = "deepseek-r1-distill-qwen-local"  # the planner's uid for local weights of that family
INVENTORY, PLAN, VALIDATE = "/v1/xinf-plan/inventory", "/v1/xinf-plan/plan", "/v1/xinf-plan/validate"
CPU_HOST = {
    "version": 1,
    "hosts": [
        {
            "name": "localhost",
            "os": "linux",
            "arch": "x86_64",
            "cpu_cores": 2,
            "memory_total_bytes": 25276510208,
            "memory_available_bytes": 20 * 1024**3,
            "gpus": [],
        }
    ],
}


def _auth(server) -> list[str]:
    return ["-e", server.url, "--username", server.username]


def _admin(server) -> dict:
    return {"Authorization": f"Bearer {server.token()}"}


def _tiny_plan(run_cli, tmp_path, model_dir, replicas: int = 1):
    (tmp_path / "host.yaml").write_text(yaml.safe_dump(CPU_HOST))
    plan_path = tmp_path / "plan.yaml"
    code, out, err = run_cli(
        "plan",
        "--hardware",
        tmp_path / "host.yaml",
        "--model",
        "deepseek-r1-distill-qwen",
        "--model-path",
        model_dir,
        "--replicas",
        replicas,
        "--context-length",
        512,
        "--disable-virtual-env",
        "-o",
        plan_path,
    )
    assert code == 0, out + err
    return plan_path


def _entries(server) -> dict:
    return {e["launch"]["model_uid"]: e for e in server.get("/v1/autostart/models")["models"]}


# --- routes -----------------------------------------------------------------------------------------
def test_local_inventory_route_and_auth(ext_clean):
    server = ext_clean
    assert requests.get(f"{server.url}{INVENTORY}", timeout=30).status_code == 401
    r = requests.get(f"{server.url}{INVENTORY}", headers={"Authorization": "Bearer nonsense"}, timeout=30)
    assert r.status_code == 401
    key = {"Authorization": f"Bearer {server.api_key('ext-local')}"}
    assert requests.get(f"{server.url}{INVENTORY}", headers=key, timeout=30).status_code == 403
    server.create_user("reader", "reader-pass-123", ["models:list", "models:read", "models:write"])
    reader = {"Authorization": f"Bearer {server.token_of('reader', 'reader-pass-123')}"}
    r = requests.post(f"{server.url}{PLAN}", json={"model": "deepseek-r1-distill-qwen"}, headers=reader, timeout=30)
    assert r.status_code == 403, r.text
    r = requests.get(f"{server.url}{INVENTORY}", headers=_admin(server), timeout=30)
    assert r.status_code == 200, r.text
    inv = r.json()
    assert len(inv["hosts"]) == 1
    host = inv["hosts"][0]
    # xinference-local's worker gets a new port at every start: left out, so plans survive restarts
    assert "worker_address" not in host
    assert any("xinference-local" in n for n in inv["notes"])
    assert host["gpus"] == [] and host["memory_total_bytes"] > 1


def test_inspect_endpoint_on_local_uses_the_extension(run_cli, ext_clean, tmp_path):
    code, out, err = run_cli("inspect", *_auth(ext_clean), "-o", tmp_path / "inv.yaml")
    assert code == 0, out + err
    assert "inventory from the server's xinf-plan extension: 1 worker(s)" in err
    assert yaml.safe_load((tmp_path / "inv.yaml").read_text())["hosts"][0]["gpus"] == []


def test_inspect_endpoint_without_the_extension_falls_back(run_cli, login_env, tmp_path):
    code, out, err = run_cli("inspect", *_auth(login_env), "-o", tmp_path / "inv.yaml")
    assert code == 0, out + err
    assert "the server has no xinf-plan extension (GET /v1/xinf-plan/inventory: 404)" in err


def test_local_plan_route_gives_the_cli_plan(run_cli, ext_clean, tmp_path):
    intent = {"model": "deepseek-r1-distill-qwen:1.5", "context_length": 512, "replicas": 2, "max_ttft_ms": 60000}
    r = requests.post(f"{ext_clean.url}{PLAN}", json=intent, headers=_admin(ext_clean), timeout=120)
    assert r.status_code == 200, r.text
    served = r.json()
    launch = served["deployments"][0]["launch"]
    assert "replica_config" not in launch and launch["replica"] == 2  # by GPU index, not by address
    (tmp_path / "inv.json").write_text(json.dumps(served["inventory"]["document"]))
    (tmp_path / "intent.json").write_text(json.dumps(intent))
    code, out, err = run_cli(
        "plan", "--hardware", tmp_path / "inv.json", "--intent", tmp_path / "intent.json", "--format", "json"
    )
    assert code == 0, out + err
    cli = json.loads(out)
    served["inventory"].pop("source")
    cli["inventory"].pop("source")
    assert served == cli
    v = requests.post(f"{ext_clean.url}{VALIDATE}", json=cli, headers=_admin(ext_clean), timeout=60)
    assert v.json() == {"valid": True, "errors": []}


BODIES = st.one_of(
    st.binary(max_size=120),
    st.dictionaries(
        st.sampled_from(["model", "models", "context_length", "concurrency", "replicas", "engines", "headroom", "x"]),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(min_value=-(2**70), max_value=2**70),
            st.floats(allow_nan=False, allow_infinity=False),
            st.text(max_size=30),
            st.sampled_from(["deepseek-r1-distill-qwen:1.5", "deepseek-r1:671", ["llama.cpp"], "10%"]),
            st.lists(st.dictionaries(st.sampled_from(["model", "share"]), st.text(max_size=8)), max_size=2),
        ),
        max_size=4,
    ).map(lambda d: json.dumps(d).encode()),
)


def test_fuzz_the_live_routes_never_answer_500(ext_clean):
    """Random bodies against the real server: 200, 400 or 422 (plan), 200 or 400 (validate);
    never a 500, never a traceback."""
    headers = {**_admin(ext_clean), "Content-Type": "application/json"}
    seen: dict[int, int] = {}

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=BODIES)
    def check(body):
        for path, allowed in ((PLAN, (200, 400, 422)), (VALIDATE, (200, 400))):
            r = requests.post(f"{ext_clean.url}{path}", data=body, headers=headers, timeout=120)
            seen[r.status_code] = seen.get(r.status_code, 0) + 1
            assert r.status_code in allowed, (path, body, r.status_code, r.text[:500])
            assert "Traceback" not in r.text

    check()
    assert "xinf-plan extension route failed" not in ext_clean.logs()
    print(f"\nlive fuzz: status codes {dict(sorted(seen.items()))}")


# --- launch templates ---------------------------------------------------------------------------------
def test_publish_adds_launch_templates(run_cli, ext_clean, tiny_model_dir, tmp_path):
    server = ext_clean
    plan_path = _tiny_plan(run_cli, tmp_path, tiny_model_dir)
    code, out, err = run_cli("apply", plan_path, *_auth(server), "--no-smoke-test", "--publish")
    assert code == 0, out + err
    assert f"published {UID}" in out and "1 published" in out
    rows = [r for r in server.get("/v1/launch_history") if r["model_uid"] == UID]
    assert len(rows) == 1
    launch = yaml.safe_load(plan_path.read_text())["deployments"][0]["launch"]
    assert rows[0]["data"] == launch  # verbatim, n_gpu null included
    assert rows[0]["ui_data"] == {"n_gpu": "CPU"}
    assert rows[0]["autostart_enabled"] is False
    code, out, err = run_cli("publish", plan_path, *_auth(server))
    assert code == 0, out + err
    assert len([r for r in server.get("/v1/launch_history") if r["model_uid"] == UID]) == 1  # one template per uid
    code, out, err = run_cli("destroy", plan_path, *_auth(server), "--yes")
    assert code == 0, out + err
    requests.delete(f"{server.url}/v1/launch_history/{launch['model_name']}/{UID}", headers=_admin(server), timeout=30)


# --- weights before launch ----------------------------------------------------------------------------
def test_prefetch_of_local_weights_needs_no_download(run_cli, ext_clean, tiny_model_dir, tmp_path):
    plan_path = _tiny_plan(run_cli, tmp_path, tiny_model_dir)
    code, out, err = run_cli("apply", plan_path, *_auth(ext_clean), "--no-smoke-test", "--prefetch")
    assert code == 0, out + err
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if "nothing to download" in line)
    assert f"local weights (file://{tiny_model_dir}" in lines[at]
    assert at < next(i for i, line in enumerate(lines) if line.startswith(f"launch {UID}"))
    assert set(ext_clean.running_models()) == {UID}
    code, out, err = run_cli("destroy", plan_path, *_auth(ext_clean), "--yes")
    assert code == 0, out + err


def test_prefetch_from_an_unreachable_hub_fails_before_any_launch(run_cli, ext_clean, tmp_path):
    """A catalog model: the server's worker must download it, and this machine has no network
    (HF_HUB_OFFLINE=1 for the test servers): exit 7, a clear reason, nothing launched."""
    (tmp_path / "host.yaml").write_text(yaml.safe_dump(CPU_HOST))
    plan_path = tmp_path / "plan.yaml"
    code, out, err = run_cli(
        "plan",
        "--hardware",
        tmp_path / "host.yaml",
        "--model",
        "deepseek-r1-distill-qwen:1.5",
        "--context-length",
        512,
        "--disable-virtual-env",
        "-o",
        plan_path,
    )
    assert code == 0, out + err
    start = time.monotonic()
    code, out, err = run_cli("apply", plan_path, *_auth(ext_clean), "--prefetch")
    took = time.monotonic() - start
    assert code == 7, out + err
    message = err.strip().splitlines()[-1]
    assert message.startswith("error: prefetch failed: deepseek-r1-distill-qwen-1.5b on the worker: HTTP 503: ")
    assert "Failed to download model 'deepseek-r1-distill-qwen'" in message
    assert "is it reachable from the worker" in message and "[address=" not in message
    assert "nothing was launched" in message and "Traceback" not in out + err
    assert "launch deepseek" not in out
    assert ext_clean.running_models() == {}
    assert [d for d in ext_clean.get("/v1/downloads")["list"] if d.get("cache_uid", "").startswith("xinf-plan-")] == []
    print(f"\nprefetch from an unreachable hub failed in {took:.1f} s")


# --- deployments that come back ---------------------------------------------------------------------
def test_diff_and_a_rollout_keep_the_entry_in_step(run_cli, ext_clean, tiny_model_dir, tmp_path):
    server = ext_clean
    plan_path = _tiny_plan(run_cli, tmp_path, tiny_model_dir, replicas=1)
    code, out, err = run_cli("apply", plan_path, *_auth(server), "--persist", "--no-smoke-test")
    assert code == 0, out + err
    assert _entries(server)[UID]["launch"]["replica"] == 1
    # v2: two replicas, beside v1 so that it shares v1's state file
    v2 = yaml.safe_load(plan_path.read_text())
    v2["deployments"][0]["launch"]["replica"] = 2
    v2["deployments"][0]["placement"] = v2["deployments"][0]["placement"] * 2
    v2_path = plan_path.parent / "plan-v2.yaml"
    v2_path.write_text(yaml.safe_dump(v2, sort_keys=False))
    code, out, err = run_cli("validate", v2_path)
    assert code == 0, out + err
    code, out, err = run_cli("diff", v2_path, *_auth(server))
    assert code == 2, out + err
    assert f"{UID}: rewrite the entry of {UID} (launch.replica: 2 written, 1 on the server)" in out
    code, out, err = run_cli("apply", v2_path, *_auth(server), "--no-smoke-test")  # no flag: the state keeps it
    assert code == 0, out + err
    lines = out.splitlines()
    paused = next(i for i, line in enumerate(lines) if f"entry of {UID} removed while {UID} changes" in line)
    scaled = next(i for i, line in enumerate(lines) if "ready in" in line)
    written = next(i for i, line in enumerate(lines) if f"autostart {UID}: entry of {UID} written" in line)
    assert paused < scaled < written
    assert _entries(server)[UID]["launch"]["replica"] == 2
    code, out, err = run_cli("diff", v2_path, *_auth(server))
    assert code == 0, out + err
    code, out, err = run_cli("status", v2_path, *_auth(server))
    assert code == 0 and f"{UID}  matches" in out, out + err
    # --no-persist removes it; status then shows no autostart section
    code, out, err = run_cli("apply", v2_path, *_auth(server), "--no-persist", "--no-smoke-test")
    assert code == 0 and f"autostart {UID}: entry of {UID} removed" in out, out + err
    assert UID not in _entries(server)
    code, out, err = run_cli("status", v2_path, *_auth(server))
    assert code == 0 and "autostart" not in out, out + err
    code, out, err = run_cli("destroy", v2_path, *_auth(server), "--yes")
    assert code == 0, out + err


def test_persist_refuses_replicas_on_several_workers_before_connecting(run_cli, tmp_path):
    from xinf_planner.core.inventory import Inventory
    from xinf_planner.core.planning import make_plan
    from xinf_planner.core.request import request_from_intent

    doc = {"version": 1, "hosts": []}
    for i in range(2):
        doc["hosts"].append(dict(CPU_HOST["hosts"][0], name=f"node{i}", worker_address=f"127.0.0.1:{3001 + i}"))
    plan = make_plan(
        Inventory.from_dict(doc),
        request_from_intent({"model": "deepseek-r1-distill-qwen:1.5", "replicas": 2, "context_length": 512}),
    )
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    code, out, err = run_cli("apply", tmp_path / "plan.yaml", "-e", "http://127.0.0.1:9", "--persist")
    assert code == 1, out + err
    assert "cannot persist: deepseek-r1-distill-qwen-1.5b: its 2 replicas are pinned to 2 workers" in err
    assert "cannot reach" not in err  # refused before any connection


# --- deployments that come back (last: it restarts the server) --------------------------------------
def test_persist_survives_a_restart_and_destroy_removes_the_entry(run_cli, ext_clean, tiny_model_dir, tmp_path):
    server = ext_clean
    plan_path = _tiny_plan(run_cli, tmp_path, tiny_model_dir)
    code, out, err = run_cli("apply", plan_path, *_auth(server), "--persist", "--publish")
    assert code == 0, out + err
    assert f"autostart {UID}: entry of {UID} written (the CPU placement (n_gpu null) written as device: cpu" in out
    assert "1 autostart entry written" in out
    entry = _entries(server)[UID]
    launch = yaml.safe_load(plan_path.read_text())["deployments"][0]["launch"]
    assert entry["launch"] == {**{k: v for k, v in launch.items() if k != "n_gpu"}, "device": "cpu"}
    # the published template is the autostart row itself: the same launch, still enabled
    row = next(r for r in server.get("/v1/launch_history") if r["model_uid"] == UID)
    assert row["autostart_enabled"] is True and row["data"] == entry["launch"]

    code, out, err = run_cli("status", plan_path, *_auth(server))
    assert code == 0, out + err
    assert "autostart (relaunched by Xinference after a restart):" in out
    assert f"{UID}  matches" in out
    code, out, err = run_cli("apply", plan_path, *_auth(server))  # sticky: kept in step, not rewritten
    assert code == 0 and "already matches" in out, out + err

    pid = server.pid
    server.stop()  # SIGTERM to xinference-local's process group (its pid), then SIGKILL of what is left
    with pytest.raises(requests.RequestException):
        requests.get(f"{server.url}/v1/cluster/auth", timeout=2)
    start = time.monotonic()
    server.start()  # the same home directory and port
    assert server.pid != pid
    up = time.monotonic() - start
    deadline = time.monotonic() + 300
    status = None
    while time.monotonic() < deadline:
        if UID in server.running_models():
            inst = server.get("/v1/models/instances", model_name=UID, model_uid=UID)
            status = [r["status"] for r in inst[0]["replica_statuses"]] if inst else None
            if status == ["READY"]:
                break
        time.sleep(2)
    ready = time.monotonic() - start
    assert status == ["READY"], server.logs()[-3000:]
    assert "Autostart launched model" in server.logs()
    print(f"\nrestart: server up in {up:.1f} s, {UID} READY again by itself {ready:.1f} s after the start")

    code, out, err = run_cli("status", plan_path, *_auth(server))
    assert code == 0, out + err
    assert "in sync with the plan" in out and f"{UID}  matches" in out

    code, out, err = run_cli("destroy", plan_path, *_auth(server), "--yes")
    assert code == 0, out + err
    assert f"removed the autostart entry of {UID}" in out
    assert UID not in _entries(server)
    assert server.running_models() == {}
    assert [e for e in server.get("/v1/autostart/models/summary")["models"] if e["model_uid"] == UID] == []
    requests.delete(f"{server.url}/v1/launch_history/{launch['model_name']}/{UID}", headers=_admin(server), timeout=30)
