"""A GGUF file's model configuration: the shapes and constants of the forward pass, on every device.

Supported: the llama family of the plan -- `llama` (SmolLM, Llama 3.x with llama3 rope scaling, Mistral) and
`qwen2` (QKV biases). Anything else is refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModelFileError, UnsupportedModelError
from .reader import array_length, field

SUPPORTED_ARCHITECTURES = ("llama", "qwen2")


@dataclass(frozen=True)
class Config:
    architecture: str
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    hidden_dim: int
    vocab_size: int
    context_length: int
    norm_eps: float
    rope_base: float
    # "norm": rotate adjacent pairs (x0,x1),(x2,x3)... as llama.cpp does for `llama`;
    # "neox": rotate (x_i, x_{i+d/2}) as it does for `qwen2`.
    rope_style: str
    tied_embeddings: bool
    qkv_bias: bool


def read_config(reader) -> Config:
    arch = field(reader, "general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedModelError(f"architecture {arch!r} is not supported by EdgeLLM yet (supported: "
                                    f"{', '.join(SUPPORTED_ARCHITECTURES)})")

    def need(key):
        value = field(reader, f"{arch}.{key}")
        if value is None:
            raise ModelFileError(f"the GGUF metadata lacks {arch}.{key}")
        return value

    dim, n_heads = int(need("embedding_length")), int(need("attention.head_count"))
    head_dim = int(field(reader, f"{arch}.attention.key_length") or field(reader, f"{arch}.rope.dimension_count")
                   or dim // n_heads)
    names = {t.name for t in reader.tensors}
    vocab = array_length(reader, "tokenizer.ggml.tokens") or int(need("vocab_size"))
    return Config(
        architecture=arch, dim=dim, n_layers=int(need("block_count")), n_heads=n_heads,
        n_kv_heads=int(field(reader, f"{arch}.attention.head_count_kv") or n_heads), head_dim=head_dim,
        hidden_dim=int(need("feed_forward_length")), vocab_size=vocab,
        context_length=int(field(reader, f"{arch}.context_length", 2048)),
        norm_eps=float(need("attention.layer_norm_rms_epsilon")),
        rope_base=float(field(reader, f"{arch}.rope.freq_base", 10000.0)),
        rope_style="neox" if arch == "qwen2" else "norm",
        tied_embeddings="output.weight" not in names,
        qkv_bias="blk.0.attn_q.bias" in names,
    )
