"""The pure parts of apply/status/destroy: diff, status report, version floor, destroy
targets, dry run. Server answers below were recorded from a real Xinference 4.1.0
(`xinference-local` on the 2-core test VM, the tiny GGUF model of tests/integration)."""

from __future__ import annotations

import copy
import io

from hypothesis import given
from hypothesis import strategies as st

from xinf_planner.cli.output import Reporter
from xinf_planner.core.rollout.diff import ADD, REPLACE, UNCHANGED, compare, diff_plans, names_of, summary
from xinf_planner.core.rollout.status import status_report
from xinf_planner.shell.deploy.dry_run import dry_run_calls
from xinf_planner.shell.deploy.preflight import check_version
from xinf_planner.shell.deploy.teardown import destroy_targets
from xinf_planner.shell.server import (
    Credentials,
    mask_url,
    parse_version,
    resolve_endpoint,
)
from xinf_planner.shell.state import State

# GET /v1/models, one entry (recorded)
RUNNING_TINY = {
    "id": "tiny-a",
    "object": "model",
    "created": 0,
    "owned_by": "xinference",
    "model_type": "LLM",
    "address": "127.0.0.1:44059",
    "accelerators": [],
    "model_name": "tiny-r1",
    "model_lang": ["en"],
    "model_ability": ["chat", "reasoning"],
    "model_description": None,
    "model_format": "ggufv2",
    "model_size_in_billions": "0_01",
    "model_family": "deepseek-r1-distill-qwen",
    "quantization": "F32",
    "multimodal_projector": None,
    "model_hub": "huggingface",
    "revision": None,
    "context_length": 2048,
    "strict_system_first": False,
    "model_engine": "llama.cpp",
    "replica": 2,
}


def _rep(i, status="READY", error=None, worker="127.0.0.1:23905"):
    # get_instance_info(...)[0]["replica_statuses"][i] (recorded shape)
    return {
        "replica_id": i,
        "replica_model_uid": f"tiny-a-rep{i}",
        "worker_address": worker,
        "status": status,
        "model_state": "ready" if status == "READY" else "",
        "created_ts": 1795923140,
        "error_message": error,
        "replica_uid": None,
        "gpu_idx": None,
    }


def _instance(*reps):
    return {
        "model_name": "tiny-r1",
        "model_uid": "tiny-a",
        "replica": len(reps),
        "status": "READY" if all(r["status"] == "READY" for r in reps) else "CREATING",
        "n_worker": 1,
        "replica_statuses": list(reps),
    }


def _dep(name, uid, **launch):
    base = {
        "model_uid": uid,
        "model_name": "tiny-r1",
        "model_engine": "llama.cpp",
        "model_format": "ggufv2",
        "model_size_in_billions": 0.01,
        "quantization": "F32",
        "replica": 2,
        "n_gpu": None,
    }
    base.update(launch)
    return {
        "name": name,
        "model": "deepseek-r1-distill-qwen:0_01",
        "launch": base,
        "placement": [{"host": "localhost", "gpus": []}] * base["replica"],
        "estimate": {},
        "reasons": [],
    }


def _plan(*deps):
    return {"version": 1, "inventory": {"fingerprint": "x"}, "request": {}, "deployments": list(deps), "rejected": []}


def test_diff_sorts_deployments_into_launch_unchanged_differ():
    plan = _plan(
        _dep("same", "tiny-a"), _dep("other-quant", "tiny-b", quantization="Q4_K_M"), _dep("missing", "tiny-c")
    )
    running = {"tiny-a": RUNNING_TINY, "tiny-b": dict(RUNNING_TINY, id="tiny-b")}
    changes = diff_plans(plan, None, running, {}, set())
    assert names_of(changes, ADD) == ["missing"] and names_of(changes, UNCHANGED) == ["same"]
    (differing,) = [c for c in changes if c.kind == REPLACE]
    assert differing.name == "other-quant" and differing.fields == ["quantization: 'F32' -> 'Q4_K_M'"]
    assert compare(plan["deployments"][1]["launch"], running["tiny-b"]) == [
        "quantization: planned 'Q4_K_M', running 'F32'"
    ]
    assert summary(changes) == "1 to launch, 1 unchanged"


def test_compare_normalises_engine_case_and_size_spelling():
    launch = _dep("d", "tiny-a", model_engine="LLAMA.CPP", model_size_in_billions="0.01")["launch"]
    assert compare(launch, RUNNING_TINY) == []
    assert compare(dict(launch, replica=3), RUNNING_TINY) == ["replica: planned 3, running 2"]


@given(st.lists(st.sampled_from(["run", "differ", "absent"]), min_size=0, max_size=6))
def test_diff_partitions_every_deployment(kinds):
    deps, running = [], {}
    for i, kind in enumerate(kinds):
        uid = f"m{i}"
        deps.append(_dep(f"d{i}", uid))
        if kind != "absent":
            running[uid] = dict(RUNNING_TINY, id=uid, quantization="F32" if kind == "run" else "Q8_0")
    changes = diff_plans(_plan(*deps), None, running, {}, set())
    names = names_of(changes, ADD) + names_of(changes, UNCHANGED) + names_of(changes, REPLACE)
    assert sorted(names) == sorted(dep["name"] for dep in deps)
    assert len(names_of(changes, UNCHANGED)) == kinds.count("run")
    assert len(names_of(changes, REPLACE)) == kinds.count("differ")


def test_status_in_sync_drift_and_unowned():
    plan = _plan(_dep("d", "tiny-a"))
    stranger = dict(RUNNING_TINY, id="someone-else", model_name="qwen3")
    report = status_report(
        plan, {"tiny-a": RUNNING_TINY, "someone-else": stranger}, {"tiny-a": _instance(_rep(0), _rep(1))}
    )
    assert report["in_sync"] is True
    assert [r["status"] for r in report["replicas"]] == ["READY", "READY"]
    assert [m["model_uid"] for m in report["unowned"]] == ["someone-else"]  # listed, not drift

    creating = status_report(plan, {"tiny-a": RUNNING_TINY}, {"tiny-a": _instance(_rep(0), _rep(1, "CREATING"))})
    assert creating["in_sync"] is False

    failed = status_report(
        plan, {"tiny-a": RUNNING_TINY}, {"tiny-a": _instance(_rep(0), _rep(1, "ERROR", "out of memory"))}
    )
    assert failed["replicas"][1]["error"] == "out of memory" and not failed["in_sync"]

    gone = status_report(plan, {}, {"tiny-a": None})
    assert [r["status"] for r in gone["replicas"]] == ["MISSING", "MISSING"] and not gone["in_sync"]


def test_status_flags_a_replica_on_the_wrong_worker():
    dep = _dep("d", "tiny-a", replica=1)
    dep["launch"]["replica_config"] = [{"devices": [{"worker_ip": "127.0.0.1:30001"}]}]
    report = status_report(
        _plan(dep), {"tiny-a": dict(RUNNING_TINY, replica=1)}, {"tiny-a": _instance(_rep(0, worker="127.0.0.1:30002"))}
    )
    assert report["replicas"][0]["differences"] == ["worker: planned 127.0.0.1:30001, running 127.0.0.1:30002"]
    assert not report["in_sync"]


def test_version_floor_for_unified_context_length():
    plan = _plan(_dep("d", "tiny-a", context_length=4096))
    assert check_version("4.0.3", plan) == [
        "the plan uses 'context_length', which needs Xinference >= 4.1; the server runs 4.0.3"
    ]
    assert check_version("4.1.0", plan) == []
    assert check_version(None, plan) == []  # unreadable (an API key cannot read it): not refused here
    assert check_version("3.9.0", _plan(_dep("d", "tiny-a"))) == []


def test_destroy_touches_only_what_the_state_owns():
    plan = _plan(_dep("mine", "tiny-a"), _dep("not-launched-by-us", "tiny-b"))
    plan["deployments"][0]["registration"] = {
        "model_name": "tiny-r1",
        "model_family": "f",
        "model_format": "ggufv2",
        "model_uri": "file:///m",
    }
    state = State()
    state.record_launch("mine", "tiny-a", "tiny-r1")
    state.record_registration("tiny-r1")
    state.record_registration("from-another-plan")
    running = {"tiny-a": RUNNING_TINY, "tiny-b": RUNNING_TINY, "other": RUNNING_TINY}
    t = destroy_targets(plan, state, running)
    assert t.terminate == [("tiny-r1", "tiny-a")]
    assert t.unregister == ["tiny-r1"]
    assert len(t.skipped) == 1 and t.skipped[0].startswith("tiny-b")


def test_dry_run_lists_calls_and_masks_secrets():
    plan = _plan(_dep("d", "tiny-a"))
    creds = Credentials(api_key="sk-very-secret")
    calls = dry_run_calls(copy.deepcopy(plan), mask_url("http://bob:hunter2@h:9997"), creds.describe())
    text = "\n".join(calls)
    assert "sk-very-secret" not in text and "hunter2" not in text and "sk-very-secret" not in repr(creds)
    assert calls[0] == "Client('http://***@h:9997')  # api key ***"
    assert any(
        c.startswith('launch_model(model_uid="tiny-a", model_name="tiny-r1"') and c.endswith("wait_ready=False)")
        for c in calls
    )
    assert sum("chat/completions" in c for c in calls) == 1


def test_endpoint_resolution_and_versions():
    assert resolve_endpoint(None, {}) == "http://127.0.0.1:9997"
    assert resolve_endpoint(None, {"XINFERENCE_ENDPOINT": "10.0.0.5:9997/"}) == "http://10.0.0.5:9997"
    assert resolve_endpoint("http://a:1", {"XINFERENCE_ENDPOINT": "http://b:2"}) == "http://a:1"
    assert parse_version("4.1.0") == (4, 1, 0)
    assert parse_version("4.1.0rc1+g1234") == (4, 1, 0)
    assert parse_version(None) is None and parse_version("dev") is None


def test_reporter_plain_lines_only_on_change():
    out = io.StringIO()
    rep = Reporter(out, tty=False)
    rep.replicas([("r0", "CREATING", "  r0  CREATING  worker w  gpus -    1.0s")])
    rep.replicas([("r0", "CREATING", "  r0  CREATING  worker w  gpus -    2.0s")])
    rep.replicas([("r0", "READY", "  r0  READY  worker w  gpus -    3.0s")])
    assert out.getvalue().splitlines() == [
        "  r0  CREATING  worker w  gpus -    1.0s",
        "  r0  READY  worker w  gpus -    3.0s",
    ]


def test_reporter_redraws_in_place_on_a_terminal():
    out = io.StringIO()
    rep = Reporter(out, tty=True)
    rep.replicas([("r0", "CREATING", "a"), ("r1", "CREATING", "b")])
    rep.replicas([("r0", "READY", "c"), ("r1", "CREATING", "d")])
    assert out.getvalue() == "\x1b[2Ka\n\x1b[2Kb\n\x1b[2F\x1b[2Kc\n\x1b[2Kd\n"


def test_transient_launch_errors_are_recognised():
    from xinf_planner.shell.deploy.wait import transient_cause

    # the message Xinference 4.1.0 gave on this VM when two replicas raced (see apply.py)
    seen = (
        "deepseek-r1-distill-qwen-local-rep0: [Errno 17] File exists: '/tmp/demo/tiny-r1' -> "
        "'/tmp/demo-server/home/cache/v2/deepseek-r1-distill-qwen-local-ggufv2-0_00012b-F32'"
    )
    assert transient_cause(seen) == "replicas raced to create the model's cache link"
    assert transient_cause("bad-rep0: Invalid input. `model_path`: /x File or directory does not exist.") is None


# GET /v1/cluster/info?detailed=true worker rows: the fields a 4.1.0 supervisor returned on this
# VM (two CPU workers), with the GPU total of an H100 80GB (81559 MiB, as nvidia-smi reports it).
def _worker(address, vram_available_bytes):
    return {
        "node_type": "Worker",
        "ip_address": address,
        "gpu_count": 1,
        "gpu_vram_total": 85_520_809_984,
        "gpu_vram_available": vram_available_bytes,
        "cpu_count": 2,
        "software_version": "4.1.0",
    }


def test_memory_check_per_gpu_locally_and_per_worker_remotely():
    from xinf_planner.shell.deploy.preflight import gpu_needs, memory_problems

    dep = _dep("d", "m", replica=2)
    dep["estimate"] = {"per_gpu_gib": {"total": 70.0}}
    dep["launch"]["replica_config"] = [
        {"devices": [{"worker_ip": "127.0.0.1:30001", "gpu_idx": [0]}]},
        {"devices": [{"worker_ip": "10.0.0.2:30001", "gpu_idx": [0]}]},
    ]
    dep["placement"] = [{"host": "a", "gpus": [0]}, {"host": "b", "gpus": [0]}]
    needs = gpu_needs(_plan(dep), [dep], ["127.0.0.1:30001", "10.0.0.2:30001"])
    assert needs == {("127.0.0.1:30001", 0): 70.0, ("10.0.0.2:30001", 0): 70.0}
    workers = [_worker("127.0.0.1:30001", 0), _worker("10.0.0.2:30001", 60 * (1 << 30))]
    problems, notes = memory_problems(needs, workers, "127.0.0.1:30001", {0: 79.0})
    assert problems == ["worker 10.0.0.2:30001 has 60.00 GiB of GPU memory free; the plan counted on 70.00 GiB"]
    problems, _ = memory_problems(needs, workers, "127.0.0.1:30001", {0: 50.5})
    assert problems[0] == "GPU 0 has 50.50 GiB free; the plan counted on 70.00 GiB"
    problems, notes = memory_problems(needs, [_worker("10.0.0.2:30001", 80 << 30)], "127.0.0.1:30001", None)
    assert problems == [] and notes == ["free GPU memory not checked on this host: no NVIDIA GPU visible to NVML"]


def test_a_single_worker_takes_placements_that_name_none():
    from xinf_planner.shell.deploy.preflight import gpu_needs

    dep = _dep("d", "m", replica=2)
    dep["estimate"] = {"per_gpu_gib": {"total": 10.0}}
    dep["placement"] = [{"host": "h", "gpus": [0]}, {"host": "h", "gpus": [0]}]
    assert gpu_needs(_plan(dep), [dep], ["127.0.0.1:5000"]) == {("127.0.0.1:5000", 0): 20.0}


def test_dry_run_shows_the_env_a_sharded_launch_carries():
    from support.paths import EXAMPLES

    from xinf_planner.shell.documents import load_document

    plan = load_document(EXAMPLES / "cluster" / "plan-r1-fp8.yaml")
    (dep,) = plan["deployments"]
    dep["env"] = {k: "ib0" for k in dep["env"]}
    calls = dry_run_calls(plan, "http://h:9997", "# no credentials")
    (launch,) = [c for c in calls if c.startswith("launch_model(")]
    assert '"NCCL_SOCKET_IFNAME": "ib0"' in launch and "n_worker=2" in launch
