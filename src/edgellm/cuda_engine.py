"""EdgeLLM on the GPU: the GGUF file's weights uploaded once, every token through the CUDA decoder
(kernels/edgellm_engine.h), greedy choice on the device.

Quantized matrices go to the device as their planar blocks (edgellm.gpu_layout: the file's bytes, regrouped), so the
GPU holds the model at the file's size; norms, biases and rope factors as float32.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from .cuda_attention import AttentionKernels
from .cuda_gemv import QMatrix
from .errors import KernelError, UnsupportedModelError
from .gguf_loader import Config, open_gguf, read_config
from .gpu_layout import GPU_TYPES, planar, type_id

P = ctypes.c_void_p


class ModelConfig(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int) for n in ("n_layers", "dim", "n_heads", "n_kv_heads", "head_dim", "hidden",
                                             "vocab", "max_context")] + \
               [("norm_eps", ctypes.c_float), ("rope_base", ctypes.c_float), ("rope_neox", ctypes.c_int),
                ("unfused", ctypes.c_int)]


class Layer(ctypes.Structure):
    _fields_ = [(n, QMatrix) for n in ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")] + \
               [(n, P) for n in ("attn_norm", "ffn_norm", "bq", "bk", "bv")]


class CudaEngine:
    """Greedy generation on the GPU: `generate(prompt_ids, n)`; `step(token)` for one token at a time."""

    def __init__(self, path: str | Path, max_context: int = 2048, kernels: AttentionKernels | None = None,
                 fused: bool = True):
        """fused=False runs one launch per operation: the reference the fused step is tested against."""
        self.fused = fused
        self.kernels = kernels or AttentionKernels.load()
        lib = self.lib = self.kernels.lib
        lib.edgellm_device_alloc.argtypes = [ctypes.c_size_t, ctypes.POINTER(P)]
        lib.edgellm_device_upload.argtypes = [P, P, ctypes.c_size_t]
        lib.edgellm_device_free.argtypes = [P]
        lib.edgellm_engine_create.argtypes = [ctypes.POINTER(ModelConfig), ctypes.POINTER(Layer),
                                              ctypes.POINTER(QMatrix), ctypes.POINTER(QMatrix), P, P,
                                              ctypes.POINTER(P)]
        lib.edgellm_engine_step.argtypes = [P, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        lib.edgellm_engine_reset.argtypes = [P]
        lib.edgellm_engine_logits.argtypes = [P, P]
        lib.edgellm_engine_graph_nodes.argtypes = [P, ctypes.POINTER(ctypes.c_size_t)]
        lib.edgellm_engine_destroy.argtypes = [P]
        lib.edgellm_engine_destroy.restype = None
        self._buffers: list[int] = []
        self.engine = P()
        reader = open_gguf(path)
        self.config: Config = read_config(reader)
        self.max_context = min(max_context, self.config.context_length)
        self._tensors = {t.name: t for t in reader.tensors}
        try:
            self._create()
        except BaseException:
            self.close()
            raise

    # --- weights -----------------------------------------------------------------------------------------------
    def _upload(self, array: np.ndarray) -> int:
        array = np.ascontiguousarray(array)
        ptr = P()
        self.kernels._check(self.lib.edgellm_device_alloc(array.nbytes, ctypes.byref(ptr)), "device allocation")
        self._buffers.append(ptr.value)
        self.kernels._check(self.lib.edgellm_device_upload(ptr, array.ctypes.data, array.nbytes), "weight upload")
        return ptr.value

    def _vector(self, name: str) -> int:
        from gguf.quants import dequantize

        t = self._tensors[name]
        return self._upload(np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(-1))

    def _matrix(self, name: str, allow_float: bool = False) -> QMatrix:
        t = self._tensors.get(name)
        if t is None:
            raise UnsupportedModelError(f"the GGUF file lacks the tensor {name}")
        cols, rows = int(t.shape[0]), int(t.shape[1])
        qtype = t.tensor_type.name
        raw = np.asarray(t.data)
        if allow_float and qtype in ("F32", "F16"):
            return QMatrix(self._upload(raw), None, None, None, 0 if qtype == "F32" else 1, rows, cols)
        if qtype not in GPU_TYPES:
            raise UnsupportedModelError(f"tensor {name} is {qtype}: EdgeLLM's GPU kernels read "
                                        f"{', '.join(GPU_TYPES)}")
        fields = {k: self._upload(v) for k, v in planar(qtype, raw.reshape(-1).view(np.uint8), rows, cols).items()}
        return QMatrix(fields.get("qs"), fields.get("qh"), fields.get("scales"), fields.get("d"), type_id(qtype),
                       rows, cols)

    def _create(self) -> None:
        c = self.config
        if c.head_dim not in (64, 128):
            raise UnsupportedModelError(f"head dim {c.head_dim}: EdgeLLM's GPU attention has head dims 64 and 128")
        if c.dim % 32 or c.hidden_dim % 32 or c.dim > 8192:
            raise UnsupportedModelError(f"model width {c.dim} / FFN width {c.hidden_dim}: the GPU kernels take "
                                        f"multiples of 32, widths up to 8192")
        layers = (Layer * c.n_layers)()
        for i in range(c.n_layers):
            p = f"blk.{i}."
            L = layers[i]
            L.wq, L.wk, L.wv = (self._matrix(p + f"attn_{x}.weight") for x in "qkv")
            L.wo = self._matrix(p + "attn_output.weight")
            L.w_gate, L.w_up, L.w_down = (self._matrix(p + f"ffn_{x}.weight") for x in ("gate", "up", "down"))
            L.attn_norm, L.ffn_norm = self._vector(p + "attn_norm.weight"), self._vector(p + "ffn_norm.weight")
            if c.qkv_bias:
                L.bq, L.bk, L.bv = (self._vector(p + f"attn_{x}.bias") for x in "qkv")
        embd = self._matrix("token_embd.weight", allow_float=True)
        output = embd if c.tied_embeddings else self._matrix("output.weight")
        if output.qtype in (0, 1):
            raise UnsupportedModelError("an unquantized LM head has no GPU kernel yet")
        factors = self._vector("rope_freqs.weight") if "rope_freqs.weight" in self._tensors else None
        cfg = ModelConfig(c.n_layers, c.dim, c.n_heads, c.n_kv_heads, c.head_dim, c.hidden_dim, c.vocab_size,
                          self.max_context, c.norm_eps, c.rope_base, int(c.rope_style == "neox"), int(not self.fused))
        self._keep = (layers, embd, output)  # the engine keeps pointers into these structs' values, not the structs
        self.kernels._check(self.lib.edgellm_engine_create(ctypes.byref(cfg), layers, ctypes.byref(embd),
                                                           ctypes.byref(output), self._vector("output_norm.weight"),
                                                           factors, ctypes.byref(self.engine)), "engine creation")

    # --- generation --------------------------------------------------------------------------------------------
    def reset(self) -> None:
        self.kernels._check(self.lib.edgellm_engine_reset(self.engine), "engine reset")

    def step(self, token: int | None = None) -> int:
        """Feeds `token` (None: the engine's previous choice, which never leaves the GPU) and returns the next."""
        nxt = ctypes.c_int()
        self.kernels._check(self.lib.edgellm_engine_step(self.engine, -1 if token is None else int(token),
                                                         ctypes.byref(nxt)), "decode step")
        return nxt.value

    def graph_nodes(self) -> int:
        """Nodes (kernel launches, mostly) of the captured step; 0 until the second step has captured it."""
        n = ctypes.c_size_t()
        self.kernels._check(self.lib.edgellm_engine_graph_nodes(self.engine, ctypes.byref(n)), "graph inspection")
        return n.value

    def logits(self) -> np.ndarray:
        out = np.empty(self.config.vocab_size, np.float32)
        self.kernels._check(self.lib.edgellm_engine_logits(self.engine, out.ctypes.data), "logits copy")
        return out

    def generate(self, prompt_ids: list[int], max_new_tokens: int):
        """Greedy tokens after the prompt (token by token through the same captured step), yielded as they come."""
        if not prompt_ids:
            raise KernelError("an empty prompt")
        if len(prompt_ids) + max_new_tokens > self.max_context:
            raise KernelError(f"{len(prompt_ids)} prompt + {max_new_tokens} new tokens exceed the context of "
                              f"{self.max_context}")
        self.reset()
        for t in prompt_ids:
            nxt = self.step(t)
        yield nxt
        for _ in range(max_new_tokens - 1):
            nxt = self.step(None)
            yield nxt

    def close(self) -> None:
        if getattr(self, "engine", None) and self.engine.value:
            self.lib.edgellm_engine_destroy(self.engine)
            self.engine = P()
        for ptr in getattr(self, "_buffers", []):
            self.lib.edgellm_device_free(ptr)
        self._buffers = []

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class CudaGenerator:
    """CudaEngine with the file's tokenizer: the interface of edgellm.engine.Engine that the benchmark harness uses
    (tokenizer, max_context, device, generate with EOS handling)."""

    device = "cuda"

    def __init__(self, engine: CudaEngine, tokenizer):
        self.engine, self.tokenizer = engine, tokenizer
        self.max_context = engine.max_context

    @classmethod
    def from_gguf(cls, path: str | Path, max_context: int = 2048) -> "CudaGenerator":
        from .tokenizer import Tokenizer

        tokenizer = Tokenizer.from_gguf(open_gguf(path))
        return cls(CudaEngine(path, max_context=max_context), tokenizer)

    def generate(self, token_ids, max_new_tokens: int, ignore_eos: bool = False):
        for token in self.engine.generate(list(token_ids), max_new_tokens):
            yield token
            if not ignore_eos and self.tokenizer.is_eog(token):
                return

    def close(self) -> None:
        self.engine.close()
