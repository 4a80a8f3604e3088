"""The spec as a running server sees it, through ``Client.get_model_registration``.

The caller imports and builds the client; this module never imports it. ``match_live_spec`` is
the pure part: it picks, from a family registration as the server returns it (flattened specs,
one quantization each, or the ``model_src`` form of the catalog files), the entry that a launch
of ``spec`` would resolve to.
"""

from __future__ import annotations

from typing import Any

from xinf_planner.core.catalog.models import normalize_size
from xinf_planner.core.catalog.specs import DEFAULT_HUB, Spec
from xinf_planner.errors import InvalidInput


def _flat_entries(registration: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for spec in registration.get("model_specs") or []:
        if "model_src" in spec:
            for hub, info in spec["model_src"].items():
                for quant in info.get("quantizations") or []:
                    entry = {k: v for k, v in spec.items() if k != "model_src"}
                    entry.update({k: v for k, v in info.items() if k != "quantizations"})
                    entry.update(model_hub=hub, quantization=quant)
                    out.append(entry)
        else:
            out.append(spec)
    return out


def match_live_spec(registration: dict[str, Any], spec: Spec, hub: str | None = None) -> dict[str, Any] | None:
    """The registration entry for ``spec`` on ``hub`` (default: the hub the spec resolves on).

    Matching follows Xinference's ``match_llm``: same format, same size label (1.5 == 1_5),
    quantization case-insensitively, and the hub; the non-default hubs fall back to Hugging Face.
    Returns ``{model_id, model_hub, model_size_in_billions, quantization, model_format,
    model_file_name_template?}`` with ``{quantization}`` filled in, or None when nothing matches.
    """
    hub = hub or spec.download_hub or DEFAULT_HUB
    order = [hub] if hub == DEFAULT_HUB else [hub, DEFAULT_HUB]
    want_size = normalize_size(spec.launch_size(hub if hub in spec.size_label else DEFAULT_HUB))
    entries = _flat_entries(registration)
    for h in order:
        for e in entries:
            if e.get("model_hub", DEFAULT_HUB) != h or e.get("model_format") != spec.model_format:
                continue
            if normalize_size(e.get("model_size_in_billions")) != want_size:
                continue
            if str(e.get("quantization", "")).lower() != spec.quantization.lower():
                continue
            quant = e["quantization"]
            found = {
                "model_id": _fill(e.get("model_id"), quant),
                "model_hub": h,
                "model_size_in_billions": e.get("model_size_in_billions"),
                "quantization": quant,
                "model_format": e["model_format"],
            }
            if e.get("model_file_name_template"):
                found["model_file_name_template"] = _fill(e["model_file_name_template"], quant)
            return found
    return None


def _fill(value, quant):
    if isinstance(value, str) and "{quantization}" in value:
        return value.replace("{quantization}", quant)
    return value


def live_spec(client, spec: Spec, hub: str | None = None) -> dict[str, Any]:
    """Ask the server (``client`` is an ``xinference_client`` RESTful client) how it sees ``spec``."""
    registration = client.get_model_registration("LLM", spec.model.family)
    found = match_live_spec(registration, spec, hub)
    if found is None:
        raise InvalidInput(
            f"the server has no {spec.model_format} {spec.quantization} spec of "
            f"{spec.model.ref} on hub {hub or spec.download_hub or DEFAULT_HUB}"
        )
    return found
