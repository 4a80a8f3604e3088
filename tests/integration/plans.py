"""Plan documents for the integration tests, built the way the planner builds them.

The planner's ``plan --model-path`` (CPU host -> llama.cpp with a registration block) had
not landed when these tests were written, so this helper assembles the same document from
``localmodel.detect`` + ``localmodel.registration_for`` and checks it against
``plan.schema.json`` — a test plan that does not validate fails here, not in apply.
"""

from __future__ import annotations

from pathlib import Path

from xinf_planner.docio import dump_document, validate_schema
from xinf_planner.localmodel import detect, registration_for, size_in_billions

FAMILY = "deepseek-r1-distill-qwen"


def tiny_plan(model_dir, *, uid: str = "tiny-r1-a", model_name: str = "tiny-r1", replicas: int = 2,
              context_length: int = 512, model_uri: str | None = None) -> dict:
    model = detect(model_dir)
    reg = registration_for(model, model_name, FAMILY, context_length=2048)
    if model_uri is not None:
        reg["model_uri"] = model_uri
    size = size_in_billions(model.params)
    launch = {
        "model_uid": uid,
        "model_name": model_name,
        "model_type": "LLM",
        "model_engine": "llama.cpp",
        "model_format": model.model_format,
        "model_size_in_billions": size,
        "quantization": model.quantization,
        "replica": replicas,
        "n_gpu": None,
        "context_length": context_length,
        "enable_virtual_env": False,
    }
    plan = {
        "version": 1,
        "generated_by": "tests/integration/plans.py",
        "inventory": {"fingerprint": "test-cpu-host"},
        "request": {"model": f"{FAMILY}", "model_path": str(model_dir), "replicas": replicas,
                    "context_length": context_length, "concurrency": 1},
        "deployments": [{
            "name": uid,
            "model": f"{FAMILY}:{size}",
            "launch": launch,
            "placement": [{"host": "localhost", "gpus": []} for _ in range(replicas)],
            "estimate": {
                "per_gpu_gib": {"weights": 0.0, "kv_cache": 0.0, "activation": 0.0, "overhead": 0.0,
                                "total": 0.0},
                "kv_cache_tokens": context_length, "max_concurrent_sequences": 1.0,
                "decode_tokens_per_s": {"per_sequence": 0.0, "aggregate": 0.0},
            },
            "reasons": ["CPU host: llama.cpp serves GGUF without a GPU"],
            "registration": reg,
        }],
        "rejected": [],
    }
    validate_schema(plan, "plan.schema.json", "test plan")
    return plan


def write_plan(plan: dict, path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(dump_document(plan, "yaml"), encoding="utf-8")
    return p
