"""The planner's choices: objectives, forced replicas, exclusions, headroom, several models,
spread/pack, determinism, local weights, and the `plan` command."""

import copy

import pytest
from support.paths import EXAMPLES

from xinf_planner.core import rules
from xinf_planner.core.documents import dump_document, parse_document
from xinf_planner.core.inventory import GIB
from xinf_planner.core.plan.validate import plan_errors
from xinf_planner.core.planning import make_plan
from xinf_planner.core.planning.scoring import balanced_score
from xinf_planner.core.request import request_from_intent
from xinf_planner.errors import NothingFits
from xinf_planner.shell.documents import load_inventory

HOSTS = EXAMPLES / "hosts"


def plan(inventory, **intent):
    intent.setdefault("context_length", 8192)
    doc = make_plan(load_inventory(HOSTS / inventory), request_from_intent(intent))
    assert plan_errors(doc) == []
    return doc


def first(doc):
    return doc["deployments"][0]


def test_same_input_same_bytes():
    a = dump_document(plan("8xl40s-pcie.yaml", model="deepseek-r1-distill-qwen", concurrency=8))
    b = dump_document(plan("8xl40s-pcie.yaml", model="deepseek-r1-distill-qwen", concurrency=8))
    assert a == b


def test_objectives_pull_in_their_direction():
    kw = dict(model="deepseek-r1-distill-qwen", concurrency=4)
    quality = first(plan("4x4090-pcie.yaml", objective="quality", **kw))
    latency = first(plan("4x4090-pcie.yaml", objective="latency", **kw))
    throughput = first(plan("4x4090-pcie.yaml", objective="throughput", **kw))
    size = lambda d: float(d["model"].split(":")[1].replace("_", "."))  # noqa: E731
    speed = lambda d, k: d["estimate"]["decode_tokens_per_s"][k]  # noqa: E731
    assert size(quality) >= size(latency) and size(quality) >= size(throughput)
    assert speed(latency, "per_sequence") >= speed(quality, "per_sequence")
    assert throughput["estimate"]["served_sequences"] >= quality["estimate"]["served_sequences"]


def test_quality_takes_the_highest_precision_that_fits_the_largest_model():
    doc = plan("8xh200.yaml", model="deepseek-r1-distill-qwen", objective="quality", concurrency=4)
    launch = first(doc)["launch"]
    assert first(doc)["model"] == "deepseek-r1-distill-qwen:32"
    assert rules.precision_of(launch["model_format"], launch["quantization"]) == "16"


def test_balanced_formula():
    # quality points log2(1 + B) × precision share × KV share, times the headroom factor
    assert balanced_score(7, "16", 8, 4) == pytest.approx(3.0)  # room for twice the users: 1.0
    assert balanced_score(7, "16", 100, 4) == pytest.approx(3.0)
    assert balanced_score(7, "16", 4, 4) == pytest.approx(3.0 * 0.9)  # no room for one more: 0.9
    assert balanced_score(7, "16", 6, 4) == pytest.approx(3.0 * 0.95)
    assert balanced_score(7, "4", 8, 4) == pytest.approx(3.0 * 0.9)
    assert balanced_score(7, "16", 8, 4, kv="fp8") == pytest.approx(3.0 * 0.99)


def test_forced_replicas():
    dep = first(plan("8xa100-sxm4-80gb.yaml", model="deepseek-r1-distill-qwen:7", replicas=3))
    assert dep["launch"]["replica"] == 3 and len(dep["placement"]) == 3
    with pytest.raises(NothingFits):  # eight copies of a 32B do not fit in 64 GiB of RAM
        plan("cpu-only-16c-64g.yaml", model="deepseek-r1-distill-qwen:32", replicas=8)


def test_excluded_gpus_are_left_alone():
    doc = plan("8xh100-sxm.yaml", model="deepseek-r1-distill-qwen:7", exclude_gpus=["dgx-h100:0", "dgx-h100:5"])
    used = {i for p in first(doc)["placement"] for i in p["gpus"]}
    assert used and not used & {0, 5}


def test_headroom_is_left_free():
    inv = load_inventory(HOSTS / "8xh100-sxm.yaml")
    total = inv.hosts[0].gpus[0].memory_total_bytes / GIB
    for headroom, leave in ((10, 10.0), ("25%", 0.25 * total)):
        dep = first(
            plan(
                "8xh100-sxm.yaml",
                model="deepseek-r1-distill-qwen:7",
                concurrency=64,
                objective="throughput",
                headroom=headroom,
            )
        )
        assert dep["launch"]["gpu_memory_utilization"] * total <= total - leave + 1e-6


def test_several_models_share_the_gpus():
    doc = plan(
        "8xh100-sxm.yaml",
        models=[
            {"model": "deepseek-r1-distill-qwen:32", "share": 3},
            {"model": "deepseek-r1-distill-llama:8", "share": 1},
        ],
    )
    a, b = doc["deployments"]
    gpus_a = {i for p in a["placement"] for i in p["gpus"]}
    gpus_b = {i for p in b["placement"] for i in p["gpus"]}
    assert gpus_a and gpus_b and not gpus_a & gpus_b
    assert len(gpus_a) >= len(gpus_b)
    assert a["launch"]["model_uid"] != b["launch"]["model_uid"]


def test_spread_and_pack_over_hosts():
    # the 1.5B has 12 heads, so at most TP 4: two replicas fit on one 8-GPU node
    spread = first(plan("2x8xa100-cluster.yaml", model="deepseek-r1-distill-qwen:1.5", replicas=2))
    pack = first(plan("2x8xa100-cluster.yaml", model="deepseek-r1-distill-qwen:1.5", replicas=2, strategy="pack"))
    assert len({p["host"] for p in spread["placement"]}) == 2
    assert len({p["host"] for p in pack["placement"]}) == 1


def test_gpu_with_memory_in_use_counts_only_its_free_memory():
    inv = load_inventory(HOSTS / "mixed-4090-3090-t4.yaml")
    doc = make_plan(
        inv,
        request_from_intent(
            {
                "model": "deepseek-r1-distill-qwen:1.5",
                "context_length": 4096,
                "concurrency": 64,
                "objective": "throughput",
            }
        ),
    )
    for p in first(doc)["placement"]:
        for idx in p["gpus"]:
            gpu = inv.host(p["host"]).gpu(idx)
            held = first(doc)["launch"]["gpu_memory_utilization"] * gpu.memory_total_bytes
            assert held <= gpu.memory_free_bytes


def test_reasons_and_rejections_are_sentences():
    doc = plan("6xt4.yaml", model="deepseek-r1-distill-qwen:7", concurrency=16)
    assert all(r.endswith(".") for r in first(doc)["reasons"])
    assert doc["rejected"] and all(r["reason"] for r in doc["rejected"])
    sglang = [r for r in doc["rejected"] if "on sglang" in r["candidate"]]
    assert sglang and all("compute capability 8.0" in r["reason"] for r in sglang)


def test_unknown_model_is_invalid_input(run_cli):
    code, out, err = run_cli("plan", "--hardware", HOSTS / "6xt4.yaml", "--model", "llama-3:8")
    assert code == 1 and err.startswith("error: ") and "Traceback" not in err


def test_cli_nothing_fits_exit_3(run_cli):
    code, out, err = run_cli("plan", "--hardware", HOSTS / "cpu-only-16c-64g.yaml", "--model", "deepseek-r1:671")
    assert code == 3
    assert "nothing fits" in err and "needs about" in err


def test_cli_plan_writes_a_valid_document(run_cli, tmp_path):
    out_file = tmp_path / "plan.json"
    code, out, err = run_cli(
        "plan",
        "--hardware",
        HOSTS / "6xt4.yaml",
        "-m",
        "deepseek-r1-distill-qwen:7",
        "--concurrency",
        "16",
        "-o",
        out_file,
    )
    assert code == 0, err
    assert "deployment" in out  # the summary table
    code, out, err = run_cli("validate", out_file)
    assert code == 0, err


def test_cli_intent_file_and_flags_override(run_cli, tmp_path):
    intent = tmp_path / "intent.yaml"
    intent.write_text("model: deepseek-r1-distill-qwen:7\ncontext_length: 4096\nconcurrency: 2\n")
    code, out, err = run_cli(
        "plan",
        "--hardware",
        HOSTS / "8xh100-sxm.yaml",
        "--intent",
        intent,
        "--context-length",
        "2048",
        "--format",
        "json",
    )
    assert code == 0, err
    doc = parse_document(out)
    assert first(doc)["launch"]["context_length"] == 2048
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: deepseek-r1-distill-qwen:7\nconcurrency: 0\n")
    code, out, err = run_cli("plan", "--hardware", HOSTS / "8xh100-sxm.yaml", "--intent", bad)
    assert code == 1 and "$.concurrency" in err


def test_local_weights_on_cpu_llama_cpp_two_replicas(run_cli, tmp_path):
    from integration.tiny_model import build_gguf_model_dir

    folder = build_gguf_model_dir(tmp_path / "tiny")
    hw = tmp_path / "cpu.yaml"
    hw.write_text(dump_document(load_inventory(HOSTS / "cpu-only-16c-64g.yaml").to_dict()))
    code, out, err = run_cli(
        "plan",
        "--model",
        "deepseek-r1-distill-qwen",
        "--model-path",
        folder,
        "--replicas",
        "2",
        "--context-length",
        "512",
        "--concurrency",
        "1",
        "--hardware",
        hw,
        "--format",
        "json",
    )
    assert code == 0, err
    doc = parse_document(out)
    dep = first(doc)
    assert dep["launch"]["model_engine"] == "llama.cpp" and dep["launch"]["replica"] == 2
    assert dep["launch"]["n_gpu"] is None
    assert dep["registration"]["model_family"] == "deepseek-r1-distill-qwen"
    assert dep["launch"]["model_name"] == dep["registration"]["model_name"]
    assert dep["registration"]["model_uri"] == folder.resolve().as_uri()
    assert dep["arch"]["num_layers"] == 2  # the estimate used the files' arch
    assert plan_errors(copy.deepcopy(doc)) == []


def test_cli_intent_that_is_not_a_mapping_is_invalid_input(run_cli, tmp_path):
    intent = tmp_path / "intent.yaml"
    intent.write_text("- deepseek-r1-distill-qwen:7\n")
    code, out, err = run_cli("plan", "--hardware", HOSTS / "1xt4.yaml", "--intent", intent)
    assert code == 1 and out == ""
    assert err.startswith("error: ") and "$" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--headroom", "nan"], "headroom"),
        (["--headroom", "inf"], "headroom"),
        (["--exclude-gpu", "t4x6:99"], "t4x6:99"),
    ],
)
def test_cli_bad_workload_values_are_one_line_errors(run_cli, args, needle):
    code, out, err = run_cli("plan", "--hardware", HOSTS / "6xt4.yaml", "-m", "deepseek-r1-distill-qwen:7", *args)
    assert code == 1 and out == "" and needle in err and err.count("\n") == 1


def test_cli_filters_that_match_no_spec_say_so(run_cli):
    code, out, err = run_cli(
        "plan", "--hardware", HOSTS / "6xt4.yaml", "-m", "deepseek-r1-distill-qwen:7", "--quantization", "foo"
    )
    assert code == 3 and "No catalog spec of the model passes the filters (quantizations foo)" in err
    assert "Tried 0" not in err


def test_cli_empty_intent_says_so(run_cli, tmp_path):
    intent = tmp_path / "intent.yaml"
    intent.write_text("# nothing yet\n")
    code, out, err = run_cli("plan", "--hardware", HOSTS / "1xt4.yaml", "--intent", intent)
    assert code == 1 and "intent file is empty" in err
