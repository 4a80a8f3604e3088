"""The GPU table (``data/gpus.yaml``): memory, bandwidth and compute capability by NVML name."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from xinf_planner.core.catalog._data import load
from xinf_planner.core.units import GIB


@dataclass(frozen=True)
class GpuInfo:
    name: str
    memory_bytes: int | None  # NVML total; None for Apple (unified memory, per machine)
    bandwidth_gbps: float
    cc: str | None
    source: str
    cuda_total_gib: float | None = None  # what cudaMemGetInfo reports, where a log shows it
    tflops: float | None = None  # dense 16-bit tensor TFLOPS (datasheet)
    tflops_fp8: float | None = None  # dense FP8 tensor TFLOPS (CC >= 8.9)
    p2p: bool = True  # GPU peer-to-peer over PCIe (GeForce RTX 40/50: disabled by the driver)

    @property
    def usable_total_gib(self) -> float | None:
        """The total an engine budgets against: CUDA's figure when known, else NVML's."""
        if self.cuda_total_gib is not None:
            return self.cuda_total_gib
        return None if self.memory_bytes is None else self.memory_bytes / GIB


def normalize_gpu_name(name: str) -> str:
    text = re.sub(r"[-_]", " ", str(name or "").lower())
    text = re.sub(r"\b(nvidia|geforce|tesla)\b", " ", text)
    return " ".join(text.split())


@lru_cache(maxsize=None)
def _index() -> dict[str, GpuInfo]:
    data = load("gpus.yaml")
    index: dict[str, GpuInfo] = {}
    for row in data["gpus"]:
        info = GpuInfo(
            name=row["name"],
            memory_bytes=row["memory_mib"] * 2**20,
            bandwidth_gbps=float(row["bandwidth_gbps"]),
            cc=row["cc"],
            source=row["source"],
            cuda_total_gib=row.get("cuda_total_gib"),
            tflops=row.get("tflops"),
            tflops_fp8=row.get("tflops_fp8"),
            p2p=bool(row.get("p2p", True)),
        )
        for alias in [row["name"], *row["names"]]:
            index.setdefault(normalize_gpu_name(alias), info)
    for row in data["apple"]:
        info = GpuInfo(
            name=row["name"],
            memory_bytes=None,
            bandwidth_gbps=float(row["bandwidth_gbps"]),
            cc=None,
            source=row["source"],
            tflops=row.get("tflops"),
        )
        index.setdefault(normalize_gpu_name(row["name"]), info)
    return index


def lookup_gpu(name: str) -> GpuInfo | None:
    """Exact match on the normalised name first; else the longest known name the input ends with
    (so 'NVIDIA H100 80GB HBM3' and 'H100 80GB HBM3' match, and 'A10' never matches 'A100')."""
    key = normalize_gpu_name(name)
    index = _index()
    if key in index:
        return index[key]
    best = None
    for alias, info in index.items():
        if re.search(rf"(^|\s){re.escape(alias)}$", key) and (best is None or len(alias) > len(best[0])):
            best = (alias, info)
    return best[1] if best else None


def all_gpus() -> list[GpuInfo]:
    seen, out = set(), []
    for info in _index().values():
        if info.name not in seen:
            seen.add(info.name)
            out.append(info)
    return out


def cpu_default_bandwidth_gbps() -> float:
    return float(load("gpus.yaml")["cpu_default"]["bandwidth_gbps"])
