#!/usr/bin/env python3
"""Record this machine's NVML answers into a test fixture (tests/support/fixtures/nvml/<name>.json).

Run it on a real NVIDIA machine (nvidia-ml-py installed):

    python tools/record_nvml.py --source "DGX H100, driver 550.90.07, rack 4" my-dgx.json

It runs xinf-plan's own NVML probe through a recording proxy of ``pynvml``, so the
fixture holds exactly the calls the probe makes and each answer (or NVML error), in
the format that tests/support/fake_nvml.py replays. Handles are written as device indexes.
The fixture holds GPU UUIDs and PCI bus ids; it holds no hostname, user or process
names (only the number of compute processes per GPU, with their pids).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _encode(value):
    """An NVML answer as JSON: structures as dicts, bytes as text."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, ctypes.Structure):
        return {name: _encode(getattr(value, name)) for name, *_ in value._fields_}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if hasattr(value, "__dict__") and type(value).__name__ == "nvmlFriendlyObject":
        return {k: _encode(v) for k, v in sorted(vars(value).items())}
    if isinstance(value, ctypes._SimpleCData):
        return value.value
    return value


class RecordingNVML:
    """Looks like pynvml; forwards every call and writes down its answer."""

    def __init__(self, nvml):
        self._nvml = nvml
        self._handles: dict[int, int] = {}
        self.calls: dict[str, dict[str, object]] = {}
        self._error_names = {
            getattr(nvml, k): k[len("NVML_ERROR_") :] for k in dir(nvml) if k.startswith("NVML_ERROR_")
        }

    def _key(self, args) -> str:
        parts = []
        for a in args:
            if isinstance(a, self._nvml.c_nvmlDevice_t):
                parts.append(str(self._handles[ctypes.cast(a, ctypes.c_void_p).value]))
            else:
                parts.append(str(a))
        return ",".join(parts)

    def __getattr__(self, name):
        real = getattr(self._nvml, name)
        if not (name.startswith("nvml") and callable(real)) or isinstance(real, type):
            return real

        def record(*args):
            key = self._key(args)
            answers = self.calls.setdefault(name, {})
            try:
                value = real(*args)
            except self._nvml.NVMLError as exc:
                answers[key] = {"error": self._error_names.get(exc.value, "UNKNOWN")}
                raise
            if name == "nvmlDeviceGetHandleByIndex":
                self._handles[ctypes.cast(value, ctypes.c_void_p).value] = args[0]
                answers[key] = args[0]
            else:
                answers[key] = _encode(value)
            return value

        return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="fixture file to write (JSON)")
    parser.add_argument("--source", required=True, help="where these answers come from (machine, driver, date)")
    args = parser.parse_args(argv)

    import pynvml

    from xinf_planner.shell.files import write_atomic
    from xinf_planner.shell.probe.nvml import probe_nvidia

    recorder = RecordingNVML(pynvml)
    result = probe_nvidia(nvml=recorder)
    fixture = {"source": args.source, "calls": recorder.calls}
    write_atomic(args.output, json.dumps(fixture, indent=1, sort_keys=True) + "\n")
    print(
        f"recorded {sum(len(v) for v in recorder.calls.values())} answers of "
        f"{len(recorder.calls)} NVML functions; {len(result.gpus)} GPUs",
        file=sys.stderr,
    )
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
