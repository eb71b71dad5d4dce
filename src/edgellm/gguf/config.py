"""A GGUF file's model configuration: the shapes and constants of the forward pass, on every device.

Supported: the llama family of the plan -- `llama` (SmolLM, Llama 3.x with llama3 rope scaling, Mistral) and
`qwen2` (QKV biases) -- plus `phi3` (fused QKV and gate+up, long/short rope factors) and the gemma family, `gemma2`
and `gemma3` (GeGLU, a norm after attention and after the FFN, scaled embeddings, sliding-window layers; gemma2's
soft-caps, gemma3's Q/K norms). Anything else is refused by name.

Every constant comes from the file's own keys. Where the file leaves one implicit, the value is the one llama.cpp
uses on the same file (the reference the tests compare against): the gemma query scale, the sliding-window layer
pattern and gemma3's local rope base. Gemma's norm weights need no +1: llama.cpp's converter writes them with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ModelFileError, UnsupportedModelError
from .reader import array_length, field

SUPPORTED_ARCHITECTURES = ("llama", "qwen2", "phi3", "gemma2", "gemma3")
GEMMA_FAMILY = ("gemma2", "gemma3")
# rope on (x_i, x_{i+d/2}) pairs, as llama.cpp's llama_model_rope_type says for these; `llama` rotates adjacent pairs
NEOX_ROPE = ("qwen2", "phi3", "gemma2", "gemma3")
# Sliding-window layers: layer i is local when i % pattern < pattern - 1 (llama.cpp's set_swa_pattern): every other
# layer from the first for gemma2, five of every six for gemma3. The files do not carry the pattern.
SLIDING_WINDOW_PATTERN = {"gemma2": 2, "gemma3": 6}
# gemma3's local layers rotate with base 10000 (llama.cpp's rope_freq_base_train_swa) unless the file says otherwise.
GEMMA3_LOCAL_ROPE_BASE = 10000.0
# The 27B gemmas scale queries by 1/sqrt(dim / heads) instead of 1/sqrt(head dim) (their query_pre_attn_scalar);
# llama.cpp recognises them by their layer count.
GEMMA_27B_LAYERS = {"gemma2": 46, "gemma3": 62}


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
    # "neox": rotate (x_i, x_{i+d/2}) as it does for `qwen2`, `phi3` and the gemmas.
    rope_style: str
    tied_embeddings: bool
    qkv_bias: bool
    # --- beyond the llama family; the defaults are the llama family's behaviour ---
    query_scale: float = 0.0          # multiplies q.k; 0 means 1/sqrt(head_dim)
    embedding_scale: float = 1.0      # gemma: sqrt(dim)
    activation: str = "silu"          # "silu" (SwiGLU) or "gelu_tanh" (GeGLU with tanh-approximated GELU)
    post_norms: bool = False          # gemma: RMSNorm on the attention output and on the FFN output
    qk_norm: bool = False             # gemma3: RMSNorm over each head of q and k before RoPE
    attn_softcap: float = 0.0         # scores become cap * tanh(scores / cap); 0: none
    final_softcap: float = 0.0        # logits likewise
    sliding_window: int = 0           # a local layer's query at p sees keys p - window + 1 .. p; 0: no local layers
    sliding_window_pattern: int = 1   # see SLIDING_WINDOW_PATTERN
    rope_base_local: float = 0.0      # rope base of the local layers; 0 means rope_base
    rope_original_context: int = 0    # phi3: above this context llama.cpp takes the long rope factors
    rope_attn_factor: float = 1.0     # phi3: cos and sin scaled by it (llama.cpp's rope.scaling.attn_factor)

    @property
    def scale(self) -> float:
        return self.query_scale or 1.0 / math.sqrt(self.head_dim)

    def is_local_layer(self, layer: int) -> bool:
        p = self.sliding_window_pattern
        return self.sliding_window > 0 and p > 1 and layer % p < p - 1


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

    def number(key, default):
        value = field(reader, f"{arch}.{key}")
        if value is None:
            return default
        if isinstance(value, (list, str, bytes)):
            raise ModelFileError(f"the GGUF metadata key {arch}.{key} is {value!r}, not a number")
        return value

    dim, n_heads = int(need("embedding_length")), int(need("attention.head_count"))
    n_layers = int(need("block_count"))
    head_dim = int(field(reader, f"{arch}.attention.key_length") or field(reader, f"{arch}.rope.dimension_count")
                   or dim // n_heads)
    names = {t.name for t in reader.tensors}
    vocab = array_length(reader, "tokenizer.ggml.tokens") or int(need("vocab_size"))
    context = int(number("context_length", 2048))
    extra = {}
    if arch in GEMMA_FAMILY:
        scale_dim = dim // n_heads if n_layers == GEMMA_27B_LAYERS[arch] else head_dim
        window = int(number("attention.sliding_window", 0))
        extra = dict(query_scale=1.0 / math.sqrt(scale_dim), embedding_scale=math.sqrt(dim), activation="gelu_tanh",
                     post_norms=True, qk_norm=arch == "gemma3", sliding_window=window,
                     sliding_window_pattern=SLIDING_WINDOW_PATTERN[arch])
        if arch == "gemma2":
            # llama.cpp's defaults where a gemma2 file lacks the keys (the converter always writes both)
            extra.update(attn_softcap=float(number("attn_logit_softcapping", 50.0)),
                         final_softcap=float(number("final_logit_softcapping", 30.0)))
        else:
            extra.update(final_softcap=float(number("final_logit_softcapping", 0.0)),
                         rope_base_local=float(number("rope.freq_base_swa", GEMMA3_LOCAL_ROPE_BASE)))
    if arch == "phi3":
        extra = dict(rope_original_context=int(number("rope.scaling.original_context_length", context)),
                     rope_attn_factor=float(number("rope.scaling.attn_factor", 1.0)))
    return Config(
        architecture=arch, dim=dim, n_layers=n_layers, n_heads=n_heads,
        n_kv_heads=int(field(reader, f"{arch}.attention.head_count_kv") or n_heads), head_dim=head_dim,
        hidden_dim=int(need("feed_forward_length")), vocab_size=vocab,
        context_length=context,
        norm_eps=float(need("attention.layer_norm_rms_epsilon")),
        rope_base=float(number("rope.freq_base", 10000.0)),
        rope_style="neox" if arch in NEOX_ROPE else "norm",
        tied_embeddings="output.weight" not in names,
        qkv_bias="blk.0.attn_q.bias" in names,
        **extra,
    )
