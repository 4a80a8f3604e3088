#!/usr/bin/env python3
"""Regenerate xinf_planner/catalog/data/xinference_specs.yaml from the installed Xinference.

Reads the builtin family files of the installed ``xinference`` package (4.x keeps one JSON file
per family in ``xinference/model/llm/models/``), keeps the DeepSeek-R1 families, flattens each
spec into one row per (model, format, quantization) with its per-hub model ids and size labels,
and detects the catalog's known quirks as data:

* a spec whose size label disagrees with the size in its model id (the distill-llama 8B GGUF is
  labelled ``1_5`` on the Hugging Face hub) is filed under the real model, keeping the label that
  must be passed to ``launch_model`` per hub;
* a GGUF single-file template that names another model's file (the distill-llama 70B template
  names a Qwen-7B file) makes the non-split quantizations unlaunchable, with the reason;
* a spec absent from the Hugging Face hub (the distill-qwen 32B GPTQ is on ModelScope only)
  records ``download_hub`` so a launch finds it.

Usage: python tools/extract_catalog.py [--check]   (--check: exit 1 if the committed file differs)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

FAMILIES = (
    "deepseek-r1-distill-qwen",
    "deepseek-r1-distill-llama",
    "deepseek-r1",
    "deepseek-r1-0528",
    "deepseek-r1-0528-qwen3",
)
DEFAULT_HUB = "huggingface"
OUT = Path(__file__).resolve().parent.parent / "xinf_planner" / "core" / "catalog" / "data" / "xinference_specs.yaml"
_SIZE_IN_ID = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)[Bb](?![A-Za-z])")


def norm_size(value) -> str:
    return str(value).replace(".", "_")


def size_from_model_id(model_id: str) -> str | None:
    m = _SIZE_IN_ID.search(model_id.split("/")[-1])
    return norm_size(m.group(1)) if m else None


def engines_from_virtualenv(venv: dict | None) -> list[str]:
    engines = set()
    for pkg in (venv or {}).get("packages", []):
        m = re.search(r'#engine#\s*==\s*"([^"]+)"', pkg)
        if m:
            engines.add(m.group(1))
    return sorted(engines, key=str.lower)


def _gguf_file(hub_info: dict, quant: str) -> tuple[str | None, str | None]:
    """(first file of this quantization, reason it cannot be launched or None)."""
    parts = (hub_info.get("quantization_parts") or {}).get(quant)
    if parts:
        tmpl = hub_info["model_file_name_split_template"]
        return tmpl.format(quantization=quant, part=parts[0]), None
    tmpl = hub_info.get("model_file_name_template")
    if not tmpl:
        return None, None
    file = tmpl.format(quantization=quant)
    repo = hub_info["model_id"].split("/")[-1]
    repo_stem = re.sub(r"-GGUF$", "", repo, flags=re.I).lower()
    file_stem = file.split("/")[-1].lower()
    if not file_stem.startswith(repo_stem.lower()):
        return file, (
            f"Xinference's file template names '{file}', which is not in {hub_info['model_id']}; "
            f"only the split quantizations of this spec are launchable"
        )
    return file, None


def extract(models_dir: Path) -> dict:
    families = []
    for name in FAMILIES:
        doc = json.loads((models_dir / f"{name}.json").read_text(encoding="utf-8"))
        fam = doc[0] if isinstance(doc, list) else doc
        rows: dict[tuple, dict] = {}
        for spec in fam["model_specs"]:
            label = norm_size(spec["model_size_in_billions"])
            for hub, info in spec["model_src"].items():
                model_size = size_from_model_id(info["model_id"]) or label
                for quant in info["quantizations"]:
                    key = (model_size, spec["model_format"], quant)
                    row = rows.setdefault(
                        key,
                        {
                            "size": model_size,
                            "model_format": spec["model_format"],
                            "quantization": quant,
                            "hubs": {},
                        },
                    )
                    if spec.get("activated_size_in_billions"):
                        row["activated_size_in_billions"] = spec["activated_size_in_billions"]
                    entry = {
                        "model_id": info["model_id"].format(quantization=quant)
                        if "{quantization}" in info["model_id"]
                        else info["model_id"],
                        "size_label": label,
                    }
                    if info.get("model_revision"):
                        entry["model_revision"] = info["model_revision"]
                    if spec["model_format"] == "ggufv2":
                        file, problem = _gguf_file(info, quant)
                        entry["file"] = file
                        if problem:
                            entry["unlaunchable"] = problem
                    row["hubs"][hub] = entry
        specs = []
        for key in sorted(rows, key=lambda k: (float(k[0].replace("_", ".")), k[1], k[2])):
            row = rows[key]
            notes = []
            hubs = row["hubs"]
            for hub in sorted(hubs):
                if hubs[hub]["size_label"] != row["size"]:
                    notes.append(
                        f"on {hub} Xinference labels this spec size '{hubs[hub]['size_label']}' "
                        f"(catalog quirk); pass that label as model_size_in_billions"
                    )
            if DEFAULT_HUB not in hubs:
                row["download_hub"] = sorted(hubs)[0]
                notes.append(f"only on {row['download_hub']}: launch with download_hub='{row['download_hub']}'")
            problems = sorted({h["unlaunchable"] for h in hubs.values() if "unlaunchable" in h})
            row["launchable"] = not problems
            notes.extend(problems)
            for h in hubs.values():
                h.pop("unlaunchable", None)
            row["notes"] = notes
            row["hubs"] = {h: hubs[h] for h in sorted(hubs)}
            specs.append(row)
        families.append(
            {
                "family": fam["model_name"],
                "context_length": fam["context_length"],
                "abilities": list(fam["model_ability"]),
                "tool_parser": fam.get("tool_parser"),
                "architectures": list(fam.get("architectures") or []),
                "virtualenv_engines": engines_from_virtualenv(fam.get("virtualenv")),
                "specs": specs,
            }
        )
    return {"families": families}


def render(models_dir: Path, version: str) -> str:
    header = (
        "# GENERATED by tools/extract_catalog.py from the installed Xinference; do not edit by hand.\n"
        f"# xinference version: {version}\n"
        "# One row per (model, format, quantization); `size` is the real model size, and each hub's\n"
        "# `size_label` is what launch_model must receive there. `virtualenv_engines` are the engines\n"
        "# the family's virtualenv markers name (with virtual envs on, these gate the engines).\n"
    )
    return header + yaml.safe_dump(extract(models_dir), sort_keys=False, width=120, allow_unicode=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed file is out of date")
    ap.add_argument("--output", type=Path, default=OUT)
    args = ap.parse_args(argv)
    import xinference

    models_dir = Path(xinference.__file__).parent / "model" / "llm" / "models"
    text = render(models_dir, xinference.__version__)
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date; run tools/extract_catalog.py", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
