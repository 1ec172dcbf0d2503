"""Tests for asr.gmm.lda_mllt.

Oracles: a loop implementation of splicing; Kaldi's est-lda route (Cholesky of the
within-class covariance, SVD of the whitened between-class covariance) in numpy and
scipy.linalg.eig for the eigenvalues; MLLT statistics by a direct sum over (frame,
Gaussian) pairs; the gradient of Gales' auxiliary function at the optimum; and data with a
known shared rotation of diagonal covariances.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.special import logsumexp

from asr.errors import EstimationError, FeatureError, ModelError
from asr.features.transforms import apply_transform, splice_frames
from asr.gmm import (
    DiagGmmSet,
    GmmAccumulator,
    LdaConfig,
    LdaStats,
    MlltAccumulator,
    estimate_lda,
    estimate_mllt,
    ml_update,
    mllt_objective,
    transform_means,
)


# ---------------------------------------------------------------------- splicing
def splice_reference(feats, left, right):
    num_frames = len(feats)
    rows = []
    for t in range(num_frames):
        parts = [feats[min(max(t + k, 0), num_frames - 1)] for k in range(-left, right + 1)]
        rows.append(np.concatenate(parts))
    return np.array(rows).reshape(num_frames, -1)


@pytest.mark.parametrize(
    ("num_frames", "left", "right"), [(20, 3, 3), (5, 0, 2), (1, 3, 3), (4, 2, 0)]
)
def test_splice_matches_loop_reference(num_frames, left, right):
    feats = np.random.default_rng(0).normal(size=(num_frames, 3))
    ref = splice_reference(feats, left, right)
    np.testing.assert_array_equal(splice_frames(feats, left=left, right=right), ref)
    spliced = splice_frames(torch.from_numpy(feats).float(), left=left, right=right)
    assert spliced.dtype == torch.float32
    np.testing.assert_array_equal(spliced.numpy(), ref.astype(np.float32))


def test_splice_edge_cases():
    assert splice_frames(torch.zeros(0, 4)).shape == (0, 28)
    with pytest.raises(FeatureError, match=">= 0"):
        splice_frames(torch.zeros(3, 2), left=-1)
    with pytest.raises(FeatureError, match="num_frames, dim"):
        splice_frames(torch.zeros(3))


def test_apply_transform_with_and_without_offset():
    feats = torch.randn(7, 3, dtype=torch.float64)
    matrix = torch.randn(2, 3, dtype=torch.float64)
    torch.testing.assert_close(apply_transform(feats, matrix), feats @ matrix.T)
    with_offset = torch.cat([matrix, torch.tensor([[1.0], [-2.0]], dtype=torch.float64)], 1)
    torch.testing.assert_close(
        apply_transform(feats, with_offset), feats @ matrix.T + torch.tensor([1.0, -2.0])
    )
    with pytest.raises(FeatureError, match="does not fit"):
        apply_transform(feats, torch.zeros(2, 5))


# ---------------------------------------------------------------------- LDA
def lda_data(seed=1, num_classes=6, dim=5, per_class=300):
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(dim, dim))
    class_means = rng.normal(size=(num_classes, dim)) * 3
    labels = np.repeat(np.arange(num_classes), per_class)
    feats = class_means[labels] + rng.normal(size=(len(labels), dim)) @ mixing.T
    return feats, labels


def kaldi_lda_reference(feats, labels, dim):
    """Kaldi est-lda: W = L L^T, C = L^{-1}, SVD of C B C^T, rows U^T C."""
    mean = feats.mean(0)
    total = feats.T @ feats / len(feats) - np.outer(mean, mean)
    between = -np.outer(mean, mean)
    for c in np.unique(labels):
        rows = feats[labels == c]
        between += len(rows) / len(feats) * np.outer(rows.mean(0), rows.mean(0))
    within = total - between
    whiten = np.linalg.inv(np.linalg.cholesky(within))
    u, s, _ = np.linalg.svd(whiten @ between @ whiten.T)
    return (u.T @ whiten)[:dim], s, within, between


def fix_signs(rows):
    peak = np.abs(rows).argmax(1)
    return rows * np.sign(rows[np.arange(len(rows)), peak])[:, None]


def within_between_of(projected, labels):
    within = np.zeros((projected.shape[1],) * 2)
    for c in np.unique(labels):
        rows = projected[labels == c]
        centered = rows - rows.mean(0)
        within += centered.T @ centered
    within /= len(projected)
    mean = projected.mean(0)
    between = sum(
        (labels == c).mean()
        * np.outer(projected[labels == c].mean(0) - mean, projected[labels == c].mean(0) - mean)
        for c in np.unique(labels)
    )
    return within, between


def test_lda_matches_reference_and_whitens_within_class():
    feats, labels = lda_data()
    stats = LdaStats(num_classes=6, dim=5)
    stats.accumulate(torch.from_numpy(feats), torch.from_numpy(labels))
    lda = estimate_lda(stats, LdaConfig(dim=3)).numpy()
    ref, singular_values, within, between = kaldi_lda_reference(feats, labels, 3)
    np.testing.assert_allclose(lda, fix_signs(ref), atol=1e-8)
    eigvals = np.sort(scipy.linalg.eig(np.linalg.solve(within, between))[0].real)[::-1]
    np.testing.assert_allclose(singular_values[:3], eigvals[:3], rtol=1e-8)

    proj_within, proj_between = within_between_of(feats @ lda.T, labels)
    np.testing.assert_allclose(proj_within, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(proj_between, np.diag(eigvals[:3]), atol=1e-8)
    assert eigvals[0] > eigvals[1] > eigvals[2] > 0


def test_lda_within_class_factor_weights_and_merge():
    feats, labels = lda_data(seed=2)
    whole = LdaStats(num_classes=6, dim=5)
    whole.accumulate(torch.from_numpy(feats), torch.from_numpy(labels))
    parts = [LdaStats(num_classes=6, dim=5) for _ in range(2)]
    half = len(feats) // 2
    parts[0].accumulate(torch.from_numpy(feats[:half]), torch.from_numpy(labels[:half]))
    parts[1].accumulate(torch.from_numpy(feats[half:]), torch.from_numpy(labels[half:]))
    merged = pickle.loads(pickle.dumps(parts[0])).merge(parts[1])
    torch.testing.assert_close(
        estimate_lda(merged, LdaConfig(dim=4)), estimate_lda(whole, LdaConfig(dim=4))
    )
    # weight 0 == leaving the frames out
    weights = (np.arange(len(feats)) % 3 != 0).astype(float)
    weighted = LdaStats(num_classes=6, dim=5)
    weighted.accumulate(
        torch.from_numpy(feats), torch.from_numpy(labels), weights=torch.from_numpy(weights)
    )
    subset = LdaStats(num_classes=6, dim=5)
    keep = weights > 0
    subset.accumulate(torch.from_numpy(feats[keep]), torch.from_numpy(labels[keep]))
    torch.testing.assert_close(
        estimate_lda(weighted, LdaConfig(dim=4)), estimate_lda(subset, LdaConfig(dim=4))
    )
    # within_class_factor: within-class variance (f + l) / (1 + l) relative to total
    _, eigvals, _, _ = kaldi_lda_reference(feats, labels, 4)
    scaled = estimate_lda(whole, LdaConfig(dim=4, within_class_factor=0.5)).numpy()
    proj_within, _ = within_between_of(feats @ scaled.T, labels)
    np.testing.assert_allclose(
        np.diag(proj_within), (0.5 + eigvals[:4]) / (1.0 + eigvals[:4]), rtol=1e-8
    )


def test_lda_errors():
    feats, labels = lda_data(num_classes=3)
    stats = LdaStats(num_classes=3, dim=5)
    with pytest.raises(EstimationError, match="empty"):
        estimate_lda(stats, LdaConfig(dim=2))
    stats.accumulate(torch.from_numpy(feats), torch.from_numpy(labels))
    with pytest.raises(EstimationError, match="#classes-1"):
        estimate_lda(stats, LdaConfig(dim=3))
    assert estimate_lda(stats, LdaConfig(dim=3, allow_large_dim=True)).shape == (3, 5)
    with pytest.raises(EstimationError, match="class ids"):
        stats.accumulate(torch.zeros(2, 5), torch.tensor([0, 3]))
    singular = LdaStats(num_classes=3, dim=5)
    flat = feats.copy()
    flat[:, 4] = 1.0  # a constant dimension: within-class covariance is singular
    singular.accumulate(torch.from_numpy(flat), torch.from_numpy(labels))
    with pytest.raises(EstimationError, match="singular"):
        estimate_lda(singular, LdaConfig(dim=2))


# ---------------------------------------------------------------------- MLLT
def random_model_and_data(seed=3, dim=4):
    rng = np.random.default_rng(seed)
    counts = [2, 3, 1]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    weights = np.concatenate([np.full(c, 1.0 / c) for c in counts])
    means = rng.normal(size=(6, dim)) * 2
    variances = rng.uniform(0.5, 2.0, size=(6, dim))
    gmm = DiagGmmSet(
        means=torch.from_numpy(means),
        inv_vars=torch.from_numpy(1 / variances),
        log_weights=torch.from_numpy(np.log(weights)),
        pdf_offsets=torch.from_numpy(offsets),
    )
    feats = rng.normal(size=(400, dim)) @ rng.normal(size=(dim, dim)) + rng.normal(size=dim)
    pdf_ids = rng.integers(3, size=400)
    return gmm, (weights, means, variances, offsets), feats, pdf_ids


def reference_g_stats(feats, pdf_ids, weights, means, variances, offsets):
    dim = feats.shape[1]
    g_stats = np.zeros((dim, dim, dim))
    for t, p in enumerate(pdf_ids):
        s, e = offsets[p], offsets[p + 1]
        log_comp = np.log(weights[s:e]) - 0.5 * (
            np.log(variances[s:e]).sum(1) + ((feats[t] - means[s:e]) ** 2 / variances[s:e]).sum(1)
        )
        post = np.exp(log_comp - logsumexp(log_comp))
        for k, j in enumerate(range(s, e)):
            diff = feats[t] - means[j]
            g_stats += post[k] / variances[j][:, None, None] * np.outer(diff, diff)[None]
    return g_stats


def test_mllt_stats_match_direct_sum_and_merge():
    gmm, params, feats, pdf_ids = random_model_and_data()
    acc = MlltAccumulator.for_model(gmm)
    acc.accumulate_aligned(gmm, torch.from_numpy(feats), torch.from_numpy(pdf_ids))
    ref = reference_g_stats(feats, pdf_ids, *params)
    np.testing.assert_allclose(acc.g_stats(gmm).numpy(), ref, rtol=1e-9, atol=1e-8)
    assert acc.beta == pytest.approx(400)

    parts = [MlltAccumulator.for_model(gmm) for _ in range(2)]
    parts[0].accumulate_aligned(gmm, torch.from_numpy(feats[:150]), torch.from_numpy(pdf_ids[:150]))
    posts = torch.nn.functional.one_hot(torch.from_numpy(pdf_ids[150:]), 3).double()
    parts[1].accumulate_posteriors(gmm, torch.from_numpy(feats[150:]), posts)
    merged = pickle.loads(pickle.dumps(parts[0])).merge(parts[1])
    np.testing.assert_allclose(merged.g_stats(gmm).numpy(), ref, rtol=1e-9, atol=1e-8)

    other = transform_means(gmm, 2 * torch.eye(4, dtype=torch.float64))
    with pytest.raises(ModelError, match="different model"):
        acc.g_stats(other)
    with pytest.raises(EstimationError, match="empty"):
        estimate_mllt(MlltAccumulator.for_model(gmm), gmm)


def test_mllt_objective_never_decreases_and_reaches_stationary_point():
    gmm, _, feats, pdf_ids = random_model_and_data(seed=4)
    acc = MlltAccumulator.for_model(gmm)
    acc.accumulate_aligned(gmm, torch.from_numpy(feats), torch.from_numpy(pdf_ids))
    current = torch.randn(4, 6, dtype=torch.float64)
    result = estimate_mllt(acc, gmm, current_transform=current, num_iters=400)
    trace = (result.objective_before, *result.objectives)
    assert all(b >= a - 1e-12 for a, b in zip(trace, trace[1:], strict=False))
    assert result.objective_after > result.objective_before + 1e-3
    torch.testing.assert_close(result.transform, result.delta @ current)
    assert torch.linalg.det(result.delta) > 0
    g_stats = acc.g_stats(gmm)
    assert mllt_objective(result.delta, g_stats, acc.beta) / acc.beta == pytest.approx(
        result.objective_after
    )
    # gradient of beta log|det A| - 1/2 sum_i a_i G_i a_i^T vanishes at the optimum
    delta = result.delta
    grad = acc.beta * torch.linalg.inv(delta).T - torch.einsum("ijk,ik->ij", g_stats, delta)
    assert float(grad.abs().max()) < 1e-6 * acc.beta


def test_mllt_training_decorrelates_rotated_classes():
    rng = np.random.default_rng(5)
    dim, num_classes = 3, 4
    rotation = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    class_vars = rng.uniform(0.2, 3.0, size=(num_classes, dim)) * [4.0, 1.0, 0.25]
    class_means = rng.normal(size=(num_classes, dim)) * 3
    labels = np.repeat(np.arange(num_classes), 1500)
    latent = class_means[labels] + rng.normal(size=(len(labels), dim)) * np.sqrt(class_vars[labels])
    feats = torch.from_numpy(latent @ rotation.T)  # every class has covariance R diag R^T
    pdf_ids = torch.from_numpy(labels)

    def fit(model, data, iters=2):
        for _ in range(iters):
            acc = GmmAccumulator.for_model(model)
            acc.accumulate_aligned(model, data, pdf_ids)
            model, summary = ml_update(model, acc)
        return model, summary.log_like_per_frame

    gmm = DiagGmmSet.init_single(
        num_pdfs=num_classes, feats_mean=feats.mean(0), feats_var=feats.var(0)
    )
    gmm, raw_ll = fit(gmm, feats)
    transform = torch.eye(dim, dtype=torch.float64)
    for _ in range(6):
        acc = MlltAccumulator.for_model(gmm)
        acc.accumulate_aligned(gmm, apply_transform(feats, transform), pdf_ids)
        result = estimate_mllt(acc, gmm, current_transform=transform, num_iters=20)
        transform = result.transform
        gmm, mllt_ll = fit(transform_means(gmm, result.delta), apply_transform(feats, transform))
    log_det = float(torch.linalg.slogdet(transform)[1])
    # the likelihood of the original features (Jacobian included) goes up substantially,
    # to that of the true model
    true_ll = np.mean(
        -0.5 * (dim * np.log(2 * np.pi) + np.log(class_vars[labels]).sum(1)
                + ((latent - class_means[labels]) ** 2 / class_vars[labels]).sum(1))
    )  # fmt: skip
    assert mllt_ll + log_det > raw_ll + 0.1
    assert mllt_ll + log_det == pytest.approx(true_ll, abs=0.02)
    # and classes are decorrelated in the transformed space
    projected = apply_transform(feats, transform).numpy()
    for c in range(num_classes):
        corr = np.corrcoef(projected[labels == c].T)
        assert np.abs(corr - np.eye(dim)).max() < 0.06


def test_transform_means():
    gmm, _, _, _ = random_model_and_data()
    matrix = torch.randn(4, 4, dtype=torch.float64)
    moved = transform_means(gmm, matrix)
    torch.testing.assert_close(moved.means, gmm.means @ matrix.T)
    torch.testing.assert_close(moved.inv_vars, gmm.inv_vars)
    with pytest.raises(ModelError, match="is not"):
        transform_means(gmm, torch.zeros(3, 4))
