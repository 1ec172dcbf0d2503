"""Tests for asr.features.online: streaming extraction vs the offline front-end, sliding CMVN
vs a slow reference written from Kaldi's definition of ``apply-cmvn-sliding``."""

from __future__ import annotations

import numpy as np
import pytest

from asr.audio import read_audio
from asr.errors import FeatureError
from asr.features import FbankConfig, LpccConfig, LpcConfig, MfccConfig, compute_features
from asr.features.functional import (
    dct_matrix,
    lifter_coeffs,
    padded_window_size,
    window_size_samples,
)
from asr.features.online import (
    OnlineFeatureExtractor,
    OnlineSlidingCmvn,
    SlidingCmvnConfig,
    sliding_cmvn,
)

CONFIG_TYPES = (MfccConfig, FbankConfig, LpccConfig, LpcConfig)


@pytest.fixture(scope="module")
def an4_wave(an4_dir):
    return read_audio(an4_dir / "wav" / "an4_clstk" / "fash" / "an251-fash-b.wav")


@pytest.fixture(scope="module")
def yesno_wave(yesno_dir):
    return read_audio(yesno_dir / "waves_yesno" / "0_0_1_0_1_0_0_1.wav")


def _stream(config, wave, rng, *, max_chunk):
    """Feed ``wave`` in random chunks of 1..max_chunk samples, popping at random times."""
    extractor = OnlineFeatureExtractor(config)
    parts, pos = [], 0
    while pos < wave.size:
        size = int(np.exp(rng.uniform(0.0, np.log(max_chunk + 1))))
        extractor.accept_waveform(wave[pos : pos + size])
        pos += size
        if rng.random() < 0.5:
            popped = extractor.pop_frames()
            assert extractor.num_frames_popped <= extractor.num_frames_ready
            parts.append(popped)
    extractor.input_finished()
    parts.append(extractor.pop_frames())
    assert extractor.pop_frames().shape == (0, extractor.dim)
    return np.concatenate(parts)


def _gamma(n: int) -> float:
    """Higham's gamma_n: relative error bound of a float32 sum of n terms."""
    eps = float(np.finfo(np.float32).eps) / 2  # unit roundoff
    return n * eps / (1 - n * eps)


def _mfcc_error_bound(config, wave, sampling_rate) -> np.ndarray:
    """Per-element bound on |online - offline| for MFCCs from float32 error analysis.

    Online and offline compute the same frames with matrix products of different row
    counts, which BLAS kernels block (and so round) differently. A log mel energy is the
    log of a positive float32 sum over the FFT bins: both sides are within gamma_bins
    relative of the exact sum, so their logs differ by at most 2 gamma_bins. A cepstrum is a
    float32 dot product of a DCT row with those logs, times the lifter: it differs by at
    most lifter_k (|D_k| . 2 gamma_bins + 2 gamma_mel |D_k| . |log mel|). C0 (log energy
    when use_energy) is the log of a positive sum over the frame's samples. One float32
    rounding of each output is added."""
    shared = (set(FbankConfig.__dataclass_fields__) & set(type(config).__dataclass_fields__)) - {
        "use_energy"
    }
    mel = FbankConfig(**{f: getattr(config, f) for f in shared}, use_energy=False)
    log_mel = np.abs(compute_features(wave, sampling_rate, mel).astype(np.float64))
    padded = padded_window_size(
        config_frame_length(config), round_to_power_of_two=config.round_to_power_of_two
    )
    num_bins = padded // 2 + 1
    dct = np.abs(dct_matrix(num_ceps=config.num_ceps, num_mel_bins=config.num_mel_bins))
    lifter = np.abs(lifter_coeffs(num_ceps=config.num_ceps, cepstral_lifter=config.cepstral_lifter))
    bound = lifter * (
        dct.sum(axis=1) * 2 * _gamma(num_bins) + 2 * _gamma(config.num_mel_bins) * log_mel @ dct.T
    )
    if config.use_energy:
        bound[:, 0] = 2 * _gamma(config_frame_length(config))
    return bound


def config_frame_length(config) -> int:
    return window_size_samples(sampling_rate=config.sampling_rate, length_ms=config.frame_length_ms)


def _check_close(online, offline, bound=None):
    assert online.shape == offline.shape
    assert online.dtype == np.float32
    # Equal up to float32 rounding (BLAS may block a different number of rows differently).
    if bound is None:
        np.testing.assert_allclose(online, offline, rtol=1e-6, atol=1e-5)
        return
    ulp = np.spacing(np.maximum(np.abs(online), np.abs(offline)))
    excess = np.abs(online.astype(np.float64) - offline) - (bound + ulp)
    assert excess.max() <= 0, (
        f"online differs from offline by more than the float32 bound: {excess.max()}"
    )


@pytest.mark.parametrize("snip_edges", [True, False])
@pytest.mark.parametrize("config_type", CONFIG_TYPES)
def test_random_chunkings_match_offline(config_type, snip_edges, an4_wave, yesno_wave):
    rng = np.random.default_rng(1234)
    for wave, sampling_rate in (an4_wave, yesno_wave):
        config = config_type(sampling_rate=sampling_rate, snip_edges=snip_edges)
        offline = compute_features(wave, sampling_rate, config)
        assert offline.shape[0] > 90
        mfcc = config_type is MfccConfig
        bound = _mfcc_error_bound(config, wave, sampling_rate) if mfcc else None
        for _ in range(4):
            _check_close(_stream(config, wave, rng, max_chunk=sampling_rate), offline, bound)
        # Tiny chunks over the first 0.3 s.
        head = wave[: 3 * sampling_rate // 10]
        bound = _mfcc_error_bound(config, head, sampling_rate) if mfcc else None
        _check_close(
            _stream(config, head, rng, max_chunk=3),
            compute_features(head, sampling_rate, config),
            bound,
        )


def test_frames_appear_as_soon_as_their_window_is_complete(an4_wave):
    wave, sampling_rate = an4_wave
    for snip_edges in (True, False):
        config = MfccConfig(sampling_rate=sampling_rate, snip_edges=snip_edges)
        extractor = OnlineFeatureExtractor(config)
        extractor.accept_waveform(wave[:1000])
        # 400-sample frames every 160 samples: snipping, frames 0..3 end at 400..880;
        # centred (first frame starts at -120), frames 0..4 end at 280..920.
        assert extractor.num_frames_ready == (4 if snip_edges else 5)
        assert extractor.pop_frames().shape == (extractor.num_frames_ready, 13)
        extractor.accept_waveform(wave[1000:])
        before_end = extractor.num_frames_ready
        extractor.input_finished()
        total = compute_features(wave, sampling_rate, config).shape[0]
        assert extractor.num_frames_ready == total
        assert (before_end == total) == snip_edges  # the edge frames wait for the end
        popped_before = extractor.num_frames_popped
        assert extractor.pop_frames().shape[0] == total - popped_before
        assert extractor.num_frames_popped == total


@pytest.mark.parametrize("num_samples", [0, 1, 50, 119, 121, 399, 400, 401, 700])
def test_short_signals_match_offline(num_samples, an4_wave):
    wave = an4_wave[0][4000 : 4000 + num_samples]
    for snip_edges in (True, False):
        config = FbankConfig(sampling_rate=16000, snip_edges=snip_edges)
        expected = (
            compute_features(wave, 16000, config) if num_samples else np.zeros((0, 23), np.float32)
        )
        for max_chunk in (1, 7, 1000):
            got = _stream(config, wave, np.random.default_rng(num_samples), max_chunk=max_chunk)
            _check_close(got, expected)


def test_bad_input_raises_feature_error():
    extractor = OnlineFeatureExtractor(MfccConfig(sampling_rate=8000))
    with pytest.raises(FeatureError, match="1-D"):
        extractor.accept_waveform(np.zeros((10, 2), np.float32))
    with pytest.raises(FeatureError, match="float"):
        extractor.accept_waveform(np.zeros(10, np.int16))
    with pytest.raises(FeatureError, match="NaN"):
        extractor.accept_waveform(np.array([0.0, np.nan], np.float32))
    extractor.input_finished()
    with pytest.raises(FeatureError, match="after input_finished"):
        extractor.accept_waveform(np.zeros(10, np.float32))


# --------------------------------------------------------------------------- sliding CMVN


def _reference_sliding_cmvn(feats, *, cmn_window, min_window, center, norm_vars):
    """Slow, frame-by-frame statement of Kaldi's apply-cmvn-sliding definition."""
    x = feats.astype(np.float64)
    num_frames = x.shape[0]
    out = np.zeros_like(x)
    for t in range(num_frames):
        if center:
            start = t - cmn_window // 2
            end = start + cmn_window
        else:
            start = t - cmn_window
            end = t + 1
        if start < 0:
            end -= start
            start = 0
        if not center and end > t:
            end = max(t + 1, min_window)
        if end > num_frames:
            start = max(0, start - (end - num_frames))
            end = num_frames
        window = x[start:end]
        mean = window.mean(axis=0)
        out[t] = x[t] - mean
        if norm_vars:
            if end - start == 1:
                out[t] = 0.0
            else:
                variance = np.maximum((window**2).mean(axis=0) - mean**2, 1e-10)
                out[t] /= np.sqrt(variance)
    return out.astype(np.float32)


CMVN_CONFIGS = [
    SlidingCmvnConfig(),
    SlidingCmvnConfig(center=True),
    SlidingCmvnConfig(norm_vars=True),
    SlidingCmvnConfig(cmn_window=7, min_window=3),
    SlidingCmvnConfig(cmn_window=8, min_window=20, center=True, norm_vars=True),
    SlidingCmvnConfig(cmn_window=9, min_window=4, norm_vars=True),
]


@pytest.fixture(scope="module")
def long_feats(yesno_wave):
    wave, sampling_rate = yesno_wave
    return compute_features(wave, sampling_rate, MfccConfig(sampling_rate=sampling_rate))


@pytest.mark.parametrize("config", CMVN_CONFIGS, ids=repr)
def test_sliding_cmvn_matches_kaldi_definition(config, long_feats):
    options = dict(
        cmn_window=config.cmn_window,
        min_window=config.min_window,
        center=config.center,
        norm_vars=config.norm_vars,
    )
    assert long_feats.shape[0] > config.cmn_window
    for num_frames in (1, 2, 5, 50, 150, long_feats.shape[0]):
        feats = long_feats[:num_frames]
        got = sliding_cmvn(feats, config)
        assert got.dtype == np.float32 and got.shape == feats.shape
        np.testing.assert_allclose(
            got, _reference_sliding_cmvn(feats, **options), rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("config", CMVN_CONFIGS, ids=repr)
def test_online_sliding_cmvn_is_bit_identical(config, long_feats):
    rng = np.random.default_rng(7)
    for num_frames in (3, 120, long_feats.shape[0]):
        feats = long_feats[:num_frames]
        expected = sliding_cmvn(feats, config)
        for _ in range(3):
            cmvn = OnlineSlidingCmvn(config)
            parts, pos = [], 0
            while pos < num_frames:
                size = int(rng.integers(0, 40))
                cmvn.accept_frames(feats[pos : pos + size])
                pos += size
                parts.append(cmvn.pop_frames())
            cmvn.input_finished()
            parts.append(cmvn.pop_frames())
            got = np.concatenate(parts)
            assert got.tobytes() == expected.tobytes()


def test_online_sliding_cmvn_latency_and_memory(long_feats):
    # Looking back: nothing before min_window frames, then every frame at once.
    cmvn = OnlineSlidingCmvn(SlidingCmvnConfig(cmn_window=50, min_window=10))
    cmvn.accept_frames(long_feats[:9])
    assert cmvn.num_frames_ready == 0
    cmvn.accept_frames(long_feats[9:30])
    assert cmvn.num_frames_ready == 30
    # Centred: frame t waits for frames up to t + cmn_window // 2 (window [t - 25, t + 25)).
    cmvn = OnlineSlidingCmvn(SlidingCmvnConfig(cmn_window=50, center=True))
    cmvn.accept_frames(long_feats[:49])
    assert cmvn.num_frames_ready == 0
    cmvn.accept_frames(long_feats[49:100])
    assert cmvn.num_frames_ready == 100 - 25 + 1
    # Memory stays bounded by the window on a long stream.
    cmvn = OnlineSlidingCmvn(SlidingCmvnConfig(cmn_window=20, min_window=5))
    for _ in range(20):
        cmvn.accept_frames(long_feats)
        cmvn.pop_frames()
        assert cmvn._frames.shape[0] <= 22


def test_sliding_cmvn_errors():
    with pytest.raises(FeatureError):
        SlidingCmvnConfig(cmn_window=0)
    with pytest.raises(FeatureError):
        sliding_cmvn(np.zeros(5, np.float32))
    cmvn = OnlineSlidingCmvn()
    cmvn.accept_frames(np.zeros((3, 4), np.float32))
    with pytest.raises(FeatureError, match="dimension"):
        cmvn.accept_frames(np.zeros((3, 5), np.float32))
    cmvn.input_finished()
    with pytest.raises(FeatureError, match="after input_finished"):
        cmvn.accept_frames(np.zeros((3, 4), np.float32))
