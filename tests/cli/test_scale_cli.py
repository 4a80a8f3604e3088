"""`xinf-plan scale` from the command line: a planned file in, a scaled file out that
`validate` accepts; bad input is one line with a documented exit code."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from support.paths import EXAMPLES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from tiny_model import build_gguf_model_dir  # noqa: E402

T4 = EXAMPLES / "hosts" / "6xt4.yaml"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_gguf_model_dir(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def planned(run_cli, tmp_path):
    path = tmp_path / "plan.yaml"
    code, out, err = run_cli(
        "plan", "--hardware", T4, "--model", "deepseek-r1-distill-qwen:7", "--replicas", "2", "--concurrency", "40",
        "-o", path,
    )  # fmt: skip
    assert code == 0, err
    return path


def test_scale_writes_a_plan_validate_accepts(run_cli, planned, tmp_path):
    new = tmp_path / "plan-3.yaml"
    code, out, err = run_cli("scale", planned, "--replicas", "3", "-o", new)
    assert code == 0, err
    assert out.splitlines()[:2] == [
        "deepseek-r1-distill-qwen-7b: 2 -> 3 replica(s), each launched as before",
        "  add replica on t4x6: GPUs 2,3",
    ]
    assert f"wrote {new}" in err
    code, out, err = run_cli("validate", new)
    assert code == 0 and out.startswith("ok:"), out + err
    before, after = yaml.safe_load(planned.read_text()), yaml.safe_load(new.read_text())
    assert after["inventory"]["fingerprint"] == before["inventory"]["fingerprint"]
    launch = after["deployments"][0]["launch"]
    assert launch["gpu_memory_utilization"] == before["deployments"][0]["launch"]["gpu_memory_utilization"]
    # without -o the plan goes to stdout, the summary to stderr: a pipe gets a document
    code, out, err = run_cli("scale", new, "--replicas", "2")
    assert code == 0 and yaml.safe_load(out)["deployments"][0]["launch"]["replica"] == 2
    assert "3 -> 2 replica(s)" in err
    assert "serves 40 user(s): TTFT" in err and "within the targets" in err
    # one replica for the 40 users misses the targets: that is another configuration
    code, out, err = run_cli("scale", new, "--replicas", "1")
    assert code == 3 and "at the 40 user(s) the plan's request asks for" in err, err
    assert "outside its targets" in err and "xinf-plan plan --replicas 1" in err and "--concurrency " in err
    code, out, err = run_cli("scale", new, "--replicas", "2", "-o", tmp_path / "plan-2.json")
    assert code == 0 and json.loads((tmp_path / "plan-2.json").read_text())["deployments"][0]["launch"]["replica"] == 2


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--replicas", "0"], 2, "error: --replicas 0: a deployment has at least 1 replica"),
        (["--replicas", "-1"], 2, "error: --replicas -1: a deployment has at least 1 replica"),
        (["--replicas", "3", "--deployment", "nope"], 1, "error: no deployment 'nope' in the plan"),
        (["--replicas", "9"], 3, "error: deepseek-r1-distill-qwen-7b: 1 of the 7 more replica(s) fit; another"),
        (["--replicas", "3", "--concurrency", "0"], 2, "error: --concurrency 0: at least 1 sequence"),
    ],
)
def test_bad_input_is_one_line_and_a_documented_code(run_cli, planned, tmp_path, args, code, message):
    out_path = tmp_path / "out.yaml"
    got, out, err = run_cli("scale", planned, *args, "-o", out_path)
    assert got == code, out + err
    assert err.startswith(message) and err.count("\n") == 1, err
    assert "Traceback" not in err and not out_path.exists()


def test_a_plan_that_does_not_validate_is_refused(run_cli, planned, tmp_path):
    doc = yaml.safe_load(planned.read_text())
    doc["deployments"][0]["launch"]["gpu_memory_utilization"] = 1.5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    code, out, err = run_cli("scale", bad, "--replicas", "3", "-o", tmp_path / "out.yaml")
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(f"error: {bad}: $.deployments[0].launch.gpu_memory_utilization: 1.5 is greater")
    code, out, err = run_cli("scale", tmp_path / "missing.yaml", "--replicas", "3")
    assert code == 1 and err.startswith("error: plan file not found") and err.count("\n") == 1


def _cluster_inventory(tmp_path) -> Path:
    """The two CPU workers a real Xinference 4.1.0 supervisor reported (tests/support/fixtures)."""
    from support.paths import FIXTURES

    from xinf_planner.shell.documents import save_inventory
    from xinf_planner.shell.probe.cluster import inventory_from_cluster_info

    info = json.loads((FIXTURES / "cluster" / "cluster-info-2-cpu-workers.json").read_text())
    inv, _ = inventory_from_cluster_info(info)
    path = tmp_path / "cluster.yaml"
    save_inventory(inv, path)
    return path


def test_local_weights_on_one_worker_scale_on_that_worker_and_say_so(run_cli, tmp_path, tiny_dir):
    inv = _cluster_inventory(tmp_path)
    common = ["plan", "--hardware", inv, "--model", "deepseek-r1-distill-qwen", "--model-path", tiny_dir,
              "--context-length", "512", "--replicas", "1"]  # fmt: skip
    code, out, err = run_cli(*common, "-o", tmp_path / "one.yaml")
    assert code == 0, err
    code, out, err = run_cli("scale", tmp_path / "one.yaml", "--replicas", "2", "-o", tmp_path / "two.yaml")
    assert code == 0, err
    places = yaml.safe_load((tmp_path / "two.yaml").read_text())["deployments"][0]["placement"]
    assert len({p["host"] for p in places}) == 1
    assert "Not as asked: strategy spread, but all 2 replicas are on" in out
    # with the weights on every worker, the new replica goes to the other one
    code, out, err = run_cli(*common, "--model-path-on-every-worker", "-o", tmp_path / "every.yaml")
    assert code == 0, err
    code, out, err = run_cli("scale", tmp_path / "every.yaml", "--replicas", "2", "-o", tmp_path / "every2.yaml")
    assert code == 0, err
    doc = yaml.safe_load((tmp_path / "every2.yaml").read_text())
    dep = doc["deployments"][0]
    assert len({p["host"] for p in dep["placement"]}) == 2 and "Not as asked" not in out
    workers = [c["devices"][0]["worker_ip"] for c in dep["launch"]["replica_config"]]
    assert sorted(workers) == sorted(h["worker_address"] for h in doc["inventory"]["document"]["hosts"])
