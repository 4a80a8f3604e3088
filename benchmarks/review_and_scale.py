"""The review page and `scale` against cluster size: 8, 64, 512 and 1024 GPUs (8 per host,
the DGX-H100-like hosts and three-model workload of plan_scale.py).

Prints, best of 3: the time `render --as html` takes for the plan and the page's size, and
the time `scale` takes to drop the first deployment's last replica and to add it back (the
placement search and the memory model, on the plan's embedded inventory). Run:

    python benchmarks/review_and_scale.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from plan_scale import INTENT, cluster  # noqa: E402

from xinf_planner.core.planning import make_plan  # noqa: E402
from xinf_planner.core.planning.scale import scale_plan  # noqa: E402
from xinf_planner.core.render import TEMPLATES, render  # noqa: E402
from xinf_planner.core.request import request_from_intent  # noqa: E402
from xinf_planner.shell.templates import read_templates  # noqa: E402


def best_of(n: int, fn) -> tuple[float, object]:
    times, out = [], None
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    templates = read_templates(TEMPLATES["html"])
    print("| GPUs | hosts | page KiB | render ms | scale -1 ms | scale +1 ms |")
    print("|---|---|---|---|---|---|")
    for hosts in (1, 8, 64, 128):
        doc = make_plan(cluster(hosts), request_from_intent(INTENT))
        t_html, page = best_of(3, lambda doc=doc: render(doc, "html", templates))
        dep = doc["deployments"][0]
        n = dep["launch"]["replica"]
        if n > 1:
            t_down, smaller = best_of(3, lambda doc=doc, dep=dep, n=n: scale_plan(doc, n - 1, dep["name"]).doc)
            t_up, _ = best_of(3, lambda smaller=smaller, dep=dep, n=n: scale_plan(smaller, n, dep["name"]))
            down, up = f"{t_down * 1000:.0f}", f"{t_up * 1000:.0f}"
        else:
            down = up = "-"
        print(f"| {hosts * 8} | {hosts} | {len(page.encode()) / 1024:.0f} | {t_html * 1000:.0f} | {down} | {up} |")


if __name__ == "__main__":
    main()
