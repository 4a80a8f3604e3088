"""NVIDIA GPUs through NVML (the ``pynvml`` module of nvidia-ml-py).

``probe_nvidia(nvml=None)`` imports pynvml only when called, and takes the module by
injection so that tests replay answers recorded on real machines. It never raises:
a missing library or driver gives no GPUs and a note; a query a GPU does not
support leaves that field out; a lost GPU is skipped with a note.

The topology matrix uses the vocabulary of ``nvidia-smi topo -m``:
``NV<n>`` (n NVLinks, direct or through NVSwitches), ``PIX``, ``PXB``, ``PHB``,
``NODE``, ``SYS``, and ``X`` on the diagonal.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from xinf_planner.core.inventory import GPU

# nvmlDeviceGetTopologyCommonAncestor level -> nvidia-smi topo word
_LEVEL_WORDS = {0: "PIX", 10: "PIX", 20: "PXB", 30: "PHB", 40: "NODE", 50: "SYS"}


@dataclass
class NvidiaProbe:
    gpus: list[GPU] = field(default_factory=list)
    topology: list[list[str]] | None = None
    driver_version: str | None = None
    cuda_version: str | None = None
    notes: list[str] = field(default_factory=list)


class _GpuLost(Exception):
    """Internal: the GPU stopped answering (NVML_ERROR_GPU_IS_LOST); skip it."""


def probe_nvidia(nvml=None, sysfs: str = "/sys") -> NvidiaProbe:
    """Every NVIDIA GPU NVML can see, with topology, driver and CUDA versions."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return NvidiaProbe(notes=["no NVIDIA GPUs probed: nvidia-ml-py (pynvml) is not installed"])
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        return NvidiaProbe(notes=[_init_failure(nvml, exc)])
    except OSError as exc:  # a broken libnvidia-ml that the loader rejects
        return NvidiaProbe(notes=[f"no NVIDIA GPUs: NVML could not be loaded ({exc})"])
    try:
        return _probe(nvml, Path(sysfs))
    except nvml.NVMLError as exc:
        return NvidiaProbe(notes=[f"no NVIDIA GPUs recorded: NVML failed while listing GPUs ({exc})"])
    except Exception as exc:  # the probe must never take the CLI down
        return NvidiaProbe(notes=[f"no NVIDIA GPUs recorded: the NVML probe failed ({type(exc).__name__}: {exc})"])
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass


def _init_failure(nvml, exc) -> str:
    code = getattr(exc, "value", None)
    if code == nvml.NVML_ERROR_LIBRARY_NOT_FOUND:
        return "no NVIDIA GPUs: the NVIDIA driver library (libnvidia-ml) was not found"
    if code == nvml.NVML_ERROR_DRIVER_NOT_LOADED:
        return "no NVIDIA GPUs: the NVIDIA kernel driver is not loaded"
    if code == nvml.NVML_ERROR_NO_PERMISSION:
        return "no NVIDIA GPUs: no permission to open the NVIDIA devices"
    if code == getattr(nvml, "NVML_ERROR_LIB_RM_VERSION_MISMATCH", None):
        return "no NVIDIA GPUs: the NVIDIA driver and its library versions differ (reboot or reload the driver)"
    return f"no NVIDIA GPUs: NVML failed to initialise ({exc})"


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _pci_key(pci) -> tuple[int, int, int]:
    return int(pci.domain), int(pci.bus), int(pci.device)


def _probe(nvml, sysfs: Path) -> NvidiaProbe:
    out = NvidiaProbe()
    notes = out.notes
    out.driver_version = _system(nvml, "nvmlSystemGetDriverVersion", "driver version", notes, _text)
    out.cuda_version = _system(nvml, "nvmlSystemGetCudaDriverVersion", "CUDA driver version", notes, _cuda_version)
    handles = []
    pci_keys = []
    for index in range(nvml.nvmlDeviceGetCount()):
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            gpu, pci_key = _describe(nvml, handle, index, notes, sysfs)
        except _GpuLost:
            notes.append(f"GPU {index} skipped: NVML reports the GPU is lost (fallen off the bus?)")
            continue
        except nvml.NVMLError as exc:
            notes.append(f"GPU {index} skipped: NVML could not read it ({exc})")
            continue
        out.gpus.append(gpu)
        handles.append(handle)
        pci_keys.append(pci_key)
    if out.gpus:
        out.topology = _topology(nvml, handles, pci_keys, [g.index for g in out.gpus], notes)
    return out


def _system(nvml, fn: str, what: str, notes: list[str], convert):
    try:
        return convert(getattr(nvml, fn)())
    except nvml.NVMLError as exc:
        notes.append(f"{what} unknown: {fn} failed ({exc})")
        return None


def _cuda_version(value: int) -> str:
    return f"{value // 1000}.{value % 1000 // 10}"


def _call(nvml, fn, *args):
    """Call an NVML function, turning GPU_IS_LOST into _GpuLost."""
    try:
        return fn(*args)
    except nvml.NVMLError as exc:
        if getattr(exc, "value", None) == nvml.NVML_ERROR_GPU_IS_LOST:
            raise _GpuLost() from None
        raise


def _optional(nvml, fn, args, index: int, what: str, notes: list[str], quiet_unsupported=False):
    try:
        return _call(nvml, fn, *args)
    except nvml.NVMLError as exc:
        if not (quiet_unsupported and getattr(exc, "value", None) == nvml.NVML_ERROR_NOT_SUPPORTED):
            notes.append(f"GPU {index}: {what} left out ({exc})")
        return None


def _describe(nvml, handle, index: int, notes: list[str], sysfs: Path):
    name = _text(_call(nvml, nvml.nvmlDeviceGetName, handle))
    memory = _call(nvml, nvml.nvmlDeviceGetMemoryInfo, handle)
    major, minor = _call(nvml, nvml.nvmlDeviceGetCudaComputeCapability, handle)
    gpu = GPU(
        index=index,
        vendor="nvidia",
        name=name,
        memory_total_bytes=int(memory.total),
        memory_used_bytes=min(int(memory.used), int(memory.total)),
        compute_capability=f"{major}.{minor}",
        unified_memory=False,
    )
    uuid = _optional(nvml, nvml.nvmlDeviceGetUUID, (handle,), index, "uuid", notes)
    gpu.uuid = _text(uuid) if uuid is not None else None
    pci = _optional(nvml, nvml.nvmlDeviceGetPciInfo, (handle,), index, "pci_bus_id", notes)
    pci_key = None
    if pci is not None:
        gpu.pci_bus_id = _text(pci.busId)
        pci_key = _pci_key(pci)
    gpu.numa_node = _numa_node(nvml, handle, index, gpu.pci_bus_id, notes, sysfs)
    mig = _optional(nvml, nvml.nvmlDeviceGetMigMode, (handle,), index, "mig_mode", notes, quiet_unsupported=True)
    if mig is not None:
        gpu.mig_mode = bool(mig[0] == nvml.NVML_DEVICE_MIG_ENABLE)
        if gpu.mig_mode:
            notes.append(
                f"GPU {index}: MIG is enabled; its MIG instances are not listed, and engines cannot use the whole GPU"
            )
    procs = _optional(nvml, nvml.nvmlDeviceGetComputeRunningProcesses, (handle,), index, "compute_processes", notes)
    if procs is not None:
        gpu.compute_processes = len(procs)
    return gpu, pci_key


def _numa_node(nvml, handle, index, bus_id, notes, sysfs: Path) -> int | None:
    """NVML's NUMA node (drivers >= 545); older drivers: the PCI device's node in sysfs."""
    try:
        return int(_call(nvml, nvml.nvmlDeviceGetNumaNodeId, handle))
    except (nvml.NVMLError, AttributeError):
        pass
    if bus_id:
        domain, _, rest = bus_id.lower().partition(":")
        path = sysfs / "bus" / "pci" / "devices" / f"{domain[-4:]}:{rest}" / "numa_node"
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            pass
    notes.append(f"GPU {index}: numa_node left out (neither NVML nor sysfs reports it)")
    return None


def _nvlinks(nvml, handle, gpu_keys: set, index: int, notes: list[str]):
    """(active links per peer GPU PCI key, active links to NVSwitches) of one GPU."""
    peers: Counter = Counter()
    switch_links = 0
    stop = {nvml.NVML_ERROR_NOT_SUPPORTED, nvml.NVML_ERROR_INVALID_ARGUMENT}
    for link in range(nvml.NVML_NVLINK_MAX_LINKS):
        try:
            state = _call(nvml, nvml.nvmlDeviceGetNvLinkState, handle, link)
        except nvml.NVMLError as exc:
            if getattr(exc, "value", None) not in stop:
                notes.append(f"GPU {index}: NVLink {link} state unreadable ({exc}); later links not counted")
            break  # no NVLink on this GPU, or past its last link
        if state != nvml.NVML_FEATURE_ENABLED:
            continue
        try:
            remote = _pci_key(_call(nvml, nvml.nvmlDeviceGetNvLinkRemotePciInfo, handle, link))
        except nvml.NVMLError as exc:
            notes.append(f"GPU {index}: NVLink {link} is active but its remote end is unknown ({exc})")
            continue
        try:
            kind = _call(nvml, nvml.nvmlDeviceGetNvLinkRemoteDeviceType, handle, link)
        except (nvml.NVMLError, AttributeError):
            kind = None  # old driver: a remote that is not one of our GPUs is taken as a switch
        if kind == nvml.NVML_NVLINK_DEVICE_TYPE_SWITCH or (kind is None and remote not in gpu_keys):
            switch_links += 1
        elif kind in (nvml.NVML_NVLINK_DEVICE_TYPE_GPU, None):
            peers[remote] += 1
    return peers, switch_links


def _topology(nvml, handles, pci_keys, indexes, notes) -> list[list[str]]:
    n = len(handles)
    gpu_keys = {k for k in pci_keys if k is not None}
    links = []
    for handle, index in zip(handles, indexes):
        try:
            links.append(_nvlinks(nvml, handle, gpu_keys, index, notes))
        except _GpuLost:
            notes.append(f"GPU {index}: lost while reading NVLinks; its links are not counted")
            links.append((Counter(), 0))
    matrix = [["X"] * n for _ in range(n)]
    for a in range(n):
        for b in range(a + 1, n):
            count = 0
            if pci_keys[a] is not None and pci_keys[b] is not None:
                count = max(links[a][0][pci_keys[b]], links[b][0][pci_keys[a]])
            if links[a][1] and links[b][1] and _p2p_nvlink(nvml, handles[a], handles[b]):
                count += min(links[a][1], links[b][1])
            word = f"NV{count}" if count else _pcie_level(nvml, handles[a], handles[b], indexes[a], indexes[b], notes)
            matrix[a][b] = matrix[b][a] = word
    return matrix


def _p2p_nvlink(nvml, a, b) -> bool:
    """Whether NVLink peer-to-peer works between two GPUs on NVSwitches (unknown: assume yes)."""
    try:
        return nvml.nvmlDeviceGetP2PStatus(a, b, nvml.NVML_P2P_CAPS_INDEX_NVLINK) == nvml.NVML_P2P_STATUS_OK
    except (nvml.NVMLError, AttributeError):
        return True


def _pcie_level(nvml, a, b, ia, ib, notes) -> str:
    try:
        level = nvml.nvmlDeviceGetTopologyCommonAncestor(a, b)
    except nvml.NVMLError as exc:
        notes.append(f"GPUs {ia} and {ib}: PCIe path unknown ({exc}); recorded as SYS")
        return "SYS"
    return _LEVEL_WORDS.get(int(level), "SYS")
