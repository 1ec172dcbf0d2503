"""asr.gmm.fmllr: the auxiliary function against the GMM's own log-likelihoods (an independent
computation), recovery of a known speaker transform, monotone row updates, min-count rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asr.errors import EstimationError
from asr.gmm.diag_gmm import DiagGmmSet
from asr.gmm.fmllr import (
    FmllrConfig,
    FmllrStats,
    apply_fmllr,
    estimate_fmllr,
    identity_transform,
)

DIM = 6


def _gmm(rng: np.random.Generator, num_pdfs: int, gauss_per_pdf: int) -> DiagGmmSet:
    num_gauss = num_pdfs * gauss_per_pdf
    return DiagGmmSet(
        means=torch.from_numpy(rng.normal(0, 3, (num_gauss, DIM))),
        inv_vars=torch.from_numpy(1.0 / rng.uniform(0.3, 2.0, (num_gauss, DIM))),
        log_weights=torch.full((num_gauss,), -np.log(gauss_per_pdf), dtype=torch.float64),
        pdf_offsets=torch.arange(0, num_gauss + 1, gauss_per_pdf),
        compute_dtype=torch.float64,
    )


def _sample(gmm: DiagGmmSet, rng: np.random.Generator, num_frames: int):
    """Frames drawn from the model, with the pdf each came from."""
    gauss = rng.integers(0, gmm.num_gauss, num_frames)
    pdf_ids = gmm.gauss_to_pdf.numpy()[gauss]
    std = 1.0 / np.sqrt(gmm.inv_vars.numpy()[gauss])
    return gmm.means.numpy()[gauss] + std * rng.normal(size=(num_frames, DIM)), pdf_ids


def _speaker_transform(rng: np.random.Generator) -> np.ndarray:
    a = np.eye(DIM) + 0.3 * rng.normal(size=(DIM, DIM))
    return np.concatenate([a, rng.normal(0, 1.0, (DIM, 1))], axis=1)


def test_objective_equals_log_likelihood_up_to_a_constant() -> None:
    # single-Gaussian pdfs: Q(W) = sum_t log N(W xi_t; pdf_t) + beta log|det A| + const
    rng = np.random.default_rng(0)
    gmm = _gmm(rng, num_pdfs=5, gauss_per_pdf=1)
    feats, pdf_ids = _sample(gmm, rng, 400)
    stats = FmllrStats.zeros(DIM)
    stats.accumulate(gmm, feats, pdf_ids)

    def log_like(transform: np.ndarray) -> float:
        mapped = torch.from_numpy(apply_fmllr(feats, transform).astype(np.float64))
        scores = gmm.log_likelihoods(mapped).numpy()
        logdet = np.linalg.slogdet(transform[:, :DIM])[1]
        return float(scores[np.arange(len(feats)), pdf_ids].sum()) + len(feats) * logdet

    w1, w2 = identity_transform(DIM), _speaker_transform(rng)
    q_diff = (stats.objective(w1) - stats.objective(w2)) * stats.beta
    assert q_diff == pytest.approx(log_like(w1) - log_like(w2), rel=1e-4)


def test_recovers_a_known_speaker_transform() -> None:
    rng = np.random.default_rng(1)
    gmm = _gmm(rng, num_pdfs=8, gauss_per_pdf=1)
    model_space, pdf_ids = _sample(gmm, rng, 20000)
    true = _speaker_transform(rng)  # maps the speaker's frames back to the model's space
    a, b = true[:, :DIM], true[:, DIM]
    speaker = (model_space - b) @ np.linalg.inv(a).T
    stats = FmllrStats.zeros(DIM)
    stats.accumulate(gmm, speaker, pdf_ids)
    result = estimate_fmllr(stats, config=FmllrConfig(num_iters=20))
    assert result.updated and result.objective_after > result.objective_before
    np.testing.assert_allclose(result.transform, true, atol=0.05)
    np.testing.assert_allclose(apply_fmllr(speaker, result.transform), model_space, atol=0.3)


def test_each_pass_does_not_decrease_the_objective_with_mixtures_and_weights() -> None:
    rng = np.random.default_rng(2)
    gmm = _gmm(rng, num_pdfs=4, gauss_per_pdf=3)
    feats, pdf_ids = _sample(gmm, rng, 3000)
    feats = feats @ (np.eye(DIM) + 0.2 * rng.normal(size=(DIM, DIM))).T + 0.5
    weights = rng.uniform(0, 1, len(feats))
    weights[::7] = 0.0  # e.g. silence frames
    stats = FmllrStats.zeros(DIM)
    stats.accumulate(gmm, feats, pdf_ids, frame_weights=weights)
    assert stats.beta == pytest.approx(weights.sum())
    objectives, transform = [], None
    for _ in range(4):
        result = estimate_fmllr(stats, init=transform, config=FmllrConfig(num_iters=1))
        objectives.append(result.objective_after)
        transform = result.transform
    assert all(b >= a - 1e-9 for a, b in zip(objectives, objectives[1:], strict=False))
    assert objectives[0] > stats.objective(identity_transform(DIM))


def test_too_few_frames_keep_the_start_and_bad_shapes_raise() -> None:
    rng = np.random.default_rng(3)
    gmm = _gmm(rng, num_pdfs=2, gauss_per_pdf=1)
    feats, pdf_ids = _sample(gmm, rng, 50)
    stats = FmllrStats.zeros(DIM)
    stats.accumulate(gmm, feats, pdf_ids)
    result = estimate_fmllr(stats, config=FmllrConfig(min_count=500))
    assert not result.updated
    np.testing.assert_array_equal(result.transform, identity_transform(DIM))
    with pytest.raises(EstimationError):
        stats.accumulate(gmm, feats[:, :3], pdf_ids)
    with pytest.raises(EstimationError):
        estimate_fmllr(stats, init=np.eye(DIM))


def test_few_frames_get_a_diagonal_transform() -> None:
    # between min_count_diag and min_count frames: only a_ii and b_i are estimated
    rng = np.random.default_rng(4)
    gmm = _gmm(rng, num_pdfs=6, gauss_per_pdf=1)
    model_space, pdf_ids = _sample(gmm, rng, 300)
    scale, shift = rng.uniform(0.7, 1.4, DIM), rng.normal(0, 0.8, DIM)
    speaker = (model_space - shift) / scale  # the true transform maps it back: diag(scale), shift
    stats = FmllrStats.zeros(DIM)
    stats.accumulate(gmm, speaker, pdf_ids)
    result = estimate_fmllr(stats, config=FmllrConfig(num_iters=20))
    assert result.update == "diag" and result.objective_after > result.objective_before
    a = result.transform[:, :DIM]
    np.testing.assert_array_equal(a, np.diag(np.diag(a)))
    np.testing.assert_allclose(np.diag(a), scale, rtol=0.1)
    np.testing.assert_allclose(result.transform[:, DIM], shift, atol=0.3)
    full = estimate_fmllr(stats, config=FmllrConfig(num_iters=20, min_count=100))
    assert full.update == "full" and full.objective_after >= result.objective_after - 1e-9
