"""apply and rollback: a plan `validate` rejects never reaches a server; removals run before
launches, and the memory they free counts in the preflight; the rollout classification
changes whatever status calls drift; rollback records the plan file it re-applied.

Server answers are shaped as a real Xinference 4.1.0 gives them (GET /v1/models entries and
the cluster info's worker records, as in tests/test_apply_diff.py). No server is contacted:
where a command would connect, the endpoint is a port with nothing listening, so reaching
the network shows as exit 5.
"""

from __future__ import annotations

import copy
import socket
from functools import lru_cache

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.paths import EXAMPLES

from xinf_planner.core.documents import dump_document
from xinf_planner.core.plan.validate import plan_errors
from xinf_planner.core.planning import make_plan
from xinf_planner.core.request import request_from_intent
from xinf_planner.core.rollout.diff import ADD, REMOVE, SCALE, UNCHANGED, compare, names_of
from xinf_planner.errors import InvalidInput
from xinf_planner.shell.deploy.apply import apply_order
from xinf_planner.shell.deploy.preflight import gpu_needs, memory_problems
from xinf_planner.shell.deploy.rollouts import Facts, prepare
from xinf_planner.shell.documents import load_inventory, load_plan
from xinf_planner.shell.state import State, plan_hash, save_state

GIB = 1 << 30
WORKER = "127.0.0.1:30001"


@lru_cache(maxsize=None)
def _planned(inventory: str = "6xt4.yaml", model: str = "deepseek-r1-distill-qwen:7") -> dict:
    # 'throughput' spreads the 7B over the six T4s: three replicas of TP 2
    req = request_from_intent({"model": model, "context_length": 8192, "concurrency": 16, "objective": "throughput"})
    return make_plan(load_inventory(EXAMPLES / "hosts" / inventory), req)


def _plan(**kw) -> dict:
    return copy.deepcopy(_planned(**kw))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nowhere() -> list[str]:
    return ["-e", f"http://127.0.0.1:{_closed_port()}", "--api-key", "sk-test-0000"]


# --- 1. the rules of `validate`, before connecting -------------------------------------------
def _gpu_99(doc):
    dep = doc["deployments"][0]
    dep["placement"][0]["gpus"][0] = 99
    dep["launch"]["gpu_idx"][0] = 99


def _gpu_twice(doc):
    dep = doc["deployments"][0]
    gpus = dep["placement"][0]["gpus"]
    if len(gpus) < 2:  # one GPU per replica: list it twice
        gpus.append(gpus[0])
    else:
        gpus[1] = gpus[0]
    dep["launch"]["gpu_idx"] = [g for p in dep["placement"] for g in p["gpus"]]


def _over_committed(doc):
    doc["deployments"][0]["estimate"]["per_gpu_gib"]["total"] = 500.0


def _slices_swapped(doc):
    dep = doc["deployments"][0]
    assert len(dep["placement"]) >= 2, "the 6xT4 plan of the 7B has several replicas"
    idx = dep["launch"]["gpu_idx"]
    k = len(idx) // dep["launch"]["replica"]
    dep["launch"]["gpu_idx"] = idx[k : 2 * k] + idx[:k] + idx[2 * k :]


BREAKS = {
    "gpu index 99": _gpu_99,
    "a GPU twice": _gpu_twice,
    "over-committed memory": _over_committed,
    "gpu_idx slices swapped": _slices_swapped,
}


@pytest.mark.parametrize("how", sorted(BREAKS))
def test_apply_refuses_what_validate_rejects_before_connecting(how, run_cli, tmp_path):
    doc = _plan()
    BREAKS[how](doc)
    path = tmp_path / "plan.yaml"
    path.write_text(dump_document(doc, "yaml"), encoding="utf-8")
    code, _, verr = run_cli("validate", path)
    assert code == 1
    first = verr.splitlines()[0]  # "<file>: <json path>: <message>"
    for args in (["apply", path], ["apply", path, "--dry-run"], ["diff", path]):
        code, out, err = run_cli(*args, *_nowhere())
        assert code == 1, (args, out, err)
        assert first in err and "cannot reach" not in err, (args, first, err)
        assert len(err.strip().splitlines()) == 1
    with pytest.raises(InvalidInput, match=r"\$\.deployments\[0\]"):
        load_plan(path)
    # status and destroy stay lenient (schema only): they go on to the server (exit 5 here)
    load_plan(path, check="schema")
    code, out, err = run_cli("status", path, *_nowhere())
    assert code == 5 and "cannot reach" in err, out + err
    save_state(tmp_path / ".xinf-plan" / "state.json", State())
    code, out, err = run_cli("destroy", path, *_nowhere(), "--yes")
    assert code == 5 and "cannot reach" in err, out + err


def test_rollback_checks_the_plan_it_would_reapply(run_cli, tmp_path):
    broken, good = _plan(), _plan()
    _gpu_99(broken)
    spath = tmp_path / "state.json"
    state = State()
    state.record_applied(broken, None, "http://x")
    state.history[-1]["applied_at"] = "2026-01-01T00:00:00Z"
    state.record_applied(good, None, "http://x")
    save_state(spath, state)
    code, out, err = run_cli("rollback", "--state", spath, *_nowhere())
    assert code == 1, out + err
    assert f"{spath}: the plan applied at 2026-01-01T00:00:00Z: $.deployments[0].placement[0].gpus[0]" in err
    assert "cannot reach" not in err
    # a sound earlier plan goes on to the server
    state.history[0]["plan"] = good
    state.history[0]["plan_hash"] = plan_hash(good) + "-earlier"
    save_state(spath, state)
    code, out, err = run_cli("rollback", "--state", spath, *_nowhere())
    assert code == 5 and "cannot reach" in err, out + err


# --- 2. order: removals, then scales/replaces, then launches --------------------------------
def _running(dep: dict, replicas: int | None = None) -> dict:
    """A GET /v1/models entry for a deployment (the fields list_models shows)."""
    launch = dep["launch"]
    return {
        "id": launch["model_uid"],
        "model_type": "LLM",
        "model_name": launch["model_name"],
        "model_engine": launch["model_engine"],
        "model_format": launch["model_format"],
        "model_size_in_billions": str(launch["model_size_in_billions"]).replace(".", "_"),
        "quantization": launch["quantization"],
        "replica": replicas or launch["replica"],
    }


def _renamed(dep: dict, name: str) -> dict:
    out = copy.deepcopy(dep)
    out["name"] = out["launch"]["model_uid"] = name
    return out


def _swap_plans():
    """v1 runs A (two replicas of the planned 7B, GPUs 0,1 and 4,5 of the 6xT4) and C (a copy
    on GPUs 2 and 3); v2 drops A for B on the same GPUs and scales C from 2 replicas to 1."""
    v1 = _plan()
    a = v1["deployments"][0]
    a["placement"] = a["placement"][:2]
    a["launch"].update(replica=2, gpu_idx=[g for p in a["placement"] for g in p["gpus"]])
    c = _renamed(a, "c")
    c["placement"] = [{"host": p["host"], "gpus": [g]} for p, g in zip(a["placement"], (2, 3))]
    c["launch"].update(gpu_idx=[2, 3], tensor_parallel_size=1)
    v1["deployments"].append(c)
    v2 = copy.deepcopy(v1)
    c2 = v2["deployments"][1]
    c2["placement"] = c2["placement"][:1]
    c2["launch"].update(replica=1, gpu_idx=[2])
    v2["deployments"][0] = _renamed(a, "b")
    return v1, v2


def test_removals_come_before_rollouts_and_rollouts_before_launches():
    v1, v2 = _swap_plans()
    a, c = v1["deployments"]
    running = {a["launch"]["model_uid"]: _running(a), "c": _running(c)}
    ids = {a["launch"]["model_uid"]: list(range(a["launch"]["replica"])), "c": [0, 1]}
    facts = Facts(running, ids, [WORKER], v1, set(ids))
    rollout = prepare(v2, facts)
    assert apply_order(rollout.changes) == [(REMOVE, a["name"]), (SCALE, "c"), ("launch", "b")]
    assert (names_of(rollout.changes, ADD), names_of(rollout.changes, UNCHANGED)) == (["b"], [])


def test_preflight_counts_what_the_removals_free():
    """B needs A's GPUs: short of memory while A runs, enough once A's share is counted."""
    v1, v2 = _swap_plans()
    a, b = v1["deployments"][0], v2["deployments"][0]
    need = gpu_needs(v2, [b], [WORKER])
    freed = gpu_needs(v1, [a], [WORKER])
    assert set(freed) == set(need) and all(freed[k] == need[k] for k in need)  # the same GPUs, the same estimate
    per_gpu = float(a["estimate"]["per_gpu_gib"]["total"])
    # NVML on this host: each of A's GPUs has what A leaves (the T4's 15 GiB less A's share)
    local_free = {idx: 15.0 - per_gpu for _, idx in need}
    problems, _ = memory_problems(need, [], WORKER, local_free)
    assert problems and all("the removals free" not in p for p in problems)
    assert memory_problems(need, [], WORKER, local_free, freed) == ([], [])
    # a remote worker: Xinference sums its GPUs' free memory (gpu_vram_available)
    worker = {
        "node_type": "Worker",
        "ip_address": WORKER,
        "gpu_count": 6,
        "gpu_vram_total": 6 * 15 * GIB,
        "gpu_vram_available": int(len(need) * (15.0 - per_gpu) * GIB),
        "cpu_count": 2,
        "software_version": "4.1.0",
    }
    problems, _ = memory_problems(need, [worker], None, None)
    assert len(problems) == 1 and problems[0].startswith(f"worker {WORKER} has")
    assert memory_problems(need, [worker], None, None, freed) == ([], [])
    half = {k: v / 2 for k, v in freed.items()}
    problems, _ = memory_problems(need, [worker], None, None, half)
    assert len(problems) == 1 and f"(+{sum(half.values()):.2f} GiB that the removals free)" in problems[0]


# --- 5. whatever status calls drift is a scale or replace of the rollout ---------------------
FIELDS = {
    "model_engine": st.sampled_from(["llama.cpp", "LLAMA.CPP", "vllm"]),
    "model_format": st.sampled_from(["ggufv2", "GGUFV2", "pytorch"]),
    "quantization": st.sampled_from(["F32", "f32", "Q4_K_M"]),
    "model_size_in_billions": st.sampled_from(["0_01", 0.01, "7"]),
    "model_name": st.sampled_from(["tiny-r1", "other"]),
}


def _tiny(replicas: int) -> dict:
    launch = {
        "model_uid": "m",
        "model_name": "tiny-r1",
        "model_engine": "llama.cpp",
        "model_format": "ggufv2",
        "model_size_in_billions": 0.01,
        "quantization": "F32",
        "replica": replicas,
        "n_gpu": None,
    }
    return {
        "version": 1,
        "inventory": {"fingerprint": "x"},
        "request": {},
        "rejected": [],
        "deployments": [
            {
                "name": "d",
                "model": "deepseek-r1-distill-qwen:0_01",
                "launch": launch,
                "placement": [{"host": "localhost", "gpus": []}] * replicas,
                "estimate": {},
                "reasons": [],
            }
        ],
    }


@given(
    server=st.fixed_dictionaries({}, optional=FIELDS),
    planned=st.integers(1, 3),
    have=st.integers(1, 3),
    applied_before=st.booleans(),
)
def test_every_differing_deployment_is_a_scale_or_replace(server, planned, have, applied_before):
    plan = _tiny(planned)
    running = {"m": dict(_running(plan["deployments"][0], have), **server)}
    facts = Facts(running, {"m": list(range(have))}, [WORKER], _tiny(have) if applied_before else None, {"m"})
    differing = compare(plan["deployments"][0]["launch"], running["m"])
    rollout = prepare(plan, facts, allow_downtime=True)
    rolled = {c.name for c in rollout.rolled()}
    if differing:  # what status calls drift, the rollout changes
        assert rolled == {"d"}
    assert sorted(names_of(rollout.changes, UNCHANGED, ADD) + sorted(rolled)) == ["d"]


# --- 4. rollback records the file it re-applied ---------------------------------------------
def test_rollback_finds_the_file_of_the_plan_it_reapplies(tmp_path):
    from xinf_planner.cli.commands.rollback import plan_file_of

    v1, v2 = _swap_plans()
    for name, doc in (("v1.yaml", v1), ("v2.yaml", v2)):
        (tmp_path / name).write_text(dump_document(doc, "yaml"), encoding="utf-8")
    spath = tmp_path / ".xinf-plan" / "state.json"
    save_state(spath, State())
    entry = {"plan_hash": plan_hash(load_plan(tmp_path / "v1.yaml", check="none"))}
    assert plan_file_of(entry, None, spath) == str((tmp_path / "v1.yaml").resolve())
    assert plan_file_of(entry, str(tmp_path / "v2.yaml"), spath) == str((tmp_path / "v1.yaml").resolve())
    assert plan_file_of({"plan_hash": "sha256:none"}, str(tmp_path / "v2.yaml"), spath) is None
    assert plan_errors(v1) == plan_errors(v2) == []  # the swap is between plans validate accepts
    # a recorded path elsewhere (apply ran from another folder) is found first
    elsewhere = tmp_path / "other" / "v1-copy.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text((tmp_path / "v1.yaml").read_text(), encoding="utf-8")
    assert plan_file_of({**entry, "plan_path": str(elsewhere)}, None, spath) == str(elsewhere.resolve())
