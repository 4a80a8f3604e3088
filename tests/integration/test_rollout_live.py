"""Rollouts against a real Xinference 4.1 server and the tiny GGUF model: scale, a rolling
replace under a background client, a failed replacement that is restored, and rollback.

The background client is a thread on loopback sending small chat completions in a loop
(bounded in time) and recording every answer; the tests assert on those records.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests
from plans import cpu_host, tiny_plan, with_hosts, write_plan

pytestmark = pytest.mark.integration


def _auth(server):
    return ["-e", server.url, "--username", server.username]


def _plan(model_dir, *, uid, replicas, context_length=512, name="chat", model_name="tiny-r1"):
    plan = tiny_plan(model_dir, uid=uid, replicas=replicas, context_length=context_length, model_name=model_name)
    plan["deployments"][0]["name"] = name  # the deployment keeps its name across versions
    return plan


def _with_host_ram(plan, total_gib: float, per_replica_gib: float) -> dict:
    """Give the plan the inventory it was made for: one CPU host with ``total_gib`` of RAM,
    each replica estimated at ``per_replica_gib`` (what the memory check per step uses)."""
    with_hosts(plan, [cpu_host(ram_gib=total_gib)])
    plan["deployments"][0]["estimate"]["host_gib"] = per_replica_gib
    return plan


class Client(threading.Thread):
    """Chat completions in a loop until stopped (at most ``limit_s``). Each attempt asks
    the names in ``uids`` in order and records (time, uid that answered or None, error).

    Like the OpenAI SDK's default (``max_retries=2``), a request that gets HTTP 5xx is
    retried twice, 0.2 s apart: Xinference 4.1's ``terminate_model_replica`` stops the
    replica on its worker before it takes the replica out of the round robin, and a request
    routed in between gets HTTP 500 "Model <uid>-rep<i> is in stopping state" (seen in these
    tests), or, for a request already in flight, a generic HTTP 500 "The chat completion
    request failed". ``retried`` counts those; the next try lands on a replica that answers."""

    def __init__(self, server, uids, limit_s=300.0):
        super().__init__(daemon=True)
        self.url = f"{server.url}/v1/chat/completions"
        self.headers = {"Authorization": f"Bearer {server.api_key(f'rollout-client-{time.time_ns()}')}"}
        self.uids = list(uids)
        self.limit_s = limit_s
        self.records: list[tuple[float, str | None, str]] = []
        self.retried: list[str] = []
        self._halt = threading.Event()

    def ask(self, uid):
        for attempt in range(3):
            r = requests.post(
                self.url,
                headers=self.headers,
                timeout=60,
                json={"model": uid, "max_tokens": 2, "temperature": 0, "messages": [{"role": "user", "content": "hi"}]},
            )
            if r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1:
                return None
            if r.status_code < 500 or attempt == 2:
                break
            self.retried.append(f"{uid}: HTTP {r.status_code} {r.text[:120]}")
            time.sleep(0.2)
        return f"{uid}: HTTP {r.status_code} {r.text[:120]}"

    def run(self):
        start = time.monotonic()
        while not self._halt.is_set() and time.monotonic() - start < self.limit_s:
            errors = []
            for uid in self.uids:
                err = self.ask(uid)
                if err is None:
                    self.records.append((time.monotonic() - start, uid, ""))
                    break
                errors.append(err)
            else:
                self.records.append((time.monotonic() - start, None, " | ".join(errors)))
            time.sleep(0.05)

    def stop(self):
        self._halt.set()
        self.join(90)

    def failures(self):
        return [r for r in self.records if r[1] is None]


# What a request gets from Xinference 4.1 when the replica it was routed to is being
# terminated: routed after the stop began ("stopping state"), or cut off in flight (the API
# layer's generic 500). Both were seen in these tests under load; a retry lands elsewhere.
GOING_AWAY = ("is in stopping state", "The chat completion request failed")


def _replica_going_away(error: str) -> bool:
    return error.split(": ", 1)[1].startswith("HTTP 500") and any(m in error for m in GOING_AWAY)


def _replicas(server, uid):
    inst = server.get("/v1/models/instances", model_name="tiny-r1", model_uid=uid)
    return [(r["replica_id"], r["status"]) for r in inst[0]["replica_statuses"]] if inst else []


def test_scale_one_to_two_and_back_answers_throughout(run_cli, login_env, tiny_model_dir, tmp_path):
    server = login_env
    one = write_plan(_plan(tiny_model_dir, uid="tiny-s", replicas=1), tmp_path / "one.yaml")
    two = write_plan(_plan(tiny_model_dir, uid="tiny-s", replicas=2), tmp_path / "two.yaml")
    state = ["--state", tmp_path / "state.json"]
    code, out, err = run_cli("apply", one, *_auth(server), *state, "--no-smoke-test")
    assert code == 0, out + err

    code, out, err = run_cli("diff", two, *_auth(server), *state, "--format", "json")
    assert code == 2, out + err
    (row,) = json.loads(out)["deployments"]
    assert (row["change"], row["replicas"], row["fields"]) == ("scale", [1, 2], ["replica: 1 -> 2"])

    client = Client(server, ["tiny-s"])
    client.start()
    try:
        code, out, err = run_cli("apply", two, *_auth(server), *state)
        assert code == 0, out + err
        assert "launch tiny-s-rep1" in out and "scale chat" in out
        assert _replicas(server, "tiny-s") == [(0, "READY"), (1, "READY")]
        assert server.running_models()["tiny-s"]["replica"] == 2
        code, out, err = run_cli("diff", two, *_auth(server), *state)
        assert code == 0 and "unchanged" in out, out + err

        code, out, err = run_cli("apply", one, *_auth(server), *state)
        assert code == 0, out + err
        assert "terminate tiny-s-rep1" in out  # the highest replica id goes first
        assert _replicas(server, "tiny-s") == [(0, "READY")]
    finally:
        client.stop()
    assert client.records and not client.failures(), client.failures()[:3]
    assert all(_replica_going_away(r) for r in client.retried), client.retried[:3]


def test_context_change_rolls_under_a_client_then_rollback(run_cli, login_env, tiny_model_dir, tmp_path):
    server = login_env
    old = write_plan(_plan(tiny_model_dir, uid="tiny-a", replicas=2, context_length=512), tmp_path / "v1.yaml")
    state = ["--state", tmp_path / "state.json"]
    code, out, err = run_cli("apply", old, *_auth(server), *state, "--no-smoke-test")
    assert code == 0, out + err

    # the same uid with another context length cannot roll in Xinference 4.1: refused before any change
    same = write_plan(_plan(tiny_model_dir, uid="tiny-a", replicas=2, context_length=1024), tmp_path / "same.yaml")
    code, out, err = run_cli("diff", same, *_auth(server), *state, "--format", "json")
    (row,) = json.loads(out)["deployments"]
    assert code == 2 and row["change"] == "replace" and row["fields"] == ["context_length: 512 -> 1024"]
    assert "one configuration per model uid" in row["blocked"]
    code, out, err = run_cli("apply", same, *_auth(server), *state)
    assert code == 7 and "--allow-downtime" in err and "nothing was changed" in err, out + err
    assert _replicas(server, "tiny-a") == [(0, "READY"), (1, "READY")]

    new = write_plan(_plan(tiny_model_dir, uid="tiny-b", replicas=2, context_length=1024), tmp_path / "v2.yaml")
    code, out, err = run_cli("diff", new, *_auth(server), *state, "--format", "json")
    (row,) = json.loads(out)["deployments"]
    assert code == 2 and row["change"] == "replace"
    assert row["fields"] == ["context_length: 512 -> 1024", "model_uid: 'tiny-a' -> 'tiny-b'"]

    client = Client(server, ["tiny-a", "tiny-b"])
    client.start()
    try:
        code, out, err = run_cli("apply", new, *_auth(server), *state)
        assert code == 0, out + err
        assert "replace chat" in out and "health check" in out
        assert set(server.running_models()) == {"tiny-b"}
        assert _replicas(server, "tiny-b") == [(0, "READY"), (1, "READY")]
        time.sleep(1.0)
    finally:
        client.stop()
    answered = {uid for _, uid, _ in client.records}
    assert answered == {"tiny-a", "tiny-b"}  # the client saw the handover ...
    assert not client.failures(), client.failures()[:3]  # ... and never went unanswered
    assert all(_replica_going_away(r) for r in client.retried), client.retried[:3]
    st = json.loads((tmp_path / "state.json").read_text())
    assert st["deployments"]["chat"]["model_uid"] == "tiny-b" and len(st["history"]) == 2

    code, out, err = run_cli("rollback", *_auth(server), *state)
    assert code == 0, out + err
    assert "rolled back: replace chat" in out
    assert set(server.running_models()) == {"tiny-a"}
    assert _replicas(server, "tiny-a") == [(0, "READY"), (1, "READY")]
    code, out, err = run_cli("diff", old, *_auth(server), *state)
    assert code == 0, out + err


def test_failed_new_replica_restores_the_old_configuration(run_cli, login_env, tiny_model_dir, tmp_path):
    server = login_env
    # 2 GiB per replica on a host the plan says has 5 GiB: a third replica never fits, so
    # each old replica must stop before its replacement starts (terminate, then launch)
    old = _with_host_ram(_plan(tiny_model_dir, uid="tiny-a", replicas=2), 5.0, 2.0)
    old_path = write_plan(old, tmp_path / "v1.yaml")
    state = ["--state", tmp_path / "state.json"]
    code, out, err = run_cli("apply", old_path, *_auth(server), *state, "--no-smoke-test")
    assert code == 0, out + err
    before = json.loads((tmp_path / "state.json").read_text())

    # the new configuration is a new registration, which this apply makes: undone too
    bad = _with_host_ram(
        _plan(tiny_model_dir, uid="tiny-b", replicas=2, context_length=1024, model_name="tiny-r1-b"), 5.0, 2.0
    )
    bad["deployments"][0]["launch"]["model_path"] = str(tmp_path / "missing" / "tiny.gguf")
    bad_path = write_plan(bad, tmp_path / "v2.yaml")
    code, out, err = run_cli("diff", bad_path, *_auth(server), *state, "--format", "json")
    steps = json.loads(out)["deployments"][0]["steps"]
    assert [s["action"] for s in steps] == ["terminate", "launch", "terminate", "launch"]
    assert "localhost RAM would hold 6.0 of 5.0 GiB" in steps[0]["reason"]

    code, out, err = run_cli("apply", bad_path, *_auth(server), *state)
    assert code == 7, out + err
    assert "failed at step 2/4" in err and "missing" in err  # the server's own reason
    assert "changed before the failure: terminated tiny-a-rep1" in err
    assert "restored: relaunched tiny-a-rep1 as tiny-a-rep" in err
    assert "also rolled back what this apply launched and registered: unregistered tiny-r1-b" in err
    assert server.custom_llm_names() == ["tiny-r1"]
    # the server is as before: the old uid with two READY replicas, nothing of the new one
    assert set(server.running_models()) == {"tiny-a"}
    assert [s for _, s in _replicas(server, "tiny-a")] == ["READY", "READY"]
    after = json.loads((tmp_path / "state.json").read_text())
    assert after["deployments"] == before["deployments"] and after["history"] == before["history"]
    code, out, err = run_cli("diff", old_path, *_auth(server), *state)
    assert code == 0, out + err


def test_a_swap_removes_the_old_deployment_before_launching_the_new(run_cli, login_env, tiny_model_dir, tmp_path):
    """v2 drops deployment A and adds B (another name) on the same host, whose RAM (the
    plan's inventory) holds one replica: A must stop before B starts."""
    server = login_env
    v1 = _with_host_ram(_plan(tiny_model_dir, uid="tiny-a", replicas=1, name="a"), 3.0, 2.0)
    v2 = _with_host_ram(_plan(tiny_model_dir, uid="tiny-b", replicas=1, name="b"), 3.0, 2.0)
    state = ["--state", tmp_path / "state.json"]
    code, out, err = run_cli("apply", write_plan(v1, tmp_path / "v1.yaml"), *_auth(server), *state, "--no-smoke-test")
    assert code == 0, out + err
    code, out, err = run_cli("apply", write_plan(v2, tmp_path / "v2.yaml"), *_auth(server), *state, "--no-smoke-test")
    assert code == 0, out + err
    assert "remove a: terminated tiny-a" in out and "launch b:" in out
    assert out.index("remove a: terminated tiny-a") < out.index("launch b:"), out
    assert set(server.running_models()) == {"tiny-b"}
    st = json.loads((tmp_path / "state.json").read_text())
    assert set(st["deployments"]) == {"b"} and st["plan_path"] == str((tmp_path / "v2.yaml").resolve())

    # rollback: B goes, A comes back, and the state names v1.yaml (found beside the state)
    code, out, err = run_cli("rollback", *_auth(server), *state, "--no-smoke-test")
    assert code == 0, out + err
    assert out.index("remove b: terminated tiny-b") < out.index("launch a:"), out
    assert set(server.running_models()) == {"tiny-a"}
    st = json.loads((tmp_path / "state.json").read_text())
    assert st["plan_path"] == str((tmp_path / "v1.yaml").resolve())
