"""The one place that talks to an Xinference server (through ``xinference_client``).

``connect(endpoint, Credentials(...))`` returns a ``Connection`` whose methods are the
calls apply/status/destroy need. The client is imported inside ``connect`` so that
``import xinf_planner`` and ``xinf-plan --help`` stay light.

Every failure becomes an ``xinf_planner.errors`` exception with one plain line:
unreachable → ``ServerUnreachable`` (5, within ``CONNECT_TIMEOUT_S``), HTTP 401/403 →
``AuthFailed`` (6), any other refusal → ``ServerError`` (5) carrying the server's own
message. Secrets (API key, password, tokens) are scrubbed from every message.

Facts used here were read in the xinference-client 4.1.0 sources
(``xinference_client/client/restful/restful_client.py``) and the 4.1.0 server
(``xinference/api/routers/admin.py``: ``/v1/cluster/version`` and ``/v1/cluster/info``
need the admin scope).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from xinf_planner.errors import (
    EXIT_UNREACHABLE,
    AuthFailed,
    InvalidInput,
    ServerUnreachable,
    XinfPlanError,
)

DEFAULT_ENDPOINT = "http://127.0.0.1:9997"
CONNECT_TIMEOUT_S = 3.0  # TCP connect; an unreachable server is reported well under 10 s
READ_TIMEOUT_S = 60.0  # one REST call (a launch with wait_ready=False returns at once)
PROBE_READ_TIMEOUT_S = 5.0  # the first call: a server that accepts but never answers counts as down
CHAT_TIMEOUT_S = 120.0
MASK = "***"


class ServerError(XinfPlanError):
    """The server answered, but refused or failed the request (its message included)."""

    exit_code = EXIT_UNREACHABLE


@dataclass(frozen=True)
class Credentials:
    """How to authenticate. ``repr`` never shows a secret."""

    api_key: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def secrets(self) -> list[str]:
        return [s for s in (self.api_key, self.password) if s]

    def describe(self) -> str:
        if self.username:
            return f"login as {self.username!r} (password {MASK})"
        if self.api_key:
            return f"api key {MASK}"
        return "no credentials"


def resolve_endpoint(endpoint: str | None, environ: dict) -> str:
    """--endpoint, then $XINFERENCE_ENDPOINT, then the local default; no trailing slash."""
    url = endpoint or environ.get("XINFERENCE_ENDPOINT") or DEFAULT_ENDPOINT
    if "://" not in url:
        url = "http://" + url
    if "@" in url.partition("://")[2].split("/", 1)[0]:
        raise InvalidInput(
            f"endpoint {mask_url(url)}: put credentials in --username (password from "
            "$XINFERENCE_PASSWORD) or --api-key, not in the URL"
        )
    return url.rstrip("/")


def mask_url(url: str) -> str:
    """An endpoint with any user:password@ part masked (safe for state files and logs)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = f"{MASK}@" + netloc.rsplit("@", 1)[1]
    return f"{scheme}://{netloc}{slash}{path}"


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """'4.1.0' -> (4, 1, 0); '4.1.0rc1+g123' -> (4, 1, 0); None when unreadable."""
    if not text:
        return None
    parts = []
    for piece in str(text).split("+")[0].split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts) or None


@dataclass
class SmokeResult:
    finish_reason: str | None
    completion_tokens: int
    first_token_s: float
    total_s: float
    engine_tokens_per_s: float | None = None  # the engine's own decode figure, when it reports one

    @property
    def tokens_per_s(self) -> float:
        """Decode speed: the engine's figure (llama.cpp's ``timings``) when given, else
        tokens over the whole request as the client saw it (prefill included: a floor).
        Chunks can arrive in bursts, so the gap after the first token is not used."""
        if self.engine_tokens_per_s:
            return self.engine_tokens_per_s
        return self.completion_tokens / self.total_s if self.total_s > 0 else 0.0


def _timed_session_class():
    import requests

    class TimedSession(requests.Session):
        """A requests session with default timeouts that remembers the last HTTP status."""

        last_status: int | None = None
        read_timeout: float = READ_TIMEOUT_S

        def request(self, method, url, **kwargs):
            kwargs.setdefault("timeout", (CONNECT_TIMEOUT_S, self.read_timeout))
            self.last_status = None
            resp = super().request(method, url, **kwargs)
            self.last_status = resp.status_code
            return resp

    return TimedSession


def connect(endpoint: str, creds: Credentials = Credentials()) -> "Connection":
    """Reach the server, authenticate, and check the credentials with a cheap call."""
    import requests

    url = endpoint.rstrip("/")
    secrets = creds.secrets()
    try:
        probe = requests.get(f"{url}/v1/cluster/auth", timeout=(CONNECT_TIMEOUT_S, PROBE_READ_TIMEOUT_S))
    except requests.RequestException as exc:
        raise ServerUnreachable(f"cannot reach the Xinference server at {mask_url(url)}: {_reason(exc)}") from None
    if probe.status_code != 200:
        raise ServerUnreachable(
            f"{mask_url(url)} does not answer like an Xinference server "
            f"(GET /v1/cluster/auth: HTTP {probe.status_code})"
        )
    from xinference_client import RESTfulClient

    conn = Connection(url, secrets)
    try:
        client = RESTfulClient(url, api_key=creds.api_key)
    except requests.RequestException as exc:
        raise ServerUnreachable(f"cannot reach the Xinference server at {mask_url(url)}: {_reason(exc)}") from None
    client.session.close()
    client.session = _timed_session_class()()
    conn.client = client
    conn.auth_enabled = bool(client._cluster_authed)
    if creds.username and conn.auth_enabled:
        if not creds.password:
            raise AuthFailed(f"a password is needed to log in as {creds.username!r}")
        conn._call("log in", lambda: client.login(creds.username, creds.password))
    elif conn.auth_enabled and not creds.api_key:
        raise AuthFailed(
            f"{mask_url(url)} requires authentication: pass --api-key "
            "(or $XINFERENCE_API_KEY), or --username with $XINFERENCE_PASSWORD"
        )
    conn._call("list models", client.list_models)  # proves the credentials
    return conn


def _reason(exc: BaseException) -> str:
    import requests

    if isinstance(exc, requests.ConnectTimeout):
        return f"no answer within {CONNECT_TIMEOUT_S:.0f} s"
    if isinstance(exc, requests.ConnectionError):
        text = str(exc)
        if "Connection refused" in text:
            return "connection refused"
        if "Name or service not known" in text or "nodename nor servname" in text:
            return "unknown host name"
        return "connection failed"
    if isinstance(exc, requests.Timeout):
        return "the server stopped answering (timeout)"
    return type(exc).__name__


class Connection:
    """An authenticated client. Each method is one REST call (or one poll)."""

    def __init__(self, url: str, secrets: list[str]):
        self.url = url
        self.client: Any = None
        self.auth_enabled = False
        self._secrets = list(secrets)

    # --- error mapping ----------------------------------------------------------------
    def scrub(self, text: str) -> str:
        for secret in self._secrets + self._tokens():
            if secret:
                text = text.replace(secret, MASK)
        return text

    def _tokens(self) -> list[str]:
        if self.client is None:
            return []
        auth = self.client._headers.get("Authorization", "")
        return [auth.replace("Bearer ", "")] if auth else []

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        import requests

        try:
            return fn()
        except requests.RequestException as exc:
            raise ServerUnreachable(
                f"lost the Xinference server at {mask_url(self.url)} while trying to {what}: {_reason(exc)}"
            ) from None
        except (RuntimeError, ValueError, KeyError) as exc:
            status = getattr(getattr(self.client, "session", None), "last_status", None)
            message = self.scrub(_detail(str(exc)))
            if status in (401, 403):
                hint = ""
                if status == 403 and what not in ("log in", "list models"):
                    hint = " (API keys may only list, describe and infer; use --username to log in)"
                raise AuthFailed(f"{what}: permission refused by the server (HTTP {status}): {message}{hint}") from None
            raise ServerError(f"{what}: {message}") from None

    # --- server facts -------------------------------------------------------------------
    def version(self) -> str | None:
        """The server's version, or None when it cannot be read (it needs the admin scope)."""
        session = self.client.session
        try:
            resp = session.get(f"{self.url}/v1/cluster/version", headers=self.client._headers)
        except Exception:
            return None
        if resp.status_code != 200:
            return None
        try:
            return str(resp.json().get("version"))
        except ValueError:
            return None

    def cluster_info(self) -> list[dict]:
        """``GET /v1/cluster/info?detailed=true``: supervisor and workers with GPU/memory facts."""

        def get():
            resp = self.client.session.get(
                f"{self.url}/v1/cluster/info", params={"detailed": "true"}, headers=self.client._headers
            )
            if resp.status_code != 200:
                raise RuntimeError(_http_detail(resp))
            return resp.json()

        return self._call("read the cluster info", get)

    def workers(self) -> list[dict]:
        """Worker nodes from the cluster info (``ip_address`` is the registered ``ip:port``)."""
        return [n for n in self.cluster_info() if n.get("node_type") == "Worker"]

    def worker_models(self) -> dict[str, str]:
        """replica uid ('{model_uid}-rep{i}') -> worker address, from ``GET /v1/workers``."""
        out = {}
        for worker in self._call("list the workers", self.client.get_workers_info):
            for rep_uid in worker.get("models") or {}:
                out[rep_uid] = worker.get("work-ip")
        return out

    # --- the xinf-plan extension, autostart, launch history, model cache ---------------------
    def _rest(self, what: str, method: str, path: str, *, session=None, **kwargs) -> Any:
        """One REST call through ``_call``: the decoded JSON of a 200, else the server's
        detail (a 401/403 becomes AuthFailed)."""

        def call():
            sess = session or self.client.session
            resp = sess.request(method, f"{self.url}{path}", headers=self.client._headers, **kwargs)
            if resp.status_code in (401, 403):
                raise AuthFailed(
                    f"{what}: permission refused by the server (HTTP {resp.status_code}): "
                    f"{self.scrub(_detail(_http_detail(resp)))}"
                )
            if resp.status_code != 200:
                raise RuntimeError(_http_detail(resp))
            return resp.json() if resp.content else None

        return self._call(what, call)

    def extension_inventory(self) -> dict | None:
        """``GET /v1/xinf-plan/inventory`` (the xinf-plan extension's cluster inventory, version 1),
        or None when the server has no such route (no extension: HTTP 404)."""
        resp = self._call(
            "read the xinf-plan extension's inventory",
            lambda: self.client.session.get(f"{self.url}/v1/xinf-plan/inventory", headers=self.client._headers),
        )
        if resp.status_code == 404:
            return None
        if resp.status_code in (401, 403):
            raise AuthFailed(
                f"read the xinf-plan extension's inventory: permission refused by the server "
                f"(HTTP {resp.status_code}): {self.scrub(_detail(_http_detail(resp)))} (it needs an admin login)"
            )
        if resp.status_code != 200:
            raise ServerError(f"read the xinf-plan extension's inventory: {self.scrub(_http_detail(resp))}")
        try:
            return resp.json()
        except ValueError:
            raise ServerError("read the xinf-plan extension's inventory: the answer is not JSON") from None

    def autostart_entries(self) -> list[dict]:
        """``GET /v1/autostart/models``: the enabled autostart entries (``launch`` as stored,
        secret-looking values and every ``envs`` value shown as ``******``, and ``state``).
        Needs ``models:write``: an API key gets AuthFailed."""
        answer = self._call("read the autostart entries", self.client.get_autostart_config) or {}
        return list(answer.get("models") or [])

    def autostart_summary(self) -> list[dict]:
        """``GET /v1/autostart/models/summary``: ``[{enabled, model_uid}]`` (API keys may read it)."""
        return list(
            (self._call("read the autostart summary", self.client.get_autostart_model_summary) or {}).get("models")
            or []
        )

    def upsert_autostart(self, entry: dict) -> None:
        uid = (entry.get("launch") or {}).get("model_uid")
        self._call(f"write the autostart entry of {uid}", lambda: self.client.upsert_autostart_model(entry))

    def remove_autostart(self, model_uid: str) -> None:
        self._call(f"remove the autostart entry of {model_uid}", lambda: self.client.remove_autostart_model(model_uid))

    def publish_launch(self, record: dict) -> None:
        """``POST /v1/launch_history`` ``{model_name, model_uid, data, ui_data?}``: a launch
        template the web UI offers."""
        what = f"publish {record.get('model_uid')} to the launch history"
        self._rest(what, "POST", "/v1/launch_history", json=record)

    def launch_history(self) -> list[dict]:
        """``GET /v1/launch_history?scope=mine``: newest first."""
        return list(self._rest("read the launch history", "GET", "/v1/launch_history", params={"scope": "mine"}) or [])

    def cache_model(self, body: dict) -> dict:
        """``POST /v1/cache/models``: download (or link) a model's weights into a worker's
        cache. The server answers when the download ends, so this has no read timeout and
        uses its own HTTP session (it runs in a thread while another polls the progress)."""
        session = _timed_session_class()()
        session.read_timeout = None
        try:
            return self._rest(
                f"cache {body.get('model_name')} on {body.get('worker_ip') or 'the worker'}",
                "POST",
                "/v1/cache/models",
                session=session,
                json=body,
            )
        finally:
            session.close()

    def cache_progress(self, cache_uid: str) -> dict:
        """``GET /v1/cache/models/{uid}/progress``: ``{progress 0..1, stage, download_files, targets}``."""
        return self._rest(f"read the download progress of {cache_uid}", "GET", f"/v1/cache/models/{cache_uid}/progress")

    def cancel_cache(self, cache_uid: str) -> None:
        self._rest(f"cancel the download {cache_uid}", "POST", f"/v1/cache/models/{cache_uid}/cancel")

    def delete_download(self, cache_uid: str) -> None:
        """``DELETE /v1/downloads/{uid}``: forget a failed download task (and its partial files)."""
        self._rest(f"delete the download task {cache_uid}", "DELETE", f"/v1/downloads/{cache_uid}")

    # --- registry -----------------------------------------------------------------------
    def registration(self, model_name: str) -> dict | None:
        """The LLM registration under this name, or None when there is none."""
        try:
            return self._call(
                "read a model registration", lambda: self.client.get_model_registration("LLM", model_name)
            )
        except ServerError:
            return None

    def register(self, spec: dict, worker_ip: str | None = None, persist: bool = True) -> None:
        self._call(
            f"register {spec.get('model_name')}",
            lambda: self.client.register_model("LLM", json.dumps(spec, sort_keys=True), persist, worker_ip),
        )

    def unregister(self, model_name: str) -> None:
        self._call(f"unregister {model_name}", lambda: self.client.unregister_model("LLM", model_name))

    def engines(self, model_name: str) -> dict:
        """Engines installed on the worker for this model (virtual envs off): name -> specs,
        or name -> a string saying why the engine is unavailable."""
        return self._call(
            f"query the engines for {model_name}",
            lambda: self.client.query_engine_by_model_name(model_name, model_type="LLM", enable_virtual_env=False),
        )

    # --- models ---------------------------------------------------------------------------
    def running(self) -> dict[str, dict]:
        """model uid -> description, for every model on the server."""
        return self._call("list running models", self.client.list_models)

    def launch(self, kwargs: dict) -> str:
        """``launch_model(**kwargs, wait_ready=False)``: returns at once with the model uid."""
        args = dict(kwargs)
        args["wait_ready"] = False
        return self._call(f"launch {kwargs.get('model_uid')}", lambda: self.client.launch_model(**args))

    def instance(self, model_name: str, model_uid: str) -> dict | None:
        """The instance record (status, replica_statuses[] with errors), or None if gone."""
        info = self._call(
            f"read the status of {model_uid}", lambda: self.client.get_instance_info(model_name, model_uid)
        )
        for item in info or []:
            if item.get("model_uid") == model_uid:
                return item
        return None

    def progress(self, model_uid: str) -> dict | None:
        try:
            return self._call(
                f"read the launch progress of {model_uid}", lambda: self.client.get_launch_model_progress(model_uid)
            )
        except ServerError:
            return None

    def terminate(self, model_uid: str) -> None:
        self._call(f"terminate {model_uid}", lambda: self.client.terminate_model(model_uid))

    def add_replica(self, model_uid: str, replica_config: dict | None, timeout: float = 900.0) -> dict:
        """``add_model_replica``: one more replica of a running model, pinned by
        ``replica_config`` (``{"devices": [{"worker_ip": "ip:port", "gpu_idx"|"n_gpu": ...}]}``).
        The server answers when the replica is loaded (or failed), so the read timeout is
        the launch timeout. Returns ``{replica_id, replica_model_uid, worker_address}``."""

        def add():
            session = self.client.session
            old = session.read_timeout
            session.read_timeout = timeout
            try:
                return self.client.add_model_replica(model_uid, replica_config=replica_config)
            finally:
                session.read_timeout = old

        return self._call(f"add a replica to {model_uid}", add)

    def terminate_replica(self, model_uid: str, replica_id: int) -> int:
        """``terminate_model_replica``: stop one replica; returns how many remain (at 0 the
        server drops the model)."""
        return self._call(
            f"terminate replica {replica_id} of {model_uid}",
            lambda: self.client.terminate_model_replica(model_uid, replica_id),
        )

    def cancel_launch(self, model_uid: str) -> None:
        self._call(f"cancel the launch of {model_uid}", lambda: self.client.cancel_launch_model(model_uid))

    def smoke_chat(self, model_uid: str, max_tokens: int = 8, prompt: str = "Say hello.") -> SmokeResult:
        """A short streamed chat completion at temperature 0: first-token latency and speed."""

        def chat():
            session = self.client.session
            old = session.read_timeout
            session.read_timeout = CHAT_TIMEOUT_S
            try:
                start = time.monotonic()
                resp = session.post(
                    f"{self.url}/v1/chat/completions",
                    headers=self.client._headers,
                    stream=True,
                    json={
                        "model": model_uid,
                        "messages": [{"role": "user", "content": prompt}],
                        "max_tokens": max_tokens,
                        "temperature": 0,
                        "stream": True,
                        "stream_options": {"include_usage": True},
                    },
                )
                if resp.status_code != 200:
                    raise RuntimeError(_http_detail(resp))
                return _read_stream(resp, start)
            finally:
                session.read_timeout = old

        return self._call(f"chat with {model_uid}", chat)


def _read_stream(resp, start: float) -> SmokeResult:
    first = None
    chunks = 0
    usage_tokens = None
    finish = None
    engine_tps = None
    for raw in resp.iter_lines():
        line = raw.decode("utf-8", "replace").strip() if isinstance(raw, bytes) else str(raw).strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        try:
            event = json.loads(data)
        except ValueError:
            continue
        if "error" in event:
            raise RuntimeError(str(event["error"]))
        for choice in event.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content") or delta.get("reasoning_content"):
                chunks += 1
                if first is None:
                    first = time.monotonic() - start
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
        usage = event.get("usage")
        if usage and usage.get("completion_tokens") is not None:
            usage_tokens = int(usage["completion_tokens"])
        timings = event.get("timings")
        if isinstance(timings, dict) and timings.get("predicted_per_second"):
            engine_tps = float(timings["predicted_per_second"])
    total = time.monotonic() - start
    return SmokeResult(
        finish_reason=finish,
        completion_tokens=usage_tokens if usage_tokens is not None else chunks,
        first_token_s=first if first is not None else total,
        total_s=total,
        engine_tokens_per_s=engine_tps,
    )


def _http_detail(resp) -> str:
    try:
        return f"HTTP {resp.status_code}: {resp.json()['detail']}"
    except Exception:
        return f"HTTP {resp.status_code}: {resp.text[:300]}"


def _detail(text: str) -> str:
    """The server's message from the client's 'Failed to X, detail: MESSAGE' wrapping."""
    _, sep, detail = text.partition("detail: ")
    text = detail if sep else text
    return " ".join(text.split())[:500]
