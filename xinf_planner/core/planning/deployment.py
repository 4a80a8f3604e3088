"""The chosen layout as a plan deployment: the exact ``launch_model`` keywords, the placement,
the estimate, the registration of local weights, and the reasons for every choice."""

from __future__ import annotations

from typing import Any

from xinf_planner.core import engines, rules
from xinf_planner.core.planning import sharding
from xinf_planner.core.planning.placement import LINK_WORDS, gpu_kind, placement_kwargs
from xinf_planner.core.planning.scoring import OBJECTIVES
from xinf_planner.core.sizes import size_value

ARCH_FACTS = ("num_layers", "hidden_size", "num_attention_heads", "num_kv_heads", "head_dim", "vocab_size", "params")


def deployment(ctx, mreq, lay, context: int, uid_taken: set) -> dict:
    """The deployment document of ``lay`` (its model uid not one of ``uid_taken``)."""
    opt = lay.option
    arch = opt.arch
    spec = opt.spec
    local = ctx.local(mreq)
    uid = _unique_uid(arch.family, arch.size if local is None else None, uid_taken)
    launch: dict[str, Any] = {"model_uid": uid}
    registration = None
    if local is not None:
        from xinf_planner.core.registration import registration_for

        host0 = lay.replicas[0][0]
        worker = host0.worker_address if len(ctx.inventory.hosts) > 1 else None
        if ctx.request.model_path_on_every_worker:
            worker = None  # registered at the supervisor; every worker reads the same path
        registration = registration_for(
            local, model_name=uid, model_family=mreq.family, context_length=None, worker_ip=worker
        )
        launch["model_name"] = registration["model_name"]
        size = spec.size_label.get("local") or arch.size
    else:
        launch["model_name"] = arch.family
        size = spec.launch_size()
    launch.update(
        {
            "model_type": "LLM",
            "model_engine": engines.xinference_name(opt.engine),
            "model_format": spec.model_format,
            "model_size_in_billions": size_value(size),
            "quantization": spec.quantization,
        }
    )
    replicas = [(h, () if g is None else g.gpus) for h, g in lay.replicas]
    if lay.shard_hosts:
        par = sharding.Parallel(lay.tp, lay.pp, "")
        launch.update(sharding.launch_kwargs(opt.engine, list(lay.shard_hosts), replicas[0][1], par))
    else:
        launch.update(placement_kwargs(replicas))
    launch["context_length"] = context
    launch.update(opt.launch_kwargs)
    launch.update(lay.launch_extra)
    if "reasoning" in (arch.abilities or ()):
        launch["reasoning_content"] = True
    if local is None and spec.download_hub:
        launch["download_hub"] = spec.download_hub
    if ctx.request.enable_virtual_env is not None:
        launch["enable_virtual_env"] = ctx.request.enable_virtual_env
    dep: dict[str, Any] = {
        "name": uid,
        "model": arch.ref if local is None else f"{mreq.family}:{size}",
        "launch": launch,
        "placement": (
            [{"hosts": [h.name for h in lay.shard_hosts], "gpus": list(replicas[0][1])}]
            if lay.shard_hosts
            else [{"host": h.name, "gpus": list(gpus)} for h, gpus in replicas]
        ),
        "estimate": estimate_block(lay, mreq),
        "reasons": reasons(ctx, mreq, lay, context),
    }
    if lay.shard_hosts:
        dep["env"] = sharding.cross_host_env()
    if registration is not None:
        dep["registration"] = registration
        dep["arch"] = {k: getattr(arch, k) for k in ARCH_FACTS}
    return dep


def _unique_uid(family: str, size: str | None, taken: set) -> str:
    """'{family}-{size}b' ('{family}-local' for local weights), numbered when already taken."""
    base = f"{family}-{size.replace('_', '.')}b".lower() if size is not None else f"{family}-local".lower()
    uid, n = base, 2
    while uid in taken:
        uid = f"{base}-{n}"
        n += 1
    return uid


def estimate_block(lay, mreq) -> dict:
    """The memory estimate of one replica, its decode speed alone and at its full-context batch,
    and the serving figures of the deployment at the request's workload."""
    est = lay.estimate
    per_gpu = {k: round(float(v), 3) for k, v in est.per_gpu_gib.items()}
    speed = est.decode_tokens_per_s
    replicas = max(1, len(lay.replicas))
    out: dict[str, Any] = {
        "per_gpu_gib": per_gpu,
        "kv_cache_tokens": int(est.kv_cache_tokens),
        "max_concurrent_sequences": round(float(est.max_concurrent_sequences), 2),
        "decode_tokens_per_s": {
            "per_sequence": round(float(speed.get("per_sequence") or 0.0), 2),
            "aggregate": round(float(speed.get("aggregate") or 0.0) * replicas, 2),
        },
        "served_sequences": lay.served,
    }
    if lay.device.kind is None or getattr(est, "host_gib", 0):
        out["host_gib"] = round(float(est.host_gib), 3)
    out["serving"] = lay.serving.figures(mreq.input_tokens, mreq.output_tokens, mreq.concurrency, mreq.targets)
    return out


# -- reasons ---------------------------------------------------------------------------------


def reasons(ctx, mreq, lay, context: int) -> list[str]:
    """Every choice of the deployment, in plain sentences."""
    opt = lay.option
    objective = ctx.request.objective
    out = [f"Objective '{objective}': {OBJECTIVES[objective]}."]
    if mreq.size is None and not mreq.model_path:
        out.append(f"Size: {opt.arch.size.replace('_', '.')}B scores best among the {opt.arch.family} sizes that fit.")
    out.append(_engine_reason(mreq, lay, context))
    out.append(
        f"Quantisation: {opt.spec.model_format}/{opt.spec.quantization} "
        f"({rules.precision_label(opt.precision)}, quality rank {rules.precision_rank(opt.precision)} of 7)."
    )
    out.extend(_placement_reasons(ctx, mreq, lay))
    out.extend(lay.reasons)
    out.extend(_serving_reasons(ctx, mreq, lay, context))
    return out


def _engine_reason(mreq, lay, context: int) -> str:
    engine = lay.option.engine
    if engines.has_paged_kv(engine):
        why = f"{engine}: paged KV cache and continuous batching serve many sequences at once from one pool"
        return why + (f", which {mreq.concurrency} concurrent sequences need." if mreq.concurrency > 1 else ".")
    if engine == "llama.cpp":
        where = "on the CPU" if lay.device.kind is None else f"on {lay.device.label}"
        return (
            f"llama.cpp: it serves the GGUF quantisation {where}; each replica has "
            f"{lay.launch_extra.get('n_parallel', 1)} fixed slot(s) of {context} tokens."
        )
    if engine == "mlx":
        return "MLX: the native engine on Apple silicon, using unified memory."
    return f"{engine}: the only engine that fits this spec here."


def _dtype_reason(lay) -> str:
    return (
        f"dtype float16: {lay.device.label} has compute capability "
        f"{rules.cc_text(lay.device.cc)}, below 8.0, so no bf16."
    )


def _placement_reasons(ctx, mreq, lay) -> list[str]:
    opt = lay.option
    n = len(lay.replicas)
    out = []
    if lay.shard_hosts:
        hosts = ", ".join(h.name for h in lay.shard_hosts)
        out.append(
            f"Sharded: no single host holds it, so one replica spans {len(lay.shard_hosts)} hosts "
            f"({hosts}) with n_worker {len(lay.shard_hosts)}, each shard on GPUs {list(lay.replicas[0][1].gpus)} "
            f"of its host (the same gpu_idx everywhere, n_gpu {lay.width} per worker); worker_ip "
            "names the workers, since replica_config cannot be combined with n_worker > 1."
        )
        out.append(
            "One replica: Xinference cannot pin the workers of each replica of a sharded launch "
            "nor add replicas to it; more capacity is another deployment."
        )
        out.append(sharding.env_reason())
        if "dtype" in lay.launch_extra:
            out.append(_dtype_reason(lay))
    elif lay.device.kind is not None:
        if engines.tensor_parallel(opt.engine):
            out.append(
                f"TP {lay.width}: a power of two that divides the {opt.arch.num_attention_heads} "
                f"attention heads and {opt.arch.num_kv_heads} KV heads; {n} replica(s) of TP "
                f"{lay.width} on {lay.device.label}."
            )
        else:
            out.append(f"{n} replica(s), each on {lay.width} {lay.device.label} GPU(s).")
        hosts = {h.name for h, _ in lay.replicas}
        over = f"; replicas {ctx.request.strategy} over {len(hosts)} hosts" if len(hosts) > 1 else ""
        if lay.width > 1:
            out.append(
                f"Placement: each replica's GPUs are linked by {LINK_WORDS[lay.worst_link]} at worst "
                f"(GPUs of one model only{over})."
            )
        elif over:
            out.append(f"Placement: {over[2:]}.")
        if "dtype" in lay.launch_extra:
            out.append(_dtype_reason(lay))
    else:
        hosts = sorted({h.name for h, _ in lay.replicas})
        out.append(
            f"{n} replica(s) on the CPU of {', '.join(hosts)} with "
            f"{lay.launch_extra.get('n_threads', 'all')} thread(s) each."
        )
    if mreq.model_path and ctx.request.model_path_on_every_worker and len({h.name for h, _ in lay.replicas}) > 1:
        out.append(
            "Local weights on every worker: the model is registered at the supervisor, which "
            "(Xinference 4.1.0, register_model) checks the path on itself and then on every worker; "
            "a worker without it fails the registration, before anything is launched."
        )
    kinds = {gpu_kind(g) for h in ctx.inventory.hosts for g in h.gpus}
    if lay.device.kind is not None and len(kinds) > 1 and len({h.name for h in ctx.inventory.hosts}) > 1:
        out.append(
            f"Uniform: every replica runs {opt.spec.model_format}/{opt.spec.quantization} with the "
            f"same TP on {lay.device.label} only; the inventory's other GPU kinds are not mixed into "
            "this deployment (a different quantisation or TP per host would be a deployment of its own)."
        )
    return out


def _serving_reasons(ctx, mreq, lay, context: int) -> list[str]:
    local = ctx.local(mreq)
    default = (
        local.context_length
        if local is not None and local.context_length
        else lay.option.arch.context_length or lay.option.arch.max_position_embeddings
    )
    p = lay.point
    gpus = lay.gpus_used
    per_gpu = f", {p.output_tokens_per_s / gpus:.0f} per GPU" if gpus else ""
    held = (
        f"the KV cache holds {lay.served} sequence(s) of that length at once"
        if lay.served >= mreq.concurrency
        else f"the KV cache holds {lay.served} sequence(s) of that length at once, fewer than the "
        f"{mreq.concurrency} users: the typical {mreq.input_tokens + mreq.output_tokens}-token requests all fit, "
        "but when several run to the full length at once the engine makes some wait"
    )
    return [
        f"Context: context_length {context} set explicitly (the model default would be {default}); {held}.",
        f"Serving: {mreq.concurrency} user(s) of {mreq.input_tokens} prompt + {mreq.output_tokens} output tokens "
        f"get a first token in {p.ttft_s:.2f} s and {p.tokens_per_s_per_user:.1f} tokens/s each "
        f"(TPOT {p.tpot_s * 1000:.0f} ms); {p.output_tokens_per_s:.0f} output tokens/s in all{per_gpu}.",
        f"Targets: TTFT {mreq.max_ttft_ms / 1000:g} s and TPOT {mreq.max_tpot_ms:g} ms met; up to "
        f"{lay.within(mreq)} user(s) at once stay within them.",
    ]
