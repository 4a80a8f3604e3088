"""Golden outputs: every example inventory planned, estimated and rendered, hashed.

The planner, the estimator and the renderers are pure, so the same inputs must give the
same bytes. This tool runs a fixed sweep of commands in-process (through the real CLI entry
point) and records a sha256 of each command's exit code, stdout and stderr in
``tests/golden/outputs.sha256.json``; ``tests/core/test_golden.py`` runs the sweep again and
compares. A change that means to alter plans regenerates the manifest and says why:

    python tools/golden.py --write            # rewrite the manifest
    python tools/golden.py --dump DIR         # write every output to DIR, to diff two trees
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOSTS = ROOT / "examples" / "hosts"
MANIFEST = ROOT / "tests" / "golden" / "outputs.sha256.json"

MODELS = [
    "deepseek-r1-distill-qwen",
    "deepseek-r1-distill-qwen:7",
    "deepseek-r1-distill-qwen:32",
    "deepseek-r1-distill-llama:70",
    "deepseek-r1-0528-qwen3:8",
    "deepseek-r1:671",
]
VARIANTS = {
    "default": [],
    "16k-x16": ["--context-length", "16384", "--concurrency", "16"],
    "throughput": ["--objective", "throughput", "--concurrency", "32"],
    "latency": ["--objective", "latency", "--context-length", "4096"],
    "quality-x4": ["--objective", "quality", "--concurrency", "4"],
}
ESTIMATES = {
    "vllm-7b-h100": [
        "-m",
        "deepseek-r1-distill-qwen:7",
        "--engine",
        "vllm",
        "--gpu",
        "NVIDIA H100 80GB HBM3",
        "--context-length",
        "16384",
        "--concurrency",
        "16",
    ],
    "vllm-32b-tp4-4090": [
        "-m",
        "deepseek-r1-distill-qwen:32",
        "--engine",
        "vllm",
        "--tp",
        "4",
        "--gpu",
        "RTX 4090",
        "--context-length",
        "8192",
    ],
    "sglang-8b-a10": ["-m", "deepseek-r1-distill-llama:8", "--engine", "sglang", "--gpu", "NVIDIA A10"],
    "llamacpp-7b-4090": [
        "-m",
        "deepseek-r1-distill-qwen:7",
        "--engine",
        "llama.cpp",
        "-q",
        "Q4_K_M",
        "--gpu",
        "RTX 4090",
        "--context-length",
        "8192",
        "--n-parallel",
        "4",
    ],
    "cpu-1.5b": ["-m", "deepseek-r1-distill-qwen:1.5", "--engine", "cpu", "--host-memory-gib", "16"],
    "mlx-32b-m2": [
        "-m",
        "deepseek-r1-distill-qwen:32",
        "--engine",
        "mlx",
        "--gpu",
        "Apple M2 Ultra",
        "--gpu-memory-gib",
        "192",
    ],
    "r1-tp8-h200": ["-m", "deepseek-r1:671", "--engine", "vllm", "--tp", "8", "--gpu", "NVIDIA H200"],
}


def cases() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for inv in sorted(HOSTS.glob("*.yaml")):
        for model in MODELS:
            for name, flags in VARIANTS.items():
                key = f"plan/{inv.stem}/{model.replace(':', '-')}/{name}"
                out[key] = ["plan", "--hardware", str(inv.relative_to(ROOT)), "--model", model, *flags]
        out[f"plan-table/{inv.stem}"] = [
            "plan",
            "--hardware",
            str(inv.relative_to(ROOT)),
            "--model",
            "deepseek-r1-distill-qwen",
            "--format",
            "table",
        ]
    for name, args in ESTIMATES.items():
        out[f"estimate/{name}"] = ["estimate", *args, "--format", "json"]
        out[f"estimate-table/{name}"] = ["estimate", *args]
    cluster = ROOT / "examples" / "cluster"
    out["plan/cluster/r1-fp8"] = [
        "plan",
        "--hardware",
        "examples/cluster/2x8xh100.yaml",
        "--intent",
        "examples/cluster/intent-r1-fp8.yaml",
    ]
    for as_ in ("shell", "python", "json", "html"):
        out[f"render/cluster-r1-fp8/{as_}"] = [
            "render",
            str((cluster / "plan-r1-fp8.yaml").relative_to(ROOT)),
            "--as",
            as_,
        ]
    return out


def run(args: list[str]) -> tuple[int, str, str]:
    from xinf_planner.cli.main import main

    out, err = StringIO(), StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def digest(code: int, out: str, err: str) -> str:
    text = f"exit {code}\n--- stdout\n{out}\n--- stderr\n{err}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sweep(dump: Path | None = None) -> dict[str, str]:
    import os

    os.chdir(ROOT)
    result = {}
    for key, args in cases().items():
        code, out, err = run(args)
        result[key] = digest(code, out, err)
        if dump is not None:
            path = dump / (key + ".txt")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                f"$ xinf-plan {' '.join(args)}\nexit {code}\n--- stdout\n{out}\n--- stderr\n{err}", encoding="utf-8"
            )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the manifest")
    parser.add_argument("--dump", metavar="DIR", help="also write every output under DIR")
    ns = parser.parse_args()
    result = sweep(Path(ns.dump) if ns.dump else None)
    if ns.write:
        MANIFEST.parent.mkdir(parents=True, exist_ok=True)
        MANIFEST.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {len(result)} digests to {MANIFEST.relative_to(ROOT)}")
        return 0
    want = json.loads(MANIFEST.read_text(encoding="utf-8"))
    changed = sorted(k for k in set(want) | set(result) if want.get(k) != result.get(k))
    for k in changed:
        print(f"changed: {k}")
    print(f"{len(result) - len(changed)} of {len(result)} outputs unchanged")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
