"""Plan documents for the integration tests, built the way the planner builds them.

The planner's ``plan --model-path`` (CPU host -> llama.cpp with a registration block) had
not landed when these tests were written, so this helper assembles the same document from
``localmodel.detect`` + ``localmodel.registration_for``, with what the planner records
beside a registration (the ``arch`` facts read from the weights) and the inventory the plan
is for (one CPU host, ``cpu_host``), and checks it as ``xinf-plan validate`` does — a test
plan that does not validate fails here, not in apply. Tests that change the inventory call
``with_hosts`` (it keeps the fingerprint true); those that break a plan on purpose break
what only the server can see (a model_path missing on the worker), which validation passes.
"""

from __future__ import annotations

from pathlib import Path

from xinf_planner.core.documents import dump_document
from xinf_planner.core.inventory import Inventory, fingerprint
from xinf_planner.core.plan.validate import check_plan
from xinf_planner.core.registration import registration_for
from xinf_planner.core.sizes import size_in_billions
from xinf_planner.shell.local_weights import detect

FAMILY = "deepseek-r1-distill-qwen"
GIB = 1024**3
# what the planner records of local weights with a registration (planner.py, _deployment)
ARCH_KEYS = ("num_layers", "hidden_size", "num_attention_heads", "num_kv_heads", "head_dim", "vocab_size", "params")


def cpu_host(name: str = "localhost", ram_gib: float = 16.0, worker_address: str | None = None) -> dict:
    """An inventory host without GPUs (the 2-core test VM; RAM is what CPU replicas count on)."""
    host = {
        "name": name,
        "os": "linux",
        "arch": "x86_64",
        "cpu_cores": 2,
        "memory_total_bytes": int(ram_gib * GIB),
        "gpus": [],
    }
    if worker_address:
        host["worker_address"] = worker_address
    return host


def with_hosts(plan: dict, hosts: list[dict]) -> dict:
    """Embed an inventory of ``hosts`` in the plan, with its true fingerprint."""
    doc = {"version": 1, "hosts": hosts}
    plan["inventory"] = {"fingerprint": fingerprint(Inventory.from_dict(doc, "test inventory")), "document": doc}
    return plan


def tiny_plan(
    model_dir,
    *,
    uid: str = "tiny-r1-a",
    model_name: str = "tiny-r1",
    replicas: int = 2,
    context_length: int = 512,
    model_uri: str | None = None,
) -> dict:
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
        "inventory": {},
        "request": {
            "model": f"{FAMILY}",
            "model_path": str(model_dir),
            "replicas": replicas,
            "context_length": context_length,
            "concurrency": 1,
        },
        "deployments": [
            {
                "name": uid,
                "model": f"{FAMILY}:{size}",
                "launch": launch,
                "placement": [{"host": "localhost", "gpus": []} for _ in range(replicas)],
                "estimate": {
                    "per_gpu_gib": {"weights": 0.0, "kv_cache": 0.0, "activation": 0.0, "overhead": 0.0, "total": 0.0},
                    "kv_cache_tokens": context_length,
                    "max_concurrent_sequences": 1.0,
                    "decode_tokens_per_s": {"per_sequence": 0.0, "aggregate": 0.0},
                },
                "reasons": ["CPU host: llama.cpp serves GGUF without a GPU"],
                "registration": reg,
                "arch": {k: getattr(model, k) for k in ARCH_KEYS},
            }
        ],
        "rejected": [],
    }
    with_hosts(plan, [cpu_host()])
    check_plan(plan, "test plan")
    return plan


def write_plan(plan: dict, path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(dump_document(plan, "yaml"), encoding="utf-8")
    return p
