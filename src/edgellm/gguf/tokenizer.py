"""Byte-level BPE tokenization exactly as llama.cpp does it, from the GGUF's own vocabulary and merges.

llama.cpp (src/llama-vocab.cpp) for `tokenizer.ggml.model == "gpt2"`:
1. special tokens (control and user-defined types) are matched literally first, longest first;
2. the remaining text is split by the pre-tokenizer regexes of `tokenizer.ggml.pre`, applied in sequence;
3. each piece's UTF-8 bytes are mapped to GPT-2's printable byte alphabet and merged by BPE rank;
4. a BOS token goes first only where `tokenizer.ggml.add_bos_token` says so.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Iterable

import regex

from ..errors import ModelFileError, UnsupportedModelError
from .reader import field

if TYPE_CHECKING:
    from .spm import SpmTokenizer

# The pre-tokenizer regexes of llama.cpp, by `tokenizer.ggml.pre`. Several are applied one after the other.
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
           r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
PRE_TOKENIZERS: dict[str, list[str]] = {
    "default": [r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
    "gpt2": [_GPT2],
    "gpt-2": [_GPT2],
    "smollm": [r"\p{N}", _GPT2],
    "starcoder": [r"\p{N}", _GPT2],
    "llama-bpe": [_LLAMA3],
    "llama3": [_LLAMA3],
    "qwen2": [_QWEN2],
}

TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED = 3, 4
# tokenizer.ggml.model values read here; "llama" (SentencePiece) lives in spm.py.
SUPPORTED_MODELS = "'gpt2' (byte-level BPE), 'llama' (SentencePiece)"


@functools.lru_cache(maxsize=1)
def byte_alphabet() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters."""
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


class Tokenizer:
    def __init__(self, tokens: list[str], merges: list[str], token_types: list[int], pre: str,
                 bos_id: int | None, eos_id: int | None, add_bos: bool):
        if pre not in PRE_TOKENIZERS:
            raise UnsupportedModelError(f"pre-tokenizer {pre!r} is not supported (supported: "
                                        f"{', '.join(sorted(PRE_TOKENIZERS))})")
        self.tokens = tokens
        self.ids = {t: i for i, t in enumerate(tokens)}
        self.ranks = {tuple(m.split(" ", 1)): r for r, m in enumerate(merges)}
        self.pre = [regex.compile(p) for p in PRE_TOKENIZERS[pre]]
        self.bos_id, self.eos_id, self.add_bos = bos_id, eos_id, add_bos
        specials = [t for t, ty in zip(tokens, token_types) if ty in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED)]
        specials.sort(key=len, reverse=True)
        self.special_re = regex.compile("|".join(regex.escape(s) for s in specials)) if specials else None
        self.eog_ids = {i for i in (eos_id,) if i is not None}
        for name in ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>", "<end_of_turn>"):
            if name in self.ids and token_types[self.ids[name]] == TOKEN_TYPE_CONTROL:
                self.eog_ids.add(self.ids[name])
        self.byte_map = byte_alphabet()
        self.byte_unmap = {c: b for b, c in self.byte_map.items()}

    @classmethod
    def from_gguf(cls, reader) -> "Tokenizer | SpmTokenizer":
        """The file's tokenizer, chosen by tokenizer.ggml.model: this class for "gpt2", SpmTokenizer for "llama"."""
        def get(key, default=None):
            return field(reader, key, default)

        model = get("tokenizer.ggml.model")
        if model == "llama":
            from .spm import SpmTokenizer

            return SpmTokenizer.from_gguf(reader)
        if model != "gpt2":
            raise UnsupportedModelError(f"tokenizer model {model!r} is not supported (supported: {SUPPORTED_MODELS})")
        tokens = get("tokenizer.ggml.tokens")
        if not tokens:
            raise ModelFileError("the GGUF file has no vocabulary (tokenizer.ggml.tokens)")
        types = get("tokenizer.ggml.token_type") or [1] * len(tokens)
        if len(types) != len(tokens):
            raise ModelFileError(f"the GGUF vocabulary has {len(tokens)} tokens but {len(types)} token types "
                                 f"(tokenizer.ggml.token_type)")
        return cls(tokens, get("tokenizer.ggml.merges") or [], types, get("tokenizer.ggml.pre", "default"),
                   get("tokenizer.ggml.bos_token_id"), get("tokenizer.ggml.eos_token_id"),
                   bool(get("tokenizer.ggml.add_bos_token", False)))

    def _split(self, text: str) -> list[str]:
        pieces = [text]
        for pattern in self.pre:
            out = []
            for piece in pieces:
                # Like llama.cpp's unicode_regex_split: matches become pieces, and so does the text between them.
                pos = 0
                for m in pattern.finditer(piece):
                    if m.start() > pos:
                        out.append(piece[pos:m.start()])
                    out.append(m.group())
                    pos = m.end()
                if pos < len(piece):
                    out.append(piece[pos:])
            pieces = out
        return pieces

    @functools.lru_cache(maxsize=65536)
    def _bpe(self, piece: str) -> tuple[int, ...]:
        symbols = [self.byte_map[b] for b in piece.encode("utf-8")]
        while len(symbols) > 1:
            best, best_rank = -1, None
            for i in range(len(symbols) - 1):
                rank = self.ranks.get((symbols[i], symbols[i + 1]))
                if rank is not None and (best_rank is None or rank < best_rank):
                    best, best_rank = i, rank
            if best < 0:
                break
            symbols[best:best + 2] = [symbols[best] + symbols[best + 1]]
        out = []
        for s in symbols:
            if s in self.ids:
                out.append(self.ids[s])
            else:  # not in the vocabulary: its bytes one by one, as llama.cpp falls back
                out.extend(self.ids[c] for c in s)
        return tuple(out)

    def encode(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        ids: list[int] = []
        if add_special and self.add_bos and self.bos_id is not None:
            ids.append(self.bos_id)
        segments: Iterable[tuple[str, bool]]
        if parse_special and self.special_re is not None:
            segments, pos = [], 0
            for m in self.special_re.finditer(text):
                segments.append((text[pos:m.start()], False))
                segments.append((m.group(), True))
                pos = m.end()
            segments.append((text[pos:], False))
        else:
            segments = [(text, False)]
        for segment, special in segments:
            if special:
                ids.append(self.ids[segment])
            elif segment:
                for piece in self._split(segment):
                    ids.extend(self._bpe(piece))
        return ids

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        out = bytearray()
        for i in ids:
            tok = self.tokens[i]
            if tok in self.ids and self.special_re is not None and self.special_re.fullmatch(tok):
                out += tok.encode("utf-8")
            else:
                out += bytes(self.byte_unmap.get(c, 0) for c in tok)
        return bytes(out)

    def decode(self, ids: Iterable[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", "replace")

    def is_eog(self, token_id: int) -> bool:
        return token_id in self.eog_ids
