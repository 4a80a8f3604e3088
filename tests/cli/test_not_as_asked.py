"""No silent surprises: where a plan departs from what was asked (a strategy, a replica
count, hardware it cannot use), its reasons or notes say so, one line each, and
`plan --format table` shows them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from support.paths import EXAMPLES, FIXTURES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from tiny_model import build_gguf_model_dir  # noqa: E402


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_gguf_model_dir(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def two_workers(tmp_path) -> Path:
    from xinf_planner.shell.documents import save_inventory
    from xinf_planner.shell.probe.cluster import inventory_from_cluster_info

    info = json.loads((FIXTURES / "cluster" / "cluster-info-2-cpu-workers.json").read_text())
    inv, _ = inventory_from_cluster_info(info)
    path = tmp_path / "cluster.yaml"
    save_inventory(inv, path)
    return path


def _lines(text: str, start: str) -> list[str]:
    return [
        line.strip().removeprefix("- ")
        for line in text.splitlines()
        if line.strip().removeprefix("- ").startswith(start)
    ]


def test_spread_with_local_weights_on_one_worker_says_why(run_cli, two_workers, tiny_dir):
    args = ["plan", "--hardware", two_workers, "--model", "deepseek-r1-distill-qwen", "--model-path", tiny_dir,
            "--replicas", "2", "--strategy", "spread", "--context-length", "512"]  # fmt: skip
    code, out, err = run_cli(*args, "--format", "table")
    assert code == 0, err
    (line,) = _lines(out, "Not as asked")
    assert line.startswith("Not as asked: strategy spread, but all 2 replicas are on 127.0.0.1-")
    assert "had room too" in line and "--model-path-on-every-worker" in line
    code, out, err = run_cli(*args, "--format", "json")
    reasons = json.loads(out)["deployments"][0]["reasons"]
    assert line in reasons  # the plan says it too, word for word

    code, out, err = run_cli(*args, "--model-path-on-every-worker", "--format", "json")
    doc = json.loads(out)
    dep = doc["deployments"][0]
    assert len({p["host"] for p in dep["placement"]}) == 2
    assert not [r for r in dep["reasons"] if r.startswith("Not as asked")]
    assert doc["request"]["model_path_on_every_worker"] is True
    assert "worker_ip" not in dep["registration"]  # registered at the supervisor


def test_spread_onto_one_host_because_the_other_is_full_says_why(run_cli, tmp_path):
    doc = yaml.safe_load((EXAMPLES / "hosts" / "2x8xa100-cluster.yaml").read_text())
    for gpu in doc["hosts"][1]["gpus"]:
        gpu["memory_used_bytes"] = gpu["memory_total_bytes"] - (1 << 30)  # 1 GiB free each
    inv = tmp_path / "busy.yaml"
    inv.write_text(yaml.safe_dump(doc))
    code, out, err = run_cli(
        "plan", "--hardware", inv, "--model", "deepseek-r1-distill-qwen:7", "--replicas", "2", "--format", "table"
    )
    assert code == 0, err
    (line,) = _lines(out, "Not as asked")
    assert line == (
        "Not as asked: strategy spread, but all 2 replicas are on a100-node-1: only it has free "
        "NVIDIA A100-SXM4-80GB GPUs that hold a replica."
    )
    code, out, err = run_cli(
        "plan", "--hardware", inv, "--model", "deepseek-r1-distill-qwen:7", "--replicas", "2", "--strategy", "pack",
        "--format", "table",
    )  # fmt: skip
    assert code == 0 and not _lines(out, "Not as asked")  # packing is what was asked


def test_a_single_host_or_replica_never_gets_the_line(run_cli):
    for extra in ([], ["--replicas", "2"]):
        code, out, err = run_cli(
            "plan", "--hardware", EXAMPLES / "hosts" / "6xt4.yaml", "--model", "deepseek-r1-distill-qwen:7",
            *extra, "--format", "table",
        )  # fmt: skip
        assert code == 0 and not _lines(out, "Not as asked"), out


def test_mig_gpus_and_an_unused_flag_are_noted(run_cli, two_workers, tmp_path):
    doc = yaml.safe_load((EXAMPLES / "hosts" / "8xa100-sxm4-80gb.yaml").read_text())
    doc["hosts"][0]["gpus"][3]["mig_mode"] = True
    inv = tmp_path / "mig.yaml"
    inv.write_text(yaml.safe_dump(doc))
    host = doc["hosts"][0]["name"]
    code, out, err = run_cli("plan", "--hardware", inv, "--model", "deepseek-r1-distill-qwen:7", "--format", "table")
    assert code == 0, err
    assert f"note: GPU(s) {host}:3 are in MIG mode; xinf-plan places no replica on a MIG GPU" in out
    code, out, err = run_cli(
        "plan", "--hardware", two_workers, "--model", "deepseek-r1-distill-qwen:1.5", "--model-path-on-every-worker",
        "--input-tokens", "200", "--format", "table",  # two vCPUs: a 1000-token prompt takes over 10 s
    )  # fmt: skip
    assert code == 0, err
    assert "note: model_path_on_every_worker is set but no model has a model_path: it has no effect." in out


def test_a_filter_value_that_matches_nothing_is_noted(run_cli):
    code, out, err = run_cli(
        "plan", "--hardware", EXAMPLES / "hosts" / "6xt4.yaml", "--model", "deepseek-r1-distill-qwen:7",
        "--quantization", "Q4_K_M", "--quantization", "Int9", "--format", "table",
    )  # fmt: skip
    assert code == 0, err
    (note,) = [line for line in out.splitlines() if line.startswith("note: --quantization")]
    assert (
        note.startswith("note: --quantization Int9 matches no spec of deepseek-r1-distill-qwen:7") and "Q4_K_M" in note
    )


def _fake_32b(folder: Path) -> Path:
    """A pytorch folder as local weights: a Qwen2 32B config.json and a safetensors header
    (detect reads headers only)."""
    import struct

    config = {"architectures": ["Qwen2ForCausalLM"], "hidden_size": 5120, "num_attention_heads": 40,
              "num_key_value_heads": 8, "num_hidden_layers": 64, "vocab_size": 152064,
              "max_position_embeddings": 131072, "torch_dtype": "bfloat16"}  # fmt: skip
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    header = {"w": {"dtype": "BF16", "shape": [6_250_000, 5120], "data_offsets": [0, 0]}, "__metadata__": {}}
    raw = json.dumps(header).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw)
    return folder


def test_local_weights_too_large_for_one_host_say_they_are_not_sharded(run_cli, tmp_path):
    doc = yaml.safe_load((EXAMPLES / "hosts" / "2x8xa100-cluster.yaml").read_text())
    for host in doc["hosts"]:  # two hosts of one 24 GiB GPU each
        host.pop("topology", None)
        host["gpus"] = [dict(host["gpus"][0], memory_total_bytes=24 << 30)]
    inv = tmp_path / "small.yaml"
    inv.write_text(yaml.safe_dump(doc))
    code, out, err = run_cli(
        "plan", "--hardware", inv, "--model", "deepseek-r1-distill-qwen", "--model-path", _fake_32b(tmp_path / "w")
    )
    assert code == 3, out + err
    assert "over several hosts: xinf-plan does not shard local weights (--model-path) over hosts" in err
