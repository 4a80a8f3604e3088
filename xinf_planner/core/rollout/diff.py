"""What differs between a plan and what runs: the one diff model of apply, diff, status and
rollouts.

``diff_plans`` classifies every deployment of the new plan against what runs (the server's
model description and replicas, and the launch recorded in the state's last applied plan):
add, scale (replica count only), replace (engine, format, quantization, context length,
another launch kwarg, the model uid or the placement), or unchanged; then the removals.
``compare`` lists what a planned launch and a running model's description disagree on, for
``status``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xinf_planner.core.plan.document import Deployment, Plan

ADD, REMOVE, SCALE, REPLACE, UNCHANGED = "add", "remove", "scale", "replace", "unchanged"
ROLLED = (SCALE, REPLACE, REMOVE)  # the kinds a rollout carries out replica by replica

# launch kwargs that only place replicas (compared as placement, not configuration)
PLACEMENT_KEYS = {"replica", "replica_config", "worker_ip", "gpu_idx", "n_gpu"}
# fields a running model's description shows (list_models), as the server spells them
SERVER_FIELDS = ("model_name", "model_engine", "model_format", "quantization", "model_size_in_billions")


@dataclass
class Change:
    name: str  # deployment name
    kind: str  # add | remove | scale | replace | unchanged
    model_uid: str  # the uid the plan wants (for remove: the running uid)
    old_uid: str | None = None  # the uid that runs now (None for add)
    fields: list[str] = field(default_factory=list)  # "key: old -> new", for replace/scale
    old_replicas: int = 0
    new_replicas: int = 0

    def to_dict(self) -> dict:
        return {
            "deployment": self.name,
            "change": self.kind,
            "model_uid": self.model_uid,
            "running_uid": self.old_uid,
            "replicas": [self.old_replicas, self.new_replicas],
            "fields": list(self.fields),
        }


def names_of(changes: list[Change], *kinds: str) -> list[str]:
    """The deployments whose change is one of ``kinds``, in order."""
    return [c.name for c in changes if c.kind in kinds]


def summary(changes: list[Change]) -> str:
    """'N to launch, M unchanged' (the rolled changes are listed one by one by apply)."""
    return f"{len(names_of(changes, ADD))} to launch, {len(names_of(changes, UNCHANGED))} unchanged"


def _norm(key: str, value):
    if value is None:
        return None
    if key == "model_size_in_billions":
        from xinf_planner.core.sizes import size_key

        return size_key(value)
    if key in ("model_engine", "model_format", "quantization"):
        return str(value).lower()
    return value


def _config(launch: dict) -> dict:
    return {k: v for k, v in launch.items() if k not in PLACEMENT_KEYS}


def config_changes(old_launch: dict, new_launch: dict, running: dict | None = None) -> list[str]:
    """Configuration fields that differ, "key: old -> new" in sorted key order. The server's
    description (``running``) wins over the recorded launch for the fields it shows."""
    old = _config(old_launch)
    for key in SERVER_FIELDS:
        if running and running.get(key) is not None:
            old[key] = running[key]
    new = _config(new_launch)
    out = []
    for key in sorted(set(old) | set(new)):
        if _norm(key, old.get(key)) != _norm(key, new.get(key)):
            out.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return out


def placement_changes(old_places: list[dict], new_places: list[dict]) -> list[str]:
    """Replicas that keep their index but move (host or GPUs)."""
    out = []
    for i in range(min(len(old_places), len(new_places))):
        a, b = _place_key(old_places[i]), _place_key(new_places[i])
        if a != b:
            out.append(f"placement[{i}]: {_place_text(old_places[i])} -> {_place_text(new_places[i])}")
    return out


def _place_key(place: dict) -> tuple:
    hosts = tuple(place.get("hosts") or [place.get("host")])
    return hosts, tuple(sorted(place.get("gpus") or []))


def _place_text(place: dict) -> str:
    hosts = ",".join(h or "?" for h in (place.get("hosts") or [place.get("host")]))
    gpus = place.get("gpus") or []
    return f"{hosts}:{','.join(map(str, gpus)) if gpus else 'cpu'}"


def classify(new_dep, old_dep, running: dict | None, running_replicas: int | None) -> Change:
    """One deployment of the new plan against what runs.

    ``old_dep``: the deployment of the same name in the last applied plan (None if unknown);
    ``running``: the server's description of the uid that runs for it (None if none runs);
    ``running_replicas``: its replica count as the server reports it."""
    new_dep = Deployment.of(new_dep)
    launch = new_dep.launch
    uid = new_dep.uid
    want = new_dep.replicas
    if running is None:
        return Change(new_dep.name, ADD, uid, None, [], 0, want)
    have = int(running_replicas if running_replicas is not None else running.get("replica") or 1)
    if old_dep is not None:
        old_dep = Deployment.of(old_dep)
        old_launch = old_dep.launch
        fields = config_changes(old_launch, launch, running)
        fields += placement_changes(old_dep.placement, new_dep.placement)
    else:  # not applied by xinf-plan: only what the server shows can be compared
        old_launch = {"model_uid": uid}
        known = {k: launch.get(k) for k in SERVER_FIELDS if running.get(k) is not None}
        fields = config_changes(dict(known, model_uid=uid), dict(known, model_uid=uid), running)
    old_uid = old_launch.get("model_uid", uid)
    change = Change(new_dep.name, UNCHANGED, uid, old_uid, fields, have, want)
    if fields:
        change.kind = REPLACE
    elif have != want:
        change.kind = SCALE
        change.fields = [f"replica: {have} -> {want}"]
    return change


def removal(old_dep, running: dict) -> Change:
    old_dep = Deployment.of(old_dep)
    have = int(running.get("replica") or 1)
    return Change(old_dep.name, REMOVE, old_dep.uid, old_dep.uid, [], have, 0)


def running_uid(new_dep, old_dep, running: dict) -> str | None:
    """The uid that runs for a deployment now: the last applied one, else the planned one."""
    for dep in (old_dep, new_dep):
        if dep is not None and Deployment.of(dep).uid in running:
            return Deployment.of(dep).uid
    return None


def diff_plans(
    plan, old_plan, running: dict[str, dict], replica_ids: dict[str, list[int]], owned: set[str]
) -> list[Change]:
    """Every deployment of ``plan`` classified against what runs, then the removals:
    deployments of the last applied plan (``old_plan``) that ``plan`` drops, that still run
    and that xinf-plan launched (``owned`` uids). Deployments match by name."""
    plan, old = Plan.of(plan), Plan.of(old_plan)
    out = []
    for dep in plan:
        old_dep = old.get(dep.name)
        uid = running_uid(dep, old_dep, running)
        if old_dep is not None and uid != old_dep.uid:
            old_dep = None  # what was applied no longer runs: compare with the server only
        ids = replica_ids.get(uid) if uid else None
        out.append(classify(dep, old_dep, running.get(uid) if uid else None, len(ids) if ids else None))
    for old_dep in old:
        if old_dep.name not in plan.by_name and old_dep.uid in running and old_dep.uid in owned:
            change = removal(old_dep, running[old_dep.uid])
            change.old_replicas = len(replica_ids.get(old_dep.uid) or []) or change.old_replicas
            out.append(change)
    return out


# fields of a launch that a running model's description also shows, and how to compare them
def _lower(value) -> str:
    return str(value).lower() if value is not None else ""


def _size(value) -> str:
    from xinf_planner.core.sizes import size_key

    return size_key(value)


_COMPARED = [
    ("model_name", str),
    ("model_engine", _lower),
    ("model_format", _lower),
    ("quantization", _lower),
    ("model_size_in_billions", _size),
    ("replica", int),
]


def compare(launch: dict, running: dict) -> list[str]:
    """What differs between a planned launch and a running model's description."""
    out = []
    for key, norm in _COMPARED:
        want = launch.get(key, 1 if key == "replica" else None)
        have = running.get(key)
        if want is None or have is None:
            continue
        try:
            if norm(want) != norm(have):
                out.append(f"{key}: planned {want!r}, running {have!r}")
        except (TypeError, ValueError):
            out.append(f"{key}: planned {want!r}, running {have!r}")
    return out
