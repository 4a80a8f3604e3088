"""`xinf-plan inspect`: describe this machine (or join per-host inventories) as an inventory."""

from __future__ import annotations

import re
import sys

import click

from xinf_planner.cli.options import finite
from xinf_planner.cli.output import table
from xinf_planner.core.documents import dump_document
from xinf_planner.core.inventory import GIB, Host, Inventory
from xinf_planner.shell.files import write_atomic

FORMATS = ("table", "json", "yaml")


@click.command("inspect", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--merge", is_flag=True, help="Join the per-host inventory FILES into one (host names must be unique).")
@click.option("--name", metavar="NAME", help="This host's name in the inventory [default: the hostname].")
@click.option(
    "--worker-address",
    metavar="IP:PORT",
    callback=lambda ctx, param, value: _address(value),
    help="This host's Xinference worker address, as the supervisor lists it.",
)
@click.option(
    "--endpoint",
    "-e",
    metavar="URL",
    help="Read a whole cluster from its Xinference server instead of this machine: from the xinf-plan "
    "extension (GET /v1/xinf-plan/inventory) when the server runs it, else GET /v1/cluster/info. "
    "$XINFERENCE_ENDPOINT does not switch modes.",
)
@click.option(
    "--api-key",
    "-ak",
    envvar="XINFERENCE_API_KEY",
    default=None,
    help="With --endpoint: an admin access token [env: XINFERENCE_API_KEY].",
)
@click.option(
    "--username",
    "-u",
    default=None,
    help="With --endpoint: log in as this user; the password comes from $XINFERENCE_PASSWORD.",
)
@click.option(
    "--hosts",
    "host_files",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True),
    metavar="FILE",
    help="With --endpoint: per-host inventories (repeatable); each worker whose "
    "worker_address they list takes its GPU detail from them.",
)
@click.option(
    "--gpu-name",
    metavar="NAME",
    help="With --endpoint: the GPU model of workers without a --hosts inventory "
    "(e.g. 'NVIDIA H100 80GB HBM3'); their GPUs are assumed identical.",
)
@click.option(
    "--no-bandwidth",
    is_flag=True,
    help="Do not measure this host's memory bandwidth (about a second, at most 2 s and 512 MiB).",
)
@click.option(
    "--memory-bandwidth",
    "memory_bandwidth",
    type=click.FloatRange(0, 100_000, min_open=True),
    callback=lambda ctx, param, value: finite(ctx, param, value),
    metavar="GBPS",
    help="State this host's memory read bandwidth by hand (GB/s) instead of measuring it.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="Output format [default: table on a terminal, yaml otherwise; with -o, from the file's extension].",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Write the inventory to FILE (atomically) instead of stdout.",
)
def command(
    files,
    merge,
    name,
    worker_address,
    endpoint,
    api_key,
    username,
    host_files,
    gpu_name,
    no_bandwidth,
    memory_bandwidth,
    fmt,
    output,
):
    """Describe this machine's GPUs, CPU and memory as an inventory (format v1).

    \b
    NVIDIA GPUs are read through NVML, Apple silicon through sysctl, CPU and
    memory from /proc (Linux) or sysctl (macOS). Without a GPU or driver the
    inventory has no GPUs and a note saying why. The host's memory read
    bandwidth is measured (about a second; --no-bandwidth skips it,
    --memory-bandwidth states it): CPU serving speeds follow from it.

    \b
    Examples:
      xinf-plan inspect                                  # table on a terminal
      xinf-plan inspect --name gpu-a --worker-address 10.0.0.11:30001 -o gpu-a.yaml
      xinf-plan inspect --merge gpu-a.yaml gpu-b.yaml -o cluster.yaml
      XINFERENCE_PASSWORD=... xinf-plan inspect -e http://10.0.0.5:9997 --username admin \\
          --hosts gpu-a.yaml --hosts gpu-b.yaml -o cluster.yaml
    """
    probing = not endpoint and not merge and not files
    if (no_bandwidth or memory_bandwidth is not None) and not probing:
        raise click.UsageError("--no-bandwidth and --memory-bandwidth describe this machine's probe")
    if no_bandwidth and memory_bandwidth is not None:
        raise click.UsageError("give --no-bandwidth or --memory-bandwidth, not both")
    if endpoint:
        if files or merge or name or worker_address:
            raise click.UsageError(
                "--endpoint reads the cluster; it cannot be used with FILES, --merge, --name or --worker-address"
            )
        inventory = _from_cluster(endpoint, api_key, username, host_files, gpu_name)
    elif host_files or gpu_name:
        raise click.UsageError("--hosts and --gpu-name go with --endpoint")
    else:
        inventory = _collect(files, merge, name, worker_address, not no_bandwidth, memory_bandwidth)
    if output:
        file_fmt = _file_format(fmt, output)
        write_atomic(output, dump_document(inventory.to_dict(), file_fmt))
        hosts = len(inventory.hosts)
        gpus = sum(len(h.gpus) for h in inventory.hosts)
        click.echo(f"wrote {output}: {hosts} host{'s' * (hosts != 1)}, {gpus} GPU{'s' * (gpus != 1)}", err=True)
        return
    fmt = fmt or ("table" if sys.stdout.isatty() else "yaml")
    click.echo(
        format_table(inventory) if fmt == "table" else dump_document(inventory.to_dict(), fmt), nl=fmt == "table"
    )


def _address(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[^\s:]+:[0-9]{1,5}", value):
        raise click.BadParameter(f"{value!r} is not IP:PORT (e.g. 10.0.0.11:30001)")
    return value


def _from_cluster(endpoint, api_key, username, host_files, gpu_name) -> Inventory:
    """The cluster's inventory: from the xinf-plan extension when the server runs it (every
    worker's own GPUs), else from the supervisor's cluster info; each assumption made is one
    stderr line."""
    from xinf_planner.cli.options import credentials
    from xinf_planner.core.inventory import merge_inventories
    from xinf_planner.shell.documents import load_inventory
    from xinf_planner.shell.probe.cluster import probe_cluster
    from xinf_planner.shell.server import connect, resolve_endpoint

    hosts = merge_inventories([(f, load_inventory(f)) for f in host_files]) if host_files else None
    conn = connect(resolve_endpoint(endpoint, {}), credentials(api_key, username))
    extension = _extension_inventory(conn, hosts, gpu_name)
    if extension is not None:
        return extension
    inventory, warnings = probe_cluster(conn, hosts, gpu_name)
    for line in warnings:
        click.echo(f"warning: {line}", err=True)
    return inventory


def _extension_inventory(conn, hosts, gpu_name) -> Inventory | None:
    """The inventory of GET /v1/xinf-plan/inventory, or None (said on stderr) when the server
    has no xinf-plan extension or its answer cannot be used."""
    from xinf_planner.errors import AuthFailed, XinfPlanError

    try:
        doc = conn.extension_inventory()
    except AuthFailed:
        raise
    except XinfPlanError as exc:
        click.echo(f"warning: the xinf-plan extension's inventory failed ({exc}); using the cluster info", err=True)
        return None
    if doc is None:
        click.echo(
            "note: the server has no xinf-plan extension (GET /v1/xinf-plan/inventory: 404); "
            "reading the cluster info, which has no per-GPU detail",
            err=True,
        )
        return None
    try:
        inventory = Inventory.from_dict(doc, "the extension's inventory")
    except XinfPlanError as exc:
        click.echo(f"warning: {exc}; using the cluster info", err=True)
        return None
    workers = len(inventory.hosts)
    click.echo(
        f"inventory from the server's xinf-plan extension: {workers} worker(s), each with its own GPUs",
        err=True,
    )
    if hosts is not None or gpu_name:
        click.echo("note: --hosts and --gpu-name are not needed with the extension and were not used", err=True)
    for h in inventory.hosts:
        for note in h.notes:
            if note.startswith("no NVIDIA GPUs") or note.startswith("no GPUs"):
                click.echo(f"note: {h.name} ({h.worker_address or 'local'}): {note}", err=True)
    return inventory


def _collect(files, merge, name, worker_address, measure: bool = True, bandwidth: float | None = None) -> Inventory:
    """Where the inventory comes from: inventory files to join, or this machine."""
    if merge:
        if not files:
            raise click.UsageError("--merge needs at least one inventory file")
        if name or worker_address:
            raise click.UsageError(
                "--name and --worker-address describe this machine; they cannot be used with --merge"
            )
        from xinf_planner.core.inventory import merge_inventories
        from xinf_planner.shell.documents import load_inventory

        return merge_inventories([(f, load_inventory(f)) for f in files])
    if files:
        raise click.UsageError("inventory files are only read with --merge")
    from xinf_planner.shell.probe import probe_local
    from xinf_planner.shell.probe.bandwidth import measure_memory_bandwidth

    probed = probe_local(
        name=name,
        worker_address=worker_address,
        bandwidth=bandwidth,
        measure_bandwidth=measure_memory_bandwidth if measure and bandwidth is None else None,
    )
    # what we write must be a valid inventory: check it like any input
    return Inventory.from_dict(probed.to_dict(), "probed inventory")


def _file_format(fmt: str | None, path: str) -> str:
    if fmt == "table":
        raise click.UsageError("-o writes yaml or json; drop --format table")
    if fmt:
        return fmt
    return "json" if path.lower().endswith(".json") else "yaml"


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / GIB:.1f} GiB"


def _host_lines(h: Host) -> list[str]:
    where = f" [{h.worker_address}]" if h.worker_address else ""
    lines = [
        f"host {h.name}{where}: {h.os} {h.arch}, {h.cpu_model or 'unknown CPU'}, "
        f"{h.cpu_cores} logical CPUs, memory {_gib(h.memory_total_bytes)}"
        + (f" ({_gib(h.memory_available_bytes)} available)" if h.memory_available_bytes is not None else "")
    ]
    extras = []
    if h.driver_version:
        extras.append(f"driver {h.driver_version}")
    if h.cuda_version:
        extras.append(f"CUDA {h.cuda_version}")
    if h.gpu_wired_limit_bytes is not None:
        extras.append(f"GPU wired-memory limit {_gib(h.gpu_wired_limit_bytes)}")
    if h.memory_bandwidth_measured_gbps is not None:
        extras.append(f"memory bandwidth {h.memory_bandwidth_measured_gbps:g} GB/s measured")
    elif h.memory_bandwidth_gbps is not None:
        extras.append(f"memory bandwidth {h.memory_bandwidth_gbps:g} GB/s (datasheet)")
    if extras:
        lines.append("  " + ", ".join(extras))
    if h.gpus:
        header = ["GPU", "NAME", "MEMORY", "USED", "CC", "BUS ID", "NUMA", "MIG", "PROCS"]
        rows = [
            [
                str(g.index),
                g.name,
                _gib(g.memory_total_bytes),
                _gib(g.memory_used_bytes),
                g.compute_capability or ("unified" if g.unified_memory else "-"),
                g.pci_bus_id or "-",
                "-" if g.numa_node is None else str(g.numa_node),
                "-" if g.mig_mode is None else ("on" if g.mig_mode else "off"),
                "-" if g.compute_processes is None else str(g.compute_processes),
            ]
            for g in h.gpus
        ]
        lines += table([header, *rows], "  ")
    else:
        lines.append("  no GPUs")
    if h.topology and len(h.gpus) > 1:
        labels = [f"GPU{g.index}" for g in h.gpus]
        lines.append("  topology (nvidia-smi topo -m):")
        lines += table([["", *labels], *[[label, *row] for label, row in zip(labels, h.topology)]], "    ")
    lines += [f"  note: {n}" for n in h.notes]
    return lines


def format_table(inv: Inventory) -> str:
    """A readable summary of an inventory, one block per host."""
    blocks = ["\n".join(_host_lines(h)) for h in inv.hosts]
    blocks += [f"note: {n}" for n in inv.notes]
    return "\n\n".join(blocks)
