"""What the extension's REST routes answer, as pure functions: request body bytes (and the live
cluster's inventory) in, ``(HTTP status, JSON body)`` out. ``xinf_planner/extension.py`` only
reads the request and writes the answer.

- ``POST /v1/xinf-plan/plan``: the body is an intent document (``intent.schema.json``); 200 and
  the plan for the live cluster, as ``xinf-plan plan --hardware <that inventory> --intent``
  would write it; 422 when nothing fits (the explanation as ``explanation``).
- ``POST /v1/xinf-plan/validate``: the body is a plan document; 200 with ``valid`` and the
  errors by JSON path (``plan_errors``), plus the planned workers the live cluster lacks.

A body that is not a JSON object, or does not pass the schema and the rules, is 400 with the
reason on one line in ``detail``; an error of the cluster (no worker answered) is 503.
"""

from __future__ import annotations

import json
from typing import Any

from xinf_planner.errors import InvalidInput, NothingFits, XinfPlanError

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_DETAIL = 500

Answer = tuple[int, dict]


class BadBody(InvalidInput):
    """The request body cannot be used (400)."""


def one_line(text: str) -> str:
    return " ".join(str(text).split())[:MAX_DETAIL]


def error(status: int, text: str, **extra) -> Answer:
    return status, {"detail": one_line(text), **extra}


def _reject_constant(name: str):
    raise BadBody(f"the body is not strict JSON: {name} is not a number JSON allows")


def parse_object(body: bytes, what: str) -> dict:
    """The body as a JSON object, or BadBody saying why not."""
    if len(body) > MAX_BODY_BYTES:
        raise BadBody(f"the body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB")
    if not body.strip():
        raise BadBody(f"the body is empty: send {what} as a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadBody("the body is not UTF-8 text") from None
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except BadBody:
        raise
    except RecursionError:
        raise BadBody("the body is nested too deeply") from None
    except ValueError as exc:
        raise BadBody(f"the body is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise BadBody(f"the body is a JSON {type(doc).__name__}, not an object: send {what} as a JSON object")
    return doc


def plan_answer(body: bytes, inventory, source: str) -> Answer:
    """The plan for the intent in ``body`` on ``inventory`` (the live cluster's)."""
    from xinf_planner.core.planning import make_plan
    from xinf_planner.core.request import request_from_intent

    try:
        intent = parse_object(body, "an intent document")
        if _mentions_model_path(intent):
            raise BadBody(
                "model_path: the route plans catalog models only; plan local weights with "
                "`xinf-plan plan --model-path DIR` on the machine that holds them"
            )
        request = request_from_intent(intent, "intent")
        return 200, make_plan(inventory, request, local_models={}, source=source)
    except NothingFits as exc:
        text = str(exc)
        return error(422, text.splitlines()[0] if text else "nothing fits", explanation=text)
    except XinfPlanError as exc:
        return error(400, str(exc))
    except RecursionError:
        return error(400, "the intent is nested too deeply")


def _mentions_model_path(intent: dict) -> bool:
    if "model_path" in intent:
        return True
    models = intent.get("models")
    return isinstance(models, list) and any(isinstance(m, dict) and "model_path" in m for m in models)


def validate_answer(body: bytes, workers: list[str] | None) -> Answer:
    """The plan's validation errors by JSON path; with ``workers`` (the live cluster's
    registered addresses), also each planned worker the cluster does not list."""
    from xinf_planner.core.plan.validate import plan_errors

    try:
        doc = parse_object(body, "a plan document")
    except XinfPlanError as exc:
        return error(400, str(exc))
    try:
        errors = list(plan_errors(doc))
    except RecursionError:
        return error(400, "the plan is nested too deeply")
    if not errors and workers is not None:
        errors = missing_workers(doc, workers)
    return 200, {
        "valid": not errors,
        "errors": [{"path": path, "message": message} for path, message in errors],
    }


def missing_workers(doc: dict, workers: list[str]) -> list[tuple[str, str]]:
    """(JSON path, message) for every worker a valid plan places replicas on that is not
    registered in the cluster (``workers``)."""
    from xinf_planner.core.planning.sharding import parse_worker_ips

    live = set(workers)
    out: list[tuple[str, str]] = []

    def check(path: str, address: Any) -> None:
        for a in parse_worker_ips(address):
            if a not in live and (path, a) not in seen:
                seen.add((path, a))
                out.append((path, f"worker {a} is not registered in this cluster (it has {', '.join(sorted(live))})"))

    seen: set = set()
    hosts = ((doc.get("inventory") or {}).get("document") or {}).get("hosts") or []
    index = {h.get("name"): i for i, h in enumerate(hosts)}
    for i, dep in enumerate(doc.get("deployments") or []):
        launch = dep.get("launch") or {}
        for j, rc in enumerate(launch.get("replica_config") or []):
            check(f"$.deployments[{i}].launch.replica_config[{j}].devices[0].worker_ip", rc["devices"][0]["worker_ip"])
        if "worker_ip" in launch:
            check(f"$.deployments[{i}].launch.worker_ip", launch["worker_ip"])
        for place in dep.get("placement") or []:
            for name in place.get("hosts") or [place.get("host")]:
                k = index.get(name)
                if k is not None and hosts[k].get("worker_address"):
                    check(f"$.inventory.document.hosts[{k}].worker_address", hosts[k]["worker_address"])
    return out
