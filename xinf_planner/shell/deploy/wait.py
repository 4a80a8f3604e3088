"""Waiting on the server: a launch until every replica is READY (or one fails), and a
terminate that also works on a model still being created.

Progress goes to a ``Progress`` (the CLI's reporter): ``line(text)`` for events, and
``replica_progress(uid, replica_statuses, elapsed_s, progress_by_replica)`` while waiting.
"""

from __future__ import annotations

import time
from typing import Protocol

from xinf_planner.errors import (
    ApplyFailed,
    AuthFailed,
    ServerTooOld,
    ServerUnreachable,
    XinfPlanError,
)

LAUNCH_TIMEOUT_S = 900.0
POLL_INTERVAL_S = 1.0
READY, ERROR, CREATING = "READY", "ERROR", "CREATING"
# Launch failures that a second identical launch clears, with why (Xinference 4.1.0):
# replicas of a just-registered local model race to create its cache link
# (model/llm/cache_manager.py, cache_uri: islink check, then os.symlink), and the loser
# fails with "[Errno 17] File exists"; the link then exists and a relaunch succeeds.
TRANSIENT_LAUNCH_ERRORS = [("[Errno 17] File exists", "replicas raced to create the model's cache link")]


class Progress(Protocol):
    def line(self, text: str) -> None: ...

    def replica_progress(
        self, uid: str, replicas: list[dict], elapsed_s: float, progress: dict[str, float | None]
    ) -> None: ...

    def end_replicas(self) -> None: ...


class LaunchFailed(XinfPlanError):
    """A launch that failed or timed out, with the server's message."""


def transient_cause(message: str) -> str | None:
    for pattern, cause in TRANSIENT_LAUNCH_ERRORS:
        if pattern in message:
            return cause
    return None


def wait_ready(conn, model_name: str, uid: str, progress: Progress, timeout: float) -> None:
    """Poll ``get_instance_info``/``get_launch_model_progress`` until every replica of ``uid``
    is READY; LaunchFailed with the replicas' errors when one fails, or on timeout."""
    start = time.monotonic()
    seen = False
    try:
        while True:
            inst = conn.instance(model_name, uid)
            elapsed = time.monotonic() - start
            if inst is None:
                if seen or elapsed > 30:
                    raise LaunchFailed(f"{uid} disappeared from the server while launching")
                time.sleep(POLL_INTERVAL_S)
                continue
            seen = True
            reps = inst.get("replica_statuses") or []
            errors = [
                f"{r.get('replica_model_uid')}: {r.get('error_message') or 'failed'}"
                for r in reps
                if r.get("status") == ERROR
            ]
            if inst.get("status") == ERROR and not errors:
                errors = [inst.get("error_message") or f"{uid} failed"]
            launch = conn.progress(uid) if not errors else None
            per_rep = {p.get("replica_model_uid"): p.get("progress") for p in (launch or {}).get("replicas") or []}
            progress.replica_progress(uid, reps, elapsed, per_rep)
            if errors:
                raise LaunchFailed("; ".join(errors))
            if reps and all(r.get("status") == READY for r in reps):
                return
            if elapsed > timeout:
                raise LaunchFailed(f"{uid} not ready after {timeout:.0f} s")
            time.sleep(POLL_INTERVAL_S)
    finally:
        progress.end_replicas()


def terminate(conn, model_name: str, uid: str, timeout: float = 120.0) -> bool:
    """Terminate a model, also one still launching: the server refuses to terminate a
    replica it is still creating ("Model not found in the model list"), so wait for the
    launch to settle, retrying. A model already gone is fine: returns False then."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        if uid not in conn.running():
            inst = conn.instance(model_name, uid)
            if inst is None or inst.get("status") == ERROR:
                return last is not None
        try:
            conn.terminate(uid)
        except (ServerTooOld, AuthFailed, ServerUnreachable):
            raise
        except XinfPlanError as exc:
            last = exc
        else:
            if uid not in conn.running():
                return True
        if time.monotonic() > deadline:
            raise ApplyFailed(f"could not terminate {uid}: {last}")
        time.sleep(2.0)
