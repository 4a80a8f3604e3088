"""Turn a measured start-up row (benchmarks/data/memory_measurements.yaml) into an estimate input.

The rows record what the engine really ran with; vLLM/SGLang defaults that the rows leave implicit
are filled in as those engines set them, never fitted to the rows:
* max_num_seqs: ``vllm serve`` defaults to 1024 on GPUs of 70 GiB or more in V1
  (vllm/engine/arg_utils.py, _set_default_args), 256 otherwise and in V0;
* max_model_len, when the row leaves it out: the measured model's max_position_embeddings
  (vLLM's default); ``MEASURED_MODEL_MAX_LEN`` holds those config.json facts.
"""

from __future__ import annotations

from typing import Any

from xinf_planner.core.catalog.models import get_model
from xinf_planner.core.memory.types import EstimateInput, version_at_least

# config.json max_position_embeddings of the measured models
MEASURED_MODEL_MAX_LEN = {
    "meta-llama/Meta-Llama-3-8B": 8192,
    "meta-llama/Llama-3.1-8B-Instruct": 131072,
    "meta-llama/Meta-Llama-3.1-8B-Instruct": 131072,
    "Qwen/Qwen2.5-7B-Instruct": 32768,
    "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic": 131072,
}


def engine_version(row: dict[str, Any]) -> str | None:
    text = str(row.get("engine_version") or "")
    for token in text.replace("(", " ").replace("~", " ").split():
        if token[:1].isdigit():
            return token
    return None


def context_length(row: dict[str, Any]) -> int:
    mml = row.get("max_model_len")
    if mml is None:
        return MEASURED_MODEL_MAX_LEN.get(row["measured_model"], 8192)
    if isinstance(mml, str) and "-" in mml:
        return int(mml.split("-")[0])
    return int(mml)


def row_input(row: dict[str, Any]) -> EstimateInput:
    version = engine_version(row)
    engine = row["engine"]
    frac = row.get("gpu_memory_utilization_or_mem_fraction_static")
    total = row.get("gpu_total_gib")
    v1 = version_at_least(version, "0.8")
    inp = EstimateInput(
        model=get_model(row["same_architecture_as"]),
        engine=engine,
        model_format=row["model_format"],
        quantization=row["quantization"],
        tp=int(row["tp"]),
        pp=int(row["pp"]),
        gpu_total_gib=total,
        context_length=context_length(row),
        kv_cache_dtype=row.get("kv_cache_dtype") or "auto",
        engine_version=version,
    )
    if engine == "vllm":
        inp.gpu_memory_utilization = frac
        inp.max_num_seqs = 1024 if (v1 and total and total >= 70) else 256
    else:
        inp.mem_fraction_static = frac
        before = ((row.get("measured") or {}).get("other") or {}).get("avail_mem_before_load_gib")
        if total is None and before is not None:
            # the log gives the free memory before loading: set the total that yields it
            from xinf_planner.core.memory.sglang import context_gib

            inp.gpu_total_gib = before + context_gib(inp)
    return inp
