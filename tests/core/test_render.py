"""`render`: what it writes is what Xinference accepts. The shell is parsed with the real
`xinference launch` click command, the Python script's keywords bind to the real
`RESTfulClient.launch_model`, and both give back exactly the plan's launch keywords."""

import ast
import copy
import inspect
import json
import shlex
from functools import lru_cache

import pytest
from support.paths import EXAMPLES

from xinf_planner.core.documents import dump_document
from xinf_planner.core.planning import make_plan
from xinf_planner.core.render import TEMPLATES
from xinf_planner.core.render import render as render_with
from xinf_planner.core.request import request_from_intent
from xinf_planner.shell.documents import load_inventory
from xinf_planner.shell.templates import read_templates


def render(doc, fmt, folder=None):
    """The plan rendered with the shipped templates (or those of ``folder``)."""
    return render_with(doc, fmt, read_templates(TEMPLATES[fmt], folder))


HOSTS = EXAMPLES / "hosts"
CASES = [
    ("6xt4.yaml", "deepseek-r1-distill-qwen:7", 16),  # gpu_idx + replica, dtype
    ("2x8xa100-cluster.yaml", "deepseek-r1-distill-qwen:32", 4),  # replica_config
    ("cpu-only-16c-64g.yaml", "deepseek-r1-distill-qwen:1.5", 2),  # n_gpu None, llama.cpp
    ("mac-studio-m2-ultra-192gb.yaml", "deepseek-r1-distill-qwen:7", 1),
]


@lru_cache(maxsize=None)
def _plan(inv, model, concurrency):
    req = request_from_intent({"model": model, "context_length": 8192, "concurrency": concurrency})
    return make_plan(load_inventory(HOSTS / inv), req)


def plans():
    return [copy.deepcopy(_plan(*c)) for c in CASES]


def _launch_commands(script: str) -> list[list[str]]:
    """The argument lists of every `xinference launch` in a rendered shell script."""
    joined = script.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        if line.startswith("xinference launch"):
            args = shlex.split(line)[2:]
            # drop the endpoint and the auth expansion: they are shell, not plan
            args = [
                a
                for a in args
                if a not in ("-e", "$ENDPOINT", '${AUTH[@]+"${AUTH[@]}"}') and not a.startswith("${AUTH")
            ]
            out.append(args)
    return out


def _cli_kwargs(args: list[str]) -> dict:
    """What `xinference launch ARGS` would pass to Client.launch_model (its own parsing)."""
    from xinference.deploy.cmdline import model_launch
    from xinference.deploy.utils import handle_click_args_type

    ctx = model_launch.make_context("launch", list(args), resilient_parsing=False)
    p = ctx.params
    declared = {o for param in model_launch.params for o in param.opts + param.secondary_opts}
    extra = {}
    for i in range(0, len(ctx.args), 2):
        flag = ctx.args[i]
        assert flag.startswith("--") and flag not in declared
        extra[flag[2:]] = handle_click_args_type(ctx.args[i + 1])
    out = {
        "model_name": p["model_name"],
        "model_type": p["model_type"],
        "model_engine": p["model_engine"],
        "model_uid": p["model_uid"],
        "model_format": p["model_format"],
        "quantization": p["quantization"],
        "replica": p["replica"],
    }
    size = p["size_in_billions"]
    out["model_size_in_billions"] = size if "_" in size or "." in size else int(size)
    if p["context_length"] is not None:
        out["context_length"] = p["context_length"]
    if p["replica_config"] is not None:
        out["replica_config"] = json.loads(p["replica_config"])
    if p["gpu_idx"] is not None:
        out["gpu_idx"] = [int(i) for i in p["gpu_idx"].split(",")]
    if p["n_gpu"] != "auto":
        out["n_gpu"] = None if p["n_gpu"].lower() == "none" else int(p["n_gpu"])
    if p["worker_ip"] is not None:
        out["worker_ip"] = p["worker_ip"]
    if p["enable_virtual_env"] is not None:
        out["enable_virtual_env"] = p["enable_virtual_env"]
    if p.get("n_worker", 1) != 1:
        out["n_worker"] = p["n_worker"]
    if p.get("env"):
        out["envs"] = dict(p["env"])
    out.update(extra)
    return out


@pytest.mark.parametrize("case", range(len(CASES)))
def test_shell_round_trips_through_the_real_cli(case):
    doc = plans()[case]
    commands = _launch_commands(render(doc, "shell"))
    assert len(commands) == len(doc["deployments"])
    for args, dep in zip(commands, doc["deployments"]):
        assert _cli_kwargs(args) == dep["launch"]


def test_unknown_kwargs_use_the_name_xinference_forwards():
    # extra engine kwargs keep their underscores: `--gpu-memory-utilization` would reach vLLM
    # as "gpu-memory-utilization", a keyword it does not know
    text = render(plans()[0], "shell")
    assert "--gpu_memory_utilization " in text and "--gpu-memory-utilization" not in text


@pytest.mark.parametrize("case", range(len(CASES)))
def test_python_script_binds_to_the_client(case, tmp_path):
    from xinference_client import RESTfulClient

    doc = plans()[case]
    script = render(doc, "python")
    tree = ast.parse(script)  # valid Python
    assigns = {n.targets[0].id: n.value for n in tree.body if isinstance(n, ast.Assign)}
    launches = json.loads(ast.literal_eval(assigns["LAUNCHES"].args[0]))
    assert launches == [dep["launch"] for dep in doc["deployments"]]
    sig = inspect.signature(RESTfulClient.launch_model)
    for launch in launches:
        sig.bind(None, **launch)  # every keyword is accepted


def test_rest_payloads_match_the_client_payload_keys():
    from xinference_client import RESTfulClient

    source = inspect.getsource(RESTfulClient.launch_model)
    doc = plans()[1]
    body = json.loads(render(doc, "json"))["requests"][-1]["body"]
    assert body["replica_config"] == doc["deployments"][0]["launch"]["replica_config"]
    named = set(inspect.signature(RESTfulClient.launch_model).parameters) - {"self", "kwargs"}
    for key in body:
        # a named parameter is sent under its own name; others pass through **kwargs
        assert key not in named or f'"{key}": {key}' in source


def test_registration_renders_the_custom_model_json(tmp_path):
    import sys

    sys.path.insert(0, str(EXAMPLES.parent))
    from integration.tiny_model import build_gguf_model_dir

    from xinf_planner.shell.local_weights import detect

    folder = build_gguf_model_dir(tmp_path / "tiny")
    inv = load_inventory(HOSTS / "cpu-only-16c-64g.yaml")
    req = request_from_intent(
        {
            "model": "deepseek-r1-distill-qwen",
            "model_path": str(folder),
            "replicas": 2,
            "context_length": 512,
            "concurrency": 1,
        }
    )
    doc = make_plan(inv, req, local_models={str(folder): detect(folder)})
    script = render(doc, "shell")
    assert "xinference register" in script and "--model-type LLM" in script
    reg = json.loads(script.split("<<'XINF_PLAN_JSON'\n")[1].split("\nXINF_PLAN_JSON")[0])
    from xinference.model.llm.llm_family import CustomLLMFamilyV2

    family = CustomLLMFamilyV2.parse_raw(json.dumps(reg))
    assert family.model_family == "deepseek-r1-distill-qwen"
    assert family.model_name == doc["deployments"][0]["launch"]["model_name"]


def test_no_secret_in_any_output(monkeypatch):
    monkeypatch.setenv("XINFERENCE_API_KEY", "sk-very-secret")
    for doc in plans():
        for fmt in ("shell", "python", "json"):
            assert "sk-very-secret" not in render(doc, fmt)
        assert "sk-very-secret" not in dump_document(doc)


def test_user_templates_folder(tmp_path):
    import shutil

    from xinf_planner.shell.templates import templates_dir

    mine = tmp_path / "tpl"
    shutil.copytree(templates_dir(), mine)
    (mine / "render" / "shell_header.sh.tmpl").write_text("# my header for ${fingerprint}\n")
    text = render(plans()[0], "shell", str(mine))
    assert text.startswith("# my header for sha256:")


def test_render_is_deterministic():
    a = [render(d, f) for d in plans() for f in ("shell", "python", "json")]
    b = [render(d, f) for d in plans() for f in ("shell", "python", "json")]
    assert a == b


def test_sharded_cluster_plan_renders_workers_and_env():
    """The multi-host R1 example: n_worker, the worker list and the NCCL/Gloo env reach the CLI."""
    from xinf_planner.core.planning.sharding import launch_args
    from xinf_planner.shell.documents import load_document

    doc = load_document(EXAMPLES / "cluster" / "plan-r1-fp8.yaml")
    (dep,) = doc["deployments"]
    assert dep["env"], "the example carries the cross-host env"
    (args,) = _launch_commands(render(doc, "shell"))
    parsed = _cli_kwargs(args)
    assert parsed == launch_args(dep)
    assert parsed["envs"] == dep["env"] and parsed["n_worker"] == len(dep["placement"][0]["hosts"])
    from xinf_planner.core.render import rest_requests

    (launch,) = [r["body"] for r in rest_requests(doc) if r["path"] == "/v1/models"]
    assert launch["envs"] == dep["env"]


def test_no_plan_value_can_break_out_of_a_shell_comment():
    """Even a plan that skipped validation cannot smuggle a command into the script's comments."""
    doc = plans()[2]
    doc["deployments"][0]["model"] = "x\ntouch /tmp/PWNED\n#"
    doc["deployments"][0]["name"] = "d\nrm -rf ~\n#"
    script = render(doc, "shell")
    assert not any(line.startswith(("touch", "rm ")) for line in script.splitlines())
    assert "# d rm -rf ~ #: x touch /tmp/PWNED #" in script
