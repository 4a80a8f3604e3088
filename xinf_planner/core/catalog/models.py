"""The models: architecture facts (``data/models.yaml``) joined with Xinference's family facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from xinf_planner.core.catalog._data import load
from xinf_planner.errors import InvalidInput


@dataclass(frozen=True)
class ModelArch:
    """One model (family + size) with its config.json facts."""

    family: str
    size: str  # Xinference's size label: "1_5", "7", "671"
    size_b: float
    hf_id: str
    params: int
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool
    max_position_embeddings: int
    torch_dtype: str
    architecture: str = ""
    attention_bias: bool = False
    qk_norm: bool = False
    # MLA / MoE (None for dense models)
    kv_lora_rank: int | None = None
    q_lora_rank: int | None = None
    qk_rope_head_dim: int | None = None
    qk_nope_head_dim: int | None = None
    v_head_dim: int | None = None
    n_routed_experts: int | None = None
    n_shared_experts: int | None = None
    num_experts_per_tok: int | None = None
    moe_intermediate_size: int | None = None
    first_k_dense_replace: int | None = None
    num_nextn_predict_layers: int | None = None
    checkpoint_quant: str | None = None  # "fp8" for R1's native FP8 checkpoint
    weight_block_size: tuple[int, int] | None = None
    # from Xinference's family
    abilities: tuple[str, ...] = ()
    tool_calling: bool = False
    tool_parser: str | None = None
    context_length: int = 0  # Xinference's family context_length
    virtualenv_engines: tuple[str, ...] = field(default=())

    @property
    def ref(self) -> str:
        return f"{self.family}:{self.size}"

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank is not None

    @property
    def is_moe(self) -> bool:
        return bool(self.n_routed_experts)


def normalize_size(size: str | float | int) -> str:
    """'1.5', 1.5, '1_5' -> '1_5'; '7.0', 7 -> '7'."""
    text = str(size).strip().lower().removesuffix("b").replace("_", ".")
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(f"model size {size!r} is not a number of billions (e.g. 7, 1.5, 1_5)") from None
    text = f"{value:g}"
    return text.replace(".", "_")


@lru_cache(maxsize=None)
def _families() -> dict[str, dict]:
    return {f["family"]: f for f in load("xinference_specs.yaml")["families"]}


@lru_cache(maxsize=None)
def all_models_tuple() -> tuple[ModelArch, ...]:
    fams = _families()
    out = []
    for row in load("models.yaml")["models"]:
        fam = fams[row["family"]]
        qc = row.get("quantization_config") or {}
        kwargs = {k: v for k, v in row.items() if k in ModelArch.__dataclass_fields__}
        out.append(
            ModelArch(
                **kwargs,
                size_b=float(row["size"].replace("_", ".")),
                checkpoint_quant=qc.get("quant_method"),
                weight_block_size=tuple(qc["weight_block_size"]) if qc.get("weight_block_size") else None,
                abilities=tuple(fam["abilities"]),
                tool_calling="tools" in fam["abilities"],
                tool_parser=fam.get("tool_parser"),
                context_length=fam["context_length"],
                virtualenv_engines=tuple(fam["virtualenv_engines"]),
            )
        )
    return tuple(sorted(out, key=lambda m: (m.family, m.size_b)))


def all_models() -> list[ModelArch]:
    return list(all_models_tuple())


def families() -> list[str]:
    return sorted({m.family for m in all_models_tuple()})


def models_of(family: str) -> list[ModelArch]:
    found = [m for m in all_models_tuple() if m.family == family]
    if not found:
        raise InvalidInput(f"unknown model family {family!r}; choose one of: {', '.join(families())}")
    return sorted(found, key=lambda m: m.size_b)


def get_model(ref: str) -> ModelArch:
    """'family:size' (size in billions, 1.5 == 1_5) or a Hugging Face id."""
    ref = (ref or "").strip()
    for m in all_models_tuple():
        if ref.lower() == m.hf_id.lower():
            return m
    if ":" not in ref:
        raise InvalidInput(
            f"unknown model {ref!r}; give FAMILY:SIZE or a Hugging Face id, one of: "
            + ", ".join(m.ref for m in all_models_tuple())
        )
    family, size = ref.split(":", 1)
    models = models_of(family.strip())
    label = normalize_size(size)
    for m in models:
        if m.size == label:
            return m
    raise InvalidInput(
        f"{family} has no size {size!r}; choose one of: " + ", ".join(m.size.replace("_", ".") for m in models)
    )
