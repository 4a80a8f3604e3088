"""``apply --dry-run``: every client call apply would make, with its arguments, in order."""

from __future__ import annotations

import json

from xinf_planner.core.plan.document import Plan
from xinf_planner.shell.deploy.apply import ApplyOptions
from xinf_planner.shell.deploy.wait import POLL_INTERVAL_S


def dry_run_calls(plan, endpoint: str, auth_text: str, options: ApplyOptions = ApplyOptions()) -> list[str]:
    """The calls (pure; ``endpoint`` already masked, ``auth_text`` names no secret).

    Apply skips the register/launch calls of what already runs, which a dry run cannot
    know without calling the server, so every deployment is listed."""
    plan = Plan.of(plan)

    def js(value) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)

    calls = [
        f"Client({endpoint!r})  # {auth_text}",
        "GET /v1/cluster/version",
        "list_models()",
        "GET /v1/cluster/info?detailed=true",
    ]
    specs = plan.registrations()
    for block, _ in specs:
        calls.append(f"get_model_registration('LLM', {block['model_name']!r})")
    for dep in plan:
        reg = dep.registration
        if not reg:
            calls.append(f"get_model_registration('LLM', {dep.model_name!r})")
        queried = reg["model_family"] if reg else dep.model_name  # until registered: its family
        calls.append(f"query_engine_by_model_name({queried!r}, model_type='LLM', enable_virtual_env=False)")
    for block, spec in specs:
        calls.append(f"register_model('LLM', {js(spec)}, persist=True, worker_ip={block.get('worker_ip')!r})")
    if options.prefetch:
        calls.extend(_prefetch_calls(plan, js))
    for dep in plan:
        uid = dep.uid
        args = ", ".join(f"{k}={js(v)}" for k, v in dep.launch_args().items())
        calls.append(f"launch_model({args}, wait_ready=False)")
        calls.append(
            f"get_instance_info({dep.model_name!r}, {uid!r}) and "
            f"get_launch_model_progress({uid!r}), every {POLL_INTERVAL_S:.0f} s until every replica is READY"
        )
        if options.smoke_test:
            body = {"model": uid, "max_tokens": options.smoke_max_tokens, "temperature": 0, "stream": True}
            calls.append(f"POST /v1/chat/completions {js(body)}")
    calls.extend(_persist_calls(plan, options, js))
    return calls


def _prefetch_calls(plan: Plan, js) -> list[str]:
    from xinf_planner.shell.deploy.prefetch import targets

    out = []
    for t in targets(plan, plan.names):
        body = {k: v for k, v in t.body.items() if k != "cache_uid"}
        out.append(f"POST /v1/cache/models {js(body)} and GET /v1/cache/models/<uid>/progress every 1 s, at once")
    return out


def _persist_calls(plan: Plan, options: ApplyOptions, js) -> list[str]:
    """The autostart and launch-history calls (--persist, --publish). Entries that an earlier
    apply wrote are kept in step too, which a dry run cannot see without the state's server."""
    from xinf_planner.core.persist import autostart_form, history_record, targets

    keep = targets(plan, options.persist)
    out = []
    if keep or options.persist is False:
        out.append("GET /v1/autostart/models")
    forms = {}
    for i, dep in enumerate(plan.deployments):
        if dep.name in keep:
            forms[dep.name] = autostart_form(plan, dep, i)
            out.append(f"POST /v1/autostart/models {js(forms[dep.name].entry)}  # unless it already matches")
    if options.persist is False:
        out.append("DELETE /v1/autostart/models/<uid> for each entry an earlier apply --persist wrote")
    if options.publish:
        for dep in plan.deployments:
            out.append(f"POST /v1/launch_history {js(history_record(plan, dep, forms.get(dep.name)))}")
    return out
