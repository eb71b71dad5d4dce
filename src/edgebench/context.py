"""Context-length prompts: exactly N tokens of a fixed public-domain text, in each model's own tokenizer.

The text (src/edgebench/data/context_text.txt: the Declaration of Independence and the Gettysburg Address) is the
same for every backend and every run; it is repeated where N needs more of it. Real prose rather than random ids,
because some engines special-case repeated or unusual tokens. Tokenization is llama.cpp's, from the GGUF alone
(`vocab_only`: no weights loaded), with the rules every engine applies to a raw prompt: a BOS token only where the
GGUF asks for one, special tokens recognised. N counts every token the engine evaluates, BOS included.
"""

from __future__ import annotations

import functools
import os
from importlib import resources
from pathlib import Path

from . import EdgebenchError

CONTEXT_TEXT = "context_text.txt"
MAX_SKIPPED_WORDS = 16
CONTEXT_PROMPT_PREFIX = "ctx"  # prompt id of a context run: ctx512


def context_text() -> str:
    return resources.files("edgebench").joinpath("data", CONTEXT_TEXT).read_text(encoding="utf-8")


def context_text_path() -> Path:
    return Path(str(resources.files("edgebench").joinpath("data", CONTEXT_TEXT)))


def prompt_id(tokens: int) -> str:
    return f"{CONTEXT_PROMPT_PREFIX}{tokens}"


class Tokenizer:
    """A GGUF's tokenizer through llama.cpp's vocab-only loading."""

    def __init__(self, gguf_path: str | os.PathLike):
        try:
            import llama_cpp
        except ImportError:
            raise EdgebenchError("context sweeps tokenize prompts with the model's GGUF tokenizer through "
                                 "llama-cpp-python, which is not installed: pip install -e '.[llamacpp]'") from None
        from .backends.llamacpp import quiet_stderr

        if not Path(gguf_path).is_file():
            raise EdgebenchError(f"GGUF file not found: {gguf_path}")
        try:
            with quiet_stderr():
                self._llm = llama_cpp.Llama(model_path=str(gguf_path), vocab_only=True, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise EdgebenchError(f"llama.cpp could not read the tokenizer of {gguf_path}: {exc}") from None
        model = self._llm._model
        self.add_bos = model.add_bos_token() if hasattr(model, "add_bos_token") else True

    def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
        bos = self.add_bos if add_bos is None else add_bos
        return self._llm.tokenize(text.encode("utf-8"), add_bos=bos, special=True)

    def decode(self, ids: list[int]) -> str:
        return self._llm.detokenize(ids).decode("utf-8", "replace")

    def close(self) -> None:
        self._llm.close()


@functools.lru_cache(maxsize=8)
def _tokenizer(gguf_path: str) -> Tokenizer:
    return Tokenizer(gguf_path)


def context_prompt(gguf_path: str | os.PathLike, tokens: int, text: str | None = None) -> str:
    """A prefix of the (repeated) text that the GGUF's tokenizer turns into exactly `tokens` tokens.

    Cutting the token list and detokenizing can merge tokens at the cut (BPE is not closed under prefixes), so the
    cut is moved character by character until the re-tokenized text has the exact count; one clear error where no
    cut near it gives that count.
    """
    if tokens < 1:
        raise EdgebenchError(f"a context length must be a positive number of tokens, not {tokens}")
    tok = _tokenizer(str(gguf_path))
    base = text if text is not None else context_text()
    body_tokens = tokens - (1 if tok.add_bos else 0)
    if body_tokens < 1:
        raise EdgebenchError(f"a context of {tokens} token(s) leaves no room for text after the BOS token")
    per_copy = len(tok.encode(base, add_bos=False))
    copies = body_tokens // max(per_copy, 1) + 2
    full = "\n\n".join([base.strip()] * copies)
    # A few prefix lengths have no exact count (a paragraph break can add two tokens with one character); the text
    # then starts a word later, the same way for every model and run.
    for skip in range(MAX_SKIPPED_WORDS + 1):
        shifted = full.split(" ", skip)[-1] if skip else full
        ids = tok.encode(shifted, add_bos=False)
        start = len(tok.decode(ids[:body_tokens]))
        for length in _lengths_near(start, len(shifted)):
            candidate = shifted[:length]
            if len(tok.encode(candidate)) == tokens:
                return candidate
    raise EdgebenchError(f"no prefix of the context text is exactly {tokens} tokens in {gguf_path}'s tokenizer")


def _lengths_near(start: int, limit: int, reach: int = 64):
    yield start
    for d in range(1, reach + 1):
        for length in (start - d, start + d):
            if 0 < length <= limit:
                yield length


def grown_num_ctx(num_ctx: int, tokens: int, max_new_tokens: int) -> int:
    """The context a run of `tokens` prompt tokens needs: the config's, or prompt + new tokens when larger."""
    return max(int(num_ctx), int(tokens) + int(max_new_tokens))


def count_mismatch(expected: int | None, *reported: int | None) -> bool | None:
    """True when any count an engine reported differs from the prompt's length; None for named prompts."""
    if expected is None:
        return None
    counts = [r for r in reported if r is not None]
    if not counts:
        return True  # no count reported at all: cannot be accepted as matching
    return any(int(r) != int(expected) for r in counts)
