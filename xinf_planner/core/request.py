"""The workload to plan for: from command-line flags or an intent file (``intent.schema.json``).

Both paths build the same intent dictionary, validate it against the schema, and turn it
into a ``Request``. ``Request.to_dict`` is the normalised form a plan records.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from xinf_planner.core.documents import validate_schema
from xinf_planner.core.engines import canonical as canonical_engine
from xinf_planner.core.serving.figures import (
    DEFAULT_INPUT_TOKENS,
    DEFAULT_MAX_TPOT_MS,
    DEFAULT_MAX_TTFT_MS,
    DEFAULT_OUTPUT_TOKENS,
    Targets,
)
from xinf_planner.errors import InvalidInput

SCHEMA = "intent.schema.json"
OBJECTIVES = ("quality", "throughput", "latency", "efficiency", "balanced")
DEFAULT_CONTEXT_LENGTH = 8192
DEFAULT_CONCURRENCY = 1
DEFAULT_OBJECTIVE = "balanced"


@dataclass(frozen=True)
class ModelRequest:
    """One model to serve. ``size`` is None when the planner picks the size of ``family``."""

    family: str
    size: str | None
    context_length: int
    concurrency: int
    share: float = 1.0
    model_path: str | None = None
    replicas: int | None = None
    input_tokens: int = DEFAULT_INPUT_TOKENS
    output_tokens: int = DEFAULT_OUTPUT_TOKENS
    max_ttft_ms: float = DEFAULT_MAX_TTFT_MS
    max_tpot_ms: float = DEFAULT_MAX_TPOT_MS

    @property
    def ref(self) -> str:
        return self.family if self.size is None else f"{self.family}:{self.size}"

    @property
    def targets(self) -> Targets:
        return Targets(self.max_ttft_ms, self.max_tpot_ms)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {
            "model": self.ref,
            "share": self.share,
            "context_length": self.context_length,
            "concurrency": self.concurrency,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            **self.targets.to_dict(),
        }
        if self.model_path is not None:
            out["model_path"] = self.model_path
        if self.replicas is not None:
            out["replicas"] = self.replicas
        return out


@dataclass(frozen=True)
class Request:
    models: tuple[ModelRequest, ...]
    objective: str = DEFAULT_OBJECTIVE
    engines: tuple[str, ...] | None = None
    formats: tuple[str, ...] | None = None
    quantizations: tuple[str, ...] | None = None
    exclude_gpus: tuple[str, ...] = ()
    headroom_gib: float = 0.0
    headroom_fraction: float = 0.0
    tool_calling: bool = False
    strategy: str = "spread"
    interconnect: str = "ethernet"  # between hosts: decides TP x PP of a sharded replica
    model_path_on_every_worker: bool = False  # local weights may spread over hosts
    enable_virtual_env: bool | None = None  # None: Xinference's default (on)
    persist: bool | None = None  # apply keeps autostart entries (core/persist.py); None: not said
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"models": [m.to_dict() for m in self.models], "objective": self.objective}
        for key in ("engines", "formats", "quantizations"):
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value)
        if self.exclude_gpus:
            out["exclude_gpus"] = list(self.exclude_gpus)
        if self.headroom_gib:
            out["headroom_gib"] = self.headroom_gib
        if self.headroom_fraction:
            out["headroom_fraction"] = self.headroom_fraction
        out["tool_calling"] = self.tool_calling
        out["strategy"] = self.strategy
        if self.interconnect != "ethernet":
            out["interconnect"] = self.interconnect
        if self.model_path_on_every_worker:
            out["model_path_on_every_worker"] = True
        if self.enable_virtual_env is not None:
            out["enable_virtual_env"] = self.enable_virtual_env
        if self.persist is not None:
            out["persist"] = self.persist
        return out

    def headroom_for(self, total_gib: float) -> float:
        """GiB to leave free on a GPU of ``total_gib``."""
        return max(self.headroom_gib, self.headroom_fraction * total_gib)


def split_ref(ref: str) -> tuple[str, str | None]:
    """'family' -> (family, None); 'family:7b' / 'family:1.5' -> (family, '7' / '1_5')."""
    family, sep, size = ref.strip().partition(":")
    if not sep:
        return family, None
    size = size.strip().rstrip("bB").replace(".", "_")
    if not size:
        raise InvalidInput(f"model {ref!r}: the size after ':' is empty (e.g. {family}:7)")
    return family, size


def parse_headroom(value: Any) -> tuple[float, float]:
    """(GiB, fraction) from 2, '2GiB' or '10%'."""
    if value is None:
        return 0.0, 0.0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            raise InvalidInput(f"headroom {value!r}: use a finite number of GiB, 0 or more")
        return float(value), 0.0
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(GiB|%)\s*", str(value))
    if not m:
        raise InvalidInput(f"headroom {value!r}: use GiB (2 or '2GiB') or a share ('10%')")
    number = float(m.group(1))
    if m.group(2) == "%":
        if number >= 100:
            raise InvalidInput(f"headroom {value!r}: a share must be below 100%")
        return 0.0, number / 100.0
    return number, 0.0


def request_from_intent(doc: Any, name: str = "intent") -> Request:
    """Validate an intent document and build the Request."""
    validate_schema(doc, SCHEMA, name)
    if "model" in doc and "models" in doc:
        raise InvalidInput(f"{name}: $: give either 'model' or 'models', not both")
    context = doc.get("context_length", DEFAULT_CONTEXT_LENGTH)
    concurrency = doc.get("concurrency", DEFAULT_CONCURRENCY)
    workload = {key: doc[key] for key in WORKLOAD_KEYS if key in doc}
    entries = doc.get("models") or [{"model": doc["model"]}]
    if "model" in doc:
        entries = [
            {
                "model": doc["model"],
                **({"model_path": doc["model_path"]} if "model_path" in doc else {}),
                **({"replicas": doc["replicas"]} if "replicas" in doc else {}),
            }
        ]
    elif "model_path" in doc:
        if len(entries) != 1:
            raise InvalidInput(f"{name}: $.model_path: with several models, give model_path per model")
        entries = [{**entries[0], "model_path": entries[0].get("model_path", doc["model_path"])}]
    models = []
    for n, entry in enumerate(entries):
        family, size = split_ref(entry["model"])
        replicas = entry.get("replicas", doc.get("replicas") if len(entries) == 1 else None)
        ctx = entry.get("context_length", context)
        given = {**workload, **{key: entry[key] for key in WORKLOAD_KEYS if key in entry}}
        mreq = ModelRequest(
            family=family,
            size=size,
            context_length=ctx,
            concurrency=entry.get("concurrency", concurrency),
            share=float(entry.get("share", 1.0)),
            model_path=entry.get("model_path"),
            replicas=replicas,
            **fit_workload(ctx, given),
        )
        where = f"$.models[{n}]" if "models" in doc else "$"
        check_workload(mreq, f"{name}: {where}")
        models.append(mreq)
    if "replicas" in doc and len(models) > 1:
        raise InvalidInput(f"{name}: $.replicas: with several models, give replicas per model")
    gib, fraction = parse_headroom(doc.get("headroom"))
    engines = doc.get("engines")
    return Request(
        models=tuple(models),
        objective=doc.get("objective", DEFAULT_OBJECTIVE),
        engines=None if engines is None else tuple(canonical_engine(e) for e in engines),
        formats=None if doc.get("formats") is None else tuple(doc["formats"]),
        quantizations=None if doc.get("quantizations") is None else tuple(doc["quantizations"]),
        exclude_gpus=tuple(doc.get("exclude_gpus", ())),
        headroom_gib=gib,
        headroom_fraction=fraction,
        tool_calling=bool(doc.get("tool_calling", False)),
        strategy=doc.get("strategy", "spread"),
        interconnect=doc.get("interconnect", "ethernet"),
        model_path_on_every_worker=bool(doc.get("model_path_on_every_worker", False)),
        enable_virtual_env=doc.get("enable_virtual_env"),
        persist=doc.get("persist"),
    )


WORKLOAD_KEYS = ("input_tokens", "output_tokens", "max_ttft_ms", "max_tpot_ms")


def fit_workload(context_length: int, given: dict) -> dict:
    """The workload keys: what was given, and the defaults (1000 prompt + 4000 output tokens)
    for the rest, cut to fit the context length when it is shorter: a defaulted output takes
    what the prompt leaves; both defaulted keep the 1:4 split. Given values are never changed
    (``check_workload`` refuses them when they do not fit)."""
    out = dict(given)
    has_in, has_out = "input_tokens" in given, "output_tokens" in given
    if not has_in and not has_out and DEFAULT_INPUT_TOKENS + DEFAULT_OUTPUT_TOKENS > context_length:
        total = DEFAULT_INPUT_TOKENS + DEFAULT_OUTPUT_TOKENS
        out["input_tokens"] = max(1, context_length * DEFAULT_INPUT_TOKENS // total)
        out["output_tokens"] = max(1, context_length - out["input_tokens"])
    elif has_in and not has_out:
        out["output_tokens"] = max(1, min(DEFAULT_OUTPUT_TOKENS, context_length - int(given["input_tokens"])))
    elif has_out and not has_in:
        out["input_tokens"] = max(1, min(DEFAULT_INPUT_TOKENS, context_length - int(given["output_tokens"])))
    return out


def check_workload(mreq: ModelRequest, where: str) -> None:
    """Rules the schema cannot say: targets finite and positive (flags bypass the schema's
    types), and one typical request inside the longest sequence."""
    for key in ("max_ttft_ms", "max_tpot_ms"):
        value = getattr(mreq, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise InvalidInput(f"{where}.{key}: {value!r} is not a positive, finite number of milliseconds")
    if mreq.input_tokens + mreq.output_tokens > mreq.context_length:
        raise InvalidInput(
            f"{where}: input_tokens {mreq.input_tokens} + output_tokens {mreq.output_tokens} exceed the "
            f"context length {mreq.context_length}: raise --context-length (the longest sequence) or "
            "shorten the workload"
        )


def merge_flags(intent: dict | None, flags: dict) -> dict:
    """An intent dictionary with the given command-line flags on top (flags win).

    ``flags`` holds only what the user typed (None values are dropped). ``model``,
    ``model_path`` and ``replicas`` replace a single-model intent's entry.
    """
    doc = dict(intent or {})
    given = {k: v for k, v in flags.items() if v is not None and v != ()}
    if "model" in given and "models" in doc:
        doc.pop("models")
    if "models" in doc and ("model_path" in given or "replicas" in given):
        if len(doc["models"]) != 1:
            raise InvalidInput("--model-path and --replicas apply to one model; the intent lists several")
        entry = dict(doc["models"][0])
        for key in ("model_path", "replicas"):
            if key in given:
                entry[key] = given.pop(key)
        doc["models"] = [entry]
    for key, value in given.items():
        doc[key] = list(value) if isinstance(value, tuple) else value
    return doc
