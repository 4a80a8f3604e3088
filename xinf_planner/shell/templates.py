"""Where the output templates live, and reading them (presentation only: no planning policy).

One lookup (``templates_dir``): the user's folder, else the repository's ``templates/`` next to
the package (a source checkout), else the copy packaged inside ``xinf_planner`` (a wheel).
``read_templates`` returns the texts ``core.render`` fills.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from xinf_planner.errors import InvalidInput

_REPO_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def templates_dir(user_dir: str | os.PathLike | None = None) -> Path:
    """The templates folder to use: ``user_dir``, else the repo's, else the packaged copy."""
    if user_dir is not None:
        p = Path(user_dir)
        if not p.is_dir():
            raise InvalidInput(f"templates folder not found: {p}")
        return p
    if (_REPO_TEMPLATES / "render").is_dir():
        return _REPO_TEMPLATES
    packaged = Path(str(resources.files("xinf_planner").joinpath("_templates")))
    if (packaged / "render").is_dir():
        return packaged
    raise InvalidInput("no templates folder found: reinstall xinf-plan or pass --templates DIR")


def read_templates(names, user_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """The text of each template ``names`` lists (paths inside the templates folder)."""
    folder = templates_dir(user_dir)
    out = {}
    for name in names:
        path = folder / name
        try:
            out[name] = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InvalidInput(f"template not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read template {path}: {exc}") from None
    return out
