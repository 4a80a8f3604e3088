"""The extension's routes as pure functions (core/routes.py) and the cluster inventory they plan
on (core/workers.py): bad bodies are 400 with one line, never an exception; a fuzz of bodies."""

from __future__ import annotations

import functools
import json

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.paths import EXAMPLES

from xinf_planner.core.inventory import Inventory
from xinf_planner.core.routes import MAX_BODY_BYTES, missing_workers, parse_object, plan_answer, validate_answer
from xinf_planner.core.workers import EXTENSION_NAME, MODELS_KEY, inventory_from_workers, worker_metadata_document
from xinf_planner.errors import InvalidInput


def _host(name="gpu-a", hosts_file="4x4090-pcie.yaml") -> dict:
    host = yaml.safe_load((EXAMPLES / "hosts" / hosts_file).read_text())["hosts"][0]
    host = dict(host, name=name)
    host.pop("worker_address", None)
    return host


def _worker(address: str, host: dict, models=()) -> dict:
    meta = worker_metadata_document(host, 0.01, "0.1.0")
    return {"address": address, "resources": {"extensions": {EXTENSION_NAME: meta}}, "models": list(models)}


@functools.lru_cache(maxsize=1)
def _inventory() -> Inventory:
    inv, _ = inventory_from_workers(
        [_worker("10.0.0.1:30001", _host("gpu-a")), _worker("10.0.0.2:30001", _host("gpu-b", "cpu-only-16c-64g.yaml"))]
    )
    return inv


# --- the cluster inventory ------------------------------------------------------------------------
def test_each_worker_is_a_host_with_its_address_and_what_it_serves():
    inv, notes = inventory_from_workers(
        [_worker("10.0.0.2:30001", _host("gpu-b")), _worker("10.0.0.1:30001", _host("gpu-a"), ["m-rep0"])]
    )
    assert [(h.name, h.worker_address) for h in inv.hosts] == [("gpu-a", "10.0.0.1:30001"), ("gpu-b", "10.0.0.2:30001")]
    assert inv.hosts[0].extra[MODELS_KEY] == ["m-rep0"]
    assert len(inv.hosts[0].gpus) == 4 and notes == []


def test_workers_sharing_a_hostname_are_told_apart_by_port():
    inv, _ = inventory_from_workers([_worker("127.0.0.1:3001", _host("vm")), _worker("127.0.0.1:3002", _host("vm"))])
    assert [h.name for h in inv.hosts] == ["vm-3001", "vm-3002"]


def test_xinference_local_leaves_the_changing_worker_address_out():
    inv, _ = inventory_from_workers([_worker("127.0.0.1:41234", _host("vm"))], local=True)
    assert inv.hosts[0].worker_address is None
    assert any("127.0.0.1:41234" in n and "changes at every start" in n for n in inv.notes)


def test_a_worker_that_cannot_be_read_is_left_out_with_a_note():
    bad_meta = {"address": "10.0.0.3:1", "resources": {"extensions": {EXTENSION_NAME: {"version": 99}}}}
    bad_host = _worker("10.0.0.4:1", dict(_host(), memory_total_bytes=0))
    inv, notes = inventory_from_workers(
        [
            _worker("10.0.0.1:1", _host()),
            bad_meta,
            bad_host,
            {"address": "10.0.0.5:1", "error": "no answer within 20 s"},
            {"address": "10.0.0.6:1", "resources": {"extensions": {}}},
        ]
    )
    assert [h.worker_address for h in inv.hosts] == ["10.0.0.1:1"]
    assert [n.split(" left out")[0] for n in notes] == [
        "worker 10.0.0.3:1",
        "worker 10.0.0.4:1",
        "worker 10.0.0.5:1",
        "worker 10.0.0.6:1",
    ]
    with pytest.raises(InvalidInput, match="no worker reported"):
        inventory_from_workers([bad_meta])


# --- the plan route -------------------------------------------------------------------------------
def test_the_plan_route_plans_on_the_live_inventory():
    status, plan = plan_answer(json.dumps({"model": "deepseek-r1-distill-qwen:7"}).encode(), _inventory(), "live")
    assert status == 200
    assert plan["inventory"]["source"] == "live"
    assert plan["inventory"]["document"] == _inventory().to_dict()
    workers = {rc["devices"][0]["worker_ip"] for rc in plan["deployments"][0]["launch"].get("replica_config") or []}
    assert workers <= {"10.0.0.1:30001", "10.0.0.2:30001"}


@pytest.mark.parametrize(
    "body, words",
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"\xff\xfe", "not UTF-8"),
        (b"{", "not JSON"),
        (b"[]", "JSON list, not an object"),
        (b'"x"', "JSON str, not an object"),
        (b'{"model": "deepseek-r1-distill-qwen", "concurrency": Infinity}', "Infinity"),
        (b'{"model": "deepseek-r1-distill-qwen", "bogus": 1}', "bogus"),
        (b'{"models": [{"model": "deepseek-r1-distill-qwen", "model_path": "/x"}]}', "model_path"),
        (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    ],
)
def test_bad_bodies_are_400_with_one_line(body, words):
    status, answer = plan_answer(body, _inventory(), "live")
    assert status == 400, answer
    assert words in answer["detail"], answer
    assert "\n" not in answer["detail"] and len(answer["detail"]) <= 500


def test_a_body_over_the_limit_is_refused_before_it_is_parsed():
    status, answer = plan_answer(b" " * (MAX_BODY_BYTES + 1), _inventory(), "live")
    assert status == 400 and "larger than" in answer["detail"]


def test_nothing_fits_is_422_with_the_explanation():
    intent = {"model": "deepseek-r1:671", "engines": ["vllm"]}
    status, answer = plan_answer(json.dumps(intent).encode(), _inventory(), "live")
    assert status == 422
    assert answer["detail"].startswith("nothing fits deepseek-r1:671") and "\n" not in answer["detail"]
    assert "Tried" in answer["explanation"]


# --- the validate route ---------------------------------------------------------------------------
def test_validate_names_errors_by_json_path_and_missing_workers():
    _, plan = plan_answer(json.dumps({"model": "deepseek-r1-distill-qwen:7"}).encode(), _inventory(), "live")
    assert validate_answer(json.dumps(plan).encode(), ["10.0.0.1:30001", "10.0.0.2:30001"]) == (
        200,
        {"valid": True, "errors": []},
    )
    status, answer = validate_answer(json.dumps(plan).encode(), ["10.0.0.2:30001"])
    assert status == 200 and answer["valid"] is False
    assert all("10.0.0.1:30001 is not registered" in e["message"] for e in answer["errors"])
    assert answer["errors"][0]["path"].startswith("$.deployments[0].launch.replica_config[")
    bad = dict(plan, version=2)
    status, answer = validate_answer(json.dumps(bad).encode(), None)
    assert status == 200 and answer["errors"][0]["path"] == "$.version"
    assert validate_answer(b"nope", None)[0] == 400


def test_missing_workers_of_a_sharded_plan():
    plan = yaml.safe_load((EXAMPLES / "cluster" / "plan-r1-fp8.yaml").read_text())
    errors = missing_workers(plan, ["10.0.1.11:30001"])
    assert ("$.deployments[0].launch.worker_ip", errors[0][1]) == errors[0]
    assert "10.0.1.12:30001" in errors[0][1]
    assert missing_workers(plan, ["10.0.1.11:30001", "10.0.1.12:30001"]) == []


def test_parse_object_accepts_an_object():
    assert parse_object(b'{"a": [1, 2.5, null]}', "x") == {"a": [1, 2.5, None]}


# --- fuzz: any body gets an answer, never an exception or a 500 ------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
MODELS = [
    "deepseek-r1-distill-qwen",
    "deepseek-r1-distill-qwen:7",
    "deepseek-r1-distill-qwen:1.5",
    "deepseek-r1-distill-qwen:32",
    "deepseek-r1-distill-llama:70",
    "deepseek-r1-0528-qwen3:8",
    "deepseek-r1:671",
]
# plausible values per intent key (mostly valid, so the planner runs), or anything at all
PLAUSIBLE = {
    "context_length": st.integers(min_value=-1, max_value=2**31),
    "concurrency": st.integers(min_value=-1, max_value=10**6),
    "objective": st.sampled_from(["quality", "throughput", "latency", "balanced", "fast"]),
    "engines": st.lists(st.sampled_from(["vllm", "sglang", "llama.cpp", "mlx", "transformers", "x"]), max_size=3),
    "formats": st.lists(st.sampled_from(["pytorch", "awq", "gptq", "fp8", "ggufv2", "mlx"]), max_size=3),
    "quantizations": st.lists(st.sampled_from(["none", "Int4", "Q4_K_M", "Q8_0", "4bit", "fp8"]), max_size=3),
    "exclude_gpus": st.lists(st.sampled_from(["gpu-a:0", "gpu-a:3", "gpu-b:0", "nohost:1"]), max_size=3),
    "headroom": st.one_of(st.floats(min_value=-1, max_value=100), st.sampled_from(["10%", "2GiB", "99.9%", "x"])),
    "tool_calling": st.booleans(),
    "replicas": st.integers(min_value=0, max_value=64),
    "strategy": st.sampled_from(["spread", "pack"]),
    "interconnect": st.sampled_from(["ethernet", "infiniband", "roce", "nvlink-switch"]),
    "model_path_on_every_worker": st.booleans(),
    "enable_virtual_env": st.booleans(),
    "persist": st.booleans(),
    "input_tokens": st.integers(min_value=-1, max_value=10**7),
    "output_tokens": st.integers(min_value=-1, max_value=10**7),
    "max_ttft_ms": st.one_of(st.integers(min_value=-1, max_value=10**7), st.floats(min_value=0, max_value=1e9)),
    "max_tpot_ms": st.one_of(st.integers(min_value=-1, max_value=10**7), st.floats(min_value=0, max_value=1e9)),
}
ENTRY = st.fixed_dictionaries(
    {"model": st.sampled_from(MODELS)},
    optional={
        "share": st.floats(min_value=0, max_value=4),
        "context_length": PLAUSIBLE["context_length"],
        "concurrency": PLAUSIBLE["concurrency"],
        "replicas": PLAUSIBLE["replicas"],
    },
)
INTENTS = st.one_of(
    st.fixed_dictionaries({"model": st.sampled_from(MODELS)}, optional=PLAUSIBLE),
    st.fixed_dictionaries({"models": st.lists(ENTRY, min_size=1, max_size=3)}, optional=PLAUSIBLE),
    st.dictionaries(st.sampled_from(["model", *PLAUSIBLE]), JSON, max_size=5),  # anything at all
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(intent=INTENTS)
def test_fuzz_the_plan_route(intent):
    status, answer = plan_answer(json.dumps(intent).encode(), _inventory(), "live")
    assert status in (200, 400, 422), answer
    if status != 200:
        assert "\n" not in answer["detail"]


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()))
def test_fuzz_raw_bodies(body):
    assert plan_answer(body, _inventory(), "live")[0] in (200, 400, 422)
    assert validate_answer(body, ["10.0.0.1:30001"])[0] in (200, 400)


@functools.lru_cache(maxsize=1)
def _plan_text() -> str:
    _, plan = plan_answer(json.dumps({"model": "deepseek-r1-distill-qwen:7"}).encode(), _inventory(), "live")
    return json.dumps(plan)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_validate_with_mutated_plans(data):
    doc = json.loads(_plan_text())
    # replace one value somewhere in the plan with anything
    paths = []

    def walk(node, path):
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, path + [k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, path + [i])

    walk(doc, [])
    path = data.draw(st.sampled_from(paths[1:]))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = data.draw(JSON)
    status, answer = validate_answer(json.dumps(doc).encode(), ["10.0.0.1:30001", "10.0.0.2:30001"])
    assert status == 200 and isinstance(answer["valid"], bool)
