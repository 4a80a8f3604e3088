"""Plans across hosts: one replica sharded over several (n_worker), TP x PP, the environment,
validate's rules for multi-host placements, spread vs pack, heterogeneous clusters.

Inventories: examples/cluster/2x8xh100.yaml (two of the recorded DGX H100 of
examples/hosts/8xh100-sxm.yaml), and nodes of 8 RTX 4090 built from the GPU entry of
examples/hosts/4x4090-pcie.yaml (its NVML figures), without topology.
"""

from __future__ import annotations

import copy

import pytest
from support.intents import R1_FP8  # noqa: E402
from support.paths import EXAMPLES

from xinf_planner.core.inventory import Inventory
from xinf_planner.core.plan.validate import plan_errors
from xinf_planner.core.planning import make_plan
from xinf_planner.core.request import request_from_intent
from xinf_planner.shell.documents import load_inventory


def h100_pair() -> Inventory:
    return load_inventory(EXAMPLES / "cluster/2x8xh100.yaml")


def rtx4090_nodes(n: int, gpus: int = 8) -> Inventory:
    src = load_inventory(EXAMPLES / "hosts/4x4090-pcie.yaml").to_dict()["hosts"][0]
    hosts = []
    for i in range(n):
        h = copy.deepcopy(src)
        h.update(name=f"node-{i + 1}", worker_address=f"10.0.2.{11 + i}:30001")
        h.pop("topology", None)
        h["gpus"] = [
            {**copy.deepcopy(src["gpus"][0]), "index": k, "uuid": f"GPU-{i}-{k}", "numa_node": 0} for k in range(gpus)
        ]
        hosts.append(h)
    return Inventory.from_dict({"version": 1, "hosts": hosts})


def plan(inv: Inventory, **intent) -> dict:
    return make_plan(inv, request_from_intent(intent))


def test_r1_fp8_shards_over_two_h100_nodes_and_validates():
    inv = h100_pair()
    doc = plan(inv, **R1_FP8)
    dep = doc["deployments"][0]
    launch = dep["launch"]
    assert plan_errors(doc) == []
    assert launch["n_worker"] == 2 and launch["replica"] == 1 and "replica_config" not in launch
    assert sorted(launch["worker_ip"].split(",")) == sorted(h.worker_address for h in inv.hosts)
    assert launch["gpu_idx"] == list(range(8)) and launch["n_gpu"] == 8
    assert (launch["tensor_parallel_size"], launch["pipeline_parallel_size"]) == (8, 2)
    assert dep["placement"] == [{"hosts": ["h100-node-1", "h100-node-2"], "gpus": list(range(8))}]
    # the weights alone exceed what one node holds, and the estimate fits what each GPU has
    per_gpu = dep["estimate"]["per_gpu_gib"]
    assert per_gpu["weights"] * 16 > 8 * inv.hosts[0].gpus[0].memory_total_gib
    assert per_gpu["total"] <= inv.hosts[0].gpus[0].memory_free_gib
    assert set(dep["env"]) == {"NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME"}
    assert all(v.startswith("<SET-ME") for v in dep["env"].values())
    text = " ".join(dep["reasons"])
    assert "PP across the 2 hosts" in text and "NCCL_SOCKET_IFNAME" in text


def test_fast_interconnect_takes_tp_across_every_gpu():
    doc = plan(h100_pair(), **R1_FP8, interconnect="infiniband")
    launch = doc["deployments"][0]["launch"]
    assert (launch["tensor_parallel_size"], launch["pipeline_parallel_size"]) == (16, 1)
    assert "infiniband" in " ".join(doc["deployments"][0]["reasons"])
    assert plan_errors(doc) == []


def test_a_model_that_fits_one_host_is_not_sharded():
    doc = plan(
        h100_pair(),
        model="deepseek-r1-distill-llama:70",
        formats=["pytorch"],
        engines=["vllm"],
        context_length=8192,
        concurrency=4,
    )
    dep = doc["deployments"][0]
    assert "n_worker" not in dep["launch"] and all("host" in p for p in dep["placement"])
    assert dep["launch"]["replica"] == 1  # one replica meets 4 users: no more GPUs than that
    two = plan(
        h100_pair(),
        model="deepseek-r1-distill-llama:70",
        formats=["pytorch"],
        engines=["vllm"],
        context_length=8192,
        concurrency=4,
        replicas=2,
    )["deployments"][0]
    assert "n_worker" not in two["launch"]
    assert sorted(p["host"] for p in two["placement"]) == ["h100-node-1", "h100-node-2"]  # spread


def test_llama_70b_bf16_on_two_nodes_of_8x24gb():
    inv = rtx4090_nodes(2)
    one = rtx4090_nodes(1)
    intent = dict(
        model="deepseek-r1-distill-llama:70",
        formats=["pytorch"],
        quantizations=["none"],  # bf16 weights: no FP8 at load
        engines=["vllm"],
        context_length=131072,
        concurrency=2,
    )
    from xinf_planner.errors import NothingFits

    with pytest.raises(NothingFits):
        plan(one, **intent)  # one node of 8x 24 GB: 70B in bf16 leaves no room for one 131072-token sequence
    doc = plan(inv, **intent)
    launch = doc["deployments"][0]["launch"]
    assert launch["n_worker"] == 2
    assert launch["tensor_parallel_size"] * launch["pipeline_parallel_size"] == 2 * launch["n_gpu"]
    assert plan_errors(doc) == []


def _broken(mutate) -> list[str]:
    doc = plan(h100_pair(), **R1_FP8)
    mutate(doc["deployments"][0])
    return [f"{p}: {m}" for p, m in plan_errors(doc)]


def test_validate_catches_wrong_multi_host_placements():
    assert any(
        "not in the embedded inventory" in e
        for e in _broken(lambda d: d["placement"][0]["hosts"].__setitem__(1, "ghost"))
    )
    assert any("n_gpu" in e for e in _broken(lambda d: d["launch"].__setitem__("n_gpu", 4)))
    assert any("n_worker" in e for e in _broken(lambda d: d["launch"].__setitem__("n_worker", 3)))
    assert any("worker_ip" in e for e in _broken(lambda d: d["launch"].__setitem__("worker_ip", "10.0.1.11:30001")))
    assert any(
        "tensor_parallel_size" in e for e in _broken(lambda d: d["launch"].__setitem__("tensor_parallel_size", 4))
    )

    def with_replica_config(d):
        d["launch"]["replica_config"] = [{"devices": [{"worker_ip": "10.0.1.11:30001"}]}]

    assert any("n_worker" in e and "replica_config" in e for e in _broken(with_replica_config))

    def gpu_missing(d):
        d["placement"][0]["gpus"] = d["launch"]["gpu_idx"] = list(range(1, 9))

    assert any("has no GPU 8" in e for e in _broken(gpu_missing))


def test_validate_refuses_hosts_of_different_gpu_counts():
    inv = h100_pair()
    doc = plan(inv, **R1_FP8)
    hosts = doc["inventory"]["document"]["hosts"]
    hosts[1]["gpus"] = hosts[1]["gpus"][:4]  # the second node has only 4 GPUs
    hosts[1].pop("topology", None)
    from xinf_planner.core.inventory import fingerprint

    doc["inventory"]["fingerprint"] = fingerprint(Inventory.from_dict(doc["inventory"]["document"]))
    errors = plan_errors(doc)
    assert any("hosts[1].gpus" in p and "has no GPU 4" in m for p, m in errors)


def test_spread_and_pack_over_hosts():
    inv = load_inventory(EXAMPLES / "hosts/2x8xa100-cluster.yaml")
    common = dict(model="deepseek-r1-distill-qwen:7", engines=["vllm"], replicas=2, context_length=8192)
    spread = plan(inv, **common)["deployments"][0]
    pack = plan(inv, **common, strategy="pack")["deployments"][0]
    assert len({p["host"] for p in spread["placement"]}) == 2
    assert len({p["host"] for p in pack["placement"]}) == 1
    workers = [c["devices"][0]["worker_ip"] for c in spread["launch"]["replica_config"]]
    assert sorted(workers) == sorted(h.worker_address for h in inv.hosts)


def test_heterogeneous_hosts_keep_a_deployment_uniform():
    a100 = load_inventory(EXAMPLES / "hosts/2x8xa100-cluster.yaml").to_dict()["hosts"][0]
    t4 = load_inventory(EXAMPLES / "hosts/6xt4.yaml").to_dict()["hosts"][0]
    t4["worker_address"] = "10.0.0.21:30001"
    inv = Inventory.from_dict({"version": 1, "hosts": [a100, t4]})
    doc = plan(inv, model="deepseek-r1-distill-qwen:7", engines=["vllm"], replicas=3, context_length=8192)
    dep = doc["deployments"][0]
    kinds = {inv.host(p["host"]).gpu(p["gpus"][0]).name for p in dep["placement"]}
    widths = {len(p["gpus"]) for p in dep["placement"]}
    assert len(kinds) == 1 and len(widths) == 1
    assert any(r.startswith("Uniform:") for r in dep["reasons"])
    assert plan_errors(doc) == []


def test_the_committed_cluster_example_is_what_the_planner_writes(tmp_path, monkeypatch, run_cli):
    """examples/cluster/plan-r1-fp8.yaml must not go stale: regenerate it and compare bytes."""
    from support.paths import ROOT

    monkeypatch.chdir(ROOT)
    out = tmp_path / "plan.yaml"
    code, _, err = run_cli(
        "plan",
        "--hardware",
        "examples/cluster/2x8xh100.yaml",
        "--intent",
        "examples/cluster/intent-r1-fp8.yaml",
        "-o",
        out,
    )
    assert code == 0, err
    assert out.read_text() == (ROOT / "examples" / "cluster" / "plan-r1-fp8.yaml").read_text()
