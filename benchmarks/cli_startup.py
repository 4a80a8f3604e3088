"""Cold start of `xinf-plan --help` against `python -c "import click, yaml"`.

The target (issue 2): within about 3x of the bare click + yaml import. Prints the medians
over N runs of each, and the ratio. Run: python benchmarks/cli_startup.py [N]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def _median_seconds(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    py = sys.executable
    base = _median_seconds([py, "-c", "import click, yaml"], runs)
    cli = _median_seconds([py, "-m", "xinf_planner", "--help"], runs)
    sub = _median_seconds([py, "-m", "xinf_planner", "plan", "--help"], runs)
    print(f"runs per command: {runs} (median wall time)")
    rows = [('python -c "import click, yaml"', base), ("xinf-plan --help", cli), ("xinf-plan plan --help", sub)]
    for label, seconds in rows:
        print(f"{label:<34} {seconds * 1000:7.1f} ms   {seconds / base:4.2f}x")


if __name__ == "__main__":
    main()
