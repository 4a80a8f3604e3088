"""`xinf-plan inspect` through the real entry point, on this CPU-only machine."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import pytest
import yaml
from support.paths import EXAMPLES as _EXAMPLES

from xinf_planner.core.inventory import Inventory
from xinf_planner.shell.documents import load_inventory

EXAMPLES = _EXAMPLES / "hosts"


def _mem_total() -> int:
    text = Path("/proc/meminfo").read_text()
    return int(re.search(r"^MemTotal:\s+(\d+) kB$", text, re.M).group(1)) * 1024


def _check_this_host(doc: dict, name: str | None = None):
    inv = Inventory.from_dict(doc)
    (host,) = inv.hosts
    assert host.cpu_cores == len(os.sched_getaffinity(0))
    assert host.memory_total_bytes == _mem_total()
    assert host.name == (name or socket.gethostname())
    if not Path("/dev/nvidiactl").exists():
        assert host.gpus == [] and any("no NVIDIA GPUs" in n for n in host.notes)
    return host


@pytest.mark.parametrize("fmt, parse", [("json", json.loads), ("yaml", yaml.safe_load)])
def test_inspect_prints_a_valid_inventory(run_cli, fmt, parse):
    code, out, err = run_cli("inspect", "--format", fmt)
    assert code == 0, err
    _check_this_host(parse(out))


def test_default_format_off_a_terminal_is_yaml(run_cli):
    code, out, _ = run_cli("inspect", "--name", "box-1", "--worker-address", "10.0.0.9:30001")
    assert code == 0
    host = _check_this_host(yaml.safe_load(out), "box-1")
    assert host.worker_address == "10.0.0.9:30001"


def test_table(run_cli):
    code, out, _ = run_cli("inspect", "--format", "table", "--name", "box-1")
    assert code == 0
    first = out.splitlines()[0]
    assert first.startswith("host box-1: linux")
    assert f"{len(os.sched_getaffinity(0))} logical CPUs" in first
    assert f"memory {_mem_total() / (1 << 30):.1f} GiB" in first
    if not Path("/dev/nvidiactl").exists():
        assert "  no GPUs" in out and "note: no NVIDIA GPUs" in out


def test_table_of_a_merged_cluster_shows_topology(run_cli):
    code, out, _ = run_cli("inspect", "--format", "table", "--merge", EXAMPLES / "4x4090-pcie.yaml")
    assert code == 0
    assert "topology (nvidia-smi topo -m):" in out
    assert re.search(r"GPU0\s+X\s+PIX\s+NODE\s+NODE", out)


@pytest.mark.parametrize(
    "suffix, fmt, parse", [(".yaml", None, yaml.safe_load), (".json", None, json.loads), (".txt", "json", json.loads)]
)
def test_output_file_is_written_atomically(run_cli, tmp_path, suffix, fmt, parse):
    target = tmp_path / f"inv{suffix}"
    target.write_text("old content that must be replaced whole\n")
    args = ["inspect", "-o", target] + (["--format", fmt] if fmt else [])
    code, out, err = run_cli(*args)
    assert code == 0 and out == ""
    assert err.startswith(f"wrote {target}: 1 host")
    _check_this_host(parse(target.read_text()))
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temp file left


def test_table_to_a_file_is_a_usage_error(run_cli, tmp_path):
    code, _, err = run_cli("inspect", "--format", "table", "-o", tmp_path / "x.yaml")
    assert code == 2 and "yaml or json" in err


def test_bad_worker_address_is_a_usage_error(run_cli):
    code, out, err = run_cli("inspect", "--worker-address", "10.0.0.9")
    assert code == 2 and out == ""
    assert "'10.0.0.9' is not IP:PORT" in err


def _write(path: Path, doc) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def _host_doc(name: str, worker: str) -> dict:
    return {
        "version": 1,
        "hosts": [
            {
                "name": name,
                "worker_address": worker,
                "os": "linux",
                "arch": "x86_64",
                "cpu_cores": 8,
                "memory_total_bytes": 34359738368,
                "gpus": [],
            }
        ],
    }


def test_merge_joins_hosts(run_cli, tmp_path):
    a = _write(tmp_path / "a.yaml", _host_doc("gpu-a", "10.0.0.11:30001"))
    b = _write(tmp_path / "b.yaml", _host_doc("gpu-b", "10.0.0.12:30001"))
    code, _, err = run_cli("inspect", "--merge", a, b, "-o", tmp_path / "cluster.yaml")
    assert code == 0, err
    merged = load_inventory(tmp_path / "cluster.yaml")
    assert [(h.name, h.worker_address) for h in merged.hosts] == [
        ("gpu-a", "10.0.0.11:30001"),
        ("gpu-b", "10.0.0.12:30001"),
    ]


def test_merge_of_a_malformed_inventory_names_file_and_json_path(run_cli, tmp_path):
    good = _write(tmp_path / "a.yaml", _host_doc("gpu-a", "10.0.0.11:30001"))
    doc = _host_doc("gpu-b", "10.0.0.12:30001")
    doc["hosts"][0]["gpus"] = [{"index": 0, "vendor": "nvidai", "name": "X", "memory_total_bytes": 1}]
    bad = _write(tmp_path / "b.yaml", doc)
    code, out, err = run_cli("inspect", "--merge", good, bad)
    assert code == 1 and out == ""
    assert err.count("\n") == 1
    assert str(bad) in err and "$.hosts[0].gpus[0].vendor" in err and "nvidai" in err


def test_merge_rejects_a_name_used_twice(run_cli, tmp_path):
    a = _write(tmp_path / "a.yaml", _host_doc("gpu-a", "10.0.0.11:30001"))
    b = _write(tmp_path / "b.yaml", _host_doc("gpu-a", "10.0.0.12:30001"))
    code, _, err = run_cli("inspect", "--merge", a, b)
    assert code == 1 and "'gpu-a'" in err and err.count("\n") == 1


def test_merge_rejects_a_worker_address_used_twice(run_cli, tmp_path):
    a = _write(tmp_path / "a.yaml", _host_doc("gpu-a", "10.0.0.11:30001"))
    b = _write(tmp_path / "b.yaml", _host_doc("gpu-b", "10.0.0.11:30001"))
    code, _, err = run_cli("inspect", "--merge", a, b)
    assert code == 1 and "10.0.0.11:30001" in err


@pytest.mark.parametrize("args", [["--merge"], ["some.yaml"], ["--merge", "x.yaml", "--name", "n"]])
def test_usage_errors(run_cli, args):
    code, _, err = run_cli("inspect", *args)
    assert code == 2 and err


def test_missing_merge_file(run_cli, tmp_path):
    code, _, err = run_cli("inspect", "--merge", tmp_path / "nope.yaml")
    assert code == 1 and "not found" in err


def test_output_is_deterministic_for_the_same_input(run_cli):
    runs = [run_cli("inspect", "--merge", EXAMPLES / "8xh100-sxm.yaml", "--format", "json")[1] for _ in range(2)]
    assert runs[0] == runs[1] and runs[0]


def test_inspect_measures_the_memory_bandwidth_unless_told(run_cli, tmp_path):
    """A real, bounded measurement by default; stated by hand; skipped; refused in other modes."""
    import time

    out = tmp_path / "inv.yaml"
    t0 = time.perf_counter()
    code, _, err = run_cli("inspect", "-o", str(out))
    assert code == 0, err
    assert time.perf_counter() - t0 < 10  # the probe is bounded at about 2 s
    host = yaml.safe_load(out.read_text())["hosts"][0]
    assert 0.5 < host["memory_bandwidth_measured_gbps"] < 5000
    assert any(n.startswith("memory bandwidth measured:") for n in host["notes"])

    code, _, err = run_cli("inspect", "--memory-bandwidth", "41.5", "-o", str(out))
    assert code == 0, err
    assert yaml.safe_load(out.read_text())["hosts"][0]["memory_bandwidth_measured_gbps"] == 41.5

    code, _, err = run_cli("inspect", "--no-bandwidth", "-o", str(out))
    assert code == 0, err
    assert "memory_bandwidth_measured_gbps" not in yaml.safe_load(out.read_text())["hosts"][0]

    for args in (
        ["--no-bandwidth", "--memory-bandwidth", "40"],
        ["--merge", str(out), "--no-bandwidth"],
        ["--memory-bandwidth", "-3"],
        ["--memory-bandwidth", "nan"],
    ):
        code, _, err = run_cli("inspect", *args)
        assert code == 2 and "Traceback" not in err, (args, err)
