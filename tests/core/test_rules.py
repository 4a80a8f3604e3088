"""The feasibility rules, against the published model configs (head counts from each model's
config.json, via the catalog) and the engines' documented floors."""

import pytest

from xinf_planner.core import engines, rules
from xinf_planner.core.catalog import get_model
from xinf_planner.core.inventory import Host

LINUX = Host(name="l", os="linux", arch="x86_64", cpu_cores=8, memory_total_bytes=1 << 36)
MAC = Host(name="m", os="darwin", arch="arm64", cpu_cores=8, memory_total_bytes=1 << 36)
INTEL_MAC = Host(name="i", os="darwin", arch="x86_64", cpu_cores=8, memory_total_bytes=1 << 36)
WINDOWS = Host(name="w", os="windows", arch="x86_64", cpu_cores=8, memory_total_bytes=1 << 36)


@pytest.mark.parametrize("tp", [3, 5, 6, 7, 12])
def test_tp_never_a_non_power_of_two(tp):
    # Qwen-32B: 40 heads, 8 KV heads (config.json); TP 5 would even divide 40, still refused
    assert "power of two" in rules.tp_reason(get_model("deepseek-r1-distill-qwen:32"), tp, "pytorch")


def test_tp_must_divide_attention_heads():
    qwen7 = get_model("deepseek-r1-distill-qwen:7")  # 28 heads, 4 KV heads
    assert rules.tp_reason(qwen7, 4, "pytorch") is None
    assert "28 attention heads" in rules.tp_reason(qwen7, 8, "pytorch")
    qwen1 = get_model("deepseek-r1-distill-qwen:1.5")  # 12 heads, 2 KV heads
    assert rules.tp_reason(qwen1, 4, "pytorch") is None  # TP 4 > 2 KV heads: replicated, 4 % 2 == 0
    assert "12 attention heads" in rules.tp_reason(qwen1, 8, "pytorch")


def test_tp_kv_heads_divisible_or_replicated():
    class Arch:  # a made-up GQA shape: 24 heads, 3 KV heads
        num_attention_heads = 24
        num_kv_heads = 3
        intermediate_size = 4096

    assert "3 KV heads" in rules.tp_reason(Arch, 2, "pytorch")  # 2 does not divide 3
    assert "multiple of the 3 KV heads" in rules.tp_reason(Arch, 4, "pytorch")


def test_awq_group_size_limits_tp():
    # Qwen-7B intermediate 18944 = 148 × 128: TP 4 gives 4736 = 37 × 128, fine; Qwen-1.5B
    # intermediate 8960 = 70 × 128: TP 4 gives 2240 = 17.5 × 128, not splittable for AWQ.
    assert rules.tp_reason(get_model("deepseek-r1-distill-qwen:7"), 4, "awq") is None
    reason = rules.tp_reason(get_model("deepseek-r1-distill-qwen:1.5"), 4, "awq")
    assert "group size 128" in reason
    assert rules.tp_reason(get_model("deepseek-r1-distill-qwen:1.5"), 4, "pytorch") is None


@pytest.mark.parametrize(
    "engine, host, vendor, ok",
    [
        ("vllm", LINUX, "nvidia", True),
        ("vllm", MAC, "apple", False),
        ("vllm", LINUX, None, False),  # no CPU serving
        ("vllm", WINDOWS, "nvidia", False),
        ("sglang", LINUX, "nvidia", True),
        ("sglang", LINUX, "amd", False),
        ("mlx", MAC, "apple", True),
        ("mlx", INTEL_MAC, "apple", False),
        ("mlx", LINUX, "nvidia", False),
        ("llama.cpp", LINUX, None, True),
        ("llama.cpp", MAC, "apple", True),
        ("llama.cpp", WINDOWS, "nvidia", True),
        ("transformers", LINUX, None, True),
    ],
)
def test_engine_platforms(engine, host, vendor, ok):
    reason = rules.platform_reason(engine, host, vendor)
    assert (reason is None) == ok, reason


def test_compute_capability_floors():
    # V100 is 7.0, T4 7.5, A100 8.0, L4 8.9 (NVIDIA's CUDA GPU list)
    assert rules.cc_reason("vllm", "pytorch", "16", (6, 1), "P4") is not None
    assert rules.cc_reason("vllm", "pytorch", "16", (7, 0), "V100") is None
    assert "AWQ" in rules.cc_reason("vllm", "awq", "4", (7, 0), "V100")
    assert rules.cc_reason("vllm", "awq", "4", (7, 5), "T4") is None
    assert "FP8" in rules.cc_reason("vllm", "pytorch", "fp8", (8, 0), "A100")
    assert rules.cc_reason("vllm", "pytorch", "fp8", (8, 9), "L4") is None
    assert "sglang" in rules.cc_reason("sglang", "pytorch", "16", (7, 5), "T4")
    assert rules.cc_reason("sglang", "pytorch", "16", (8, 0), "A100") is None
    assert rules.cc_reason("llama.cpp", "ggufv2", "4", (6, 1), "P4") is None


def test_bf16_needs_ampere_else_float16():
    assert rules.dtype_for("vllm", "16", (7, 5)) == "float16"
    assert rules.dtype_for("vllm", "4", (7, 5)) == "float16"  # AWQ activations are 16-bit too
    assert rules.dtype_for("vllm", "16", (8, 0)) is None
    assert rules.dtype_for("llama.cpp", "16", (7, 5)) is None
    assert rules.dtype_for("transformers", "16", (7, 5)) is None  # takes torch_dtype; fp16 by default


def test_precision_classes_and_ranks():
    cases = {
        ("pytorch", "none", None): "16",
        ("pytorch", "none", "fp8"): "fp8",
        ("fp8", "FP8", None): "fp8",
        ("awq", "Int4", None): "4",
        ("gptq", "Int8", None): "8",
        ("ggufv2", "Q8_0", None): "8",
        ("ggufv2", "Q6_K", None): "6",
        ("ggufv2", "Q5_K_M", None): "5",
        ("ggufv2", "Q4_K_M", None): "4",
        ("ggufv2", "Q3_K_L", None): "3",
        ("ggufv2", "Q2_K", None): "2",
        ("ggufv2", "UD-IQ1_S", None): "1",
        ("ggufv2", "F16", None): "16",
        ("mlx", "4bit", None): "4",
        ("mlx", "8bit", None): "8",
        ("bnb", "4-bit", None): "4",
    }
    for (fmt, quant, ckpt), want in cases.items():
        assert rules.precision_of(fmt, quant, ckpt) == want, (fmt, quant)
    order = ["16", "fp8", "8", "6", "4", "3", "2"]
    ranks = [rules.precision_rank(p) for p in order]
    assert ranks == sorted(ranks, reverse=True) and len(set(ranks)) == len(ranks)
    assert rules.precision_rank("5") == rules.precision_rank("6")


def test_family_engines_follow_xinference_markers():
    # Xinference 4.1 lists no SGLang for deepseek-r1-distill-llama
    assert rules.family_reason("sglang", get_model("deepseek-r1-distill-llama:8")) is not None
    assert rules.family_reason("sglang", get_model("deepseek-r1-distill-qwen:7")) is None


def test_engine_names_are_case_insensitive():
    assert engines.canonical("vLLM") == "vllm"
    assert engines.canonical("SGLang") == "sglang"
    assert engines.canonical("llama.cpp") == "llama.cpp"
