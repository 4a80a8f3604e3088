"""Session fixtures: one real Xinference server (auth on) and one tiny model per test run.

A server start costs about 20-30 s on a 2-core machine, so the server is shared by the
session; ``clean_server`` returns it to an empty state around each test that changes it
(terminating models and unregistering custom models through the REST API as the admin).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_model import build_gguf_model_dir  # noqa: E402
from xinf_server import LocalServer  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_gguf_model_dir(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def xinf_server(tmp_path_factory):
    server = LocalServer(tmp_path_factory.mktemp("xinf-local"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def wipe(server) -> None:
    """Terminate every model and unregister every custom LLM (admin REST calls)."""
    headers = {"Authorization": f"Bearer {server.token()}"}
    for uid in list(server.running_models()):
        requests.delete(f"{server.url}/v1/models/{uid}", headers=headers, timeout=60)
    for name in server.custom_llm_names():
        requests.delete(f"{server.url}/v1/model_registrations/LLM/{name}", headers=headers, timeout=60)


@pytest.fixture
def clean_server(xinf_server):
    if not xinf_server._procs:  # a fault test stopped it: bring it back on the same home
        xinf_server.start()
    wipe(xinf_server)
    yield xinf_server
    if xinf_server._procs:
        wipe(xinf_server)


@pytest.fixture
def login_env(monkeypatch, clean_server):
    """The clean server, with $XINFERENCE_PASSWORD set to its admin's and no endpoint/key
    inherited from the environment. Commands then pass ``-e URL --username admin``."""
    monkeypatch.setenv("XINFERENCE_PASSWORD", clean_server.password)
    monkeypatch.delenv("XINFERENCE_ENDPOINT", raising=False)
    monkeypatch.delenv("XINFERENCE_API_KEY", raising=False)
    return clean_server


@pytest.fixture(scope="session")
def xinf_cluster(tmp_path_factory):
    """A real supervisor with two workers on loopback (about 70 s to start on 2 cores)."""
    from xinf_server import Cluster

    cluster = Cluster(tmp_path_factory.mktemp("xinf-cluster"), n_workers=2)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def ext_server(tmp_path_factory):
    """``xinference-local`` with the xinf-plan extension of this tree (auth on)."""
    server = LocalServer(tmp_path_factory.mktemp("xinf-ext-local"), extension=True)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def ext_clean(ext_server, monkeypatch):
    """The extension server, emptied, with $XINFERENCE_PASSWORD set for ``--username admin``."""
    if not ext_server._procs:
        ext_server.start()
    wipe_autostart(ext_server)
    wipe(ext_server)
    monkeypatch.setenv("XINFERENCE_PASSWORD", ext_server.password)
    monkeypatch.delenv("XINFERENCE_ENDPOINT", raising=False)
    monkeypatch.delenv("XINFERENCE_API_KEY", raising=False)
    yield ext_server
    if ext_server._procs:
        wipe_autostart(ext_server)
        wipe(ext_server)


def wipe_autostart(server) -> None:
    """Remove every autostart entry, so that no test's model comes back in the next one."""
    headers = {"Authorization": f"Bearer {server.token()}"}
    for entry in server.get("/v1/autostart/models")["models"]:
        uid = entry["launch"]["model_uid"]
        requests.delete(f"{server.url}/v1/autostart/models/{uid}", headers=headers, timeout=60)


REPLAYED = "rtx4090-pcie-4x"  # the recorded NVML answers worker1 of ext_cluster replays


@pytest.fixture(scope="session")
def ext_cluster(tmp_path_factory):
    """A supervisor and two workers, all with the extension (auth on); worker1 replays the
    NVML answers recorded on a 4 x RTX 4090 machine (the test-only switch of extension.py)."""
    from xinf_server import ROOT, Cluster

    fixture = ROOT / "tests" / "support" / "fixtures" / "nvml" / f"{REPLAYED}.json"
    cluster = Cluster(
        tmp_path_factory.mktemp("xinf-ext-cluster"),
        n_workers=2,
        extension=True,
        worker_env=[{}, {"XINF_PLAN_TEST_NVML_REPLAY": str(fixture)}],
    )
    try:
        cluster.start(timeout=240)
        yield cluster
    finally:
        cluster.stop()
