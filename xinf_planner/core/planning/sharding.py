"""One replica sharded over several hosts (Xinference ``n_worker``): which hosts and GPUs, TP x PP,
the launch keywords, and the environment cross-host traffic needs.

Pure functions over ``inventory.Host`` and ``placement.Group``; the facts (which engines shard,
the environment variables, what Xinference 4.1.0 accepts) are in ``rules.yaml`` under
``multi_host`` with their sources. xinf-plan never leaves a placement to Xinference's
scheduler: a sharded replica names its workers exactly (``worker_ip`` lists their ``ip:port``,
``n_worker`` equals their number) and the GPUs every shard uses (``gpu_idx``, the same on each
host, ``n_gpu`` = GPUs per host).
"""

from __future__ import annotations

from dataclasses import dataclass

from xinf_planner.core import engines, rules
from xinf_planner.core.inventory import Host
from xinf_planner.core.planning.placement import Group


def facts() -> dict:
    return rules.facts()["multi_host"]


def shards(engine: str) -> bool:
    """Whether Xinference can shard one replica of ``engine`` over several workers."""
    return engines.multi_host(engine)


def is_fast(interconnect: str) -> bool:
    return interconnect in facts()["fast_interconnects"]


@dataclass(frozen=True)
class Parallel:
    tp: int  # tensor-parallel size (GPUs a layer is split over)
    pp: int  # pipeline stages
    reason: str


def parallel_for(
    engine: str, arch, model_format: str, per_host: int, n_hosts: int, interconnect: str
) -> tuple[Parallel | None, str | None]:
    """(TP x PP, None), or (None, why not), for ``n_hosts`` hosts of ``per_host`` GPUs each.

    - vLLM: TP inside a host and PP across hosts (Xinference's default) unless the hosts are
      joined by a fast interconnect, where TP over every GPU keeps one pipeline stage (no
      pipeline bubbles, the KV cache split over all GPUs).
    - SGLang: Xinference sets ``tp_size`` = every GPU (TP across hosts), which needs a fast
      interconnect.
    """
    all_gpus = per_host * n_hosts
    fast = is_fast(interconnect)
    if engine == "sglang":
        if not fast:
            return None, (
                f"Xinference shards SGLang as TP over all {all_gpus} GPUs, which all-reduces across "
                f"hosts every layer; over {interconnect} that is too slow (say interconnect: "
                "infiniband in the intent if the hosts have it)."
            )
        why = rules.tp_reason(arch, all_gpus, model_format)
        return (
            (None, why)
            if why
            else (
                Parallel(
                    all_gpus,
                    1,
                    (
                        f"TP {all_gpus} over {n_hosts} hosts × {per_host} GPUs: SGLang shards across hosts by TP "
                        f"(Xinference sets tp_size = GPUs per worker × n_worker), fine on {interconnect}."
                    ),
                ),
                None,
            )
        )
    if fast:
        why = rules.tp_reason(arch, all_gpus, model_format)
        if why is None:
            return Parallel(
                all_gpus,
                1,
                (
                    f"TP {all_gpus} × PP 1 over {n_hosts} hosts × {per_host} GPUs: the hosts are joined by "
                    f"{interconnect}, fast enough for TP's per-layer all-reduce, and one pipeline stage "
                    "has no pipeline bubbles."
                ),
            ), None
    why = rules.tp_reason(arch, per_host, model_format)
    if why:
        return None, why
    text = (
        f"TP {per_host} × PP {n_hosts}: TP inside each host over its NVLink/PCIe, PP across the "
        f"{n_hosts} hosts, which then exchange only one activation per token at each stage boundary"
    )
    text += (
        f" ({interconnect} between hosts is too slow for TP's per-layer all-reduce)."
        if not fast
        else f" (TP {all_gpus} over every GPU does not divide this model: "
        f"{rules.tp_reason(arch, all_gpus, model_format)})"
    )
    return Parallel(per_host, n_hosts, text), None


def common_groups(
    groups_by_host: list[tuple[Host, list[Group]]],
) -> list[tuple[tuple[int, ...], list[tuple[Host, Group]]]]:
    """GPU index tuples free on several hosts at once (every shard uses the same ``gpu_idx``):
    [(gpus, [(host, group), ...])], most hosts first, then best-linked, then lowest indexes."""
    by_gpus: dict[tuple[int, ...], list[tuple[Host, Group]]] = {}
    for host, groups in groups_by_host:
        for g in groups:
            by_gpus.setdefault(g.gpus, []).append((host, g))
    return sorted(by_gpus.items(), key=lambda item: (-len(item[1]), max(g.worst_link for _, g in item[1]), item[0]))


def pick_hosts(members: list[tuple[Host, Group]], n: int, strategy: str) -> list[tuple[Host, Group]]:
    """``n`` hosts for one sharded replica: inventory order, the most free memory first under
    'spread' (the others stay for other models), in order under 'pack'."""
    if strategy == "pack":
        return members[:n]
    order = sorted(range(len(members)), key=lambda i: (-round(members[i][1].free_gib, 2), i))
    return [members[i] for i in sorted(order[:n])]


def launch_kwargs(engine: str, hosts: list[Host], gpus: tuple[int, ...], par: Parallel) -> dict:
    """The placement and parallelism keywords of ``launch_model`` for one sharded replica."""
    out = {
        "replica": 1,
        "n_worker": len(hosts),
        "worker_ip": ",".join(h.worker_address for h in hosts),
        "n_gpu": len(gpus),
        "gpu_idx": list(gpus),
    }
    if engine == "vllm":
        out.update(tensor_parallel_size=par.tp, pipeline_parallel_size=par.pp)
    elif engine == "sglang":
        out["tp_size"] = par.tp
    return out


def cross_host_env() -> dict[str, str]:
    """Environment the shards need (placeholders the user fills in before apply)."""
    return dict(facts()["env"])


def env_reason() -> str:
    names = " and ".join(facts()["env"])
    return (
        f"Environment: set {names} to the network interface that joins the hosts (the plan's env "
        "holds placeholders; apply refuses them and passes the filled values as the launch's envs): "
        "NCCL and Gloo otherwise take the first non-loopback interface, often docker0 or a "
        "management NIC, and the start-up hangs."
    )


def unfilled_env(env: dict | None) -> list[str]:
    """The variables of a deployment's ``env`` still holding the placeholder."""
    prefix = facts()["placeholder_prefix"]
    return sorted(k for k, v in (env or {}).items() if str(v).startswith(prefix))


def parse_worker_ips(value) -> list[str]:
    """``worker_ip`` as Xinference resolves it: a comma-separated string (or a list) of addresses."""
    items = value if isinstance(value, list) else [value]
    return [part.strip() for item in items if item for part in str(item).split(",") if part.strip()]


def launch_args(dep: dict) -> dict:
    """What apply sends: the plan's launch keywords, plus the deployment's filled-in ``env`` as
    Xinference's ``envs`` (set in the model processes on every worker)."""
    args = dict(dep["launch"])
    env = {k: str(v) for k, v in (dep.get("env") or {}).items()}
    if env:
        args["envs"] = {**(args.get("envs") or {}), **env}
    return args


def placement_mismatches(dep: dict, planned_workers: list, instance: dict | None) -> list[str]:
    """Where the running replicas differ from the plan (pure): each replica's worker (one of
    the sharded replica's workers) and GPU indexes, as ``get_instance_info`` reports them."""
    reps = (instance or {}).get("replica_statuses") or []
    placement = dep.get("placement") or []
    out = []
    if len(reps) != len(placement):
        out.append(f"{len(reps)} replica(s) running, {len(placement)} planned")
    for i, (rep, place) in enumerate(zip(reps, placement)):
        name = rep.get("replica_model_uid") or f"replica {i}"
        want = parse_worker_ips(planned_workers[i]) if i < len(planned_workers) else []
        got = rep.get("worker_address")
        if want and got not in want:
            out.append(f"{name} runs on worker {got}, planned on {', '.join(want)}")
        gpus = rep.get("gpu_idx")
        if place.get("gpus") and gpus is not None and sorted(gpus) != sorted(place["gpus"]):
            out.append(f"{name} runs on GPUs {gpus}, planned on {place['gpus']}")
    return out
