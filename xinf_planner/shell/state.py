"""The apply state file: what a plan launched and registered on which server, and when.

Default location: ``.xinf-plan/state.json`` beside the plan. Written atomically
(``docio.write_atomic``), after every change an apply makes, so a crash or a lost
server never leaves the tool unaware of what it started. No secret is ever stored:
the endpoint is saved with any ``user:password@`` part masked.

A lock (``fcntl.flock`` on ``state.json.lock``, holding the owner's pid) keeps two
applies against one state from running at once (``StateLocked``, exit 8). The kernel
drops the lock when its holder dies, so a stale lock file never blocks; the pid in it
only names the holder in the message.

Format (version 1)::

    version: 1
    endpoint: http://127.0.0.1:9997
    plan_hash: sha256 of the applied plan (canonical JSON)
    plan_path: the plan file applied
    applied_at / updated_at: ISO-8601 UTC
    deployments: {NAME: {model_uid, model_name, launched_at}}   # launched by xinf-plan
    registered: [MODEL_NAME, ...]                                # registered by xinf-plan
    autostart: {NAME: MODEL_UID}                                 # autostart entries xinf-plan wrote
    history: [{plan_hash, plan, applied_at}, ...]                # oldest first
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from xinf_planner.core.documents import validate_schema
from xinf_planner.errors import InvalidInput, StateLocked
from xinf_planner.shell.files import write_atomic

STATE_VERSION = 1
STATE_DIR = ".xinf-plan"
STATE_FILE = "state.json"
HISTORY_LIMIT = 20


def state_path(plan_path=None, state_file=None) -> Path:
    """The state file: ``state_file`` when given, else ``.xinf-plan/state.json`` in the plan's
    folder, else (no plan) in the current folder. The one rule every command follows."""
    if state_file:
        return Path(state_file)
    if plan_path and str(plan_path) != "-":
        return Path(plan_path).resolve().parent / STATE_DIR / STATE_FILE
    return Path(STATE_DIR) / STATE_FILE


def plan_hash(plan: dict) -> str:
    """sha256 of the plan as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(plan, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class State:
    version: int = STATE_VERSION
    endpoint: str | None = None
    plan_hash: str | None = None
    plan_path: str | None = None
    applied_at: str | None = None
    updated_at: str | None = None
    deployments: dict = field(default_factory=dict)
    registered: list = field(default_factory=list)
    history: list = field(default_factory=list)
    autostart: dict = field(default_factory=dict)  # deployment name -> model uid of its autostart entry

    def to_dict(self) -> dict:
        out = asdict(self)
        if not out["autostart"]:  # written only once apply --persist has written an entry
            del out["autostart"]
        return out

    @classmethod
    def from_dict(cls, doc: dict, name: str = "state") -> "State":
        if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
            raise InvalidInput(f"{name}: not an xinf-plan state file (version {STATE_VERSION})")
        validate_schema(doc, "state.schema.json", name)
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in doc.items() if k in known})

    # --- ownership -----------------------------------------------------------------------
    def owned_uids(self) -> list[str]:
        return [d["model_uid"] for d in self.deployments.values()]

    def record_launch(self, name: str, model_uid: str, model_name: str) -> None:
        self.deployments[name] = {"model_uid": model_uid, "model_name": model_name, "launched_at": now_iso()}

    def forget_launch(self, name: str) -> None:
        self.deployments.pop(name, None)

    def record_registration(self, model_name: str) -> None:
        if model_name not in self.registered:
            self.registered.append(model_name)

    def forget_registration(self, model_name: str) -> None:
        if model_name in self.registered:
            self.registered.remove(model_name)

    def record_applied(self, plan: dict, plan_path: str | None, endpoint: str) -> None:
        """Mark ``plan`` as the applied plan and append it to the history."""
        stamp = now_iso()
        self.plan_hash = plan_hash(plan)
        self.plan_path = plan_path
        self.endpoint = endpoint
        self.applied_at = stamp
        if not self.history or self.history[-1].get("plan_hash") != self.plan_hash:
            self.history.append(
                {"plan_hash": self.plan_hash, "plan": plan, "applied_at": stamp, "plan_path": plan_path}
            )
            del self.history[:-HISTORY_LIMIT]


def load_state(path) -> State:
    """The state at ``path``; an empty State when the file does not exist."""
    p = Path(path)
    if not p.exists():
        return State()
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read state file {p}: {exc}") from None
    return State.from_dict(doc, str(p))


def save_state(path, state: State) -> None:
    state.updated_at = now_iso()
    text = json.dumps(state.to_dict(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    write_atomic(path, text, mode=0o600)


def save_state_noting(path, state: State, left: list[str]) -> None:
    """Save during a rollback: a state file that cannot be written is noted in ``left`` (what
    could not be undone is reported together), never raised over the rollback's own report."""
    try:
        save_state(path, state)
    except (OSError, InvalidInput) as exc:
        left.append(f"state file not updated ({exc})")


class StateLock:
    """``with StateLock(state_path): ...``; raises StateLocked when another process holds it."""

    def __init__(self, state_path):
        self.path = Path(str(state_path) + ".lock")
        self._fd: int | None = None

    def __enter__(self) -> "StateLock":
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise InvalidInput(
                f"cannot create the state lock {self.path}: {exc.strerror or exc} "
                "(choose another place with --state FILE)"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                who = f" (pid {holder})" if holder else ""
                raise StateLocked(
                    f"another xinf-plan apply{who} holds the state lock {self.path}; wait for it to finish"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
