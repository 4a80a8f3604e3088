#!/usr/bin/env python3
"""NVIDIA aiconfigurator 0.12.0 as an independent reference for the serving model.

BENCHMARK REFERENCE ONLY: xinf-plan does not import or depend on aiconfigurator. This script runs with
the project's Python but never imports aiconfigurator itself: it keeps aiconfigurator in its OWN virtual
environment (default ``.venv-aic`` in the repository root, or ``--venv DIR``; created and
``pip install aiconfigurator==0.12.0``-ed when missing, ~850 MB) and drives it through a small runner
embedded below, run as a subprocess of that venv's Python.

It does two things and caches both in ``benchmarks/data/aiconfigurator_results.json``, so the
serving-accuracy benchmark can read aiconfigurator's figures without re-running the simulator:

(a) rows: every row of ``benchmarks/data/serving_measurements.yaml`` that aiconfigurator covers
    (GPU H100 SXM / H200 / A100 80GB SXM / L40S; engine vllm / sglang / tensorrt-llm; weights bf16 /
    fp16 / fp8 - it has no int4 path for vLLM/SGLang; an architecture it can build) is estimated at the
    row's TP, attention-DP, EP, replicas (concurrency split evenly over replicas), input/output tokens
    and concurrency, in aggregated mode (``static`` mode for ``load: static-batch`` rows). Rows it does
    not cover are recorded with the reason.
(b) scenarios: the R1-distill ranking scenarios (model x 8 GPUs x (input, output) x concurrency), each
    for every TP x replicas layout with TP x replicas = 8 (TP 1, 2, 4, 8); throughput, per-user
    tokens/s, TTFT, TPOT, or OOM / invalid layout.

Database mode SILICON; the default ("current") engine version of each GPU's database. Cached entries
are reused unless ``--refresh`` is given or the entry's inputs changed.

Usage:
    python benchmarks/aiconfigurator_reference.py                 # run what is missing, print summary
    python benchmarks/aiconfigurator_reference.py --refresh       # re-run everything
    python benchmarks/aiconfigurator_reference.py --summary-only  # print from the cache, run nothing
    python benchmarks/aiconfigurator_reference.py --venv /path/to/aic-venv
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEASUREMENTS = ROOT / "benchmarks" / "data" / "serving_measurements.yaml"
RESULTS = ROOT / "benchmarks" / "data" / "aiconfigurator_results.json"
DEFAULT_VENV = ROOT / ".venv-aic"
AIC_VERSION = "0.12.0"
DATABASE_MODE = "SILICON"
SCHEMA = 1

# xinf-plan GPU table names -> aiconfigurator system names (the systems with SILICON data)
GPU_SYSTEMS = {
    "NVIDIA H100 80GB HBM3": "h100_sxm",
    "NVIDIA H200": "h200_sxm",
    "NVIDIA A100 80GB SXM": "a100_sxm",
    "NVIDIA L40S": "l40s",
}
BACKENDS = {"vllm": "vllm", "sglang": "sglang", "tensorrt-llm": "trtllm"}

# HF-style configs of the architectures aiconfigurator does not bundle under the same name. The
# R1-distill shapes are those of their base models (Qwen2.5 / Qwen2-Math / Llama-3.x);
# Qwen3-14B from its published config.json.
_QWEN2 = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_act": "silu",
    "max_position_embeddings": 131072,
    "rope_theta": 10000,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "use_sliding_window": False,
    "sliding_window": 4096,
}
_LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_act": "silu",
    "attention_bias": False,
    "mlp_bias": False,
    "max_position_embeddings": 131072,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "factor": 8.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 128256,
    "rms_norm_eps": 1e-05,
}
EMBEDDED_MODELS = {
    "qwen2.5-7b": {
        **_QWEN2,
        "hidden_size": 3584,
        "num_hidden_layers": 28,
        "max_window_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "intermediate_size": 18944,
        "vocab_size": 152064,
        "rms_norm_eps": 1e-06,
    },
    "qwen2.5-14b": {
        **_QWEN2,
        "hidden_size": 5120,
        "num_hidden_layers": 48,
        "max_window_layers": 48,
        "num_attention_heads": 40,
        "num_key_value_heads": 8,
        "intermediate_size": 13824,
        "vocab_size": 152064,
        "rms_norm_eps": 1e-05,
    },
    "qwen2.5-32b": {
        **_QWEN2,
        "hidden_size": 5120,
        "num_hidden_layers": 64,
        "max_window_layers": 64,
        "num_attention_heads": 40,
        "num_key_value_heads": 8,
        "intermediate_size": 27648,
        "vocab_size": 152064,
        "rms_norm_eps": 1e-05,
    },
    "qwen2-1.5b": {
        **_QWEN2,
        "hidden_size": 1536,
        "num_hidden_layers": 28,
        "max_window_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "intermediate_size": 8960,
        "vocab_size": 151936,
        "rms_norm_eps": 1e-06,
    },
    "llama-3.1-8b": {
        **_LLAMA,
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 14336,
    },
    "llama-3.1-70b": {
        **_LLAMA,
        "hidden_size": 8192,
        "num_hidden_layers": 80,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "intermediate_size": 28672,
    },
    "qwen3-14b": {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "attention_bias": False,
        "head_dim": 128,
        "hidden_act": "silu",
        "hidden_size": 5120,
        "intermediate_size": 17408,
        "max_position_embeddings": 40960,
        "max_window_layers": 40,
        "num_attention_heads": 40,
        "num_hidden_layers": 40,
        "num_key_value_heads": 8,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_sliding_window": False,
        "vocab_size": 151936,
    },
}


# architecture (+ weights) -> (model reference for the runner, gemm quant mode or None = from checkpoint, moe)
#   "embedded:<key>" = a config above; anything else = a Hugging Face id bundled with aiconfigurator.
def _model_for(arch: str, weights: str):
    w = {"fp16": "bf16"}.get(weights, weights)
    if arch in EMBEDDED_MODELS and arch != "qwen3-14b":
        if w == "bf16":
            return f"embedded:{arch}", "bfloat16", False
        if w == "fp8":
            return f"embedded:{arch}", "fp8", False  # engine-side FP8 (vLLM --quantization fp8)
    if arch == "other:qwen3-14b":
        if w == "bf16":
            return "embedded:qwen3-14b", "bfloat16", False
        if w == "fp8":
            return "embedded:qwen3-14b", "fp8_block", False  # Qwen/Qwen3-14B-FP8 is block FP8
    if arch == "other:qwen3-32b":
        if w == "bf16":
            return "Qwen/Qwen3-32B", "bfloat16", False
        if w == "fp8":
            return "Qwen/Qwen3-32B-FP8", None, False  # block FP8 checkpoint config
    if arch == "deepseek-v3" and w == "fp8":
        return "deepseek-ai/DeepSeek-R1", None, True  # block FP8 checkpoint config (MLA + MoE)
    return None


# --------------------------------------------------------------------------- ranking scenarios
# (key, model label, arch, gpu, weights, isl, osl, concurrency); engine vLLM, every TP x replicas = 8.
SCENARIOS = [
    (
        "r1-qwen-32b/8xH100/bf16/vllm/2000x2000/c32",
        "DeepSeek-R1-Distill-Qwen-32B",
        "qwen2.5-32b",
        "NVIDIA H100 80GB HBM3",
        "bf16",
        2000,
        2000,
        32,
    ),
    (
        "r1-qwen-32b/8xH100/bf16/vllm/2000x2000/c128",
        "DeepSeek-R1-Distill-Qwen-32B",
        "qwen2.5-32b",
        "NVIDIA H100 80GB HBM3",
        "bf16",
        2000,
        2000,
        128,
    ),
    (
        "r1-qwen-32b/8xH100/bf16/vllm/2000x2000/c256",
        "DeepSeek-R1-Distill-Qwen-32B",
        "qwen2.5-32b",
        "NVIDIA H100 80GB HBM3",
        "bf16",
        2000,
        2000,
        256,
    ),
    (
        "r1-llama-70b/8xH100/fp8/vllm/2000x2000/c64",
        "DeepSeek-R1-Distill-Llama-70B",
        "llama-3.1-70b",
        "NVIDIA H100 80GB HBM3",
        "fp8",
        2000,
        2000,
        64,
    ),
    (
        "r1-llama-70b/8xH100/fp8/vllm/2000x2000/c256",
        "DeepSeek-R1-Distill-Llama-70B",
        "llama-3.1-70b",
        "NVIDIA H100 80GB HBM3",
        "fp8",
        2000,
        2000,
        256,
    ),
    (
        "r1-qwen-7b/8xH100/bf16/vllm/1000x4000/c64",
        "DeepSeek-R1-Distill-Qwen-7B",
        "qwen2.5-7b",
        "NVIDIA H100 80GB HBM3",
        "bf16",
        1000,
        4000,
        64,
    ),
    (
        "r1-qwen-7b/8xH100/bf16/vllm/1000x4000/c512",
        "DeepSeek-R1-Distill-Qwen-7B",
        "qwen2.5-7b",
        "NVIDIA H100 80GB HBM3",
        "bf16",
        1000,
        4000,
        512,
    ),
    (
        "r1-qwen-14b/8xL40S/bf16/vllm/2000x2000/c64",
        "DeepSeek-R1-Distill-Qwen-14B",
        "qwen2.5-14b",
        "NVIDIA L40S",
        "bf16",
        2000,
        2000,
        64,
    ),
    (
        "r1-qwen-32b/8xH200/bf16/vllm/2000x2000/c256",
        "DeepSeek-R1-Distill-Qwen-32B",
        "qwen2.5-32b",
        "NVIDIA H200",
        "bf16",
        2000,
        2000,
        256,
    ),
]
LAYOUTS = [(1, 8), (2, 4), (4, 2), (8, 1)]  # (tp, replicas)


# --------------------------------------------------------------------------- the embedded runner
RUNNER = r"""
import contextlib, json, logging, math, os, sys, time, warnings
warnings.filterwarnings("ignore")
logging.basicConfig(stream=sys.stderr, level=logging.ERROR)
for _n in ("aiconfigurator", "aiconfigurator_core"):
    logging.getLogger(_n).setLevel(logging.ERROR)

def _f(x):
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None

def main():
    spec = json.load(sys.stdin)
    models_dir = spec["models_dir"]
    for key, cfg in spec["embedded_models"].items():
        d = os.path.join(models_dir, key)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as fh:
            json.dump(cfg, fh)
    with contextlib.redirect_stdout(sys.stderr):
        from aiconfigurator.cli.api import cli_estimate
        import importlib.metadata as md
    out = sys.stdout
    out.write(json.dumps({"_meta": {"aiconfigurator": md.version("aiconfigurator"),
                                    "aiconfigurator_core": md.version("aiconfigurator-core"),
                                    "python": sys.version.split()[0]}}) + "\n")
    out.flush()
    for job in spec["jobs"]:
        a = job["aic"]
        model = a["model"]
        if model.startswith("embedded:"):
            model = os.path.join(models_dir, model.split(":", 1)[1])
        kw = {k: v for k, v in a.items() if k not in ("model", "system") and v is not None}
        t0 = time.perf_counter()
        try:
            with contextlib.redirect_stdout(sys.stderr):
                r = cli_estimate(model, a["system"], **kw)
            raw = r.raw
            res = {"ok": True, "ttft_ms": _f(r.ttft), "tpot_ms": _f(r.tpot),
                   "request_latency_ms": _f(raw.get("request_latency")),
                   "tokens_per_s_per_user": _f(raw.get("tokens/s/user")),
                   "output_tokens_per_s_per_replica": _f(raw.get("tokens/s")),
                   "output_tokens_per_s_per_gpu": _f(raw.get("tokens/s/gpu")),
                   "requests_per_s_per_replica": _f(raw.get("seq/s")),
                   "aic_concurrency_per_replica": _f(raw.get("concurrency")),
                   "gpus_per_replica": _f(raw.get("num_total_gpus")),
                   "memory_gib_per_gpu": _f(raw.get("memory")),
                   "kv_cache_warning": r.kv_cache_warning,
                   "backend_version": str(r.backend_version),
                   "gemm_quant": str(raw.get("gemm")), "kvcache_quant": str(raw.get("kvcache")),
                   "fmha_quant": str(raw.get("fmha")),
                   "moe_quant": None if raw.get("moe") is None else str(raw.get("moe"))}
        except Exception as exc:
            msg = (type(exc).__name__ + ": " + str(exc)).strip()[:1500]
            res = {"ok": False, "error": msg, "oom": "OOM" in str(exc)}
        res["estimate_seconds"] = round(time.perf_counter() - t0, 2)
        out.write(json.dumps({"key": job["key"], "result": res}) + "\n")
        out.flush()

main()
"""


# --------------------------------------------------------------------------- venv management
def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def installed_version(py: Path) -> str | None:
    if not py.exists():
        return None
    proc = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m; print(m.version('aiconfigurator'))"],
        capture_output=True,
        text=True,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_venv(venv: Path, base_python: str) -> Path:
    py = venv_python(venv)
    if not py.exists():
        print(f"[aic] creating virtual environment {venv}", file=sys.stderr)
        subprocess.run([base_python, "-m", "venv", str(venv)], check=True, stdout=sys.stderr)
    version = installed_version(py)
    if version != AIC_VERSION:
        print(
            f"[aic] installing aiconfigurator=={AIC_VERSION} into {venv} (found: {version}); this downloads ~850 MB",
            file=sys.stderr,
        )
        # pip's progress goes to stderr so that stdout carries only the summary
        subprocess.run([str(py), "-m", "pip", "install", "--upgrade", "pip"], check=False, stdout=sys.stderr)
        subprocess.run(
            [str(py), "-m", "pip", "install", f"aiconfigurator=={AIC_VERSION}"], check=True, stdout=sys.stderr
        )
        version = installed_version(py)
        if version != AIC_VERSION:
            sys.exit(f"aiconfigurator {AIC_VERSION} is not importable from {py} (found {version})")
    return py


def run_jobs(py: Path, jobs: list[dict], timeout: float) -> tuple[dict, dict]:
    """Run the jobs in one subprocess of the aiconfigurator venv; {key: result}, meta."""
    results, meta = {}, {}
    if not jobs:
        return results, meta
    with tempfile.TemporaryDirectory(prefix="xinf-aic-") as tmp:
        runner = Path(tmp) / "aic_runner.py"
        runner.write_text(RUNNER)
        spec = {"models_dir": str(Path(tmp) / "models"), "embedded_models": EMBEDDED_MODELS, "jobs": jobs}
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)  # nothing of the project's interpreter leaks into the aic venv
        proc = subprocess.Popen(
            [str(py), str(runner)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp,
        )
        try:
            stdout, stderr = proc.communicate(json.dumps(spec), timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            print(f"[aic] runner timed out after {timeout:.0f} s; keeping what finished", file=sys.stderr)
        for line in stdout.splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            msg = json.loads(line)
            if "_meta" in msg:
                meta = msg["_meta"]
            else:
                results[msg["key"]] = msg["result"]
        if proc.returncode not in (0, None) and len(results) < len(jobs):
            tail = "\n".join(stderr.splitlines()[-20:])
            print(f"[aic] runner exited {proc.returncode}; stderr tail:\n{tail}", file=sys.stderr)
    return results, meta


# --------------------------------------------------------------------------- rows
def load_rows(path: Path) -> list[dict]:
    import yaml  # a dependency of xinf-plan itself

    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)["rows"]


def row_job(row: dict):
    """(aic inputs, None) for a covered row, or (None, reason)."""
    system = GPU_SYSTEMS.get(row.get("gpu"))
    if system is None:
        return None, f"GPU {row.get('gpu')!r} has no aiconfigurator SILICON database here"
    backend = BACKENDS.get(row.get("engine"))
    if backend is None:
        return None, f"engine {row.get('engine')!r} is not an aiconfigurator backend (vllm, sglang, trtllm)"
    weights = (row.get("weights") or "").lower()
    if weights not in ("bf16", "fp16", "fp8"):
        return None, f"weights {weights!r}: aiconfigurator has no such path for this backend (bf16/fp8 only)"
    model = _model_for(row.get("arch") or "", weights)
    if model is None:
        return None, f"architecture {row.get('arch')!r} with {weights} weights has no aiconfigurator model here"
    model_ref, gemm, moe = model
    isl, osl, conc = row.get("input_tokens"), row.get("output_tokens"), row.get("concurrency")
    if not (isl and osl and conc):
        return None, "input_tokens, output_tokens and concurrency are all needed"
    tp, pp, replicas = int(row.get("tp") or 1), int(row.get("pp") or 1), int(row.get("replicas") or 1)
    adp, ep = int(row.get("attention_dp") or 1), int(row.get("ep") or 1)
    if tp % adp or tp % ep:
        return None, f"tp {tp} is not divisible by attention_dp {adp} / ep {ep}"
    per_replica, rem = divmod(int(conc), replicas)
    if rem:
        return None, f"concurrency {conc} does not split evenly over {replicas} replicas"
    batch, rem = divmod(per_replica, adp * pp)
    if rem or batch < 1:
        return None, (
            f"concurrency {per_replica} per replica does not split into whole batches over "
            f"{adp} attention-DP rank(s) x {pp} pipeline stage(s)"
        )
    kv = "fp8" if row.get("kv_cache_dtype") == "fp8" else "bfloat16"  # 'auto'/unstated = bf16 KV
    mode = "static" if row.get("load") == "static-batch" else "agg"
    aic = {
        "model": model_ref,
        "system": system,
        "mode": mode,
        "backend_name": backend,
        "database_mode": DATABASE_MODE,
        "isl": int(isl),
        "osl": int(osl),
        "batch_size": batch,
        "tp_size": tp // adp,
        "pp_size": pp,
        "gemm_quant_mode": gemm,
        "kvcache_quant_mode": kv,
        "fmha_quant_mode": "bfloat16",
    }
    if moe:
        aic.update(attention_dp_size=adp, moe_tp_size=tp // ep, moe_ep_size=ep)
    elif adp != 1 or ep != 1:
        return None, "attention_dp / ep given for a dense model"
    return {"aic": aic, "replicas": replicas, "concurrency": int(conc)}, None


def scenario_jobs():
    jobs = []
    for key, label, arch, gpu, weights, isl, osl, conc in SCENARIOS:
        model_ref, gemm, _moe = _model_for(arch, weights)
        for tp, replicas in LAYOUTS:
            per_replica = conc // replicas
            aic = {
                "model": model_ref,
                "system": GPU_SYSTEMS[gpu],
                "mode": "agg",
                "backend_name": "vllm",
                "database_mode": DATABASE_MODE,
                "isl": isl,
                "osl": osl,
                "batch_size": per_replica,
                "tp_size": tp,
                "pp_size": 1,
                "gemm_quant_mode": gemm,
                "kvcache_quant_mode": "bfloat16",
                "fmha_quant_mode": "bfloat16",
            }
            heads = EMBEDDED_MODELS[arch]["num_attention_heads"]
            invalid = None
            if heads % tp:
                invalid = f"{heads} attention heads do not split over TP {tp} (vLLM refuses it too)"
            jobs.append(
                {
                    "scenario": key,
                    "layout": f"tp{tp}x{replicas}",
                    "tp": tp,
                    "replicas": replicas,
                    "job": {"aic": aic, "replicas": replicas, "concurrency": conc},
                    "invalid": invalid,
                    "spec": {
                        "model": label,
                        "arch": arch,
                        "gpu": gpu,
                        "gpus": 8,
                        "weights": weights,
                        "engine": "vllm",
                        "input_tokens": isl,
                        "output_tokens": osl,
                        "concurrency": conc,
                    },
                }
            )
    return jobs


def system_result(res: dict, replicas: int, concurrency: int) -> dict:
    """aiconfigurator's per-replica figures turned into whole-system ones."""
    if not res.get("ok"):
        return res
    out = dict(res)
    per = res.get("output_tokens_per_s_per_replica")
    out["output_tokens_per_s"] = None if per is None else per * replicas
    rps = res.get("requests_per_s_per_replica")
    out["requests_per_s"] = None if rps is None else rps * replicas
    out["replicas"] = replicas
    out["concurrency_total"] = concurrency
    return out


# --------------------------------------------------------------------------- comparison summary
def _rel(est, meas):
    if est is None or meas in (None, 0):
        return None
    return est / meas - 1.0


def compare_row(row: dict, res: dict) -> dict:
    m = row.get("measured") or {}
    out = {}
    if not res or not res.get("ok"):
        return out
    out["ttft"] = _rel(res.get("ttft_ms"), m.get("ttft_ms"))
    tpot_ref = m.get("tpot_ms")
    out["tpot_is_itl"] = tpot_ref is None and m.get("itl_ms") is not None
    out["tpot"] = _rel(res.get("tpot_ms"), tpot_ref if tpot_ref is not None else m.get("itl_ms"))
    meas_tput = m.get("output_tokens_per_s")
    out["throughput_from_per_gpu"] = False
    if meas_tput is None and m.get("output_tokens_per_s_per_gpu") is not None:
        meas_tput = m["output_tokens_per_s_per_gpu"] * row["gpus"]
        out["throughput_from_per_gpu"] = True
    out["throughput"] = _rel(res.get("output_tokens_per_s"), meas_tput)
    out["e2e"] = _rel(res.get("request_latency_ms"), m.get("mean_e2e_latency_ms"))
    return out


def _stats(values: list[tuple[str, float]]):
    if not values:
        return None
    absd = sorted(((abs(v), k, v) for k, v in values), key=lambda t: t[0])
    worst = absd[-1]
    return {
        "n": len(values),
        "median_abs": statistics.median(a for a, _, _ in absd),
        "worst_abs": worst[0],
        "worst_row": worst[1],
        "worst_signed": worst[2],
    }


def accuracy(rows: list[dict], cache_rows: dict) -> dict:
    groups: dict[str, dict[str, list]] = {}
    for row in rows:
        entry = cache_rows.get(row["id"]) or {}
        cmp_ = compare_row(row, entry.get("result") or {})
        if not cmp_:
            continue
        names = [
            "all",
            "held_out" if row.get("held_out") else "tuning",
            f"load:{row.get('load')}",
            f"source:{row['id'].split('-')[0]}",
        ]
        for g in names:
            bucket = groups.setdefault(g, {"ttft": [], "tpot": [], "throughput": [], "e2e": []})
            for metric in ("ttft", "tpot", "throughput", "e2e"):
                if cmp_.get(metric) is not None:
                    bucket[metric].append((row["id"], cmp_[metric]))
    return {g: {k: _stats(v) for k, v in b.items()} for g, b in groups.items()}


def rank_scenario(layouts: dict) -> list[dict]:
    ok = [(name, r) for name, r in layouts.items() if r.get("ok")]
    ok.sort(key=lambda t: -(t[1].get("output_tokens_per_s") or 0))
    ranking = [
        {
            "layout": n,
            "output_tokens_per_s": r["output_tokens_per_s"],
            "tokens_per_s_per_user": r.get("tokens_per_s_per_user"),
            "ttft_ms": r.get("ttft_ms"),
            "tpot_ms": r.get("tpot_ms"),
            "memory_gib_per_gpu": r.get("memory_gib_per_gpu"),
        }
        for n, r in ok
    ]
    for name, r in layouts.items():
        if not r.get("ok"):
            ranking.append(
                {
                    "layout": name,
                    "status": "invalid" if r.get("invalid") else ("OOM" if r.get("oom") else "error"),
                    "error": r.get("error"),
                }
            )
    return ranking


def print_summary(rows: list[dict], cache: dict) -> None:
    cache_rows = cache.get("rows", {})
    covered = [r for r in rows if (cache_rows.get(r["id"]) or {}).get("covered")]
    ok = [r for r in covered if (cache_rows[r["id"]].get("result") or {}).get("ok")]
    print(
        f"aiconfigurator {cache.get('aiconfigurator_version')} ({cache.get('database_mode')}): "
        f"{len(rows)} rows, {len(covered)} covered, {len(ok)} estimated, "
        f"{len(covered) - len(ok)} failed (OOM/error)"
    )
    print(f"{'row':58s} {'H':1s} {'TTFT ms meas/aic':>21s} {'TPOT ms meas/aic':>17s} {'out tok/s meas/aic':>21s}")
    for row in rows:
        entry = cache_rows.get(row["id"]) or {}
        res = entry.get("result") or {}
        m = row.get("measured") or {}
        if not entry.get("covered"):
            status = "not covered: " + (entry.get("reason") or "?")
            print(f"{row['id']:58s} {'H' if row.get('held_out') else ' '} {status[:80]}")
            continue
        if not res.get("ok"):
            print(f"{row['id']:58s} {'H' if row.get('held_out') else ' '} aic failed: {res.get('error', '')[:80]}")
            continue
        meas_tpot = m.get("tpot_ms") if m.get("tpot_ms") is not None else m.get("itl_ms")
        meas_tput = m.get("output_tokens_per_s")
        if meas_tput is None and m.get("output_tokens_per_s_per_gpu") is not None:
            meas_tput = m["output_tokens_per_s_per_gpu"] * row["gpus"]

        def pair(a, b, fmt):
            return f"{'-' if a is None else format(a, fmt)}/{'-' if b is None else format(b, fmt)}"

        line = (
            f"{row['id']:58s} {'H' if row.get('held_out') else ' '} "
            f"{pair(m.get('ttft_ms'), res.get('ttft_ms'), '.0f'):>21s} "
            f"{pair(meas_tpot, res.get('tpot_ms'), '.1f'):>17s} "
            f"{pair(meas_tput, res.get('output_tokens_per_s'), '.0f'):>21s}"
        )
        if m.get("mean_e2e_latency_ms") is not None:
            line += f"  e2e {pair(m['mean_e2e_latency_ms'], res.get('request_latency_ms'), '.0f')}"
        print(line)
    acc = cache.get("accuracy") or accuracy(rows, cache_rows)
    print("\n|error| = |aiconfigurator / measured - 1|")
    for group in sorted(acc):
        parts = []
        for metric in ("ttft", "tpot", "throughput", "e2e"):
            s = acc[group].get(metric)
            if s:
                parts.append(f"{metric} n={s['n']} median {s['median_abs']:.0%} worst {s['worst_abs']:.0%}")
        print(f"  {group:22s} " + "; ".join(parts))
    print()
    for key, sc in (cache.get("scenarios") or {}).items():
        print(f"scenario {key}")
        for rank in sc.get("ranking", []):
            if "status" in rank:
                print(f"    {rank['layout']:7s} {rank['status']}")
            else:
                print(
                    f"    {rank['layout']:7s} {rank['output_tokens_per_s']:8.0f} tok/s  "
                    f"{rank['tokens_per_s_per_user']:6.1f} tok/s/user  TTFT {rank['ttft_ms']:7.0f} ms  "
                    f"TPOT {rank['tpot_ms']:6.2f} ms  {rank['memory_gib_per_gpu']:5.1f} GiB/GPU"
                )


# --------------------------------------------------------------------------- main
def _display_path(path: Path) -> str:
    p = path.resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--venv",
        type=Path,
        default=DEFAULT_VENV,
        help="virtual environment holding aiconfigurator (default: .venv-aic in the repo)",
    )
    ap.add_argument("--python", default=sys.executable, help="interpreter used to create the venv")
    ap.add_argument("--measurements", type=Path, default=MEASUREMENTS)
    ap.add_argument("--output", type=Path, default=RESULTS)
    ap.add_argument("--refresh", action="store_true", help="re-run every entry, ignoring the cache")
    ap.add_argument("--summary-only", action="store_true", help="print the cached results; run nothing")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds for the whole runner")
    args = ap.parse_args(argv)

    rows = load_rows(args.measurements)
    cache = {}
    if args.output.exists():
        cache = json.loads(args.output.read_text())
        if cache.get("aiconfigurator_version") != AIC_VERSION or cache.get("database_mode") != DATABASE_MODE:
            cache = {}
    if args.summary_only:
        if not cache:
            sys.exit(f"no cache at {args.output}")
        print_summary(rows, cache)
        return 0
    if args.refresh:
        cache = {}
    cache_rows = cache.get("rows", {})
    cache_sc = cache.get("scenarios", {})

    new_rows, jobs = {}, []
    for row in rows:
        job, reason = row_job(row)
        old = cache_rows.get(row["id"])
        if job is None:
            new_rows[row["id"]] = {"covered": False, "reason": reason, "inputs": None, "result": None}
            continue
        if old and old.get("inputs") == job and (old.get("result") or {}).get("estimate_seconds") is not None:
            new_rows[row["id"]] = old
            continue
        new_rows[row["id"]] = {"covered": True, "reason": None, "inputs": job, "result": None}
        jobs.append({"key": "row:" + row["id"], "aic": job["aic"]})

    sjobs = scenario_jobs()
    new_sc: dict[str, dict] = {}
    for sj in sjobs:
        sc = new_sc.setdefault(sj["scenario"], {"spec": sj["spec"], "layouts": {}, "ranking": []})
        old = ((cache_sc.get(sj["scenario"]) or {}).get("layouts") or {}).get(sj["layout"])
        if sj["invalid"]:
            sc["layouts"][sj["layout"]] = {
                "ok": False,
                "invalid": True,
                "error": sj["invalid"],
                "inputs": sj["job"],
                "tp": sj["tp"],
                "replicas": sj["replicas"],
            }
        elif old and old.get("inputs") == sj["job"] and "ok" in old:
            sc["layouts"][sj["layout"]] = old
        else:
            sc["layouts"][sj["layout"]] = {"inputs": sj["job"], "tp": sj["tp"], "replicas": sj["replicas"]}
            jobs.append({"key": f"sc:{sj['scenario']}|{sj['layout']}", "aic": sj["job"]["aic"]})

    meta = {
        "aiconfigurator": cache.get("aiconfigurator_version"),
        "aiconfigurator_core": cache.get("aiconfigurator_core_version"),
        "python": cache.get("aic_python"),
    }
    if jobs:
        py = ensure_venv(args.venv.resolve(), args.python)
        print(f"[aic] running {len(jobs)} estimate(s) with {py}", file=sys.stderr)
        results, meta_new = run_jobs(py, jobs, args.timeout)
        meta = meta_new or meta
        for key, res in results.items():
            if key.startswith("row:"):
                rid = key[4:]
                entry = new_rows[rid]
                entry["result"] = system_result(res, entry["inputs"]["replicas"], entry["inputs"]["concurrency"])
            else:
                skey, layout = key[3:].split("|")
                entry = new_sc[skey]["layouts"][layout]
                inputs = entry["inputs"]
                entry.update(system_result(res, inputs["replicas"], inputs["concurrency"]))
        missing = [j["key"] for j in jobs if j["key"] not in results]
        if missing:
            print(f"[aic] {len(missing)} estimate(s) did not finish: {missing[:5]} ...", file=sys.stderr)
    for sc in new_sc.values():
        sc["ranking"] = rank_scenario({k: v for k, v in sc["layouts"].items() if "ok" in v})

    versions: dict[str, dict[str, str]] = {}
    for entry in list(new_rows.values()) + [lay for sc in new_sc.values() for lay in sc["layouts"].values()]:
        res = entry.get("result") if "result" in entry else entry
        inputs = entry.get("inputs") or {}
        if res and res.get("ok") and inputs:
            a = inputs["aic"]
            versions.setdefault(a["system"], {})[a["backend_name"]] = res.get("backend_version")

    out = {
        "schema": SCHEMA,
        "about": (
            "aiconfigurator reference estimates for benchmarks/data/serving_measurements.yaml rows "
            "(keyed by row id) and for the R1-distill TP x replicas ranking scenarios (keyed by "
            "scenario, then layout tp<TP>x<replicas>). Written by benchmarks/aiconfigurator_reference.py; "
            "a cache: the accuracy benchmark reads it instead of re-running the simulator."
        ),
        "aiconfigurator_version": meta.get("aiconfigurator", AIC_VERSION),
        "aiconfigurator_core_version": meta.get("aiconfigurator_core"),
        "aic_python": meta.get("python"),
        "database_mode": DATABASE_MODE,
        "backend_versions": versions,
        "backend_version_rule": "backend_version=None: the 'current' slot of each system's database",
        "generated_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "measurements": _display_path(args.measurements),
        "units": {
            "*_ms": "milliseconds",
            "output_tokens_per_s": "output tokens/s of the whole system "
            "(per replica x replicas); aiconfigurator counts osl-1 tokens per request (the first token "
            "comes from prefill)",
            "tokens_per_s_per_user": "1000 / TPOT",
            "memory_gib_per_gpu": "aiconfigurator's memory estimate, GiB per GPU",
        },
        "mapping": (
            "GPU: H100 80GB HBM3->h100_sxm, H200->h200_sxm, A100 80GB SXM->a100_sxm, L40S->l40s. "
            "Engine: vllm, sglang, tensorrt-llm->trtllm. Concurrency split evenly over replicas, then "
            "over attention-DP ranks (batch_size per rank). tp_size = tp / attention_dp; MoE: "
            "moe_tp = tp / ep, moe_ep = ep. KV cache bf16 unless the row says fp8 (engines' 'auto' "
            "with bf16 activations); FMHA bf16. bf16 rows: gemm bfloat16; fp8 rows: FP8 checkpoints "
            "(DeepSeek-R1, Qwen3-32B-FP8) use their own block-FP8 config, Qwen3-14B-FP8 fp8_block, "
            "R1-distill fp8 = engine-side per-tensor fp8. Mode agg; static for load: static-batch. "
            "Models: DeepSeek-R1 and Qwen3-32B(-FP8) bundled with aiconfigurator; R1-distill bases "
            "and Qwen3-14B from the configs embedded in the script."
        ),
        "rows": new_rows,
        "scenarios": new_sc,
    }
    out["accuracy"] = accuracy(rows, new_rows)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=1, sort_keys=False) + "\n")
    tmp.replace(args.output)
    print(f"[aic] wrote {args.output}", file=sys.stderr)
    print_summary(rows, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
