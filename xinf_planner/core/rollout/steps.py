"""Rollouts, the step planner: the order of single-replica launch and terminate steps that
makes one change (``diff.Change``) without overfilling a GPU.

``plan_steps`` walks the steps over a memory ledger (GiB per device: a GPU, or a host's RAM
for CPU replicas), using the plans' own per-replica estimates and the inventory's capacities,
and:

* launches a new replica first when it fits beside the old ones (launch-then-terminate);
* otherwise terminates an old replica on the same devices first (terminate-then-launch),
  as long as at most ``max_unavailable`` replicas are down and one still answers;
* refuses (``NeedsDowntime``) a change that cannot keep one replica answering, unless
  ``allow_downtime``.

Xinference 4.1 holds one launch configuration per model uid: ``add_model_replica`` copies
the launch arguments of the model's first replica, and a per-replica ``engine_config`` or
``model_engine`` in ``replica_config`` is refused ("Per-replica engine settings require
explicit PD roles", core/replica_config.py and core/supervisor.py). So a replacement that
changes the configuration rolls only onto a NEW model uid; under the same uid every old
replica must go before the first new one starts, which is downtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xinf_planner.core.plan.document import Deployment, Plan
from xinf_planner.core.rollout.diff import SCALE, Change
from xinf_planner.core.units import GIB
from xinf_planner.errors import EXIT_APPLY_FAILED, XinfPlanError

LAUNCH, TERMINATE = "launch", "terminate"
EPS_GIB = 1e-6
RAM = "ram"  # the device name of a host's system memory in the ledger


class NeedsDowntime(XinfPlanError):
    """The change cannot keep a replica answering (exit 7 with apply)."""

    exit_code = EXIT_APPLY_FAILED


# --- memory ledger ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Replica:
    """One replica as the step planner sees it: where it sits and what it holds there."""

    uid: str
    index: int  # the server's replica id (new: the order of launch)
    devices: tuple[tuple[str, object], ...]  # ((host, gpu index) ...) or ((host, "ram"),)
    gib: float  # held on each of its devices
    place: dict = field(default_factory=dict, compare=False, hash=False)

    def label(self) -> str:
        return f"{self.uid}-rep{self.index}"

    def where(self) -> str:
        hosts = sorted({h for h, _ in self.devices})
        gpus = [str(d) for _, d in self.devices if d != RAM]
        return f"{','.join(hosts) or '?'}:{','.join(gpus) if gpus else 'cpu'}"


def capacities(plan) -> dict[tuple[str, object], float]:
    """GiB each device may hold, from the inventory embedded in the plan: a GPU's total
    memory, a host's total RAM. Devices the plan's inventory does not describe are absent
    (unknown capacity: the ledger does not limit them)."""
    out: dict[tuple[str, object], float] = {}
    for name, host in Plan.of(plan).hosts.items():
        if host.get("memory_total_bytes"):
            out[(name, RAM)] = host["memory_total_bytes"] / GIB
        for gpu in host.get("gpus") or []:
            out[(name, gpu["index"])] = gpu["memory_total_bytes"] / GIB
    return out


def replicas_of(dep, uid: str | None = None, indices: list[int] | None = None) -> list[Replica]:
    """The replicas a plan deployment places, with its per-GPU estimate (or host RAM for
    CPU replicas). ``indices``: the server's replica ids, in placement order."""
    dep = Deployment.of(dep)
    uid = uid or dep.uid
    gpu_gib, ram_gib = dep.gpu_gib, dep.host_gib
    out = []
    for i, place in enumerate(dep.placement):
        hosts = place.get("hosts") or [place.get("host")]
        gpus = place.get("gpus") or []
        if gpus:
            devices = tuple((h, g) for h in hosts for g in gpus)
            gib = gpu_gib
        else:
            devices = tuple((h, RAM) for h in hosts)
            gib = ram_gib
        out.append(Replica(uid, indices[i] if indices and i < len(indices) else i, devices, gib, place))
    return out


def usage_of(replicas: list[Replica]) -> dict:
    used: dict = {}
    for rep in replicas:
        for dev in rep.devices:
            used[dev] = used.get(dev, 0.0) + rep.gib
    return used


def overfull(used: dict, capacity: dict, rep: Replica) -> list[str]:
    """Devices that ``rep`` would overfill on top of ``used``: 'host:gpu needs X of Y GiB'."""
    out = []
    for dev in rep.devices:
        cap = capacity.get(dev)
        need = used.get(dev, 0.0) + rep.gib
        if cap is not None and need > cap + EPS_GIB:
            host, gpu = dev
            name = f"{host} RAM" if gpu == RAM else f"{host} GPU {gpu}"
            out.append(f"{name} would hold {need:.1f} of {cap:.1f} GiB")
    return out


# --- steps --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    action: str  # launch | terminate
    replica: Replica
    reason: str
    serving: int  # replicas answering after the step (old and new together)

    def text(self) -> str:
        verb = "launch" if self.action == LAUNCH else "terminate"
        return f"{verb} {self.replica.label()} on {self.replica.where()} ({self.reason})"


def plan_steps(
    old: list[Replica],
    new: list[Replica],
    capacity: dict,
    base: dict | None = None,
    max_unavailable: int = 1,
    allow_downtime: bool = False,
    coexist: bool = True,
    kept: int = 0,
) -> list[Step]:
    """Launch/terminate steps from the ``old`` replicas to the ``new`` ones (pure).

    ``base``: GiB already held on each device by what the change leaves alone.
    ``coexist``: False when old and new cannot run side by side at all (the same model uid
    with another configuration): every old replica goes before the first new one.
    ``kept``: replicas of the deployment that the change leaves running (a scale).
    Raises NeedsDowntime when no replica would answer at some step and
    ``allow_downtime`` is off, or when more than ``max_unavailable`` would be down."""
    used = dict(base or {})
    for dev, gib in usage_of(old).items():
        used[dev] = used.get(dev, 0.0) + gib
    live = list(old)  # old replicas still running
    pending = list(new)
    started = 0  # new replicas running
    down = 0  # old replicas terminated and not yet replaced
    steps: list[Step] = []
    stated = len(old) >= 1 and len(new) >= 1

    def terminate(rep: Replica, reason: str) -> None:
        nonlocal down
        live.remove(rep)
        for dev in rep.devices:
            used[dev] = used.get(dev, 0.0) - rep.gib
        serving = len(live) + started + kept
        if pending:
            down += 1
        if serving == 0 and stated and not allow_downtime:
            raise NeedsDowntime(_downtime_text(rep, pending[0] if pending else None, coexist, used, capacity))
        if pending and down > max_unavailable and not allow_downtime:
            raise NeedsDowntime(
                f"replacing {pending[0].label()} needs {down} replicas down at once; "
                f"pass --max-unavailable {down} (or --allow-downtime)"
            )
        steps.append(Step(TERMINATE, rep, reason, serving))

    if not coexist:
        for rep in sorted(live, key=lambda r: -r.index):
            terminate(rep, "the same model uid cannot hold two configurations")
    while pending:
        nxt = pending[0]
        freed = False
        while overfull(used, capacity, nxt):
            victims = [r for r in live if set(r.devices) & set(nxt.devices)]
            if not victims:
                raise NeedsDowntime(
                    f"{nxt.label()} does not fit on {nxt.where()} even with the old "
                    f"replicas there gone: " + "; ".join(overfull(used, capacity, nxt))
                )
            victim = max(victims, key=lambda r: r.index)
            terminate(
                victim,
                f"frees {victim.where()} for {nxt.label()}: " + "; ".join(overfull(used, capacity, nxt)) + " beside it",
            )
            freed = True
        pending.pop(0)
        for dev in nxt.devices:
            used[dev] = used.get(dev, 0.0) + nxt.gib
        started += 1
        down = max(0, down - 1)
        steps.append(
            Step(
                LAUNCH,
                nxt,
                "on the devices freed for it" if freed else "fits beside what runs",
                len(live) + started + kept,
            )
        )
        if live and len(live) > len(pending):
            overlap = [r for r in live if pending and set(r.devices) & set(pending[0].devices)]
            victim = max(overlap or live, key=lambda r: r.index)
            terminate(victim, f"replaced by {nxt.label()}")
    for rep in sorted(live, key=lambda r: -r.index):
        terminate(rep, "not in the plan")
    return steps


def _downtime_text(rep: Replica, nxt: Replica | None, coexist: bool, used: dict, capacity: dict) -> str:
    if not coexist:
        return (
            f"{rep.uid}: Xinference 4.1 holds one configuration per model uid, so the old replicas "
            "must all stop before a new one starts (downtime). Give the new configuration a new "
            "model_uid in the plan to roll it, or pass --allow-downtime"
        )
    if nxt is None:
        return f"terminating {rep.label()} leaves no replica answering; pass --allow-downtime"
    return (
        f"{nxt.label()} and the old replicas cannot run together even one at a time "
        f"({rep.label()} must stop first, leaving no replica answering); pass --allow-downtime"
    )


def steps_dict(steps: list[Step]) -> list[dict]:
    return [
        {
            "action": s.action,
            "replica": s.replica.label(),
            "where": s.replica.where(),
            "reason": s.reason,
            "serving": s.serving,
        }
        for s in steps
    ]


def rollout_steps(
    change: Change,
    new_dep,
    old_dep,
    ids: list[int],
    capacity: dict,
    base: dict,
    max_unavailable: int = 1,
    allow_downtime: bool = False,
) -> list[Step]:
    """The steps of one scale or replace (pure). ``ids``: the running replica ids, ascending.
    Replicas without a recorded placement are taken to sit where the new plan puts them."""
    for dep in (new_dep, old_dep):
        workers = Deployment.of(dep).n_worker if dep is not None else 1
        if workers > 1:
            raise NeedsDowntime(
                f"{change.name}: one replica sharded over {workers} workers (n_worker); Xinference 4.1 "
                "cannot add, terminate or replace replicas of a sharded launch, so there is no rolling "
                "path even with downtime: `xinf-plan destroy` the running plan, then apply this one."
            )
    ids = sorted(ids)
    old_all = replicas_of(old_dep or new_dep, change.old_uid, ids)
    while len(old_all) < len(ids):  # more replicas run than any plan placed
        extra = old_all[-1] if old_all else None
        old_all.append(
            Replica(change.old_uid, ids[len(old_all)], extra.devices if extra else (), extra.gib if extra else 0.0)
        )
    if change.kind == SCALE:
        keep = old_all[: change.new_replicas]
        if change.new_replicas < len(old_all):
            return plan_steps(
                old_all[change.new_replicas :],
                [],
                capacity,
                _plus(base, usage_of(keep)),
                max_unavailable,
                allow_downtime,
                kept=len(keep),
            )
        start = (max(ids) + 1) if ids else 0
        placed = replicas_of(new_dep, change.model_uid)
        new = [Replica(r.uid, start + k, r.devices, r.gib, r.place) for k, r in enumerate(placed[len(ids) :])]
        return plan_steps(
            [], new, capacity, _plus(base, usage_of(old_all)), max_unavailable, allow_downtime, kept=len(old_all)
        )
    same_uid = change.model_uid == change.old_uid
    start = (max(ids) + 1) if same_uid and ids else 0
    new = [
        Replica(r.uid, start + k, r.devices, r.gib, r.place)
        for k, r in enumerate(replicas_of(new_dep, change.model_uid))
    ]
    config_changed = any(not f.startswith("placement[") for f in change.fields)
    return plan_steps(
        old_all, new, capacity, base, max_unavailable, allow_downtime, coexist=not (same_uid and config_changed)
    )


def _plus(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0.0) + v
    return out
