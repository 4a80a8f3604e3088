"""The catalog against independent sources: its own parameter arithmetic (written here, apart from
the code), the installed Xinference's catalog files, and the quirks those files really contain."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import ROOT

from xinf_planner.core.catalog import (
    all_models,
    find_spec,
    get_model,
    lookup_gpu,
    models_of,
    specs_for,
)
from xinf_planner.core.catalog.live import match_live_spec
from xinf_planner.errors import InvalidInput

xinference = pytest.importorskip("xinference")
XINF_MODELS = Path(xinference.__file__).parent / "model" / "llm" / "models"


def xinf_family(name: str) -> dict:
    doc = json.loads((XINF_MODELS / f"{name}.json").read_text())
    return doc[0] if isinstance(doc, list) else doc


def count_params(m) -> int:
    """Parameter count from the config fields, written independently of xinf_planner.core.memory."""
    h, L = m.hidden_size, m.num_layers
    embed = m.vocab_size * h
    head = 0 if m.tie_word_embeddings else embed
    if m.kv_lora_rank:  # DeepSeek-V3/R1: MLA attention, dense first layers, MoE after
        nh = m.num_attention_heads
        attn = (
            h * m.q_lora_rank
            + m.q_lora_rank
            + m.q_lora_rank * nh * (m.qk_nope_head_dim + m.qk_rope_head_dim)
            + h * (m.kv_lora_rank + m.qk_rope_head_dim)
            + m.kv_lora_rank
            + m.kv_lora_rank * nh * (m.qk_nope_head_dim + m.v_head_dim)
            + nh * m.v_head_dim * h
        )
        dense_mlp = 3 * h * m.intermediate_size
        expert = 3 * h * m.moe_intermediate_size
        moe_mlp = (m.n_routed_experts + m.n_shared_experts) * expert + m.n_routed_experts * h + m.n_routed_experts
        k = m.first_k_dense_replace
        layers = k * (attn + dense_mlp + 2 * h) + (L - k) * (attn + moe_mlp + 2 * h)
        return embed + head + layers + h
    q = m.num_attention_heads * m.head_dim
    kv = m.num_kv_heads * m.head_dim
    attn = h * q + 2 * h * kv + q * h
    if m.attention_bias:
        attn += q + 2 * kv
    if m.qk_norm:
        attn += 2 * m.head_dim
    mlp = 3 * h * m.intermediate_size
    return embed + head + L * (attn + mlp + 2 * h) + h


@pytest.mark.parametrize("ref", [m.ref for m in all_models()])
def test_recorded_parameter_count_matches_architecture(ref):
    m = get_model(ref)
    assert count_params(m) == m.params


def test_published_counts():
    # Hugging Face model pages (safetensors totals); R1 without its 14B MTP module.
    published = {
        "deepseek-r1-distill-qwen:7": 7_615_616_512,
        "deepseek-r1-distill-llama:8": 8_030_261_248,
        "deepseek-r1-distill-llama:70": 70_553_706_496,
        "deepseek-r1:671": 671_026_419_200,
    }
    for ref, n in published.items():
        assert get_model(ref).params == n


def test_r1_active_parameters_match_xinference_activated_size():
    m = get_model("deepseek-r1:671")
    expert = 3 * m.hidden_size * m.moe_intermediate_size
    idle = (m.num_layers - m.first_k_dense_replace) * (m.n_routed_experts - m.num_experts_per_tok) * expert
    active_b = (m.params - idle) / 1e9
    spec = next(s for s in xinf_family("deepseek-r1")["model_specs"] if s["model_format"] == "pytorch")
    assert abs(active_b - spec["activated_size_in_billions"]) < 1.0


@pytest.mark.parametrize("ref", [m.ref for m in all_models()])
def test_architecture_agrees_with_xinference_metadata(ref):
    """Xinference 4.1 recorded these fields from the same config.json (with its sha256)."""
    m = get_model(ref)
    fam = xinf_family(m.family)
    checked = 0
    for spec in fam["model_specs"]:
        if spec["model_format"] != "pytorch" or str(spec["model_size_in_billions"]) != m.size:
            continue
        meta = spec["model_src"]["huggingface"]["model_metadata"]
        assert meta["num_hidden_layers"] == m.num_layers
        assert meta["hidden_size"] == m.hidden_size
        assert meta["intermediate_size"] == m.intermediate_size
        assert meta["num_attention_heads"] == m.num_attention_heads
        assert meta["num_key_value_heads"] == m.num_kv_heads
        assert meta["vocab_size"] == m.vocab_size
        if "head_dim" in meta:
            assert meta["head_dim"] == m.head_dim
        checked += 1
    assert checked == 1
    assert m.context_length == fam["context_length"]
    assert set(m.abilities) == set(fam["model_ability"])


def test_every_xinference_spec_is_in_the_catalog():
    ours = {}
    for m in all_models():
        for s in specs_for(m):
            for hub, model_id in s.model_ids.items():
                ours[(m.family, hub, s.model_format, s.quantization)] = ours.get(
                    (m.family, hub, s.model_format, s.quantization), set()
                ) | {model_id}
    n = 0
    for fam in {m.family for m in all_models()}:
        for spec in xinf_family(fam)["model_specs"]:
            for hub, info in spec["model_src"].items():
                for q in info["quantizations"]:
                    model_id = info["model_id"].replace("{quantization}", q)
                    assert model_id in ours[(fam, hub, spec["model_format"], q)]
                    n += 1
    assert n > 150


def test_generated_file_is_up_to_date():
    r = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "extract_catalog.py"), "--check"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr


def test_sizes_and_ids_resolve_to_the_same_model():
    a = get_model("deepseek-r1-distill-qwen:1.5")
    assert a == get_model("deepseek-r1-distill-qwen:1_5") == get_model("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")
    assert get_model("deepseek-r1-distill-qwen:7.0").size == "7"
    assert [m.size for m in models_of("deepseek-r1-distill-qwen")] == ["1_5", "7", "14", "32"]


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda: get_model("deepseek-r1-distill-qwen:3"), "1.5, 7, 14, 32"),
        (lambda: get_model("nope:7"), "deepseek-r1-distill-llama"),
        (lambda: get_model("nonsense"), "deepseek-r1:671"),
        (lambda: find_spec(get_model("deepseek-r1-distill-qwen:7"), "fp8", "none"), "awq, ggufv2, gptq, mlx, pytorch"),
        (lambda: find_spec(get_model("deepseek-r1-distill-qwen:7"), "ggufv2", "Q4_0"), "Q4_K_M"),
    ],
)
def test_unknown_choices_give_one_line_listing_valid_ones(call, needle):
    with pytest.raises(InvalidInput) as err:
        call()
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_quirk_llama8b_gguf_label_is_1_5_on_huggingface():
    raw = [
        s
        for s in xinf_family("deepseek-r1-distill-llama")["model_specs"]
        if s["model_format"] == "ggufv2"
        and "huggingface" in s["model_src"]
        and "8B" in s["model_src"]["huggingface"]["model_id"]
    ]
    assert raw and str(raw[0]["model_size_in_billions"]) == "1_5"
    spec = find_spec(get_model("deepseek-r1-distill-llama:8"), "ggufv2", "Q4_K_M")
    assert spec.launch_size() == "1_5" and spec.launch_size("modelscope") == "8"
    assert spec.launchable and any("1_5" in n for n in spec.notes)


def test_quirk_llama70b_single_file_gguf_is_unlaunchable_split_ones_are():
    m = get_model("deepseek-r1-distill-llama:70")
    raw = next(
        s
        for s in xinf_family(m.family)["model_specs"]
        if s["model_format"] == "ggufv2" and str(s["model_size_in_billions"]) == "70"
    )
    assert "Qwen-7B" in raw["model_src"]["huggingface"]["model_file_name_template"]
    split = set(raw["model_src"]["huggingface"]["quantization_parts"])
    for s in specs_for(m):
        if s.model_format == "ggufv2":
            assert s.launchable == (s.quantization in split), s.quantization
            if not s.launchable:
                assert any("Qwen-7B" in n for n in s.notes)
    assert split == {"Q6_K", "Q8_0", "F16"}


def test_quirk_qwen32b_gptq_only_on_modelscope():
    spec = find_spec(get_model("deepseek-r1-distill-qwen:32"), "gptq", "Int4")
    assert spec.download_hub == "modelscope" and list(spec.model_ids) == ["modelscope"]
    assert find_spec(get_model("deepseek-r1-distill-qwen:7"), "gptq", "Int4").download_hub is None


def test_engine_markers_follow_virtualenv():
    assert "sglang" not in get_model("deepseek-r1-distill-llama:8").virtualenv_engines
    assert "sglang" in get_model("deepseek-r1-distill-qwen:7").virtualenv_engines
    assert get_model("deepseek-r1-0528:671").tool_calling
    assert not get_model("deepseek-r1:671").tool_calling


def test_live_matching_on_the_real_catalog_files():
    """Feed the installed catalog file (the form register/get_model_registration carry) to the matcher."""
    for m in all_models():
        fam = xinf_family(m.family)
        for s in specs_for(m):
            for hub in s.model_ids:
                found = match_live_spec(fam, s, hub)
                assert found is not None, (s.model.ref, s.model_format, s.quantization, hub)
                assert found["model_id"] == s.model_ids[hub]
                assert found["model_hub"] == hub


@pytest.mark.parametrize(
    "nvml_name, expected, gib",
    [
        ("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3", 79.65),
        ("NVIDIA A10", "NVIDIA A10", 22.49),
        ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB SXM", 80.0),
        ("NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 3090", 24.0),
        ("NVIDIA GeForce RTX 3090 Ti", "NVIDIA GeForce RTX 3090 Ti", 23.99),
        ("Tesla T4", "Tesla T4", 15.0),
    ],
)
def test_lookup_gpu_by_nvml_name(nvml_name, expected, gib):
    info = lookup_gpu(nvml_name)
    assert info.name == expected
    assert abs(info.memory_bytes / 2**30 - gib) < 0.01


def test_gpu_table_has_compute_for_datacenter_parts():
    h100 = lookup_gpu("NVIDIA H100 80GB HBM3")
    assert (h100.tflops, h100.tflops_fp8, h100.p2p) == (989, 1979, True)
    assert lookup_gpu("NVIDIA A100-SXM4-80GB").tflops_fp8 is None  # Ampere: no FP8 tensor cores
    assert lookup_gpu("NVIDIA GeForce RTX 4090").p2p is False  # GeForce 40: no peer-to-peer
    assert lookup_gpu("Apple M1").tflops == 2.6  # the prefill roofline of a Mac (an assumption)


def test_lookup_gpu_unknown_and_apple():
    assert lookup_gpu("NVIDIA Imaginary 9000") is None
    assert lookup_gpu("Apple M2 Ultra").bandwidth_gbps == 800


def test_import_is_light():
    code = (
        "import sys, xinf_planner.core.catalog, xinf_planner.core.catalog.live; "
        "print([m for m in ('xinference_client', 'xinference', 'pynvml', 'torch') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
