"""A tiny DeepSeek-R1-distill-shaped model, built offline, for the integration tests.

A real Qwen2 architecture (the architecture of the R1 Qwen distills) with random weights:
2 layers, hidden 64, 4 query heads, 2 KV heads, a byte-level BPE tokenizer of a few
hundred tokens trained here with the ``tokenizers`` library, plus the special tokens the
R1 chat template uses. Written as a GGUF with the ``gguf`` package so that llama.cpp
(xllamacpp) serves it on CPU. Random weights give random text: tests assert on
``finish_reason`` and token counts, never on words.

Nothing is downloaded. The same arguments give the same bytes (fixed seed, fixed corpus).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The special tokens of DeepSeek-R1's chat template (tokenizer_config.json of the distills).
BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
SPECIAL_TOKENS = [BOS, EOS, "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"]

_CORPUS = [
    "The quick brown fox jumps over the lazy dog. " * 4,
    "Deploying a language model needs memory for weights and for the KV cache. ",
    "Hello, how are you? I am fine, thank you. Let me think about it step by step. ",
    "0123456789 + - * / = ( ) [ ] { } < > | : ; , . ! ? ' \" ",
    "def main():\n    return 42\n",
]


@dataclass(frozen=True)
class TinyArch:
    num_layers: int = 2
    hidden_size: int = 64
    intermediate_size: int = 128
    num_heads: int = 4
    num_kv_heads: int = 2
    vocab_target: int = 320  # BPE merges stop here; the special tokens come on top
    context_length: int = 2048
    rope_theta: float = 10000.0
    rms_eps: float = 1e-6

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def build_tokenizer(arch: TinyArch):
    """A byte-level BPE tokenizer (GPT-2 / Qwen2 style), trained on a fixed corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=arch.vocab_target,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    return tok


def write_gguf(path: Path, arch: TinyArch = TinyArch(), seed: int = 0, name: str = "tiny-r1") -> Path:
    """Write a Qwen2 GGUF with random F32 weights; return the file path."""
    import json

    import gguf
    import numpy as np

    tok = build_tokenizer(arch)
    vocab = tok.get_vocab()  # token -> id, ids dense from 0
    n_vocab = len(vocab)
    tokens = [""] * n_vocab
    for text, idx in vocab.items():
        tokens[idx] = text
    special = set(SPECIAL_TOKENS)
    token_types = [gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens]
    merges = json.loads(tok.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_name(name)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_context_length(arch.context_length)
    w.add_embedding_length(arch.hidden_size)
    w.add_block_count(arch.num_layers)
    w.add_feed_forward_length(arch.intermediate_size)
    w.add_head_count(arch.num_heads)
    w.add_head_count_kv(arch.num_kv_heads)
    w.add_rope_freq_base(arch.rope_theta)
    w.add_layer_norm_rms_eps(arch.rms_eps)
    w.add_tokenizer_model("gpt2")
    # Without a known pre-tokenizer, llama.cpp refuses the vocab ("Failed to init server").
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(token_types)
    w.add_token_merges(merges)
    w.add_bos_token_id(vocab[BOS])
    w.add_eos_token_id(vocab[EOS])
    w.add_add_bos_token(False)

    rng = np.random.default_rng(seed)

    def rand(*shape):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    h, ff, hd = arch.hidden_size, arch.intermediate_size, arch.head_dim
    kv = arch.num_kv_heads * hd
    w.add_tensor("token_embd.weight", rand(n_vocab, h))
    for i in range(arch.num_layers):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(h, dtype=np.float32))
        w.add_tensor(p + "attn_q.weight", rand(h, h))
        w.add_tensor(p + "attn_q.bias", np.zeros(h, dtype=np.float32))
        w.add_tensor(p + "attn_k.weight", rand(kv, h))
        w.add_tensor(p + "attn_k.bias", np.zeros(kv, dtype=np.float32))
        w.add_tensor(p + "attn_v.weight", rand(kv, h))
        w.add_tensor(p + "attn_v.bias", np.zeros(kv, dtype=np.float32))
        w.add_tensor(p + "attn_output.weight", rand(h, h))
        w.add_tensor(p + "ffn_norm.weight", np.ones(h, dtype=np.float32))
        w.add_tensor(p + "ffn_gate.weight", rand(ff, h))
        w.add_tensor(p + "ffn_up.weight", rand(ff, h))
        w.add_tensor(p + "ffn_down.weight", rand(h, ff))
    w.add_tensor("output_norm.weight", np.ones(h, dtype=np.float32))
    w.add_tensor("output.weight", rand(n_vocab, h))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def build_gguf_model_dir(folder: Path, quantization: str = "F32", arch: TinyArch = TinyArch()) -> Path:
    """A folder laid out as Xinference expects a ggufv2 custom model: one file
    ``tiny-r1-{quantization}.gguf``. Returns the folder."""
    folder = Path(folder)
    write_gguf(folder / f"tiny-r1-{quantization}.gguf", arch)
    return folder
