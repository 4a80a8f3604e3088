"""Arithmetic invariants of the memory model, checked against formulas written here and against
the installed Xinference's own defaults, independently of the model's constants."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xinf_planner.core.catalog import all_models, get_model
from xinf_planner.core.memory import EstimateInput, estimate, min_gpu_memory_utilization
from xinf_planner.core.memory.gguf import bits_per_weight, file_bytes
from xinf_planner.core.memory.kv import kv_bytes_per_token
from xinf_planner.core.memory.tensors import model_tensors, pp_layer_ranges
from xinf_planner.core.memory.weights import per_gpu_bytes, tensor_bytes, total_bytes
from xinf_planner.errors import InvalidInput

GIB = 2**30
DENSE = [m for m in all_models() if not m.is_mla]
LLAMA8 = get_model("deepseek-r1-distill-llama:8")
QWEN7 = get_model("deepseek-r1-distill-qwen:7")
QWEN14 = get_model("deepseek-r1-distill-qwen:14")
R1 = get_model("deepseek-r1:671")


# ---- KV per token -------------------------------------------------------------------------------


@pytest.mark.parametrize("m", DENSE, ids=lambda m: m.ref)
def test_dense_kv_per_token_formula(m):
    assert kv_bytes_per_token(m) == 2 * m.num_layers * m.num_kv_heads * m.head_dim * 2


def test_published_kv_sizes():
    # vLLM logs: Qwen2.5-7B 57,344 B/token; Llama-70B 163,840 B/token per GPU at TP 2 (80 L x 4 heads)
    assert kv_bytes_per_token(QWEN7) == 57_344
    assert kv_bytes_per_token(get_model("deepseek-r1-distill-llama:70"), tp=2) == 163_840


@pytest.mark.parametrize("m", DENSE, ids=lambda m: m.ref)
def test_tp_splits_kv_heads_until_one_per_rank_then_replicates(m):
    one = kv_bytes_per_token(m)
    for tp in (1, 2, 4, 8, 16, 32):
        heads = max(1, m.num_kv_heads // tp)
        assert kv_bytes_per_token(m, tp=tp) == one * heads / m.num_kv_heads
    assert kv_bytes_per_token(m, tp=m.num_kv_heads * 2) == kv_bytes_per_token(m, tp=m.num_kv_heads)


@pytest.mark.parametrize("m", all_models(), ids=lambda m: m.ref)
def test_fp8_kv_halves(m):
    assert kv_bytes_per_token(m, kv_cache_dtype="fp8") * 2 == kv_bytes_per_token(m)


def test_mla_kv_is_the_same_on_every_rank():
    expected = 61 * (512 + 64) * 2  # 70,272 B (memory-notes.md)
    for tp in (1, 2, 4, 8, 16):
        assert kv_bytes_per_token(R1, tp=tp) == expected


def test_llamacpp_kv_types():
    f16 = kv_bytes_per_token(LLAMA8, kv_cache_dtype="f16", engine="llama.cpp")
    assert kv_bytes_per_token(LLAMA8, kv_cache_dtype="q8_0", engine="llama.cpp") == f16 * (34 / 32) / 2
    assert kv_bytes_per_token(LLAMA8, kv_cache_dtype="q4_0", engine="llama.cpp") == f16 * (18 / 32) / 2


# ---- weights ------------------------------------------------------------------------------------


@pytest.mark.parametrize("m", all_models(), ids=lambda m: m.ref)
def test_tp_shards_everything_but_small_replicated_parts(m):
    total = total_bytes(m, "pytorch", "none")
    for tp in (2, 4, 8):
        per = per_gpu_bytes(m, "pytorch", "none", tp=tp)[0]
        assert per >= total / tp
        # replicated remainder: norms, MLA's q_a/kv_a and the router, at most a few % of a shard
        assert per < total / tp * 1.06


@pytest.mark.parametrize("m", all_models(), ids=lambda m: m.ref)
def test_pp_stages_add_up_to_the_whole(m):
    for pp in (2, 3, 4):
        assert sum(per_gpu_bytes(m, "pytorch", "none", pp=pp)) == pytest.approx(total_bytes(m, "pytorch", "none"))
        ranges = pp_layer_ranges(m.num_layers, pp)
        assert sum(len(r) for r in ranges) == m.num_layers and max(map(len, ranges)) - min(map(len, ranges)) <= 1


def test_bf16_weights_are_two_bytes_per_parameter():
    for m in DENSE:
        assert total_bytes(m, "pytorch", "none") == 2 * m.params


def test_int4_keeps_embedding_and_head_in_16_bit():
    embed_head = 2 * 2 * QWEN7.vocab_size * QWEN7.hidden_size
    awq = total_bytes(QWEN7, "awq", "Int4")
    linear = QWEN7.params - 2 * QWEN7.vocab_size * QWEN7.hidden_size
    # 4 bits + a 16-bit scale and a 4-bit zero per 128 weights = 4.156 bits per linear weight
    assert awq == pytest.approx(embed_head + linear * (4 + 20 / 128) / 8, rel=0.01)
    assert 5.0 < awq / GIB < 5.4  # "a 4-bit 7B checkpoint is about 5.2 GiB, not 3.5"


def test_mlx_4bit_is_4_5_bits_per_weight():
    t = next(t for t in model_tensors(QWEN7) if t.name == "ffn_up")
    b = tensor_bytes(QWEN7, "mlx", "4bit")[model_tensors(QWEN7).index(t)]
    assert b * 8 / t.numel == pytest.approx(4.5)


def test_r1_native_fp8_checkpoint():
    # about 1 byte per parameter plus bf16 embedding/head; measured ~79.4 GiB per GPU at TP 8
    per = per_gpu_bytes(R1, "pytorch", "none", tp=8)[0] / GIB
    assert 77 < per < 81
    assert total_bytes(R1, "pytorch", "none") < 1.05 * R1.params


def test_ggml_block_sizes_from_struct_layouts():
    # ggml-common.h: block_q4_K = 2 fp16 + 12 B scales + 128 B quants per 256; block_q6_K = 128 ql +
    # 64 qh + 16 scales + 1 fp16; block_q8_0 = fp16 + 32 int8; block_q2_K = 16 scales + 64 qs + 2 fp16;
    # block_q3_K = 32 hmask + 64 qs + 12 scales + fp16; block_q5_K = 2 fp16 + 12 + 32 qh + 128 qs.
    layouts = {
        "Q4_K": (4 + 12 + 128, 256),
        "Q6_K": (128 + 64 + 16 + 2, 256),
        "Q8_0": (2 + 32, 32),
        "Q2_K": (16 + 64 + 4, 256),
        "Q3_K": (32 + 64 + 12 + 2, 256),
        "Q5_K": (4 + 12 + 32 + 128, 256),
    }
    for name, (nbytes, n) in layouts.items():
        assert bits_per_weight(name) == pytest.approx(8 * nbytes / n)


def test_gguf_q4_k_m_averages_about_4_9_bits():
    for m in (LLAMA8, QWEN7):
        bpw = file_bytes(m, "Q4_K_M") * 8 / m.params
        assert 4.8 < bpw < 5.0


@pytest.mark.parametrize(
    "ref, quant, published",
    [
        ("deepseek-r1-distill-llama:8", "Q4_K_M", 4.92e9),
        ("deepseek-r1-distill-llama:8", "Q8_0", 8.54e9),
        ("deepseek-r1-distill-qwen:7", "Q4_K_M", 4.68e9),
        ("deepseek-r1-distill-qwen:7", "Q2_K", 3.02e9),
        ("deepseek-r1-distill-llama:70", "Q4_K_M", 42.5e9),
        ("deepseek-r1:671", "Q4_K_M", 404e9),
    ],
)
def test_gguf_sizes_match_published_files(ref, quant, published):
    # bartowski Llama-3.1-8B / Qwen2.5-7B GGUF cards; unsloth R1 and Distill-Llama-70B GGUF cards
    assert file_bytes(get_model(ref), quant) == pytest.approx(published, rel=0.02)


# ---- vLLM ---------------------------------------------------------------------------------------


def _vllm(**kw):
    base = dict(model=QWEN14, engine="vllm", tp=1, gpu_total_gib=79.19, context_length=8192)
    base.update(kw)
    return EstimateInput(**base)


def test_vllm_parts_add_up_to_the_reservation_and_blocks_are_16_tokens():
    est = estimate(_vllm(gpu_memory_utilization=0.93))
    p = est.per_gpu_gib
    assert p["weights"] + p["kv_cache"] + p["activation"] + p["overhead"] == pytest.approx(0.93 * 79.19)
    assert est.kv_cache_tokens % 16 == 0
    per_token = kv_bytes_per_token(QWEN14)
    assert est.kv_cache_tokens * per_token <= p["kv_cache"] * GIB < (est.kv_cache_tokens + 16) * per_token


def test_vllm_defaults_follow_the_installed_xinference():
    xinference = pytest.importorskip("xinference")
    src = (Path(xinference.__file__).parent / "model/llm/vllm/core.py").read_text()
    util = float(re.search(r'setdefault\("gpu_memory_utilization", ([0-9.]+)\)', src).group(1))
    seqs = int(re.search(r'setdefault\("max_num_seqs", (\d+)\)', src).group(1))
    a = estimate(_vllm())
    b = estimate(_vllm(gpu_memory_utilization=util, max_num_seqs=seqs))
    assert a.per_gpu_gib == b.per_gpu_gib


def test_sglang_default_fractions_follow_the_installed_xinference():
    xinference = pytest.importorskip("xinference")
    src = (Path(xinference.__file__).parent / "model/llm/sglang/core.py").read_text()
    pairs = re.findall(r'tp_size >= (\d+):\s*\n\s*model_config\["mem_fraction_static"\] = ([0-9.]+)', src)
    assert len(pairs) >= 4
    for tp, frac in pairs:
        est = estimate(EstimateInput(QWEN7, "sglang", tp=int(tp), gpu_total_gib=79.19, context_length=4096))
        assert est.per_gpu_gib["mem_fraction_static"] == float(frac)


def test_sglang_pool_is_fraction_of_free_before_minus_weights():
    est = estimate(EstimateInput(LLAMA8, "sglang", gpu_total_gib=79.19, mem_fraction_static=0.8))
    p = est.per_gpu_gib
    assert p["kv_cache"] == pytest.approx(0.8 * p["free_before_load"] - p["weights"])


@settings(max_examples=40, deadline=None)
@given(ctx=st.integers(1024, 131072), util=st.floats(0.5, 0.95))
def test_vllm_pool_is_independent_of_context_and_concurrency_falls_with_it(ctx, util):
    a = estimate(_vllm(context_length=ctx, gpu_memory_utilization=util))
    b = estimate(_vllm(context_length=ctx * 2, gpu_memory_utilization=util))
    assert a.kv_cache_tokens == b.kv_cache_tokens
    assert b.max_concurrent_sequences <= a.max_concurrent_sequences
    assert a.fits == (a.kv_cache_tokens >= ctx)


@settings(max_examples=40, deadline=None)
@given(util=st.floats(0.3, 0.94))
def test_vllm_pool_grows_with_utilization(util):
    assert (
        estimate(_vllm(gpu_memory_utilization=util)).kv_cache_tokens
        <= estimate(_vllm(gpu_memory_utilization=util + 0.05)).kv_cache_tokens
    )


def test_vllm_refuses_when_reservation_exceeds_free_memory():
    est = estimate(_vllm(gpu_used_gib=10, gpu_memory_utilization=0.9))
    assert not est.fits and any("free" in r for r in est.reasons)


def test_vllm_names_the_largest_context_that_fits():
    est = estimate(_vllm(gpu_total_gib=39.39, context_length=131072, gpu_memory_utilization=0.9))
    assert not est.fits
    assert str(est.kv_cache_tokens) in est.reasons[0]


@pytest.mark.parametrize("tokens", [8192, 100_000, 200_000])
def test_min_utilization_is_the_smallest_that_holds_the_tokens(tokens):
    inp = _vllm()
    u = min_gpu_memory_utilization(inp, tokens)
    assert u is not None
    assert estimate(_vllm(gpu_memory_utilization=u)).kv_cache_tokens >= tokens
    assert estimate(_vllm(gpu_memory_utilization=round(u - 0.01, 2))).kv_cache_tokens < tokens


def test_min_utilization_none_when_it_cannot_fit():
    assert min_gpu_memory_utilization(_vllm(gpu_total_gib=39.39), 10_000_000) is None


def test_enforce_eager_drops_cuda_graphs():
    assert estimate(_vllm()).per_gpu_gib["cuda_graphs"] > 0
    assert estimate(_vllm(enforce_eager=True)).per_gpu_gib["cuda_graphs"] == 0


# ---- llama.cpp, MLX, Transformers ---------------------------------------------------------------


def _gguf(**kw):
    base = dict(
        model=QWEN7,
        engine="llama.cpp",
        model_format="ggufv2",
        quantization="Q4_K_M",
        gpu_total_gib=23.58,
        context_length=4096,
        n_parallel=1,
    )
    base.update(kw)
    return EstimateInput(**base)


def test_llamacpp_keeps_token_embedding_in_host_memory():
    est = estimate(_gguf())
    embed = tensor_bytes(QWEN7, "ggufv2", "Q4_K_M")[0] / GIB
    assert est.per_gpu_gib["host_weights"] == pytest.approx(embed)
    assert est.per_gpu_gib["weights"] == pytest.approx(file_bytes(QWEN7, "Q4_K_M") / GIB - embed)


def test_llamacpp_n_ctx_is_context_times_parallel():
    est = estimate(_gguf(n_parallel=4))
    assert est.kv_cache_tokens == 4 * 4096
    kv = est.per_gpu_gib["kv_cache"] * GIB
    assert kv == pytest.approx(4 * 4096 * kv_bytes_per_token(QWEN7))


def test_llamacpp_cpu_only_counts_everything_in_ram():
    est = estimate(_gguf(gpu_total_gib=None))
    assert est.per_gpu_gib["total"] == 0
    assert est.host_gib * GIB > file_bytes(QWEN7, "Q4_K_M") + 4096 * kv_bytes_per_token(QWEN7)


def test_llamacpp_partial_offload_moves_layers_to_ram():
    full = estimate(_gguf())
    half = estimate(_gguf(n_gpu_layers=14))
    assert half.per_gpu_gib["weights"] < full.per_gpu_gib["weights"]
    assert half.host_gib > full.host_gib


@settings(max_examples=30, deadline=None)
@given(ctx=st.integers(512, 65536), par=st.integers(1, 8))
def test_llamacpp_monotone_in_context_and_slots(ctx, par):
    a = estimate(_gguf(context_length=ctx, n_parallel=par)).per_gpu_gib["total"]
    assert estimate(_gguf(context_length=ctx + 512, n_parallel=par)).per_gpu_gib["total"] >= a
    assert estimate(_gguf(context_length=ctx, n_parallel=par + 1)).per_gpu_gib["total"] >= a


@settings(max_examples=30, deadline=None)
@given(ctx=st.integers(512, 65536), conc=st.integers(1, 32))
def test_transformers_and_mlx_monotone_in_context_and_concurrency(ctx, conc):
    for engine, fmt, quant in (("transformers", "pytorch", "none"), ("mlx", "mlx", "4bit")):

        def mk(c, n, engine=engine, fmt=fmt, quant=quant):
            return EstimateInput(
                QWEN7, engine, fmt, quant, gpu_total_gib=80, host_memory_gib=64, context_length=c, concurrency=n
            )

        a = estimate(mk(ctx, conc)).per_gpu_gib["total"]
        assert estimate(mk(ctx + 512, conc)).per_gpu_gib["total"] > a
        assert estimate(mk(ctx, conc + 1)).per_gpu_gib["total"] > a


def test_mlx_budget_is_the_wired_limit_not_ram():
    mk = lambda ram: EstimateInput(
        get_model("deepseek-r1-distill-llama:70"), "mlx", "mlx", "6bit", host_memory_gib=ram, context_length=4096
    )
    est = estimate(mk(64))
    assert est.per_gpu_gib["wired_limit"] == pytest.approx(48)  # 75% of 64 GiB
    # 6-bit 70B: 6.5 bits x 70.6e9 weights = 53 GiB: under 64 GiB of RAM, over the wired limit
    assert 48 < est.per_gpu_gib["weights"] < 64
    assert not est.fits and "wired limit" in est.reasons[0]
    assert estimate(mk(96)).fits


# ---- speed, errors, determinism -----------------------------------------------------------------


def test_decode_speed_first_order():
    est = estimate(_vllm(gpu_bandwidth_gbps=3350, concurrency=16))
    s = est.decode_tokens_per_s
    # upper bound: bandwidth / weight bytes
    assert s["per_sequence"] < 3350e9 / total_bytes(QWEN14, "pytorch", "none")
    assert s["aggregate"] > s["per_sequence"]
    longer = estimate(_vllm(gpu_bandwidth_gbps=3350, context_length=65536)).decode_tokens_per_s
    assert longer["per_sequence"] < s["per_sequence"]


def test_moe_reads_only_active_experts():
    from xinf_planner.core.memory.weights import active_bytes

    total = total_bytes(R1, "pytorch", "none")
    one_token = active_bytes(R1, "pytorch", "none")
    # 8 of 256 routed experts per token: ~37B of 671B parameters are read
    assert 0.04 < one_token / total < 0.08
    assert active_bytes(R1, "pytorch", "none", experts_touched=256) == pytest.approx(
        total - tensor_bytes(R1, "pytorch", "none")[0]
    )
    s = estimate(
        EstimateInput(R1, "vllm", tp=8, gpu_total_gib=139.8, context_length=4096, gpu_bandwidth_gbps=4800)
    ).decode_tokens_per_s["per_sequence"]
    assert s > 4800e9 * 8 / total  # faster than reading every expert would allow


@pytest.mark.parametrize(
    "kw, needle",
    [
        (dict(engine="tensorrt"), "vllm, sglang"),
        (dict(engine="llama.cpp"), "ggufv2"),
        (dict(kv_cache_dtype="q5_1"), "auto, fp8"),
        (dict(gpu_total_gib=None), "GPU memory"),
        (dict(gpu_memory_utilization=1.5), "(0, 1]"),
    ],
)
def test_bad_input_is_one_line(kw, needle):
    with pytest.raises(InvalidInput) as err:
        estimate(_vllm(**kw))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_deterministic():
    assert estimate(_vllm(tp=2)).to_dict() == estimate(_vllm(tp=2)).to_dict()


def test_ceiling_is_gib_of_2_30():
    est = estimate(_vllm(gpu_memory_utilization=0.5))
    assert math.isclose(est.per_gpu_gib["reservation"], 0.5 * 79.19)


def test_compute_roofline_caps_the_aggregate():
    kw = dict(gpu_bandwidth_gbps=3350, concurrency=64, context_length=2048)
    free = estimate(_vllm(**kw)).decode_tokens_per_s["aggregate"]
    capped = estimate(_vllm(gpu_tflops=10, **kw)).decode_tokens_per_s["aggregate"]
    # 10 TFLOPS at half efficiency, 2 FLOPs per parameter per token (embedding lookups excluded)
    bound = 10e12 * 0.5 / (2 * (QWEN14.params - QWEN14.vocab_size * QWEN14.hidden_size))
    assert capped < free and capped == pytest.approx(bound, rel=0.01)
