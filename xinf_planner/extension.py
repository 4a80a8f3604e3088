"""xinf-plan as an Xinference 4.1 extension: ``XINFERENCE_EXTENSIONS=xinf_planner.extension:create``.

Xinference loads ``create()`` in every API and actor process (``xinference/extensions.py``) and
refuses a worker whose extensions differ from the supervisor's. This module is the thin glue;
the work is in the shell and core:

- ``worker_metadata()`` (worker processes, at registration and on every ask): this machine's
  inventory host from ``shell/probe/workers.py``, the probes of ``xinf-plan inspect``. It
  never raises; a failed probe reports no GPUs, with a note.
- ``filter_worker_resources()`` (supervisor): every GPU the worker has; xinf-plan narrows
  nothing (Xinference calls it at every placement and answers 503 without it).
- ``configure_api(ctx)`` (the API process) adds, under the server's own authentication
  (``Security(ctx.auth_service, scopes=["admin"])`` when auth is on: no token is 401, a
  non-admin 403, an API key 403 since Xinference lets keys only list and infer):
  ``GET /v1/xinf-plan/inventory``, ``POST /v1/xinf-plan/plan``, ``POST /v1/xinf-plan/validate``.
  Bodies are judged by ``core/routes.py``.

Per-worker metadata is not exposed by any Xinference route: the API process asks each worker
actor for ``get_extension_resources()`` (what the supervisor read at registration), which
calls ``worker_metadata()`` again, live. Every hook is synchronous, as Xinference requires.

Test-only: with ``XINF_PLAN_TEST_NVML_REPLAY=/path/fixture.json`` set in a worker's environment
(and the repository's ``tests`` folder importable), the worker's probe reads the recorded NVML
answers of ``tests/support/fake_nvml.py`` instead of the real library. Nothing sets it outside
the tests.
"""

# No ``from __future__ import annotations`` here: Xinference checks that every route's return
# annotation is a Response class at startup, so the annotations must be real objects.
import os

from xinf_planner.core.workers import EXTENSION_NAME

TEST_NVML_ENV = "XINF_PLAN_TEST_NVML_REPLAY"
WORKER_UID = "worker"  # xinference.core.worker.WorkerActor.default_uid()
WORKERS_TIMEOUT_S = 30.0
WORKER_TIMEOUT_S = 20.0
ROUTES = ("/v1/xinf-plan/inventory", "/v1/xinf-plan/plan", "/v1/xinf-plan/validate")


class Extension:
    name = EXTENSION_NAME
    api_version = 1

    # --- worker process ------------------------------------------------------------------
    def worker_metadata(self) -> dict:
        from xinf_planner.shell.probe.workers import worker_metadata

        try:
            nvml = _test_nvml()
        except Exception as exc:  # noqa: BLE001 - never stop the worker
            reason = f"{type(exc).__name__}: {exc}"

            def failed():
                raise RuntimeError(f"the test NVML replay ({TEST_NVML_ENV}) could not be loaded: {reason}")

            return worker_metadata(probe=failed)
        return worker_metadata(nvml=nvml)

    # --- supervisor process --------------------------------------------------------------
    def filter_worker_resources(self, worker: dict, workers: list) -> list:
        return list(worker.get("gpu_devices") or [])

    # --- API process ---------------------------------------------------------------------
    def configure_api(self, ctx) -> None:
        from fastapi import Request, Security
        from starlette.responses import JSONResponse

        deps = [Security(ctx.auth_service, scopes=["admin"])] if ctx.auth_enabled else None

        async def inventory_route() -> JSONResponse:
            return _json(JSONResponse, *await _guard(_inventory_answer(ctx)))

        async def plan_route(request: Request) -> JSONResponse:
            return _json(JSONResponse, *await _guard(_plan_answer(ctx, await request.body())))

        async def validate_route(request: Request) -> JSONResponse:
            return _json(JSONResponse, *await _guard(_validate_answer(ctx, await request.body())))

        ctx.router.add_api_route(ROUTES[0], inventory_route, methods=["GET"], dependencies=deps)
        ctx.router.add_api_route(ROUTES[1], plan_route, methods=["POST"], dependencies=deps)
        ctx.router.add_api_route(ROUTES[2], validate_route, methods=["POST"], dependencies=deps)


def create() -> Extension:
    """The factory Xinference calls (no arguments, synchronous)."""
    return Extension()


def _test_nvml():
    """The tests' NVML replay when TEST_NVML_ENV names a fixture; None otherwise."""
    path = os.environ.get(TEST_NVML_ENV)
    if not path:
        return None
    import importlib
    import json
    from pathlib import Path

    replay = importlib.import_module("support.fake_nvml")
    return replay.ReplayNVML(json.loads(Path(path).read_text(encoding="utf-8")))


def _json(response_class, status: int, body: dict):
    return response_class(body, status_code=status)


async def _guard(coro) -> tuple[int, dict]:
    """The route's answer; an error of ours is one line and a 500 in the server's log with its
    traceback (the fuzz tests hold the routes to never getting here)."""
    import logging

    try:
        return await coro
    except Exception as exc:  # noqa: BLE001
        logging.getLogger(__name__).exception("xinf-plan extension route failed")
        from xinf_planner.core.routes import error

        return error(500, f"internal error in the xinf-plan extension: {type(exc).__name__}: {exc}")


async def cluster_workers(ctx) -> list[dict]:
    """Every registered worker: its address, the replicas it serves and its extension
    resources (or the error that stopped us reading them)."""
    import asyncio

    import xoscar as xo

    supervisor = await ctx.get_supervisor_ref()
    infos = await asyncio.wait_for(supervisor.get_workers_info(), WORKERS_TIMEOUT_S)

    async def one(info: dict) -> dict:
        address = str(info.get("work-ip"))
        entry = {"address": address, "models": sorted(info.get("models") or {}), "resources": None, "error": None}
        try:
            ref = await xo.actor_ref(address=address, uid=WORKER_UID)
            entry["resources"] = await asyncio.wait_for(ref.get_extension_resources(), WORKER_TIMEOUT_S)
        except asyncio.TimeoutError:
            entry["error"] = f"no answer within {WORKER_TIMEOUT_S:.0f} s"
        except Exception as exc:  # noqa: BLE001 - one worker must not hide the others
            entry["error"] = f"{type(exc).__name__}: {exc}"
        return entry

    return list(await asyncio.gather(*(one(i) for i in infos or [])))


async def _live_inventory(ctx):
    """(inventory, worker addresses) of the live cluster, or (None, the 503 answer)."""
    from xinf_planner.core.routes import error
    from xinf_planner.core.workers import inventory_from_workers
    from xinf_planner.errors import XinfPlanError

    try:
        workers = await cluster_workers(ctx)
    except Exception as exc:  # noqa: BLE001
        return None, error(503, f"cannot list the cluster's workers: {type(exc).__name__}: {exc}")
    if not workers:
        return None, error(503, "the cluster lists no workers: start xinference-worker on each GPU host first")
    try:
        local = bool(await (await ctx.get_supervisor_ref()).is_local_deployment())
    except Exception:  # noqa: BLE001 - an older supervisor: treat it as a cluster
        local = False
    try:
        inventory, _ = inventory_from_workers(workers, local=local)
    except XinfPlanError as exc:
        return None, error(503, str(exc))
    return inventory, [w["address"] for w in workers]


async def _inventory_answer(ctx) -> tuple[int, dict]:
    inventory, other = await _live_inventory(ctx)
    if inventory is None:
        return other
    return 200, inventory.to_dict()


async def _plan_answer(ctx, body: bytes) -> tuple[int, dict]:
    import asyncio

    from xinf_planner.core.routes import BadBody, error, parse_object, plan_answer

    try:  # a bad body is answered before the cluster is asked
        parse_object(body, "an intent document")
    except BadBody as exc:
        return error(400, str(exc))
    inventory, other = await _live_inventory(ctx)
    if inventory is None:
        return other
    source = f"xinf-plan extension: the live cluster ({len(inventory.hosts)} worker(s))"
    return await asyncio.to_thread(plan_answer, body, inventory, source)


async def _validate_answer(ctx, body: bytes) -> tuple[int, dict]:
    import asyncio

    from xinf_planner.core.routes import BadBody, error, parse_object, validate_answer

    try:
        parse_object(body, "a plan document")
    except BadBody as exc:
        return error(400, str(exc))
    try:
        supervisor = await ctx.get_supervisor_ref()
        infos = await asyncio.wait_for(supervisor.get_workers_info(), WORKERS_TIMEOUT_S)
        workers = [str(i.get("work-ip")) for i in infos or []]
    except Exception:  # noqa: BLE001 - validate the document anyway, without the live check
        workers = None
    return await asyncio.to_thread(validate_answer, body, workers)
