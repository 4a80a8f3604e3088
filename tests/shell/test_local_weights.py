"""Local weights detection and the registration JSON, checked against Xinference's own
parser (the installed xinference 4.1.0 ``CustomLLMFamilyV2``), not against our code."""

from __future__ import annotations

import json
import shutil
import struct
import sys
from pathlib import Path

import pytest

from xinf_planner.core.registration import registration_for, registration_spec
from xinf_planner.core.sizes import size_in_billions, size_label
from xinf_planner.errors import InvalidInput
from xinf_planner.shell.local_weights import _read_gguf_header, _read_with_gguf, detect

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from tiny_model import TinyArch, build_gguf_model_dir, build_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_gguf_model_dir(tmp_path_factory.mktemp("tiny"))


def _expected_params(arch: TinyArch, n_vocab: int) -> int:
    h, ff, kv = arch.hidden_size, arch.intermediate_size, arch.num_kv_heads * arch.head_dim
    per_layer = 2 * h + (h * h + h) + 2 * (kv * h + kv) + h * h + 3 * h * ff
    return 2 * n_vocab * h + arch.num_layers * per_layer + h


def test_gguf_folder(tiny_dir):
    arch = TinyArch()
    n_vocab = build_tokenizer(arch).get_vocab_size()
    m = detect(tiny_dir)
    assert (m.model_format, m.quantization) == ("ggufv2", "F32")
    assert m.model_file_name_template == "tiny-r1-{quantization}.gguf"
    assert m.architecture == "qwen2"
    assert (m.num_layers, m.hidden_size, m.num_attention_heads, m.num_kv_heads, m.head_dim) == (
        arch.num_layers,
        arch.hidden_size,
        arch.num_heads,
        arch.num_kv_heads,
        arch.head_dim,
    )
    assert m.vocab_size == n_vocab and m.context_length == arch.context_length
    assert m.params == _expected_params(arch, n_vocab)
    assert detect(tiny_dir / "tiny-r1-F32.gguf").path == m.path  # a file names its folder


def test_header_reader_agrees_with_gguf_package(tiny_dir):
    f = tiny_dir / "tiny-r1-F32.gguf"
    ours, theirs = _read_gguf_header(f, True), _read_with_gguf(f, True)
    assert ours.keys() == theirs.keys()
    for key in ours:
        if isinstance(ours[key], float):
            assert ours[key] == pytest.approx(theirs[key])
        else:
            assert ours[key] == theirs[key], key


def test_quantization_from_file_name(tiny_dir, tmp_path):
    shutil.copy(tiny_dir / "tiny-r1-F32.gguf", tmp_path / "DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.gguf")
    m = detect(tmp_path)
    assert m.quantization == "Q4_K_M"
    assert m.model_file_name_template == "DeepSeek-R1-Distill-Qwen-7B-{quantization}.gguf"
    shutil.copy(tiny_dir / "tiny-r1-F32.gguf", tmp_path / "DeepSeek-R1-Distill-Qwen-7B-Q8_0.gguf")
    with pytest.raises(InvalidInput, match="several GGUF quantizations"):
        detect(tmp_path)
    assert detect(tmp_path, quantization="Q8_0").quantization == "Q8_0"


def test_split_gguf_refused(tiny_dir, tmp_path):
    shutil.copy(tiny_dir / "tiny-r1-F32.gguf", tmp_path / "m-Q6_K-00001-of-00002.gguf")
    with pytest.raises(InvalidInput, match="split GGUF"):
        detect(tmp_path)


def _safetensors(path: Path, shapes: dict) -> None:
    header = {name: {"dtype": "BF16", "shape": shape, "data_offsets": [0, 0]} for name, shape in shapes.items()}
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)


# The config.json of deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B (the fields read here).
QWEN_1_5B = {
    "architectures": ["Qwen2ForCausalLM"],
    "hidden_size": 1536,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "num_hidden_layers": 28,
    "vocab_size": 151936,
    "max_position_embeddings": 131072,
    "torch_dtype": "bfloat16",
}


def test_pytorch_folder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(QWEN_1_5B))
    _safetensors(tmp_path / "model-00001-of-00002.safetensors", {"a": [151936, 1536]})
    _safetensors(tmp_path / "model-00002-of-00002.safetensors", {"b": [1536], "c": [8960, 1536]})
    m = detect(tmp_path)
    assert (m.model_format, m.quantization) == ("pytorch", "none")
    assert m.params == 151936 * 1536 + 1536 + 8960 * 1536
    assert (m.num_layers, m.num_kv_heads, m.head_dim, m.context_length) == (28, 2, 128, 131072)


@pytest.mark.parametrize(
    "extra,fmt,quant",
    [
        ({"quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128}}, "awq", "Int4"),
        ({"quantization_config": {"quant_method": "gptq", "bits": 8}}, "gptq", "Int8"),
        ({"quantization_config": {"quant_method": "fp8"}}, "fp8", "FP8"),
        ({"quantization": {"group_size": 64, "bits": 4}}, "mlx", "4bit"),
    ],
)
def test_quantized_folders(tmp_path, extra, fmt, quant):
    (tmp_path / "config.json").write_text(json.dumps({**QWEN_1_5B, **extra}))
    _safetensors(tmp_path / "model.safetensors", {"w": [4, 4]})
    m = detect(tmp_path)
    assert (m.model_format, m.quantization) == (fmt, quant)


def test_not_a_model(tmp_path):
    with pytest.raises(InvalidInput, match="not a folder"):
        detect(tmp_path / "missing")
    with pytest.raises(InvalidInput, match="no \\*.gguf file and no config.json"):
        detect(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(QWEN_1_5B))
    with pytest.raises(InvalidInput, match="no \\*.safetensors"):
        detect(tmp_path)
    _safetensors(tmp_path / "model.safetensors", {"w": [4, 4]})
    (tmp_path / "config.json").write_text(json.dumps({**QWEN_1_5B, "quantization_config": {"quant_method": "hqq"}}))
    with pytest.raises(InvalidInput, match="hqq"):
        detect(tmp_path)


def test_registration_is_what_xinference_accepts_and_inherits_the_family(tiny_dir):
    from xinference.model.llm.llm_family import CustomLLMFamilyV2

    block = registration_for(detect(tiny_dir), "my-tiny", "deepseek-r1-distill-qwen", context_length=4096)
    assert block["model_uri"] == tiny_dir.resolve().as_uri()
    spec = registration_spec(block, "0_00012")
    parsed = CustomLLMFamilyV2.parse_raw(json.dumps(spec))
    assert parsed.model_family == "deepseek-r1-distill-qwen"
    assert parsed.reasoning_start_tag == "<think>" and parsed.reasoning_end_tag == "</think>"
    assert "<｜Assistant｜>" in parsed.chat_template  # the builtin R1 template, inherited
    assert parsed.context_length == 4096
    (only,) = parsed.model_specs
    assert (only.model_format, only.quantization, only.model_size_in_billions) == ("ggufv2", "F32", "0_00012")
    assert only.model_file_name_template == "tiny-r1-{quantization}.gguf"


def test_registration_name_checked(tiny_dir):
    with pytest.raises(InvalidInput):
        registration_for(detect(tiny_dir), "bad name/with slash", "deepseek-r1-distill-qwen")


@pytest.mark.parametrize("value,label", [(1.5, "1_5"), (7, "7"), ("1_5", "1_5"), ("1.5", "1_5"), (671.0, "671")])
def test_size_label(value, label):
    assert size_label(value) == label


# parameter counts of real checkpoints (model cards / safetensors index totals)
@pytest.mark.parametrize(
    "params,label", [(1_777_088_000, "1_8"), (7_615_616_512, "7_6"), (32_763_876_352, "33"), (None, None)]
)
def test_size_in_billions(params, label):
    assert size_in_billions(params) == label
