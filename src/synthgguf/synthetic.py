"""Shape-exact synthetic models: the plan's models as random-weight GGUF files, written in seconds, no downloads.

Each preset has the real model's hyperparameters (published configs; parameter counts within 0.5% of the published
ones, tested), its architecture's tensor layout (llama, qwen2 with QKV biases, phi3 with fused QKV and gate-up,
gemma2 with its extra norms, soft-caps and sliding window), llama3 rope scaling where the model has it, tied or untied
embeddings, and the quant-type mix of llama.cpp's Q4_K_M (what the default Ollama tags hold): Q4_K, with Q6_K for
the output (or the tied embedding) and for attn_v and ffn_down in llama.cpp's "more bits" layers; rows whose length
is not a multiple of 256 fall back as llama.cpp does (Q4_K -> Q5_0, Q6_K -> Q8_0).

Weights are random quant blocks whose scales make every matrix's entries zero-mean with standard deviation
1/sqrt(fan_in), so activations keep their scale through every layer and the logits stay finite. The vocabulary has
the real size and the real file's kind: byte-level BPE (the 256 byte tokens, merged pairs, filler tokens) by default,
SentencePiece laid out like the real files for Phi-3.5 and Gemma 2 (sentencepiece_vocab.py). The file says it is
synthetic (the GGUF key `edgebench.synthetic`): its speed is real, its text is not.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from .sentencepiece_vocab import VocabularyError, add_to_gguf, sentencepiece_vocab


class SyntheticModelError(ValueError):
    """An unknown preset or quant mix: one line for the user, never a half-written file."""


@dataclass(frozen=True)
class Preset:
    arch: str               # GGUF architecture
    dim: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    tied: bool
    published: int          # the model's parameter count as its Hugging Face page states it (rounded there)
    head_dim: Optional[int] = None
    qkv_bias: bool = False
    rope_base: float = 10000.0
    context: int = 8192
    norm_eps: float = 1e-5
    llama3_rope: Optional[dict] = None   # {factor, low_freq_factor, high_freq_factor, original_context}
    tokenizer: str = "gpt2"              # "gpt2" (byte-level BPE) or "llama" (SentencePiece, laid out by arch)
    extra: dict = field(default_factory=dict)

    @property
    def hd(self) -> int:
        return self.head_dim or self.dim // self.heads


_L32 = {"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_context": 8192}
_L8 = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_context": 8192}

PRESETS: dict[str, Preset] = {
    "smollm-135m": Preset("llama", 576, 30, 9, 3, 1536, 49152, True, 135_000_000, rope_base=10000.0, context=2048),
    "qwen2.5-0.5b": Preset("qwen2", 896, 24, 14, 2, 4864, 151936, True, 494_000_000, qkv_bias=True,
                           rope_base=1e6, context=32768, norm_eps=1e-6),
    "qwen2.5-1.5b": Preset("qwen2", 1536, 28, 12, 2, 8960, 151936, True, 1_540_000_000, qkv_bias=True,
                           rope_base=1e6, context=32768, norm_eps=1e-6),
    "llama3.2-1b": Preset("llama", 2048, 16, 32, 8, 8192, 128256, True, 1_240_000_000, head_dim=64,
                          rope_base=500000.0, context=131072, llama3_rope=_L32),
    "llama3.2-3b": Preset("llama", 3072, 28, 24, 8, 8192, 128256, True, 3_210_000_000, head_dim=128,
                          rope_base=500000.0, context=131072, llama3_rope=_L32),
    "phi3.5-3.8b": Preset("phi3", 3072, 32, 32, 32, 8192, 32064, False, 3_820_000_000, context=4096,
                          tokenizer="llama"),
    "gemma2-2b": Preset("gemma2", 2304, 26, 8, 4, 9216, 256000, True, 2_610_000_000, head_dim=256, norm_eps=1e-6,
                        tokenizer="llama",
                        extra={"attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
                               "sliding_window": 4096}),
    "llama3.1-8b": Preset("llama", 4096, 32, 32, 8, 14336, 128256, False, 8_030_000_000, rope_base=500000.0,
                          context=131072, llama3_rope=_L8),
    "qwen2.5-7b": Preset("qwen2", 3584, 28, 28, 4, 18944, 152064, False, 7_620_000_000, qkv_bias=True,
                         rope_base=1e6, context=32768, norm_eps=1e-6),
    "mistral-7b": Preset("llama", 4096, 32, 32, 8, 14336, 32768, False, 7_250_000_000, rope_base=1e6,
                         context=32768),
}

QUANT_MIXES = ("Q4_K_M", "Q4_0", "Q8_0", "F16")


def tensor_shapes(p: Preset) -> list[tuple[str, tuple[int, ...]]]:
    """(name, (rows, cols)) of every tensor in the architecture's GGUF layout; 1-D tensors as (n,)."""
    d, hd, q, kv, ff = p.dim, p.hd, p.heads * p.hd, p.kv_heads * p.hd, p.ffn
    out: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (p.vocab, d))]
    for i in range(p.layers):
        b = f"blk.{i}."
        out.append((b + "attn_norm.weight", (d,)))
        if p.arch == "phi3":
            out += [(b + "attn_qkv.weight", (q + 2 * kv, d)), (b + "attn_output.weight", (d, q)),
                    (b + "ffn_norm.weight", (d,)), (b + "ffn_up.weight", (2 * ff, d)), (b + "ffn_down.weight", (d, ff))]
            continue
        out += [(b + "attn_q.weight", (q, d)), (b + "attn_k.weight", (kv, d)), (b + "attn_v.weight", (kv, d))]
        if p.qkv_bias:
            out += [(b + "attn_q.bias", (q,)), (b + "attn_k.bias", (kv,)), (b + "attn_v.bias", (kv,))]
        out += [(b + "attn_output.weight", (d, q))]
        if p.arch == "gemma2":
            out.append((b + "post_attention_norm.weight", (d,)))
        out += [(b + "ffn_norm.weight", (d,)), (b + "ffn_gate.weight", (ff, d)), (b + "ffn_up.weight", (ff, d)),
                (b + "ffn_down.weight", (d, ff))]
        if p.arch == "gemma2":
            out.append((b + "post_ffw_norm.weight", (d,)))
    out.append(("output_norm.weight", (d,)))
    if not p.tied:
        out.append(("output.weight", (p.vocab, d)))
    if p.llama3_rope:
        out.append(("rope_freqs.weight", (hd // 2,)))
    return out


def parameter_count(p: Preset) -> int:
    return sum(math.prod(shape) for name, shape in tensor_shapes(p) if name != "rope_freqs.weight")


def _more_bits(i: int, n: int) -> bool:
    """llama.cpp's use_more_bits: the first and last eighth of the layers, and every third one between."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def quant_type(name: str, shape: tuple[int, ...], p: Preset, mix: str) -> str:
    if len(shape) == 1:
        return "F32"
    if mix in ("Q4_0", "Q8_0", "F16"):
        kind = mix
        if name in ("output.weight",) or (p.tied and name == "token_embd.weight"):
            kind = "Q8_0" if mix == "Q4_0" else mix  # llama.cpp keeps the output at Q6_K/Q8_0 for legacy quants
    else:
        kind = "Q4_K"
        layer = int(name.split(".")[1]) if name.startswith("blk.") else -1
        if name == "output.weight" or (p.tied and name == "token_embd.weight"):
            kind = "Q6_K"
        elif (name.endswith("attn_v.weight") or name.endswith("ffn_down.weight") or name.endswith("attn_qkv.weight")) \
                and _more_bits(layer, p.layers):
            kind = "Q6_K"
    if kind in ("Q4_K", "Q6_K") and shape[-1] % 256:
        kind = {"Q4_K": "Q5_0", "Q6_K": "Q8_0"}[kind]
    return kind


# Per quant type: (weights per block, bytes per block, std of the integer levels about the block's centre).
_BLOCKS = {"Q4_0": (32, 18, math.sqrt(255 / 12)), "Q5_0": (32, 22, math.sqrt(1023 / 12)),
           "Q8_0": (32, 34, math.sqrt((255 ** 2 - 1) / 12)), "Q4_K": (256, 144, math.sqrt(255 / 12)),
           "Q6_K": (256, 210, math.sqrt(4095 / 12))}


def random_blocks(kind: str, rows: int, cols: int, std: float, rng: np.random.Generator) -> np.ndarray:
    """Random quant blocks of `kind` whose dequantized values have mean 0 and standard deviation `std`."""
    per, nbytes, level_std = _BLOCKS[kind]
    n = rows * cols // per
    raw = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    d = np.full((n, 1), std / level_std, np.float16).view(np.uint8)
    if kind in ("Q4_0", "Q5_0"):
        raw[:, 0:2] = d                       # value = d * (q - 8) or d * (q - 16)
    elif kind == "Q8_0":
        raw[:, 0:2] = d
        raw[:, 2:] = rng.integers(-127, 128, size=(n, 32), dtype=np.int8).view(np.uint8)  # no -128
    elif kind == "Q4_K":
        raw[:, 0:2] = d                       # d
        raw[:, 2:4] = d                       # dmin
        # 8 sub-blocks with scale 1 and min 8 (6-bit packed): value = d * q - d * 8 = d * (q - 8)
        raw[:, 4:8] = 1
        raw[:, 8:12] = 8
        raw[:, 12:16] = 1 | (8 << 4)
    elif kind == "Q6_K":
        raw[:, 192:208] = 1                   # 16 int8 sub-block scales of 1: value = d * (q - 32)
        raw[:, 208:210] = d
    return raw.reshape(rows, -1)


def llama3_rope_factors(p: Preset) -> np.ndarray:
    """The frequency factors convert_hf_to_gguf writes for llama3 rope scaling (rope_freqs.weight)."""
    s = p.llama3_rope
    base, dim = p.rope_base, p.hd
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    low_wavelen = s["original_context"] / s["low_freq_factor"]
    high_wavelen = s["original_context"] / s["high_freq_factor"]
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(s["factor"])
        else:
            smooth = (s["original_context"] / wavelen - s["low_freq_factor"]) / \
                (s["high_freq_factor"] - s["low_freq_factor"])
            out.append(1.0 / ((1 - smooth) / s["factor"] + smooth))
    return np.array(out, dtype=np.float32)


def byte_alphabet() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (byte-level BPE's base alphabet)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(keep, chars)}


def synthetic_vocab(size: int) -> tuple[list[str], list[str], list[int], int, int]:
    """(tokens, merges, token types, bos, eos): the 256 byte tokens of byte-level BPE first (so any text tokenizes),
    then merged byte pairs, then filler tokens up to the real vocabulary size, and five control tokens (BOS <s>,
    EOS </s>)."""
    if size < 256 + 5:  # the byte tokens and the control tokens must fit, or the token types would not line up
        raise SyntheticModelError(f"a synthetic vocabulary needs at least 261 tokens (256 bytes + 5 control), "
                                  f"not {size}")
    chars = list(byte_alphabet().values())
    tokens = chars[:]
    merges = []
    letters = [c for c in chars if c.isalpha() or c == "Ġ"][:60]
    for a in letters:
        for b in letters:
            if len(tokens) >= min(size - 5, 256 + 3000):
                break
            tokens.append(a + b)
            merges.append(f"{a} {b}")
    # Control tokens last, under the names llama.cpp looks up for some architectures (phi3: <s>, </s>, <unk>, ...).
    specials = ["<unk>", "<|endoftext|>", "<|end|>", "<s>", "</s>"]
    tokens += [f"<synthetic_{i}>" for i in range(len(tokens), size - len(specials))]
    tokens += specials
    types = [1] * (size - len(specials)) + [3] * len(specials)
    return tokens, merges, types, size - 2, size - 1


def _add_vocab(w, p: Preset) -> None:
    if p.tokenizer not in ("gpt2", "llama"):
        raise SyntheticModelError(f"unknown tokenizer {p.tokenizer!r} in a preset; choose 'gpt2' or 'llama'")
    if p.tokenizer == "llama":
        try:
            vocab = sentencepiece_vocab(p.arch, p.vocab)
        except VocabularyError as exc:
            raise SyntheticModelError(str(exc)) from None
        add_to_gguf(w, vocab)
        return
    tokens, merges, types, bos, eos = synthetic_vocab(p.vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(bos)
    w.add_eos_token_id(eos)
    w.add_add_bos_token(False)


def write_synthetic(preset: str, path: str | Path, quant: str = "Q4_K_M", seed: int = 0,
                    progress: bool = False) -> dict:
    """Write the preset as a GGUF file (atomically); returns {parameter_count, bytes, quant_mix}."""
    import gguf
    from tqdm import tqdm

    if preset not in PRESETS:
        raise SyntheticModelError(f"unknown synthetic preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if quant not in QUANT_MIXES:
        raise SyntheticModelError(f"unknown quant mix {quant!r}; choose one of {', '.join(QUANT_MIXES)}")
    p = PRESETS[preset]
    rng = np.random.default_rng(seed)
    shapes = tensor_shapes(p)
    with _atomic_path(path) as tmp:
        w = gguf.GGUFWriter(str(tmp), p.arch)
        a = p.arch
        w.add_name(f"synthetic {preset} ({quant})")
        w.add_bool("edgebench.synthetic", True)
        w.add_string("edgebench.preset", preset)
        w.add_uint32(f"{a}.context_length", p.context)
        w.add_uint32(f"{a}.embedding_length", p.dim)
        w.add_uint32(f"{a}.block_count", p.layers)
        w.add_uint32(f"{a}.feed_forward_length", p.ffn)
        w.add_uint32(f"{a}.attention.head_count", p.heads)
        w.add_uint32(f"{a}.attention.head_count_kv", p.kv_heads)
        w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", p.norm_eps)
        w.add_float32(f"{a}.rope.freq_base", p.rope_base)
        w.add_uint32(f"{a}.rope.dimension_count", p.hd)
        w.add_uint32(f"{a}.attention.key_length", p.hd)
        w.add_uint32(f"{a}.attention.value_length", p.hd)
        w.add_uint32(f"{a}.vocab_size", p.vocab)
        for key, value in p.extra.items():
            if key == "sliding_window":
                w.add_uint32(f"{a}.attention.sliding_window", value)
            elif key == "attn_logit_softcapping":
                w.add_float32(f"{a}.attn_logit_softcapping", value)
            elif key == "final_logit_softcapping":
                w.add_float32(f"{a}.final_logit_softcapping", value)
        file_type = {"Q4_K_M": gguf.LlamaFileType.MOSTLY_Q4_K_M, "Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
                     "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "F16": gguf.LlamaFileType.MOSTLY_F16}[quant]
        w.add_file_type(file_type)
        w.add_quantization_version(2)
        _add_vocab(w, p)
        kinds: dict[str, int] = {}
        for name, shape in tqdm(shapes, desc=f"synth {preset}", unit="tensor", disable=not progress, leave=False):
            if name == "rope_freqs.weight":
                w.add_tensor(name, llama3_rope_factors(p))
                continue
            kind = quant_type(name, shape, p, quant)
            kinds[kind] = kinds.get(kind, 0) + 1
            if kind == "F32":
                # norms of one, biases of zero
                w.add_tensor(name, np.zeros(shape, np.float32) if name.endswith(".bias") else
                             np.ones(shape, np.float32))
                continue
            rows, cols = shape
            std = 1.0 / math.sqrt(cols)
            if kind == "F16":
                w.add_tensor(name, (rng.standard_normal(shape, np.float32) * std).astype(np.float16))
            else:
                w.add_tensor(name, random_blocks(kind, rows, cols, std, rng), raw_dtype=gguf.GGMLQuantizationType[kind])
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return {"parameter_count": parameter_count(p), "bytes": Path(path).stat().st_size, "tensor_types": kinds}


@contextlib.contextmanager
def _atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary file beside the target, renamed over it only when the block finishes: no half-written GGUF."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
