"""Step 1 of a plan: the options, every (size, spec, engine) the catalog and the rules allow for
a model request, each refusal recorded with its reason. Local weights are one spec of their own."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from xinf_planner.core import engines, rules
from xinf_planner.core.request import ModelRequest


@dataclass(frozen=True)
class Option:
    arch: Any  # catalog.ModelArch
    spec: Any  # catalog.Spec
    engine: str
    precision: str
    runtime_quantization: str | None = None  # "fp8": vLLM quantises the 16-bit checkpoint at load
    kv_cache_dtype: str = "auto"  # "fp8": the engine's FP8 KV cache (twice the tokens per GiB)

    @property
    def label(self) -> str:
        text = f"{self.arch.ref} {self.spec.model_format}/{self.spec.quantization}"
        if self.runtime_quantization:
            text += f" as {self.runtime_quantization} at load"
        if self.kv_cache_dtype != "auto":
            text += f" with {self.kv_cache_dtype} KV"
        return f"{text} on {self.engine}"

    @property
    def key(self) -> tuple:
        a = self.arch
        return (
            a.ref,
            a.params,
            a.num_layers,
            a.hidden_size,
            self.spec.model_format,
            self.spec.quantization,
            self.engine,
            self.runtime_quantization,
            self.kv_cache_dtype,
        )

    @property
    def launch_kwargs(self) -> dict:
        """The engine kwargs the variant needs (Xinference passes vLLM's own --quantization as
        ``model_quantization``, since ``quantization`` names the spec)."""
        out = {}
        if self.runtime_quantization:
            out["model_quantization"] = self.runtime_quantization
        if self.kv_cache_dtype == "fp8":
            out["kv_cache_dtype"] = engines.fp8_kv_cache_dtype(self.engine)
        return out


def archs_of(mreq: ModelRequest) -> list:
    """The sizes to try: the one asked for, else every size of the family, largest first."""
    from xinf_planner.core import catalog

    if mreq.size is not None:
        return [catalog.get_model(f"{mreq.family}:{mreq.size}")]
    return list(reversed(catalog.models_of(mreq.family)))


def options(ctx, archs: list, local) -> list[Option]:
    """Every option of ``archs`` that the request's filters and the rules allow."""
    from xinf_planner.core import catalog

    req = ctx.request
    out = []
    seen_formats: dict[str, str] = {}
    seen_quants: dict[str, str] = {}
    for arch in archs:
        specs = [local_spec(arch, local)] if local is not None else catalog.specs_for(arch)
        for spec in specs:
            seen_formats.setdefault(spec.model_format, spec.model_format)
            seen_quants.setdefault(spec.quantization.lower(), spec.quantization)
            name = f"{arch.ref} {spec.model_format}/{spec.quantization}"
            if not spec.launchable:
                ctx.reject(
                    name,
                    "Xinference lists this spec but cannot launch it: "
                    + ("; ".join(spec.notes) or "not launchable")
                    + ".",
                )
                continue
            if req.formats is not None and spec.model_format not in req.formats:
                continue
            only_runtime = False  # --quantization fp8 on a 16-bit checkpoint: only vLLM's FP8 at load
            if req.quantizations is not None and not any(
                q.lower() == spec.quantization.lower() for q in req.quantizations
            ):
                if not (spec.model_format == "pytorch" and any(q.lower() == "fp8" for q in req.quantizations)):
                    continue
                only_runtime = True
            if req.tool_calling and not arch.tool_calling:
                ctx.reject(
                    name,
                    f"the request needs tool calling and Xinference's {arch.family} "
                    "family does not list the 'tools' ability.",
                )
                continue
            precision = rules.precision_of(spec.model_format, spec.quantization, arch.checkpoint_quant)
            for engine in engines.NAMES:
                if req.engines is not None and engine not in req.engines:
                    continue
                if rules.format_reason(engine, spec.model_format):
                    continue  # not a pairing at all; no need to list it
                reason = rules.family_reason(engine, arch) if local is None else None
                if reason:
                    ctx.reject(f"{name} on {engine}", reason)
                    continue
                variants = _variants(Option(arch, spec, engine, precision), req)
                if any(v.runtime_quantization for v in variants):
                    seen_quants.setdefault("fp8", "fp8 (vLLM's at load)")
                out.extend(v for v in variants if not only_runtime or v.precision == "fp8")
    _note_unmatched(ctx, archs, "--model-format", req.formats, seen_formats, str)
    _note_unmatched(ctx, archs, "--quantization", req.quantizations, seen_quants, str.lower)
    return out


def _variants(opt: Option, req) -> list[Option]:
    """The option, and the variants its engine offers: FP8 weights quantised at load from a
    16-bit checkpoint (vLLM), an FP8 KV cache (vLLM, SGLang). Whether a GPU runs them is the
    rules' (compute capability) and whether they pay off the serving model's."""
    out = [opt]
    f = engines.facts(opt.engine)
    quant_ok = req.quantizations is None or any(q.lower() == "fp8" for q in req.quantizations)
    if f.get("runtime_fp8") and opt.spec.model_format == "pytorch" and opt.precision == "16" and quant_ok:
        out.append(replace(opt, precision="fp8", runtime_quantization="fp8"))
    if f.get("fp8_kv_cache"):
        out.extend([replace(o, kv_cache_dtype="fp8") for o in list(out)])
    return out


def _note_unmatched(ctx, archs: list, flag: str, allowed, seen: dict, norm) -> None:
    """A note for each allowed value that no spec of the model has (a typo, or a spec the
    catalog lacks): the plan never drops part of a filter without saying so."""
    if not allowed or not archs:
        return
    ref = archs[0].family if len(archs) > 1 else archs[0].ref
    for value in allowed:
        if norm(value) not in seen:
            have = ", ".join(sorted(seen.values()))
            note = f"{flag} {value} matches no spec of {ref}, so it allows nothing ({have} exist)."
            if note not in ctx.notes:
                ctx.notes.append(note)


def local_arch(mreq: ModelRequest, local):
    """The architecture of local weights: the files' facts over the family's catalog entry."""
    from xinf_planner.core import catalog
    from xinf_planner.core.sizes import size_in_billions

    base = catalog.get_model(f"{mreq.family}:{mreq.size}") if mreq.size else catalog.models_of(mreq.family)[0]
    facts = {
        k: getattr(local, k)
        for k in (
            "num_layers",
            "hidden_size",
            "num_attention_heads",
            "num_kv_heads",
            "head_dim",
            "vocab_size",
            "params",
        )
        if getattr(local, k, None)
    }
    label = mreq.size or size_in_billions(local.params) or base.size
    size_b = float(label.replace("_", "."))
    return replace(base, size=label, size_b=size_b, **facts)


def local_spec(arch, local):
    from xinf_planner.core.catalog import Spec

    return Spec(
        model=arch,
        model_format=local.model_format,
        quantization=local.quantization,
        model_ids={},
        size_label={"local": arch.size},
        notes=(),
        launchable=True,
    )
