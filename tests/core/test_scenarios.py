"""Every example inventory × the 1.5B, 7B, 32B and 70B distills and R1: a sensible plan or an
explained refusal, with the properties a person reviewing it would check."""

from functools import lru_cache

import pytest
from support.paths import EXAMPLES

from xinf_planner.core import engines, rules
from xinf_planner.core.inventory import GIB
from xinf_planner.core.plan.validate import plan_errors
from xinf_planner.core.planning import make_plan
from xinf_planner.core.request import request_from_intent
from xinf_planner.errors import NothingFits
from xinf_planner.shell.documents import load_inventory

HOSTS = EXAMPLES / "hosts"
INVENTORIES = sorted(p.name for p in HOSTS.glob("*.yaml"))
MODELS = [
    "deepseek-r1-distill-qwen:1.5",
    "deepseek-r1-distill-qwen:7",
    "deepseek-r1-distill-qwen:32",
    "deepseek-r1-distill-llama:70",
    "deepseek-r1:671",
]


@lru_cache(maxsize=None)
def outcome(inventory: str, model: str, context: int = 8192, concurrency: int = 4, objective: str = "balanced"):
    """(plan, None) or (None, the NothingFits message)."""
    req = request_from_intent(
        {"model": model, "context_length": context, "concurrency": concurrency, "objective": objective}
    )
    try:
        return make_plan(load_inventory(HOSTS / inventory), req), None
    except NothingFits as exc:
        return None, str(exc)


def deployment(inventory, model, **kw):
    doc, why = outcome(inventory, model, **kw)
    assert doc is not None, why
    return doc["deployments"][0]


@pytest.mark.parametrize("inventory", INVENTORIES)
@pytest.mark.parametrize("model", MODELS)
def test_every_example_plans_or_explains(inventory, model):
    doc, why = outcome(inventory, model)
    if doc is None:
        assert why.startswith(("nothing fits", "nothing meets")) and "Tried" in why
        assert "The largest model of the family" in why or "No size of" in why  # the largest that serves
        if why.startswith("nothing meets"):  # it fits, but too slowly: the best reachable figures
            assert "The best reachable at 4 user(s): TPOT" in why and "It would meet --max-ttft-ms" in why
        assert "needs about" in why  # the hardware it would need
        return
    assert plan_errors(doc) == []
    inv = load_inventory(HOSTS / inventory)
    for dep in doc["deployments"]:
        launch = dep["launch"]
        assert launch["context_length"] == 8192
        assert launch["reasoning_content"] is True
        widths = {len(p["gpus"]) for p in dep["placement"]}
        assert widths <= {0, 1, 2, 4, 8, 16}  # never TP 3, 5, 6 or 7
        engine = engines.canonical(launch["model_engine"])
        for place in dep["placement"]:
            host = inv.host(place["host"])
            for idx in place["gpus"]:
                gpu = host.gpu(idx)
                key = {"vllm": "gpu_memory_utilization", "sglang": "mem_fraction_static"}.get(engine)
                if key:  # a reservation never exceeds what is free
                    assert launch[key] * gpu.memory_total_bytes <= gpu.memory_free_bytes
                assert dep["estimate"]["per_gpu_gib"]["total"] * GIB <= gpu.memory_free_bytes


def test_six_t4_float16_on_no_more_gpus_than_the_targets_need():
    """16 users of the 7B on six T4s: one TP 2 replica in float16 meets the targets with room to
    spare, so 'balanced' leaves four GPUs free; 'throughput' takes all six as three replicas."""
    dep = deployment("6xt4.yaml", "deepseek-r1-distill-qwen:7", concurrency=16)
    assert (dep["launch"]["replica"], [len(p["gpus"]) for p in dep["placement"]]) == (1, [2])
    assert dep["launch"]["dtype"] == "float16"  # T4 is CC 7.5: no bf16
    assert dep["launch"]["model_engine"] == "vLLM"
    serving = dep["estimate"]["serving"]
    assert serving["meets_targets"] and serving["max_concurrency_within_targets"] >= 16
    wide = deployment("6xt4.yaml", "deepseek-r1-distill-qwen:7", concurrency=16, objective="throughput")
    assert (wide["launch"]["replica"], [len(p["gpus"]) for p in wide["placement"]]) == (3, [2, 2, 2])
    assert wide["estimate"]["serving"]["output_tokens_per_s"] > serving["output_tokens_per_s"]


def test_one_4090_with_32b_is_quantised_or_refused():
    doc, why = outcome("rtx4090-workstation.yaml", "deepseek-r1-distill-qwen:32")
    if doc is not None:
        launch = doc["deployments"][0]["launch"]
        assert rules.precision_of(launch["model_format"], launch["quantization"]) not in ("16", "fp8")


def test_eight_h200_serve_r1_fp8_native_at_tp8():
    dep = deployment("8xh200.yaml", "deepseek-r1:671")
    launch = dep["launch"]
    assert (launch["model_engine"], launch["model_format"], launch["quantization"]) == ("vLLM", "pytorch", "none")
    assert [len(p["gpus"]) for p in dep["placement"]] == [8]
    assert any("fp8" in r for r in dep["reasons"])


def test_eight_h100_cannot_hold_r1_fp8_weights():
    # 671B FP8 weights are ~79 GiB per GPU at TP 8 (memory-notes: "about 79.4 GiB per GPU at TP 8"),
    # more than an H100's 79.19 GiB (CUDA total): the plan must not pick the FP8 checkpoint there.
    doc, _ = outcome("8xh100-sxm.yaml", "deepseek-r1:671")
    if doc is not None:
        launch = doc["deployments"][0]["launch"]
        assert launch["model_format"] != "pytorch"
        assert any(r["candidate"].startswith("deepseek-r1:671 pytorch/none on vllm TP8") for r in doc["rejected"])


def test_cpu_only_serves_gguf_with_llama_cpp():
    dep = deployment("cpu-only-16c-64g.yaml", MODELS[0])
    assert dep["launch"]["model_engine"] == "llama.cpp"
    assert dep["launch"]["model_format"] == "ggufv2"
    assert dep["launch"]["n_gpu"] is None
    assert dep["estimate"]["serving"]["meets_targets"]
    assert dep["estimate"]["per_gpu_gib"]["total"] == 0 or dep["estimate"].get("host_gib", 0) > 0


def test_cpu_only_refuses_what_is_too_slow_and_names_what_serves():
    """The 32B on 16 cores fits in RAM but gives seconds per token: exit 3 with the figures, the
    target it would meet, and the largest size that does serve one user."""
    doc, why = outcome("cpu-only-16c-64g.yaml", "deepseek-r1-distill-qwen:32")
    assert doc is None and why.startswith("nothing meets")
    assert "It would meet --max-ttft-ms" in why and "on the CPU" in why
    assert "The largest model of the family that meets the targets for one user is deepseek-r1-distill-qwen:" in why
    small = deployment("cpu-only-16c-64g.yaml", "deepseek-r1-distill-qwen", concurrency=1)  # family: planner picks
    size = float(small["model"].split(":")[1].replace("_", "."))
    assert size < 32 and small["estimate"]["serving"]["tpot_s"] <= 0.1


def test_mac_uses_mlx():
    for inventory in ("mac-studio-m2-ultra-192gb.yaml", "macbook-pro-m3-max-36gb.yaml"):
        dep = deployment(inventory, "deepseek-r1-distill-qwen:7")
        assert dep["launch"]["model_engine"] == "MLX"
        assert dep["launch"]["model_format"] == "mlx"


def test_cluster_spreads_replicas_with_replica_config():
    dep = deployment("2x8xa100-cluster.yaml", "deepseek-r1-distill-qwen:7", objective="throughput")
    hosts = [p["host"] for p in dep["placement"]]
    assert set(hosts) == {"a100-node-1", "a100-node-2"}
    assert "replica_config" in dep["launch"] and "gpu_idx" not in dep["launch"]


def test_largest_model_this_machine_can_serve():
    dep = deployment("8xh100-sxm.yaml", "deepseek-r1-distill-qwen")
    assert dep["model"] == "deepseek-r1-distill-qwen:32"
    dep = deployment("1xt4.yaml", "deepseek-r1-distill-qwen")
    size = float(dep["model"].split(":")[1].replace("_", "."))
    # nothing larger would serve the same workload on this machine
    chosen_paged = dep["launch"]["model_engine"].lower() in ("vllm", "sglang")
    for bigger in ("14", "32"):
        if float(bigger) > size:
            doc, _ = outcome("1xt4.yaml", f"deepseek-r1-distill-qwen:{bigger}")
            if doc is not None:
                # it loads, but 'balanced' ranks it lower: only on a single-slot engine (when the
                # choice batches continuously), or too slow to use
                big = doc["deployments"][0]
                big_paged = big["launch"]["model_engine"].lower() in ("vllm", "sglang")
                too_slow = big["estimate"]["decode_tokens_per_s"]["per_sequence"] < 20
                assert (chosen_paged and not big_paged) or too_slow, big["launch"]


def test_balanced_prefers_continuous_batching_on_nvidia_servers():
    """R1 on one 8×H100 box: the FP8 checkpoint does not fit, and among what fits a serving engine
    (vLLM AWQ at TP 8) beats single-slot llama.cpp even at the default concurrency."""
    doc = make_plan(load_inventory(HOSTS / "8xh100-sxm.yaml"), request_from_intent({"model": "deepseek-r1"}))
    (dep,) = doc["deployments"]
    assert dep["launch"]["model_engine"].lower() in ("vllm", "sglang")
    assert dep["launch"]["model_format"] != "ggufv2"
    assert dep["estimate"]["served_sequences"] > 1


def test_family_plan_says_why_no_larger_size():
    """`plan --model FAMILY` answers "which is the largest this machine can serve": the reasons name
    every larger size, whether it fits, and flag the ones too slow to use."""
    dep = deployment("cpu-only-16c-64g.yaml", "deepseek-r1-distill-qwen")
    size = float(dep["model"].split(":")[1].replace("_", "."))
    (line,) = [r for r in dep["reasons"] if r.startswith("Larger sizes:") or r.startswith("Largest:")]
    for b in (7, 14, 32):
        if b > size:
            assert f"{b}B" in line
    dep = deployment("8xh100-sxm.yaml", "deepseek-r1-distill-qwen")
    assert any(r.startswith("Largest: 32B") for r in dep["reasons"])
