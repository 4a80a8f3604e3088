"""A layout's serving figures at the request's workload: what its GPUs (or CPU) and links can do
(``hardware_of``), the serving model of its replicas, and whether it meets the targets."""

from __future__ import annotations

from xinf_planner.core.serving.figures import Serving
from xinf_planner.core.serving.step import Hardware

# placement.link_rank -> the serving model's link between tensor-parallel ranks
_LINK_BY_RANK = {0: "nvlink", 1: "pcie", 2: "pcie", 3: "pcie", 4: "pcie", 5: "sys"}
_HOST_LINK = {"ethernet": "network", "infiniband": "infiniband", "roce": "infiniband", "nvlink-switch": "nvlink"}


def hardware_of(ctx, lay) -> Hardware:
    """The tensor rates of the layout's GPUs, or its CPU threads, and the worst link between
    the GPUs of one replica (through host memory where the GPUs have no peer-to-peer)."""
    dev = lay.device
    if dev.kind is None:
        threads = lay.launch_extra.get("n_threads") or (lay.replicas[0][0].cpu_cores if lay.replicas else None)
        return Hardware(cpu_cores=threads)
    link = _LINK_BY_RANK.get(lay.worst_link, "pcie")
    if link != "nvlink" and not dev.p2p:
        link = "pcie_host"
    if lay.shard_hosts and lay.pp == 1:  # TP across hosts: the network joins the ranks
        link = _HOST_LINK.get(ctx.request.interconnect, "network")
    return Hardware(tflops=dev.tflops, tflops_fp8=dev.tflops_fp8, link=link, cc=dev.cc)


def attach(ctx, mreq, lay) -> None:
    """Give ``lay`` its serving model and its figures at the request's workload."""
    replicas = 1 if lay.shard_hosts else max(1, len(lay.replicas))
    lay.serving = Serving(lay.estimate.input, lay.estimate, hardware_of(ctx, lay), replicas, lay.gpus_used)
    lay.point = lay.serving.at(mreq.input_tokens, mreq.output_tokens, mreq.concurrency)
    lay.meets = mreq.targets.met_by(lay.point)
