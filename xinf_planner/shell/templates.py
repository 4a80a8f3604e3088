"""Where the templates live, and reading them: engine launch defaults and output templates.

One lookup (``templates_dir``): the user's folder, else the repository's ``templates/`` next to
the package (a source checkout), else the copy packaged inside ``xinf_planner`` (a wheel).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from string import Template

from xinf_planner.errors import InvalidInput

_REPO_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def templates_dir(user_dir: str | os.PathLike | None = None) -> Path:
    """The templates folder to use: ``user_dir``, else the repo's, else the packaged copy."""
    if user_dir is not None:
        p = Path(user_dir)
        if not p.is_dir():
            raise InvalidInput(f"templates folder not found: {p}")
        return p
    if (_REPO_TEMPLATES / "engines").is_dir():
        return _REPO_TEMPLATES
    from importlib import resources

    packaged = Path(str(resources.files("xinf_planner").joinpath("_templates")))
    if (packaged / "engines").is_dir():
        return packaged
    raise InvalidInput("no templates folder found: reinstall xinf-plan or pass --templates DIR")


def read_template(name: str, user_dir: str | os.PathLike | None = None) -> str:
    """The text of ``name`` (a path inside the templates folder)."""
    return _read(str(templates_dir(user_dir)), name)


@lru_cache(maxsize=64)
def _read(folder: str, name: str) -> str:
    path = Path(folder) / name
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"template not found: {path}") from None


def engine_defaults(engine: str, user_dir: str | os.PathLike | None = None) -> dict:
    """The engine's launch defaults (``templates/engines/<engine>.yaml``); a fresh copy."""
    import copy

    return copy.deepcopy(_engine_defaults(str(templates_dir(user_dir)), engine))


@lru_cache(maxsize=32)
def _engine_defaults(folder: str, engine: str) -> dict:
    from xinf_planner.core.documents import parse_document

    name = f"engines/{engine}.yaml"
    doc = parse_document(_read(folder, name), name, "engine template")
    if not isinstance(doc, dict) or "model_engine" not in doc:
        raise InvalidInput(f"{name}: an engine template needs a 'model_engine' key")
    return doc


def fill(name: str, values: dict, user_dir: str | os.PathLike | None = None) -> str:
    """``string.Template`` substitution of an output template; a missing key is an error."""
    try:
        return Template(read_template(name, user_dir)).substitute(values)
    except KeyError as exc:
        raise InvalidInput(f"template {name} uses an unknown field {exc}") from None
    except ValueError as exc:
        raise InvalidInput(f"template {name} is malformed: {exc}") from None
