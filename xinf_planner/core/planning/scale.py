"""Scaling one deployment of a plan to N replicas, each launched exactly as before.

Re-planning with another ``--replicas`` sizes every replica again (vLLM's
``gpu_memory_utilization`` and llama.cpp's ``n_parallel``/``n_threads`` follow the replica
count), which ``diff`` rightly calls a replace. ``scale_plan`` keeps the launch keywords that
configure a replica and changes only where replicas are: it drops the last replicas, or places
new ones with the planner's own rules and ledger, so that ``diff``/``apply`` see a pure scale
(``rollout/diff.py``: kind ``scale``) and roll it one replica at a time.

- **Where a new replica may go**: the planner's rules (``placement``, ``rules``): whole GPUs of
  the deployment's GPU model, as many as a replica has, on a host the engine runs on and a
  replica can be pinned to, free after the request's headroom and exclusions and not held by any
  deployment of the plan; best-linked groups first; ``spread`` takes the host with the fewest
  replicas of the deployment, ``pack`` the first host in inventory order. Local weights
  registered on one worker stay on that worker; CPU replicas follow the planner's CPU rules.
- **Whether it fits**: the memory model at that group's free memory with the deployment's own
  engine keywords, the way the planner checks a group (``estimates``); it must fit and hold at
  least the KV cache the deployment's estimate has. CPU replicas must fit the host's RAM beside
  every CPU replica the plan puts there.
- **The figures**: the deployment's estimate is made again with the same keywords at the new
  per-replica load (the request's concurrency over N replicas), on the free memory the planner
  sized it for (the least free among the original replicas' GPUs).

Refusals: ``NothingFits`` (exit 3) when the hardware holds no more identical replicas, or when
N identical replicas no longer serve the request's concurrency (that needs another per-replica
configuration: ``plan``); ``InvalidInput`` (exit 1) for an unknown deployment, a sharded one
(Xinference cannot add replicas to an ``n_worker`` launch), or a plan that does not validate.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from types import SimpleNamespace

from xinf_planner.core import engines, rules
from xinf_planner.core.inventory import Host, Inventory
from xinf_planner.core.plan.document import Deployment, Plan
from xinf_planner.core.planning import estimates
from xinf_planner.core.planning.candidates import Option
from xinf_planner.core.planning.context import CPU, Context, device_of
from xinf_planner.core.planning.placement import (
    LINK_WORDS,
    Group,
    gpu_key,
    gpu_kind,
    host_groups,
    placement_kwargs,
)
from xinf_planner.core.planning.sizing import Layout, attach
from xinf_planner.core.request import Request, split_ref
from xinf_planner.errors import InvalidInput, NothingFits

# launch keywords that say where replicas are (rebuilt by a scale; every other keyword is kept)
PLACEMENT_KEYWORDS = ("replica", "replica_config", "worker_ip", "gpu_idx", "n_gpu")
SPREAD_TAIL = "no other host can hold an identical replica."
KV_TOLERANCE_TOKENS = 0  # a new replica's KV pool may not be smaller than the estimate's at all


@dataclass
class Scaled:
    """The scaled plan and what changed, for the command's summary."""

    doc: dict
    name: str
    old: int
    new: int
    added: list[dict] = field(default_factory=list)  # placements of the new replicas
    removed: list[dict] = field(default_factory=list)  # placements dropped (the last ones)
    reasons: list[str] = field(default_factory=list)  # the lines added to the deployment's reasons
    estimate: dict = field(default_factory=dict)
    concurrency: tuple[int, int] | None = None  # (old, new) when the request's concurrency changed


def scale_plan(doc: dict, replicas: int, deployment: str | None = None, concurrency: int | None = None) -> Scaled:
    """``doc`` (a valid plan) with ``deployment`` at ``replicas`` replicas, each launched as
    before; ``concurrency`` replaces the request's (the workload, not a replica's
    configuration). Pure: ``doc`` is not changed. The result passes ``validate``."""
    from xinf_planner.core.plan.validate import check_plan

    if replicas < 1:
        raise InvalidInput(
            f"--replicas {replicas}: a deployment has at least 1 replica (`xinf-plan destroy` removes one)"
        )
    if concurrency is not None and concurrency < 1:
        raise InvalidInput(f"--concurrency {concurrency}: at least 1 sequence")
    plan = Plan(doc)
    dep = _pick(plan, deployment)
    index = plan.names.index(dep.name)
    if dep.sharded:
        hosts = dep.placement[0].get("hosts") or []
        raise InvalidInput(
            f"{dep.name}: one replica sharded over {len(hosts) or dep.n_worker} hosts (n_worker); Xinference "
            "cannot add replicas to a sharded launch, so it cannot be scaled: more capacity is another "
            "deployment (`xinf-plan plan`)"
        )
    new_doc = copy.deepcopy(doc)
    if replicas == dep.replicas and concurrency is None:
        return Scaled(new_doc, dep.name, replicas, replicas, estimate=copy.deepcopy(dep.estimate))
    req_doc = new_doc.setdefault("request", {})
    models = req_doc.get("models") or []
    model_req = models[index] if index < len(models) else {}
    old_concurrency = model_req.get("concurrency")
    if concurrency is not None and model_req:
        model_req["concurrency"] = concurrency
    sizer = _Sizer(new_doc, dep, model_req)
    old = dep.replicas
    places = [dict(p) for p in dep.placement]
    result = Scaled(new_doc, dep.name, old, replicas)
    if concurrency is not None and concurrency != old_concurrency:
        result.concurrency = (old_concurrency, concurrency)
    if replicas > old:
        result.added = sizer.place(places, replicas - old)
        places += result.added
    elif replicas < old:
        result.removed = places[replicas:]
        places = places[:replicas]
    est, served, lay = sizer.figures(places)
    wanted = sizer.concurrency
    if not lay.meets:
        m, p = sizer.mreq, lay.point
        within = lay.within(m)
        got = (
            "have no room for one request of the workload"
            if p.tpot_s == float("inf")
            else f"give TTFT {p.ttft_s:.2f} s and TPOT {p.tpot_s * 1000:.0f} ms"
        )
        raise NothingFits(
            f"{dep.name}: {replicas} replica(s) launched as now ({sizer.config_text()}) {got} at the {wanted} "
            f"user(s) the plan's request asks for, outside its targets (TTFT {m.max_ttft_ms / 1000:g} s, TPOT "
            f"{m.max_tpot_ms:g} ms); serving them with {replicas} replica(s) changes each replica's "
            f"configuration: re-plan with `xinf-plan plan --replicas {replicas}` (a replace)"
            + (f", or pass --concurrency {within} to scale for that load" if within else "")
        )
    new_dep = new_doc["deployments"][index]
    launch = _relaunch(new_dep["launch"], sizer.hosts_of(places))
    new_dep["launch"] = launch
    new_dep["placement"] = places
    new_dep["estimate"] = est
    kept, planned = _planner_reasons(new_dep.get("reasons") or [], old)
    result.reasons = sizer.reasons(planned, replicas, places, result.added, lay)
    new_dep["reasons"] = kept + result.reasons
    if model_req:
        model_req["replicas"] = replicas
    result.estimate = new_dep["estimate"]
    check_plan(new_doc, "the scaled plan")
    return result


# how the reasons a scale adds begin (a later scale replaces them)
SCALE_PREFIX = "Scaled by `xinf-plan scale`: "
_SCALE_LINES = (SCALE_PREFIX, "Not as before: ", "Serving figures: the ")
_WRITTEN_FOR = re.compile(r"the reasons above were written for (\d+)")


def _planner_reasons(reasons: list[str], replicas: int) -> tuple[list[str], int]:
    """(the reasons without those an earlier scale added, the replica count they were written
    for): a plan scaled twice says once how it differs from the planned one."""
    planned = replicas
    kept = []
    scaled = False
    for line in reasons:
        if line.startswith(SCALE_PREFIX):
            scaled = True
            m = _WRITTEN_FOR.search(line)
            if m:
                planned = int(m.group(1))
            continue
        if scaled and (line.startswith(_SCALE_LINES) or line.endswith(SPREAD_TAIL)):
            continue
        kept.append(line)
    return kept, planned


def _pick(plan: Plan, name: str | None) -> Deployment:
    if name is not None:
        dep = plan.get(name)
        if dep is None:
            raise InvalidInput(f"no deployment {name!r} in the plan (deployments: {', '.join(plan.names) or 'none'})")
        return dep
    if len(plan) == 1:
        return plan.deployments[0]
    raise InvalidInput(
        f"the plan has {len(plan)} deployments ({', '.join(plan.names)}); name one with --deployment NAME"
    )


class _Sizer:
    """The planner's view of one deployment: its option, device, free capacity and figures."""

    def __init__(self, doc: dict, dep: Deployment, model_req: dict):
        self.doc = doc
        self.dep = dep
        self.plan = Plan(doc)
        self.inventory = Inventory.from_dict(doc["inventory"]["document"], "the plan's inventory")
        req = doc.get("request") or {}
        self.request = Request(
            models=(),
            objective=req.get("objective", "balanced"),
            exclude_gpus=tuple(req.get("exclude_gpus") or ()),
            headroom_gib=float(req.get("headroom_gib") or 0.0),
            headroom_fraction=float(req.get("headroom_fraction") or 0.0),
            strategy=req.get("strategy", "spread"),
            model_path_on_every_worker=bool(req.get("model_path_on_every_worker", False)),
            interconnect=req.get("interconnect", "ethernet"),
        )
        self.ctx = Context.new(self.inventory, self.request)
        self.launch = dep.launch
        self.engine = dep.engine
        self.context = int(self.launch["context_length"])
        served = int(dep.estimate.get("served_sequences") or 0)
        self.concurrency = int(model_req.get("concurrency") or served or 1)
        self.option = _option(dep, model_req)
        self.mreq = _model_request(dep, model_req, self.context, self.concurrency)
        self.host_of = {h.name: h for h in self.inventory.hosts}
        first = dep.placement[0]
        self.on_cpu = not first.get("gpus")
        self.width = len(first.get("gpus") or [])
        self.old_places = dep.placement
        if not self.on_cpu:
            host = self.host_of[first["host"]]
            self.kind = gpu_kind(host.gpu(first["gpus"][0]))
            self.device = device_of(host, host.gpu(first["gpus"][0]))
            ram = [self.ctx.capacity.free_ram[h.name] for h in self.inventory.hosts if self._has_kind(h)]
            self.device = _with_ram(self.device, round(min(ram), 2) if ram else None)
            self.dtype = rules.dtype_for(self.engine, self.option.precision, self.device.cc)
            # the free memory the planner sized the deployment on: the least among its replicas' GPUs
            self.basis = min(self._free(p["host"], p["gpus"]) for p in dep.placement)

    # -- what is free ----------------------------------------------------------------------
    def _has_kind(self, host: Host) -> bool:
        return any(gpu_kind(g) == self.kind for g in host.gpus)

    def _free(self, host: str, gpus) -> float:
        free = self.ctx.capacity.free_gpu.get(host, {})
        return min(free.get(i, 0.0) for i in gpus)

    def _free_gpus(self, host: Host, held: set) -> list[int]:
        """The GPUs of the deployment's kind on ``host`` that no replica of the plan holds."""
        free = self.ctx.capacity.free_gpu[host.name]
        return [
            g.index
            for g in host.gpus
            if g.index in free and (host.name, g.index) not in held and gpu_kind(g) == self.kind
        ]

    def _held_gpus(self, places: list[dict]) -> set:
        """Every GPU a deployment of the plan holds (this one's as ``places`` has them)."""
        held = set()
        for other in self.plan:
            spots = places if other.name == self.dep.name else other.placement
            for p in spots:
                for h in p.get("hosts") or [p.get("host")]:
                    held.update((h, i) for i in p.get("gpus") or [])
        return held

    def _ram_used(self, places: list[dict], gib: float) -> dict[str, float]:
        """GiB of RAM the plan's CPU replicas take on each host (this deployment's as ``places``)."""
        used: dict[str, float] = {}
        for other in self.plan:
            spots, each = (places, gib) if other.name == self.dep.name else (other.placement, other.host_gib)
            for p in spots:
                if not p.get("gpus") and p.get("host"):
                    used[p["host"]] = used.get(p["host"], 0.0) + each
        return used

    def _hosts(self) -> list[Host]:
        """Hosts a new replica may go to: placeable, the engine runs there, local weights' worker."""
        hosts = []
        multi = len(self.inventory.hosts) > 1
        reg = self.dep.registration
        one_host = reg is not None and multi and not self.request.model_path_on_every_worker
        existing = {p["host"] for p in self.old_places}
        vendor = None if self.on_cpu else self.kind[0]
        for h in self.inventory.hosts:
            if multi and not h.worker_address:
                continue
            if rules.platform_reason(self.engine, h, vendor):
                continue
            if one_host and h.name not in existing:
                continue
            hosts.append(h)
        if self.on_cpu:
            if "replica_config" in self.launch:
                hosts = [h for h in hosts if not h.gpus]  # replica_config's n_gpu "auto" takes a GPU
            else:
                hosts = [h for h in hosts if h.name in existing]  # one host: worker_ip or the only one
        return hosts

    # -- placing new replicas ---------------------------------------------------------------
    def place(self, places: list[dict], count: int) -> list[dict]:
        added: list[dict] = []
        for k in range(count):
            spot = self._next(places + added)
            if spot is None:
                raise NothingFits(self._no_room(places + added, k, count))
            added.append(spot)
        return added

    def _next(self, places: list[dict]) -> dict | None:
        hosts = self._hosts()
        count = {}
        for p in places:
            count[p["host"]] = count.get(p["host"], 0) + 1
        pos = {h.name: n for n, h in enumerate(self.inventory.hosts)}
        if self.request.strategy == "spread":
            hosts = sorted(hosts, key=lambda h: (count.get(h.name, 0), pos[h.name]))
        if self.on_cpu:
            gib = self._cpu_estimate(places + [{"host": hosts[0].name, "gpus": []}]).host_gib if hosts else 0.0
            used = self._ram_used(places, gib)
            for h in hosts:
                trial = places + [{"host": h.name, "gpus": []}]
                est = self._cpu_estimate(trial)
                free = self.ctx.capacity.free_ram[h.name] - used.get(h.name, 0.0)
                if est.fits and est.host_gib <= free + 1e-9:
                    return {"host": h.name, "gpus": []}
            return None
        held = self._held_gpus(places)
        ref = self._gpu_estimate(self.basis, self._load(len(places) + 1))
        for h in hosts:
            free = self.ctx.capacity.free_gpu[h.name]
            idx = self._free_gpus(h, held)
            for group in host_groups(h, idx, self.width, free):
                if self._fits(group, ref):
                    return {"host": h.name, "gpus": list(group.gpus)}
        return None

    def _fits(self, group: Group, ref) -> bool:
        """The deployment's keywords on this group's free memory: it fits, and its KV pool is
        not smaller than the deployment's estimate."""
        est = self._gpu_estimate(group.free_gib, 1)
        if not est.fits:
            return False
        if engines.reservation(self.engine) is None and est.per_gpu_gib["total"] > group.free_gib + 1e-6:
            return False
        return est.kv_cache_tokens >= ref.kv_cache_tokens - KV_TOLERANCE_TOKENS

    def _no_room(self, places: list[dict], k: int, count: int) -> str:
        done = f"{k} of the {count} more replica(s) fit; " if k else ""
        if self.on_cpu:
            gib = self._cpu_estimate(places + [{"host": places[-1]["host"], "gpus": []}]).host_gib
            used = self._ram_used(places, gib)
            where = "; ".join(
                f"{h.name} {self.ctx.capacity.free_ram[h.name] - used.get(h.name, 0.0):.1f} GiB free"
                for h in self._hosts()
            )
            need = f"{gib:.2f} GiB of RAM ({self.config_text()})"
        else:
            held = self._held_gpus(places)
            free_gpus = []
            for h in self._hosts():
                free = self.ctx.capacity.free_gpu[h.name]
                free_gpus += [f"{gpu_key(h.name, i)} {free[i]:.1f} GiB" for i in self._free_gpus(h, held)]
            where = "free: " + (", ".join(free_gpus) if free_gpus else f"no {self.device.label} GPU is free")
            need = f"{self.width} free {self.device.label} GPU(s) on one host with {self._held_text()} each"
            if not engines.reservation_key(self.engine):
                need += f" ({self.config_text()})"
        return (
            f"{self.dep.name}: {done}another identical replica does not fit: it needs {need}; {where}. "
            f"`xinf-plan plan --replicas {len(self.old_places) + count}` may fit by sizing every replica "
            "again (a replace, not a scale)"
        )

    def _held_text(self) -> str:
        key = engines.reservation_key(self.engine)
        total = self.device.total_gib
        if key and isinstance(self.launch.get(key), (int, float)):
            return f"{self.launch[key] * total:.2f} GiB ({key} {self.launch[key]} × {total:.1f} GiB)"
        return f"{self.dep.gpu_gib:.2f} GiB"

    # -- the figures -------------------------------------------------------------------------
    def _load(self, n: int) -> int:
        return math.ceil(self.concurrency / n)

    def _gpu_estimate(self, free: float, load: int):
        return estimates.estimate(
            self.ctx, self.option, self.device, self.width, free, self.context, load, self.dtype, self._extra()
        )

    def _extra(self) -> dict:
        launch = self.launch
        key = engines.reservation_key(self.engine)
        if key:
            return {key: launch[key]} if key in launch else {}
        if self.engine == "llama.cpp":
            extra = estimates.slot_kwargs(self.context, int(launch.get("n_parallel") or 1))
            layers = launch.get("n_gpu_layers")
            if not self.on_cpu and layers is not None and layers != engines.all_layers("llama.cpp"):
                extra["n_gpu_layers"] = layers
            return extra
        return {}

    def _cpu_estimate(self, places: list[dict]):
        per_host: dict[str, int] = {}
        for p in places:
            per_host[p["host"]] = per_host.get(p["host"], 0) + 1
        share = max(per_host.values())
        seqs = self._cpu_seqs(len(places))
        host0 = self.host_of[places[0]["host"]]
        return estimates.estimate(
            self.ctx,
            self.option,
            None,
            0,
            None,
            self.context,
            seqs,
            None,
            estimates.cpu_slot_extra(self.engine, self.context, seqs),
            host=host0,
            cpu_share=share,
        )

    def _cpu_seqs(self, n: int) -> int:
        if self.engine == "llama.cpp":
            return int(self.launch.get("n_parallel") or 1)
        return estimates.slots(self.engine, self.concurrency, n)

    def figures(self, places: list[dict]):
        """(estimate block, sequences served, layout) of the deployment at these placements."""
        from xinf_planner.core.planning.deployment import estimate_block

        n = len(places)
        if self.on_cpu:
            est = self._cpu_estimate(places)
            seqs = self._cpu_seqs(n)
            per_replica = min(seqs, int(est.max_concurrent_sequences)) if est.max_concurrent_sequences else seqs
            device, width, replicas = CPU, 0, [(self.host_of[p["host"]], None) for p in places]
        else:
            est, per_replica = self._gpu_figures(n)
            device, width = self.device, self.width
            replicas = [
                (
                    self.host_of[p["host"]],
                    Group(
                        p["host"],
                        tuple(p["gpus"]),
                        _worst(self.host_of[p["host"]], p["gpus"]),
                        self._free(p["host"], p["gpus"]),
                    ),
                )
                for p in places
            ]
        per_seq = float(est.decode_tokens_per_s.get("per_sequence") or 0.0)
        total = float(est.decode_tokens_per_s.get("aggregate") or 0.0) * n
        lay = Layout(
            self.option, device, width, replicas, est, dict(self.launch), per_replica, per_replica * n, per_seq, total
        )
        attach(self.ctx, self.mreq, lay)  # the serving model, as the planner gives every layout
        return estimate_block(lay, self.mreq), lay.served, lay

    def _gpu_figures(self, n: int):
        """As ``sizing.finish`` sizes it, with the deployment's keywords kept."""
        engine = self.engine
        if engines.reservation(engine) is not None:
            target = self._load(n)
            est = self._gpu_estimate(self.basis, target)
            cap = engines.max_batch(engine)
            per_replica = min(int(est.max_concurrent_sequences), cap)
            if self.request.objective == "throughput" and per_replica > target:
                est = self._gpu_estimate(self.basis, min(per_replica, cap))
            return est, per_replica
        if engine == "llama.cpp":
            seqs = int(self.launch.get("n_parallel") or 1)
            return self._gpu_estimate(self.basis, seqs), seqs
        old_n = len(self.old_places)
        seqs = max(1, int(self.dep.estimate.get("served_sequences") or old_n) // old_n)
        return self._gpu_estimate(self.basis, seqs), seqs

    # -- the plan's words --------------------------------------------------------------------
    def config_text(self) -> str:
        keys = [engines.reservation_key(self.engine), "n_parallel", "n_threads", "n_gpu_layers", "dtype"]
        parts = [f"{k} {self.launch[k]}" for k in keys if k and k in self.launch]
        return ", ".join(parts) or "the same launch keywords"

    def hosts_of(self, places: list[dict]) -> list[tuple[Host, tuple]]:
        return [(self.host_of[p["host"]], tuple(p.get("gpus") or ())) for p in places]

    def reasons(self, planned: int, new: int, places: list[dict], added: list[dict], lay) -> list[str]:
        """The lines a scale adds to the reasons (``planned``: the replicas the planner's reasons
        were written for)."""
        where = "; ".join(_place_text(p) for p in places[planned:])
        change = f"{planned} -> {new} replica(s)" if planned != new else f"{new} replica(s) as planned"
        out = [
            f"{SCALE_PREFIX}{change}, each launched as planned ({self.config_text()}); "
            + (f"added: {where}; " if where else "")
            + f"the reasons above were written for {planned}. Now serves {lay.served} sequence(s) of "
            f"{self.context} tokens at once for a load of {self.concurrency}; about {lay.per_seq_tps:.1f} "
            f"decode tokens/s per sequence, {lay.total_tps:.0f} in total."
        ]
        if not self.on_cpu and added:
            worst_old = max((_worst(self.host_of[p["host"]], p["gpus"]) for p in self.old_places), default=0)
            for p in added:
                w = _worst(self.host_of[p["host"]], p["gpus"])
                if w > worst_old:
                    out.append(
                        f"Not as before: the GPUs of the new replica on {_place_text(p)} are linked by "
                        f"{LINK_WORDS[w]} at worst; the original replicas' by {LINK_WORDS[worst_old]}."
                    )
        threads = self.launch.get("n_threads")
        if self.on_cpu and isinstance(threads, int):
            per_host: dict[str, int] = {}
            for p in places:
                per_host[p["host"]] = per_host.get(p["host"], 0) + 1
            for name, k in sorted(per_host.items()):
                cores = self.host_of[name].cpu_cores
                if k * threads > cores:
                    out.append(
                        f"Not as before: {k} replicas on {name} with n_threads {threads} each (kept) share "
                        f"{cores} cores, {k * threads} threads in all; `xinf-plan plan --replicas {new}` sizes "
                        "n_threads for the new count (a replace, not a scale)."
                    )
        if self.request.strategy == "spread" and new > 1 and len({p["host"] for p in places}) == 1:
            if len(self.inventory.hosts) > 1 and added:
                out.append(
                    f"Not as asked: strategy spread, but all {new} replicas are on {places[0]['host']}: {SPREAD_TAIL}"
                )
        return out


def _option(dep: Deployment, model_req: dict) -> Option:
    """The planner's option of a deployment: its model (or local weights' facts), spec, engine."""
    from xinf_planner.core import catalog
    from xinf_planner.core.planning.candidates import local_arch, local_spec
    from xinf_planner.core.request import ModelRequest

    launch = dep.launch
    fmt, quant = launch["model_format"], launch["quantization"]
    if dep.registration is not None:
        family, size = split_ref(model_req.get("model") or dep.doc["model"].split(":")[0])
        mreq = ModelRequest(family=family, size=size, context_length=1, concurrency=1)
        arch = local_arch(mreq, SimpleNamespace(**(dep.doc.get("arch") or {})))
        spec = local_spec(arch, SimpleNamespace(model_format=fmt, quantization=quant))
    else:
        arch = catalog.get_model(dep.doc["model"])
        spec = catalog.find_spec(arch, fmt, quant)
    precision = rules.precision_of(spec.model_format, spec.quantization, arch.checkpoint_quant)
    runtime = launch.get("model_quantization")  # vLLM's FP8 at load (candidates._variants)
    if runtime == "fp8":
        precision = "fp8"
    kv = "fp8" if str(launch.get("kv_cache_dtype") or "auto").startswith("fp8") else "auto"
    return Option(arch, spec, dep.engine, precision, runtime_quantization=runtime, kv_cache_dtype=kv)


def _model_request(dep: Deployment, model_req: dict, context: int, concurrency: int):
    """The workload and targets the deployment was planned for (the plan's request)."""
    from xinf_planner.core.request import ModelRequest, fit_workload

    family, size = split_ref(model_req.get("model") or dep.doc["model"])
    given = {k: model_req[k] for k in ("input_tokens", "output_tokens", "max_ttft_ms", "max_tpot_ms") if k in model_req}
    return ModelRequest(
        family=family, size=size, context_length=context, concurrency=concurrency, **fit_workload(context, given)
    )


def _with_ram(device, ram):
    from dataclasses import replace

    return replace(device, host_ram_gib=ram)


def _worst(host: Host, gpus) -> int:
    from xinf_planner.core.planning.placement import link_rank

    gpus = list(gpus)
    return max((link_rank(host, a, b) for a in gpus for b in gpus if a < b), default=0)


def _place_text(place: dict) -> str:
    gpus = place.get("gpus") or []
    return f"{place['host']}:{','.join(map(str, gpus)) if gpus else 'cpu'}"


def _relaunch(launch: dict, replicas: list[tuple[Host, tuple]]) -> dict:
    """``launch`` with its placement keywords made for ``replicas`` (every other keyword, and
    the keywords' order, kept)."""
    placed = placement_kwargs(replicas)
    out: dict = {}
    inserted = False
    for key, value in launch.items():
        if key in PLACEMENT_KEYWORDS:
            if not inserted:
                out.update(placed)
                inserted = True
            continue
        out[key] = value
    if not inserted:
        out.update(placed)
    return out
