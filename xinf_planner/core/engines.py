"""Engine facts, one home: names, platforms, formats, paged KV, tensor parallelism, what each
reserves on a GPU, batch and slot limits, as Xinference 4.1.0 launches the engine.

The facts are data (``engines.yaml`` beside this module, each with its source); these
functions are the only readers. An engine is named by its canonical lower-case key
(``vllm``, ``sglang``, ``llama.cpp``, ``mlx``, ``transformers``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

from xinf_planner.errors import InvalidInput

NAMES = ("vllm", "sglang", "llama.cpp", "mlx", "transformers")


@lru_cache(maxsize=1)
def _data() -> dict:
    text = resources.files("xinf_planner.core").joinpath("engines.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def facts(engine: str) -> dict:
    """The engine's entry of engines.yaml (do not modify)."""
    return _data()["engines"][engine]


@lru_cache(maxsize=64)
def _by_alias() -> dict[str, str]:
    out = {}
    for name in NAMES:
        out[name] = name
        out[facts(name)["xinference_name"].lower()] = name
        for alias in facts(name)["aliases"]:
            out[alias] = name
    return out


def canonical(name: str) -> str:
    """The canonical key of an engine name as users and Xinference write it ("vLLM", "SGLang",
    "llamacpp"); other names come back lower-cased, for the caller to refuse."""
    low = str(name or "").strip().lower()
    return _by_alias().get(low, low)


def require(name: str) -> str:
    """``canonical``, or InvalidInput naming the known engines."""
    engine = canonical(name)
    if engine not in NAMES:
        raise InvalidInput(f"unknown engine {name!r}; choose one of: {', '.join(NAMES)}")
    return engine


def xinference_name(engine: str) -> str:
    """``model_engine`` as ``launch_model`` takes it."""
    return facts(engine)["xinference_name"]


def order(engine: str) -> int:
    """Position in the tie-break order (stable plans); unknown engines last."""
    seq = _data()["order"]
    return seq.index(engine) if engine in seq else len(seq)


def paged_kv_concurrency() -> int:
    """From this many sequences at once, paged-KV engines are preferred over fixed slots."""
    return int(_data()["paged_kv_concurrency"])


def has_paged_kv(engine: str) -> bool:
    """Paged KV cache and continuous batching (vLLM, SGLang)."""
    return bool(facts(engine).get("paged_kv"))


def tensor_parallel(engine: str) -> bool:
    """Shards layers over tensor-parallel GPUs (vLLM, SGLang); the others split layers or use one device."""
    return bool(facts(engine).get("tensor_parallel"))


def multi_host(engine: str) -> bool:
    """One replica may be sharded over several workers (n_worker > 1)."""
    return bool(facts(engine).get("multi_host"))


def is_last_resort(engine: str) -> bool:
    return bool(facts(engine).get("last_resort"))


def runs_on_cpu(engine: str) -> bool:
    return bool(facts(engine).get("cpu"))


@dataclass(frozen=True)
class Reservation:
    """What an engine holds on each GPU: ``key`` (the launch kwarg) times the GPU's total.

    ``default``: what Xinference passes when the launch sets nothing (by TP for SGLang);
    ``margin``/``cap``: how the planner sizes it (the estimate's need plus margin, at most cap)."""

    key: str
    default: float
    margin: float
    cap: float
    by_tp: tuple[tuple[int, float], ...] = ()

    def default_for(self, gpus: int) -> float:
        for floor, fraction in self.by_tp:
            if gpus >= floor:
                return fraction
        return self.by_tp[-1][1] if self.by_tp else self.default


def reservation(engine: str) -> Reservation | None:
    """The engine's GPU reservation, or None for engines that allocate as they go."""
    res = facts(engine).get("reservation")
    if res is None:
        return None
    return Reservation(
        res["key"],
        float(res["default"]),
        float(res["margin"]),
        float(res["cap"]),
        tuple((int(a), float(b)) for a, b in res.get("by_tp") or ()),
    )


def reservation_key(engine: str) -> str | None:
    res = reservation(engine)
    return res.key if res else None


def max_batch(engine: str) -> int | None:
    """The most sequences one replica batches (vLLM: Xinference's max_num_seqs)."""
    value = facts(engine).get("max_batch")
    return None if value is None else int(value)


def step_tokens(engine: str, gpu_gib: float | None = None) -> int | None:
    """Tokens one engine step schedules (decode plus chunked prefill), or None when a prompt is
    prefilled whole (Transformers)."""
    f = facts(engine)
    for floor, tokens in f.get("step_tokens_by_gpu_gib") or ():
        if (gpu_gib or 0.0) >= floor:
            return int(tokens)
    value = f.get("step_tokens")
    return None if value is None else int(value)


def max_slots(engine: str) -> int | None:
    """llama.cpp: the most parallel slots (n_parallel) per replica."""
    slots = facts(engine).get("slots")
    return None if slots is None else int(slots["max"])


def slot_context(context_length: int, slots: int) -> int:
    """llama.cpp's n_ctx as Xinference sets it: context_length x n_parallel (the slots share it)."""
    return context_length * slots


def all_layers(engine: str) -> int:
    """n_gpu_layers meaning every layer on the GPU(s)."""
    return int(facts(engine)["all_layers"])


def supports_kv_cache_dtype(engine: str) -> bool:
    """Whether the KV cache dtype is the engine's to choose (vLLM/SGLang ``kv_cache_dtype``,
    llama.cpp's cache type); MLX and Transformers keep the model's dtype."""
    return bool(facts(engine).get("kv_cache_dtype"))


def fp8_kv_cache_dtype(engine: str) -> str | None:
    """The ``kv_cache_dtype`` launch value of the engine's FP8 KV cache, or None without one."""
    value = facts(engine).get("fp8_kv_cache")
    return str(value) if value else None
