"""A GGUF file's tensors as the CPU engine holds them: float32 arrays, or quantized matrices repacked losslessly
to 8-bit integers in row panels for the integer kernels (edgellm.cpu.quant, edgellm.cpu.int8_matmul). Weights are
dequantized with `gguf.quants.dequantize` (bit-identical to ggml's own)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from ..errors import ModelFileError, UnsupportedModelError
from ..gguf.config import Config
from ..gguf.quant_types import QUANTIZED_TYPES, SUPPORTED_TYPES
from .int8_matmul import PanelMatrix, to_panels
from .quant import QTensor, repack

# float32 [rows, cols], or quantized: a QTensor while reading, row panels (edgellm.cpu.int8_matmul) once read
Matrix = Union[np.ndarray, QTensor, PanelMatrix]


@dataclass
class LayerWeights:
    attn_norm: np.ndarray
    wqkv: list[Matrix]          # q, k, v projections; one stacked matrix when they share a storage type
    bqkv: Optional[np.ndarray]  # qwen2's biases, stacked the same way
    wo: Matrix                  # [dim, H * D]
    ffn_norm: np.ndarray
    w_gate_up: list[Matrix]     # gate and up; stacked when they share a storage type
    w_down: Matrix              # [dim, hidden]
    # gemma: norms of the attention output and the FFN output; gemma3: per-head norms of q and k ([head_dim])
    post_attn_norm: Optional[np.ndarray] = None
    post_ffn_norm: Optional[np.ndarray] = None
    q_norm: Optional[np.ndarray] = None
    k_norm: Optional[np.ndarray] = None


@dataclass
class Weights:
    token_embd: Matrix          # [vocab, dim]
    layers: list[LayerWeights]
    output_norm: np.ndarray
    output: Matrix              # [vocab, dim] (the embedding itself when tied)
    rope_freq_factors: Optional[np.ndarray]  # llama3 rope scaling, from the `rope_freqs.weight` tensor
    quantized: bool
    # phi3's rope factors (rope_factors_long/short.weight); which one applies depends on the context (see
    # rope_factors_for)
    rope_factors_long: Optional[np.ndarray] = None
    rope_factors_short: Optional[np.ndarray] = None

    def rope_factors_for(self, cfg: Config, context: int) -> Optional[np.ndarray]:
        """The rope frequency factors for a KV cache of `context` tokens: a file's rope_freqs, else phi3's long
        factors when the context exceeds the original training context and its short ones otherwise, as llama.cpp
        chooses them for its context size."""
        if self.rope_freq_factors is not None:
            return self.rope_freq_factors
        if context > cfg.rope_original_context and self.rope_factors_long is not None:
            return self.rope_factors_long
        return self.rope_factors_short


class TensorReader:
    """Tensors by name, as float32 arrays of their logical shape (rows = output features) or, for quantized
    matrices when `quantized`, as QTensors (a lossless repacking of the GGUF blocks)."""

    def __init__(self, reader, quantized: bool):
        self.tensors = {t.name: t for t in reader.tensors}
        self.quantized = quantized
        for name, t in self.tensors.items():  # refuse an unsupported file before reading any of it
            self._tensor(name)

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def _tensor(self, name: str):
        t = self.tensors.get(name)
        if t is None:
            raise ModelFileError(f"the GGUF file lacks the tensor {name}")
        if t.tensor_type.name not in SUPPORTED_TYPES:
            raise UnsupportedModelError(f"tensor {name} is {t.tensor_type.name}, a quantization type EdgeLLM does "
                                        f"not support (supported: {', '.join(SUPPORTED_TYPES)})")
        return t

    def get(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        from gguf.quants import dequantize

        t = self._tensor(name)
        try:
            arr = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        except Exception as exc:  # noqa: BLE001
            raise ModelFileError(f"tensor {name} could not be read ({type(exc).__name__}: {exc}); "
                                 f"is the file truncated?") from None
        if arr.size != int(np.prod(shape)):
            raise ModelFileError(f"tensor {name} has {arr.size} values where {shape} was expected")
        return arr.reshape(shape)

    def matrix(self, name: str, shape: tuple[int, int]) -> Matrix:
        t = self._tensor(name)
        qtype = t.tensor_type.name
        if not self.quantized or qtype not in QUANTIZED_TYPES:
            return self.get(name, shape)
        try:
            return repack(qtype, np.asarray(t.data), *shape)
        except (ValueError, IndexError) as exc:
            raise ModelFileError(f"tensor {name} could not be read ({type(exc).__name__}: {exc}); "
                                 f"is the file truncated?") from None


def stack(mats: list[Matrix]) -> list[Matrix]:
    """One matrix of all rows when the parts share a storage type (one kernel call instead of several)."""
    if all(isinstance(m, np.ndarray) for m in mats):
        return [np.ascontiguousarray(np.concatenate(mats))]
    if all(isinstance(m, QTensor) for m in mats) and len({(m.qtype, m.block) for m in mats}) == 1:
        first = mats[0]

        def joined(field):
            parts = [getattr(m, field) for m in mats]
            return None if any(p is None for p in parts) else np.concatenate(parts)

        return [QTensor(q=joined("q"), d=joined("d"), m=joined("m"), block=first.block, qtype=first.qtype,
                        sub_scales=joined("sub_scales"), super_scales=joined("super_scales"))]
    return mats


def panels(mats: list[Matrix]) -> list[Matrix]:
    """The integer kernels' form of each quantized matrix (float32 ones as they are)."""
    return [to_panels(m) if isinstance(m, QTensor) else m for m in mats]


def read_weights(reader, cfg: Config, quantized: bool = True) -> Weights:
    tr = TensorReader(reader, quantized)
    d, hd, h, hkv, ff = cfg.dim, cfg.head_dim, cfg.n_heads, cfg.n_kv_heads, cfg.hidden_dim
    layers = []
    for i in range(cfg.n_layers):
        p = f"blk.{i}."
        bqkv = None
        if cfg.qkv_bias:
            bqkv = np.concatenate([tr.get(p + "attn_q.bias", (h * hd,)), tr.get(p + "attn_k.bias", (hkv * hd,)),
                                   tr.get(p + "attn_v.bias", (hkv * hd,))])
        if cfg.architecture == "phi3":
            # phi3 stores q, k, v as one matrix, and gate then up as one `ffn_up` of 2 * hidden rows
            wqkv = panels([tr.matrix(p + "attn_qkv.weight", ((h + 2 * hkv) * hd, d))])
            w_gate_up = panels([tr.matrix(p + "ffn_up.weight", (2 * ff, d))])
        else:
            wqkv = panels(stack([tr.matrix(p + "attn_q.weight", (h * hd, d)),
                                 tr.matrix(p + "attn_k.weight", (hkv * hd, d)),
                                 tr.matrix(p + "attn_v.weight", (hkv * hd, d))]))
            w_gate_up = panels(stack([tr.matrix(p + "ffn_gate.weight", (ff, d)),
                                      tr.matrix(p + "ffn_up.weight", (ff, d))]))
        layer = LayerWeights(
            attn_norm=tr.get(p + "attn_norm.weight", (d,)), wqkv=wqkv, bqkv=bqkv,
            wo=panels([tr.matrix(p + "attn_output.weight", (d, h * hd))])[0],
            ffn_norm=tr.get(p + "ffn_norm.weight", (d,)), w_gate_up=w_gate_up,
            w_down=panels([tr.matrix(p + "ffn_down.weight", (d, ff))])[0],
        )
        if cfg.post_norms:
            layer.post_attn_norm = tr.get(p + "post_attention_norm.weight", (d,))
            layer.post_ffn_norm = tr.get(p + "post_ffw_norm.weight", (d,))
        if cfg.qk_norm:
            layer.q_norm = tr.get(p + "attn_q_norm.weight", (hd,))
            layer.k_norm = tr.get(p + "attn_k_norm.weight", (hd,))
        layers.append(layer)
    embd = panels([tr.matrix("token_embd.weight", (cfg.vocab_size, d))])[0]
    output = embd if cfg.tied_embeddings else panels([tr.matrix("output.weight", (cfg.vocab_size, d))])[0]

    def optional(name):
        return tr.get(name, (hd // 2,)) if name in tr else None

    return Weights(token_embd=embd, layers=layers, output_norm=tr.get("output_norm.weight", (d,)), output=output,
                   rope_freq_factors=optional("rope_freqs.weight"), quantized=quantized,
                   rope_factors_long=optional("rope_factors_long.weight"),
                   rope_factors_short=optional("rope_factors_short.weight"))
