"""Read the catalog's package data (YAML shipped in ``xinf_planner/catalog/data/``), once."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import yaml


@lru_cache(maxsize=None)
def load(name: str):
    text = resources.files("xinf_planner.core.catalog").joinpath("data", name).read_text(encoding="utf-8")
    return yaml.safe_load(text)
