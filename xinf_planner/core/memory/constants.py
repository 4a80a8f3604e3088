"""The memory model's engine constants (``constants.yaml`` beside this module), read once."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import yaml


@lru_cache(maxsize=1)
def _table() -> dict:
    text = resources.files("xinf_planner.core.memory").joinpath("constants.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def constants(engine: str) -> dict:
    """The memory constants of ``engine`` (do not modify)."""
    return _table()[engine]
