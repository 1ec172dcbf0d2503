"""asr.gmm.gmm_acoustic.GmmAcousticModel and the family loader asr.acoustic_model: loading a model dir,
log-likelihoods vs an independent numpy/scipy diagonal-GMM formula, pipeline, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from asr.acoustic_model import (
    AcousticModel,
    detect_family,
    load_acoustic_model,
    read_model_info,
    write_model_info,
)
from asr.errors import ModelError
from asr.features import apply_cmvn, compute_cmvn_stats, compute_deltas
from asr.features.pipeline import FeaturePipelineConfig, save_transform
from asr.gmm import DiagGmmSet
from asr.gmm.gmm_acoustic import GMM_FILE, GmmAcousticModel
from asr.hmm import init_monophone_from
from asr.lang.symbols import SymbolTable
from asr.lang.topology import make_default_topology

RAW_DIM = 5


def random_gmm(num_pdfs: int, dim: int, *, seed: int = 0, gauss_per_pdf: int = 2) -> DiagGmmSet:
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, gauss_per_pdf + 1, num_pdfs)
    num_gauss = int(counts.sum())
    weights = rng.uniform(0.2, 1.0, num_gauss)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    for p in range(num_pdfs):
        weights[offsets[p] : offsets[p + 1]] /= weights[offsets[p] : offsets[p + 1]].sum()
    return DiagGmmSet(
        means=torch.from_numpy(rng.normal(0, 1.5, (num_gauss, dim))),
        inv_vars=torch.from_numpy(rng.uniform(0.5, 2.0, (num_gauss, dim))),
        log_weights=torch.from_numpy(np.log(weights)),
        pdf_offsets=torch.from_numpy(offsets),
    )


def reference_log_likes(gmm: DiagGmmSet, feats: np.ndarray) -> np.ndarray:
    """log sum_g w_g N(x; mu_g, diag(var_g)) per pdf, straight from the definition."""
    mu, iv = gmm.means.numpy(), gmm.inv_vars.numpy()
    x = feats.astype(np.float64)
    per_gauss = (
        gmm.log_weights.numpy()[None, :]
        - 0.5 * (mu.shape[1] * np.log(2 * np.pi) - np.log(iv).sum(1))[None, :]
        - 0.5 * (((x[:, None, :] - mu[None]) ** 2) * iv[None]).sum(2)
    )
    offsets = gmm.pdf_offsets.numpy()
    return np.stack(
        [
            logsumexp(per_gauss[:, offsets[p] : offsets[p + 1]], axis=1)
            for p in range(len(offsets) - 1)
        ],
        axis=1,
    )


def make_model_dir(path, *, pipeline: FeaturePipelineConfig, gmm_dim: int, seed: int = 0):
    phones = SymbolTable.from_symbols(["<eps>", "SIL", "Y", "N", "#0"])
    topo = make_default_topology(nonsil_phone_ids=[2, 3], sil_phone_ids=[1])
    hmm = init_monophone_from(phones=phones, topology=topo)
    hmm.save(path)
    gmm = random_gmm(hmm.num_pdfs, gmm_dim, seed=seed)
    gmm.save(path / GMM_FILE)
    pipeline.save(path)
    return hmm, gmm


def test_load_and_log_likelihoods_match_definition(tmp_path):
    pipe = FeaturePipelineConfig(cmvn="utterance", deltas=2)
    hmm, gmm = make_model_dir(tmp_path, pipeline=pipe, gmm_dim=RAW_DIM * 3)
    model = load_acoustic_model(tmp_path)
    assert isinstance(model, GmmAcousticModel) and isinstance(model, AcousticModel)
    assert model.family == "gmm" and model.num_pdfs == hmm.num_pdfs == 11
    assert detect_family(tmp_path) == "gmm" and read_model_info(tmp_path) is None

    raw = np.random.default_rng(1).normal(2.0, 3.0, (40, RAW_DIM)).astype(np.float32)
    feats = model.features(raw)
    by_hand = compute_deltas(apply_cmvn(raw, compute_cmvn_stats(raw)), order=2)
    np.testing.assert_allclose(feats, by_hand, atol=1e-5)
    log_likes = model.log_likelihoods(feats)
    assert log_likes.dtype == np.float32 and log_likes.shape == (40, 11)
    np.testing.assert_allclose(log_likes, reference_log_likes(gmm, feats), rtol=1e-5, atol=1e-3)
    # the family loader gives the same scores as the class itself
    np.testing.assert_array_equal(GmmAcousticModel.load(tmp_path).log_likelihoods(feats), log_likes)


def test_transform_in_pipeline(tmp_path):
    mat = np.random.default_rng(2).normal(size=(4, RAW_DIM * 3 + 1))
    save_transform(tmp_path / "final.npy", mat)
    pipe = FeaturePipelineConfig(cmvn="none", deltas=0, splice=(1, 1), transform="final.npy")
    make_model_dir(tmp_path, pipeline=pipe, gmm_dim=4)
    model = load_acoustic_model(tmp_path)
    raw = np.random.default_rng(3).normal(size=(10, RAW_DIM)).astype(np.float32)
    feats = model.features(raw)
    padded = np.concatenate([raw[:1], raw, raw[-1:]])
    spliced = np.concatenate([padded[:-2], padded[1:-1], padded[2:]], axis=1)
    np.testing.assert_allclose(feats, spliced @ mat[:, :-1].T + mat[:, -1], atol=1e-4)
    assert model.log_likelihoods(feats).shape == (10, 11)
    # a transform whose output dim does not fit the GMMs is refused at load time
    save_transform(tmp_path / "final.npy", mat[:3])
    with pytest.raises(ModelError, match="transform gives 3-dim"):
        load_acoustic_model(tmp_path)


def test_model_info_dispatch_and_errors(tmp_path):
    pipe = FeaturePipelineConfig(cmvn="none", deltas=0)
    make_model_dir(tmp_path, pipeline=pipe, gmm_dim=RAW_DIM)
    write_model_info(tmp_path, family="gmm", trained_by="test")
    assert read_model_info(tmp_path) == {"family": "gmm", "trained_by": "test"}
    model = load_acoustic_model(tmp_path)
    with pytest.raises(ModelError, match=r"expects \(num_frames, 5\)"):
        model.log_likelihoods(np.zeros((3, 7), np.float32))

    (tmp_path / "model.json").write_text(json.dumps({"family": "hmmm"}))
    with pytest.raises(ModelError, match="family 'hmmm' is not supported"):
        load_acoustic_model(tmp_path)
    with pytest.raises(ModelError, match="unknown model family"):
        write_model_info(tmp_path, family="hmmm")
    (tmp_path / "model.json").unlink()

    (tmp_path / GMM_FILE).unlink()
    with pytest.raises(ModelError, match="cannot tell the model family"):
        load_acoustic_model(tmp_path)
    with pytest.raises(ModelError, match="no gmm.pt"):
        GmmAcousticModel.load(tmp_path)
    with pytest.raises(ModelError, match="not found"):
        load_acoustic_model(tmp_path / "nope")

    # GMMs for another number of pdfs than the tree
    random_gmm(7, RAW_DIM).save(tmp_path / GMM_FILE)
    with pytest.raises(ModelError, match="7 pdfs"):
        load_acoustic_model(tmp_path)
    # no feature pipeline
    random_gmm(11, RAW_DIM).save(tmp_path / GMM_FILE)
    (tmp_path / "feature_pipeline.json").unlink()
    with pytest.raises(ModelError, match="feature_pipeline.json"):
        load_acoustic_model(tmp_path)
