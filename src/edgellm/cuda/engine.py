"""EdgeLLM on the GPU: the GGUF file's weights uploaded once, the prompt through the CUDA prefill as a batch (in
chunks), every further token through the captured decode step (kernels/edgellm_engine.h), greedy choice on the
device.

Quantized matrices go to the device as their planar blocks (edgellm.cuda.layout: the file's bytes, regrouped), so
the GPU holds the model at the file's size; norms, biases and rope factors as float32. Like the CPU engine it knows
nothing of end-of-generation tokens: `greedy` is the raw chain of choices, edgellm.Generator adds the stopping rule.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from ..errors import ContextLengthError, EdgeLLMError, UnsupportedModelError
from ..gguf.config import Config, read_config
from ..gguf.reader import open_gguf
from ..loader import checked_chunk
from .device import device_name
from .gemv import QMatrix
from .layout import GPU_HEAD_DIMS, GPU_TYPES, planar, refuse_architecture, row_range, type_id
from .library import Library, LibrarySpec

P = ctypes.c_void_p


class ModelConfig(ctypes.Structure):
    """edgellm_model_config (kernels/edgellm_engine.h)."""
    _fields_ = [(n, ctypes.c_int) for n in ("n_layers", "dim", "n_heads", "n_kv_heads", "head_dim", "hidden",
                                             "vocab", "max_context")] + \
               [("norm_eps", ctypes.c_float), ("rope_base", ctypes.c_float), ("rope_neox", ctypes.c_int),
                ("unfused", ctypes.c_int), ("query_scale", ctypes.c_float), ("embedding_scale", ctypes.c_float),
                ("activation", ctypes.c_int), ("attn_softcap", ctypes.c_float), ("final_softcap", ctypes.c_float),
                ("rope_attn_factor", ctypes.c_float)]


class Layer(ctypes.Structure):
    """edgellm_layer (kernels/edgellm_engine.h)."""
    _fields_ = [(n, QMatrix) for n in ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")] + \
               [(n, P) for n in ("attn_norm", "ffn_norm", "bq", "bk", "bv", "post_attn_norm", "post_ffn_norm",
                                 "q_norm", "k_norm")] + \
               [("window", ctypes.c_int), ("rope_base", ctypes.c_float)]


ACTIVATIONS = {"silu": 0, "gelu_tanh": 1}  # the engine's activation codes (edgellm_model_config.activation)


SIGNATURES = {
    "edgellm_device_alloc": [ctypes.c_size_t, ctypes.POINTER(P)],
    "edgellm_device_upload": [P, P, ctypes.c_size_t],
    "edgellm_device_free": [P],
    "edgellm_engine_create": [ctypes.POINTER(ModelConfig), ctypes.POINTER(Layer), ctypes.POINTER(QMatrix),
                              ctypes.POINTER(QMatrix), P, P, ctypes.POINTER(P)],
    "edgellm_engine_step": [P, ctypes.c_int, ctypes.POINTER(ctypes.c_int)],
    "edgellm_engine_launch": [P, ctypes.c_int],
    "edgellm_engine_collect": [P, ctypes.POINTER(ctypes.c_int)],
    "edgellm_engine_prefill": [P, ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.c_int,
                               ctypes.POINTER(ctypes.c_int)],
    "edgellm_engine_prefill_logits": [P, ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.c_int, P],
    "edgellm_engine_reset": [P],
    "edgellm_engine_logits": [P, P],
    "edgellm_engine_graph_nodes": [P, ctypes.POINTER(ctypes.c_size_t)],
    "edgellm_engine_destroy": [P],
}
FLOAT_EMBEDDING_TYPES = ("F32", "F16")  # an embedding table is only gathered from, never multiplied
# Every chunk reads each weight matrix once, so longer chunks spread that read over more tokens; the work buffers grow
# with the chunk (a few times chunk x ffn x 2 bytes), which a GPU of the plan holds easily at 2048.
DEFAULT_PREFILL_CHUNK = 2048


def checked_prefill_chunk(chunk) -> int | None:
    """The prefill chunk (prompt tokens per batch) as given, or one clear error; None (tests only) feeds the prompt
    one decode step per token, the reference the batched prefill is tested against."""
    return None if chunk is None else checked_chunk(chunk)


def _layer_matrices(c: Config, i: int) -> list[str]:
    """The layer's matrices as the file names them (phi3: one attn_qkv, and an ffn_up holding gate then up)."""
    p = f"blk.{i}."
    if c.architecture == "phi3":
        return [p + "attn_qkv.weight", p + "attn_output.weight", p + "ffn_up.weight", p + "ffn_down.weight"]
    return [p + f"attn_{x}.weight" for x in ("q", "k", "v", "output")] + \
        [p + f"ffn_{x}.weight" for x in ("gate", "up", "down")]


class _RopeFactors:
    """The file's rope factor tensors under the names edgellm.cpu.weights.Weights gives them, so that its
    rope_factors_for makes the same choice for the GPU's context as for the CPU's."""

    def __init__(self, vectors: dict):
        self.rope_freq_factors = vectors.get("rope_freqs.weight")
        self.rope_factors_long = vectors.get("rope_factors_long.weight")
        self.rope_factors_short = vectors.get("rope_factors_short.weight")


def rope_factor_name(c: Config, tensors: dict, context: int) -> str | None:
    """The name of the rope factor tensor the engine uses for a cache of `context` tokens (None: none), chosen as
    the CPU engine chooses it (Weights.rope_factors_for)."""
    from ..cpu.weights import Weights

    names = ("rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight")
    present = {n: n for n in names if n in tensors}
    return Weights.rope_factors_for(_RopeFactors(present), c, context)


def refuse_unsupported(c: Config, tensors: dict) -> None:
    """UnsupportedModelError naming the first shape or tensor type the GPU kernels lack (no device work needed)."""
    refuse_architecture(c.architecture)
    if c.head_dim not in GPU_HEAD_DIMS:
        raise UnsupportedModelError(f"head dim {c.head_dim}: EdgeLLM's GPU attention has head dims "
                                    f"{', '.join(map(str, GPU_HEAD_DIMS))}")
    if c.dim % 32 or c.hidden_dim % 32 or c.dim > 8192:
        raise UnsupportedModelError(f"model width {c.dim} / FFN width {c.hidden_dim}: the GPU kernels take "
                                    f"multiples of 32, widths up to 8192")
    names = [m for i in range(c.n_layers) for m in _layer_matrices(c, i)]
    names.append("token_embd.weight" if c.tied_embeddings else "output.weight")
    for name in names:
        t = tensors.get(name)
        if t is None:
            raise UnsupportedModelError(f"the GGUF file lacks the tensor {name}")
        if t.tensor_type.name not in GPU_TYPES:
            what = "an unquantized LM head" if name in ("output.weight", "token_embd.weight") else f"tensor {name}"
            raise UnsupportedModelError(f"{what} is {t.tensor_type.name}: EdgeLLM's GPU kernels read "
                                        f"{', '.join(GPU_TYPES)}")
    embd = tensors.get("token_embd.weight")
    if embd is None or embd.tensor_type.name not in GPU_TYPES + FLOAT_EMBEDDING_TYPES:
        raise UnsupportedModelError(f"the token embedding is {embd.tensor_type.name if embd else 'missing'}: "
                                    f"EdgeLLM's GPU kernels read {', '.join(GPU_TYPES + FLOAT_EMBEDDING_TYPES)}")


class CudaEngine:
    """Greedy decoding on the GPU: `greedy(prompt_ids, n)`; `prefill(tokens)` a batch of tokens, `step(token)` one
    token, `last_logits()` the logits of the last position either gave."""

    device = "cuda"

    def __init__(self, path: str | Path, max_context: int = 2048, library: LibrarySpec = None, fused: bool = True,
                 reader=None, prefill_chunk: int | None = DEFAULT_PREFILL_CHUNK):
        """library: a Library, a path, or None for edgellm.cuda.library_path()'s choice. fused=False runs one launch
        per operation: the reference the fused step is tested against. reader: the file's GGUFReader where the
        caller has one open already. prefill_chunk: prompt tokens per prefill batch (the work buffers are sized for
        it); None feeds prompts one decode step per token (the reference of the prefill's tests)."""
        self.prefill_chunk = checked_prefill_chunk(prefill_chunk)
        self.fused = fused
        self._buffers: list[int] = []
        self.engine = P()
        reader = reader if reader is not None else open_gguf(path)
        self.config: Config = read_config(reader)
        self.max_context = min(max_context, self.config.context_length)
        self._tensors = {t.name: t for t in reader.tensors}
        refuse_unsupported(self.config, self._tensors)  # before the library and the device are touched
        self.library = Library.load(library)
        lib = self.lib = self.library.lib
        self.library.bind(SIGNATURES)
        lib.edgellm_engine_destroy.restype = None
        try:
            self._create()
        except BaseException:
            self.close()
            raise

    # --- weights -----------------------------------------------------------------------------------------------
    def _upload(self, array: np.ndarray) -> int:
        array = np.ascontiguousarray(array)
        ptr = P()
        self.library.check(self.lib.edgellm_device_alloc(array.nbytes, ctypes.byref(ptr)), "device allocation")
        self._buffers.append(ptr.value)
        self.library.check(self.lib.edgellm_device_upload(ptr, array.ctypes.data, array.nbytes), "weight upload")
        return ptr.value

    def _vector(self, name: str) -> int:
        from gguf.quants import dequantize

        t = self._tensors[name]
        return self._upload(np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(-1))

    def _matrix(self, name: str, allow_float: bool = False) -> QMatrix:
        return self._matrix_parts(name, None, allow_float)[0]

    def _matrix_parts(self, name: str, parts: list[int] | None, allow_float: bool = False) -> list[QMatrix]:
        """The matrix, or with `parts` (row counts adding up to its rows) its consecutive row ranges, each uploaded
        as a matrix of its own: the file's blocks of those rows, unchanged."""
        t = self._tensors.get(name)
        if t is None:
            raise UnsupportedModelError(f"the GGUF file lacks the tensor {name}")
        cols, rows = int(t.shape[0]), int(t.shape[1])
        qtype = t.tensor_type.name
        raw = np.asarray(t.data)
        if allow_float and qtype in FLOAT_EMBEDDING_TYPES and parts is None:
            return [QMatrix(self._upload(raw), None, None, None, 0 if qtype == "F32" else 1, rows, cols)]
        if qtype not in GPU_TYPES:
            raise UnsupportedModelError(f"tensor {name} is {qtype}: EdgeLLM's GPU kernels read "
                                        f"{', '.join(GPU_TYPES)}")
        fields = planar(qtype, raw.reshape(-1).view(np.uint8), rows, cols)
        parts = parts or [rows]
        if sum(parts) != rows:
            raise UnsupportedModelError(f"tensor {name} has {rows} rows where {sum(parts)} were expected")
        out, first = [], 0
        for n in parts:
            view = {k: self._upload(v) for k, v in row_range(qtype, fields, rows, first, first + n).items()}
            out.append(QMatrix(view.get("qs"), view.get("qh"), view.get("scales"), view.get("d"), type_id(qtype),
                               n, cols))
            first += n
        return out

    def _create(self) -> None:
        c = self.config
        qdim, kvdim = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
        layers = (Layer * c.n_layers)()
        for i in range(c.n_layers):
            p = f"blk.{i}."
            L = layers[i]
            if c.architecture == "phi3":  # fused: q, k, v rows of one matrix; gate then up rows of ffn_up
                L.wq, L.wk, L.wv = self._matrix_parts(p + "attn_qkv.weight", [qdim, kvdim, kvdim])
                L.w_gate, L.w_up = self._matrix_parts(p + "ffn_up.weight", [c.hidden_dim, c.hidden_dim])
            else:
                L.wq, L.wk, L.wv = (self._matrix(p + f"attn_{x}.weight") for x in "qkv")
                L.w_gate, L.w_up = (self._matrix(p + f"ffn_{x}.weight") for x in ("gate", "up"))
            L.wo = self._matrix(p + "attn_output.weight")
            L.w_down = self._matrix(p + "ffn_down.weight")
            L.attn_norm, L.ffn_norm = self._vector(p + "attn_norm.weight"), self._vector(p + "ffn_norm.weight")
            if c.qkv_bias:
                L.bq, L.bk, L.bv = (self._vector(p + f"attn_{x}.bias") for x in "qkv")
            if c.post_norms:
                L.post_attn_norm = self._vector(p + "post_attention_norm.weight")
                L.post_ffn_norm = self._vector(p + "post_ffw_norm.weight")
            if c.qk_norm:
                L.q_norm, L.k_norm = self._vector(p + "attn_q_norm.weight"), self._vector(p + "attn_k_norm.weight")
            local = c.is_local_layer(i)
            L.window = c.sliding_window if local else 0
            L.rope_base = c.rope_base_local if local and c.rope_base_local else c.rope_base
        embd = self._matrix("token_embd.weight", allow_float=True)
        output = embd if c.tied_embeddings else self._matrix("output.weight")
        factor_name = rope_factor_name(c, self._tensors, self.max_context)
        factors = self._vector(factor_name) if factor_name else None
        cfg = ModelConfig(c.n_layers, c.dim, c.n_heads, c.n_kv_heads, c.head_dim, c.hidden_dim, c.vocab_size,
                          self.max_context, c.norm_eps, c.rope_base, int(c.rope_style == "neox"), int(not self.fused),
                          c.scale, c.embedding_scale, ACTIVATIONS[c.activation], c.attn_softcap, c.final_softcap,
                          c.rope_attn_factor)
        self._keep = (layers, embd, output)  # the engine keeps pointers into these structs' values, not the structs
        self.library.check(self.lib.edgellm_engine_create(ctypes.byref(cfg), layers, ctypes.byref(embd),
                                                          ctypes.byref(output), self._vector("output_norm.weight"),
                                                          factors, ctypes.byref(self.engine)), "engine creation")

    # --- generation --------------------------------------------------------------------------------------------
    def reset(self) -> None:
        self.library.check(self.lib.edgellm_engine_reset(self.engine), "engine reset")

    def step(self, token: int | None = None) -> int:
        """Feeds `token` (None: the engine's previous choice, which never leaves the GPU) and returns the next."""
        nxt = ctypes.c_int()
        self.library.check(self.lib.edgellm_engine_step(self.engine, -1 if token is None else int(token),
                                                        ctypes.byref(nxt)), "decode step")
        return nxt.value

    def launch(self, token: int | None = None) -> None:
        """Queues a step (token as in step) and returns at once; collect() gives its choice. Up to 4 queued steps;
        step and prefill are refused while any is, reset drops them."""
        self.library.check(self.lib.edgellm_engine_launch(self.engine, -1 if token is None else int(token)),
                           "decode step launch")

    def collect(self) -> int:
        """The choice of the oldest queued step, once it has run."""
        nxt = ctypes.c_int()
        self.library.check(self.lib.edgellm_engine_collect(self.engine, ctypes.byref(nxt)), "decode step")
        return nxt.value

    def _prefill_call(self, tokens: list[int], chunk: int | None, host_all: np.ndarray | None) -> int:
        n = len(tokens)
        chunk = checked_prefill_chunk(chunk if chunk is not None else self.prefill_chunk or DEFAULT_PREFILL_CHUNK)
        array = np.ascontiguousarray(tokens, dtype=np.int32)  # held here while the library reads it
        ids = array.ctypes.data_as(ctypes.POINTER(ctypes.c_int))
        if host_all is None:
            nxt = ctypes.c_int()
            self.library.check(self.lib.edgellm_engine_prefill(self.engine, ids, n, chunk, ctypes.byref(nxt)),
                               "prefill")
            return nxt.value
        self.library.check(self.lib.edgellm_engine_prefill_logits(self.engine, ids, n, chunk, host_all.ctypes.data),
                           "prefill with logits")
        return int(np.argmax(host_all[-1]))

    def prefill(self, tokens: list[int], chunk: int | None = None) -> int:
        """Feeds `tokens` as a batch, `chunk` at a time (default: the engine's prefill_chunk), from the present
        position, and returns the greedy next token: the engine is where one step per token would have left it, so
        step(None) continues from here. Refused before any device work past the context or outside the
        vocabulary."""
        if not tokens:
            raise EdgeLLMError("an empty prefill: it takes at least one token")
        return self._prefill_call(tokens, chunk, None)

    def prefill_logits(self, tokens: list[int], chunk: int | None = None) -> np.ndarray:
        """prefill that also returns every position's logits, float32 [len(tokens), vocab] (teacher forcing)."""
        if not tokens:
            raise EdgeLLMError("an empty prefill: it takes at least one token")
        out = np.empty((len(tokens), self.config.vocab_size), np.float32)
        self._prefill_call(tokens, chunk, out)
        return out

    def graph_nodes(self) -> int:
        """Nodes (kernel launches, mostly) of the captured step; 0 until the second step has captured it."""
        n = ctypes.c_size_t()
        self.library.check(self.lib.edgellm_engine_graph_nodes(self.engine, ctypes.byref(n)), "graph inspection")
        return n.value

    def last_logits(self) -> np.ndarray:
        """The logits [vocab] of the last step."""
        out = np.empty(self.config.vocab_size, np.float32)
        self.library.check(self.lib.edgellm_engine_logits(self.engine, out.ctypes.data), "logits copy")
        return out

    def logits(self, token_ids: list[int]) -> np.ndarray:
        """Teacher-forced logits of every position, [len(token_ids), vocab], from an empty cache: one batched
        prefill (with prefill_chunk None, one decode step per token)."""
        self.reset()
        if self.prefill_chunk is not None:
            return self.prefill_logits(token_ids)
        rows = []
        for token in token_ids:
            self.step(token)
            rows.append(self.last_logits())
        return np.stack(rows)

    def greedy(self, prompt_ids: list[int], max_new_tokens: int):
        """Greedy tokens after the prompt, yielded as they come: the prompt through one batched prefill (with
        prefill_chunk None, one decode step per token), its choice the first token, then one captured decode step
        per further token. Each step feeds the previous choice, which never leaves the GPU, so the next step is
        queued before a token is yielded: the GPU runs its steps back to back while the caller handles the token
        (a caller that stops early leaves at most one step unused, dropped at the next reset). The caller checks
        that the prompt is not empty and that prompt and tokens fit max_context (checked here again before any
        device work)."""
        if not prompt_ids or len(prompt_ids) + max_new_tokens > self.max_context:
            raise ContextLengthError(f"{len(prompt_ids)} prompt + {max_new_tokens} new tokens: the prompt must be "
                                     f"non-empty and all fit the context of {self.max_context}")
        if max_new_tokens <= 0:
            return
        self.reset()
        if self.prefill_chunk is not None:
            nxt = self.prefill(prompt_ids)
        else:
            for t in prompt_ids:
                nxt = self.step(t)
        further = max_new_tokens - 1
        if further > 0:
            self.launch()
        yield nxt
        for i in range(further):
            if i + 1 < further:
                self.launch()  # behind the one collected next
            yield self.collect()

    def build_info(self) -> str:
        gpu = device_name() or "no CUDA device"
        step = "fused step" if self.fused else "unfused step"
        prefill = (f"prompt prefill in chunks of {self.prefill_chunk}" if self.prefill_chunk is not None
                   else "prompt one step per token")
        return f"cuda kernels {self.library.path} on {gpu}, GGUF blocks as stored, {prefill}, {step} in a CUDA graph"

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
