"""Activation peaks shared by the engines' models."""

from __future__ import annotations

from xinf_planner.core.catalog.models import ModelArch


def mlp_width(m: ModelArch) -> int:
    """Widest MLP intermediate of one token (MoE: the routed experts it uses plus the shared ones)."""
    if m.is_moe:
        return max(m.intermediate_size, m.moe_intermediate_size * (m.num_experts_per_tok + (m.n_shared_experts or 0)))
    return m.intermediate_size


def prefill_bytes(m: ModelArch, tokens: int, tp: int = 1, value_bytes: int = 2) -> float:
    """One forward over ``tokens`` tokens: the residual and normed hidden states plus the MLP's
    gate/up output and activation, ``2 x hidden + 3 x intermediate / TP`` values per token."""
    return tokens * (2 * m.hidden_size + 3 * mlp_width(m) / max(1, tp)) * value_bytes


def logits_bytes(m: ModelArch, rows: int, value_bytes: int = 4) -> float:
    return rows * m.vocab_size * value_bytes
