"""Local weights as data, and their registration: the plan's ``deployments[].registration``
block (``registration_for``) and the version-2 JSON that ``Client.register_model("LLM", ...)``
takes (``registration_spec``). ``shell/local_weights.py`` reads a folder into a ``LocalModel``.

Rules (Xinference 4.1.0, ``xinference/model/llm/llm_family.py``):
- ``model_family`` is a builtin R1 family and ``chat_template`` is null, so the builtin
  chat template, stop tokens and ``<think>`` reasoning tags are inherited;
- ggufv2 specs name their file with ``model_file_name_template``; ``model_uri`` is the folder.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import PurePath

from xinf_planner.core.sizes import size_label
from xinf_planner.errors import InvalidInput

NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
R1_ABILITIES = ["chat", "reasoning"]


@dataclass
class LocalModel:
    path: str  # the folder, absolute
    model_format: str  # ggufv2 | pytorch | awq | gptq | fp8 | mlx
    quantization: str  # F16, Q4_K_M, none, Int4, 4bit, ...
    model_file_name_template: str | None = None
    architecture: str | None = None  # "qwen2", "Qwen2ForCausalLM", ...
    num_layers: int | None = None
    hidden_size: int | None = None
    num_attention_heads: int | None = None
    num_kv_heads: int | None = None
    head_dim: int | None = None
    vocab_size: int | None = None
    params: int | None = None
    context_length: int | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def registration_for(
    model: LocalModel,
    model_name: str,
    model_family: str,
    context_length: int | None = None,
    worker_ip: str | None = None,
) -> dict:
    """The plan's ``deployments[].registration`` block for these local weights."""
    if not NAME_OK.match(model_name):
        raise InvalidInput(f"model name {model_name!r}: use letters, digits, '.', '_' and '-' only")
    path = PurePath(model.path)
    if not path.is_absolute():
        raise InvalidInput(f"model path {model.path!r}: an absolute folder is needed for its file:// URI")
    block = {
        "model_name": model_name,
        "model_family": model_family,
        "model_format": model.model_format,
        "model_uri": path.as_uri(),
        "quantization": model.quantization,
    }
    if model.model_file_name_template:
        block["model_file_name_template"] = model.model_file_name_template
    ctx = context_length or model.context_length
    if ctx:
        block["context_length"] = int(ctx)
    if worker_ip:
        block["worker_ip"] = worker_ip
    return block


def registration_spec(block: dict, model_size_in_billions) -> dict:
    """The version-2 JSON for ``register_model('LLM', ...)`` from a registration block."""
    spec = {
        "model_format": block["model_format"],
        "model_size_in_billions": size_label(model_size_in_billions),
        "quantization": block.get("quantization") or "none",
        "model_uri": block["model_uri"],
        "model_hub": "huggingface",
    }
    if block.get("model_file_name_template"):
        spec["model_file_name_template"] = block["model_file_name_template"]
    doc = {
        "version": 2,
        "model_name": block["model_name"],
        "model_family": block["model_family"],
        "model_lang": ["en", "zh"],
        "model_ability": list(R1_ABILITIES),
        "model_description": f"local weights registered by xinf-plan ({block['model_family']})",
        "chat_template": None,
        "stop_token_ids": None,
        "stop": None,
        "model_specs": [spec],
    }
    if block.get("context_length"):
        doc["context_length"] = int(block["context_length"])
    return doc
