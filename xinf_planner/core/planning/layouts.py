"""Step 2 of a plan: layouts, each option on each kind of device (a GPU model, with TP or a layer
split over 1, 2, 4, 8 or 16 GPUs; one replica sharded over several hosts; or a host's CPU), placed
on topology-aware GPU groups. Each is sized by ``sizing.finish`` into a ``sizing.Layout``."""

from __future__ import annotations

from dataclasses import replace

from xinf_planner.core import engines, rules
from xinf_planner.core.inventory import Host
from xinf_planner.core.planning import estimates, sharding
from xinf_planner.core.planning.candidates import Option
from xinf_planner.core.planning.placement import Group, pick_groups
from xinf_planner.core.planning.sizing import Layout, attach, finish
from xinf_planner.core.request import ModelRequest

MAX_SHARD_HOSTS = 16  # the most hosts one sharded replica spans (PP stages / TP across hosts)


def layouts(ctx, opt: Option, mreq: ModelRequest, quota: int, context: int) -> list[Layout]:
    """Every way ``opt`` can serve ``mreq`` here, within ``quota`` GPUs per replica."""
    out: list[Layout] = []
    engine = opt.engine
    widths = [1] if engines.facts(engine).get("single_device") else rules.tp_sizes()
    for device, hosts in ctx.devices():
        for width in widths:
            if width > max(len(idx) for _, idx in hosts):
                break
            out.extend(gpu_layouts(ctx, opt, mreq, quota, context, device, hosts, width))
    if sharding.shards(engine) and not any(lay.meets for lay in out):
        # too large for any one host (at this concurrency): one replica sharded over several
        if mreq.model_path:
            if len(ctx.inventory.hosts) > 1:
                ctx.reject(
                    f"{opt.label} over several hosts",
                    "xinf-plan does not shard local weights (--model-path) over hosts; one host must hold a replica.",
                )
        else:
            for device, hosts in ctx.devices():
                layout = sharded_layout(ctx, opt, mreq, context, device, hosts)
                if layout is not None:
                    out.append(layout)
    if engines.runs_on_cpu(engine):
        layout = cpu_layout(ctx, opt, mreq, context)
        if layout is not None:
            out.append(layout)
    return out


def gpu_layouts(ctx, opt, mreq, quota, context, device, hosts, width) -> list[Layout]:
    """``opt`` on replicas of ``width`` GPUs of ``device``: with as many replicas as fit (within
    the quota), and, when fewer meet the targets, also with the fewest that do (the objectives
    choose between them); the replicas asked for when the request says."""
    found = _gpu_groups(ctx, opt, mreq, quota, context, device, hosts, width)
    if found is None:
        return []
    fitting, count, dtype, with_room, one_host_why = found

    host_of = {h.name: h for h in ctx.capacity.hosts}

    def layout(n: int) -> Layout:
        picked = pick_groups(fitting, n, ctx.request.strategy)
        chosen = [(host_of[g.host], g) for g in picked]
        lay = finish(ctx, opt, mreq, context, device, width, chosen, dtype)
        note = spread_note(ctx, chosen, with_room, one_host_why)
        if note:
            lay.reasons.append(note)
        return lay

    most = layout(count)
    if mreq.replicas is not None or count == 1 or not most.meets:
        return [most]
    one = layout(1)
    if one.meets:  # the common case: one replica serves the request
        return [one, most]
    lo, hi, fewest = 2, count, most  # the fewest replicas that meet the targets (monotone in n)
    while lo < hi:
        mid = (lo + hi) // 2
        trial = layout(mid)
        if trial.meets:
            hi, fewest = mid, trial
        else:
            lo = mid + 1
    return [most] if fewest is most else [fewest, most]


def _gpu_groups(ctx, opt, mreq, quota, context, device, hosts, width):
    """(GPU groups that fit one sequence per host, the most replicas, dtype, the hosts with room
    when more than one, why replicas would sit on one host), or None (recorded)."""
    engine = opt.engine
    tp = engines.tensor_parallel(engine)
    name = f"{opt.label} {'TP' if tp else 'on '}{width}{'' if tp else ' GPU(s)'} × {device.label}"
    if tp:
        reason = rules.tp_reason(opt.arch, width, opt.spec.model_format)
        if reason:
            ctx.reject(name, reason)
            return None
    if width > quota and len(ctx.request.models) > 1:
        ctx.reject(name, f"{width} GPUs per replica is more than this model's share of {quota} GPU(s).")
        return None
    reason = rules.cc_reason(engine, opt.spec.model_format, opt.precision, device.cc, device.label) or (
        rules.kv_cache_reason(engine, opt.kv_cache_dtype, device.cc, device.label)
    )
    if reason:
        ctx.reject(name, reason)
        return None
    groups_by_host: list[list[Group]] = []
    platform_reason = None
    for host, idx in hosts:
        reason = rules.platform_reason(engine, host, device.vendor)
        if reason:
            platform_reason = platform_reason or reason
            continue
        if not ctx.placeable(host):
            continue
        groups_by_host.append(ctx.host_groups(host, idx, width))
    if not any(groups_by_host):
        if platform_reason:
            ctx.reject(name, platform_reason)
        return None
    dtype = rules.dtype_for(engine, opt.precision, device.cc)
    # which groups fit one sequence of the context at all (probed once per free-memory level)
    fitting: list[list[Group]] = []
    why = None
    probes: dict[float, tuple] = {}
    for groups in groups_by_host:
        ok = []
        for g in groups:
            level = round(g.free_gib, 2)
            if level not in probes:
                probes[level] = estimates.fit_probe(ctx, opt, device, width, g.free_gib, context, dtype)
            est, reason = probes[level]
            if est is None:
                why = why or reason
            else:
                ok.append(g)
        fitting.append(ok)
    available = sum(len(g) for g in fitting)
    if not available:
        ctx.reject(name, why or "it does not fit.")
        return None
    count = replica_count(ctx, mreq, available, max(1, quota // width), name)
    if count is None:
        return None
    with_room = [groups[0].host for groups in fitting if groups]
    one_host_why = None
    if mreq.model_path and not ctx.request.model_path_on_every_worker:
        fitting = [g for g in fitting if g][:1]  # local weights: one host
        if mreq.replicas and mreq.replicas > len(fitting[0]):
            ctx.reject(
                name,
                f"local weights are registered on one host, where only {len(fitting[0])} "
                f"of the {mreq.replicas} replicas asked for fit.",
            )
            return None
        count = min(count, len(fitting[0]))
        one_host_why = LOCAL_ONE_HOST
    if one_host_why is None:
        one_host_why = f"only it has free {device.label} GPUs that hold a replica"
    return fitting, count, dtype, (with_room if len(with_room) > 1 else []), one_host_why


# why every replica of local weights is on one host (without model_path_on_every_worker)
LOCAL_ONE_HOST = (
    "the local weights (--model-path) are registered on that one worker; pass --model-path-on-every-worker "
    "when the path exists on every worker"
)


def spread_note(ctx, chosen, others_with_room: list[str], why: str) -> str | None:
    """The one-line reason, when replicas were to spread over hosts and all sit on one: the
    spread strategy (the default) not honoured, and why. None when it was honoured, when there
    is one replica, or when the inventory has one host."""
    hosts = {h.name for h, _ in chosen}
    if len(chosen) < 2 or len(hosts) != 1 or len(ctx.inventory.hosts) < 2 or ctx.request.strategy != "spread":
        return None
    (host,) = hosts
    also = [h for h in others_with_room if h != host]
    room = f" ({', '.join(also)} had room too)" if also else ""
    return f"Not as asked: strategy spread, but all {len(chosen)} replicas are on {host}{room}: {why}."


def sharded_layout(ctx, opt, mreq, context, device, hosts) -> Layout | None:
    """The fewest hosts (then the fewest GPUs per host) of this GPU kind over which one
    replica serves the concurrency, with every shard on the same GPU indexes; else the one
    that serves the most; None when none fits."""
    engine = opt.engine
    name = f"{opt.label} over several hosts × {device.label}"
    if mreq.replicas is not None and mreq.replicas > 1:
        ctx.reject(
            name,
            f"a replica sharded over several hosts is launched once (Xinference cannot "
            f"pin or add replicas of an n_worker launch); {mreq.replicas} replicas "
            f"were asked for.",
        )
        return None
    if rules.cc_reason(engine, opt.spec.model_format, opt.precision, device.cc, device.label) or (
        rules.kv_cache_reason(engine, opt.kv_cache_dtype, device.cc, device.label)
    ):
        return None  # refused (with its reason) on one host already
    eligible = [
        (h, idx) for h, idx in hosts if h.worker_address and not rules.platform_reason(engine, h, device.vendor)
    ]
    if len(eligible) < 2:
        return None
    dtype = rules.dtype_for(engine, opt.precision, device.cc)
    widest = max(len(idx) for _, idx in eligible)
    why = None
    best = None
    for n in range(2, min(len(eligible), MAX_SHARD_HOSTS) + 1):
        for width in [w for w in rules.tp_sizes() if w <= widest]:
            par, reason = sharding.parallel_for(
                engine, opt.arch, opt.spec.model_format, width, n, ctx.request.interconnect
            )
            if par is None:
                why = why or reason
                continue
            by_host = [(h, ctx.host_groups(h, idx, width)) for h, idx in eligible]
            for _gpus, members in sharding.common_groups(by_host):
                if len(members) < n:
                    break
                picked = sharding.pick_hosts(members, n, ctx.request.strategy)
                free = min(g.free_gib for _, g in picked)
                extra = estimates.engine_extra(opt, device, free, context, 1)
                if extra is None:
                    continue
                est = estimates.estimate(ctx, opt, device, par.tp, free, context, 1, dtype, {**extra, "pp": par.pp})
                if not est.fits:
                    why = why or " ".join(est.reasons)
                    break  # the same memory level on other hosts fits no better
                first = (picked[0][0], replace(picked[0][1], free_gib=free))
                lay = finish(ctx, opt, mreq, context, device, par.tp, [first], dtype, pp=par.pp)
                lay = replace(
                    lay,
                    width=width,
                    shard_hosts=tuple(h for h, _ in picked),
                    tp=par.tp,
                    pp=par.pp,
                    reasons=[par.reason, *lay.reasons],
                    _within={},
                )
                lay = attach(ctx, mreq, lay)
                if lay.meets:
                    return lay
                if best is None or lay.point.tpot_s < best.point.tpot_s:
                    best = lay
                break
    if best is None:
        ctx.reject(name, why or "no set of hosts with the same free GPUs holds it.")
    return best


def cpu_layout(ctx, opt: Option, mreq: ModelRequest, context: int) -> Layout | None:
    name = f"{opt.label} on the CPU"
    reason = rules.cpu_format_reason(opt.engine, opt.spec.model_format)
    if reason:
        ctx.reject(name, reason)
        return None
    hosts = []
    reason_any = None
    for h in ctx.capacity.hosts:
        reason = rules.platform_reason(opt.engine, h, None)
        if reason:
            reason_any = reason_any or reason
            continue
        if ctx.capacity.free_gpu[h.name] and opt.engine != "llama.cpp":
            continue  # GPU hosts serve from their GPUs; llama.cpp may still use the CPU
        if not ctx.placeable(h):
            continue
        hosts.append(h)
    if not hosts:
        if reason_any:
            ctx.reject(name, reason_any)
        return None
    # hosts without usable GPUs first: a CPU replica on a GPU host is the last choice
    hosts.sort(key=lambda h: (bool(ctx.capacity.free_gpu[h.name]), ctx.position[h.name]))
    candidates = [h.name for h in hosts]
    one_host_why = None
    if mreq.model_path and not ctx.request.model_path_on_every_worker:
        hosts = hosts[:1]  # local weights: one host
        one_host_why = LOCAL_ONE_HOST
    cpu_only = [h for h in hosts if not h.gpus]
    # CPU replicas on several hosts are pinned by replica_config, which cannot keep a host
    # with GPUs off them (n_gpu "auto" takes one): hosts without GPUs, else one host.
    if not cpu_only and len(hosts) > 1:
        one_host_why = (
            "CPU replicas on several hosts are pinned with replica_config, whose n_gpu 'auto' would take "
            "a GPU on these GPU hosts, so they stay on one host"
        )
    hosts = cpu_only or hosts[:1]
    want = mreq.replicas or max(1, len(cpu_only))  # by default one replica per CPU host
    placed: list[tuple[Host, None]] = []
    counts: dict[str, int] = {}

    def add(h: Host) -> bool:
        n = counts.get(h.name, 0) + 1
        trial = estimates.cpu_estimate(ctx, opt, h, context, n, mreq, want)
        if trial is None or trial.host_gib * n > ctx.capacity.free_ram[h.name] + 1e-9:
            return False
        counts[h.name] = n
        placed.append((h, None))
        return True

    if ctx.request.strategy == "pack":
        for h in hosts:
            while len(placed) < want and add(h):
                pass
    else:
        progress = True
        while len(placed) < want and progress:
            progress = False
            for h in hosts:
                if len(placed) < want and add(h):
                    progress = True
    if not placed:
        trial = estimates.cpu_estimate_any(ctx, opt, hosts[0], context, mreq)
        if trial is None:
            ctx.reject(name, "the memory model finds no way to run it on the CPU.")
        else:
            ctx.reject(
                name,
                f"it needs about {trial.host_gib:.1f} GiB of RAM; {hosts[0].name} has "
                f"{ctx.capacity.free_ram[hosts[0].name]:.1f} GiB available.",
            )
        return None
    if len(placed) < want and mreq.replicas:
        ctx.reject(name, f"only {len(placed)} of the {want} replicas asked for fit in RAM.")
        return None
    placed.sort(key=lambda item: ctx.position[item[0].name])
    lay = finish(ctx, opt, mreq, context, None, 0, placed, None, cpu_counts=counts)
    if one_host_why is None:
        one_host_why = "the other hosts' RAM holds no more replicas"
    note = spread_note(ctx, placed, candidates if len(candidates) > 1 else [], one_host_why)
    if note:
        lay.reasons.append(note)
    return lay


def replica_count(ctx, mreq: ModelRequest, available: int, by_quota: int, name: str) -> int | None:
    """The replicas asked for (None, recorded, when fewer fit), else as many as fit within the quota."""
    if mreq.replicas is not None:
        if mreq.replicas > available:
            ctx.reject(name, f"only {available} replica(s) fit, and {mreq.replicas} were asked for.")
            return None
        return mreq.replicas
    return max(1, min(available, by_quota))
