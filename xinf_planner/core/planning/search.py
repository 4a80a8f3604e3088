"""Choosing engine, quantisation, TP, replicas and GPUs for a workload: the plan.

Pure computation over an ``Inventory`` and a ``Request`` (and, for local weights, the facts
``localmodel.detect`` read). For each model of the request:

1. **Options**: every (size, spec, engine) the catalog and the rules allow; each refusal kept
   with its reason.
2. **Layouts**: each option on each kind of device (a GPU model, with TP or layer split over
   1, 2, 4, 8 or 16 GPUs, or a host's CPU), estimated once per (model, spec, engine, TP,
   device kind, memory already used) and placed on topology-aware GPU groups.
3. **Scores** by objective, from the figures the plan shows (stated in ``OBJECTIVES``), with
   explicit tie-breaks so that the same input gives the same plan.

Several models share the inventory by ``share``: each gets that share of the GPUs (at least
one replica's worth), largest share first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from xinf_planner.core.planning import sharding as cluster
from xinf_planner.core import rules
from xinf_planner.errors import InvalidInput, NothingFits
from xinf_planner.core.inventory import GIB, GPU, Host, Inventory
from xinf_planner.core.planning.placement import (Group, LINK_WORDS, free_gib_after_headroom, gpu_key, gpu_kind,
                                    host_groups, pick_groups, placement_kwargs, reservation_fraction)
from xinf_planner.core.request import ModelRequest, Request
from xinf_planner.shell.templates import engine_defaults

USABLE_TOKENS_PER_S = 20.0      # per sequence: reading speed with room to spare
TOO_SLOW_TOKENS_PER_S = 10.0    # per sequence: R1 thinks for thousands of tokens; below this, advise a smaller model
REJECTED_ALTERNATIVES = 15      # feasible layouts not chosen that the plan lists
MAX_NUM_SEQS = 256              # the max_num_seqs Xinference passes to vLLM: the most one replica batches
MAX_SHARD_HOSTS = 16            # the most hosts one sharded replica spans (PP stages / TP across hosts)

OBJECTIVES = {
    "quality": "the largest model, then the highest precision, that serves the concurrency at 10 "
               "tokens/s per sequence or more (when any option does); then the most GPUs put to use, "
               "then total tokens/s",
    "throughput": "the most total decode tokens/s (all replicas), then the most sequences served",
    "latency": "the fastest decode per sequence, then the largest model and precision",
    "balanced": "quality points × speed factor, where quality points = log2(1 + size in B) × the "
                "share of quality the precision keeps (1.0 bf16 … 0.9 4-bit … 0.5 2-bit) and speed "
                "factor = min(1, tokens/s per sequence / 20); "
                "then the most GPUs put to use, then total tokens/s",
}


# -- the candidates --------------------------------------------------------------------------

@dataclass(frozen=True)
class Option:
    arch: Any                 # catalog.ModelArch
    spec: Any                 # catalog.Spec
    engine: str
    precision: str

    @property
    def label(self) -> str:
        return f"{self.arch.ref} {self.spec.model_format}/{self.spec.quantization} on {self.engine}"

    @property
    def key(self) -> tuple:
        a = self.arch
        return (a.ref, a.params, a.num_layers, a.hidden_size, self.spec.model_format,
                self.spec.quantization, self.engine)


@dataclass(frozen=True)
class Device:
    """What one replica runs on, as the estimate sees it."""

    kind: tuple | None        # placement.gpu_kind, None for the CPU
    label: str                # "Tesla T4" or "CPU"
    vendor: str | None
    cc: tuple[int, int] | None
    total_gib: float | None
    bandwidth_gbps: float | None
    unified: bool = False
    wired_limit_gib: float | None = None
    host_ram_gib: float | None = None     # the least free RAM among the hosts with these GPUs


@dataclass
class Layout:
    option: Option
    device: Device
    width: int                # GPUs per replica (TP for vLLM/SGLang, layer split for llama.cpp)
    replicas: list[tuple[Host, Group | None]]
    estimate: Any             # memory.Estimate of one replica
    launch_extra: dict        # engine kwargs chosen for it
    per_replica_seqs: int
    served: int               # sequences served at once, all replicas
    per_seq_tps: float
    total_tps: float
    reasons: list[str] = field(default_factory=list)
    shard_hosts: tuple = ()   # one replica sharded over these hosts (n_worker); () otherwise
    tp: int = 0               # a sharded replica's TP and PP (cluster.Parallel)
    pp: int = 1

    @property
    def label(self) -> str:
        if self.shard_hosts:
            return (f"{self.option.label} TP{self.tp}×PP{self.pp}, 1 replica over {len(self.shard_hosts)} "
                    f"hosts × {self.width}× {self.device.label}")
        where = "CPU" if self.device.kind is None else f"{self.width}× {self.device.label}"
        par = f" TP{self.width}" if self.option.engine in ("vllm", "sglang") else ""
        return f"{self.option.label}{par}, {len(self.replicas)} replica(s) on {where}"

    @property
    def gpus_used(self) -> int:
        return self.width * max(len(self.replicas), len(self.shard_hosts))


# -- capacity --------------------------------------------------------------------------------

class Capacity:
    """What is still free: GPUs (after headroom and exclusions) and host RAM."""

    def __init__(self, inventory: Inventory, request: Request):
        self.hosts = inventory.hosts
        self.free_gpu: dict[str, dict[int, float]] = {}
        self.free_ram: dict[str, float] = {}
        excluded = set(request.exclude_gpus)
        known = {gpu_key(h.name, g.index) for h in inventory.hosts for g in h.gpus}
        unknown = sorted(excluded - known)
        if unknown:
            raise InvalidInput(f"exclude_gpus: {', '.join(unknown)} is not a GPU of this inventory "
                               f"(GPUs: {', '.join(sorted(known)) or 'none'})")
        for h in inventory.hosts:
            self.free_gpu[h.name] = {
                g.index: free_gib_after_headroom(g, request.headroom_for(g.memory_total_gib))
                for g in h.gpus if gpu_key(h.name, g.index) not in excluded and not g.mig_mode}
            self.free_ram[h.name] = (h.memory_available_bytes or h.memory_total_bytes) / GIB

    def gpu_count(self) -> int:
        return sum(len(v) for v in self.free_gpu.values())

    def take(self, host: Host, gpus: tuple[int, ...], ram_gib: float) -> None:
        for i in gpus:
            self.free_gpu[host.name].pop(i, None)
        self.free_ram[host.name] -= ram_gib


# -- the planner -----------------------------------------------------------------------------

class Planner:
    def __init__(self, inventory: Inventory, request: Request, *, templates: str | None = None,
                 local_models: dict | None = None):
        self.inventory = inventory
        self.request = request
        self.templates = templates
        self.local_models = local_models or {}
        self.capacity = Capacity(inventory, request)
        self._memo: dict = {}
        self._groups: dict = {}         # (host, free GPU indexes, width) -> groups
        self._position = {h.name: n for n, h in enumerate(inventory.hosts)}
        self.quiet = False              # True: refuse without the (costly) explanation
        self.rejected: list[dict] = []
        self.notes: list[str] = []

    def _defaults(self, engine: str) -> dict:
        """The engine's template defaults, read once per plan (do not modify)."""
        key = ("defaults", engine)
        if key not in self._memo:
            self._memo[key] = engine_defaults(engine, self.templates)
        return self._memo[key]

    # -- public ---------------------------------------------------------------------------
    def run(self) -> tuple[list[dict], list[dict], list[str]]:
        order = sorted(range(len(self.request.models)),
                       key=lambda i: (-self.request.models[i].share, i))
        chosen: dict[int, dict] = {}
        for n, i in enumerate(order):
            mreq = self.request.models[i]
            # this model's share of the GPUs still free; the last model gets all that is left
            rest = sum(self.request.models[j].share for j in order[n:])
            quota = max(1, math.floor(self.capacity.gpu_count() * mreq.share / rest + 1e-9))
            layout, context = self._choose(mreq, quota)
            chosen[i] = self._deployment(mreq, layout, context, uid_taken={d["launch"]["model_uid"]
                                                                           for d in chosen.values()})
        deployments = [chosen[i] for i in range(len(self.request.models))]
        self.rejected.sort(key=lambda r: (r["candidate"], r["reason"]))
        seen = set()
        unique = []
        for r in self.rejected:
            key = (r["candidate"], r["reason"])
            if key not in seen:
                seen.add(key)
                unique.append(r)
        return deployments, unique, self.notes

    # -- step 1: options ------------------------------------------------------------------
    def _archs(self, mreq: ModelRequest) -> list:
        from xinf_planner.core import catalog

        if mreq.size is not None:
            return [catalog.get_model(f"{mreq.family}:{mreq.size}")]
        return list(reversed(catalog.models_of(mreq.family)))

    def _options(self, mreq: ModelRequest, archs: list, local) -> list[Option]:
        from xinf_planner.core import catalog

        req = self.request
        options = []
        for arch in archs:
            specs = [local_spec(arch, local)] if local is not None else catalog.specs_for(arch)
            for spec in specs:
                name = f"{arch.ref} {spec.model_format}/{spec.quantization}"
                if not spec.launchable:
                    self._reject(name, "Xinference lists this spec but cannot launch it: "
                                 + ("; ".join(spec.notes) or "not launchable") + ".")
                    continue
                if req.formats is not None and spec.model_format not in req.formats:
                    continue
                if req.quantizations is not None and not any(
                        q.lower() == spec.quantization.lower() for q in req.quantizations):
                    continue
                if req.tool_calling and not arch.tool_calling:
                    self._reject(name, f"the request needs tool calling and Xinference's {arch.family} "
                                 "family does not list the 'tools' ability.")
                    continue
                precision = rules.precision_of(spec.model_format, spec.quantization, arch.checkpoint_quant)
                for engine in rules.ENGINES:
                    if req.engines is not None and engine not in req.engines:
                        continue
                    if rules.format_reason(engine, spec.model_format):
                        continue        # not a pairing at all; no need to list it
                    reason = rules.family_reason(engine, arch) if local is None else None
                    if reason:
                        self._reject(f"{name} on {engine}", reason)
                        continue
                    options.append(Option(arch, spec, engine, precision))
        return options

    # -- step 2: layouts ------------------------------------------------------------------
    def _devices(self) -> list[tuple[Device, list[tuple[Host, list[int]]]]]:
        """GPU kinds with the free GPUs of that kind on each host, in inventory order."""
        kinds: dict[tuple, tuple[Device, list]] = {}
        for h in self.capacity.hosts:
            free = self.capacity.free_gpu[h.name]
            by_kind: dict[tuple, list[int]] = {}
            for g in h.gpus:
                if g.index in free:
                    by_kind.setdefault(gpu_kind(g), []).append(g.index)
            for kind, idx in by_kind.items():
                if kind not in kinds:
                    kinds[kind] = (device_of(h, h.gpu(idx[0])), [])
                kinds[kind][1].append((h, idx))
        out = []
        for k in sorted(kinds, key=lambda k: (k[1], k[3], k[0], k[2])):
            device, hosts = kinds[k]
            ram = min(self.capacity.free_ram[h.name] for h, _ in hosts)
            out.append((replace(device, host_ram_gib=round(ram, 2)), hosts))
        return out

    def _layouts(self, opt: Option, mreq: ModelRequest, quota: int, context: int) -> list[Layout]:
        out: list[Layout] = []
        engine = opt.engine
        widths = rules.tp_sizes() if engine != "mlx" else [1]
        for device, hosts in self._devices():
            for width in widths:
                if width > max(len(idx) for _, idx in hosts):
                    break
                layout = self._gpu_layout(opt, mreq, quota, context, device, hosts, width)
                if layout is not None:
                    out.append(layout)
        if cluster.shards(engine) and not mreq.model_path and not any(lay.served >= mreq.concurrency
                                                                       for lay in out):
            # too large for any one host (at this concurrency): one replica sharded over several
            for device, hosts in self._devices():
                layout = self._sharded_layout(opt, mreq, context, device, hosts)
                if layout is not None:
                    out.append(layout)
        if rules.engine_facts(engine)["cpu"]:
            layout = self._cpu_layout(opt, mreq, context)
            if layout is not None:
                out.append(layout)
        return out

    def _gpu_layout(self, opt, mreq, quota, context, device, hosts, width) -> Layout | None:
        engine = opt.engine
        name = f"{opt.label} {'TP' if engine in ('vllm', 'sglang') else 'on '}{width}" \
               f"{'' if engine in ('vllm', 'sglang') else ' GPU(s)'} × {device.label}"
        if engine in ("vllm", "sglang"):
            reason = rules.tp_reason(opt.arch, width, opt.spec.model_format)
            if reason:
                self._reject(name, reason)
                return None
        if width > quota and len(self.request.models) > 1:
            self._reject(name, f"{width} GPUs per replica is more than this model's share of {quota} GPU(s).")
            return None
        reason = rules.cc_reason(engine, opt.spec.model_format, opt.precision, device.cc, device.label)
        if reason:
            self._reject(name, reason)
            return None
        groups_by_host: list[list[Group]] = []
        platform_reason = None
        for host, idx in hosts:
            reason = rules.platform_reason(engine, host, device.vendor)
            if reason:
                platform_reason = platform_reason or reason
                continue
            if not self._placeable(host):
                continue
            groups_by_host.append(self._host_groups(host, idx, width))
        if not any(groups_by_host):
            if platform_reason:
                self._reject(name, platform_reason)
            return None
        dtype = rules.dtype_for(engine, opt.precision, device.cc)
        # which groups fit one sequence of the context at all (memoised per free-memory level)
        fitting: list[list[Group]] = []
        why = None
        probes: dict[float, tuple] = {}
        for groups in groups_by_host:
            ok = []
            for g in groups:
                level = round(g.free_gib, 2)
                if level not in probes:
                    probes[level] = self._fit_probe(opt, device, width, g.free_gib, context, dtype)
                est, reason = probes[level]
                if est is None:
                    why = why or reason
                else:
                    ok.append(g)
            fitting.append(ok)
        available = sum(len(g) for g in fitting)
        if not available:
            self._reject(name, why or "it does not fit.")
            return None
        replicas = self._replica_count(mreq, available, max(1, quota // width), name)
        if replicas is None:
            return None
        if mreq.model_path and not self.request.model_path_on_every_worker:
            fitting = [g for g in fitting if g][:1]        # local weights: one host
            if mreq.replicas and mreq.replicas > len(fitting[0]):
                self._reject(name, f"local weights are registered on one host, where only {len(fitting[0])} "
                             f"of the {mreq.replicas} replicas asked for fit.")
                return None
            replicas = min(replicas, len(fitting[0]))
        picked = pick_groups(fitting, replicas, self.request.strategy)
        host_of = {h.name: h for h in self.capacity.hosts}
        chosen = [(host_of[g.host], g) for g in picked]
        return self._finish(opt, mreq, context, device, width, chosen, dtype, name)

    def _sharded_layout(self, opt, mreq, context, device, hosts) -> Layout | None:
        """The fewest hosts (then the fewest GPUs per host) of this GPU kind over which one
        replica serves the concurrency, with every shard on the same GPU indexes; else the one
        that serves the most; None when none fits."""
        engine = opt.engine
        name = f"{opt.label} over several hosts × {device.label}"
        if mreq.replicas is not None and mreq.replicas > 1:
            self._reject(name, f"a replica sharded over several hosts is launched once (Xinference cannot "
                               f"pin or add replicas of an n_worker launch); {mreq.replicas} replicas "
                               f"were asked for.")
            return None
        if rules.cc_reason(engine, opt.spec.model_format, opt.precision, device.cc, device.label):
            return None                             # refused (with its reason) on one host already
        eligible = [(h, idx) for h, idx in hosts
                    if h.worker_address and not rules.platform_reason(engine, h, device.vendor)]
        if len(eligible) < 2:
            return None
        dtype = rules.dtype_for(engine, opt.precision, device.cc)
        widest = max(len(idx) for _, idx in eligible)
        why = None
        best = None
        for n in range(2, min(len(eligible), MAX_SHARD_HOSTS) + 1):
            for width in [w for w in rules.tp_sizes() if w <= widest]:
                par, reason = cluster.parallel_for(engine, opt.arch, opt.spec.model_format, width, n,
                                                   self.request.interconnect)
                if par is None:
                    why = why or reason
                    continue
                by_host = [(h, self._host_groups(h, idx, width)) for h, idx in eligible]
                for gpus, members in cluster.common_groups(by_host):
                    if len(members) < n:
                        break
                    picked = cluster.pick_hosts(members, n, self.request.strategy)
                    free = min(g.free_gib for _, g in picked)
                    extra = self._engine_extra(opt, device, free, context, 1, probe=True)
                    if extra is None:
                        continue
                    est = self._estimate(opt, device, par.tp, free, context, 1, dtype, {**extra, "pp": par.pp})
                    if not est.fits:
                        why = why or " ".join(est.reasons)
                        break                   # the same memory level on other hosts fits no better
                    first = (picked[0][0], replace(picked[0][1], free_gib=free))
                    lay = self._finish(opt, mreq, context, device, par.tp, [first], dtype, name, pp=par.pp)
                    lay = replace(lay, width=width, shard_hosts=tuple(h for h, _ in picked), tp=par.tp,
                                  pp=par.pp, reasons=[par.reason, *lay.reasons])
                    if lay.served >= mreq.concurrency:
                        return lay
                    if best is None or lay.served > best.served:
                        best = lay
                    break
        if best is None:
            self._reject(name, why or "no set of hosts with the same free GPUs holds it.")
        return best

    def _host_groups(self, host: Host, idx: list[int], width: int) -> list[Group]:
        key = (host.name, tuple(idx), width)
        if key not in self._groups:
            self._groups[key] = host_groups(host, idx, width, self.capacity.free_gpu[host.name])
        return self._groups[key]

    def _cpu_layout(self, opt: Option, mreq: ModelRequest, context: int) -> Layout | None:
        name = f"{opt.label} on the CPU"
        reason = rules.cpu_format_reason(opt.engine, opt.spec.model_format)
        if reason:
            self._reject(name, reason)
            return None
        hosts = []
        reason_any = None
        for h in self.capacity.hosts:
            reason = rules.platform_reason(opt.engine, h, None)
            if reason:
                reason_any = reason_any or reason
                continue
            if self.capacity.free_gpu[h.name] and opt.engine != "llama.cpp":
                continue            # GPU hosts serve from their GPUs; llama.cpp may still use the CPU
            if not self._placeable(h):
                continue
            hosts.append(h)
        if not hosts:
            if reason_any:
                self._reject(name, reason_any)
            return None
        # hosts without usable GPUs first: a CPU replica on a GPU host is the last choice
        hosts.sort(key=lambda h: (bool(self.capacity.free_gpu[h.name]), self._position[h.name]))
        if mreq.model_path and not self.request.model_path_on_every_worker:
            hosts = hosts[:1]                               # local weights: one host
        cpu_only = [h for h in hosts if not h.gpus]
        # CPU replicas on several hosts are pinned by replica_config, which cannot keep a host
        # with GPUs off them (n_gpu "auto" takes one): hosts without GPUs, else one host.
        hosts = cpu_only or hosts[:1]
        want = mreq.replicas or max(1, len(cpu_only))       # by default one replica per CPU host
        placed: list[tuple[Host, None]] = []
        counts: dict[str, int] = {}

        def add(h: Host) -> bool:
            n = counts.get(h.name, 0) + 1
            trial = self._cpu_estimate(opt, h, context, n, mreq, want)
            if trial is None or trial.host_gib * n > self.capacity.free_ram[h.name] + 1e-9:
                return False
            counts[h.name] = n
            placed.append((h, None))
            return True

        if self.request.strategy == "pack":
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
            trial = self._estimate_cpu_any(opt, hosts[0], context, mreq)
            if trial is None:
                self._reject(name, "the memory model finds no way to run it on the CPU.")
            else:
                self._reject(name, f"it needs about {trial.host_gib:.1f} GiB of RAM; {hosts[0].name} has "
                             f"{self.capacity.free_ram[hosts[0].name]:.1f} GiB available.")
            return None
        if len(placed) < want and mreq.replicas:
            self._reject(name, f"only {len(placed)} of the {want} replicas asked for fit in RAM.")
            return None
        placed.sort(key=lambda item: self._position[item[0].name])
        return self._finish(opt, mreq, context, None, 0, placed, None, name, cpu_counts=counts)

    def _placeable(self, host: Host) -> bool:
        """Multi-host inventories pin replicas through worker addresses; hosts without one
        can only serve when the inventory has that single host."""
        if len(self.inventory.hosts) == 1 or host.worker_address:
            return True
        note = (f"Host {host.name} has no worker_address, so no replica can be pinned to it; "
                "add the worker's ip:port to the inventory to use it.")
        if note not in self.notes:
            self.notes.append(note)
        return False

    def _replica_count(self, mreq: ModelRequest, available: int, by_quota: int, name: str) -> int | None:
        if mreq.replicas is not None:
            if mreq.replicas > available:
                self._reject(name, f"only {available} replica(s) fit, and {mreq.replicas} were asked for.")
                return None
            return mreq.replicas
        return max(1, min(available, by_quota))

    # -- estimates -----------------------------------------------------------------------
    def _estimate(self, opt: Option, device: Device | None, width: int, free_gib: float | None,
                  context: int, seqs: int, dtype: str | None, extra: dict, host: Host | None = None,
                  cpu_share: int = 1):
        from xinf_planner.core.memory import EstimateInput, estimate

        key = ("est", opt.key, device, width, None if free_gib is None else round(free_gib, 2), context, seqs,
               dtype, tuple(sorted(extra.items())), None if host is None else _host_key(host), cpu_share)
        if key in self._memo:
            return self._memo[key]
        kwargs: dict[str, Any] = dict(model=opt.arch, engine=opt.engine, model_format=opt.spec.model_format,
                                      quantization=opt.spec.quantization, context_length=context,
                                      concurrency=seqs, dtype=dtype)
        if device is not None:
            # tp: the GPUs of one replica (vLLM/SGLang shard; llama.cpp/Transformers split layers)
            kwargs.update(tp=width,
                          gpu_total_gib=device.total_gib,
                          gpu_used_gib=max(0.0, device.total_gib - free_gib),
                          gpu_bandwidth_gbps=device.bandwidth_gbps,
                          unified_memory=device.unified, gpu_wired_limit_gib=device.wired_limit_gib,
                          host_memory_gib=device.host_ram_gib)
        if host is not None:
            kwargs["host_memory_gib"] = self.capacity.free_ram[host.name]
            bw = host.memory_bandwidth_gbps
            if bw:
                kwargs["cpu_bandwidth_gbps"] = bw / cpu_share
        kwargs.update(extra)
        est = estimate(_input(EstimateInput, kwargs))
        self._memo[key] = est
        return est

    def _fit_probe(self, opt, device, width, free_gib, context, dtype):
        """(estimate, None) when one sequence of ``context`` fits on a group with ``free_gib``
        free per GPU at the engine's largest allowed reservation; else (None, reason)."""
        extra = self._engine_extra(opt, device, free_gib, context, 1, probe=True)
        if extra is None:
            return None, (f"only {free_gib:.1f} GiB of the {device.total_gib:.1f} GiB is free per GPU, "
                          "below what the engine must reserve.")
        if opt.engine == "llama.cpp":
            est, _layers = self._llama_layers(opt, device, width, free_gib, context, 1)
            if est is None:
                full = self._estimate(opt, device, width, free_gib, context, 1, None, extra)
                return None, " ".join(full.reasons) + " (not even one layer fits)."
            return est, None
        est = self._estimate(opt, device, width, free_gib, context, 1, dtype, extra)
        if not est.fits:
            return None, " ".join(est.reasons) or "it does not fit."
        if est.per_gpu_gib["total"] > free_gib + 1e-6 and opt.engine not in ("vllm", "sglang"):
            return None, (f"it needs {est.per_gpu_gib['total']:.1f} GiB per GPU; {free_gib:.1f} GiB is free.")
        return est, None

    def _llama_layers(self, opt, device, width, free_gib, context, seqs):
        """llama.cpp on GPUs: (estimate, None) with every layer offloaded when that fits, else
        (estimate, k) with the most layers k that fit (partial offload), else (None, None)."""
        extra = {"n_parallel": seqs, "n_ctx": context * seqs}
        est = self._estimate(opt, device, width, free_gib, context, seqs, None, extra)
        if est.fits:
            return est, None
        lo, hi, best = 1, opt.arch.num_layers - 1, None
        while lo <= hi:
            mid = (lo + hi) // 2
            trial = self._estimate(opt, device, width, free_gib, context, seqs, None,
                                   {**extra, "n_gpu_layers": mid})
            if trial.fits:
                best, lo = (trial, mid), mid + 1
            else:
                hi = mid - 1
        return best if best else (None, None)

    def _engine_extra(self, opt, device, free_gib, context, seqs, probe=False) -> dict | None:
        """Engine kwargs at the largest reservation the GPU allows (vLLM/SGLang), or slots."""
        engine = opt.engine
        if engine in ("vllm", "sglang"):
            res = self._defaults(engine)["reservation"]
            free_fraction = free_gib / device.total_gib
            cap = min(res["cap"], free_fraction)
            if cap <= 0:
                return None
            key = "gpu_memory_utilization" if engine == "vllm" else "mem_fraction_static"
            return {key: int(cap * 10000) / 10000}
        if engine == "llama.cpp":
            return {"n_parallel": seqs, "n_ctx": context * seqs}
        return {}

    def _estimate_cpu_any(self, opt, host, context, mreq):
        """The CPU estimate of one replica whether or not it fits (for explanations)."""
        seqs = self._slots(opt.engine, mreq.concurrency, 1)
        extra = {"n_parallel": seqs, "n_ctx": context * seqs} if opt.engine == "llama.cpp" else {}
        return self._estimate(opt, None, 0, None, context, seqs, None, extra, host=host)

    def _cpu_estimate(self, opt, host, context, replicas_here, mreq, total_replicas):
        seqs = self._slots(opt.engine, mreq.concurrency, total_replicas)
        extra = {"n_parallel": seqs, "n_ctx": context * seqs} if opt.engine == "llama.cpp" else {}
        est = self._estimate(opt, None, 0, None, context, seqs, None, extra, host=host,
                             cpu_share=replicas_here)
        if not est.fits:
            return None
        return est

    def _slots(self, engine: str, concurrency: int, replicas: int) -> int:
        target = math.ceil(concurrency / replicas)
        if engine == "llama.cpp":
            return max(1, min(target, self._defaults("llama.cpp")["max_parallel"]))
        return max(1, target)

    # -- the final configuration of a layout ----------------------------------------------
    def _finish(self, opt, mreq, context, device, width, chosen, dtype, name, cpu_counts=None, pp=1):
        from xinf_planner.core.memory import EstimateInput, min_gpu_memory_utilization

        engine = opt.engine
        n = len(chosen)
        target = math.ceil(mreq.concurrency / n)
        reasons: list[str] = []
        if device is None:
            host0 = chosen[0][0]
            share = max(cpu_counts.values()) if cpu_counts else 1
            seqs = self._slots(engine, mreq.concurrency, n)
            extra = {"n_parallel": seqs, "n_ctx": context * seqs} if engine == "llama.cpp" else {}
            est = self._estimate(opt, None, 0, None, context, seqs, None, extra, host=host0, cpu_share=share)
            launch_extra = {"n_parallel": seqs} if engine == "llama.cpp" else {}
            if engine == "llama.cpp":
                threads = max(1, host0.cpu_cores // share)
                launch_extra["n_threads"] = threads
            per_replica = min(seqs, int(est.max_concurrent_sequences)) if est.max_concurrent_sequences \
                else seqs
        else:
            free = min(g.free_gib for _, g in chosen)
            launch_extra = {}
            if engine in ("vllm", "sglang"):
                res = self._defaults(engine)["reservation"]
                key = res["key"]
                probe_extra = self._engine_extra(opt, device, free, context, 1)
                fraction = probe_extra[key]
                if self.request.objective != "throughput":
                    kwargs = dict(model=opt.arch, engine=engine, model_format=opt.spec.model_format,
                                  quantization=opt.spec.quantization, tp=width,
                                  gpu_total_gib=device.total_gib, gpu_used_gib=device.total_gib - free,
                                  context_length=context, concurrency=target, dtype=dtype,
                                  gpu_bandwidth_gbps=device.bandwidth_gbps, pp=pp)
                    needed = min_gpu_memory_utilization(_input(EstimateInput, kwargs), context * target)
                    if needed is not None:
                        sized = reservation_fraction(needed, res["margin"], res["cap"], free / device.total_gib)
                        if sized is not None:
                            fraction = sized
                            reasons.append(f"{key} {fraction}: the smallest share of each GPU's "
                                           f"{device.total_gib:.1f} GiB whose KV cache holds {target} "
                                           f"sequence(s) of {context} tokens ({needed:.3f}), plus a "
                                           f"{res['margin']} margin, capped at {res['cap']} and at what is free.")
                if not reasons:
                    reasons.append(f"{key} {fraction}: as much of each GPU as is free, capped at {res['cap']}"
                                   + (", for throughput." if self.request.objective == "throughput"
                                      else ", since the KV cache needs all of it."))
                launch_extra[key] = fraction
                stages = {"pp": pp} if pp > 1 else {}
                est = self._estimate(opt, device, width, free, context, target, dtype, {key: fraction, **stages})
                per_replica = min(int(est.max_concurrent_sequences), MAX_NUM_SEQS)
                if self.request.objective == "throughput" and per_replica > target:
                    # speeds at capacity: every replica running as many sequences as its KV holds
                    load = min(per_replica, MAX_NUM_SEQS)
                    est = self._estimate(opt, device, width, free, context, load, dtype, {key: fraction, **stages})
            elif engine == "llama.cpp":
                seqs = self._slots(engine, mreq.concurrency, n)
                est, layers = self._llama_layers(opt, device, width, free, context, seqs)
                while est is None and seqs > 1:
                    seqs //= 2
                    est, layers = self._llama_layers(opt, device, width, free, context, seqs)
                launch_extra["n_parallel"] = seqs
                per_replica = seqs
                if layers is None:
                    launch_extra["n_gpu_layers"] = self._defaults("llama.cpp")["all_layers"]
                else:
                    launch_extra["n_gpu_layers"] = layers
                    reasons.append(f"Partial offload: {layers} of {opt.arch.num_layers} layers fit on the GPU; "
                                   f"the rest run from system RAM ({est.host_gib:.1f} GiB), much slower.")
            else:
                seqs = self._slots(engine, mreq.concurrency, n)
                est = self._estimate(opt, device, width, free, context, seqs, dtype, {})
                while not est.fits and seqs > 1:
                    seqs //= 2
                    est = self._estimate(opt, device, width, free, context, seqs, dtype, {})
                per_replica = seqs
            if dtype:
                launch_extra["dtype"] = dtype
        served = per_replica * n
        per_seq = float(est.decode_tokens_per_s.get("per_sequence") or 0.0)
        total = float(est.decode_tokens_per_s.get("aggregate") or 0.0) * n
        return Layout(opt, device or Device(None, "CPU", None, None, None, None), width, chosen, est,
                      launch_extra, per_replica, served, per_seq, total, reasons)

    # -- step 3: choosing ----------------------------------------------------------------
    def _choose(self, mreq: ModelRequest, quota: int) -> tuple[Layout, int]:
        local = self.local_models.get(mreq.model_path) if mreq.model_path else None
        archs = self._archs(mreq) if local is None else [local_arch(mreq, local)]
        context = mreq.context_length
        for arch in archs:
            limit = arch.max_position_embeddings or arch.context_length
            if limit and context > limit and local is None:
                self._reject(arch.ref, f"the context length {context} exceeds the model's maximum {limit}.")
        archs = [a for a in archs if local is not None or not a.max_position_embeddings
                 or context <= a.max_position_embeddings]
        options = self._options(mreq, archs, local)
        layouts: list[Layout] = []
        for opt in options:
            layouts.extend(self._layouts(opt, mreq, quota, context))
        if any(not rules.is_last_resort(lay.option.engine) for lay in layouts):
            last = [lay for lay in layouts if rules.is_last_resort(lay.option.engine)]
            for lay in last:
                self._reject(lay.label, "Transformers is a last resort (no paged KV cache, no continuous "
                             "batching) and another engine fits.")
            layouts = [lay for lay in layouts if not rules.is_last_resort(lay.option.engine)]
        meeting = [lay for lay in layouts if lay.served >= mreq.concurrency]
        if not meeting:
            if self.quiet:
                raise NothingFits(f"nothing fits {mreq.ref}")
            raise NothingFits(self._explain(mreq, archs, layouts, context))
        ranked = sorted(meeting, key=lambda lay: self._score(lay, mreq), reverse=True)
        best = ranked[0]
        if mreq.size is None and local is None:
            best.reasons.append(self._larger_sizes(best, ranked, archs))
        for lay in ranked[1:1 + REJECTED_ALTERNATIVES]:
            self._reject(lay.label, self._why_not(best, lay))
        for lay in layouts:
            if lay.served < mreq.concurrency:
                self._reject(lay.label, f"it serves {lay.served} sequence(s) of {context} tokens at once; "
                             f"{mreq.concurrency} were asked for.")
        self._commit(best)
        return best, context

    def _larger_sizes(self, best: Layout, ranked: list[Layout], archs) -> str:
        """Why no larger size of the family was chosen: each one's best layout, or 'does not fit'."""
        size = best.option.arch.size_b
        larger = sorted({a.size_b for a in archs if a.size_b > size})
        if not larger:
            return f"Largest: {size:g}B is the largest size of {best.option.arch.family} that Xinference offers."
        parts = []
        slow = []
        for b in larger:
            top = next((lay for lay in ranked if lay.option.arch.size_b == b), None)
            if top is None:
                parts.append(f"{b:g}B does not serve this workload here")
                continue
            parts.append(f"{b:g}B fits ({top.option.spec.model_format}/{top.option.spec.quantization} on "
                         f"{top.option.engine}) at {top.per_seq_tps:.1f} tokens/s per sequence and "
                         f"{top.served} sequence(s) at once, and scores lower")
            if top.per_seq_tps < TOO_SLOW_TOKENS_PER_S:
                slow.append(f"{b:g}B")
        out = "Larger sizes: " + "; ".join(parts) + "."
        if slow:
            out += (f" {', '.join(slow)} would decode under {TOO_SLOW_TOKENS_PER_S:g} tokens/s per sequence "
                    "here, too slow to use: R1 models think for hundreds to thousands of tokens before "
                    "they answer.")
        return out

    def _score(self, lay: Layout, mreq: ModelRequest) -> tuple:
        opt = lay.option
        rank = rules.precision_rank(opt.precision)
        many = mreq.concurrency >= rules.facts()["paged_kv_concurrency"]
        # 'balanced' plans a server: continuous batching serves the next user at the same quality,
        # so paged engines lead whenever they fit; the other objectives ask for it by concurrency.
        paged = rules.has_paged_kv(opt.engine) and (many or self.request.objective == "balanced")
        size = opt.arch.size_b
        objective = self.request.objective
        tie = (-rules.engine_order(opt.engine), -lay.width, -_link(lay), lay.label)
        used = lay.gpus_used
        if objective == "quality":
            usable = lay.per_seq_tps >= TOO_SLOW_TOKENS_PER_S
            head = (usable, size, rank, paged, used, round(lay.total_tps, 3))
        elif objective == "throughput":
            head = (paged, round(lay.total_tps, 3), lay.served, size, rank)
        elif objective == "latency":
            head = (paged, round(lay.per_seq_tps, 3), size, rank)
        else:
            head = (paged, round(balanced_score(size, opt.precision, lay.per_seq_tps), 6), used, round(lay.total_tps, 3))
        return head + tie

    def _why_not(self, best: Layout, lay: Layout) -> str:
        objective = self.request.objective
        return (f"scored lower for '{objective}' (the objective's rule is in the deployment's reasons): "
                f"{lay.per_seq_tps:.1f} tokens/s "
                f"per sequence, {lay.total_tps:.0f} in total, {lay.served} sequence(s) at once, against "
                f"{best.per_seq_tps:.1f}, {best.total_tps:.0f} and {best.served} for the choice.")

    def _commit(self, lay: Layout) -> None:
        for host in lay.shard_hosts:
            self.capacity.take(host, lay.replicas[0][1].gpus, 0.0)
        for host, group in lay.replicas[: 0 if lay.shard_hosts else None]:
            ram = lay.estimate.host_gib if group is None else 0.0
            self.capacity.take(host, () if group is None else group.gpus, ram)

    def _reject(self, candidate: str, reason: str) -> None:
        self.rejected.append({"candidate": candidate, "reason": reason})

    # -- nothing fits ---------------------------------------------------------------------
    def _explain(self, mreq: ModelRequest, archs, layouts: list[Layout], context: int) -> str:
        parts = [f"nothing fits {mreq.ref} at {context} tokens × {mreq.concurrency} sequence(s) on this "
                 f"inventory ({_describe(self.inventory, self.capacity)})."]
        if layouts:
            best = max(layouts, key=lambda lay: (lay.served, lay.option.arch.size_b))
            parts.append(f"The most it can serve is {best.served} sequence(s) at once with {best.label}.")
        reasons = {}
        for r in self.rejected:
            reasons.setdefault(r["reason"], r["candidate"])
        tried = len({r["candidate"] for r in self.rejected})
        if not tried:
            req = self.request
            filters = [f"{k} {', '.join(v)}" for k, v in (("engines", req.engines), ("formats", req.formats),
                                                            ("quantizations", req.quantizations)) if v]
            parts.append("No catalog spec of the model passes the filters"
                         + (f" ({'; '.join(filters)})" if filters else "")
                         + "; `xinf-plan estimate --help` and the catalog list the valid choices.")
        else:
            parts.append(f"Tried {tried} option(s); the reasons they failed:")
        for reason, cand in sorted(reasons.items(), key=lambda kv: kv[1])[:8]:
            parts.append(f"  - {cand}: {reason}")
        if len(reasons) > 8:
            parts.append(f"  - … and {len(reasons) - 8} more reasons.")
        largest = self._largest_that_fits(mreq, context)
        parts.append(largest)
        parts.append(self._hardware_needed(mreq, archs, context))
        return "\n".join(parts)

    def _largest_that_fits(self, mreq: ModelRequest, context: int) -> str:
        from xinf_planner.core import catalog

        trial = Planner(self.inventory, replace(self.request, engines=None, formats=None,
                                                quantizations=None),
                        templates=self.templates, local_models=self.local_models)
        trial.quiet = True
        trial._memo = self._memo
        for arch in reversed(catalog.models_of(mreq.family)):
            small = replace(mreq, size=arch.size, concurrency=1, replicas=None, model_path=None)
            try:
                lay, _ = trial._choose(small, trial.capacity.gpu_count() or 1)
            except NothingFits:
                continue
            return (f"The largest model of the family that fits is {lay.option.label} "
                    f"({lay.served} sequence(s) of {context} tokens at once, "
                    f"{lay.per_seq_tps:.1f} tokens/s per sequence).")
        return f"No size of {mreq.family} fits at {context} tokens on this inventory."

    def _hardware_needed(self, mreq: ModelRequest, archs, context: int) -> str:
        from xinf_planner.core import catalog
        from xinf_planner.core.memory import EstimateInput, estimate

        arch = archs[-1] if archs else catalog.models_of(mreq.family)[0]
        if mreq.size is None:
            arch = catalog.models_of(mreq.family)[0]
        best = None
        for spec in catalog.specs_for(arch):
            if not spec.launchable:
                continue
            for engine in ("vllm", "llama.cpp"):
                if rules.format_reason(engine, spec.model_format):
                    continue
                kwargs = dict(model=arch, engine=engine, model_format=spec.model_format,
                              quantization=spec.quantization, tp=1, gpu_total_gib=4096.0,
                              context_length=context, concurrency=mreq.concurrency)
                if engine == "vllm":
                    kwargs["gpu_memory_utilization"] = 0.9
                else:
                    kwargs.update(n_parallel=min(mreq.concurrency, 8), n_ctx=context * min(mreq.concurrency, 8))
                est = estimate(_input(EstimateInput, kwargs))
                need = est.per_gpu_gib["weights"] + est.per_gpu_gib["activation"] + est.per_gpu_gib["overhead"] \
                    + _kv_need(est, context, mreq.concurrency)
                prec = rules.precision_of(spec.model_format, spec.quantization, arch.checkpoint_quant)
                item = (need, spec.model_format, spec.quantization, engine, prec)
                if best is None or item < best:
                    best = item
        if best is None:
            return ""
        need, fmt, quant, engine, prec = best
        gpus = ", ".join(f"{_pow2(math.ceil(need / g))}× {n}" for n, g in (("24 GiB GPU", 22.0), ("80 GiB GPU", 76.0)))
        return (f"{arch.ref} at its smallest ({fmt}/{quant}, {rules.precision_label(prec)}, on {engine}) needs "
                f"about {need:.0f} GiB of GPU memory in all for this request (e.g. {gpus}; TP is a power of two).")

    # -- the deployment document ----------------------------------------------------------
    def _deployment(self, mreq: ModelRequest, lay: Layout, context: int, uid_taken: set) -> dict:
        opt = lay.option
        arch = opt.arch
        spec = opt.spec
        local = self.local_models.get(mreq.model_path) if mreq.model_path else None
        base_uid = f"{arch.family}-{arch.size.replace('_', '.')}b".lower() if local is None else \
            f"{arch.family}-local".lower()
        uid = base_uid
        n = 2
        while uid in uid_taken:
            uid = f"{base_uid}-{n}"
            n += 1
        defaults = engine_defaults(opt.engine, self.templates)
        launch: dict[str, Any] = {"model_uid": uid}
        registration = None
        if local is not None:
            from xinf_planner.shell.local_weights import registration_for

            host0 = lay.replicas[0][0]
            worker = host0.worker_address if len(self.inventory.hosts) > 1 else None
            if self.request.model_path_on_every_worker:
                worker = None       # registered at the supervisor; every worker reads the same path
            registration = registration_for(local, model_name=uid, model_family=mreq.family,
                                            context_length=None, worker_ip=worker)
            launch["model_name"] = registration["model_name"]
            size = spec.size_label.get("local") or arch.size
        else:
            launch["model_name"] = arch.family
            size = spec.launch_size()
        launch.update({
            "model_type": "LLM",
            "model_engine": defaults["model_engine"],
            "model_format": spec.model_format,
            "model_size_in_billions": _size_value(size),
            "quantization": spec.quantization,
        })
        replicas = [(h, () if g is None else g.gpus) for h, g in lay.replicas]
        if lay.shard_hosts:
            par = cluster.Parallel(lay.tp, lay.pp, "")
            launch.update(cluster.launch_kwargs(opt.engine, list(lay.shard_hosts), replicas[0][1], par))
        else:
            launch.update(placement_kwargs(replicas))
        launch["context_length"] = context
        launch.update(lay.launch_extra)
        launch.update(defaults.get("launch") or {})
        if "reasoning" in (arch.abilities or ()):
            launch["reasoning_content"] = True
        if local is None and spec.download_hub:
            launch["download_hub"] = spec.download_hub
        if self.request.enable_virtual_env is not None:
            launch["enable_virtual_env"] = self.request.enable_virtual_env
        dep: dict[str, Any] = {
            "name": uid,
            "model": arch.ref if local is None else f"{mreq.family}:{size}",
            "launch": launch,
            "placement": ([{"hosts": [h.name for h in lay.shard_hosts], "gpus": list(replicas[0][1])}]
                          if lay.shard_hosts else [{"host": h.name, "gpus": list(gpus)} for h, gpus in replicas]),
            "estimate": estimate_block(lay),
            "reasons": self._reasons(mreq, lay, context),
        }
        if lay.shard_hosts:
            dep["env"] = cluster.cross_host_env()
        if registration is not None:
            dep["registration"] = registration
            dep["arch"] = {k: getattr(arch, k) for k in ("num_layers", "hidden_size", "num_attention_heads",
                                                         "num_kv_heads", "head_dim", "vocab_size", "params")}
        return dep

    def _reasons(self, mreq: ModelRequest, lay: Layout, context: int) -> list[str]:
        opt = lay.option
        engine = opt.engine
        n = len(lay.replicas)
        out = []
        objective = self.request.objective
        out.append(f"Objective '{objective}': {OBJECTIVES[objective]}.")
        if mreq.size is None and not mreq.model_path:
            out.append(f"Size: {opt.arch.size.replace('_', '.')}B scores best among the {opt.arch.family} "
                       f"sizes that fit.")
        if rules.has_paged_kv(engine):
            why = (f"{engine}: paged KV cache and continuous batching serve many sequences at once "
                   f"from one pool")
            out.append(why + (f", which {mreq.concurrency} concurrent sequences need." if mreq.concurrency > 1
                              else "."))
        elif engine == "llama.cpp":
            where = "on the CPU" if lay.device.kind is None else f"on {lay.device.label}"
            out.append(f"llama.cpp: it serves the GGUF quantisation {where}; each replica has "
                       f"{lay.launch_extra.get('n_parallel', 1)} fixed slot(s) of {context} tokens.")
        elif engine == "mlx":
            out.append("MLX: the native engine on Apple silicon, using unified memory.")
        else:
            out.append(f"{engine}: the only engine that fits this spec here.")
        out.append(f"Quantisation: {opt.spec.model_format}/{opt.spec.quantization} "
                   f"({rules.precision_label(opt.precision)}, quality rank {rules.precision_rank(opt.precision)} of 7).")
        if lay.shard_hosts:
            hosts = ", ".join(h.name for h in lay.shard_hosts)
            out.append(f"Sharded: no single host holds it, so one replica spans {len(lay.shard_hosts)} hosts "
                       f"({hosts}) with n_worker {len(lay.shard_hosts)}, each shard on GPUs {list(lay.replicas[0][1].gpus)} "
                       f"of its host (the same gpu_idx everywhere, n_gpu {lay.width} per worker); worker_ip "
                       "names the workers, since replica_config cannot be combined with n_worker > 1.")
            out.append("One replica: Xinference cannot pin the workers of each replica of a sharded launch "
                       "nor add replicas to it; more capacity is another deployment.")
            out.append(cluster.env_reason())
        elif lay.device.kind is not None:
            if engine in ("vllm", "sglang"):
                out.append(f"TP {lay.width}: a power of two that divides the {opt.arch.num_attention_heads} "
                           f"attention heads and {opt.arch.num_kv_heads} KV heads; {n} replica(s) of TP "
                           f"{lay.width} on {lay.device.label}.")
            else:
                out.append(f"{n} replica(s), each on {lay.width} {lay.device.label} GPU(s).")
            worst = max((g.worst_link for _, g in lay.replicas), default=0)
            hosts = {h.name for h, _ in lay.replicas}
            over = f"; replicas {self.request.strategy} over {len(hosts)} hosts" if len(hosts) > 1 else ""
            if lay.width > 1:
                out.append(f"Placement: each replica's GPUs are linked by {LINK_WORDS[worst]} at worst "
                           f"(GPUs of one model only{over}).")
            elif over:
                out.append(f"Placement: {over[2:]}.")
            if "dtype" in lay.launch_extra:
                out.append(f"dtype float16: {lay.device.label} has compute capability "
                           f"{rules.cc_text(lay.device.cc)}, below 8.0, so no bf16.")
        else:
            hosts = sorted({h.name for h, _ in lay.replicas})
            out.append(f"{n} replica(s) on the CPU of {', '.join(hosts)} with "
                       f"{lay.launch_extra.get('n_threads', 'all')} thread(s) each.")
        if lay.shard_hosts and "dtype" in lay.launch_extra:
            out.append(f"dtype float16: {lay.device.label} has compute capability "
                       f"{rules.cc_text(lay.device.cc)}, below 8.0, so no bf16.")
        if mreq.model_path and self.request.model_path_on_every_worker and len({h.name for h, _ in lay.replicas}) > 1:
            out.append("Local weights on every worker: the model is registered at the supervisor, which "
                       "(Xinference 4.1.0, register_model) checks the path on itself and then on every worker; "
                       "a worker without it fails the registration, before anything is launched.")
        kinds = {gpu_kind(g) for h in self.inventory.hosts for g in h.gpus}
        if lay.device.kind is not None and len(kinds) > 1 and len({h.name for h in self.inventory.hosts}) > 1:
            out.append(f"Uniform: every replica runs {opt.spec.model_format}/{opt.spec.quantization} with the "
                       f"same TP on {lay.device.label} only; the inventory's other GPU kinds are not mixed into "
                       "this deployment (a different quantisation or TP per host would be a deployment of its own).")
        out.extend(lay.reasons)
        local = self.local_models.get(mreq.model_path) if mreq.model_path else None
        default = (local.context_length if local is not None and local.context_length
                   else opt.arch.context_length or opt.arch.max_position_embeddings)
        out.append(f"Context: context_length {context} set explicitly (the model default would be {default}).")
        out.append(f"Serves {lay.served} sequence(s) of {context} tokens at once; about "
                   f"{lay.per_seq_tps:.1f} decode tokens/s per sequence, {lay.total_tps:.0f} in total.")
        if lay.per_seq_tps < TOO_SLOW_TOKENS_PER_S:
            smallest = self._faster_advice(mreq)
            out.append(f"Slow: {lay.per_seq_tps:.1f} tokens/s per sequence is too slow for interactive use."
                       + (f" {smallest}" if smallest else ""))
        return out

    def _faster_advice(self, mreq: ModelRequest) -> str:
        from xinf_planner.core import catalog

        small = catalog.models_of(mreq.family)[0]
        return (f"Consider the small distill {small.ref} (about {small.size_b:g}B), "
                "which decodes several times faster on the same hardware.")


# -- helpers ---------------------------------------------------------------------------------

def balanced_score(size_b: float, precision: str, per_seq_tps: float) -> float:
    quality = math.log2(1 + size_b) * rules.precision_quality(precision)
    return quality * min(1.0, per_seq_tps / USABLE_TOKENS_PER_S)


def _pow2(n: int) -> int:
    """The smallest power of two ≥ n (TP sizes)."""
    return 1 << max(0, (n - 1).bit_length())


def _link(lay: Layout) -> int:
    return max((g.worst_link for _, g in lay.replicas if g is not None), default=0)


def _host_key(host: Host) -> tuple:
    return (host.os, host.arch, host.cpu_cores, host.memory_bandwidth_gbps)


def _size_value(label: str):
    """What launch_model takes: an int for whole billions, else the label ("1_5")."""
    return int(label) if label.isdigit() else label


def _kv_need(est, context: int, seqs: int) -> float:
    if est.kv_cache_tokens and est.per_gpu_gib["kv_cache"]:
        per_token = est.per_gpu_gib["kv_cache"] / est.kv_cache_tokens
        return per_token * context * seqs
    return est.per_gpu_gib["kv_cache"]


def _input(cls, kwargs: dict):
    """Build an EstimateInput from the keywords it has (the memory model may not know them all)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in kwargs.items() if k in names})


def _describe(inventory: Inventory, capacity: Capacity) -> str:
    parts = []
    for h in inventory.hosts:
        kinds: dict[str, int] = {}
        for g in h.gpus:
            if g.index in capacity.free_gpu[h.name]:
                kinds[g.name] = kinds.get(g.name, 0) + 1
        gpus = ", ".join(f"{c}× {n}" for n, c in kinds.items()) or "no usable GPU"
        parts.append(f"{h.name}: {gpus}, {h.memory_total_bytes / GIB:.0f} GiB RAM")
    if len(parts) > 4:
        return "; ".join(parts[:3]) + f"; and {len(parts) - 3} more hosts"
    return "; ".join(parts)


def device_of(host: Host, gpu: GPU) -> Device:
    from xinf_planner.core.catalog import lookup_gpu

    bandwidth = gpu.memory_bandwidth_gbps
    if bandwidth is None:
        info = lookup_gpu(gpu.name)
        bandwidth = info.bandwidth_gbps if info else None
    wired = host.gpu_wired_limit_bytes / GIB if host.gpu_wired_limit_bytes else None
    return Device(gpu_kind(gpu), gpu.name, gpu.vendor, gpu.cc, gpu.memory_total_gib, bandwidth,
                  gpu.unified_memory, wired)


def estimate_block(lay: Layout) -> dict:
    est = lay.estimate
    per_gpu = {k: round(float(v), 3) for k, v in est.per_gpu_gib.items()}
    out: dict[str, Any] = {
        "per_gpu_gib": per_gpu,
        "kv_cache_tokens": int(est.kv_cache_tokens),
        "max_concurrent_sequences": round(float(est.max_concurrent_sequences), 2),
        "decode_tokens_per_s": {"per_sequence": round(lay.per_seq_tps, 2),
                                "aggregate": round(lay.total_tps, 2)},
        "served_sequences": lay.served,
    }
    if lay.device.kind is None or getattr(est, "host_gib", 0):
        out["host_gib"] = round(float(est.host_gib), 3)
    return out


def local_arch(mreq: ModelRequest, local):
    """The architecture of local weights: the files' facts over the family's catalog entry."""
    from xinf_planner.core import catalog
    from xinf_planner.shell.local_weights import size_in_billions

    base = catalog.get_model(f"{mreq.family}:{mreq.size}") if mreq.size else catalog.models_of(mreq.family)[0]
    facts = {k: getattr(local, k) for k in ("num_layers", "hidden_size", "num_attention_heads",
                                            "num_kv_heads", "head_dim", "vocab_size", "params")
             if getattr(local, k, None)}
    label = mreq.size or size_in_billions(local.params) or base.size
    size_b = float(label.replace("_", "."))
    return replace(base, size=label, size_b=size_b, **facts)


def local_spec(arch, local):
    from xinf_planner.core.catalog import Spec

    return Spec(model=arch, model_format=local.model_format, quantization=local.quantization,
                model_ids={}, size_label={"local": arch.size}, notes=(), launchable=True)


def make_plan(inventory: Inventory, request: Request, *, templates: str | None = None,
              local_models: dict | None = None, source: str | None = None) -> dict:
    """The plan document for ``request`` on ``inventory``; NothingFits when nothing does."""
    from xinf_planner.core.plan.validate import new_plan

    planner = Planner(inventory, request, templates=templates, local_models=local_models)
    deployments, rejected, notes = planner.run()
    return new_plan(inventory, request.to_dict(), deployments, rejected, notes, source)
