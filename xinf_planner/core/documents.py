"""The tool's documents as text: parsing (YAML with ``safe_load`` only; JSON is a subset),
dumping, and validation against the JSON Schemas in ``schemas/``. Every error is one line that
names the document and, for schema errors, the JSON path of the offending value. Reading and
writing files is the shell's (``shell/documents.py``)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from xinf_planner.errors import InvalidInput


def parse_document(text: str, name: str = "<string>", what: str = "document") -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidInput(f"{name}: not valid YAML/JSON{where}: {problem}") from None


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    """A JSON Schema shipped in ``xinf_planner/schemas/``."""
    text = resources.files("xinf_planner.core").joinpath("schemas", name).read_text(encoding="utf-8")
    return json.loads(text)


def json_path(parts) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def schema_errors(doc: Any, schema_name: str) -> list[tuple[str, str]]:
    """All schema violations as (json_path, message), in a stable order."""
    import jsonschema

    schema = load_schema(schema_name)
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema)
    errors = []
    for err in validator.iter_errors(doc):
        errors.append((json_path(err.absolute_path), _short_message(err)))
    errors.sort()
    return errors


def _short_message(err) -> str:
    if err.validator == "required":
        return err.message.replace("is a required property", "is required")
    if err.validator == "additionalProperties":
        return err.message
    if err.validator in ("enum", "const"):
        allowed = err.validator_value if err.validator == "enum" else [err.validator_value]
        return f"{err.instance!r} is not one of {', '.join(map(repr, allowed))}"
    msg = err.message
    return msg if len(msg) <= 200 else msg[:197] + "..."


def validate_schema(doc: Any, schema_name: str, name: str = "document") -> None:
    """Raise InvalidInput naming the first violation's JSON path (and how many more)."""
    errors = schema_errors(doc, schema_name)
    if errors:
        path, msg = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InvalidInput(f"{name}: {path}: {msg}{more}")


class _Dumper(yaml.SafeDumper):
    """Block style for mappings; short lists of scalars inline (a topology row reads as a row)."""


def _represent_list(dumper: yaml.SafeDumper, data: list):
    flow = (
        bool(data)
        and len(data) <= 16
        and all((isinstance(x, str) and len(x) <= 12) or isinstance(x, (int, float, bool)) or x is None for x in data)
    )
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def dump_document(doc: Any, fmt: str = "yaml") -> str:
    if fmt == "json":
        return json.dumps(doc, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100, default_flow_style=False)
