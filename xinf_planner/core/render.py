"""A plan as something to run by hand: ``xinference`` CLI commands, a Python script using the
client, or the REST requests; or as a page to review in a browser (``render_html``). Pure: the
plan and the template texts in (``TEMPLATES`` names them; ``shell/templates.read_templates``
reads them), text out.

The flags are those of ``xinference launch`` (``xinference/deploy/cmdline.py``, 4.1.0). Launch
keywords without a flag of their own pass as ``--<keyword> <value>``: the CLI forwards them to
the engine with the name unchanged (so ``--gpu_memory_utilization``, with underscores) and
converts ``None``/``true``/numbers/JSON back to values.
"""

from __future__ import annotations

import json
import shlex
from string import Template
from typing import Any

from xinf_planner.core.planning.sharding import launch_args
from xinf_planner.errors import InvalidInput

# launch_model keyword -> `xinference launch` option
CLI_FLAGS = {
    "model_name": "--model-name",
    "model_type": "--model-type",
    "model_engine": "--model-engine",
    "model_uid": "--model-uid",
    "model_size_in_billions": "--size-in-billions",
    "model_format": "--model-format",
    "quantization": "--quantization",
    "context_length": "--context-length",
    "replica": "--replica",
    "replica_config": "--replica-config",
    "n_worker": "--n-worker",
    "n_gpu": "--n-gpu",
    "worker_ip": "--worker-ip",
    "gpu_idx": "--gpu-idx",
    "model_path": "--model-path",
    "trust_remote_code": "--trust-remote-code",
}
FORMATS = ("shell", "python", "json", "html")
# the templates each output fills, by path inside the templates folder
TEMPLATES = {
    "shell": ("render/shell_header.sh.tmpl", "render/shell_register.sh.tmpl", "render/shell_launch.sh.tmpl"),
    "python": ("render/python.py.tmpl",),
    "json": ("render/rest.json.tmpl",),
    "html": ("render/plan.html.tmpl",),  # core/render_html.py: the plan for review in a browser
}


def render(doc: dict, as_: str, templates: dict[str, str]) -> str:
    """``doc`` as ``as_`` (one of FORMATS), filling ``templates`` (path -> text)."""
    if as_ == "shell":
        return render_shell(doc, templates)
    if as_ == "python":
        return render_python(doc, templates)
    if as_ == "json":
        return render_json(doc, templates)
    if as_ == "html":
        from xinf_planner.core.render_html import render_html

        return render_html(doc, templates)
    raise ValueError(f"unknown output {as_!r}; choose one of {', '.join(FORMATS)}")


def fill(templates: dict[str, str], name: str, values: dict) -> str:
    """``string.Template`` substitution of one template; a missing key is an error."""
    try:
        return Template(templates[name]).substitute(values)
    except KeyError as exc:
        raise InvalidInput(f"template {name} uses an unknown field {exc}") from None
    except ValueError as exc:
        raise InvalidInput(f"template {name} is malformed: {exc}") from None


def cli_value(value: Any) -> str:
    """A launch value as the CLI's ``handle_click_args_type`` reads it back."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def launch_cli_args(launch: dict) -> list[str]:
    """The arguments after ``xinference launch`` (endpoint and API key excluded)."""
    args: list[str] = []
    for key, value in launch.items():
        if key == "gpu_idx":
            args += ["--gpu-idx", ",".join(str(i) for i in value)]
        elif key == "envs":
            for name, val in sorted((value or {}).items()):
                args += ["--env", name, str(val)]
        elif key == "enable_virtual_env":
            args.append("--enable-virtual-env" if value else "--disable-virtual-env")
        elif key == "enable_thinking":
            if value:
                args.append("--enable-thinking")
        elif key in CLI_FLAGS:
            args += [CLI_FLAGS[key], cli_value(value)]
        else:
            args += [f"--{key}", cli_value(value)]
    return args


def _registration_doc(dep: dict) -> dict:
    from xinf_planner.core.registration import registration_spec

    return registration_spec(dep["registration"], dep["launch"]["model_size_in_billions"])


def render_shell(doc: dict, templates: dict[str, str]) -> str:
    deployments = doc["deployments"]
    out = [
        fill(
            templates,
            "render/shell_header.sh.tmpl",
            {"fingerprint": doc["inventory"]["fingerprint"], "count": len(deployments)},
        )
    ]
    for dep in deployments:
        reg = dep.get("registration")
        if reg:
            worker = reg.get("worker_ip")
            out.append(
                fill(
                    templates,
                    "render/shell_register.sh.tmpl",
                    {
                        "name": _one_line(dep["name"]),
                        "model_name": _one_line(reg["model_name"]),
                        "model_family": _one_line(reg["model_family"]),
                        "registration_json": json.dumps(_registration_doc(dep), indent=2),
                        "worker_flag": f" --worker-ip {shlex.quote(worker)}" if worker else "",
                    },
                )
            )
        args = launch_cli_args(launch_args(dep))
        pairs = _pair_flags(args)
        flags = " \\\n".join("  " + " ".join(shlex.quote(a) for a in pair) for pair in pairs)
        out.append(
            fill(
                templates,
                "render/shell_launch.sh.tmpl",
                {
                    "name": _one_line(dep["name"]),
                    "model": _one_line(dep["model"]),
                    "engine": _one_line(dep["launch"]["model_engine"]),
                    "replicas": _one_line(dep["launch"]["replica"]),
                    "flags": flags,
                },
            )
        )
    return "".join(text if text.endswith("\n") else text + "\n" for text in out)


def _one_line(value) -> str:
    """A value for a shell comment: never a line break (a line of its own would run)."""
    return " ".join(str(value).split())


def _pair_flags(args: list[str]) -> list[list[str]]:
    """One option per line: a flag with its value(s)."""
    pairs: list[list[str]] = []
    for a in args:
        if a.startswith("--") or not pairs:
            pairs.append([a])
        else:
            pairs[-1].append(a)
    return pairs


def _registrations(doc: dict) -> list[dict]:
    regs = []
    for dep in doc["deployments"]:
        if dep.get("registration"):
            item: dict = {"model": _registration_doc(dep)}
            if dep["registration"].get("worker_ip"):
                item["worker_ip"] = dep["registration"]["worker_ip"]
            regs.append(item)
    return regs


def render_python(doc: dict, templates: dict[str, str]) -> str:
    return fill(
        templates,
        "render/python.py.tmpl",
        {
            "fingerprint": doc["inventory"]["fingerprint"],
            "count": len(doc["deployments"]),
            "registrations": _json_literal(_registrations(doc)),
            "launches": _json_literal([launch_args(dep) for dep in doc["deployments"]]),
        },
    )


def _json_literal(value: Any) -> str:
    text = json.dumps(value, indent=4)
    return text.replace("'''", "\\u0027\\u0027\\u0027")


def rest_requests(doc: dict) -> list[dict]:
    """The HTTP requests, in order, that the Python client would send."""
    requests: list[dict] = []
    for reg in _registrations(doc):
        requests.append(
            {
                "method": "POST",
                "path": "/v1/model_registrations/LLM",
                "body": {"model": json.dumps(reg["model"]), "worker_ip": reg.get("worker_ip"), "persist": True},
            }
        )
    for dep in doc["deployments"]:
        body = launch_args(dep)
        body.setdefault("model_type", "LLM")
        requests.append({"method": "POST", "path": "/v1/models", "body": body})
    return requests


def render_json(doc: dict, templates: dict[str, str]) -> str:
    requests = json.dumps(rest_requests(doc), indent=2).replace("\n", "\n  ")
    return fill(
        templates, "render/rest.json.tmpl", {"fingerprint": doc["inventory"]["fingerprint"], "requests": requests}
    )
