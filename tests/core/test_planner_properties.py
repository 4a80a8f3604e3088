"""Property tests over generated inventories and workloads: the planner returns a plan that
`validate` accepts, or an explained NothingFits, and never anything else; and the same input
gives a byte-identical plan.

GPU models, memory sizes and compute capabilities are those of the example inventories
(NVML names and totals recorded from real machines by the probes' fixtures).
"""

from functools import lru_cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.paths import EXAMPLES

from xinf_planner.core.documents import dump_document
from xinf_planner.core.inventory import Inventory
from xinf_planner.core.plan.validate import plan_errors
from xinf_planner.core.planning import make_plan
from xinf_planner.core.request import request_from_intent
from xinf_planner.errors import NothingFits
from xinf_planner.shell.documents import load_inventory


@lru_cache(maxsize=1)
def real_gpus() -> list[dict]:
    """One GPU record of each model in the example inventories."""
    seen = {}
    for path in sorted((EXAMPLES / "hosts").glob("*.yaml")):
        for host in load_inventory(path).to_dict()["hosts"]:
            for g in host["gpus"]:
                if g["vendor"] == "nvidia":
                    seen.setdefault(
                        g["name"], {k: g[k] for k in ("vendor", "name", "memory_total_bytes", "compute_capability")}
                    )
    return [seen[k] for k in sorted(seen)]


LINKS = ["NV4", "NV12", "PIX", "PXB", "PHB", "NODE", "SYS"]


@st.composite
def inventories(draw):
    n_hosts = draw(st.integers(1, 3))
    hosts = []
    for h in range(n_hosts):
        gpu = draw(st.sampled_from(real_gpus()))
        count = draw(st.sampled_from([0, 1, 2, 3, 4, 6, 8]))
        gpus = []
        for i in range(count):
            used = draw(st.sampled_from([0, 0, 0, 1 << 30, gpu["memory_total_bytes"] // 2]))
            gpus.append({**gpu, "index": i, "memory_used_bytes": used})
        host = {
            "name": f"h{h}",
            "os": "linux",
            "arch": "x86_64",
            "cpu_cores": draw(st.sampled_from([8, 32])),
            "memory_total_bytes": draw(st.sampled_from([32, 128, 512])) << 30,
            "gpus": gpus,
        }
        if n_hosts > 1 or draw(st.booleans()):
            host["worker_address"] = f"10.0.0.{h + 1}:30001"
        if count > 1 and draw(st.booleans()):
            link = draw(st.sampled_from(LINKS))
            host["topology"] = [["X" if r == c else link for c in range(count)] for r in range(count)]
        hosts.append(host)
    return Inventory.from_dict({"version": 1, "hosts": hosts})


MODELS = [
    "deepseek-r1-distill-qwen",
    "deepseek-r1-distill-qwen:1.5",
    "deepseek-r1-distill-qwen:7",
    "deepseek-r1-distill-qwen:14",
    "deepseek-r1-distill-qwen:32",
    "deepseek-r1-distill-llama:8",
    "deepseek-r1-distill-llama:70",
    "deepseek-r1:671",
]


@st.composite
def workloads(draw):
    doc = {
        "model": draw(st.sampled_from(MODELS)),
        "context_length": draw(st.sampled_from([512, 4096, 8192, 32768])),
        "concurrency": draw(st.sampled_from([1, 2, 4, 16, 64])),
        "objective": draw(st.sampled_from(["quality", "throughput", "latency", "balanced"])),
        "strategy": draw(st.sampled_from(["spread", "pack"])),
    }
    if draw(st.booleans()):
        doc["replicas"] = draw(st.integers(1, 3))
    if draw(st.booleans()):
        doc["headroom"] = draw(st.sampled_from([1, "10%"]))
    return request_from_intent(doc)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inventories(), workloads())
def test_a_plan_that_validates_or_an_explained_refusal(inventory, request):
    try:
        doc = make_plan(inventory, request)
    except NothingFits as exc:
        text = str(exc)
        assert text.startswith(("nothing fits", "nothing meets")) and "Tried" in text
        return
    assert plan_errors(doc) == [], plan_errors(doc)[:3]
    for dep in doc["deployments"]:
        if request.models[0].replicas is not None:
            assert dep["launch"]["replica"] == request.models[0].replicas
        assert dep["launch"]["context_length"] == request.models[0].context_length
        # memory holds at least one sequence of the whole context; the typical ones meet the targets
        assert dep["estimate"]["served_sequences"] >= 1
        if dep["estimate"]["served_sequences"] < request.models[0].concurrency:
            assert any("fewer than the" in r and "wait" in r for r in dep["reasons"])
        serving = dep["estimate"]["serving"]  # every plan meets its stated targets, by its own figures
        mreq = request.models[0]
        assert serving["meets_targets"] and serving["concurrency"] == mreq.concurrency
        assert serving["ttft_s"] * 1000 <= mreq.max_ttft_ms and serving["tpot_s"] * 1000 <= mreq.max_tpot_ms
        assert serving["max_concurrency_within_targets"] >= mreq.concurrency


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inventories(), workloads())
def test_same_input_byte_identical_plan(inventory, request):
    try:
        first = dump_document(make_plan(inventory, request))
    except NothingFits as exc:
        try:
            make_plan(inventory, request)
        except NothingFits as again:
            assert str(again) == str(exc)
        return
    assert dump_document(make_plan(Inventory.from_dict(inventory.to_dict()), request)) == first
