import copy
import json

import pytest

from xinf_planner.core.inventory import (
    Inventory,
    fingerprint,
    inventory_to_text,
    merge_inventories,
)
from xinf_planner.errors import InvalidInput
from xinf_planner.shell.documents import load_inventory

BASE = {
    "version": 1,
    "hosts": [
        {
            "name": "gpu-a",
            "worker_address": "10.0.0.11:30001",
            "os": "linux",
            "arch": "x86_64",
            "cpu_cores": 64,
            "memory_total_bytes": 549755813888,
            "gpus": [
                {
                    "index": 0,
                    "vendor": "nvidia",
                    "name": "NVIDIA H100 80GB HBM3",
                    "memory_total_bytes": 85520809984,
                    "compute_capability": "9.0",
                },
                {
                    "index": 1,
                    "vendor": "nvidia",
                    "name": "NVIDIA H100 80GB HBM3",
                    "memory_total_bytes": 85520809984,
                    "memory_used_bytes": 1 << 30,
                    "compute_capability": "9.0",
                },
            ],
            "topology": [["X", "NV18"], ["NV18", "X"]],
            "future_field": {"kept": True},
        }
    ],
}


def test_round_trip_keeps_fields_and_extras(tmp_path):
    inv = Inventory.from_dict(copy.deepcopy(BASE))
    assert inv.hosts[0].gpus[1].memory_free_bytes == 85520809984 - (1 << 30)
    assert inv.hosts[0].link(0, 1) == "NV18"
    assert inv.hosts[0].gpus[0].cc == (9, 0)
    p = tmp_path / "inv.yaml"
    p.write_text(inventory_to_text(inv))
    again = load_inventory(p)
    assert again.to_dict() == inv.to_dict()
    assert again.hosts[0].extra == {"future_field": {"kept": True}}
    pj = tmp_path / "inv.json"
    pj.write_text(inventory_to_text(inv, "json"))
    assert json.loads(pj.read_text())["hosts"][0]["name"] == "gpu-a"
    assert fingerprint(load_inventory(pj)) == fingerprint(inv)


@pytest.mark.parametrize(
    "mutate, path_fragment",
    [
        (lambda d: d["hosts"][0]["gpus"][0].update(vendor="nv"), "$.hosts[0].gpus[0].vendor"),
        (lambda d: d["hosts"][0].pop("cpu_cores"), "$.hosts[0]: 'cpu_cores' is required"),
        (lambda d: d["hosts"][0]["gpus"][1].update(index=0), "$.hosts[0].gpus[1].index"),
        (lambda d: d["hosts"][0].update(topology=[["X"]]), "$.hosts[0].topology"),
        (lambda d: d["hosts"][0].update(topology=[["NV4", "X"], ["X", "NV4"]]), "topology[0][0]"),
        (lambda d: d["hosts"].append(copy.deepcopy(d["hosts"][0])), "used twice"),
        (lambda d: d.update(version=2), "$.version"),
        (lambda d: d["hosts"][0]["gpus"][0].pop("compute_capability"), "compute_capability"),
        (lambda d: d["hosts"][0].update(worker_address="no-port"), "$.hosts[0].worker_address"),
    ],
)
def test_malformed_inventory_names_the_json_path(mutate, path_fragment):
    doc = copy.deepcopy(BASE)
    mutate(doc)
    with pytest.raises(InvalidInput) as err:
        Inventory.from_dict(doc)
    assert path_fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_merge_rejects_duplicate_names():
    a = Inventory.from_dict(copy.deepcopy(BASE))
    b = Inventory.from_dict(copy.deepcopy(BASE))
    with pytest.raises(InvalidInput, match="gpu-a"):
        merge_inventories([("a.yaml", a), ("b.yaml", b)])
    c = copy.deepcopy(BASE)
    c["hosts"][0]["name"] = "gpu-b"
    c["hosts"][0]["worker_address"] = "10.0.0.12:30001"
    merged = merge_inventories([("a.yaml", a), ("c.yaml", Inventory.from_dict(c))])
    assert [h.name for h in merged.hosts] == ["gpu-a", "gpu-b"]


def test_unparseable_file_is_one_line_error(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("version: 1\nhosts: [\n")
    with pytest.raises(InvalidInput) as err:
        load_inventory(p)
    assert "not valid YAML" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InvalidInput, match="not found"):
        load_inventory(tmp_path / "missing.yaml")
