"""The model catalog: architecture facts, Xinference's specs, quantisation data and the GPU table.

Pure: it reads only package data. See docs/contracts.md for the interface.
"""

from xinf_planner.core.catalog.gpus import (
    GpuInfo,
    all_gpus,
    cpu_default_bandwidth_gbps,
    lookup_gpu,
)
from xinf_planner.core.catalog.models import (
    ModelArch,
    all_models,
    families,
    get_model,
    models_of,
    normalize_size,
)
from xinf_planner.core.catalog.specs import DEFAULT_HUB, Spec, find_spec, specs_for

__all__ = [
    "DEFAULT_HUB",
    "GpuInfo",
    "ModelArch",
    "Spec",
    "all_gpus",
    "all_models",
    "cpu_default_bandwidth_gbps",
    "families",
    "find_spec",
    "get_model",
    "lookup_gpu",
    "models_of",
    "normalize_size",
    "specs_for",
]
