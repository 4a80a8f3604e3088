"""Deployments that come back after a restart (Xinference autostart) and launch templates in
the web UI (launch history): what xinf-plan writes for a deployment, and how an entry the
server holds compares with it. Pure.

Xinference 4.1.0 re-launches every enabled autostart entry when the supervisor starts and
whenever a worker registers (``core/supervisor.py`` ``_schedule_autostart``). Two of its
behaviours decide the form xinf-plan writes (both verified against a real 4.1.0 server, see
``docs/extension.md``):

1. The store drops every key whose value is ``null`` (``core/autostart.py``
   ``normalize_launch_payload``), and the re-launch then defaults ``n_gpu`` to ``"auto"``,
   which is one GPU on a GPU worker. A CPU deployment (``n_gpu: null``) is therefore written
   with ``device: "cpu"`` instead, which the worker turns back into ``n_gpu = None``
   (``core/worker.py`` ``launch_builtin_model``).
2. The re-launch passes ``replica_config`` as plain dicts where ``ReplicaConfig`` objects are
   expected, so every attempt fails (``'dict' object has no attribute 'devices'``). A plan
   whose replicas all sit on ONE worker is written as ``worker_ip`` plus ``gpu_idx`` (replica
   i gets the i-th equal share of ``gpu_idx``: ``core/utils.py`` ``assign_replica_gpu``),
   which is the same placement. Replicas pinned to SEVERAL workers cannot be written in any
   form 4.1.0 re-launches onto the same workers, so such a deployment is refused, with why.

Every other launch keyword is written as the plan has it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PRIORITY = 100  # Xinference's default; lower starts first, so plan order is kept
MAX_RETRIES = 3
RETRY_INTERVAL_S = 30
REDACTED = "******"
# Xinference 4.1.0 core/autostart.py: keys whose values GET /v1/autostart/models masks
SENSITIVE = ("token", "secret", "password", "passwd", "pwd", "api_key", "apikey", "access_key", "credential")
POLICY_KEYS = ("enabled", "priority", "max_retries", "retry_interval_seconds")


@dataclass
class AutostartForm:
    """What ``apply --persist`` writes for one deployment: ``entry`` (None when the deployment
    cannot be re-launched as planned, ``refused`` says why) and ``changes``, each way the entry's
    launch differs in form from the plan's (the placement is the same)."""

    name: str
    model_uid: str
    entry: dict | None = None
    changes: list[str] = field(default_factory=list)
    refused: str | None = None


def persist_key(plan, dep) -> bool | None:
    """What the plan says about ``dep`` coming back after a restart: the deployment's own
    ``persist`` key, else the plan's request (``persist`` in the intent); None when neither
    says."""
    from xinf_planner.core.plan.document import Deployment, Plan

    dep = Deployment.of(dep)
    if "persist" in dep.doc:
        return bool(dep.doc["persist"])
    request = Plan.of(plan).doc.get("request") or {}
    return bool(request["persist"]) if "persist" in request else None


def targets(plan, flag: bool | None, recorded: dict | None = None) -> list[str]:
    """The deployments whose autostart entry apply keeps: all with ``--persist`` (``flag``
    True), none with ``--no-persist``; otherwise those the plan marks, and those an earlier
    ``apply --persist`` wrote an entry for (``recorded``, the state's ``autostart``) unless the
    plan now says ``persist: false``."""
    from xinf_planner.core.plan.document import Plan

    plan = Plan.of(plan)
    if flag is not None:
        return plan.names if flag else []
    out = []
    for dep in plan:
        key = persist_key(plan, dep)
        if key or (key is None and dep.name in (recorded or {})):
            out.append(dep.name)
    return out


def refusals(plan, names: list[str]) -> list[str]:
    """'NAME: why' for each of ``names`` that autostart cannot bring back as planned."""
    return [f"{f.name}: {f.refused}" for f in forms(plan, names) if f.refused]


def autostart_form(plan, dep, position: int = 0) -> AutostartForm:
    """The autostart entry for ``dep`` (the ``position``-th deployment of the plan)."""
    from xinf_planner.core.plan.document import Deployment

    dep = Deployment.of(dep)
    form = AutostartForm(dep.name, dep.uid)
    launch = dep.launch_args()
    placement = dep.placement
    cpu = all(not p.get("gpus") for p in placement) if placement else launch.get("n_gpu", "auto") is None
    rc = launch.get("replica_config")
    if rc:
        workers = [(c.get("devices") or [{}])[0].get("worker_ip") for c in rc]
        distinct = sorted({w for w in workers if w})
        if len(distinct) != 1 or len(workers) != len(rc) or None in workers:
            form.refused = (
                f"its {len(rc)} replicas are pinned to {len(distinct)} workers ({', '.join(distinct)}) with "
                "replica_config, and Xinference 4.1.0's autostart cannot re-launch replica_config (every attempt "
                "fails with \"'dict' object has no attribute 'devices'\"); worker_ip can pin replicas to one worker "
                "only. Plan with --strategy pack (one worker), or split it into one deployment per worker"
            )
            return form
        gpu_lists = [(c["devices"][0].get("gpu_idx") or []) for c in rc]
        if cpu:
            gpu_idx: list[int] = []
        elif any(not g for g in gpu_lists) or len({len(g) for g in gpu_lists}) != 1:
            form.refused = (
                "its replicas do not each name the same number of GPUs (gpu_idx), which worker_ip + gpu_idx "
                "would need to keep the placement"
            )
            return form
        else:
            gpu_idx = [i for g in gpu_lists for i in g]
        launch.pop("replica_config")
        launch.pop("n_gpu", None)
        launch["worker_ip"] = distinct[0]
        where = f"worker_ip {distinct[0]}"
        if gpu_idx:
            launch["gpu_idx"] = gpu_idx
            where += f" + gpu_idx {gpu_idx} (replica i gets the i-th {len(gpu_lists[0])} of them)"
        form.changes.append(
            f"replica_config ({len(rc)} replica(s) on {distinct[0]}) written as {where}: the same placement "
            "(Xinference 4.1.0's autostart cannot re-launch replica_config)"
        )
    if cpu and launch.get("device") is None:
        if "n_gpu" in launch or rc:
            launch.pop("n_gpu", None)
            launch["device"] = "cpu"
            form.changes.append(
                "the CPU placement (n_gpu null) written as device: cpu: the autostart store drops null values, and "
                "n_gpu would come back as 'auto' (one GPU on a GPU worker)"
            )
    for key in sorted(k for k, v in launch.items() if v is None):
        launch.pop(key)
        form.changes.append(f"{key}: null left out (the autostart store drops null values; Xinference's default)")
    form.entry = {
        "enabled": True,
        "priority": DEFAULT_PRIORITY + position,
        "max_retries": MAX_RETRIES,
        "retry_interval_seconds": RETRY_INTERVAL_S,
        "launch": launch,
    }
    return form


def forms(plan, names: list[str] | None = None) -> list[AutostartForm]:
    """The autostart form of every deployment of ``plan`` (or of ``names``), in plan order."""
    from xinf_planner.core.plan.document import Plan

    plan = Plan.of(plan)
    return [
        autostart_form(plan, dep, i) for i, dep in enumerate(plan.deployments) if names is None or dep.name in names
    ]


# --- how the server shows an entry --------------------------------------------------------------
def _sensitive(key: str) -> bool:
    k = key.lower().replace("-", "_")
    return any(word in k for word in SENSITIVE)


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if _sensitive(str(k)) else _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def server_view(entry: dict) -> dict:
    """``entry`` as ``GET /v1/autostart/models`` shows it after an upsert: nulls and
    ``wait_ready`` dropped, ``model_type`` defaulted, secret-looking values and every
    ``envs`` value masked (Xinference 4.1.0 ``normalize_autostart_model_entry`` and
    ``redact_launch_payload``)."""
    launch = {k: v for k, v in copy.deepcopy(entry.get("launch") or {}).items() if v is not None}
    launch.pop("wait_ready", None)
    launch.setdefault("model_uid", launch.get("model_name"))
    launch.setdefault("model_type", "LLM")
    launch = _redact(launch)
    if isinstance(launch.get("envs"), dict):
        launch["envs"] = {k: REDACTED for k in launch["envs"]}
    out = {k: entry.get(k) for k in POLICY_KEYS}
    out["launch"] = launch
    return out


def entry_differences(expected: dict, actual: dict | None) -> list[str]:
    """How the server's entry (``actual``, from GET /v1/autostart/models) differs from what
    xinf-plan writes (``expected``); [] when it matches. Values are shown as the server
    shows them (masked), never in the clear."""
    if actual is None:
        return ["no autostart entry"]
    want = server_view(expected)
    got_launch = dict(actual.get("launch") or {})
    got_launch.pop("model_python_executable", None)
    out = []
    for key in POLICY_KEYS:
        if actual.get(key) != want[key]:
            out.append(f"{key}: {want[key]!r} written, {actual.get(key)!r} on the server")
    for key in sorted(set(want["launch"]) | set(got_launch)):
        a, b = want["launch"].get(key), got_launch.get(key)
        if _same(a, b):
            continue
        if key not in got_launch:
            out.append(f"launch.{key}: {a!r} written, missing on the server")
        elif key not in want["launch"]:
            out.append(f"launch.{key}: not written, {b!r} on the server")
        else:
            out.append(f"launch.{key}: {a!r} written, {b!r} on the server")
    return out


def _same(a, b) -> bool:
    if a == b:
        return True
    if isinstance(a, (int, float, str)) and isinstance(b, (int, float, str)) and not isinstance(a, bool):
        return str(a) == str(b)  # "1_5" vs "1_5", 7 vs "7": the sizes round-trip as JSON
    return False


# --- launch templates (launch history) ------------------------------------------------------------
def history_record(plan, dep, form: AutostartForm | None = None) -> dict:
    """The ``POST /v1/launch_history`` body for ``dep``. A deployment that is also persisted
    publishes its autostart launch (``form``): Xinference 4.1.0 keeps autostart in the
    launch-history row of the same (model_name, model_uid, user), and a POST overwrites that
    row's launch, so publishing anything else would change what a restart brings back.
    Otherwise the plan's launch as it is (nulls kept: the history stores them)."""
    from xinf_planner.core.plan.document import Deployment

    dep = Deployment.of(dep)
    data = copy.deepcopy(form.entry["launch"]) if form is not None and form.entry else dep.launch_args()
    record: dict[str, Any] = {"model_name": dep.model_name, "model_uid": dep.uid, "data": data}
    cpu = data.get("device") == "cpu" or ("n_gpu" in data and data["n_gpu"] is None)
    if cpu:
        record["ui_data"] = {"n_gpu": "CPU"}  # the UI's form value for a CPU launch
    return record
