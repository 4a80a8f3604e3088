"""A stand-in for the ``pynvml`` module that replays NVML answers recorded on real machines.

A fixture (tests/support/fixtures/nvml/*.json, written by tools/record_nvml.py or assembled from
published nvidia-smi output) holds, per NVML function, the answer to each call:
``calls[function][args]``, where a device handle in ``args`` is written as its index
and several arguments are joined by commas. An answer ``{"error": "NOT_SUPPORTED"}``
is raised as pynvml's own exception (``pynvml.NVMLError(NVML_ERROR_NOT_SUPPORTED)``,
an ``NVMLError_NotSupported``).

The stand-in returns what pynvml returns: str for names, ``c_nvmlMemory_t`` and
``nvmlPciInfo_t`` ctypes structures, ``c_nvmlDevice_t`` handles, tuples, lists of
``nvmlFriendlyObject``. Constants and exception classes are pynvml's own. A call
that was not recorded fails the test (``Unrecorded``), never guesses.
"""

from __future__ import annotations

import ctypes
import json
import types
from pathlib import Path

import pynvml

FIXTURES = Path(__file__).parent / "fixtures" / "nvml"
_HANDLE_BASE = 0x10000


class Unrecorded(AssertionError):
    """The probe made a call the fixture has no answer for."""


def _handle(index: int):
    return ctypes.cast(ctypes.c_void_p(_HANDLE_BASE + index), pynvml.c_nvmlDevice_t)


def _index(handle) -> int:
    return ctypes.cast(handle, ctypes.c_void_p).value - _HANDLE_BASE


def _memory(d):
    return pynvml.c_nvmlMemory_t(d["total"], d["free"], d["used"])


def _pci(d):
    info = pynvml.nvmlPciInfo_t()
    for key in ("domain", "bus", "device", "pciDeviceId", "pciSubSystemId"):
        setattr(info, key, d.get(key, 0))
    info.busId = d["busId"].encode()
    info.busIdLegacy = d.get("busIdLegacy", d["busId"][-12:]).encode()
    return info


def _processes(items):
    return [pynvml.nvmlFriendlyObject(dict(p)) for p in items]


# how each recorded JSON answer becomes the value pynvml would return
_DECODE = {
    "nvmlDeviceGetHandleByIndex": lambda v: _handle(v),
    "nvmlDeviceGetMemoryInfo": _memory,
    "nvmlDeviceGetPciInfo": _pci,
    "nvmlDeviceGetNvLinkRemotePciInfo": _pci,
    "nvmlDeviceGetCudaComputeCapability": tuple,
    "nvmlDeviceGetComputeRunningProcesses": _processes,
    "nvmlDeviceGetMigMode": list,
}


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


class ReplayNVML(types.ModuleType):
    """Same names as pynvml; every function answers from the recording."""

    def __init__(self, recording: dict, overrides: dict | None = None):
        super().__init__("pynvml")
        for key, value in vars(pynvml).items():
            if key.startswith(("NVML_", "NVMLError", "c_nvml", "nvmlPciInfo", "nvmlFriendlyObject")):
                setattr(self, key, value)
        self.source = recording["source"]
        self._calls = {fn: dict(answers) for fn, answers in recording["calls"].items()}
        for fn, answers in (overrides or {}).items():
            if "*" in answers:  # an override for every call replaces the recording
                self._calls[fn] = {}
            self._calls.setdefault(fn, {}).update(answers)
        self.log: list[tuple[str, str]] = []
        for fn in sorted(
            set(self._calls)
            | {k for k, v in vars(pynvml).items() if k.startswith("nvml") and callable(v) and not isinstance(v, type)}
        ):
            setattr(self, fn, self._function(fn))

    def _function(self, fn: str):
        def replay(*args):
            key = ",".join(str(_index(a)) if isinstance(a, pynvml.c_nvmlDevice_t) else str(a) for a in args)
            self.log.append((fn, key))
            answers = self._calls.get(fn, {})
            if key not in answers:
                if "*" in answers:
                    key = "*"
                else:
                    raise Unrecorded(f"{fn}({key}) was not recorded")
            answer = answers[key]
            if isinstance(answer, dict) and set(answer) == {"error"}:
                raise pynvml.NVMLError(getattr(pynvml, "NVML_ERROR_" + answer["error"]))
            decode = _DECODE.get(fn)
            return decode(answer) if decode and answer is not None else answer

        replay.__name__ = fn
        return replay


def replay(name: str, overrides: dict | None = None) -> ReplayNVML:
    return ReplayNVML(load_fixture(name), overrides)


def error(name: str) -> dict:
    """A recorded error answer, e.g. error("GPU_IS_LOST")."""
    getattr(pynvml, "NVML_ERROR_" + name)  # a typo fails here, not silently later
    return {"error": name}
