"""SentencePiece ("llama") tokenization against llama.cpp: small vocabularies whose answer can be worked out by hand,
then the real Gemma 3 270M file, token for token (ids, pieces, detokenized text, end-of-generation ids)."""

from __future__ import annotations

import ctypes
from pathlib import Path

import gguf
import pytest

from edgellm.errors import UnsupportedModelError
from edgellm.gguf import open_gguf
from edgellm.gguf.spm import ATTR_RSTRIP, SpmTokenizer
from edgellm.gguf.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[2]
CONTEXT_TEXT = ROOT / "src" / "edgebench" / "data" / "context_text.txt"  # the context sweep's text (read as data)
PROMPTS = ["Hello", "What is machine learning?", "Explain quantum computing in simple terms.",
           "Write a detailed explanation of how neural networks work, including backpropagation."]
# Texts that reach every branch of the tokenizer: the space prefix, whitespace runs, digits, unicode the vocabulary
# has and characters it lacks (byte fallback), newlines, special-token strings, partial special-token strings.
CASES = PROMPTS + [
    "", " ", "  ", "\n", "\n\n\n", "\t", " Hello", "   three leading spaces", "trailing spaces   ",
    "tabs\t\tand   runs      of spaces", "line one\nline two\n\nline four\r\n", "1234567890 3.14159 2026-12-02 1e-9",
    "emoji 😀🎉👩‍💻 and flags 🇩🇪", "ünïcödé façade naïve Ærø", "漢字かなカナ한국어 العربية עברית", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠜎𠜱 ꙮ",
    "\x00\x01\x07 control characters \x1b[0m", "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
    "<bos>text<eos>", "<unused5> and <mask> [multimodal]", "<start_of_turn", "a<eos>b<eos>", "</footer> <0x41>",
    "▁already ▁marked", "<s> </s> <unk>", "<|endoftext|><|end|>", "x" * 300, "ab " * 200,
]


# -- llama.cpp's answers ---------------------------------------------------------------------------------------------

class LlamaCppVocab:
    """llama.cpp's tokenizer through llama-cpp-python: vocab_only, its C API for pieces and detokenizing."""

    def __init__(self, path: Path):
        llama_cpp = pytest.importorskip("llama_cpp")
        self.lib = llama_cpp
        self.llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
        self.vocab = self.llm._model.vocab
        self.n = llama_cpp.llama_vocab_n_tokens(self.vocab)

    def tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)

    def piece(self, token: int, special: bool) -> bytes:
        buf = ctypes.create_string_buffer(1024)
        n = self.lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def detokenize(self, ids: list[int], remove_special: bool, unparse_special: bool) -> bytes:
        arr = (self.lib.llama_token * max(len(ids), 1))(*ids)
        size = 64 + 64 * len(ids)
        buf = ctypes.create_string_buffer(size)
        n = self.lib.llama_detokenize(self.vocab, arr, len(ids), buf, size, remove_special, unparse_special)
        assert n >= 0
        return buf.raw[:n]

    def eog_ids(self) -> set[int]:
        return {i for i in range(self.n) if self.lib.llama_vocab_is_eog(self.vocab, i)}


def assert_same_as_llama_cpp(tok: SpmTokenizer, ref: LlamaCppVocab, texts: list[str]) -> None:
    for text in texts:
        for add_special in (True, False):
            for parse_special in (True, False):
                ids = tok.encode(text, add_special=add_special, parse_special=parse_special)
                assert ids == ref.tokenize(text, add_special, parse_special), (text, add_special, parse_special)
                for remove in (True, False):
                    for unparse in (True, False):
                        assert tok.detokenize(ids, remove, unparse) == ref.detokenize(ids, remove, unparse), \
                            (text, add_special, parse_special, remove, unparse)


def assert_round_trip_as_llama_cpp(tok: SpmTokenizer, ref: LlamaCppVocab, texts: list[str]) -> None:
    """Text -> ids -> text gives back what llama.cpp gives back (the text itself, for these vocabularies)."""
    for text in texts:
        ids = tok.encode(text, add_special=False, parse_special=True)
        ours = tok.decode(ids)
        assert ours.encode("utf-8") == ref.detokenize(ids, False, True), text
        assert ours == text, text


# -- small vocabularies, known answers -------------------------------------------------------------------------------

def small_vocab(extra: list[tuple[str, float, int]] = (), **kw) -> SpmTokenizer:
    """<unk> <s> </s>, the 256 byte tokens, a few characters and merges with scores (higher merges first)."""
    tokens = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
    tokens += [(f"<0x{b:02X}>", 0.0, 6) for b in range(256)]
    tokens += [(c, -10.0, 1) for c in "▁abcdehlorw"]
    tokens += [("▁h", -5.0, 1), ("el", -1.0, 1), ("he", -2.0, 1), ("hel", -3.0, 1), ("lo", -4.0, 1),
               ("▁hel", -6.0, 1), ("▁hello", -0.5, 1), ("hello", -7.0, 1), ("ab", -1.0, 1), ("bc", -1.0, 1)]
    tokens += list(extra)
    return SpmTokenizer([t for t, _, _ in tokens], [s for _, s, _ in tokens], [ty for _, _, ty in tokens], **kw)


def ids_of(tok: SpmTokenizer, *texts: str) -> list[int]:
    return [tok.ids[t] for t in texts]


def test_merges_go_by_score_not_by_position():
    tok = small_vocab(add_bos=False)
    # "▁hello": el (-1) first, then h+el = hel (-3), lo (-4), ▁+hel = ▁hel (-6), and ▁hel+lo = ▁hello; the pair
    # ▁h (-5) scored better than ▁hel but was gone by its turn.
    assert tok.encode("hello") == ids_of(tok, "▁hello")
    # equal scores: the leftmost pair merges first ("ab" before "bc")
    assert tok.encode("abc", add_special=False) == ids_of(tok, "▁", "ab", "c")


def test_space_prefix_bos_and_byte_fallback():
    tok = small_vocab()
    assert tok.encode("he") == [tok.bos_id] + ids_of(tok, "▁", "he")
    assert tok.encode("") == [tok.bos_id] and tok.encode("", add_special=False) == []
    no_prefix = small_vocab(add_space_prefix=False, add_bos=False)
    assert no_prefix.encode("he") == ids_of(no_prefix, "he")
    # "x" and "é" are not in the vocabulary: their UTF-8 bytes
    assert no_prefix.encode("xé") == ids_of(no_prefix, "<0x78>", "<0xC3>", "<0xA9>")


def test_special_tokens_split_the_text_and_restart_the_space_prefix():
    tok = small_vocab(add_bos=False)
    ids = tok.encode("he</s>he")
    assert ids == ids_of(tok, "▁", "he", "</s>", "▁", "he")
    assert tok.encode("he</s>", parse_special=False) != ids[:3]  # literal text: no control token
    assert tok.decode(ids) == "he</s> he"  # the prefix after a special token stays, as llama.cpp writes it
    assert tok.detokenize(ids) == b"he he" and tok.detokenize(ids, unparse_special=True) == b"he</s> he"


def test_user_defined_tokens_are_matched_even_without_parse_special():
    tok = small_vocab([("<tag>", 0.0, 4)], add_bos=False)
    assert tok.encode("a<tag>b", parse_special=False) == ids_of(tok, "▁", "a", "<tag>", "▁", "b")


def test_phi3_files_strip_whitespace_after_special_tokens():
    extra = [("<|user|>", 0.0, 3), ("<|endoftext|>", 0.0, 3)]
    phi = small_vocab(extra, add_bos=False, model_name="Phi3 Mini")
    assert phi.encode("<|user|>  he") == ids_of(phi, "<|user|>", "▁", "he")
    assert phi.encode("<|endoftext|> he") == ids_of(phi, "<|endoftext|>", "▁", "▁", "he")  # not for <|endoftext|>
    other = small_vocab(extra, add_bos=False)
    assert other.encode("<|user|> he") == ids_of(other, "<|user|>", "▁", "▁", "he")


def test_end_of_generation_ids_come_from_the_file_and_known_texts():
    tok = small_vocab([("<end_of_turn>", 0.0, 1), ("<start_of_turn>", 0.0, 3)])
    # eos (</s>), and <end_of_turn> recognised by its text: it becomes a control token on the way
    assert tok.eog_ids == set(ids_of(tok, "</s>", "<end_of_turn>"))
    assert tok.is_eog(tok.ids["<end_of_turn>"]) and not tok.is_eog(tok.ids["<start_of_turn>"])
    assert tok.encode("a<end_of_turn>", add_special=False)[-1] == tok.ids["<end_of_turn>"]


def test_pieces_and_leading_space_of_the_detokenizer():
    tok = small_vocab()
    ids = tok.encode("hello he")
    assert tok.decode_bytes(ids) == b"<s> hello he"  # a stream of pieces: the prefix space shows
    assert tok.decode(ids[1:]) == "hello he"  # the detokenizer drops it on the first token
    assert tok.piece(tok.ids["<0x41>"]) == b"A" and tok.piece(tok.bos_id, special=False) == b""


def write_vocab_only(path: Path, model: str) -> Path:
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_tokenizer_model(model)
    w.add_token_list(["a", "b"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_an_unknown_tokenizer_model_is_one_clear_error(tmp_path):
    reader = open_gguf(write_vocab_only(tmp_path / "bert.gguf", "bert"))
    with pytest.raises(UnsupportedModelError, match="tokenizer model 'bert' is not supported.*'llama'"):
        Tokenizer.from_gguf(reader)


def test_the_model_key_chooses_sentencepiece(tmp_path):
    assert isinstance(Tokenizer.from_gguf(open_gguf(write_vocab_only(tmp_path / "spm.gguf", "llama"))),
                      SpmTokenizer)


# -- the real Gemma 3 270M -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gemma3(gemma3_gguf):
    return Tokenizer.from_gguf(open_gguf(gemma3_gguf)), LlamaCppVocab(gemma3_gguf)


def context_texts() -> list[str]:
    """The context sweep's text cut at several lengths (mid-word and mid-line too), whole, and repeated."""
    text = CONTEXT_TEXT.read_text(encoding="utf-8")
    return [text[:n] for n in (1, 17, 100, 999, 4096)] + [text, "\n\n".join([text.strip()] * 3)]


@pytest.mark.slow
def test_gemma3_reads_its_flags_from_the_file(gemma3):
    tok, ref = gemma3
    assert isinstance(tok, SpmTokenizer)
    assert (tok.add_bos, tok.add_space_prefix, tok.bos_id, tok.eos_id) == (True, False, 2, 1)
    assert tok.eog_ids == ref.eog_ids()


@pytest.mark.slow
def test_gemma3_token_ids_and_detokenized_text_equal_llama_cpp(gemma3):
    tok, ref = gemma3
    assert_same_as_llama_cpp(tok, ref, CASES + context_texts())


@pytest.mark.slow
def test_gemma3_round_trips_as_llama_cpp(gemma3):
    tok, ref = gemma3
    # special-token strings come back as tokens, and a literal U+2581 as a space: those texts cannot round-trip
    assert_round_trip_as_llama_cpp(tok, ref, [t for t in CASES + context_texts() if "<" not in t and "▁" not in t])


@pytest.mark.slow
def test_gemma3_every_piece_equals_llama_cpp(gemma3):
    tok, ref = gemma3
    for i in range(ref.n):
        for special in (True, False):
            assert tok.piece(i, special) == ref.piece(i, special), (i, tok.tokens[i], special)


# -- synthgguf's SentencePiece vocabularies (the phi3 and gemma2 presets' own layout, at their real size) ------------

def write_small_preset(path: Path, preset: str) -> Path:
    """The preset's vocabulary and tokenizer keys on a one-block model of a small width: seconds to write. The
    file's name keeps the preset's (llama.cpp treats special tokens of files named Phi-3 differently)."""
    import dataclasses

    from synthgguf import synthetic

    shape = dict(dim=128, layers=1, heads=2, kv_heads=2, ffn=256, head_dim=64)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(synthetic.PRESETS, f"{preset}-small", dataclasses.replace(synthetic.PRESETS[preset], **shape))
        synthetic.write_synthetic(f"{preset}-small", path, quant="Q8_0")
    return path


# gemma2's 256,000 tokens take gguf's reader seconds to open: slow
@pytest.fixture(scope="module", params=["phi3.5-3.8b", pytest.param("gemma2-2b", marks=pytest.mark.slow)])
def synthetic_spm(request, tmp_path_factory):
    path = write_small_preset(tmp_path_factory.mktemp("spm") / f"{request.param}.gguf", request.param)
    return Tokenizer.from_gguf(open_gguf(path)), LlamaCppVocab(path)


def test_synthetic_sentencepiece_files_tokenize_as_llama_cpp(synthetic_spm):
    tok, ref = synthetic_spm
    assert isinstance(tok, SpmTokenizer) and len(tok.tokens) == ref.n
    if "<|user|>" in tok.ids:  # a Phi-3 file: whitespace after its special tokens is dropped
        assert tok.attrs[tok.ids["<|user|>"]] & ATTR_RSTRIP
    texts = CASES + ["<|user|>\nHi<|end|>\n<|assistant|>\n", "<|system|>  x  <|end|>"]
    assert_same_as_llama_cpp(tok, ref, texts)
    assert_round_trip_as_llama_cpp(tok, ref, [t for t in texts if "<" not in t and "▁" not in t])
    assert tok.eog_ids == ref.eog_ids()
    for i in range(ref.n):
        assert tok.piece(i) == ref.piece(i, True), (i, tok.tokens[i])


@pytest.mark.slow
def test_gemma3_generates_through_edgellm_load_with_its_own_tokenizer(gemma3_gguf, gemma3):
    import edgellm

    _, ref = gemma3
    with edgellm.load(gemma3_gguf, device="cpu", max_context=96, threads=2) as gen:
        assert isinstance(gen.tokenizer, SpmTokenizer)
        ids = gen.tokenizer.encode(PROMPTS[2])
        assert ids == ref.tokenize(PROMPTS[2], True, True) and ids[0] == gen.tokenizer.bos_id
        out = list(gen.generate(ids, 16))
    assert 0 < len(out) <= 16 and not any(gen.tokenizer.is_eog(t) for t in out)
    assert gen.tokenizer.decode(out) == ref.detokenize(out, False, True).decode("utf-8", "replace")
    assert gen.tokenizer.decode(out).strip()


@pytest.mark.slow
def test_gemma3_random_texts_equal_llama_cpp(gemma3):
    """Random mixes of the pieces that make tokenizers differ: spaces, newlines, digits, accents, emoji, characters
    the vocabulary lacks, and whole and broken special-token strings."""
    import random

    tok, ref = gemma3
    alphabet = list("abcXYZ019 .,!?'\"-_\t\n\r") + ["  ", "\n\n", " the", "ing", "é", "ß", "😀", "𠜎", "\u2581", "\x00",
                                                      "<eos>", "<start_of_turn>", "<end_of", "_turn>", "<0x41>", "<"]
    rng = random.Random(19)
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(300)]
    for text in texts:
        for add_special, parse_special in ((True, True), (False, False)):
            assert tok.encode(text, add_special, parse_special) == ref.tokenize(text, add_special, parse_special), \
                repr(text)


def test_fill_in_the_middle_separators_end_generation_by_id_or_by_text():
    by_text = small_vocab([("<|fim_pad|>", 0.0, 1), ("<|fim_prefix|>", 0.0, 1)])
    assert by_text.is_eog(by_text.ids["<|fim_pad|>"]) and not by_text.is_eog(by_text.ids["<|fim_prefix|>"])
    by_id = small_vocab([("<pad_here>", 0.0, 3)], fim_ids={"pad": 10})
    assert by_id.is_eog(10) and not by_id.is_eog(by_id.ids["<pad_here>"])
