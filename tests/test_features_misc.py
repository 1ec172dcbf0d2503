"""Deltas and CMVN (asr.features.functional) against plain reference implementations.

The delta reference is Kaldi's ``DeltaFeatures`` formula written frame by
frame: the order-i kernel is the order-(i-1) kernel convolved with
``[-w..w] / sum(j^2)``, edge frames replicated. CMVN is checked against
numpy means and variances.
"""

from __future__ import annotations

import numpy as np
import pytest

from asr.errors import FeatureError
from asr.features import (
    accumulate_cmvn_stats,
    apply_cmvn,
    compute_cmvn_stats,
    compute_deltas,
    compute_mfcc,
)


def reference_deltas(feats: np.ndarray, window: int, order: int) -> np.ndarray:
    """Kaldi add-deltas, one output frame and one kernel tap at a time."""
    num_frames, dim = feats.shape
    kernels = [np.array([1.0])]
    denom = sum(j * j for j in range(-window, window + 1))
    for _ in range(order):
        prev = kernels[-1]
        cur = np.zeros(prev.size + 2 * window)
        for j in range(-window, window + 1):
            for k in range(prev.size):
                cur[j + window + k] += j * prev[k] / denom
        kernels.append(cur)
    out = np.zeros((num_frames, dim * (order + 1)))
    for t in range(num_frames):
        for i, kernel in enumerate(kernels):
            half = kernel.size // 2
            for tap in range(kernel.size):
                source = min(max(t + tap - half, 0), num_frames - 1)
                out[t, i * dim : (i + 1) * dim] += kernel[tap] * feats[source]
    return out


@pytest.mark.parametrize(("window", "order"), [(2, 2), (3, 1), (1, 3), (2, 0)])
@pytest.mark.parametrize("num_frames", [1, 2, 7, 40])
def test_deltas_match_reference(window, order, num_frames):
    feats = np.random.default_rng(num_frames).normal(size=(num_frames, 5)).astype(np.float32)
    ours = compute_deltas(feats, window=window, order=order)
    assert ours.shape == (num_frames, 5 * (order + 1)) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference_deltas(feats, window, order), rtol=1e-5, atol=1e-5)


def test_deltas_of_a_ramp_and_of_real_mfcc(an4_dir):
    ramp = np.arange(20, dtype=np.float64)[:, None] * np.array([[1.0, -2.0]])
    deltas = compute_deltas(ramp, window=2, order=2)
    np.testing.assert_allclose(deltas[4:-4, 2:4], [[1.0, -2.0]] * 12)  # slope
    np.testing.assert_allclose(deltas[4:-4, 4:6], 0.0, atol=1e-12)  # curvature
    import soundfile as sf

    wav = sorted((an4_dir / "wav" / "an4_clstk").glob("*/*.wav"))[3]
    samples = sf.read(wav, dtype="int16")[0].astype(np.float32) / 32768.0
    mfcc = compute_mfcc(samples, 16000)
    np.testing.assert_allclose(
        compute_deltas(mfcc), reference_deltas(mfcc, 2, 2), rtol=1e-4, atol=1e-4
    )
    assert compute_deltas(np.zeros((0, 13), np.float32)).shape == (0, 39)
    with pytest.raises(FeatureError):
        compute_deltas(np.zeros(13))


def test_cmvn_stats_layout_and_accumulation():
    rng = np.random.default_rng(0)
    utts = [rng.normal(3.0, 2.0, size=(n, 4)) for n in (10, 25, 7)]
    stats = [compute_cmvn_stats(u) for u in utts]
    for u, s in zip(utts, stats, strict=True):
        assert s.shape == (2, 5) and s.dtype == np.float64
        np.testing.assert_allclose(s[0, :4], u.sum(axis=0))
        np.testing.assert_allclose(s[1, :4], (u**2).sum(axis=0))
        assert s[0, 4] == len(u) and s[1, 4] == 0.0
    total = accumulate_cmvn_stats(stats)
    np.testing.assert_allclose(total, compute_cmvn_stats(np.concatenate(utts)))
    with pytest.raises(FeatureError, match="differ"):
        accumulate_cmvn_stats([stats[0], np.zeros((2, 3))])
    with pytest.raises(FeatureError, match="no stats"):
        accumulate_cmvn_stats([])


def test_apply_cmvn_mean_and_variance():
    rng = np.random.default_rng(1)
    feats = rng.normal(-4.0, 3.0, size=(200, 6)).astype(np.float32)
    stats = compute_cmvn_stats(feats)
    centred = apply_cmvn(feats, stats)
    assert centred.dtype == np.float32
    np.testing.assert_allclose(centred, feats - feats.astype(np.float64).mean(axis=0), atol=1e-5)
    normed = apply_cmvn(feats, stats, norm_vars=True)
    np.testing.assert_allclose(normed.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(normed.std(axis=0), 1.0, atol=1e-5)
    # Speaker-level stats applied to one of the speaker's utterances.
    other = rng.normal(2.0, 1.0, size=(50, 6)).astype(np.float32)
    speaker = accumulate_cmvn_stats([stats, compute_cmvn_stats(other)])
    both = np.concatenate([feats, other]).astype(np.float64)
    np.testing.assert_allclose(apply_cmvn(other, speaker), other - both.mean(axis=0), atol=1e-5)
    # Constant dimension: variance floored, no inf/NaN.
    constant = np.ones((10, 2), np.float32)
    assert np.isfinite(apply_cmvn(constant, compute_cmvn_stats(constant), norm_vars=True)).all()


def test_apply_cmvn_errors():
    feats = np.zeros((5, 3), np.float32)
    with pytest.raises(FeatureError, match="count"):
        apply_cmvn(feats, np.zeros((2, 4)))
    with pytest.raises(FeatureError, match="do not fit"):
        apply_cmvn(feats, compute_cmvn_stats(np.zeros((5, 4))))
    with pytest.raises(FeatureError):
        compute_cmvn_stats(np.zeros(5))
