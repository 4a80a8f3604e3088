"""What the xinf-plan extension costs inside Xinference, without a server: ``worker_metadata()``
(run in the worker's actor loop at registration and on every inventory request) on the NVML
answers recorded on real machines, and the plan route's work (``core/routes.plan_answer``) on a
cluster inventory built from those workers. Prints the median of N runs and the metadata size.

Run: python benchmarks/extension_hooks.py [N]   (the live route timings are printed by
tests/integration/test_extension_cluster.py)
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


def _median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    from support.fake_nvml import FIXTURES, replay

    from xinf_planner.core.routes import plan_answer
    from xinf_planner.core.workers import EXTENSION_NAME, inventory_from_workers
    from xinf_planner.shell.probe.workers import worker_metadata

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    print(f"runs: {runs} (median)")
    workers = []
    for i, path in enumerate(sorted(FIXTURES.glob("*.json"))):
        meta = worker_metadata(nvml=replay(path.stem))
        ms = _median_ms(lambda name=path.stem: worker_metadata(nvml=replay(name)), runs)
        gpus = len(meta["host"]["gpus"])
        print(f"worker_metadata() {path.stem:<18} {gpus} GPU(s)  {ms:6.1f} ms  {len(json.dumps(meta)):5d} bytes")
        meta["host"]["name"] = path.stem
        resources = {"extensions": {EXTENSION_NAME: meta}}
        workers.append({"address": f"10.0.0.{i + 1}:30001", "resources": resources, "models": []})
    inventory, _ = inventory_from_workers(workers)
    for intent in ({"model": "deepseek-r1-distill-qwen:7", "concurrency": 16}, {"model": "deepseek-r1-distill-qwen"}):
        body = json.dumps(intent).encode()
        status = plan_answer(body, inventory, "bench")[0]
        ms = _median_ms(lambda b=body: plan_answer(b, inventory, "bench"), max(3, runs // 4))
        print(f"plan route on {len(workers)} workers {json.dumps(intent)}: HTTP {status}, {ms:.0f} ms")


if __name__ == "__main__":
    main()
