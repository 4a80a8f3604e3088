"""`xinf-plan estimate` through the real entry point."""

from __future__ import annotations

import json

import pytest

BASE = [
    "estimate",
    "--model",
    "deepseek-r1-distill-qwen:14",
    "--engine",
    "vllm",
    "--model-format",
    "pytorch",
    "--quantization",
    "none",
    "--tp",
    "2",
    "--gpu-memory-gib",
    "79.19",
    "--gpu-memory-utilization",
    "0.95",
    "--context-length",
    "32768",
]


def _json(run_cli, *args):
    code, out, err = run_cli(*args, "--format", "json")
    return code, (json.loads(out) if out.strip() else None), err


def test_contract_example_json(run_cli):
    code, doc, err = _json(run_cli, *BASE)
    assert code == 0, err
    p = doc["per_gpu_gib"]
    for key in ("weights", "kv_cache", "activation", "overhead", "total"):
        assert key in p
    # 14.77e9 bf16 parameters split over two GPUs
    assert p["weights"] == pytest.approx(14_770_033_664 * 2 / 2 / 2**30, rel=0.03)
    assert p["total"] == pytest.approx(0.95 * 79.19, abs=0.02)
    assert doc["fits"] is True and doc["reasons"] == []
    assert doc["kv_cache_tokens"] > 32768 and doc["kv_cache_tokens"] % 16 == 0
    assert doc["max_concurrent_sequences"] == pytest.approx(doc["kv_cache_tokens"] / 32768, abs=0.01)
    assert "per_sequence" in doc["decode_tokens_per_s"]


def test_size_spellings_and_hf_id_give_identical_output(run_cli):
    outs = []
    for ref in (
        "deepseek-r1-distill-qwen:1.5",
        "deepseek-r1-distill-qwen:1_5",
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
    ):
        code, out, _ = run_cli("estimate", "-m", ref, "--engine", "vllm", "--gpu-memory-gib", "22", "--format", "json")
        assert code == 0
        outs.append(out)
    assert outs[0] == outs[1] == outs[2]


def test_gpu_name_replaces_memory(run_cli):
    _, by_name, _ = _json(
        run_cli, "estimate", "-m", "deepseek-r1-distill-llama:8", "--engine", "vllm", "--gpu", "NVIDIA H100 80GB HBM3"
    )
    _, by_size, _ = _json(
        run_cli, "estimate", "-m", "deepseek-r1-distill-llama:8", "--engine", "vllm", "--gpu-memory-gib", "79.19"
    )
    assert by_name["per_gpu_gib"]["kv_cache"] == by_size["per_gpu_gib"]["kv_cache"]
    assert by_name["decode_tokens_per_s"]["per_sequence"] > 0
    assert by_size["decode_tokens_per_s"]["per_sequence"] is None


@pytest.mark.parametrize(
    "args, needle",
    [
        (["-m", "deepseek-r1-distill-qwen:3"], "1.5, 7, 14, 32"),
        (["-m", "qwen:7"], "deepseek-r1-distill-qwen"),
        (["-m", "deepseek-r1-distill-qwen:7", "-f", "fp8"], "awq, ggufv2, gptq, mlx, pytorch"),
        (["-m", "deepseek-r1-distill-qwen:7", "-f", "ggufv2", "-q", "Q9"], "Q4_K_M"),
        (["-m", "deepseek-r1-distill-qwen:7", "--gpu", "Voodoo 5"], "NVIDIA H100"),
        # vLLM would refuse these shardings at start-up: 28 heads / 3, and TP 3 is never a power of two
        (["-m", "deepseek-r1-distill-qwen:7", "--tp", "3"], "TP 3"),
        (["-m", "deepseek-r1-distill-qwen:14", "-f", "awq", "-q", "Int4", "--tp", "8"], "group size 128"),
    ],
)
def test_unknown_choices_exit_1_with_one_line(run_cli, args, needle):
    code, out, err = run_cli("estimate", "--engine", "vllm", "--gpu-memory-gib", "80", *args)
    assert code == 1 and out == ""
    assert err.startswith("error: ") and needle in err and err.count("\n") == 1


def test_not_fitting_exits_3_with_reasons(run_cli):
    code, doc, _ = _json(
        run_cli,
        "estimate",
        "-m",
        "deepseek-r1-distill-llama:70",
        "--engine",
        "vllm",
        "--gpu-memory-gib",
        "79.19",
        "--context-length",
        "8192",
    )
    assert code == 3 and doc["fits"] is False and doc["reasons"]


def test_longest_context_named_when_one_sequence_does_not_fit(run_cli):
    code, out, _ = run_cli(
        "estimate",
        "-m",
        "deepseek-r1-distill-qwen:14",
        "--engine",
        "vllm",
        "--gpu",
        "NVIDIA A100-SXM4-40GB",
        "--context-length",
        "131072",
    )
    assert code == 3 and "largest context that fits" in out and "fits         NO" in out


def test_cpu_gives_a_ram_estimate(run_cli):
    code, doc, _ = _json(
        run_cli, "estimate", "-m", "deepseek-r1-distill-qwen:1.5", "--engine", "cpu", "--host-memory-gib", "16"
    )
    assert code == 0
    assert doc["per_gpu_gib"]["total"] == 0 and doc["host_gib"] > 1.0
    assert doc["engine"] == "llama.cpp" and doc["quantization"] == "Q4_K_M"


def test_llamacpp_flags(run_cli):
    code, doc, _ = _json(
        run_cli,
        "estimate",
        "-m",
        "deepseek-r1-distill-qwen:7",
        "--engine",
        "llama.cpp",
        "-q",
        "Q4_K_M",
        "--gpu",
        "NVIDIA GeForce RTX 4090",
        "--context-length",
        "8192",
        "--n-parallel",
        "4",
    )
    assert code == 0 and doc["kv_cache_tokens"] == 4 * 8192
    code, partial, _ = _json(
        run_cli,
        "estimate",
        "-m",
        "deepseek-r1-distill-qwen:7",
        "--engine",
        "llama.cpp",
        "-q",
        "Q4_K_M",
        "--gpu",
        "NVIDIA GeForce RTX 4090",
        "--n-gpu-layers",
        "10",
    )
    assert partial["per_gpu_gib"]["weights"] < doc["per_gpu_gib"]["weights"]


def test_sglang_takes_mem_fraction_static(run_cli):
    code, doc, _ = _json(
        run_cli,
        "estimate",
        "-m",
        "deepseek-r1-distill-qwen:7",
        "--engine",
        "sglang",
        "--gpu-memory-gib",
        "79.19",
        "--mem-fraction-static",
        "0.7",
    )
    assert code == 0 and doc["per_gpu_gib"]["mem_fraction_static"] == 0.7


def test_unlaunchable_spec_is_flagged(run_cli):
    code, doc, _ = _json(
        run_cli,
        "estimate",
        "-m",
        "deepseek-r1-distill-llama:70",
        "--engine",
        "llama.cpp",
        "-q",
        "Q4_K_M",
        "--gpu-memory-gib",
        "48",
        "--tp",
        "2",
    )
    assert "Xinference cannot launch this spec" in doc["notes"][0]


def test_table_is_readable(run_cli):
    code, out, _ = run_cli(*BASE)
    assert code == 0
    for needle in ("per GPU (GiB)", "weights", "KV cache", "KV pool", "fits         yes"):
        assert needle in out


def test_help_has_an_example(run_cli):
    code, out, _ = run_cli("estimate", "--help")
    assert code == 0 and "Examples:" in out and "xinf-plan estimate" in out
