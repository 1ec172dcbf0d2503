"""asr.features.pipeline: the model-level feature pipeline vs by-hand compositions on real yesno
features (two pseudo-speakers so speaker CMVN is not utterance CMVN)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from asr.errors import FeatureError
from asr.features import MfccConfig, apply_cmvn, compute_cmvn_stats, compute_deltas
from asr.features.extractors import config_to_dict
from asr.features.io import read_matrices_scp
from asr.features.online import SlidingCmvnConfig, sliding_cmvn
from asr.features.pipeline import (
    PIPELINE_FILE,
    FeaturePipelineConfig,
    apply_pipeline,
    iter_features,
    load_features,
    load_transform,
    read_feature_config,
    save_transform,
    splice,
)
from asr.features.transforms import apply_transform, splice_frames
from tests.support.yesno_data import MFCC, make_yesno_data_dir


@pytest.fixture(scope="module")
def data_dir(yesno_dir, tmp_path_factory):
    names = sorted(p.stem for p in (yesno_dir / "waves_yesno").glob("*.wav"))[:4]
    return make_yesno_data_dir(yesno_dir, tmp_path_factory.mktemp("pipe") / "set", names=names)


def raw_and_speaker_stats(data_dir: Path):
    raw = dict(read_matrices_scp(data_dir / "feats.scp"))
    by_spk: dict[str, list[np.ndarray]] = {}
    for utt_id, m in raw.items():
        by_spk.setdefault(utt_id.split("-")[0], []).append(m)
    # stats by hand over the speaker's concatenated frames (not via accumulate_cmvn_stats)
    stats = {s: compute_cmvn_stats(np.concatenate(ms)) for s, ms in by_spk.items()}
    return raw, stats


def test_speaker_cmvn_plus_deltas_equals_by_hand(data_dir):
    raw, stats = raw_and_speaker_stats(data_dir)
    pipe = FeaturePipelineConfig(cmvn="speaker", deltas=2, base=config_to_dict(MFCC))
    got = load_features(data_dir, pipe)
    assert list(got) == list(raw)
    for utt_id, m in raw.items():
        spk_stats = stats[utt_id.split("-")[0]]
        # speaker stats differ from the utterance's own: the test would notice a mix-up
        assert not np.allclose(spk_stats[0, :-1] / spk_stats[0, -1], m.mean(0), atol=1e-3)
        expected = compute_deltas(apply_cmvn(m, spk_stats), window=2, order=2)
        assert got[utt_id].dtype == np.float32 and got[utt_id].shape == (m.shape[0], 39)
        np.testing.assert_allclose(got[utt_id], expected, rtol=1e-5, atol=2e-4)


def test_utterance_cmvn_norm_vars_and_sliding(data_dir):
    raw, _ = raw_and_speaker_stats(data_dir)
    utt_id, m = next(iter(raw.items()))
    pipe = FeaturePipelineConfig(cmvn="utterance", norm_vars=True, deltas=1)
    got = dict(iter_features(data_dir, pipe, utt_ids=[utt_id]))[utt_id]
    x = m.astype(np.float64)
    normed = (x - x.mean(0)) / x.std(0)
    np.testing.assert_allclose(got, compute_deltas(normed, order=1), atol=1e-3)
    np.testing.assert_allclose(got[:, :13].mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(got[:, :13].std(0), 1.0, atol=1e-4)

    pipe = FeaturePipelineConfig(cmvn="sliding", deltas=0, cmn_window=300)
    got = apply_pipeline(m, pipe)
    np.testing.assert_array_equal(got, sliding_cmvn(m, SlidingCmvnConfig(cmn_window=300)))

    none = apply_pipeline(m, FeaturePipelineConfig(cmvn="none", deltas=0))
    np.testing.assert_array_equal(none, m)


def test_splice_and_transform_equal_gmm_helpers_and_loop(data_dir, tmp_path):
    raw, stats = raw_and_speaker_stats(data_dir)
    utt_id, m = next(iter(raw.items()))
    spliced = splice(m, left=3, right=2)
    loop = np.stack(
        [
            np.concatenate([m[min(max(t + o, 0), len(m) - 1)] for o in range(-3, 3)])
            for t in range(len(m))
        ]
    )
    np.testing.assert_array_equal(spliced, loop)
    np.testing.assert_array_equal(spliced, splice_frames(m, left=3, right=2))

    rng = np.random.default_rng(0)
    mat = rng.normal(size=(40, 13 * 7 + 1))
    save_transform(tmp_path / "final.npy", mat)
    np.testing.assert_array_equal(load_transform(tmp_path / "final.npy"), mat)
    pipe = FeaturePipelineConfig(cmvn="speaker", deltas=0, splice=(3, 3), transform="final.npy")
    got = load_features(data_dir, pipe, model_dir=tmp_path, utt_ids=[utt_id])[utt_id]
    normed = apply_cmvn(m, stats[utt_id.split("-")[0]])
    expected = apply_transform(
        torch.from_numpy(splice_frames(normed.astype(np.float64), left=3, right=3)),
        torch.from_numpy(mat),
    ).numpy()
    assert got.shape == (m.shape[0], 40)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)
    assert pipe.output_dim(13, mat) == 40 and pipe.dim_before_transform(13) == 91


def test_save_load_roundtrip_and_bad_files(tmp_path):
    pipe = FeaturePipelineConfig(
        cmvn="utterance", deltas=0, splice=(4, 4), transform="lda.npy", base=config_to_dict(MFCC)
    )
    pipe.save(tmp_path)
    assert FeaturePipelineConfig.load(tmp_path) == pipe
    assert pipe.base_config() == MFCC
    obj = json.loads((tmp_path / PIPELINE_FILE).read_text())
    obj["bogus"] = 1
    (tmp_path / PIPELINE_FILE).write_text(json.dumps(obj))
    with pytest.raises(FeatureError, match="bogus"):
        FeaturePipelineConfig.load(tmp_path)
    with pytest.raises(FeatureError, match="not found"):
        FeaturePipelineConfig.load(tmp_path / "nope")
    with pytest.raises(FeatureError, match="cmvn"):
        FeaturePipelineConfig(cmvn="global")
    with pytest.raises(FeatureError, match="splice"):
        FeaturePipelineConfig(splice=(-1, 2))
    with pytest.raises(FeatureError, match="file name"):
        FeaturePipelineConfig(transform="../x.npy")


def test_missing_inputs_give_clear_errors(data_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FeatureError, match="asr features compute"):
        load_features(empty, FeaturePipelineConfig())
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "feats.scp").write_text((data_dir / "feats.scp").read_text())
    (partial / "utt2spk").write_text((data_dir / "utt2spk").read_text())
    with pytest.raises(FeatureError, match="cmvn.scp.*asr features compute"):
        load_features(partial, FeaturePipelineConfig(cmvn="speaker"))
    assert len(load_features(partial, FeaturePipelineConfig(cmvn="utterance"))) == 4
    with pytest.raises(FeatureError, match="transform"):
        load_features(data_dir, FeaturePipelineConfig(transform="lda.npy"))
    with pytest.raises(FeatureError, match="no features for utterance"):
        load_features(data_dir, FeaturePipelineConfig(), utt_ids=["nobody"])
    # a model whose raw features differ from the data dir's is refused
    other = config_to_dict(MfccConfig(sampling_rate=8000, num_ceps=20))
    with pytest.raises(FeatureError, match="num_ceps"):
        load_features(data_dir, FeaturePipelineConfig(base=other))
    assert read_feature_config(data_dir) == config_to_dict(MFCC)
