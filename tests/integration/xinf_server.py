"""Start and stop REAL Xinference servers on loopback for the integration tests.

``LocalServer`` runs ``xinference-local`` (supervisor and one worker in one process tree);
``Cluster`` runs ``xinference-supervisor`` plus N ``xinference-worker`` processes, each with
its own port and ``XINFERENCE_HOME``. Authentication stays ON (the 4.x default): the
harness performs the real first-run set-up (setup token from the server's auth database,
``POST /v1/admin/setup``) and logs in, so tests see what a user sees.

Every process is started in its own session (process group) and stopped by that group's
id, never by name, and always — ``stop()`` is idempotent and the fixtures call it in a
``finally``.

``extension=True`` starts every process with ``XINFERENCE_EXTENSIONS=xinf_planner.extension:create``
and this repository's root first on ``PYTHONPATH``, so the servers load the extension of the
tree under test (the venv's editable install may point at another checkout). A Cluster can
give each worker extra environment (``worker_env``: the test-only NVML replay) or start a
worker without the extension (``extra_worker``).

Usage::

    with LocalServer(tmp_path) as srv:
        srv.url, srv.username, srv.password, srv.token()
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import requests

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]  # the repository under test
EXTENSION = "xinf_planner.extension:create"
ADMIN_USER = "admin"
# A throwaway password for a throwaway server on loopback (the minimum is 8 characters).
ADMIN_PASSWORD = "tiny-test-pass-42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_env(home: Path, extension: bool = False, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["XINFERENCE_HOME"] = str(home)
    # No network on test machines: engines must come from this venv, not a per-model venv.
    env["XINFERENCE_ENABLE_VIRTUAL_ENV"] = "0"
    env["XINFERENCE_MODEL_SRC"] = "huggingface"
    env.pop("XINFERENCE_ENDPOINT", None)
    env.pop("XINFERENCE_API_KEY", None)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.pop("XINFERENCE_EXTENSIONS", None)
    env.pop("XINF_PLAN_TEST_NVML_REPLAY", None)
    if extension:
        env["XINFERENCE_EXTENSIONS"] = EXTENSION
        paths = [str(ROOT)]
        if (extra or {}).get("XINF_PLAN_TEST_NVML_REPLAY"):
            paths.append(str(ROOT / "tests"))  # support.fake_nvml, for the replay only
        env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(extra or {})
    return env


class _Proc:
    """One server process in its own process group, with its log file."""

    def __init__(self, argv: list[str], env: dict, log: Path):
        self.log = log
        self._fh = open(log, "ab")
        self.popen = subprocess.Popen(
            argv, env=env, stdout=self._fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        self.pgid = self.popen.pid  # start_new_session: the child leads its own group

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # Model subprocesses live in the same group: make sure none survives.
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._fh.close()

    def kill(self) -> None:
        """SIGKILL the whole group at once (a crash, for fault tests)."""
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(10)


class _Server:
    """What LocalServer and Cluster share: the endpoint, first-run set-up and login."""

    host = "127.0.0.1"
    username = ADMIN_USER
    password = ADMIN_PASSWORD

    def __init__(self, root: Path, port: int | None = None, extension: bool = False):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extension = extension
        self._procs: list[_Proc] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def auth_home(self) -> Path:  # the home of the process that serves the REST API
        raise NotImplementedError

    # --- lifecycle -------------------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self, timeout: float = 120.0) -> "_Server":
        try:
            self._spawn()
            self._wait_ready(timeout)
            self._first_run_setup()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in reversed(self._procs):
            proc.stop()
        self._procs = []

    def kill(self) -> None:
        """Kill every process at once, as a crash or a power cut would."""
        for proc in reversed(self._procs):
            proc.kill()
        self._procs = []

    def _spawn(self) -> None:
        raise NotImplementedError

    def logs(self) -> str:
        out = []
        for proc in self._procs:
            try:
                out.append(proc.log.read_text(errors="replace"))
            except OSError:
                pass
        return "\n".join(out)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self._procs:
                if not proc.alive():
                    raise RuntimeError(f"server process exited early; log tail:\n{self.logs()[-3000:]}")
            try:
                r = requests.get(f"{self.url}/v1/cluster/auth", timeout=2)
                if r.status_code == 200 and self._workers_ready():
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"server not ready after {timeout:.0f}s; log tail:\n{self.logs()[-3000:]}")

    def _workers_ready(self) -> bool:
        return True

    # --- authentication --------------------------------------------------------------
    def setup_token(self) -> str | None:
        db = self.auth_home / "auth" / "auth.db"
        if not db.exists():
            return None
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT value FROM system_config WHERE key = 'setup_token'").fetchone()
        return row[0] if row else None

    def _first_run_setup(self) -> None:
        status = requests.get(f"{self.url}/v1/admin/setup/status", timeout=5)
        if status.status_code == 200 and not status.json().get("needs_setup", True):
            return  # a restart over an existing home: the admin already exists
        token = None
        for _ in range(40):
            token = self.setup_token()
            if token:
                break
            time.sleep(0.25)
        if not token:
            raise RuntimeError("no setup token in the server's auth database")
        r = requests.post(
            f"{self.url}/v1/admin/setup",
            timeout=30,
            json={"setup_token": token, "username": self.username, "password": self.password},
        )
        if r.status_code not in (200, 201):
            raise RuntimeError(f"first-run setup failed: HTTP {r.status_code} {r.text[:200]}")

    def token(self) -> str:
        """A fresh login access token (admin scope)."""
        r = requests.post(f"{self.url}/token", timeout=30, json={"username": self.username, "password": self.password})
        r.raise_for_status()
        return r.json()["access_token"]

    def create_user(self, username: str, password: str, permissions: list[str]) -> None:
        """A local user with these permissions (the admin's user management route)."""
        r = requests.post(
            f"{self.url}/v1/admin/users",
            timeout=30,
            json={"username": username, "password": password, "permissions": permissions},
            headers={"Authorization": f"Bearer {self.token()}"},
        )
        if r.status_code not in (200, 201, 409):
            raise RuntimeError(f"creating user {username}: HTTP {r.status_code} {r.text[:200]}")

    def token_of(self, username: str, password: str) -> str:
        r = requests.post(f"{self.url}/token", timeout=30, json={"username": username, "password": password})
        r.raise_for_status()
        return r.json()["access_token"]

    def api_key(self, name: str = "tests") -> str:
        """A new API key of the admin user (list/describe/infer only)."""
        r = requests.post(
            f"{self.url}/v1/admin/keys",
            timeout=30,
            json={"name": name},
            headers={"Authorization": f"Bearer {self.token()}"},
        )
        r.raise_for_status()
        body = r.json()
        return body.get("key") or body.get("api_key") or body["secret"]

    def get(self, path: str, **params):
        """GET an API path as the admin; the decoded JSON."""
        r = requests.get(
            f"{self.url}{path}", params=params or None, timeout=30, headers={"Authorization": f"Bearer {self.token()}"}
        )
        r.raise_for_status()
        return r.json()

    def running_models(self) -> dict:
        return {m["id"]: m for m in self.get("/v1/models")["data"]}

    def custom_llm_names(self) -> list[str]:
        regs = self.get("/v1/model_registrations/LLM")
        return sorted(r["model_name"] for r in regs if not r.get("is_builtin"))

    def registered(self, model_name: str) -> bool:
        """Whether an LLM is registered under this name (one cheap lookup; listing every
        registration can take over 30 s on a cluster)."""
        r = requests.get(
            f"{self.url}/v1/model_registrations/LLM/{model_name}",
            timeout=60,
            headers={"Authorization": f"Bearer {self.token()}"},
        )
        return r.status_code == 200

    def worker_addresses(self) -> list[str]:
        return sorted(
            w["ip_address"] for w in self.get("/v1/cluster/info", detailed="true") if w.get("node_type") == "Worker"
        )


class LocalServer(_Server):
    """``xinference-local -H 127.0.0.1 -p PORT`` with its own XINFERENCE_HOME."""

    def __init__(self, root: Path, port: int | None = None, extension: bool = False):
        super().__init__(root, port, extension)
        self.home = self.root / "home"

    @property
    def auth_home(self) -> Path:
        return self.home

    def _spawn(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        argv = [str(BIN / "xinference-local"), "-H", self.host, "-p", str(self.port), "--log-level", "INFO"]
        self._procs.append(_Proc(argv, _server_env(self.home, self.extension), self.root / "server.log"))

    @property
    def pid(self) -> int | None:
        """The pid of the running ``xinference-local`` (its process group's id)."""
        return self._procs[0].popen.pid if self._procs else None


class Cluster(_Server):
    """``xinference-supervisor`` plus ``n_workers`` ``xinference-worker`` processes on loopback.

    Each worker has its own port (``worker_ports``) and home; its registered address is
    ``127.0.0.1:<worker port>``, what ``replica_config[].devices[].worker_ip`` names.
    """

    def __init__(
        self,
        root: Path,
        n_workers: int = 2,
        port: int | None = None,
        extension: bool = False,
        worker_env: list[dict] | None = None,
    ):
        super().__init__(root, port, extension)
        self.supervisor_port = free_port()
        self.worker_ports = [free_port() for _ in range(n_workers)]
        self.worker_env = list(worker_env or [{}] * n_workers)
        self.home = self.root / "supervisor"

    @property
    def auth_home(self) -> Path:
        return self.home

    @property
    def worker_ips(self) -> list[str]:
        return [f"{self.host}:{p}" for p in self.worker_ports]

    def _spawn(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        sup = [
            str(BIN / "xinference-supervisor"),
            "-H",
            self.host,
            "-p",
            str(self.port),
            "--supervisor-port",
            str(self.supervisor_port),
            "--log-level",
            "INFO",
        ]
        self._procs.append(_Proc(sup, _server_env(self.home, self.extension), self.root / "supervisor.log"))
        self._wait_http(180)  # a loaded 2-core machine can take over a minute
        for i, wport in enumerate(self.worker_ports):
            self._procs.append(self._worker(f"worker{i}", wport, self.extension, self.worker_env[i]))

    def _worker(self, name: str, port: int, extension: bool, extra: dict | None) -> _Proc:
        whome = self.root / name
        whome.mkdir(parents=True, exist_ok=True)
        argv = [
            str(BIN / "xinference-worker"),
            "-e",
            self.url,
            "-H",
            self.host,
            "--worker-port",
            str(port),
            "--log-level",
            "INFO",
        ]
        return _Proc(argv, _server_env(whome, extension, extra), self.root / f"{name}.log")

    def extra_worker(self, name: str = "stranger", extension: bool = False) -> tuple[_Proc, str]:
        """Start one more worker (by default without the extension); the caller stops it.
        Returns the process and the address it would register as."""
        port = free_port()
        return self._worker(name, port, extension, {}), f"{self.host}:{port}"

    def _wait_http(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._procs[0].alive():
                raise RuntimeError(f"supervisor exited early:\n{self.logs()[-3000:]}")
            try:
                requests.get(f"{self.url}/v1/cluster/auth", timeout=2)
                return
            except requests.RequestException:
                time.sleep(0.5)
        raise RuntimeError("supervisor REST API not up")

    def _workers_ready(self) -> bool:
        # Workers register with the supervisor a little after they start.
        try:
            self._first_run_setup()
            return len(self.worker_addresses()) >= len(self.worker_ports)
        except (requests.RequestException, RuntimeError, KeyError):
            return False
