"""EdgeLLM's FlashAttention-2 style CPU kernel against a float64 reference (max abs error < 1e-5 in float32)."""

import math

import numpy as np
import pytest

from edgellm.cpu.kernels import KEY_TILE, flash_attention

TOLERANCE = 1e-5


def reference(q, k, v, start_pos):
    """Causal softmax(q k^T / sqrt(D)) v in float64, grouped-query heads mapped h -> h // (H / Hkv)."""
    T, H, D = q.shape
    group = H // k.shape[1]
    q64, k64, v64 = (a.astype(np.float64) for a in (q, k, v))
    out = np.zeros((T, H, D))
    for h in range(H):
        kh, vh = k64[:, h // group], v64[:, h // group]
        scores = q64[:, h] @ kh.T / math.sqrt(D)                    # [T, S]
        pos = start_pos + np.arange(T)[:, None]
        scores = np.where(np.arange(kh.shape[0])[None, :] <= pos, scores, -np.inf)
        scores -= scores.max(axis=1, keepdims=True)
        p = np.exp(scores)
        out[:, h] = (p / p.sum(axis=1, keepdims=True)) @ vh
    return out


def run(T, S, H, Hkv, D, seed=0):
    """T queries at the end of a sequence of S positions (T == S: prefill; T == 1: decode over a cache)."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((T, H, D)).astype(np.float32)
    k = rng.standard_normal((S, Hkv, D)).astype(np.float32)
    v = rng.standard_normal((S, Hkv, D)).astype(np.float32)
    out = np.empty((T, H, D), np.float32)
    flash_attention(q, k, v, S - T, np.float32(1 / math.sqrt(D)), out)
    return float(np.abs(out - reference(q, k, v, S - T)).max())


CASES = [(H, Hkv) for H, Hkv in ((4, 4), (6, 2), (8, 2), (8, 1))]  # GQA ratios 1, 3, 4, 8


@pytest.mark.parametrize("D", [64, 128])
@pytest.mark.parametrize("H,Hkv", CASES)
@pytest.mark.parametrize("S", [1, 2, KEY_TILE - 1, KEY_TILE, KEY_TILE + 1, 200, 777])
def test_causal_prefill(S, H, Hkv, D):
    assert run(S, S, H, Hkv, D) < TOLERANCE


@pytest.mark.parametrize("D", [64, 128])
@pytest.mark.parametrize("H,Hkv", CASES)
@pytest.mark.parametrize("S", [1, 5, KEY_TILE + 3, 1000, 4096])
def test_decode_over_a_cache(S, H, Hkv, D):
    assert run(1, S, H, Hkv, D) < TOLERANCE


@pytest.mark.parametrize("D", [64, 128])
def test_long_prefill_4096(D):
    assert run(4096, 4096, 2, 1, D) < TOLERANCE


def test_chunked_prefill_continues_a_cache():
    """Queries in the middle of a sequence (a second prompt chunk) see the cached keys before them."""
    assert run(37, 300, 6, 2, 64) < TOLERANCE


def test_the_reference_catches_an_off_by_one_mask():
    """The gate is sensitive: a mask shifted by one position (each query seeing one key too many) fails it."""
    rng = np.random.default_rng(3)
    q = rng.standard_normal((7, 2, 64)).astype(np.float32)
    k = rng.standard_normal((8, 2, 64)).astype(np.float32)
    v = rng.standard_normal((8, 2, 64)).astype(np.float32)
    out = np.empty_like(q)
    flash_attention(q, k, v, 0, np.float32(1 / 8), out)  # queries at positions 0..6
    assert np.abs(out - reference(q, k, v, 0)).max() < TOLERANCE
    assert np.abs(out - reference(q, k, v, 1)).max() > 1e-3  # positions 1..7
