"""Tests for asr.gmm.diag_gmm and asr.gmm.accumulate.

Oracles: scikit-learn's GaussianMixture(covariance_type="diag") for log-likelihoods and
component posteriors, a plain numpy EM step written here, a heapq implementation of
Kaldi's GetSplitTargets greedy, and data sampled from known GMMs.
"""

from __future__ import annotations

import heapq
import math
import pickle

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture

import asr.gmm.accumulate as accumulate_mod
import asr.gmm.diag_gmm as diag_gmm_mod
from asr.errors import ModelError
from asr.gmm import (
    DiagGmmSet,
    GmmAccumulator,
    GmmUpdateConfig,
    mix_up,
    ml_update,
    split_targets,
)

NO_REMOVAL = GmmUpdateConfig(min_gaussian_occupancy=0.0, min_gaussian_weight=0.0)


def _offsets(counts):
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def random_params(counts, dim, seed, *, shift=0.0, spread=2.0):
    rng = np.random.default_rng(seed)
    offsets = _offsets(counts)
    num_gauss = int(offsets[-1])
    means = rng.normal(size=(num_gauss, dim)) * spread + shift
    variances = rng.uniform(0.2, 2.0, size=(num_gauss, dim))
    weights = rng.uniform(0.1, 1.0, size=num_gauss)
    for p in range(len(counts)):
        weights[offsets[p] : offsets[p + 1]] /= weights[offsets[p] : offsets[p + 1]].sum()
    return weights, means, variances, offsets


def make_gmm(weights, means, variances, offsets, **kwargs) -> DiagGmmSet:
    return DiagGmmSet(
        means=torch.from_numpy(means),
        inv_vars=torch.from_numpy(1.0 / variances),
        log_weights=torch.from_numpy(np.log(weights)),
        pdf_offsets=torch.from_numpy(offsets),
        **kwargs,
    )


def sklearn_mixture(weights, means, variances) -> GaussianMixture:
    mix = GaussianMixture(n_components=len(weights), covariance_type="diag")
    mix.weights_ = weights
    mix.means_ = means
    mix.covariances_ = variances
    mix.precisions_ = 1.0 / variances
    mix.precisions_cholesky_ = 1.0 / np.sqrt(variances)
    return mix


def sklearn_mixtures(weights, means, variances, offsets):
    return [
        sklearn_mixture(weights[s:e], means[s:e], variances[s:e])
        for s, e in zip(offsets[:-1], offsets[1:], strict=True)
    ]


def sample_frames(weights, means, variances, offsets, pdf_ids, seed):
    """Draw one frame per entry of ``pdf_ids`` from the given pdf's mixture."""
    rng = np.random.default_rng(seed)
    feats = np.empty((len(pdf_ids), means.shape[1]))
    for p in np.unique(pdf_ids):
        rows = np.nonzero(pdf_ids == p)[0]
        s, e = offsets[p], offsets[p + 1]
        comp = s + rng.choice(e - s, size=len(rows), p=weights[s:e])
        feats[rows] = means[comp] + rng.normal(size=(len(rows), means.shape[1])) * np.sqrt(
            variances[comp]
        )
    return feats


@pytest.fixture(params=[True, False], ids=["fast", "torch"])
def kernel_path(request, monkeypatch):
    """Run a test with the CPU fast paths (per-pdf matrix products, compiled accumulation) and
    with the pure-torch pair-wise path."""
    monkeypatch.setattr(diag_gmm_mod, "_USE_GROUPED", request.param)
    monkeypatch.setattr(accumulate_mod, "_USE_NUMBA", request.param)
    return request.param


# ---------------------------------------------------------------------- scoring vs sklearn
@pytest.mark.parametrize("shift", [0.0, 20.0])
def test_log_likelihoods_match_sklearn(shift):
    counts = [1, 3, 2, 5, 4, 8, 3]
    params = random_params(counts, dim=13, seed=1, shift=shift)
    gmm = make_gmm(*params)
    feats = np.random.default_rng(2).normal(size=(300, 13)) * 2.5 + shift
    ref = np.stack([m.score_samples(feats) for m in sklearn_mixtures(*params)], axis=1)
    ours = gmm.log_likelihoods(torch.from_numpy(feats))
    assert ours.dtype == torch.float32 and ours.shape == (300, len(counts))
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-4)
    ours64 = gmm.to(compute_dtype=torch.float64).log_likelihoods(torch.from_numpy(feats))
    np.testing.assert_allclose(ours64.numpy(), ref, rtol=0, atol=1e-4)
    # float32 features give the same scores
    ours_f32 = gmm.log_likelihoods(torch.from_numpy(feats).float())
    np.testing.assert_allclose(ours_f32.numpy(), ref, rtol=1e-6, atol=1e-4)


def test_log_likelihoods_match_fitted_sklearn():
    rng = np.random.default_rng(3)
    mixtures = []
    for p, k in enumerate([1, 2, 4]):
        centers = rng.normal(size=(k, 5)) * 4
        data = centers[rng.integers(k, size=400)] + rng.normal(size=(400, 5))
        mixtures.append(
            GaussianMixture(n_components=k, covariance_type="diag", random_state=p).fit(data)
        )
    gmm = make_gmm(
        np.concatenate([m.weights_ for m in mixtures]),
        np.concatenate([m.means_ for m in mixtures]),
        np.concatenate([m.covariances_ for m in mixtures]),
        _offsets([1, 2, 4]),
    )
    feats = rng.normal(size=(200, 5)) * 4
    ref = np.stack([m.score_samples(feats) for m in mixtures], axis=1)
    np.testing.assert_allclose(gmm.log_likelihoods(torch.from_numpy(feats)), ref, atol=1e-4)


def test_pdf_subset_and_chunking_agree_with_full(monkeypatch):
    params = random_params([2, 1, 4, 4, 3], dim=6, seed=4)
    gmm = make_gmm(*params)
    feats = torch.from_numpy(np.random.default_rng(5).normal(size=(50, 6)))
    full = gmm.log_likelihoods(feats)
    subset = torch.tensor([3, 1, 1, 4])
    torch.testing.assert_close(gmm.log_likelihoods(feats, subset), full[:, subset])
    # very different widths (a silence-like pdf of 40 Gaussians): grouped, not padded to 40
    wide = make_gmm(*random_params([1, 40, 2, 3, 17], dim=6, seed=6))
    wide_full = wide.log_likelihoods(feats)
    subset = torch.tensor([4, 0, 1, 3, 1, 2])
    torch.testing.assert_close(wide.log_likelihoods(feats, subset), wide_full[:, subset])
    monkeypatch.setattr(diag_gmm_mod, "_MAX_CHUNK_ELEMENTS", 14 * 7)  # 7 frames per chunk
    torch.testing.assert_close(gmm.log_likelihoods(feats), full)
    # direct per-Gaussian formula, summed per pdf, is the same
    per_gauss = gmm.gaussian_log_likelihoods(feats).numpy()
    direct = np.stack(
        [
            logsumexp(per_gauss[:, s:e], axis=1)
            for s, e in zip(params[3][:-1], params[3][1:], strict=True)
        ],
        axis=1,
    )
    np.testing.assert_allclose(full.numpy(), direct, atol=1e-4)


def test_gaussian_posteriors_match_sklearn(kernel_path, monkeypatch):
    monkeypatch.setattr(diag_gmm_mod, "_MAX_CHUNK_PAIRS", 40)  # several chunks on the torch path
    params = random_params([3, 1, 5, 2], dim=4, seed=6)
    gmm = make_gmm(*params)
    mixtures = sklearn_mixtures(*params)
    rng = np.random.default_rng(7)
    feats = rng.normal(size=(60, 4)) * 2
    pdf_ids = rng.integers(4, size=60)
    post = gmm.gaussian_posteriors(torch.from_numpy(feats), torch.from_numpy(pdf_ids))
    offsets = params[3]
    for t in range(60):
        p = pdf_ids[t]
        rows = post.frame_index == t
        assert post.gauss_index[rows].tolist() == list(range(offsets[p], offsets[p + 1]))
        np.testing.assert_allclose(
            post.posteriors[rows].numpy(), mixtures[p].predict_proba(feats[t : t + 1])[0], atol=1e-9
        )
        np.testing.assert_allclose(
            post.entry_log_likes[t], mixtures[p].score_samples(feats[t : t + 1])[0], atol=1e-9
        )
    # soft entries: (frame, pdf) pairs in any order, frames repeated
    frame_index = torch.tensor([5, 5, 0, 59, 5])
    pdfs = torch.tensor([0, 2, 3, 1, 3])
    soft = gmm.gaussian_posteriors(torch.from_numpy(feats), pdfs, frame_index=frame_index)
    for e in range(5):
        f, p = int(frame_index[e]), int(pdfs[e])
        np.testing.assert_allclose(
            soft.entry_log_likes[e], mixtures[p].score_samples(feats[f : f + 1])[0], atol=1e-9
        )
        rows = soft.entry_index == e
        assert bool((soft.frame_index[rows] == f).all())
        np.testing.assert_allclose(
            soft.posteriors[rows].numpy(), mixtures[p].predict_proba(feats[f : f + 1])[0], atol=1e-9
        )


def test_init_single_and_sizes():
    gmm = DiagGmmSet.init_single(
        num_pdfs=4, feats_mean=torch.tensor([1.0, -2.0]), feats_var=torch.tensor([4.0, 0.25])
    )
    assert (gmm.num_pdfs, gmm.num_gauss, gmm.dim) == (4, 4, 2)
    assert gmm.num_gauss_per_pdf.tolist() == [1, 1, 1, 1]
    torch.testing.assert_close(gmm.variances[2], torch.tensor([4.0, 0.25], dtype=torch.float64))
    ll = gmm.log_likelihoods(torch.tensor([[1.0, -2.0]]))
    expected = -0.5 * (2 * math.log(2 * math.pi) + math.log(4.0) + math.log(0.25))
    torch.testing.assert_close(ll, torch.full((1, 4), expected, dtype=torch.float32))
    assert gmm.to("cpu").log_likelihoods(torch.zeros(3, 2)).shape == (3, 4)


def test_invalid_models_and_inputs_raise_model_error():
    weights, means, variances, offsets = random_params([2, 3], dim=3, seed=8)
    with pytest.raises(ModelError, match="at least one Gaussian"):
        make_gmm(weights, means, variances, np.array([0, 0, 5]))
    with pytest.raises(ModelError, match="sum to"):
        make_gmm(weights * 2, means, variances, offsets)
    with pytest.raises(ModelError, match="positive"):
        make_gmm(weights, means, -variances, offsets)
    with pytest.raises(ModelError, match="0 to num_gauss"):
        make_gmm(weights, means, variances, np.array([0, 2, 4]))
    gmm = make_gmm(weights, means, variances, offsets)
    with pytest.raises(ModelError, match="expect"):
        gmm.log_likelihoods(torch.zeros(4, 5))
    with pytest.raises(ModelError, match="out of range"):
        gmm.gaussian_posteriors(torch.zeros(2, 3), torch.tensor([0, 2]))
    with pytest.raises(ModelError, match="pdf ids for"):
        gmm.gaussian_posteriors(torch.zeros(2, 3), torch.tensor([0, 1, 1]))


@pytest.mark.parametrize("suffix", [".pt", ".npz"])
def test_save_load_roundtrip(tmp_path, suffix):
    gmm = make_gmm(*random_params([2, 1, 3], dim=4, seed=9))
    path = tmp_path / f"final{suffix}"
    gmm.save(path)
    loaded = DiagGmmSet.load(path)
    for name in ("means", "inv_vars", "log_weights", "pdf_offsets"):
        torch.testing.assert_close(getattr(loaded, name), getattr(gmm, name), rtol=0, atol=0)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind


def test_load_rejects_bad_files(tmp_path):
    gmm = make_gmm(*random_params([2, 1], dim=2, seed=10))
    with pytest.raises(ModelError, match="not found"):
        DiagGmmSet.load(tmp_path / "missing.pt")
    for name in ("garbage.pt", "garbage.npz"):
        (tmp_path / name).write_bytes(b"\x00not a model at all")
        with pytest.raises(ModelError, match="not a readable"):
            DiagGmmSet.load(tmp_path / name)
    with pytest.raises(ModelError, match=r"\.pt or \.npz"):
        gmm.save(tmp_path / "model.bin")
    arrays = {k: getattr(gmm, k) for k in ("means", "inv_vars", "log_weights", "pdf_offsets")}
    torch.save({"format": "something-else", "version": 1, **arrays}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="not an asr-diag-gmm"):
        DiagGmmSet.load(tmp_path / "other.pt")
    torch.save({"format": "asr-diag-gmm", "version": 99, **arrays}, tmp_path / "future.pt")
    with pytest.raises(ModelError, match="version"):
        DiagGmmSet.load(tmp_path / "future.pt")
    bad = dict(arrays, means=arrays["means"][:, :1])
    torch.save({"format": "asr-diag-gmm", "version": 1, **bad}, tmp_path / "shapes.pt")
    with pytest.raises(ModelError, match="shapes.pt"):
        DiagGmmSet.load(tmp_path / "shapes.pt")


# ---------------------------------------------------------------------- EM vs numpy reference
def reference_stats(feats, posts, weights, means, variances, offsets):
    """Per-Gaussian (occ, x_sum, x2_sum) by a plain loop over pdfs; ``posts`` is a dense
    (num_frames, num_pdfs) occupancy matrix."""
    num_gauss, dim = means.shape
    occ, x_sum, x2_sum = np.zeros(num_gauss), np.zeros((num_gauss, dim)), np.zeros((num_gauss, dim))
    for p in range(posts.shape[1]):
        s, e = offsets[p], offsets[p + 1]
        log_comp = (
            np.log(weights[s:e])
            - 0.5 * (dim * np.log(2 * np.pi) + np.log(variances[s:e]).sum(1))
            - 0.5 * (((feats[:, None, :] - means[s:e]) ** 2) / variances[s:e]).sum(2)
        )
        resp = np.exp(log_comp - logsumexp(log_comp, axis=1, keepdims=True)) * posts[:, p : p + 1]
        occ[s:e] = resp.sum(0)
        x_sum[s:e] = resp.T @ feats
        x2_sum[s:e] = resp.T @ feats**2
    return occ, x_sum, x2_sum


def reference_update(occ, x_sum, x2_sum, offsets, min_variance):
    global_mean = x_sum.sum(0) / occ.sum()
    floor = min_variance * (x2_sum.sum(0) / occ.sum() - global_mean**2)
    weights = np.empty_like(occ)
    for s, e in zip(offsets[:-1], offsets[1:], strict=True):
        weights[s:e] = occ[s:e] / occ[s:e].sum()
    means = x_sum / occ[:, None]
    variances = np.maximum(x2_sum / occ[:, None] - means**2, floor)
    return weights, means, variances


def test_em_step_matches_numpy_reference(kernel_path):
    params = random_params([2, 3, 1], dim=3, seed=11)
    rng = np.random.default_rng(12)
    pdf_ids = rng.integers(3, size=500)
    feats = sample_frames(*params, pdf_ids, seed=13) * 1.3 + 0.2  # the model is not the truth
    gmm = make_gmm(*params)
    acc = GmmAccumulator.for_model(gmm)
    acc.accumulate_aligned(gmm, torch.from_numpy(feats), torch.from_numpy(pdf_ids))
    stats = reference_stats(feats, np.eye(3)[pdf_ids], *params)
    for ours, ref in zip((acc.occupancy, acc.x_sum, acc.x2_sum), stats, strict=True):
        np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-10, atol=1e-9)
    new, summary = ml_update(gmm, acc, NO_REMOVAL)
    ref_w, ref_mu, ref_var = reference_update(*stats, params[3], min_variance=1e-3)
    np.testing.assert_allclose(new.weights.numpy(), ref_w, rtol=1e-10)
    np.testing.assert_allclose(new.means.numpy(), ref_mu, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(new.variances.numpy(), ref_var, rtol=1e-10)
    ref_ll = np.mean(
        [
            m.score_samples(feats[pdf_ids == p]).sum()
            for p, m in enumerate(sklearn_mixtures(*params))
        ]
    )
    assert summary.num_frames == pytest.approx(500)
    assert summary.log_like_per_frame == pytest.approx(ref_ll * 3 / 500, rel=1e-10)
    assert summary.aux_improvement_per_frame > 0
    assert (summary.num_removed, summary.num_gauss_after) == (0, 6)


def test_soft_posteriors_match_reference_and_one_hot_equals_hard(kernel_path):
    params = random_params([2, 1, 3], dim=3, seed=14)
    gmm = make_gmm(*params)
    rng = np.random.default_rng(15)
    feats = rng.normal(size=(80, 3)) * 2
    posts = rng.dirichlet(np.ones(3), size=80) * (rng.random((80, 3)) > 0.3)
    acc = GmmAccumulator.for_model(gmm)
    acc.accumulate_posteriors(gmm, torch.from_numpy(feats), torch.from_numpy(posts))
    ref = reference_stats(feats, posts, *params)
    for ours, expected in zip((acc.occupancy, acc.x_sum, acc.x2_sum), ref, strict=True):
        np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-10, atol=1e-10)

    pdf_ids = torch.from_numpy(rng.integers(3, size=80))
    feats_t = torch.from_numpy(feats)
    hard = GmmAccumulator.for_model(gmm)
    hard_ll = hard.accumulate_aligned(gmm, feats_t, pdf_ids)
    one_hot = torch.nn.functional.one_hot(pdf_ids, 3).double()
    variants = [
        one_hot,
        one_hot.to_sparse(),
        (torch.arange(80), pdf_ids, torch.ones(80, dtype=torch.float64)),
    ]
    for posts_variant in variants:
        soft = GmmAccumulator.for_model(gmm)
        soft_ll = soft.accumulate_posteriors(gmm, feats_t, posts_variant)
        assert soft_ll == pytest.approx(hard_ll, rel=1e-12)
        for name in ("occupancy", "x_sum", "x2_sum"):
            torch.testing.assert_close(getattr(soft, name), getattr(hard, name), rtol=1e-12, atol=0)


def test_merge_equals_single_accumulator_and_pickles():
    params = random_params([2, 2], dim=3, seed=16)
    gmm = make_gmm(*params)
    rng = np.random.default_rng(17)
    feats = torch.from_numpy(rng.normal(size=(300, 3)))
    pdf_ids = torch.from_numpy(rng.integers(2, size=300))
    whole = GmmAccumulator.for_model(gmm)
    whole.accumulate_aligned(gmm, feats, pdf_ids)
    parts = [GmmAccumulator.for_model(gmm) for _ in range(3)]
    for job, rows in enumerate(torch.arange(300).chunk(3)):
        parts[job].accumulate_aligned(gmm, feats[rows], pdf_ids[rows])
    merged = pickle.loads(pickle.dumps(parts[0]))
    merged.merge(pickle.loads(pickle.dumps(parts[1]))).merge(parts[2])
    for name in ("occupancy", "x_sum", "x2_sum"):
        torch.testing.assert_close(getattr(merged, name), getattr(whole, name), rtol=1e-12, atol=0)
    assert merged.tot_log_like == pytest.approx(whole.tot_log_like, rel=1e-12)
    assert merged.tot_weight == whole.tot_weight == 300
    other = GmmAccumulator.for_model(make_gmm(*random_params([3, 1], dim=3, seed=1)))
    with pytest.raises(ModelError, match="different models"):
        merged.merge(other)
    with pytest.raises(ModelError, match="does not match"):
        other.accumulate_aligned(gmm, feats, pdf_ids)


def test_variance_floor_is_relative_to_global_variance():
    rng = np.random.default_rng(18)
    feats = rng.normal(size=(400, 2)) * [3.0, 1.0]
    pdf_ids = np.repeat([0, 1], 200)
    feats[pdf_ids == 1, 1] = 0.5 + rng.normal(size=200) * 1e-4  # pdf 1 nearly constant in dim 1
    gmm = DiagGmmSet.init_single(num_pdfs=2, feats_mean=torch.zeros(2), feats_var=torch.ones(2))
    acc = GmmAccumulator.for_model(gmm)
    acc.accumulate_aligned(gmm, torch.from_numpy(feats), torch.from_numpy(pdf_ids))
    config = GmmUpdateConfig(min_variance=0.01)
    new, summary = ml_update(gmm, acc, config)
    global_var = feats.var(axis=0)
    assert new.variances[1, 1].item() == pytest.approx(0.01 * global_var[1], rel=1e-9)
    assert new.variances[0, 1].item() == pytest.approx(feats[:200, 1].var(), rel=1e-9)
    assert summary.num_floored == 1
    new_abs, summary_abs = ml_update(gmm, acc, config, variance_floor=torch.tensor([20.0, 1e-12]))
    assert new_abs.variances[:, 0].tolist() == [20.0, 20.0]
    assert summary_abs.num_floored == 2


def test_low_count_gaussians_removed_or_kept():
    # pdf 0: three Gaussians, one far from all data; pdf 1: two Gaussians and no data at all
    weights = np.array([0.4, 0.4, 0.2, 0.3, 0.7])
    means = np.array([[-3.0], [3.0], [100.0], [0.0], [1.0]])
    variances = np.ones((5, 1))
    offsets = np.array([0, 3, 5])
    gmm = make_gmm(weights, means, variances, offsets)
    feats = sample_frames(weights[:2] / 0.8, means[:2], variances[:2], np.array([0, 2]),
                          np.zeros(400, dtype=np.int64), seed=19)  # fmt: skip
    acc = GmmAccumulator.for_model(gmm)
    acc.accumulate_aligned(gmm, torch.from_numpy(feats), torch.zeros(400, dtype=torch.long))
    new, summary = ml_update(gmm, acc)
    assert new.num_gauss_per_pdf.tolist() == [2, 1]
    assert (summary.num_removed, summary.num_low_count) == (2, 3)
    torch.testing.assert_close(new.weights[:2].sum(), torch.tensor(1.0, dtype=torch.float64))
    assert new.means[2].item() == 0.0  # pdf 1 keeps one Gaussian with its old parameters
    assert new.weights[2].item() == pytest.approx(1.0)

    kept, summary_kept = ml_update(
        gmm, acc, GmmUpdateConfig(remove_low_count_gaussians=False, min_gaussian_weight=1e-3)
    )
    assert kept.num_gauss == 5 and summary_kept.num_removed == 0
    torch.testing.assert_close(kept.means[2:], gmm.means[2:])  # old parameters kept
    assert kept.weights[2].item() == pytest.approx(1e-3 / (1 + 1e-3), rel=1e-6)
    assert kept.weights[3:].tolist() == pytest.approx([0.5, 0.5])  # no data: 1/n each


def test_em_log_likelihood_never_decreases_at_fixed_alignment():
    params = random_params([3, 2, 1], dim=4, seed=20, spread=3.0)
    rng = np.random.default_rng(21)
    pdf_ids = torch.from_numpy(rng.integers(3, size=1500))
    feats = torch.from_numpy(sample_frames(*params, pdf_ids.numpy(), seed=22))
    gmm = DiagGmmSet.init_single(num_pdfs=3, feats_mean=feats.mean(0), feats_var=feats.var(0))
    log_likes = []
    for iteration in range(8):
        acc = GmmAccumulator.for_model(gmm)
        acc.accumulate_aligned(gmm, feats, pdf_ids)
        gmm, summary = ml_update(gmm, acc)
        log_likes.append(summary.log_like_per_frame)
        assert summary.aux_improvement_per_frame >= -1e-12
        if iteration == 1:
            gmm = mix_up(gmm, acc, target_num_gauss=6, min_count=5.0)
            log_likes.clear()  # monotonicity holds between mix-ups
    assert len(log_likes) == 6
    assert all(b >= a - 1e-10 for a, b in zip(log_likes, log_likes[1:], strict=False))


def test_ml_update_recovers_known_gmm():
    weights = np.array([0.3, 0.7, 1.0])
    means = np.array([[-4.0, 2.0, 0.0], [4.0, -1.0, 1.0], [0.0, 0.0, 5.0]])
    variances = np.array([[1.0, 0.5, 2.0], [0.7, 1.5, 1.0], [1.0, 1.0, 0.3]])
    offsets = np.array([0, 2, 3])
    pdf_ids = np.repeat([0, 1], [12000, 3000])
    feats = torch.from_numpy(sample_frames(weights, means, variances, offsets, pdf_ids, seed=23))
    pdf_ids_t = torch.from_numpy(pdf_ids)
    gmm = DiagGmmSet.init_single(num_pdfs=2, feats_mean=feats.mean(0), feats_var=feats.var(0))
    for iteration in range(12):
        acc = GmmAccumulator.for_model(gmm)
        acc.accumulate_aligned(gmm, feats, pdf_ids_t)
        gmm, _ = ml_update(gmm, acc)
        if iteration == 0:
            gmm = mix_up(gmm, acc, target_num_gauss=3, perturb_factor=0.1)
    assert gmm.num_gauss_per_pdf.tolist() == [2, 1]
    order = torch.argsort(gmm.means[:2, 0])
    np.testing.assert_allclose(gmm.weights[:2][order].numpy(), weights[:2], atol=0.02)
    np.testing.assert_allclose(gmm.means[:2][order].numpy(), means[:2], atol=0.1)
    np.testing.assert_allclose(gmm.variances[:2][order].numpy(), variances[:2], rtol=0.1)
    np.testing.assert_allclose(gmm.means[2].numpy(), means[2], atol=0.1)
    np.testing.assert_allclose(gmm.variances[2].numpy(), variances[2], rtol=0.1)


# ---------------------------------------------------------------------- mixing up
def kaldi_split_targets(occs, target, power, min_count, start=None):
    """Kaldi's GetSplitTargets greedy with a heap (optionally starting from ``start``)."""
    counts = list(start) if start is not None else [1] * len(occs)
    quota = [o**power for o in occs]
    heap = [(-q / n, p) for p, (q, n) in enumerate(zip(quota, counts, strict=True)) if q > 0]
    heapq.heapify(heap)
    total = sum(counts)
    while total < target and heap:
        _, p = heapq.heappop(heap)
        if (counts[p] + 1) * min_count >= occs[p]:
            continue  # this pdf cannot take more
        counts[p] += 1
        total += 1
        heapq.heappush(heap, (-quota[p] / counts[p], p))
    return counts


@pytest.mark.parametrize("min_count", [0.0, 20.0])
def test_split_targets_match_kaldi_greedy(min_count):
    rng = np.random.default_rng(24)
    occs = rng.gamma(0.7, 300.0, size=60)
    occs[[3, 7]] = 0.0
    ones = torch.ones(60, dtype=torch.long)
    for target in (60, 61, 150, 400):
        ours = split_targets(torch.from_numpy(occs), ones, target, power=0.2, min_count=min_count)
        assert ours.tolist() == kaldi_split_targets(occs, target, 0.2, min_count)
    start = rng.integers(1, 4, size=60)
    ours = split_targets(torch.from_numpy(occs), torch.from_numpy(start), 250, min_count=min_count)
    assert ours.tolist() == kaldi_split_targets(occs, 250, 0.2, min_count, start=start)
    assert bool((ours >= torch.from_numpy(start)).all())
    if min_count == 0.0:
        assert int(ours.sum()) == 250  # exact total when nothing forbids it
    else:
        huge = split_targets(torch.from_numpy(occs), ones, 10**6, min_count=min_count)
        expected = np.maximum(1, np.ceil(occs / min_count) - 1)
        assert huge.tolist() == expected.astype(int).tolist()  # the documented bound


def test_mix_up_reaches_target_and_improves_likelihood():
    weights = np.array([0.5, 0.5, 1.0])
    means = np.array([[-2.5, 0.0], [2.5, 1.0], [0.0, 0.0]])
    variances = np.ones((3, 2))
    offsets = np.array([0, 2, 3])
    pdf_ids = np.repeat([0, 1], [3000, 1000])
    feats = torch.from_numpy(sample_frames(weights, means, variances, offsets, pdf_ids, seed=25))
    pdf_ids_t = torch.from_numpy(pdf_ids)
    single = DiagGmmSet.init_single(num_pdfs=2, feats_mean=feats.mean(0), feats_var=feats.var(0))
    acc = GmmAccumulator.for_model(single)
    acc.accumulate_aligned(single, feats, pdf_ids_t)
    single, _ = ml_update(single, acc)

    mixed = mix_up(single, acc, target_num_gauss=7, power=0.2, min_count=1.0)
    assert mixed.num_gauss == 7
    expected = split_targets(acc.pdf_occupancies(), torch.ones(2), 7, power=0.2, min_count=1.0)
    assert mixed.num_gauss_per_pdf.tolist() == expected.tolist()
    g2p = mixed.gauss_to_pdf
    pdf_weight = torch.zeros(2, dtype=torch.float64).index_add_(0, g2p, mixed.weights)
    torch.testing.assert_close(pdf_weight, torch.ones(2, dtype=torch.float64))
    # the copies of a split Gaussian are perturbed symmetrically about the old mean
    pdf1 = mixed.means[g2p == 1]
    if pdf1.shape[0] == 2:
        torch.testing.assert_close(pdf1.mean(0), single.means[1])
    assert mix_up(mixed, acc, target_num_gauss=5) is mixed  # never removes Gaussians

    def train(gmm, iterations=10):
        for _ in range(iterations):
            acc = GmmAccumulator.for_model(gmm)
            acc.accumulate_aligned(gmm, feats, pdf_ids_t)
            gmm, summary = ml_update(gmm, acc)
        return summary.log_like_per_frame

    two = mix_up(single, acc, target_num_gauss=3, min_count=1.0, perturb_factor=0.2)
    assert two.num_gauss_per_pdf.tolist() == [2, 1]
    assert train(two) > train(single) + 0.2  # true gain is about 0.3 nats/frame


def test_empty_inputs_add_nothing(kernel_path):
    gmm = make_gmm(*random_params([2, 1], dim=3, seed=26))
    acc = GmmAccumulator.for_model(gmm)
    assert acc.accumulate_aligned(gmm, torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)) == 0.0
    assert acc.accumulate_posteriors(gmm, torch.zeros(0, 3), torch.zeros(0, 2)) == 0.0
    assert float(acc.occupancy.sum()) == 0.0 and acc.tot_weight == 0.0
    assert gmm.log_likelihoods(torch.zeros(0, 3)).shape == (0, 2)
