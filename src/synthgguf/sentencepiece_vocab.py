"""Synthetic SentencePiece ("llama") vocabularies laid out like the real files of Phi-3.5 and Gemma 2.

What a real SentencePiece GGUF holds, and so what these hold: a score per token (special tokens -1000 in Gemma's
files, 0 in Llama/Phi's; normal pieces more negative the rarer they are, which orders the merges), a token type
(normal 1, unknown 2, control 3, user-defined 4, byte 6), the 256 byte-fallback tokens <0x00>..<0xFF>, control tokens
at the ids the real files use, and the add_bos / add_space_prefix flags of the published tokenizer configs
(Phi-3.5: no BOS, a space prefix; Gemma: BOS, no space prefix). The normal pieces are the
printable ASCII characters with the U+2581 space marker, then pairs of them, then filler pieces: any text tokenizes
(the bytes catch the rest), merges happen, and the vocabulary has the real size. Its text is not the model's.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

SPACE_MARKER = "\u2581"
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, BYTE = 1, 2, 3, 4, 6
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]

# Phi-3.5-mini: Llama 2's <unk> <s> </s> and bytes, 32000 pieces, then 64 added chat tokens from 32000 on.
PHI3_ADDED = ["<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|placeholder2|>", "<|placeholder3|>",
              "<|placeholder4|>", "<|system|>", "<|end|>", "<|placeholder5|>", "<|placeholder6|>", "<|user|>"]
PHI3_BASE = 32000
# Gemma 2: <pad> <eos> <bos> <unk> <mask> [@BOS@], <unused0..98>, the turn markers at 106/107, newline runs
# (user-defined), then the bytes and the pieces.
GEMMA_HEAD = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[@BOS@]"] + [f"<unused{i}>" for i in range(100)] + \
    ["<start_of_turn>", "<end_of_turn>"]
GEMMA_NEWLINE_RUNS = 31


class VocabularyError(ValueError):
    """A vocabulary size the layout cannot hold."""


@dataclass(frozen=True)
class SentencePieceVocab:
    tokens: list[str]
    scores: list[float]
    types: list[int]
    bos: int
    eos: int
    unk: int
    pad: int | None
    add_bos: bool
    add_space_prefix: bool


def normal_pieces() -> list[str]:
    """The printable ASCII characters (space as the marker) and, after them, pairs that merge: ▁ or a letter
    followed by a lowercase letter."""
    chars = [SPACE_MARKER] + [c for c in string.printable if c.isprintable() and c != " "]
    pairs = [a + b for a in [SPACE_MARKER] + list(string.ascii_letters) for b in string.ascii_lowercase]
    return chars + pairs


def _with_pieces(head: list[tuple[str, float, int]], size: int, tail: list[tuple[str, float, int]],
                 layout: str) -> tuple[list[str], list[float], list[int]]:
    room = size - len(head) - len(tail)
    pieces = normal_pieces()
    if room < len(pieces):
        raise VocabularyError(f"a synthetic {layout} vocabulary needs at least {len(head) + len(tail) + len(pieces)} "
                              f"tokens (its special and byte tokens and {len(pieces)} pieces), not {size}")
    pieces += [f"{SPACE_MARKER}synthetic{i}" for i in range(room - len(pieces))]
    # rarer pieces score lower; the characters first keep every single character a token
    body = [(p, -float(rank), NORMAL) for rank, p in enumerate(pieces)]
    rows = head + body + tail
    return [t for t, _, _ in rows], [s for _, s, _ in rows], [ty for _, _, ty in rows]


def phi3_vocab(size: int) -> SentencePieceVocab:
    head = [("<unk>", 0.0, UNKNOWN), ("<s>", 0.0, CONTROL), ("</s>", 0.0, CONTROL)]
    head += [(b, 0.0, BYTE) for b in BYTE_TOKENS]
    # the real size puts the added tokens at 32000..32063; a smaller vocabulary keeps the named ones
    n_added = max(len(PHI3_ADDED), size - PHI3_BASE)
    added = PHI3_ADDED + [f"<|placeholder{i}|>" for i in range(7, 7 + n_added - len(PHI3_ADDED))]
    tail = [(t, 0.0, CONTROL) for t in added]
    tokens, scores, types = _with_pieces(head, size, tail, "phi3")
    return SentencePieceVocab(tokens, scores, types, bos=1, eos=tokens.index("<|endoftext|>"), unk=0,
                              pad=tokens.index("<|endoftext|>"), add_bos=False, add_space_prefix=True)


def gemma_vocab(size: int) -> SentencePieceVocab:
    head = [(t, -1000.0, CONTROL) for t in GEMMA_HEAD]
    head += [("\n" * n, -1000.0, USER_DEFINED) for n in range(1, GEMMA_NEWLINE_RUNS + 1)]
    head += [(b, 0.0, BYTE) for b in BYTE_TOKENS]
    tokens, scores, types = _with_pieces(head, size, [], "gemma")
    return SentencePieceVocab(tokens, scores, types, bos=2, eos=1, unk=3, pad=0, add_bos=True,
                              add_space_prefix=False)


LAYOUTS = {"phi3": phi3_vocab, "gemma2": gemma_vocab, "gemma3": gemma_vocab}


def sentencepiece_vocab(arch: str, size: int) -> SentencePieceVocab:
    if arch not in LAYOUTS:
        raise VocabularyError(f"no SentencePiece vocabulary layout for architecture {arch!r} "
                              f"(there are: {', '.join(LAYOUTS)})")
    return LAYOUTS[arch](size)


def add_to_gguf(writer, vocab: SentencePieceVocab) -> None:
    """The tokenizer keys of a SentencePiece GGUF, as llama.cpp's converter writes them."""
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(vocab.tokens)
    writer.add_token_scores(vocab.scores)
    writer.add_token_types(vocab.types)
    writer.add_bos_token_id(vocab.bos)
    writer.add_eos_token_id(vocab.eos)
    writer.add_unk_token_id(vocab.unk)
    if vocab.pad is not None:
        writer.add_pad_token_id(vocab.pad)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(vocab.add_space_prefix)
