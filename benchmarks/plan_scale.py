"""Planning time against cluster size: 8, 64, 512 and 1024 GPUs (8 per host), three models;
then the multi-host sharding search (R1 671B FP8, too large for one host) on 16 to 1024 GPUs.

Prints the wall time of one `make_plan` call: the first (the process's package-data caches
cold) and the best of 3 (each call has a fresh planner with an empty estimate memo), and the
plan's size. The hosts are DGX-H100-like: 8× H100 80GB on NVSwitch
(the GPU record is the one in examples/hosts/8xh100-sxm.yaml). Run:

    python benchmarks/plan_scale.py
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xinf_planner.core.documents import dump_document  # noqa: E402
from xinf_planner.core.inventory import Inventory  # noqa: E402
from xinf_planner.core.planning import make_plan  # noqa: E402
from xinf_planner.core.request import request_from_intent  # noqa: E402
from xinf_planner.shell.documents import load_inventory  # noqa: E402

INTENT = {
    "models": [
        {"model": "deepseek-r1-distill-qwen:32", "share": 2, "concurrency": 64},
        {"model": "deepseek-r1-distill-llama", "share": 1, "concurrency": 32},
        {"model": "deepseek-r1-distill-qwen:7", "share": 1, "concurrency": 128},
    ],
    "context_length": 16384,
    "objective": "balanced",
}

# One model too large for any single host: DeepSeek-R1 671B at its native FP8 (the pytorch spec)
# on vLLM, sharded over hosts (n_worker); exercises the multi-host search.
SHARDED_INTENT = {
    "model": "deepseek-r1:671",
    "formats": ["pytorch"],
    "engines": ["vllm"],
    "context_length": 16384,
    "concurrency": 8,
    "objective": "quality",
}


def cluster(hosts: int) -> Inventory:
    base = load_inventory(ROOT / "examples" / "hosts" / "8xh100-sxm.yaml").to_dict()["hosts"][0]
    out = []
    for i in range(hosts):
        h = copy.deepcopy(base)
        h["name"] = f"node-{i:04d}"
        h["worker_address"] = f"10.{i // 250}.{i % 250}.1:30001"
        out.append(h)
    return Inventory.from_dict({"version": 1, "hosts": out})


def table(title: str, intent: dict, sizes: tuple[int, ...]) -> None:
    request = request_from_intent(intent)
    print(title)
    print(f"{'GPUs':>6} {'hosts':>6} {'first s':>8} {'best of 3 s':>12} {'replicas':>9} {'plan KiB':>9}")
    for hosts in sizes:
        inv = cluster(hosts)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            doc = make_plan(inv, request)
            times.append(time.perf_counter() - t)
        replicas = sum(d["launch"]["replica"] for d in doc["deployments"])
        size = len(dump_document(doc).encode()) / 1024
        print(f"{hosts * 8:>6} {hosts:>6} {times[0]:>8.3f} {min(times):>12.3f} {replicas:>9} {size:>9.0f}")


def main() -> None:
    table("three models (32B, Llama size chosen, 7B), balanced:", INTENT, (1, 8, 64, 128))
    print()
    table("DeepSeek-R1 671B FP8 on vLLM, one replica sharded over hosts (n_worker):", SHARDED_INTENT, (2, 8, 64, 128))


if __name__ == "__main__":
    main()
