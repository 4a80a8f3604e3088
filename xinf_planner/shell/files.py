"""Files: reading a document's text and writing files atomically.

Writes go to a temporary file in the same folder, are fsynced and renamed over the target,
so a crash never leaves half a file. Every failure a user can cause is one line
(``InvalidInput``) naming the file.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from xinf_planner.errors import InvalidInput


def read_text(path: str | os.PathLike, what: str = "document") -> tuple[str, str]:
    """(text, name) of a file ('-' is stdin), as UTF-8."""
    if str(path) == "-":
        return sys.stdin.read(), "<stdin>"
    p = Path(path)
    name = str(p)
    try:
        return p.read_text(encoding="utf-8"), name
    except FileNotFoundError:
        raise InvalidInput(f"{what} file not found: {name}") from None
    except IsADirectoryError:
        raise InvalidInput(f"{what} path is a directory, not a file: {name}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {what} file {name}: {exc}") from None


def write_atomic(path: str | os.PathLike, text: str, mode: int | None = None) -> None:
    """Write ``text`` to ``path`` via a temp file in the same folder, an fsync and a rename.

    ``mode`` None keeps an existing file's permissions, else the umask's default (a plan is for
    review by others; the state file passes 0o600). A path that cannot be written is one line
    (InvalidInput), never a traceback.
    """
    p = Path(path)
    if mode is None:
        try:
            mode = p.stat().st_mode & 0o777
        except OSError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as exc:
        raise InvalidInput(f"cannot write {p}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise InvalidInput(f"cannot write {p}: {exc.strerror or exc}") from None
        raise
    _fsync_dir(p.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); best effort where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
