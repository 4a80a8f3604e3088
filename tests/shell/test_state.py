"""The apply state file: round trip, hashing, history, and the lock between processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from xinf_planner.errors import InvalidInput, StateLocked
from xinf_planner.shell.state import (
    HISTORY_LIMIT,
    State,
    StateLock,
    load_state,
    plan_hash,
    save_state,
    state_path,
)


def test_missing_state_is_empty(tmp_path):
    state = load_state(tmp_path / "nope.json")
    assert state.deployments == {} and state.registered == [] and state.history == []


def test_round_trip_private_and_atomic(tmp_path):
    path = tmp_path / ".xinf-plan" / "state.json"
    state = State(endpoint="http://127.0.0.1:9997")
    state.record_registration("m")
    state.record_registration("m")
    state.record_launch("dep", "uid-1", "m")
    save_state(path, state)
    again = load_state(path)
    assert again.registered == ["m"]
    assert again.owned_uids() == ["uid-1"]
    assert again.updated_at is not None
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]  # no temp file left


def test_default_path_is_beside_the_plan(tmp_path):
    assert state_path(tmp_path / "plans" / "p.yaml") == tmp_path / "plans" / ".xinf-plan" / "state.json"


def test_plan_hash_ignores_key_order_not_values():
    a = {"version": 1, "deployments": [{"name": "x", "launch": {"replica": 1, "model_uid": "x"}}]}
    b = {"deployments": [{"launch": {"model_uid": "x", "replica": 1}, "name": "x"}], "version": 1}
    c = {"version": 1, "deployments": [{"name": "x", "launch": {"replica": 2, "model_uid": "x"}}]}
    assert plan_hash(a) == plan_hash(b)
    assert plan_hash(a) != plan_hash(c)
    assert plan_hash(a).startswith("sha256:") and len(plan_hash(a)) == 7 + 64


def test_history_appends_new_plans_only_and_is_bounded():
    state = State()
    plan = {"version": 1, "deployments": []}
    state.record_applied(plan, "p.yaml", "http://h:1")
    state.record_applied(plan, "p.yaml", "http://h:1")
    assert len(state.history) == 1
    assert state.history[0]["plan"] == plan and state.history[0]["plan_hash"] == state.plan_hash
    for i in range(HISTORY_LIMIT + 5):
        state.record_applied({"version": 1, "n": i}, "p.yaml", "http://h:1")
    assert len(state.history) == HISTORY_LIMIT
    assert state.history[-1]["plan"] == {"version": 1, "n": HISTORY_LIMIT + 4}


def test_not_a_state_file(tmp_path):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 99}))
    with pytest.raises(InvalidInput):
        load_state(path)
    path.write_text("{not json")
    with pytest.raises(InvalidInput):
        load_state(path)


_HOLDER = """
import sys, time
from xinf_planner.shell.state import StateLock
with StateLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_lock_refuses_a_second_holder_and_frees_when_the_holder_dies(tmp_path):
    path = tmp_path / "state.json"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StateLocked, match=f"pid {holder.pid}"):
            with StateLock(path):
                pass
    finally:
        holder.kill()
        holder.wait()
    # the holder died without cleaning up: its lock file remains, but the lock is free
    assert (tmp_path / "state.json.lock").read_text().strip() == str(holder.pid)
    with StateLock(path):
        assert (tmp_path / "state.json.lock").read_text().strip() == str(os.getpid())


def test_lock_in_one_process_is_exclusive_too(tmp_path):
    path = tmp_path / "state.json"
    with StateLock(path):
        start = time.monotonic()
        with pytest.raises(StateLocked):
            with StateLock(path):
                pass
        assert time.monotonic() - start < 1  # refuses at once, never waits


@pytest.mark.parametrize(
    "doc, where",
    [
        ({"version": 1, "history": [{"plan_hash": "x"}]}, "$.history[0]"),
        ({"version": 1, "history": "abc"}, "$.history"),
        ({"version": 1, "deployments": {"d": {"model_uid": 3, "model_name": "m"}}}, "$.deployments.d.model_uid"),
        ({"version": 1, "registered": [1]}, "$.registered[0]"),
    ],
)
def test_hand_edited_state_is_one_line_error_with_its_path(tmp_path, doc, where):
    p = tmp_path / "state.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(InvalidInput) as err:
        load_state(p)
    assert where in str(err.value) and "\n" not in str(err.value)


def test_lock_in_an_unwritable_place_is_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InvalidInput, match="--state"):
        with StateLock(blocker / "state.json"):
            pass


def test_credentials_in_the_endpoint_url_are_refused_without_echoing_them():
    from xinf_planner.shell.server import resolve_endpoint

    with pytest.raises(InvalidInput) as err:
        resolve_endpoint("http://bob:hunter2@h:9997", {})
    assert "hunter2" not in str(err.value) and "--username" in str(err.value)
    with pytest.raises(InvalidInput):
        resolve_endpoint(None, {"XINFERENCE_ENDPOINT": "bob:pw@h:9997"})
    assert resolve_endpoint("http://h:9997/", {}) == "http://h:9997"


def test_history_entries_record_the_plan_file(tmp_path):
    st = State()
    st.record_applied({"version": 1, "deployments": []}, "/plans/v1.yaml", "http://h:9997")
    save_state(tmp_path / "s.json", st)
    assert load_state(tmp_path / "s.json").history[-1]["plan_path"] == "/plans/v1.yaml"


def test_a_state_that_cannot_be_saved_during_rollback_is_noted_not_raised(tmp_path):
    from xinf_planner.shell.state import save_state_noting

    blocker = tmp_path / "file"
    blocker.write_text("x")
    left: list[str] = []
    save_state_noting(blocker / "state.json", State(), left)
    assert len(left) == 1 and left[0].startswith("state file not updated (cannot write")
