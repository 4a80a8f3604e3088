"""What apply --persist/--publish/--prefetch, status, diff and destroy do with autostart entries
and launch templates, where it needs no server: the dry run, destroy's targets, the prefetch
requests, the report tables, and the defaults that leave the existing commands as they were."""

from __future__ import annotations

import json

import yaml
from support.paths import EXAMPLES

from xinf_planner.cli.commands.diff import render_table as diff_table
from xinf_planner.cli.commands.status import render_table as status_table
from xinf_planner.core.inventory import Inventory
from xinf_planner.core.planning import make_plan
from xinf_planner.core.request import request_from_intent
from xinf_planner.shell.deploy.apply import ApplyOptions
from xinf_planner.shell.deploy.dry_run import dry_run_calls
from xinf_planner.shell.deploy.prefetch import targets as prefetch_targets
from xinf_planner.shell.deploy.teardown import destroy_targets
from xinf_planner.shell.state import State, load_state, save_state


def _plan(hosts="cpu-only-16c-64g.yaml", **intent) -> dict:
    inv = Inventory.from_dict(yaml.safe_load((EXAMPLES / "hosts" / hosts).read_text()))
    return make_plan(inv, request_from_intent({"model": "deepseek-r1-distill-qwen:1.5", **intent}))


def test_dry_run_lists_the_new_calls_only_when_asked():
    plan = _plan()
    plain = dry_run_calls(plan, "http://h:9997", "no credentials")
    assert not any("autostart" in c or "launch_history" in c or "cache/models" in c for c in plain)
    calls = dry_run_calls(
        plan, "http://h:9997", "no credentials", ApplyOptions(persist=True, publish=True, prefetch=True)
    )
    cache = [c for c in calls if c.startswith("POST /v1/cache/models")]
    launch = plan["deployments"][0]["launch"]
    assert len(cache) == 1 and '"model_engine": "llama.cpp"' in cache[0]
    assert f'"quantization": "{launch["quantization"]}"' in cache[0]
    assert calls.index(cache[0]) < next(i for i, c in enumerate(calls) if c.startswith("launch_model("))
    upsert = next(c for c in calls if c.startswith("POST /v1/autostart/models"))
    entry = json.loads(upsert.split(" ", 2)[2].split("  #")[0])
    assert entry["launch"]["device"] == "cpu" and "n_gpu" not in entry["launch"]
    history = next(c for c in calls if c.startswith("POST /v1/launch_history"))
    assert json.loads(history.split(" ", 2)[2])["data"] == entry["launch"]


def test_destroy_removes_the_entries_it_recorded_and_those_of_models_it_terminates():
    plan = _plan()
    uid = plan["deployments"][0]["launch"]["model_uid"]
    name = plan["deployments"][0]["name"]
    state = State()
    state.record_launch(name, uid, "deepseek-r1-distill-qwen")
    running = {uid: {"model_name": "deepseek-r1-distill-qwen"}}
    assert destroy_targets(plan, state, running).autostart == []  # nothing known: nothing extra
    assert destroy_targets(plan, state, running, set()).autostart == []
    assert destroy_targets(plan, state, running, {uid}).autostart == [(name, uid)]  # would come back otherwise
    state.autostart[name] = uid
    assert destroy_targets(plan, state, running, {uid}).autostart == [(name, uid)]
    assert destroy_targets(plan, state, running, set()).autostart == []  # already gone on the server
    other = State()  # a model this state did not launch is left alone, its entry too
    assert destroy_targets(plan, other, running, {uid}).autostart == []


def test_prefetch_asks_each_worker_of_the_placement():
    inv = yaml.safe_load((EXAMPLES / "hosts" / "2x8xa100-cluster.yaml").read_text())
    for host, address in zip(inv["hosts"], ["10.0.0.11:30001", "10.0.0.12:30001"]):
        host["worker_address"] = address
    plan = make_plan(
        Inventory.from_dict(inv), request_from_intent({"model": "deepseek-r1-distill-qwen:7", "replicas": 2})
    )
    found = prefetch_targets(plan, [plan["deployments"][0]["name"]])
    assert sorted(t.worker for t in found) == ["10.0.0.11:30001", "10.0.0.12:30001"]
    body = found[0].body
    assert body["cache_uid"].startswith("xinf-plan-deepseek-r1-distill-qwen-7b-")
    assert {k: body[k] for k in ("model_name", "model_engine", "model_format", "quantization")} == {
        "model_name": "deepseek-r1-distill-qwen",
        "model_engine": "vLLM",
        "model_format": "pytorch",
        "quantization": "none",
    }
    sharded = yaml.safe_load((EXAMPLES / "cluster" / "plan-r1-fp8.yaml").read_text())
    assert sorted(t.worker for t in prefetch_targets(sharded, ["deepseek-r1-671b"])) == [
        "10.0.1.11:30001",
        "10.0.1.12:30001",
    ]
    local = prefetch_targets(_plan(), [_plan()["deployments"][0]["name"]])
    assert [t.worker for t in local] == [None] and "worker_ip" not in local[0].body


def test_the_tables_show_autostart_only_when_an_entry_is_kept():
    report = {"in_sync": True, "replicas": [], "unowned": []}
    assert "autostart" not in status_table(report)
    row = {"deployment": "chat", "model_uid": "chat-a", "entry": "differs", "in_step": False}
    row["detail"] = ["launch.replica: 2 written, 1 on the server"]
    text = status_table({**report, "in_sync": False, "autostart": [row]})
    assert "autostart (relaunched by Xinference after a restart):" in text
    assert "chat        chat-a     differs  launch.replica: 2 written, 1 on the server" in text
    diff = diff_table({"in_sync": False, "deployments": [], "autostart": [row]})
    assert "chat: rewrite the entry of chat-a (launch.replica: 2 written, 1 on the server)" in diff


def test_the_state_writes_autostart_only_once_used(tmp_path):
    path = tmp_path / "state.json"
    save_state(path, State())
    assert "autostart" not in json.loads(path.read_text())
    state = State()
    state.autostart["chat"] = "chat-a"
    save_state(path, state)
    assert load_state(path).autostart == {"chat": "chat-a"}
