"""``apply --prefetch``: put each deployment's weights into the caches of the workers that will
run it, through Xinference's model cache API, before anything launches.

One ``POST /v1/cache/models`` per (deployment, worker), all at once, each in its own thread:
the server answers only when that download has finished (Xinference 4.1.0
``SupervisorActor.cache_builtin_model``). Meanwhile ``GET /v1/cache/models/{uid}/progress`` is
polled every second and each worker's progress is shown. Weights registered from a local
``file://`` folder are linked into the cache, not downloaded, and the line says so.

Any failure stops the apply before a model is launched (apply then unregisters what it
registered, exit 7): the other downloads are cancelled, and the failed task is deleted from
``/v1/downloads`` so that it does not linger as "resumable".
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

from xinf_planner.core.plan.document import Deployment, Plan
from xinf_planner.errors import ApplyFailed, XinfPlanError

POLL_S = 1.0


@dataclass
class Target:
    name: str
    worker: str | None  # None: the server chooses (xinference-local has one worker)
    body: dict
    local_uri: str | None = None  # file:// weights: nothing to download
    result: dict | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def where(self) -> str:
        return self.worker or "the worker"


def targets(plan, names: list[str]) -> list[Target]:
    """One cache request per deployment in ``names`` and worker it is planned on."""
    plan = Plan.of(plan)
    out = []
    for name in names:
        dep = plan.get(name)
        if dep is None:
            continue
        for worker in _workers(plan, dep):
            out.append(Target(name, worker, _body(dep, worker), _local_uri(dep)))
    return out


def _workers(plan: Plan, dep: Deployment) -> list[str | None]:
    from xinf_planner.core.planning.sharding import parse_worker_ips

    found: list[str | None] = []
    for worker in plan.planned_workers(dep):
        for w in parse_worker_ips(worker) if worker else [None]:
            if w not in found:
                found.append(w)
    for place in dep.placement:  # a sharded replica: every host of it
        for host in place.get("hosts") or []:
            w = (plan.hosts.get(host) or {}).get("worker_address")
            if w and w not in found:
                found.append(w)
    if len(found) > 1 and None in found:
        found.remove(None)
    return found or [None]


def _body(dep: Deployment, worker: str | None) -> dict:
    launch = dep.launch
    body = {
        "cache_uid": f"xinf-plan-{dep.uid}-{uuid.uuid4().hex[:8]}",
        "model_name": launch["model_name"],
        "model_type": launch.get("model_type", "LLM"),
        "model_engine": launch["model_engine"],
        "model_size_in_billions": launch["model_size_in_billions"],
        "model_format": launch["model_format"],
        "quantization": launch["quantization"],
    }
    for key in ("download_hub", "model_path"):
        if launch.get(key) is not None:
            body[key] = launch[key]
    if worker:
        body["worker_ip"] = worker
    return body


def _local_uri(dep: Deployment) -> str | None:
    uri = (dep.registration or {}).get("model_uri")
    return uri if isinstance(uri, str) and uri.startswith("file://") else None


def _line(t: Target, progress: dict | None) -> tuple[str, str]:
    """(state key, text): a line is printed off a terminal only when the key changes."""
    p = progress or {}
    pct = float(p.get("progress") or 0.0)
    stage = str(p.get("stage") or "pending")
    files = p.get("download_files") or []
    detail = f", {len(files)} file(s)" if files else ""
    return f"{stage} {int(pct * 10)}", f"  prefetch {t.name} on {t.where}: {stage} {pct:4.0%}{detail}"


def prefetch(conn, plan, names: list[str], reporter, poll_s: float = POLL_S) -> list[str]:
    """Cache the weights of ``names`` on their workers; the lines it reported. ApplyFailed
    when any download fails (the others are cancelled)."""
    todo = targets(plan, names)
    if not todo:
        return []
    lines = []

    def say(text):
        lines.append(text)
        reporter.line(text)

    say(f"prefetch: {len(todo)} download(s) into the workers' caches before any launch")

    def run(t: Target):
        try:
            t.result = conn.cache_model(t.body)
        except XinfPlanError as exc:
            t.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - reported as the failure, never a traceback
            t.error = f"{type(exc).__name__}: {exc}"
        finally:
            t.done.set()

    start = time.monotonic()
    threads = [threading.Thread(target=run, args=(t,), daemon=True, name=f"prefetch-{t.name}") for t in todo]
    for th in threads:
        th.start()
    try:
        while not all(t.done.is_set() for t in todo) and not any(t.error for t in todo):
            rows = []
            for t in todo:
                if t.done.is_set():
                    continue
                try:
                    progress = conn.cache_progress(t.body["cache_uid"])
                except XinfPlanError:
                    progress = None
                key, text = _line(t, progress)
                rows.append((t.body["cache_uid"], key, text))
            if rows:
                reporter.replicas(rows)
            _wait_any(todo, poll_s)
    except KeyboardInterrupt:
        reporter.end_replicas()
        _cancel(conn, todo)
        raise
    reporter.end_replicas()
    failed = [t for t in todo if t.error]
    if failed:
        _cancel(conn, todo)
        for t in failed:
            _forget(conn, t)
        t = failed[0]
        raise ApplyFailed(f"{t.name} on {t.where}: {_explain(t.error, t.body)}; nothing was launched")
    for t in todo:
        say(f"  prefetch {t.name} on {t.where}: {_done_text(t, conn)}")
    say(f"prefetch: done in {time.monotonic() - start:.1f} s")
    return lines


def _wait_any(todo: list[Target], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(t.done.is_set() for t in todo) or any(t.error for t in todo):
            return
        time.sleep(0.05)


def _done_text(t: Target, conn) -> str:
    info = (t.result or {}).get("version_info") or {}
    where = info.get("model_file_location") or "the cache"
    worker = (t.result or {}).get("worker_address")
    at = f" (worker {worker})" if worker and not t.worker else ""
    if t.local_uri:
        return f"local weights ({t.local_uri}): nothing to download, linked into the cache at {where}{at}"
    return f"in the cache at {where}{at}"


def _explain(error: str, body: dict) -> str:
    """The server's reason, without our own call's name and the actor address Xinference puts
    in front of it, plus what to check when a download failed."""
    import re

    text = error
    prefix = f"cache {body.get('model_name')} on "
    if text.startswith(prefix) and ": " in text:
        text = text.split(": ", 1)[1]
    text = re.sub(r"\[address=[^\]]*\]\s*", "", text)
    low = text.lower()
    if "download" in low or "offline" in low or "hub" in low:
        hub = body.get("download_hub") or "the model hub"
        text += (
            f" (the worker could not download the weights from {hub}: is it reachable from the worker, "
            "or is HF_HUB_OFFLINE set there?)"
        )
    return text


def _cancel(conn, todo: list[Target]) -> None:
    for t in todo:
        if not t.done.is_set():
            try:
                conn.cancel_cache(t.body["cache_uid"])
            except (XinfPlanError, KeyboardInterrupt):
                pass


def _forget(conn, t: Target) -> None:
    try:
        conn.delete_download(t.body["cache_uid"])
    except XinfPlanError:
        pass  # a task that never started has nothing to delete (HTTP 409)
