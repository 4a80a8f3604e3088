"""A plan document (``plan.schema.json``) read: the one place that knows where a plan keeps
its deployments, launches, placements, estimates, registrations and embedded inventory.

Every module reads plans through ``Plan`` and ``Deployment`` (``validate`` checks the raw
document, since it must not trust it). ``new_plan`` builds the document the planner writes.
Both wrap the plain dict; nothing is copied or changed.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Iterator

VERSION = 1


def new_plan(
    inventory,
    request: dict,
    deployments: list[dict],
    rejected: list[dict],
    notes: list[str] | None = None,
    source: str | None = None,
) -> dict:
    """The plan document: the inventory it was made for (embedded, fingerprinted), the
    normalised request, the deployments and the rejected alternatives."""
    from xinf_planner import __version__
    from xinf_planner.core.inventory import fingerprint

    inv: dict[str, Any] = {"fingerprint": fingerprint(inventory)}
    if source:
        inv["source"] = source
    inv["document"] = inventory.to_dict()
    doc: dict[str, Any] = {
        "version": VERSION,
        "generated_by": f"xinf-plan {__version__}",
        "inventory": inv,
        "request": request,
        "deployments": deployments,
        "rejected": rejected,
    }
    if notes:
        doc["notes"] = list(notes)
    return doc


class Deployment:
    """One deployment of a plan: ``doc`` is its mapping in the plan."""

    def __init__(self, doc: dict):
        self.doc = doc

    def __repr__(self) -> str:
        return f"Deployment({self.name!r})"

    @classmethod
    def of(cls, dep: "Deployment | dict") -> "Deployment":
        """``dep`` as a Deployment (a Deployment is returned as it is)."""
        return dep if isinstance(dep, Deployment) else cls(dep)

    @property
    def name(self) -> str:
        return self.doc["name"]

    @property
    def launch(self) -> dict:
        """The exact keyword arguments of ``Client.launch_model``."""
        return self.doc["launch"]

    @property
    def uid(self) -> str:
        return self.launch["model_uid"]

    @property
    def model_name(self) -> str:
        return self.launch["model_name"]

    @property
    def engine(self) -> str:
        from xinf_planner.core.engines import canonical

        return canonical(self.launch.get("model_engine", ""))

    @property
    def replicas(self) -> int:
        return int(self.launch.get("replica", 1))

    @property
    def n_worker(self) -> int:
        return int(self.launch.get("n_worker") or 1)

    @property
    def placement(self) -> list[dict]:
        """One entry per replica: ``{host, gpus}``, or ``{hosts, gpus}`` for one replica sharded
        over several hosts."""
        return list(self.doc.get("placement") or [])

    @property
    def sharded(self) -> bool:
        return self.n_worker > 1 or any("hosts" in p for p in self.placement)

    @property
    def estimate(self) -> dict:
        return self.doc.get("estimate") or {}

    @property
    def gpu_gib(self) -> float:
        """GiB the estimate puts on each GPU of a replica."""
        return float((self.estimate.get("per_gpu_gib") or {}).get("total") or 0.0)

    @property
    def host_gib(self) -> float:
        """GiB of host RAM the estimate puts on each CPU replica."""
        return float(self.estimate.get("host_gib") or 0.0)

    @property
    def registration(self) -> dict | None:
        return self.doc.get("registration")

    @property
    def env(self) -> dict:
        return dict(self.doc.get("env") or {})

    def launch_args(self) -> dict:
        """What apply sends: the launch keywords, plus the deployment's filled-in ``env`` as
        Xinference's ``envs`` (set in the model processes on every worker)."""
        args = dict(self.launch)
        env = {k: str(v) for k, v in self.env.items()}
        if env:
            args["envs"] = {**(args.get("envs") or {}), **env}
        return args


class Plan:
    """A plan document. ``Plan(None)`` is the empty plan (nothing applied yet)."""

    def __init__(self, doc: dict | None = None):
        self.doc = doc if doc is not None else {"version": VERSION, "deployments": []}

    @classmethod
    def of(cls, plan: "Plan | dict | None") -> "Plan":
        """``plan`` as a Plan (a Plan is returned as it is)."""
        return plan if isinstance(plan, Plan) else cls(plan)

    @cached_property
    def deployments(self) -> list[Deployment]:
        return [Deployment(d) for d in self.doc.get("deployments") or []]

    def __iter__(self) -> Iterator[Deployment]:
        return iter(self.deployments)

    def __len__(self) -> int:
        return len(self.deployments)

    @cached_property
    def by_name(self) -> dict[str, Deployment]:
        return {d.name: d for d in self.deployments}

    def get(self, name: str) -> Deployment | None:
        return self.by_name.get(name)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.deployments]

    @property
    def uids(self) -> list[str]:
        return [d.uid for d in self.deployments]

    @property
    def fingerprint(self) -> str | None:
        return (self.doc.get("inventory") or {}).get("fingerprint")

    @cached_property
    def hosts(self) -> dict[str, dict]:
        """The embedded inventory's hosts, by name."""
        doc = (self.doc.get("inventory") or {}).get("document") or {}
        return {h.get("name"): h for h in doc.get("hosts") or [] if h.get("name")}

    def uses_kwarg(self, key: str) -> bool:
        return any(key in d.launch for d in self.deployments)

    def planned_workers(self, dep: Deployment) -> list[str | None]:
        """The worker address each replica is planned on (None when the plan does not say)."""
        cfg = dep.launch.get("replica_config")
        if cfg:
            return [rc["devices"][0].get("worker_ip") for rc in cfg]
        out = []
        for place in dep.placement:
            host = self.hosts.get(place.get("host")) or {}
            out.append(host.get("worker_address") or dep.launch.get("worker_ip"))
        return out

    def registrations(self) -> list[tuple[dict, dict]]:
        """(registration block, v2 JSON) for each distinct custom model of the plan."""
        from xinf_planner.core.registration import registration_spec

        seen, out = set(), []
        for dep in self.deployments:
            block = dep.registration
            if block and block["model_name"] not in seen:
                seen.add(block["model_name"])
                out.append((block, registration_spec(block, dep.launch["model_size_in_billions"])))
        return out
