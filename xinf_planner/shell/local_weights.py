"""Local weights: read a folder's format, quantization and architecture into a ``LocalModel``
(``detect``). The registration built from it is pure (``core/registration.py``).

Rules (Xinference 4.1.0, ``xinference/model/llm/llm_family.py``):
- ``*.gguf`` -> ``ggufv2`` with ``model_file_name_template`` (the file name with the
  quantization replaced by ``{quantization}``); ``model_uri`` is the folder.
- ``config.json`` + ``*.safetensors``/``*.bin`` -> ``pytorch``, or ``awq``/``gptq``/``fp8``
  from ``quantization_config.quant_method``.
- an MLX layout (``config.json`` with a ``quantization: {bits, group_size}`` block) -> ``mlx``.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

from xinf_planner.core.registration import LocalModel
from xinf_planner.errors import InvalidInput

# GGUF quantization names as llama.cpp writes them in file names (longest first matters).
GGUF_QUANTS = sorted(
    [
        "F32",
        "F16",
        "BF16",
        "Q8_0",
        "Q6_K",
        "Q5_K_M",
        "Q5_K_S",
        "Q5_0",
        "Q5_1",
        "Q4_K_M",
        "Q4_K_S",
        "Q4_0",
        "Q4_1",
        "Q3_K_L",
        "Q3_K_M",
        "Q3_K_S",
        "Q2_K",
        "Q2_K_L",
        "Q2_K_S",
        "IQ4_XS",
        "IQ4_NL",
        "IQ3_M",
        "IQ3_S",
        "IQ3_XS",
        "IQ3_XXS",
        "IQ2_M",
        "IQ2_S",
        "IQ2_XS",
        "IQ2_XXS",
        "IQ1_M",
        "IQ1_S",
        "TQ1_0",
        "TQ2_0",
        "MXFP4",
    ],
    key=len,
    reverse=True,
)
_SPLIT = re.compile(r"-\d{5}-of-\d{5}\.gguf$", re.IGNORECASE)


def detect(folder, quantization: str | None = None) -> LocalModel:
    """Format, quantization and architecture facts of a local weights folder (or .gguf file)."""
    p = Path(folder).expanduser()
    if p.is_file() and p.suffix.lower() == ".gguf":
        p = p.parent
    if not p.is_dir():
        raise InvalidInput(f"model path is not a folder: {folder}")
    p = p.resolve()
    ggufs = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() == ".gguf")
    if ggufs:
        return _detect_gguf(p, ggufs, quantization)
    config = p / "config.json"
    if config.is_file():
        return _detect_hf(p, config)
    raise InvalidInput(f"{p}: no *.gguf file and no config.json: not a model folder Xinference can load")


# --- GGUF ---------------------------------------------------------------------------------
def _gguf_quant_from_name(name: str) -> str | None:
    stem = name[:-5]
    upper = stem.upper()
    for quant in GGUF_QUANTS:
        for sep in ("-", ".", "_"):
            if upper.endswith(sep + quant):
                return stem[len(stem) - len(quant) :]
    return None


def _detect_gguf(folder: Path, files: list[Path], quantization: str | None) -> LocalModel:
    if any(_SPLIT.search(f.name) for f in files):
        raise InvalidInput(
            f"{folder}: split GGUF files (-0000N-of-0000M) are not supported; "
            "merge them with llama-gguf-split --merge first"
        )
    found = {}
    for f in files:
        quant = _gguf_quant_from_name(f.name)
        if quant is None:
            meta = read_gguf_metadata(f)
            quant = _file_type_name(meta.get("general.file_type"))
            if quant is None:
                raise InvalidInput(f"{f}: cannot tell the quantization from the file name or its metadata")
            # the template must give back this exact file name
            found[quant] = (f, None)
        else:
            found[quant] = (f, f.name[: len(f.name) - 5 - len(quant)] + "{quantization}.gguf")
    if quantization is None:
        if len(found) > 1:
            raise InvalidInput(f"{folder} holds several GGUF quantizations ({', '.join(sorted(found))}); choose one")
        quantization = next(iter(found))
    if quantization not in found:
        raise InvalidInput(
            f"{folder}: no GGUF file for quantization {quantization!r} (found {', '.join(sorted(found))})"
        )
    path, template = found[quantization]
    if template is None:
        raise InvalidInput(
            f"{path}: name the file like NAME-{quantization}.gguf so Xinference can find it by its quantization"
        )
    meta = read_gguf_metadata(path, with_tensors=True)
    arch = meta.get("general.architecture")

    def key(suffix):
        return meta.get(f"{arch}.{suffix}") if arch else None

    heads = key("attention.head_count")
    hidden = key("embedding_length")
    tokens = meta.get("tokenizer.ggml.tokens")
    head_dim = key("attention.key_length") or (hidden // heads if hidden and heads else None)
    return LocalModel(
        path=str(folder),
        model_format="ggufv2",
        quantization=quantization,
        model_file_name_template=template,
        architecture=arch,
        num_layers=key("block_count"),
        hidden_size=hidden,
        num_attention_heads=heads,
        num_kv_heads=key("attention.head_count_kv") or heads,
        head_dim=head_dim,
        vocab_size=len(tokens) if isinstance(tokens, list) else meta.get(f"{arch}.vocab_size"),
        params=meta.get("_params"),
        context_length=key("context_length"),
    )


# llama.cpp's LlamaFileType numbering (gguf-py constants.py)
_FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    32: "BF16",
}


def _file_type_name(value) -> str | None:
    return _FILE_TYPES.get(value) if isinstance(value, int) else None


def read_gguf_metadata(path, with_tensors: bool = False) -> dict:
    """GGUF key/values (scalars, strings, and lists of them); with_tensors adds '_params'.

    Uses the ``gguf`` package when it is installed, else reads the header here.
    """
    try:
        import gguf  # noqa: F401
    except ImportError:
        return _read_gguf_header(Path(path), with_tensors)
    return _read_with_gguf(Path(path), with_tensors)


def _read_with_gguf(path: Path, with_tensors: bool) -> dict:
    from gguf import GGUFReader, GGUFValueType

    try:
        reader = GGUFReader(str(path))
    except Exception as exc:
        raise InvalidInput(f"{path}: not a readable GGUF file ({exc})") from None
    out = {}
    for name, fld in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        types = fld.types
        if not types:
            continue
        if types[0] == GGUFValueType.ARRAY:
            if len(types) > 1 and types[1] == GGUFValueType.STRING:
                out[name] = [bytes(fld.parts[i]).decode("utf-8", "replace") for i in fld.data]
            else:
                out[name] = [fld.parts[i].tolist()[0] for i in fld.data]
        elif types[0] == GGUFValueType.STRING:
            out[name] = bytes(fld.parts[fld.data[0]]).decode("utf-8", "replace")
        else:
            out[name] = fld.parts[fld.data[0]].tolist()[0]
    if with_tensors:
        out["_params"] = int(sum(int(t.n_elements) for t in reader.tensors))
    return out


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def _read_gguf_header(path: Path, with_tensors: bool) -> dict:
    """A minimal GGUF v2/v3 header reader (key/values and tensor shapes)."""
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from None
    with fh:

        def read(fmt):
            size = struct.calcsize(fmt)
            data = fh.read(size)
            if len(data) != size:
                raise InvalidInput(f"{path}: truncated GGUF header")
            return struct.unpack(fmt, data)[0]

        def string():
            n = read("<Q")
            return fh.read(n).decode("utf-8", "replace")

        def value(vtype):
            if vtype == 8:
                return string()
            if vtype == 9:
                itype, count = read("<I"), read("<Q")
                return [value(itype) for _ in range(count)]
            if vtype not in _SCALARS:
                raise InvalidInput(f"{path}: unknown GGUF value type {vtype}")
            return read(_SCALARS[vtype])

        if fh.read(4) != b"GGUF":
            raise InvalidInput(f"{path}: not a GGUF file (bad magic)")
        version = read("<I")
        if version < 2:
            raise InvalidInput(f"{path}: GGUF version {version} is too old")
        n_tensors, n_kv = read("<Q"), read("<Q")
        out = {}
        for _ in range(n_kv):
            name = string()
            out[name] = value(read("<I"))
        if with_tensors:
            params = 0
            for _ in range(n_tensors):
                string()
                dims = [read("<Q") for _ in range(read("<I"))]
                read("<I")
                read("<Q")
                count = 1
                for d in dims:
                    count *= d
                params += count
            out["_params"] = params
        return out


# --- Hugging Face / MLX folders -------------------------------------------------------------
def _detect_hf(folder: Path, config_path: Path) -> LocalModel:
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{config_path}: not valid JSON ({exc})") from None
    weights = sorted(folder.glob("*.safetensors"))
    if not weights and not sorted(folder.glob("*.bin")):
        raise InvalidInput(f"{folder}: config.json but no *.safetensors or *.bin weights")
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    notes: list[str] = []
    qcfg = config.get("quantization_config") or {}
    mlx_q = config.get("quantization")
    if isinstance(mlx_q, dict) and "bits" in mlx_q:
        fmt, quant = "mlx", f"{int(mlx_q['bits'])}bit"
    elif qcfg:
        method = str(qcfg.get("quant_method", "")).lower()
        bits = qcfg.get("bits") or qcfg.get("w_bit")
        if method in ("awq", "gptq"):
            fmt, quant = method, f"Int{int(bits or 4)}"
        elif method == "fp8":
            fmt, quant = "fp8", "FP8"
        else:
            raise InvalidInput(
                f"{config_path}: quantization method {method or '?'!r} is not one Xinference registers (awq, gptq, fp8)"
            )
    else:
        fmt, quant = "pytorch", "none"
    heads = text.get("num_attention_heads")
    hidden = text.get("hidden_size")
    params = _safetensors_params(weights) if weights else None
    if params is not None and fmt in ("awq", "gptq", "mlx"):
        notes.append("parameter count read from packed quantized tensors: an underestimate")
    archs = config.get("architectures") or []
    return LocalModel(
        path=str(folder),
        model_format=fmt,
        quantization=quant,
        architecture=archs[0] if archs else config.get("model_type"),
        num_layers=text.get("num_hidden_layers"),
        hidden_size=hidden,
        num_attention_heads=heads,
        num_kv_heads=text.get("num_key_value_heads") or heads,
        head_dim=text.get("head_dim") or (hidden // heads if hidden and heads else None),
        vocab_size=text.get("vocab_size"),
        params=params,
        context_length=text.get("max_position_embeddings"),
        notes=notes,
    )


def _safetensors_params(files: list[Path]) -> int | None:
    total = 0
    for f in files:
        try:
            with open(f, "rb") as fh:
                n = struct.unpack("<Q", fh.read(8))[0]
                header = json.loads(fh.read(n))
        except (OSError, ValueError, struct.error):
            return None
        for name, info in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for d in info.get("shape", []):
                count *= d
            total += count
    return total
