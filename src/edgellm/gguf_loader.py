"""Read a GGUF file into a model config and weights, through the `gguf` package.

Supported: the llama family of the plan -- `llama` (SmolLM, Llama 3.x with llama3 rope scaling, Mistral) and
`qwen2` (QKV biases) -- in the quantization types their Ollama tags use. Anything else is refused by name.
Weights are dequantized with `gguf.quants.dequantize` (bit-identical to ggml's own dequantization).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import ModelFileError, UnsupportedModelError

SUPPORTED_ARCHITECTURES = ("llama", "qwen2")
# GGML type names that may appear in the supported models' files.
SUPPORTED_QUANTS = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K")


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


def open_gguf(path: str | Path):
    import gguf

    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"GGUF file not found: {p}")
    try:
        return gguf.GGUFReader(p)
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt files fail in many ways inside the reader
        raise ModelFileError(f"{p} is not a readable GGUF file (truncated or corrupt: {type(exc).__name__}: "
                             f"{exc})") from None


def _field(reader, key: str, default=None):
    f = reader.fields.get(key)
    return f.contents() if f is not None else default


def read_config(reader) -> Config:
    arch = _field(reader, "general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedModelError(f"architecture {arch!r} is not supported by EdgeLLM yet (supported: "
                                    f"{', '.join(SUPPORTED_ARCHITECTURES)})")

    def need(key):
        value = _field(reader, f"{arch}.{key}")
        if value is None:
            raise ModelFileError(f"the GGUF metadata lacks {arch}.{key}")
        return value

    dim, n_heads = int(need("embedding_length")), int(need("attention.head_count"))
    head_dim = int(_field(reader, f"{arch}.attention.key_length") or _field(reader, f"{arch}.rope.dimension_count")
                   or dim // n_heads)
    names = {t.name for t in reader.tensors}
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    vocab = len(tokens.data) if tokens is not None else int(_field(reader, f"{arch}.vocab_size"))
    return Config(
        architecture=arch, dim=dim, n_layers=int(need("block_count")), n_heads=n_heads,
        n_kv_heads=int(_field(reader, f"{arch}.attention.head_count_kv") or n_heads), head_dim=head_dim,
        hidden_dim=int(need("feed_forward_length")), vocab_size=vocab,
        context_length=int(_field(reader, f"{arch}.context_length", 2048)),
        norm_eps=float(need("attention.layer_norm_rms_epsilon")),
        rope_base=float(_field(reader, f"{arch}.rope.freq_base", 10000.0)),
        rope_style="neox" if arch == "qwen2" else "norm",
        tied_embeddings="output.weight" not in names,
        qkv_bias="blk.0.attn_q.bias" in names,
    )


@dataclass
class LayerWeights:
    attn_norm: np.ndarray
    wqkv: np.ndarray            # [(H + 2 Hkv) * D, dim]: q, k and v projections stacked, one matmul
    bqkv: Optional[np.ndarray]  # qwen2's biases, stacked the same way
    wo: np.ndarray              # [dim, H * D]
    ffn_norm: np.ndarray
    w_gate_up: np.ndarray       # [2 * hidden, dim]: gate and up stacked
    w_down: np.ndarray          # [dim, hidden]


@dataclass
class Weights:
    token_embd: np.ndarray      # [vocab, dim]
    layers: list[LayerWeights]
    output_norm: np.ndarray
    output: np.ndarray          # [vocab, dim] (the embedding itself when tied)
    rope_freq_factors: Optional[np.ndarray]  # llama3 rope scaling, from the `rope_freqs.weight` tensor


class TensorReader:
    """Dequantize tensors by name to float32 arrays of their logical shape (rows = output features)."""

    def __init__(self, reader):
        self.tensors = {t.name: t for t in reader.tensors}

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def get(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        from gguf.quants import dequantize

        t = self.tensors.get(name)
        if t is None:
            raise ModelFileError(f"the GGUF file lacks the tensor {name}")
        qtype = t.tensor_type.name
        if qtype not in SUPPORTED_QUANTS:
            raise UnsupportedModelError(f"tensor {name} is {qtype}, a quantization type EdgeLLM does not support "
                                        f"(supported: {', '.join(SUPPORTED_QUANTS)})")
        try:
            arr = dequantize(t.data, t.tensor_type)
        except Exception as exc:  # noqa: BLE001
            raise ModelFileError(f"tensor {name} could not be read ({type(exc).__name__}: {exc}); "
                                 f"is the file truncated?") from None
        arr = np.asarray(arr, dtype=np.float32)
        if arr.size != int(np.prod(shape)):
            raise ModelFileError(f"tensor {name} has {arr.size} values where {shape} was expected")
        return arr.reshape(shape)


def read_weights(reader, cfg: Config) -> Weights:
    tr = TensorReader(reader)
    d, hd, h, hkv, ff = cfg.dim, cfg.head_dim, cfg.n_heads, cfg.n_kv_heads, cfg.hidden_dim
    layers = []
    for i in range(cfg.n_layers):
        p = f"blk.{i}."
        wq, wk, wv = tr.get(p + "attn_q.weight", (h * hd, d)), tr.get(p + "attn_k.weight", (hkv * hd, d)), \
            tr.get(p + "attn_v.weight", (hkv * hd, d))
        bqkv = None
        if cfg.qkv_bias:
            bqkv = np.concatenate([tr.get(p + "attn_q.bias", (h * hd,)), tr.get(p + "attn_k.bias", (hkv * hd,)),
                                   tr.get(p + "attn_v.bias", (hkv * hd,))])
        layers.append(LayerWeights(
            attn_norm=tr.get(p + "attn_norm.weight", (d,)),
            wqkv=np.ascontiguousarray(np.concatenate([wq, wk, wv])), bqkv=bqkv,
            wo=tr.get(p + "attn_output.weight", (d, h * hd)),
            ffn_norm=tr.get(p + "ffn_norm.weight", (d,)),
            w_gate_up=np.ascontiguousarray(np.concatenate([tr.get(p + "ffn_gate.weight", (ff, d)),
                                                           tr.get(p + "ffn_up.weight", (ff, d))])),
            w_down=tr.get(p + "ffn_down.weight", (d, ff)),
        ))
    embd = tr.get("token_embd.weight", (cfg.vocab_size, d))
    output = embd if cfg.tied_embeddings else tr.get("output.weight", (cfg.vocab_size, d))
    freqs = tr.get("rope_freqs.weight", (hd // 2,)) if "rope_freqs.weight" in tr else None
    return Weights(token_embd=embd, layers=layers, output_norm=tr.get("output_norm.weight", (d,)), output=output,
                   rope_freq_factors=freqs)
