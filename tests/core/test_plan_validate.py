"""`validate`: each rule a hand-broken plan breaks is caught, and named by its JSON path."""

import copy
from functools import lru_cache

import pytest
from support.paths import EXAMPLES

from xinf_planner.core.documents import dump_document
from xinf_planner.core.plan.validate import plan_errors
from xinf_planner.core.planning import make_plan
from xinf_planner.core.request import request_from_intent
from xinf_planner.shell.documents import load_inventory

HOSTS = EXAMPLES / "hosts"


@lru_cache(maxsize=None)
def _planned(
    inventory: str, model: str, context: int = 8192, concurrency: int = 16, objective: str = "throughput"
) -> dict:
    """The plans these tests break: 'throughput' spreads the 7B over all six T4s (3 replicas)."""
    req = request_from_intent(
        {"model": model, "context_length": context, "concurrency": concurrency, "objective": objective}
    )
    return make_plan(load_inventory(HOSTS / inventory), req)


def plan(inventory="6xt4.yaml", model="deepseek-r1-distill-qwen:7", **kw) -> dict:
    return copy.deepcopy(_planned(inventory, model, **kw))


def paths(doc) -> list[str]:
    return [p for p, _ in plan_errors(doc)]


def messages(doc) -> str:
    return "\n".join(f"{p}: {m}" for p, m in plan_errors(doc))


def test_planned_documents_are_valid():
    for inv, model in [
        ("6xt4.yaml", "deepseek-r1-distill-qwen:7"),
        ("2x8xa100-cluster.yaml", "deepseek-r1-distill-qwen:32"),
        ("cpu-only-16c-64g.yaml", "deepseek-r1-distill-qwen:1.5"),
    ]:
        doc = plan(inv, model, concurrency=1)
        assert plan_errors(doc) == [], messages(doc)


def test_schema_errors_come_first_with_their_path():
    doc = plan()
    del doc["deployments"][0]["launch"]["model_uid"]
    assert paths(doc) == ["$.deployments[0].launch"]
    assert "model_uid" in messages(doc)


def test_context_length_missing():
    doc = plan()
    del doc["deployments"][0]["launch"]["context_length"]
    assert "$.deployments[0].launch.context_length" in paths(doc)


def test_gpu_idx_not_a_multiple_of_replica():
    doc = plan()
    launch = doc["deployments"][0]["launch"]
    assert launch["replica"] == 3 and len(launch["gpu_idx"]) == 6
    launch["gpu_idx"] = launch["gpu_idx"][:5]
    assert "$.deployments[0].launch.gpu_idx" in paths(doc)
    assert "not a multiple of replica 3" in messages(doc)


def test_gpu_idx_slices_must_match_the_placement():
    doc = plan()
    launch = doc["deployments"][0]["launch"]
    launch["gpu_idx"] = list(reversed(launch["gpu_idx"]))
    assert "$.deployments[0].placement[0].gpus" in paths(doc)


@pytest.mark.parametrize("key, value", [("gpu_idx", [0, 1]), ("worker_ip", "10.0.0.11:30001"), ("n_gpu", 2)])
def test_replica_config_cannot_mix_with_legacy_placement(key, value):
    doc = plan("2x8xa100-cluster.yaml", "deepseek-r1-distill-qwen:32", concurrency=1)
    launch = doc["deployments"][0]["launch"]
    assert "replica_config" in launch
    launch[key] = value
    assert f"$.deployments[0].launch.{key}" in paths(doc)


def test_replica_config_worker_must_be_the_hosts():
    doc = plan("2x8xa100-cluster.yaml", "deepseek-r1-distill-qwen:32", concurrency=1)
    doc["deployments"][0]["launch"]["replica_config"][0]["devices"][0]["worker_ip"] = "10.9.9.9:1"
    assert "$.deployments[0].launch.replica_config[0].devices[0].worker_ip" in paths(doc)


def test_gpu_that_does_not_exist():
    doc = plan()
    dep = doc["deployments"][0]
    dep["placement"][2]["gpus"] = [4, 9]
    dep["launch"]["gpu_idx"][5] = 9
    assert "$.deployments[0].placement[2].gpus[1]" in paths(doc)
    assert "no GPU 9" in messages(doc)


def test_estimate_larger_than_the_free_memory():
    doc = plan()
    doc["deployments"][0]["estimate"]["per_gpu_gib"]["total"] = 40.0  # a T4 has 15 GiB
    assert "$.deployments[0].estimate.per_gpu_gib.total" in paths(doc)


def test_reservations_on_one_gpu_add_up_past_what_is_free():
    doc = plan()
    twin = copy.deepcopy(doc["deployments"][0])
    twin["name"] = twin["launch"]["model_uid"] = "twin"
    doc["deployments"].append(twin)  # the same GPUs reserved twice
    assert "reservations on t4x6 GPU" in messages(doc)


def test_tp_rules_checked_on_a_hand_edited_plan():
    doc = plan("8xh100-sxm.yaml", "deepseek-r1-distill-qwen:7", concurrency=1)
    dep = doc["deployments"][0]
    dep["launch"]["replica"] = 1
    dep["launch"].pop("replica_config", None)
    dep["launch"]["gpu_idx"] = [0, 1, 2]
    dep["placement"] = [{"host": dep["placement"][0]["host"], "gpus": [0, 1, 2]}]
    assert "$.deployments[0].placement[0].gpus" in paths(doc)
    assert "power of two" in messages(doc)


def test_float16_required_below_ampere():
    doc = plan(objective="balanced")  # the 16-bit checkpoint (throughput takes AWQ here)
    assert doc["deployments"][0]["launch"]["quantization"] == "none"
    assert doc["deployments"][0]["launch"]["dtype"] == "float16"
    del doc["deployments"][0]["launch"]["dtype"]
    assert "$.deployments[0].launch.dtype" in paths(doc)


def test_engine_compute_capability_floor():
    doc = plan()
    doc["deployments"][0]["launch"]["model_engine"] = "SGLang"  # SGLang needs CC 8.0; T4 is 7.5
    assert any("needs compute capability 8.0" in m for _, m in plan_errors(doc))


def test_engine_platform():
    doc = plan()
    doc["deployments"][0]["launch"]["model_engine"] = "MLX"
    assert any("only on darwin" in m for _, m in plan_errors(doc))


def test_excluded_gpu():
    doc = plan()
    doc["request"]["exclude_gpus"] = ["t4x6:1"]
    assert any("excluded" in m for _, m in plan_errors(doc))


def test_inventory_edited_after_planning():
    doc = plan()
    doc["inventory"]["document"]["hosts"][0]["gpus"][0]["memory_used_bytes"] = 1 << 30
    assert "$.inventory.fingerprint" in paths(doc)


def test_embedded_inventory_required():
    doc = plan()
    del doc["inventory"]["document"]
    assert paths(doc) == ["$.inventory.document"]


def test_replica_uid_suffix_and_duplicates():
    doc = plan()
    doc["deployments"][0]["launch"]["model_uid"] = "r1-rep3"
    assert "$.deployments[0].launch.model_uid" in paths(doc)
    doc = plan()
    doc["deployments"].append(copy.deepcopy(doc["deployments"][0]))
    assert "$.deployments[1].launch.model_uid" in paths(doc)


def test_cpu_replicas_need_n_gpu_null():
    doc = plan("cpu-only-16c-64g.yaml", "deepseek-r1-distill-qwen:1.5", concurrency=1)
    doc["deployments"][0]["launch"]["n_gpu"] = "auto"
    assert "$.deployments[0].launch.n_gpu" in paths(doc)


def test_one_replica_never_mixes_gpu_models():
    doc = plan("mixed-4090-3090-t4.yaml", "deepseek-r1-distill-qwen:1.5", concurrency=1)
    dep = doc["deployments"][0]
    dep["launch"]["replica"] = 1
    dep["launch"]["gpu_idx"] = [0, 1]
    dep["placement"] = [{"host": dep["placement"][0]["host"], "gpus": [0, 1]}]
    assert "$.deployments[0].placement[0].gpus" in paths(doc)
    assert "mixes GPU models" in messages(doc)


def test_catalog_size_label_and_quantization():
    doc = plan()
    doc["deployments"][0]["launch"]["model_size_in_billions"] = 8
    assert "$.deployments[0].launch.model_size_in_billions" in paths(doc)
    doc = plan()
    doc["deployments"][0]["launch"]["quantization"] = "Int3"
    assert "$.deployments[0].launch.quantization" in paths(doc)


def test_cli_validate_reports_every_error_and_exits_1(run_cli, tmp_path):
    doc = plan(objective="balanced")
    del doc["deployments"][0]["launch"]["context_length"]
    del doc["deployments"][0]["launch"]["dtype"]
    path = tmp_path / "plan.yaml"
    path.write_text(dump_document(doc))
    code, out, err = run_cli("validate", path)
    assert code == 1
    assert "$.deployments[0].launch.context_length" in err
    assert "$.deployments[0].launch.dtype" in err
    assert "Traceback" not in err
    good = tmp_path / "good.yaml"
    good.write_text(dump_document(plan()))
    code, out, err = run_cli("validate", good)
    assert code == 0 and out.startswith("ok:")


def test_gpu_idx_refused_on_apple_silicon():
    doc = plan("mac-studio-m2-ultra-192gb.yaml", "deepseek-r1-distill-qwen:7", concurrency=1)
    assert plan_errors(doc) == []
    doc["deployments"][0]["launch"]["gpu_idx"] = [0]
    assert "$.deployments[0].launch.gpu_idx" in paths(doc)


@pytest.mark.parametrize(
    "where, value",
    [
        ("model", "x\ntouch /tmp/PWNED\n#"),
        ("launch.envs", "x"),
        ("launch.tensor_parallel_size", {}),
        ("launch.gpu_memory_utilization", 1.5),
        ("launch.model_uid", "a b"),
    ],
)
def test_hand_edits_of_wrong_type_are_schema_errors_not_crashes(run_cli, tmp_path, where, value):
    from support.paths import EXAMPLES

    from xinf_planner.core.documents import dump_document
    from xinf_planner.shell.documents import load_document

    doc = load_document(EXAMPLES / "cluster" / "plan-r1-fp8.yaml")
    target = doc["deployments"][0]
    *parents, key = where.split(".")
    for part in parents:
        target = target[part]
    target[key] = value
    p = tmp_path / "plan.yaml"
    p.write_text(dump_document(doc))
    for cmd in (["validate", p], ["render", p, "--as", "shell"]):
        code, out, err = run_cli(*cmd)
        assert code == 1, (cmd, out, err)
        assert f"$.deployments[0].{where}" in out + err
