"""Probes that describe a live machine as an inventory.

``probe_local`` joins the OS-specific probes: ``cpu`` (Linux /proc), ``nvml`` (NVIDIA
GPUs through pynvml), ``apple`` (sysctl on Apple silicon). Heavy modules (pynvml) are
imported only when a probe runs.
"""

from xinf_planner.shell.probe.local import probe_local

__all__ = ["probe_local"]
