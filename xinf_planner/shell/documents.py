"""The tool's documents read from and written to files: inventories, intents, plans. The
parsing and the checks are the core's (``core/documents.py``, ``core/inventory.py``,
``core/plan/validate.py``); this module only brings the text in and out."""

from __future__ import annotations

import os
from typing import Any

from xinf_planner.core.documents import dump_document, parse_document, validate_schema
from xinf_planner.core.inventory import Inventory
from xinf_planner.errors import InvalidInput
from xinf_planner.shell.files import read_text, write_atomic


def load_document(path: str | os.PathLike, what: str = "document") -> Any:
    """Parse a YAML or JSON file ('-' is stdin)."""
    text, name = read_text(path, what)
    return parse_document(text, name, what)


def load_inventory(path: str | os.PathLike) -> Inventory:
    return Inventory.from_dict(load_document(path, "inventory"), str(path))


def save_inventory(inv: Inventory, path: str | os.PathLike, fmt: str | None = None) -> None:
    write_document(path, inv.to_dict(), fmt)


def write_document(path: str | os.PathLike, doc: Any, fmt: str | None = None) -> None:
    """Write ``doc`` atomically as YAML, or as JSON when ``fmt`` says so or the name ends in .json."""
    if fmt is None:
        fmt = "json" if str(path).endswith(".json") else "yaml"
    write_atomic(path, dump_document(doc, fmt))


def load_plan(path, check: str = "all") -> dict:
    """Read a plan file (``-``: stdin) and check it: ``all`` the schema and the semantic rules
    (what ``xinf-plan validate`` checks; apply and rollback launch nothing else), ``schema``
    the schema only (status and destroy: a plan the hardware no longer fits can still be
    inspected and torn down), ``none`` only that it is a mapping (validate lists every error
    itself). InvalidInput (exit 1) names the first error's JSON path."""
    from xinf_planner.core.plan.validate import SCHEMA, check_plan

    name = "<stdin>" if str(path) == "-" else str(path)
    doc = load_document(path, "plan")
    if not isinstance(doc, dict):
        raise InvalidInput(f"{name}: a plan is a mapping at the top level")
    if check == "all":
        check_plan(doc, name)
    elif check == "schema":
        validate_schema(doc, SCHEMA, name)
    elif check != "none":
        raise ValueError(f"load_plan: check is all, schema or none, not {check!r}")
    return doc


def load_intent(path) -> dict:
    """An intent file: a mapping (the schema is checked when the request is built)."""
    doc = load_document(path, "intent")
    if doc is None:
        raise InvalidInput(f"{path}: the intent file is empty")
    if not isinstance(doc, dict):
        raise InvalidInput(f"{path}: $: an intent is a mapping at the top level")
    return doc
