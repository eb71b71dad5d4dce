"""SentencePiece tokenization as llama.cpp does it for `tokenizer.ggml.model == "llama"` (Gemma, Phi-3, Llama 2).

llama.cpp (src/llama-vocab.cpp, llm_tokenizer_spm and llama_vocab::impl) reads the vocabulary, the per-token scores
and token types from the GGUF, and then:
1. special tokens are cut out of the text first: one token at a time, the longest (in bytes) first, every occurrence;
   control and unknown tokens only when parse_special, user-defined ones always;
2. each remaining piece of text gets a space in front where `tokenizer.ggml.add_space_prefix` says so and the piece
   starts the text or follows a special token; spaces become the marker U+2581;
3. the piece is split into characters, and adjacent symbols whose concatenation is a vocabulary token are merged,
   the highest score first (ties: the leftmost), until no pair is a token;
4. a symbol that is no token is written as its UTF-8 bytes through the byte tokens <0xNN>;
5. BOS first and EOS last only where `add_bos_token` / `add_eos_token` say so (SentencePiece models default to BOS).

Decoding writes normal tokens with the marker turned back into spaces, byte tokens as their byte, control tokens as
their text only when asked; the detokenizer drops the space the encoder put in front of the first piece.
End-of-generation ids are the file's eos/eot/eom ids and the tokens llama.cpp recognises by their text.
"""

from __future__ import annotations

import heapq
from typing import Iterable

from ..errors import ModelFileError
from .reader import field

SPACE_MARKER = "\u2581"
ASCII_SPACE = " \t\n\v\f\r"  # C isspace() in the C locale: what llama.cpp strips next to LSTRIP/RSTRIP tokens

# llama_token_attr bits.
ATTR_UNDEFINED, ATTR_UNKNOWN, ATTR_UNUSED, ATTR_NORMAL = 0, 1 << 0, 1 << 1, 1 << 2
ATTR_CONTROL, ATTR_USER_DEFINED, ATTR_BYTE = 1 << 3, 1 << 4, 1 << 5
ATTR_LSTRIP, ATTR_RSTRIP = 1 << 7, 1 << 8
# GGUF token types (tokenizer.ggml.token_type) -> attributes; any other number is undefined.
TYPE_TO_ATTR = {0: ATTR_UNDEFINED, 1: ATTR_NORMAL, 2: ATTR_UNKNOWN, 3: ATTR_CONTROL, 4: ATTR_USER_DEFINED,
                5: ATTR_UNUSED, 6: ATTR_BYTE}

# The texts llama.cpp recognises, when the file names no such id, as end-of-turn / end-of-message / fill-in-the-middle
# tokens (each makes the token a control token), and the texts that always end a generation.
EOT_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
             "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>")
EOM_TEXTS = ("<|eom_id|>",)
FIM_TEXTS = {
    "pre": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>",
            "<|prefix|>"),
    "suf": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>",
            "<|suffix|>"),
    "mid": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>",
            "<|middle|>"),
    "pad": ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"),
    "rep": ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    "sep": ("<|file_sep|>",),
}
EOG_TEXTS = frozenset((
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
))
# Tokens llama.cpp always renders as text (gpt-oss's chat markers).
ALWAYS_USER_DEFINED = ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>")
# SentencePiece defaults where the file names no id (Llama 2's layout).
DEFAULT_BOS, DEFAULT_EOS, DEFAULT_UNK = 1, 2, 0


class SpmTokenizer:
    """Encode and decode with a GGUF's SentencePiece vocabulary, token for token as llama.cpp does."""

    def __init__(self, tokens: list[str], scores: list[float], token_types: list[int], *,
                 bos_id: int | None = DEFAULT_BOS, eos_id: int | None = DEFAULT_EOS, eot_id: int | None = None,
                 eom_id: int | None = None, fim_ids: dict[str, int] | None = None, add_bos: bool = True,
                 add_eos: bool = False, add_space_prefix: bool = True, model_name: str = ""):
        if len(scores) != len(tokens) or len(token_types) != len(tokens):
            raise ModelFileError(f"the GGUF vocabulary has {len(tokens)} tokens but {len(scores)} scores and "
                                 f"{len(token_types)} token types")
        # llama.cpp names empty tokens so that they stay distinct and refuses duplicates.
        self.tokens = [t if t else f"[EMPTY_{i}]" for i, t in enumerate(tokens)]
        self.ids: dict[str, int] = {}
        for i, t in enumerate(self.tokens):
            if self.ids.setdefault(t, i) != i:
                raise ModelFileError(f"duplicate token in the GGUF vocabulary: {t!r} has ids {self.ids[t]} and {i}")
        self.scores = [float(s) for s in scores]
        self.attrs = [TYPE_TO_ATTR.get(int(t), ATTR_UNDEFINED) for t in token_types]
        self.add_bos, self.add_eos, self.add_space_prefix = add_bos, add_eos, add_space_prefix
        self.bos_id, self.eos_id = bos_id, eos_id
        if add_bos and bos_id is None:
            raise ModelFileError("the GGUF asks for a BOS token (tokenizer.ggml.add_bos_token) but names none")
        if add_eos and eos_id is None:
            raise ModelFileError("the GGUF asks for an EOS token (tokenizer.ggml.add_eos_token) but names none")
        self.eog_ids = self._end_of_generation(eot_id, eom_id, fim_ids or {})
        for text in ALWAYS_USER_DEFINED:
            if text in self.ids:
                self.attrs[self.ids[text]] = ATTR_USER_DEFINED
        specials = [i for i, a in enumerate(self.attrs) if a & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)]
        # Longest first, as llama.cpp cuts them out; among equal lengths by id (llama.cpp's order there is unspecified).
        self.specials = sorted(specials, key=lambda i: -len(self.tokens[i].encode("utf-8")))
        self._mark_phi3_strip(model_name.lower())
        self._pieces = [self._piece(i) for i in range(len(self.tokens))]

    @classmethod
    def from_gguf(cls, reader) -> "SpmTokenizer":
        def get(key, default=None):
            return field(reader, key, default)

        tokens = get("tokenizer.ggml.tokens")
        if not tokens:
            raise ModelFileError("the GGUF file has no vocabulary (tokenizer.ggml.tokens)")
        n = len(tokens)
        scores = get("tokenizer.ggml.scores") or [0.0] * n
        types = get("tokenizer.ggml.token_type") or [1] * n
        if len(scores) < n or len(types) < n:
            raise ModelFileError(f"the GGUF vocabulary has {n} tokens but {len(scores)} scores "
                                 f"(tokenizer.ggml.scores) and {len(types)} token types (tokenizer.ggml.token_type)")

        def token_id(key: str, default: int | None) -> int | None:
            # As llama.cpp: a default out of the vocabulary is dropped; an id out of it keeps the default.
            if default is not None and default >= n:
                default = None
            value = get(key)
            return int(value) if value is not None and 0 <= int(value) < n else default

        return cls(tokens, scores[:n], types[:n],
                   bos_id=token_id("tokenizer.ggml.bos_token_id", DEFAULT_BOS),
                   eos_id=token_id("tokenizer.ggml.eos_token_id", DEFAULT_EOS),
                   eot_id=token_id("tokenizer.ggml.eot_token_id", None),
                   eom_id=token_id("tokenizer.ggml.eom_token_id", None),
                   fim_ids={kind: i for kind in FIM_TEXTS
                            if (i := token_id(f"tokenizer.ggml.fim_{kind}_token_id", None)) is not None},
                   add_bos=bool(get("tokenizer.ggml.add_bos_token", True)),
                   add_eos=bool(get("tokenizer.ggml.add_eos_token", False)),
                   add_space_prefix=bool(get("tokenizer.ggml.add_space_prefix", True)),
                   model_name=str(get("general.name", "") or ""))

    # -- special tokens ---------------------------------------------------------------------------------------------

    def _first_with_text(self, texts: Iterable[str]) -> int | None:
        found = [self.ids[t] for t in texts if t in self.ids]
        return min(found) if found else None

    def _end_of_generation(self, eot_id: int | None, eom_id: int | None, fim_ids: dict[str, int]) -> frozenset[int]:
        """llama.cpp's special_eog_ids; tokens it recognises by their text become control tokens on the way."""
        def as_control(i: int | None) -> int | None:
            if i is not None:
                self.attrs[i] |= ATTR_CONTROL
            return i

        if eot_id is None:
            eot_id = as_control(self._first_with_text(EOT_TEXTS))
        if eom_id is None:
            eom_id = as_control(self._first_with_text(EOM_TEXTS))
        fim = {kind: fim_ids[kind] if kind in fim_ids else as_control(self._first_with_text(texts))
               for kind, texts in FIM_TEXTS.items()}
        eog = {fim[k] for k in ("pad", "rep", "sep") if fim[k] is not None}
        for text in EOG_TEXTS:
            if text in self.ids:
                eog.add(as_control(self.ids[text]))
        eog |= {i for i in (self.eos_id, eot_id, eom_id) if i is not None}
        texts = {self.tokens[i]: i for i in eog}
        # gpt-oss and solar-open: "<|end|>" ends a message, not the generation, next to these markers.
        if "<|end|>" in texts and (("<|return|>" in texts and ("<|call|>" in texts or "<|calls|>" in texts))
                                   or (("<|call|>" in texts or "<|calls|>" in texts) and "<|flush|>" in texts)):
            eog.discard(texts["<|end|>"])
            self.attrs[texts["<|end|>"]] = ATTR_USER_DEFINED
        # gemma4 and paddleocr: "</s>" is an ordinary token next to "<|tool_response>".
        if "<|tool_response>" in texts and "</s>" in texts:
            eog.discard(texts["</s>"])
            self.attrs[texts["</s>"]] = ATTR_NORMAL
        return frozenset(eog)

    def _mark_phi3_strip(self, model_name: str) -> None:
        """llama.cpp's per-model rule: in Phi-3 files (by general.name) special tokens eat the whitespace after them,
        except <unk>, <s> and <|endoftext|>."""
        if "phi-3" not in model_name and "phi3" not in model_name:
            return
        for i in self.specials:
            self.attrs[i] |= ATTR_RSTRIP
        for text, strip in (("</s>", True), ("<unk>", False), ("<s>", False), ("<|endoftext|>", False)):
            if text in self.ids:
                i = self.ids[text]
                self.attrs[i] = self.attrs[i] | ATTR_RSTRIP if strip else self.attrs[i] & ~ATTR_RSTRIP

    def is_eog(self, token_id: int) -> bool:
        return token_id in self.eog_ids

    # -- encoding ---------------------------------------------------------------------------------------------------

    def _partition(self, text: str, parse_special: bool) -> list[str | int]:
        """The text cut at special tokens: raw text pieces (str) and token ids (int), in order."""
        fragments: list[str | int] = [text]
        for i in self.specials:
            attr, special = self.attrs[i], self.tokens[i]
            if not parse_special and attr & (ATTR_CONTROL | ATTR_UNKNOWN):
                continue
            if special not in text:  # it can be in no fragment either: skip the scan
                continue
            out: list[str | int] = []
            for fragment in fragments:
                if isinstance(fragment, int) or special not in fragment:
                    out.append(fragment)
                    continue
                pos = 0
                while True:
                    match = fragment.find(special, pos)
                    if match < 0:
                        if pos < len(fragment):
                            out.append(fragment[pos:])
                        break
                    left = fragment[pos:match]
                    if attr & ATTR_LSTRIP:
                        left = left.rstrip(ASCII_SPACE)
                    if left:
                        out.append(left)
                    out.append(i)
                    pos = match + len(special)
                    if attr & ATTR_RSTRIP:
                        while pos < len(fragment) and fragment[pos] in ASCII_SPACE:
                            pos += 1
            fragments = out
        return fragments

    def _byte_token(self, byte: int) -> int:
        token = self.ids.get(f"<0x{byte:02X}>")
        if token is None and byte < 0x80:
            token = self.ids.get(chr(byte))
        if token is None:
            raise ModelFileError(f"the GGUF vocabulary has no token for the byte 0x{byte:02X} (<0x{byte:02X}>), so "
                                 f"text with it cannot be tokenized")
        return token

    def _merge(self, text: str, out: list[int]) -> None:
        """llm_tokenizer_spm_session: merge the best-scoring adjacent pair until none is a token."""
        n = len(text)
        if n == 0:
            return
        start = list(range(n))             # symbol i covers text[start[i]:start[i] + length[i]]
        length = [1] * n
        prev = list(range(-1, n - 1))
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        ids, scores = self.ids, self.scores
        queue: list[tuple[float, int, int, int]] = []

        def try_pair(left: int, right: int) -> None:
            if left < 0 or right < 0:
                return
            size = length[left] + length[right]
            token = ids.get(text[start[left]:start[left] + size])
            if token is not None:
                # heapq pops the smallest: the highest score first, then the leftmost pair
                heapq.heappush(queue, (-scores[token], left, right, size))

        for i in range(1, n):
            try_pair(i - 1, i)
        while queue:
            _, left, right, size = heapq.heappop(queue)
            if length[left] == 0 or length[right] == 0 or length[left] + length[right] != size:
                continue  # one of the two was merged since the pair was queued
            length[left] += length[right]
            length[right] = 0
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prev[nxt[right]] = left
            try_pair(prev[left], left)
            try_pair(left, nxt[left])
        i = 0
        while i != -1:
            symbol = text[start[i]:start[i] + length[i]]
            token = ids.get(symbol)
            if token is not None:
                out.append(token)
            else:  # a character the vocabulary lacks: its UTF-8 bytes
                out.extend(self._byte_token(b) for b in symbol.encode("utf-8"))
            i = nxt[i]

    def encode(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        """Token ids of `text`, as llama_tokenize(text, add_special, parse_special)."""
        out: list[int] = []
        if add_special and self.add_bos:
            out.append(self.bos_id)
        prev_special = True  # the first piece of text gets the space prefix too
        for fragment in (self._partition(text, parse_special) if text else []):
            if isinstance(fragment, int):
                out.append(fragment)
                prev_special = True
                continue
            if self.add_space_prefix and prev_special:
                fragment = " " + fragment
            self._merge(fragment.replace(" ", SPACE_MARKER), out)
            prev_special = False
        if add_special and self.add_eos:
            out.append(self.eos_id)
        return out

    # -- decoding ---------------------------------------------------------------------------------------------------

    def _piece(self, token_id: int) -> bytes:
        attr, text = self.attrs[token_id], self.tokens[token_id]
        if attr & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED):
            return text.encode("utf-8")
        if attr & ATTR_NORMAL:
            return text.replace(SPACE_MARKER, " ").encode("utf-8")
        if attr & ATTR_BYTE:
            return bytes([int(text[3:5], 16)])
        return b""  # undefined and unused token types have no text

    def piece(self, token_id: int, special: bool = True) -> bytes:
        """llama_token_to_piece: the bytes of one token; control and unknown tokens only when `special`."""
        if not 0 <= token_id < len(self.tokens):
            return b""
        if not special and self.attrs[token_id] & (ATTR_UNKNOWN | ATTR_CONTROL):
            return b""
        return self._pieces[token_id]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The tokens' pieces one after the other, special tokens as their text: what a stream of them shows."""
        return b"".join(self.piece(i) for i in ids)

    def detokenize(self, ids: Iterable[int], remove_special: bool = False, unparse_special: bool = False) -> bytes:
        """llama_detokenize: the pieces, less the space the encoder put before the first piece of text."""
        ids = list(ids)
        remove_space = self.add_space_prefix
        if remove_special and self.add_bos and ids and ids[0] == self.bos_id:
            remove_space = False
            ids = ids[1:]
        if remove_special and self.add_eos and ids and ids[-1] == self.eos_id:
            ids = ids[:-1]
        out = []
        for i in ids:
            piece = self.piece(i, unparse_special)
            if remove_space and piece.startswith(b" "):
                piece = piece[1:]
            remove_space = False
            out.append(piece)
        return b"".join(out)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of the tokens, special tokens included, as llama.cpp's detokenizer writes it."""
        return self.detokenize(ids, unparse_special=True).decode("utf-8", "replace")
