"""The xinf-plan extension in a real Xinference 4.1.0 cluster: a supervisor and two workers,
all started with ``XINFERENCE_EXTENSIONS=xinf_planner.extension:create`` and authentication on
(the session's ``ext_cluster``). Worker 1 replays the NVML answers recorded on a 4 x RTX 4090
machine inside its own process (the extension's test-only switch); worker 0 probes this GPU-less
VM for real. Nothing is mocked: every request goes to the real servers.
"""

from __future__ import annotations

import json
import time

import pytest
import requests
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

INVENTORY, PLAN, VALIDATE = "/v1/xinf-plan/inventory", "/v1/xinf-plan/plan", "/v1/xinf-plan/validate"
INTENT = {"model": "deepseek-r1-distill-qwen:7", "context_length": 8192, "concurrency": 4}


@pytest.fixture
def cluster(ext_cluster, monkeypatch):
    monkeypatch.setenv("XINFERENCE_PASSWORD", ext_cluster.password)
    monkeypatch.delenv("XINFERENCE_ENDPOINT", raising=False)
    monkeypatch.delenv("XINFERENCE_API_KEY", raising=False)
    return ext_cluster


def _admin(cluster) -> dict:
    return {"Authorization": f"Bearer {cluster.token()}"}


def test_inventory_lists_both_workers_with_their_addresses_and_gpus(cluster):
    headers = _admin(cluster)
    t0 = time.monotonic()
    r = requests.get(f"{cluster.url}{INVENTORY}", headers=headers, timeout=60)
    took = time.monotonic() - t0
    assert r.status_code == 200, r.text
    inv = r.json()
    assert inv["version"] == 1
    by_address = {h["worker_address"]: h for h in inv["hosts"]}
    assert sorted(by_address) == sorted(cluster.worker_ips)
    real, replayed = by_address[cluster.worker_ips[0]], by_address[cluster.worker_ips[1]]
    # worker 0: this VM, probed for real inside the worker process (no GPU, a note why)
    assert real["gpus"] == []
    assert any("no NVIDIA GPUs" in n for n in real["notes"])
    # worker 1: the recorded 4 x RTX 4090 (model, memory, compute capability, NUMA, topology)
    gpus = replayed["gpus"]
    assert [g["name"] for g in gpus] == ["NVIDIA GeForce RTX 4090"] * 4
    assert {g["compute_capability"] for g in gpus} == {"8.9"}
    assert all(g["memory_total_bytes"] > 23 * 1024**3 for g in gpus)
    assert all("numa_node" in g for g in gpus)
    assert len(replayed["topology"]) == 4 and replayed["topology"][0][0] == "X"
    # two workers on one VM share a hostname: the port tells them apart
    names = [h["name"] for h in inv["hosts"]]
    assert len(set(names)) == 2
    assert all(h["xinference_models"] == [] for h in inv["hosts"])
    print(f"\nGET {INVENTORY} on 2 workers: {took * 1000:.0f} ms")


def test_routes_need_a_token_and_the_admin(cluster):
    for method, path in (("GET", INVENTORY), ("POST", PLAN), ("POST", VALIDATE)):
        r = requests.request(method, f"{cluster.url}{path}", json=INTENT, timeout=30)
        assert r.status_code == 401, (path, r.status_code, r.text)
    cluster.create_user("viewer", "viewer-pass-123", ["models:list", "models:read"])
    viewer = {"Authorization": f"Bearer {cluster.token_of('viewer', 'viewer-pass-123')}"}
    key = {"Authorization": f"Bearer {cluster.api_key('ext-routes')}"}
    for headers in (viewer, key):
        for method, path in (("GET", INVENTORY), ("POST", PLAN), ("POST", VALIDATE)):
            r = requests.request(method, f"{cluster.url}{path}", json=INTENT, headers=headers, timeout=30)
            assert r.status_code == 403, (path, r.status_code, r.text)


def test_inspect_endpoint_uses_the_extension(run_cli, cluster, tmp_path):
    out_path = tmp_path / "cluster.yaml"
    code, out, err = run_cli("inspect", "-e", cluster.url, "--username", cluster.username, "-o", out_path)
    assert code == 0, out + err
    assert "inventory from the server's xinf-plan extension: 2 worker(s)" in err
    assert "assumed identical" not in err
    inv = yaml.safe_load(out_path.read_text())
    gpus = {h["worker_address"]: [g["name"] for g in h["gpus"]] for h in inv["hosts"]}
    assert gpus == {cluster.worker_ips[0]: [], cluster.worker_ips[1]: ["NVIDIA GeForce RTX 4090"] * 4}


def test_plan_route_gives_the_cli_plan(run_cli, cluster, tmp_path):
    headers = _admin(cluster)
    t0 = time.monotonic()
    r = requests.post(f"{cluster.url}{PLAN}", json=INTENT, headers=headers, timeout=120)
    took = time.monotonic() - t0
    assert r.status_code == 200, r.text
    served = r.json()
    dep = served["deployments"][0]
    assert dep["launch"]["model_engine"] == "vLLM"  # on the replayed 4090s
    assert {rc["devices"][0]["worker_ip"] for rc in dep["launch"]["replica_config"]} == {cluster.worker_ips[1]}
    # the CLI, given the inventory the route planned on and the same intent, writes the same plan
    (tmp_path / "inv.json").write_text(json.dumps(served["inventory"]["document"]))
    (tmp_path / "intent.yaml").write_text(yaml.safe_dump(INTENT))
    code, out, err = run_cli(
        "plan", "--hardware", tmp_path / "inv.json", "--intent", tmp_path / "intent.yaml", "--format", "json"
    )
    assert code == 0, out + err
    cli = json.loads(out)
    assert served["inventory"].pop("source").startswith("xinf-plan extension")
    assert cli["inventory"].pop("source") == str(tmp_path / "inv.json")
    assert served == cli
    print(f"\nPOST {PLAN} (7B, 2 workers): {took * 1000:.0f} ms")

    v = requests.post(f"{cluster.url}{VALIDATE}", json=served, headers=_admin(cluster), timeout=60)
    assert v.status_code == 200 and v.json() == {"valid": True, "errors": []}, v.text
    broken = json.loads(json.dumps(cli))
    broken["deployments"][0]["launch"]["replica_config"][0]["devices"][0]["worker_ip"] = "127.0.0.1:1"
    broken["deployments"][0]["launch"]["replica"] = 0
    v = requests.post(f"{cluster.url}{VALIDATE}", json=broken, headers=_admin(cluster), timeout=60)
    assert v.status_code == 200, v.text
    assert v.json()["valid"] is False
    assert "$.deployments[0].launch.replica" in [e["path"] for e in v.json()["errors"]]
    # a valid plan, made for a cluster whose GPU worker had another address
    inv = served["inventory"]["document"]
    for host in inv["hosts"]:
        if host["worker_address"] == cluster.worker_ips[1]:
            host["worker_address"] = "127.0.0.1:1"
    (tmp_path / "moved.json").write_text(json.dumps(inv))
    code, out, err = run_cli(
        "plan", "--hardware", tmp_path / "moved.json", "--intent", tmp_path / "intent.yaml", "--format", "json"
    )
    assert code == 0, out + err
    v = requests.post(f"{cluster.url}{VALIDATE}", data=out, headers=_admin(cluster), timeout=60)
    answer = v.json()
    assert v.status_code == 200 and answer["valid"] is False, v.text
    assert answer["errors"][0]["path"] == "$.deployments[0].launch.replica_config[0].devices[0].worker_ip"
    assert "worker 127.0.0.1:1 is not registered in this cluster" in answer["errors"][0]["message"]


def test_malformed_intents_are_400_with_one_line(cluster):
    for body, words in (
        (b"not json", "not JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"model": 7}', "$.model"),
        (b'{"model": "deepseek-r1-distill-qwen", "concurrency": 0}', "$.concurrency"),
        (b'{"model": "no-such-model"}', "no-such-model"),
        (b'{"model": "deepseek-r1-distill-qwen", "model_path": "/etc"}', "model_path"),
        (b'{"model": "deepseek-r1-distill-qwen", "context_length": NaN}', "NaN"),
    ):
        r = requests.post(
            f"{cluster.url}{PLAN}",
            data=body,
            headers={**_admin(cluster), "Content-Type": "application/json"},
            timeout=60,
        )
        assert r.status_code == 400, (body, r.status_code, r.text)
        detail = r.json()["detail"]
        assert words in detail and "\n" not in detail and "Traceback" not in detail, detail


def test_a_worker_without_the_extension_is_refused(cluster):
    """The supervisor refuses a worker whose extensions differ: the worker keeps running and
    retrying, logs why, and is never registered (docs/extension.md says what the user sees)."""
    proc, address = cluster.extra_worker("stranger", extension=False)
    try:
        deadline = time.monotonic() + 90
        seen = ""
        while time.monotonic() < deadline:
            seen = proc.log.read_text(errors="replace")
            if "Worker and supervisor extensions must match" in seen:
                break
            time.sleep(2)
        assert "Worker and supervisor extensions must match" in seen, seen[-2000:]
        assert proc.alive()
        assert address not in [w["work-ip"] for w in cluster.get("/v1/workers")]
        assert address not in cluster.worker_addresses()
        sup_log = (cluster.root / "supervisor.log").read_text(errors="replace")
        assert "Worker and supervisor extensions must match" in sup_log
        # the extension's inventory still lists exactly the two registered workers
        inv = cluster.get(INVENTORY)
        assert sorted(h["worker_address"] for h in inv["hosts"]) == sorted(cluster.worker_ips)
    finally:
        proc.stop()
