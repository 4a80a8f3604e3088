"""The tensors of a model, one row per weight (experts folded into a count), from its config facts.

Each row says how tensor parallelism treats it, as vLLM and SGLang shard these architectures:
  vocab       vocabulary-parallel embedding / LM head: divided by TP
  col, row    column/row-parallel linear: divided by TP
  kv          K/V projection: kv_heads / TP heads per rank, at least one (replicated past TP > kv_heads)
  expert      MoE experts: each expert's intermediate size divided by TP
  replicated  every rank holds all of it (norms, row-parallel biases, MLA's q_a/kv_a, the router)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from xinf_planner.core.catalog.models import ModelArch


@dataclass(frozen=True)
class Tensor:
    name: str  # GGUF-style role: token_embd, output, attn_q, ffn_down_exps, attn_norm, ...
    layer: int | None  # None for the embedding, the final norm and the LM head
    rows: int  # output features (1-D tensors: 1)
    cols: int  # input features (1-D tensors: their length)
    shard: str  # vocab | col | row | kv | expert | replicated
    part: str  # embed | lm_head | attention | mlp | experts | shared | router | norm
    count: int = 1  # identical copies (routed experts)

    @property
    def numel(self) -> int:
        return self.rows * self.cols * self.count

    @property
    def is_1d(self) -> bool:
        return self.rows == 1


def _dense_attention(m: ModelArch, i: int) -> list[Tensor]:
    h, q, kv = m.hidden_size, m.num_attention_heads * m.head_dim, m.num_kv_heads * m.head_dim
    out = [
        Tensor("attn_q", i, q, h, "col", "attention"),
        Tensor("attn_k", i, kv, h, "kv", "attention"),
        Tensor("attn_v", i, kv, h, "kv", "attention"),
        Tensor("attn_output", i, h, q, "row", "attention"),
    ]
    if m.attention_bias:
        out += [
            Tensor("attn_q_bias", i, 1, q, "col", "norm"),
            Tensor("attn_k_bias", i, 1, kv, "kv", "norm"),
            Tensor("attn_v_bias", i, 1, kv, "kv", "norm"),
        ]
    if m.qk_norm:
        out += [
            Tensor("attn_q_norm", i, 1, m.head_dim, "replicated", "norm"),
            Tensor("attn_k_norm", i, 1, m.head_dim, "replicated", "norm"),
        ]
    return out


def _mla_attention(m: ModelArch, i: int) -> list[Tensor]:
    h, nh = m.hidden_size, m.num_attention_heads
    qk = m.qk_nope_head_dim + m.qk_rope_head_dim
    return [
        Tensor("attn_q_a", i, m.q_lora_rank, h, "replicated", "attention"),
        Tensor("attn_q_a_norm", i, 1, m.q_lora_rank, "replicated", "norm"),
        Tensor("attn_q_b", i, nh * qk, m.q_lora_rank, "col", "attention"),
        Tensor("attn_kv_a_mqa", i, m.kv_lora_rank + m.qk_rope_head_dim, h, "replicated", "attention"),
        Tensor("attn_kv_a_norm", i, 1, m.kv_lora_rank, "replicated", "norm"),
        Tensor("attn_kv_b", i, nh * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank, "col", "attention"),
        Tensor("attn_output", i, h, nh * m.v_head_dim, "row", "attention"),
    ]


def _mlp(m: ModelArch, i: int, inter: int, suffix: str = "", part: str = "mlp") -> list[Tensor]:
    h = m.hidden_size
    return [
        Tensor(f"ffn_gate{suffix}", i, inter, h, "col", part),
        Tensor(f"ffn_up{suffix}", i, inter, h, "col", part),
        Tensor(f"ffn_down{suffix}", i, h, inter, "row", part),
    ]


def _moe(m: ModelArch, i: int) -> list[Tensor]:
    h, e, inter = m.hidden_size, m.n_routed_experts, m.moe_intermediate_size
    out = [
        Tensor("ffn_gate_inp", i, e, h, "replicated", "router"),
        Tensor("exp_probs_b", i, 1, e, "replicated", "norm"),
        Tensor("ffn_gate_exps", i, inter, h, "expert", "experts", e),
        Tensor("ffn_up_exps", i, inter, h, "expert", "experts", e),
        Tensor("ffn_down_exps", i, h, inter, "expert", "experts", e),
    ]
    if m.n_shared_experts:
        out += _mlp(m, i, inter * m.n_shared_experts, "_shexp", "shared")
    return out


@lru_cache(maxsize=64)
def model_tensors(m: ModelArch) -> tuple[Tensor, ...]:
    h = m.hidden_size
    out = [Tensor("token_embd", None, m.vocab_size, h, "vocab", "embed")]
    for i in range(m.num_layers):
        out.append(Tensor("attn_norm", i, 1, h, "replicated", "norm"))
        out += _mla_attention(m, i) if m.is_mla else _dense_attention(m, i)
        out.append(Tensor("ffn_norm", i, 1, h, "replicated", "norm"))
        dense = not m.is_moe or i < (m.first_k_dense_replace or 0)
        out += _mlp(m, i, m.intermediate_size) if dense else _moe(m, i)
    out.append(Tensor("output_norm", None, 1, h, "replicated", "norm"))
    if not m.tie_word_embeddings:
        out.append(Tensor("output", None, m.vocab_size, h, "vocab", "lm_head"))
    return tuple(out)


def parameter_count(m: ModelArch) -> int:
    return sum(t.numel for t in model_tensors(m))


def shard_fraction(t: Tensor, m: ModelArch, tp: int) -> float:
    """The share of tensor ``t`` that one of ``tp`` ranks holds."""
    if tp <= 1 or t.shard == "replicated":
        return 1.0
    if t.shard == "kv":
        per_rank = max(1, m.num_kv_heads // tp)
        return per_rank / m.num_kv_heads
    return 1.0 / tp


def pp_layer_ranges(num_layers: int, pp: int) -> list[range]:
    """vLLM's get_pp_indices: L // pp layers each, the remainder going to the stages before the last."""
    base = [num_layers // pp] * pp
    for i in range(2, num_layers % pp + 2):
        base[-i] += 1
    out, start = [], 0
    for n in base:
        out.append(range(start, start + n))
        start += n
    return out


def stage_tensors(m: ModelArch, pp: int, stage: int) -> list[Tensor]:
    """Tensors held by pipeline stage ``stage`` (the first holds the embedding, the last the head)."""
    layers = pp_layer_ranges(m.num_layers, pp)[stage]
    out = []
    for t in model_tensors(m):
        if t.layer is None:
            first = t.name == "token_embd"
            if (first and stage == 0) or (not first and stage == pp - 1):
                out.append(t)
        elif t.layer in layers:
            out.append(t)
    return out
