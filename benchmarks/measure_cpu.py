#!/usr/bin/env python3
"""Real llama.cpp (xllamacpp, as Xinference 4.1 runs it) on this machine's CPU, to check the
CPU serving model (xinf_planner/core/serving/decode.py) against measurements.

The model: random weights in the real shape of DeepSeek-R1-Distill-Qwen-1.5B (Qwen2: 28 layers,
hidden 1536, MLP 8960, 12 query heads, 2 KV heads, head_dim 128, vocab 151936, untied output,
q/k/v biases), written as GGUF offline with gguf-py, so every matrix product, the output layer
over the full 151936-token vocabulary and the KV cache cost what they cost in the real model.
Only the weights' values are fake (speed does not depend on them). The tokenizer is a small
byte-level BPE trained here, padded to the real vocabulary with unused ``[PAD{i}]`` tokens the
way convert_hf_to_gguf.py pads Qwen2, and the R1 special tokens at their real ids.

Quantisation: gguf-py quantises only the simple types; the K-quants are quantised with
llama.cpp's own ``ggml_quantize_chunk``, exported by the xllamacpp extension module (called
through ctypes). xllamacpp exposes no ``llama_model_quantize``, so the Q4_K_M mix is applied here
as llama.cpp's llama_tensor_get_type applies it: Q4_K everywhere, Q6_K for output.weight and
for attn_v/ffn_down of the "use_more_bits" layers (14 of 28), norms and biases F32. The output
states the tensor types the files really hold (read back with gguf.GGUFReader). Built files are
cached under --cache.

Serving: one xllamacpp ``Server`` per (quantisation, context per slot), built as Xinference's
llama_cpp/core.py builds it: CommonParams with the model path, use_jinja, n_parallel (Xinference:
min(8, cpu_count)), n_ctx = context per slot x n_parallel (Xinference's map_context_length for a
launch with context_length), n_threads for both cpuparams and cpuparams_batch (Xinference:
os.cpu_count()); use_mmap/use_mlock are tried as Xinference tries them (this xllamacpp has no
such attributes: Xinference logs the failure and goes on, and so does this script). n_gpu_layers
is 0 (a CPU measurement; the same as Xinference's -1 on a host without a GPU). Requests go
through ``Server.handle_completions`` (what Xinference's generate() calls) with the prompt as
token ids, greedy (temperature 0), a fixed max_tokens, ignore_eos, cache_prompt false and a
fresh random prompt each time, so that no prompt cache helps.

Measured, each ``--reps`` times (median reported), in a child process per server (killed when
the time budget runs out; the rows done so far are kept):
  decode  concurrency 1 and 2 (2 requests at once: per sequence and aggregate), 32-token prompt
  prefill a ~512 and a ~2000 token prompt, concurrency 1 (its decode rate, at that depth, too)
Decode and prefill rates are llama.cpp's own timings (the server's ``timings``); the aggregate
of concurrent requests is total tokens over the wall time of their common decode.

Also measured: this host's memory read bandwidth (xinf_planner/shell/probe/bandwidth.py) and
the bandwidth llama.cpp achieved in decode: tokens/s x bytes read per token (GGUF tensor bytes
without token_embd, which is a row lookup, plus the f16 KV cache of the context at mid-decode),
and their ratio: the "bandwidth efficiency" of constants.yaml for llama.cpp on CPU.

Run:  python benchmarks/measure_cpu.py            # full: Q4_K_M + Q8_0, n_ctx 4096 + 8192 per slot
      python benchmarks/measure_cpu.py --quick    # under a minute or two once the models are cached
      python benchmarks/measure_cpu.py --quants Q4_K_M,Q8_0,F16 --budget-s 3600 --out FILE
The first run builds the GGUFs (about a minute each on 2 cores; Q4_K_M ~1.1 GB, Q8_0 ~1.9 GB,
F16 ~3.6 GB on disk).
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUILDER_VERSION = 1  # bump when the files this script writes change
DEFAULT_CACHE = Path("/work/scratch/cpu-models")
DEFAULT_OUT = ROOT / "benchmarks" / "data" / "cpu_measured.json"
DECODE_PROMPT_TOKENS = 32
# a measurement in which the server got less CPU than this share of its threads' time ran beside
# other work: llama.cpp's threads wait for each other at every op, so its speed then collapses
CONTENDED_SHARE = 0.85


@dataclass(frozen=True)
class Shape:
    """DeepSeek-R1-Distill-Qwen-1.5B (config.json of the HF repo)."""

    name: str = "deepseek-r1-distill-qwen-1.5b (random weights)"
    architecture: str = "qwen2"
    num_layers: int = 28
    hidden_size: int = 1536
    intermediate_size: int = 8960
    num_heads: int = 12
    num_kv_heads: int = 2
    head_dim: int = 128
    vocab_size: int = 151936
    tie_word_embeddings: bool = False
    rope_theta: float = 10000.0
    rms_eps: float = 1e-6
    context_length: int = 131072
    bos_id: int = 151646
    eos_id: int = 151643

    def kv_bytes_per_token(self, bytes_per_value: int = 2) -> int:
        """K and V of one token in every layer (llama.cpp's f16 cache)."""
        return self.num_layers * 2 * self.num_kv_heads * self.head_dim * bytes_per_value


SHAPE = Shape()
# Special tokens of the R1 distills at their ids in tokenizer.json (the rest of 151643..151935
# is padding, like the real file's unused tail).
SPECIAL_IDS = {
    "<｜end▁of▁sentence｜>": 151643,
    "<｜User｜>": 151644,
    "<｜Assistant｜>": 151645,
    "<｜begin▁of▁sentence｜>": 151646,
    "<|EOT|>": 151647,
    "<think>": 151648,
    "</think>": 151649,
}
_CORPUS = [
    "The quick brown fox jumps over the lazy dog. " * 4,
    "Deploying a language model needs memory for weights and for the KV cache. ",
    "Hello, how are you? I am fine, thank you. Let me think about it step by step. ",
    "0123456789 + - * / = ( ) [ ] { } < > | : ; , . ! ? ' \" ",
    "def main():\n    return 42\n",
    "Prefill reads the prompt in batches; decode reads every weight once per step. ",
]
QUANTS = ("Q4_K_M", "Q8_0", "F16")


# ----------------------------------------------------------------------------- model building


def build_vocab(shape: Shape = SHAPE) -> tuple[list[str], list[int], list[str], int]:
    """(tokens, token types, merges, number of trained tokens) padded to the real vocab size."""
    import gguf
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    vocab = tok.get_vocab()
    n_trained = len(vocab)
    tokens = [f"[PAD{i}]" for i in range(shape.vocab_size)]
    types = [int(gguf.TokenType.UNUSED)] * shape.vocab_size
    for text, idx in vocab.items():
        tokens[idx] = text
        types[idx] = int(gguf.TokenType.NORMAL)
    for text, idx in SPECIAL_IDS.items():
        tokens[idx] = text
        types[idx] = int(gguf.TokenType.CONTROL)
    merges = json.loads(tok.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    return tokens, types, merges, n_trained


def _use_more_bits(i_layer: int, n_layers: int) -> bool:
    """llama.cpp llama-quant.cpp: the layers that get more bits in the _M mixes."""
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def tensor_type(name: str, layer: int | None, quant: str, shape: Shape = SHAPE):
    """GGML type of a 2-D tensor under ``quant`` (llama_tensor_get_type for these cases)."""
    from gguf import GGMLQuantizationType as T

    if quant == "F16":
        return T.F16
    if quant == "Q8_0":
        return T.Q8_0
    if quant == "Q4_K_M":
        if name == "output.weight":
            return T.Q6_K
        if (
            layer is not None
            and name.endswith(("attn_v.weight", "ffn_down.weight"))
            and _use_more_bits(layer, shape.num_layers)
        ):
            return T.Q6_K
        return T.Q4_K
    raise ValueError(f"unknown quantization {quant}")


def tensor_plan(shape: Shape = SHAPE) -> list[tuple[str, tuple[int, ...], int | None]]:
    """(name, numpy shape (rows, columns), layer) of every tensor, in file order."""
    h, ff = shape.hidden_size, shape.intermediate_size
    q, kv = shape.num_heads * shape.head_dim, shape.num_kv_heads * shape.head_dim
    out = [("token_embd.weight", (shape.vocab_size, h), None)]
    for i in range(shape.num_layers):
        p = f"blk.{i}."
        out += [
            (p + "attn_norm.weight", (h,), i),
            (p + "attn_q.weight", (q, h), i),
            (p + "attn_q.bias", (q,), i),
            (p + "attn_k.weight", (kv, h), i),
            (p + "attn_k.bias", (kv,), i),
            (p + "attn_v.weight", (kv, h), i),
            (p + "attn_v.bias", (kv,), i),
            (p + "attn_output.weight", (h, q), i),
            (p + "ffn_norm.weight", (h,), i),
            (p + "ffn_gate.weight", (ff, h), i),
            (p + "ffn_up.weight", (ff, h), i),
            (p + "ffn_down.weight", (h, ff), i),
        ]
    out += [("output_norm.weight", (h,), None), ("output.weight", (shape.vocab_size, h), None)]
    return out


class _GgmlQuantizer:
    """llama.cpp's ggml_quantize_chunk from the xllamacpp extension module, through ctypes."""

    def __init__(self, threads: int):
        import xllamacpp

        so = next(Path(xllamacpp.__file__).parent.glob("xllamacpp*.so"))
        lib = ctypes.CDLL(str(so))
        f = lib.ggml_quantize_chunk
        f.restype = ctypes.c_size_t
        f.argtypes = [
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_void_p,
        ]
        self._f = f
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads))
        self.threads = max(1, threads)

    def __call__(self, x, qtype):
        import gguf
        import numpy as np

        rows, n_per_row = x.shape
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        assert n_per_row % block == 0, (qtype, x.shape)
        row_bytes = n_per_row // block * type_size
        out = np.empty((rows, row_bytes), dtype=np.uint8)
        step = max(1, -(-rows // (self.threads * 4)))

        def chunk(r0: int) -> int:
            n = min(step, rows - r0)
            # src and dst both point at the chunk's first row; start 0 (it only offsets them)
            return self._f(int(qtype), x[r0].ctypes.data, out[r0].ctypes.data, 0, n, n_per_row, None)

        written = sum(self._pool.map(chunk, range(0, rows, step)))
        assert written == out.nbytes, (written, out.nbytes)
        return out


def build_gguf(path: Path, quant: str, shape: Shape = SHAPE, seed: int = 0, threads: int = 2) -> Path:
    """Write the random-weight GGUF (streamed, tensor by tensor) to ``path`` atomically."""
    import gguf
    import numpy as np

    tokens, types, merges, _ = build_vocab(shape)
    tmp = path.with_suffix(".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(tmp), shape.architecture)
    w.add_name(f"{shape.name} {quant}")
    ftype = {
        "F16": gguf.LlamaFileType.MOSTLY_F16,
        "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        "Q4_K_M": gguf.LlamaFileType.MOSTLY_Q4_K_M,
    }[quant]
    w.add_file_type(ftype)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(shape.context_length)
    w.add_embedding_length(shape.hidden_size)
    w.add_block_count(shape.num_layers)
    w.add_feed_forward_length(shape.intermediate_size)
    w.add_head_count(shape.num_heads)
    w.add_head_count_kv(shape.num_kv_heads)
    w.add_rope_freq_base(shape.rope_theta)
    w.add_layer_norm_rms_eps(shape.rms_eps)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(shape.bos_id)
    w.add_eos_token_id(shape.eos_id)
    w.add_add_bos_token(True)

    plan = tensor_plan(shape)
    kinds = {}
    for name, shp, layer in plan:
        if len(shp) == 1:
            kinds[name] = None
            w.add_tensor_info(name, shp, np.dtype(np.float32), shp[0] * 4)
            continue
        qt = tensor_type(name, layer, quant, shape)
        kinds[name] = qt
        if qt == gguf.GGMLQuantizationType.F16:
            w.add_tensor_info(name, shp, np.dtype(np.float16), shp[0] * shp[1] * 2)
        else:
            block, type_size = gguf.GGML_QUANT_SIZES[qt]
            byte_shape = (shp[0], shp[1] // block * type_size)
            w.add_tensor_info(name, byte_shape, np.dtype(np.uint8), byte_shape[0] * byte_shape[1], raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()

    quantize = _GgmlQuantizer(threads)
    for name, shp, _layer in plan:
        # a seed per tensor: the same bytes on every build, whatever is built before
        rng = np.random.default_rng([seed, int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)])
        if len(shp) == 1:
            data = (
                np.ones(shp, np.float32)
                if name.endswith("norm.weight")
                else rng.uniform(-0.02, 0.02, shp).astype(np.float32)
            )
            w.write_tensor_data(data)
            continue
        x = rng.random(shp, dtype=np.float32)
        x -= 0.5
        x *= 0.07  # uniform, standard deviation ~0.02
        qt = kinds[name]
        if qt == gguf.GGMLQuantizationType.F16:
            w.write_tensor_data(x.astype(np.float16))
        else:
            w.write_tensor_data(quantize(x, qt))
        del x
    w.close()
    os.replace(tmp, path)
    return path


def gguf_summary(path: Path) -> dict:
    """Tensor types and bytes the file really holds (gguf.GGUFReader)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    types: dict[str, int] = {}
    by_part = {"token_embd": 0, "output": 0, "layers": 0, "other": 0}
    total = 0
    for t in reader.tensors:
        tname = gguf.GGMLQuantizationType(t.tensor_type).name
        types[tname] = types.get(tname, 0) + 1
        nbytes = int(t.n_bytes)
        total += nbytes
        if t.name == "token_embd.weight":
            by_part["token_embd"] += nbytes
        elif t.name == "output.weight":
            by_part["output"] += nbytes
        elif t.name.startswith("blk."):
            by_part["layers"] += nbytes
        else:
            by_part["other"] += nbytes
    return {
        "file_bytes": path.stat().st_size,
        "tensor_bytes": total,
        "tensor_types": types,
        "bytes_by_part": by_part,
        "weight_bytes_read_per_token": total - by_part["token_embd"],
    }


def model_path(cache: Path, quant: str) -> Path:
    return cache / f"r1-distill-qwen-1.5b-shape-random-{quant}-b{BUILDER_VERSION}.gguf"


def ensure_model(cache: Path, quant: str, threads: int, log=print) -> Path:
    path = model_path(cache, quant)
    if path.exists():
        log(f"model {quant}: cached {path}")
        return path
    t0 = time.perf_counter()
    log(f"model {quant}: building {path} ...")
    build_gguf(path, quant, threads=threads)
    log(f"model {quant}: built in {time.perf_counter() - t0:.0f} s")
    return path


# ----------------------------------------------------------------------------- the server (child)


def make_server(path: str, n_ctx_per_slot: int, n_parallel: int, threads: int):
    """An xllamacpp Server built as Xinference 4.1's llama_cpp/core.py builds it."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    try:
        params.model = path
    except Exception:
        params.model.path = path
    params.use_jinja = True
    params.n_parallel = n_parallel
    failed = []
    # Xinference's config: n_ctx (context_length x n_parallel), use_mmap False, use_mlock True,
    # n_gpu_layers (here 0: CPU), each set with setattr and a logged error when it fails
    for key, value in (
        ("n_ctx", n_ctx_per_slot * n_parallel),
        ("use_mmap", False),
        ("use_mlock", True),
        ("n_gpu_layers", 0),
    ):
        try:
            setattr(params, key, value)
        except Exception as exc:
            failed.append(f"{key}={value}: {exc}")
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    name = lambda v: getattr(v, "name", str(v))  # noqa: E731
    info = {
        "n_ctx": params.n_ctx,
        "n_parallel": params.n_parallel,
        "n_batch": params.n_batch,
        "n_ubatch": params.n_ubatch,
        "flash_attn_type": name(params.flash_attn_type),
        "cache_type_k": name(params.cache_type_k),
        "cache_type_v": name(params.cache_type_v),
        "kv_unified": params.kv_unified,
        "cont_batching": params.cont_batching,
        "load_mode": name(params.load_mode),
        "cache_ram_mib": params.cache_ram_mib,
        "params_not_set": failed,
    }
    return xllamacpp.Server(params), info


def _completion(server, prompt: list[int], max_tokens: int) -> dict:
    out: list = []
    t0 = time.perf_counter()
    server.handle_completions(
        {
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "ignore_eos": True,
            "cache_prompt": False,
            "stream": False,
            "seed": 0,
        },
        out.append,
    )
    t1 = time.perf_counter()
    res = out[-1] if out else {}
    if isinstance(res, list):
        res = res[-1]
    if not isinstance(res, dict) or "timings" not in res:
        raise RuntimeError(f"bad response: {str(res)[:300]}")
    tm = res["timings"]
    return {
        "t_start": t0,
        "t_end": t1,
        "prompt_n": tm["prompt_n"],
        "prompt_ms": tm["prompt_ms"],
        "cache_n": tm.get("cache_n", 0),
        "predicted_n": tm["predicted_n"],
        "predicted_ms": tm["predicted_ms"],
        "finish_reason": (res.get("choices") or [{}])[0].get("finish_reason"),
    }


def _concurrent(server, prompts: list[list[int]], max_tokens: int) -> list[dict]:
    results: list = [None] * len(prompts)
    errors: list = []
    go = threading.Barrier(len(prompts))

    def one(i):
        try:
            go.wait()
            results[i] = _completion(server, prompts[i], max_tokens)
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    return results


def _process_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _loadavg1() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def child_main(cfg: dict) -> None:
    """Serve one model and print one JSON line per measurement (stdout), until done or deadline."""
    import random

    deadline = time.time() + cfg["time_left_s"]
    emit = lambda obj: print(json.dumps(obj), flush=True)  # noqa: E731
    t0 = time.perf_counter()
    server, info = make_server(cfg["model"], cfg["n_ctx_per_slot"], cfg["n_parallel"], cfg["threads"])
    info["load_s"] = time.perf_counter() - t0
    emit({"kind": "server", **info})
    rnd = random.Random(cfg["seed"])
    n_trained = cfg["n_trained_tokens"]

    def prompt(n: int) -> list[int]:
        return [rnd.randrange(0, n_trained) for _ in range(n)]

    _completion(server, prompt(16), 8)  # warm-up (not reported)
    jobs = []
    for rep in range(cfg["reps"]):
        for c in cfg["concurrency"]:
            jobs.append(("decode", rep, c, DECODE_PROMPT_TOKENS))
        for p in cfg["prompts"]:
            jobs.append(("prefill", rep, 1, p))
    last: dict = {}
    for kind, rep, c, p in jobs:
        expected = last.get((kind, c, p), 0.0)
        if time.time() + expected * 1.2 > deadline:
            emit(
                {
                    "kind": "skipped",
                    "what": kind,
                    "rep": rep,
                    "concurrency": c,
                    "prompt_tokens": p,
                    "why": "time budget",
                }
            )
            continue
        w0, cpu0, load0 = time.perf_counter(), _process_cpu_s(), _loadavg1()
        try:
            res = _concurrent(server, [prompt(p) for _ in range(c)], cfg["max_tokens"])
        except Exception as exc:
            emit({"kind": "error", "what": kind, "rep": rep, "concurrency": c, "error": repr(exc)})
            continue
        wall = time.perf_counter() - w0
        last[(kind, c, p)] = wall
        # CPU seconds this process got per wall second, against the threads it runs: under 1 means
        # other work took the cores (llama.cpp's threads wait for each other at every op)
        share = (_process_cpu_s() - cpu0) / wall / cfg["threads"] if wall > 0 else None
        emit(
            {
                "kind": kind,
                "rep": rep,
                "concurrency": c,
                "prompt_tokens": p,
                "requests": res,
                "wall_s": wall,
                "cpu_share": share,
                "load1": [load0, _loadavg1()],
            }
        )
    del server


# ----------------------------------------------------------------------------- analysis (parent)


def _decode_rates(requests: list[dict]) -> tuple[float, float]:
    """(mean per-sequence tok/s, aggregate tok/s over the common decode wall time)."""
    per_seq = [r["predicted_n"] / (r["predicted_ms"] / 1e3) for r in requests if r["predicted_ms"] > 0]
    if len(requests) == 1:
        return per_seq[0], per_seq[0]
    # decode of all requests runs from the last prompt's end to the last request's end
    start = max(r["t_start"] + r["prompt_ms"] / 1e3 for r in requests)
    end = max(r["t_end"] for r in requests)
    tokens = sum(r["predicted_n"] for r in requests)
    aggregate = tokens / (end - start) if end > start else sum(per_seq)
    return statistics.mean(per_seq), aggregate


def summarise(records: list[dict], common: dict, model_info: dict, bw: dict | None) -> list[dict]:
    groups: dict = {}
    for rec in records:
        key = (rec["kind"], rec["concurrency"], rec["prompt_tokens"])
        groups.setdefault(key, []).append(rec)
    rows = []
    kv_tok = SHAPE.kv_bytes_per_token()
    weights = model_info["weight_bytes_read_per_token"]
    bw_all = (bw or {}).get("gbps_all_threads")
    bw_one = (bw or {}).get("gbps_1_thread")
    # the probe's figure for as many threads as the server ran (1, or all the probe's threads)
    threads = common.get("threads", 1)
    bw_same = bw_one if threads == 1 else bw_all if threads >= (bw or {}).get("threads", 1 << 30) else None
    for (kind, c, p), recs in sorted(groups.items(), key=lambda kv: (kv[0][0] != "decode", kv[0][1], kv[0][2])):
        prefill, per_seq, agg, out_n = [], [], [], []
        for rec in recs:
            reqs = rec["requests"]
            ps, ag = _decode_rates(reqs)
            per_seq.append(ps)
            agg.append(ag)
            out_n.append(statistics.mean(r["predicted_n"] for r in reqs))
            pre = [r["prompt_n"] / (r["prompt_ms"] / 1e3) for r in reqs if r["prompt_ms"] > 0]
            if pre:
                prefill.append(statistics.mean(pre))
        med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
        out_tokens = med(out_n)
        mid_context = p + (out_tokens or 0) / 2
        kv_read = kv_tok * mid_context
        # a step reads the weights once and every sequence's KV; aggregate/c steps per second
        step_bytes = weights + c * kv_read
        achieved = med(agg) / c * step_bytes / 1e9 if med(agg) else None
        rows.append(
            {
                **common,
                "measurement": kind,
                "concurrency": c,
                "prompt_tokens": p,
                "output_tokens": out_tokens,
                "reps": len(recs),
                "prefill_tok_s": med(prefill) if kind == "prefill" else None,
                "prefill_tok_s_reps": prefill if kind == "prefill" else None,
                "decode_tok_s_per_seq": med(per_seq),
                "decode_tok_s_aggregate": med(agg),
                "decode_tok_s_per_seq_reps": per_seq,
                "decode_tok_s_aggregate_reps": agg,
                "cpu_share_min": min((rec.get("cpu_share") or 0.0) for rec in recs),
                "contended": min((rec.get("cpu_share") or 0.0) for rec in recs) < CONTENDED_SHARE,
                "load1_max": max((x for rec in recs for x in (rec.get("load1") or []) if x is not None), default=None),
                "cache_n_max": max(r.get("cache_n", 0) for rec in recs for r in rec["requests"]),
                "finish_reasons": sorted({r["finish_reason"] for rec in recs for r in rec["requests"]} - {None}),
                "bytes_per_step": step_bytes,
                "kv_bytes_read_per_seq": kv_read,
                "llama_achieved_gbps": achieved,
                "ratio_to_probe_all_threads": achieved / bw_all if achieved and bw_all else None,
                "ratio_to_probe_1_thread": achieved / bw_one if achieved and bw_one else None,
                "probe_gbps_same_threads": bw_same,
                "ratio_to_probe_same_threads": achieved / bw_same if achieved and bw_same else None,
            }
        )
    return rows


def _cpu_facts() -> dict:
    try:
        from xinf_planner.shell.probe.cpu import probe_linux_cpu

        facts = probe_linux_cpu()
        return {
            "cpu_model": facts.get("cpu_model"),
            "cores": facts.get("cpu_cores"),
            "memory_total_bytes": facts.get("memory_total_bytes"),
        }
    except Exception:
        model = None
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        return {"cpu_model": model or platform.processor() or None, "cores": os.cpu_count()}


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return sorted(
                    f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8") if f in have
                )
    except OSError:
        pass
    return []


def _fmt(x, spec=".1f") -> str:
    return "-" if x is None else format(x, spec)


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'quant':7} {'ctx/slot':>8} {'thr':>3} {'par':>3} {'conc':>4} {'what':7} {'prompt':>6} {'out':>4} "
        f"{'prefill':>8} {'dec/seq':>8} {'dec agg':>8} {'GB/s':>6} {'eff':>5} {'cpu':>5} {'load':>5}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['quant']:7} {r['n_ctx_per_slot']:>8} {r['threads']:>3} {r['n_parallel']:>3} {r['concurrency']:>4} "
            f"{r['measurement']:7} {r['prompt_tokens']:>6} {_fmt(r['output_tokens'], '.0f'):>4} "
            f"{_fmt(r['prefill_tok_s']):>8} {_fmt(r['decode_tok_s_per_seq']):>8} "
            f"{_fmt(r['decode_tok_s_aggregate']):>8} {_fmt(r['llama_achieved_gbps']):>6} "
            f"{_fmt(r['ratio_to_probe_same_threads'], '.2f'):>5} {_fmt(r['cpu_share_min'], '.2f'):>5} "
            f"{_fmt(r['load1_max'], '.1f'):>5}{' !' if r.get('contended') else ''}"
        )
    print(
        "prefill / dec: tok/s (median of reps); GB/s: decode tok/s x bytes per step / steps; "
        "eff: that / the probe's GB/s for as many threads (1, or all);\n"
        "cpu: least CPU share the server got (1 = all its threads ran all the time); "
        f"load: highest 1-min load average seen; !: contended (cpu < {CONTENDED_SHARE}), not a clean figure"
    )


def run_child(cfg: dict, log_path: Path, timeout_s: float) -> tuple[list[dict], str | None]:
    """Run one server in a child process; return its records and a note if it was cut short."""
    records, note = [], None
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(cfg)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        killer = threading.Timer(timeout_s, proc.kill)
        killer.start()
        try:
            for line in proc.stdout:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass
            proc.wait()
        finally:
            killer.cancel()
    if proc.returncode:
        note = f"child exited with {proc.returncode} (log {log_path})" + (
            " after the time budget ran out" if proc.returncode < 0 else ""
        )
    return records, note


def _log_facts(log_path: Path) -> dict:
    """A few lines of llama.cpp's log that tell how it ran."""
    facts = {}
    try:
        for line in log_path.read_text(errors="replace").splitlines():
            for key, marker in (
                ("slots_line", "n_slots ="),
                ("flash_attn_line", "flash_attn"),
                ("repack_line", "REPACK"),
                ("kv_line", "KV buffer size"),
                ("mlock_line", "mlock"),
            ):
                if marker in line and key not in facts:
                    facts[key] = line.split(" I ", 1)[-1].split(" W ", 1)[-1].strip()[:200]
    except OSError:
        pass
    return facts


def _serve_and_measure(
    args,
    q: str,
    n: int,
    threads: int,
    model: tuple[Path, dict],
    conc: list[int],
    prompts: list[int],
    n_trained: int,
    left: float,
    host: dict,
    bw: dict,
    notes: list[str],
) -> list[dict]:
    path, summary = model
    cfg = {
        "model": str(path),
        "n_ctx_per_slot": n,
        "n_parallel": args.parallel,
        "threads": threads,
        "concurrency": conc,
        "prompts": prompts,
        "max_tokens": args.max_tokens,
        "reps": args.reps,
        "seed": zlib.crc32(f"{q}-{n}-{threads}".encode()),
        "time_left_s": left - 10,
        "n_trained_tokens": n_trained,
    }
    log_path = args.cache / f"server-{q}-{n}-t{threads}.log"
    print(f"serving {q}, {n} per slot x {args.parallel} slots, {threads} threads ({left:.0f} s left) ...", flush=True)
    records, note = run_child(cfg, log_path, timeout_s=left)
    tag = f"{q} ctx {n} threads {threads}"
    if note:
        notes.append(f"{tag}: {note}")
    server = next((r for r in records if r["kind"] == "server"), {})
    for r in records:
        if r["kind"] in ("error", "skipped"):
            notes.append(f"{tag}: {r}")
    common = {
        "model_shape": asdict(SHAPE),
        "quant": q,
        "gguf": summary,
        "n_ctx_per_slot": n,
        "n_ctx": n * args.parallel,
        "n_parallel": args.parallel,
        "threads": threads,
        "server": {**server, **_log_facts(log_path)},
        **host,
        "memory_bandwidth": bw,
    }
    new = summarise([r for r in records if r["kind"] in ("decode", "prefill")], common, summary, bw)
    print_table(new)
    return new


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quants", default="Q4_K_M,Q8_0", help=f"comma list of {', '.join(QUANTS)}")
    ap.add_argument("--ctx", default="4096,8192", help="context per slot (n_ctx = this x n_parallel)")
    ap.add_argument(
        "--parallel",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="n_parallel (slots); default as Xinference: min(8, cpu_count)",
    )
    ap.add_argument("--concurrency", default=None, help="comma list; default 1,2 (at most --parallel)")
    ap.add_argument(
        "--threads",
        default=str(os.cpu_count() or 1),
        help="n_threads, a comma list (a server each); default as Xinference: os.cpu_count()",
    )
    ap.add_argument("--prompts", default="512,2000", help="prefill prompt lengths (tokens)")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument(
        "--budget-s",
        type=float,
        default=1800.0,
        help="wall-time bound of the measurements (model building, done once, not counted)",
    )
    ap.add_argument("--bandwidth-budget-s", type=float, default=1.0)
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: Q4_K_M, 4096 per slot, 512-token prompt, 32 tokens, 1 rep, 150 s",
    )
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child_main(json.loads(args.child))
        return 0
    if args.quick:
        args.quants, args.ctx, args.prompts, args.max_tokens, args.reps = "Q4_K_M", "4096", "512", 32, 1
        args.budget_s = min(args.budget_s, 150.0)
    quants = [q.strip().upper() for q in args.quants.split(",") if q.strip()]
    for q in quants:
        if q not in QUANTS:
            ap.error(f"unknown quant {q}; known: {', '.join(QUANTS)}")
    ctxs = [int(x) for x in args.ctx.split(",")]
    thread_counts = [int(x) for x in str(args.threads).split(",") if x.strip()]
    prompts = [int(x) for x in args.prompts.split(",") if x.strip()]
    conc = [int(x) for x in args.concurrency.split(",")] if args.concurrency else [1, 2]
    conc = [c for c in conc if 1 <= c <= args.parallel] or [1]
    for n in ctxs:
        if max(prompts + [DECODE_PROMPT_TOKENS]) + args.max_tokens + 1 > n:
            ap.error(f"a {max(prompts)}-token prompt + {args.max_tokens} tokens does not fit {n} per slot")

    import xllamacpp

    from xinf_planner.shell.probe.bandwidth import measure_memory_bandwidth

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"load average before: {load}")
    bw = measure_memory_bandwidth(args.bandwidth_budget_s).as_dict()
    print(
        f"memory read bandwidth (probe): 1 thread {_fmt(bw['gbps_1_thread'])} GB/s, "
        f"{bw['threads']} threads {_fmt(bw['gbps_all_threads'])} GB/s ({bw['method']}; {bw['notes']})"
    )

    models = {}
    _, _, _, n_trained = build_vocab()
    for q in quants:
        path = ensure_model(args.cache, q, threads=os.cpu_count() or 1)
        models[q] = (path, gguf_summary(path))
        s = models[q][1]
        print(
            f"  {q}: {s['file_bytes'] / 1e9:.3f} GB file, tensor types {s['tensor_types']}, "
            f"read per token {s['weight_bytes_read_per_token'] / 1e9:.3f} GB (token_embd excluded)"
        )

    host = {
        **_cpu_facts(),
        "cpu_flags": _cpu_flags(),
        "xllamacpp_version": xllamacpp.__version__,
        "llama_cpp_system_info": xllamacpp.get_system_info().strip(),
        "python": platform.python_version(),
        "load_average_before": load,
    }
    start = time.time()
    rows, notes = [], []
    args.cache.mkdir(parents=True, exist_ok=True)
    for q in quants:
        for n in ctxs:
            for th in thread_counts:
                left = args.budget_s - (time.time() - start)
                if left < 20:
                    notes.append(f"{q} ctx {n} threads {th}: skipped, time budget spent")
                    print(notes[-1])
                    continue
                rows += _serve_and_measure(args, q, n, th, models[q], conc, prompts, n_trained, left, host, bw, notes)
    print()
    print("all rows:")
    print_table(rows)
    for n in notes:
        print("note:", n)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "generated_by": "benchmarks/measure_cpu.py",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quants_built": {q: models[q][1]["tensor_types"] for q in quants},
        "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "notes": notes,
        "rows": rows,
    }
    args.out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
