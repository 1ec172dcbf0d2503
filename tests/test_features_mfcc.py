"""MFCC/fbank (asr.features.extractors + functional framing) against kaldi-native-fbank.

kaldi-native-fbank (knf) is Kaldi's feature code in C++; it takes samples as
given, so it is fed int16-scale values (``x * 32768``) like Kaldi's own
``compute-mfcc-feats``. Our functions take [-1, 1] floats and scale inside.
"""

from __future__ import annotations

import json

import kaldi_native_fbank as knf
import numpy as np
import pytest
import soundfile as sf

from asr.errors import FeatureError
from asr.features import (
    FbankConfig,
    FeatureExtractor,
    LpccConfig,
    LpcConfig,
    MfccConfig,
    compute_fbank,
    compute_features,
    compute_mfcc,
    config_from_dict,
    config_to_dict,
    count_frames,
    feature_dim,
    frame_signal,
    get_extractor,
    num_frames,
)

TOL = 1e-3  # the acceptance bound; observed differences are ~2e-4 (float32 rounding)


def read_wav(path) -> tuple[np.ndarray, int]:
    data, rate = sf.read(path, dtype="int16")
    return data.astype(np.float32) / 32768.0, rate


def knf_features(kind: str, samples: np.ndarray, sampling_rate: int, **options) -> np.ndarray:
    """Run knf's OnlineMfcc/OnlineFbank with dither 0 and the given options."""
    opts = knf.MfccOptions() if kind == "mfcc" else knf.FbankOptions()
    frame_keys = {
        "snip_edges",
        "window_type",
        "preemph_coeff",
        "remove_dc_offset",
        "round_to_power_of_two",
        "frame_length_ms",
        "frame_shift_ms",
    }
    mel_keys = {"num_bins", "low_freq", "high_freq"}
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = float(sampling_rate)
    for key, value in options.items():
        if key in frame_keys:
            setattr(opts.frame_opts, key, value)
        elif key in mel_keys:
            setattr(opts.mel_opts, key, value)
        else:
            setattr(opts, key, value)
    computer = knf.OnlineMfcc(opts) if kind == "mfcc" else knf.OnlineFbank(opts)
    computer.accept_waveform(float(sampling_rate), (samples * 32768.0).tolist())
    computer.input_finished()
    rows = [computer.get_frame(i) for i in range(computer.num_frames_ready)]
    return np.array(rows, dtype=np.float32).reshape(-1, computer.dim)


@pytest.fixture(scope="module")
def an4_wavs(an4_dir):
    speakers = sorted((an4_dir / "wav" / "an4_clstk").iterdir())
    # One file each from speakers spread over the corpus (male and female voices).
    return [sorted(spk.glob("*.wav"))[0] for spk in speakers[:: max(1, len(speakers) // 4)]][:4]


@pytest.fixture(scope="module")
def fsdd_wavs(fsdd_dir):
    return sorted((fsdd_dir / "recordings").glob("*.wav"))[::500][:4]


@pytest.mark.parametrize("snip_edges", [True, False])
def test_mfcc_and_fbank_match_knf_on_an4(an4_wavs, snip_edges):
    for path in an4_wavs:
        samples, rate = read_wav(path)
        assert rate == 16000
        ours = compute_mfcc(samples, rate, MfccConfig(snip_edges=snip_edges))
        ref = knf_features("mfcc", samples, rate, snip_edges=snip_edges)
        assert ours.dtype == np.float32 and ours.shape == ref.shape, path
        assert np.abs(ours - ref).max() <= TOL, path
        ours_fb = compute_fbank(samples, rate, FbankConfig(snip_edges=snip_edges))
        ref_fb = knf_features("fbank", samples, rate, snip_edges=snip_edges)
        assert ours_fb.shape == ref_fb.shape == (ref.shape[0], 23)
        assert np.abs(ours_fb - ref_fb).max() <= TOL, path


@pytest.mark.parametrize("snip_edges", [True, False])
def test_mfcc_and_fbank_match_knf_on_fsdd_8khz(fsdd_wavs, snip_edges):
    for path in fsdd_wavs:
        samples, rate = read_wav(path)
        assert rate == 8000
        config = MfccConfig(sampling_rate=8000, snip_edges=snip_edges)
        ours = compute_mfcc(samples, rate, config)
        ref = knf_features("mfcc", samples, rate, snip_edges=snip_edges)
        assert ours.shape == ref.shape and np.abs(ours - ref).max() <= TOL, path
        fb_config = FbankConfig(sampling_rate=8000, snip_edges=snip_edges)
        ours_fb = compute_fbank(samples, rate, fb_config)
        ref_fb = knf_features("fbank", samples, rate, snip_edges=snip_edges)
        assert ours_fb.shape == ref_fb.shape and np.abs(ours_fb - ref_fb).max() <= TOL, path


# (our config kwargs, knf option kwargs) pairs exercising the non-default paths.
MFCC_VARIANTS = [
    (dict(raw_energy=False), dict(raw_energy=False)),
    (dict(use_energy=False, cepstral_lifter=0.0), dict(use_energy=False, cepstral_lifter=0.0)),
    (
        dict(num_mel_bins=40, num_ceps=20, low_freq=64.0, high_freq=-400.0),
        dict(num_bins=40, num_ceps=20, low_freq=64.0, high_freq=-400.0),
    ),
    (
        dict(window_type="hamming", preemph_coeff=0.0, remove_dc_offset=False),
        dict(window_type="hamming", preemph_coeff=0.0, remove_dc_offset=False),
    ),
    (
        dict(window_type="hanning", frame_length_ms=32.0, frame_shift_ms=12.5),
        dict(window_type="hanning", frame_length_ms=32.0, frame_shift_ms=12.5),
    ),
    (
        dict(window_type="blackman", energy_floor=1e6),
        dict(window_type="blackman", energy_floor=1e6),
    ),
    (dict(window_type="rectangular"), dict(window_type="rectangular")),
    (dict(round_to_power_of_two=False), dict(round_to_power_of_two=False)),
]
FBANK_VARIANTS = [
    (dict(use_energy=True), dict(use_energy=True)),
    (dict(use_energy=True, raw_energy=False), dict(use_energy=True, raw_energy=False)),
    (dict(use_power=False), dict(use_power=False)),
    (dict(use_log_fbank=False), dict(use_log_fbank=False)),
    (dict(num_mel_bins=80, high_freq=7600.0), dict(num_bins=80, high_freq=7600.0)),
]


@pytest.mark.parametrize(("ours_kw", "knf_kw"), MFCC_VARIANTS)
def test_mfcc_options_match_knf(an4_wavs, ours_kw, knf_kw):
    samples, rate = read_wav(an4_wavs[0])
    ours = compute_mfcc(samples, rate, MfccConfig(**ours_kw))
    ref = knf_features("mfcc", samples, rate, **knf_kw)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= TOL


@pytest.mark.parametrize(("ours_kw", "knf_kw"), FBANK_VARIANTS)
def test_fbank_options_match_knf(an4_wavs, ours_kw, knf_kw):
    samples, rate = read_wav(an4_wavs[1])
    ours = compute_fbank(samples, rate, FbankConfig(**ours_kw))
    ref = knf_features("fbank", samples, rate, **knf_kw)
    assert ours.shape == ref.shape
    if ours_kw.get("use_log_fbank") is False:  # linear energies: compare relatively
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-3)
    else:
        assert np.abs(ours - ref).max() <= TOL


def test_digital_silence_is_floored_like_kaldi():
    silence = np.zeros(4000, dtype=np.float32)
    ours = compute_mfcc(silence, 16000)
    ref = knf_features("mfcc", silence, 16000)
    assert np.isfinite(ours).all() and np.abs(ours - ref).max() <= TOL
    fb = compute_fbank(silence, 16000, FbankConfig(use_energy=True))
    np.testing.assert_allclose(fb, np.log(np.finfo(np.float32).eps), rtol=1e-6)


def test_frame_counts_match_knf_and_kaldi_formula():
    rng = np.random.default_rng(1)
    config = MfccConfig()
    for n in (0, 1, 80, 399, 400, 401, 559, 560, 561, 16000, 16079, 16080):
        samples = (0.1 * rng.standard_normal(n)).astype(np.float32)
        for snip in (True, False):
            cfg = MfccConfig(snip_edges=snip)
            expected = (1 + (n - 400) // 160 if n >= 400 else 0) if snip else (n + 80) // 160
            assert num_frames(n, cfg) == expected
            assert count_frames(n, frame_length=400, frame_shift=160, snip_edges=snip) == expected
            feats = compute_mfcc(samples, 16000, cfg)
            assert feats.shape == (expected, 13)
            if n > 0:
                assert (
                    feats.shape[0] == knf_features("mfcc", samples, 16000, snip_edges=snip).shape[0]
                )
    assert compute_mfcc(np.zeros(0, np.float32), 16000, config).shape == (0, 13)
    assert compute_fbank(np.zeros(100, np.float32), 16000).shape == (0, 23)


def test_frame_signal_reflects_edges_like_kaldi():
    signal = np.arange(10.0)
    frames = frame_signal(signal, frame_length=6, frame_shift=4, snip_edges=False)
    # Kaldi: frame i starts at 4 i + 2 - 3; indices out of range reflect (-1 -> 0, 10 -> 9).
    expected = []
    for i in range((10 + 2) // 4):
        row = []
        for s in range(4 * i + 2 - 3, 4 * i + 2 - 3 + 6):
            while s < 0 or s >= 10:
                s = -s - 1 if s < 0 else 2 * 10 - 1 - s
            row.append(float(s))
        expected.append(row)
    np.testing.assert_array_equal(frames, np.array(expected))
    # Pathological: frames longer than the signal need repeated reflection.
    short = frame_signal(np.arange(3.0), frame_length=8, frame_shift=2, snip_edges=False)
    assert short.shape == (2, 8) and set(short.ravel()) <= {0.0, 1.0, 2.0}


def test_bad_input_raises_feature_error():
    good = np.zeros(1000, dtype=np.float32)
    with pytest.raises(FeatureError, match="NaN"):
        compute_mfcc(np.array([0.0, np.nan] * 500, dtype=np.float32), 16000)
    with pytest.raises(FeatureError, match="NaN or infinite"):
        compute_fbank(np.full(1000, np.inf, dtype=np.float32), 16000)
    with pytest.raises(FeatureError, match="sampling_rate"):
        compute_mfcc(good, 8000)
    with pytest.raises(FeatureError, match="1-D"):
        compute_mfcc(np.zeros((2, 1000), np.float32), 16000)
    with pytest.raises(FeatureError, match="int16"):
        compute_mfcc(np.zeros(1000, np.int16), 16000)
    with pytest.raises(FeatureError, match="expected a MfccConfig"):
        compute_mfcc(good, 16000, FbankConfig())


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (MfccConfig, dict(window_type="kaiser"), "window_type"),
        (MfccConfig, dict(num_ceps=30), "num_ceps"),
        (MfccConfig, dict(high_freq=9000.0), "mel range"),
        (MfccConfig, dict(low_freq=5000.0, high_freq=4000.0), "mel range"),
        (FbankConfig, dict(num_mel_bins=2), "num_mel_bins"),
        (FbankConfig, dict(sampling_rate=16000.0), "sampling_rate"),
        (MfccConfig, dict(dither=-1.0), "dither"),
        (MfccConfig, dict(frame_length_ms=0.05), "too short"),
        (MfccConfig, dict(preemph_coeff=1.5), "preemph_coeff"),
        (LpcConfig, dict(method="covariance"), "method"),
        (LpcConfig, dict(order=400), "order"),
        (LpccConfig, dict(num_ceps=0), "num_ceps"),
    ],
)
def test_config_validation(cls, kwargs, message):
    with pytest.raises(FeatureError, match=message):
        cls(**kwargs)


def test_config_dict_round_trip_through_json():
    configs = [
        MfccConfig(num_ceps=20, num_mel_bins=40, snip_edges=False),
        FbankConfig(num_mel_bins=80, use_energy=True, sampling_rate=8000),
        LpcConfig(order=10, method="burg"),
        LpccConfig(order=16, num_ceps=20, use_energy=False, window_type="hamming"),
    ]
    for config in configs:
        d = json.loads(json.dumps(config_to_dict(config)))
        assert d["type"] in ("mfcc", "fbank", "lpc", "lpcc")
        back = config_from_dict(d)
        assert back == config and type(back) is type(config)
    with pytest.raises(FeatureError, match="unknown mfcc config keys"):
        config_from_dict({"type": "mfcc", "num_cep": 13})
    with pytest.raises(FeatureError, match="'type'"):
        config_from_dict({"num_ceps": 13})
    with pytest.raises(FeatureError, match="num_ceps"):
        config_from_dict({"type": "mfcc", "num_ceps": 99})


def test_extractor_dispatch_dims_and_frames(an4_wavs):
    samples, rate = read_wav(an4_wavs[2])
    configs = [
        MfccConfig(),
        FbankConfig(use_energy=True),
        LpcConfig(order=8),
        LpccConfig(num_ceps=15),
    ]
    for config in configs:
        feats = compute_features(samples, rate, config)
        assert feats.shape == (num_frames(samples.size, config), feature_dim(config))
        assert feats.dtype == np.float32
        extractor = FeatureExtractor(config)
        np.testing.assert_array_equal(extractor(samples), feats)
        # Features of frames cut separately (as the online extractor does) are identical.
        frames = frame_signal(samples, frame_length=400, frame_shift=160, snip_edges=True)
        half = frames.shape[0] // 2
        pieces = np.concatenate(
            [extractor.from_frames(frames[:half]), extractor.from_frames(np.array(frames[half:]))]
        )
        np.testing.assert_allclose(pieces, feats, rtol=1e-5, atol=1e-5)
    assert get_extractor(MfccConfig()) is get_extractor(MfccConfig())
    with pytest.raises(FeatureError, match="shape"):
        FeatureExtractor(MfccConfig()).from_frames(np.zeros((3, 399), np.float32))


def test_dither_is_seeded_and_small(an4_wavs):
    samples, rate = read_wav(an4_wavs[0])
    plain = compute_fbank(samples, rate)
    a = compute_fbank(samples, rate, FbankConfig(dither=1.0, dither_seed=3))
    b = compute_fbank(samples, rate, FbankConfig(dither=1.0, dither_seed=3))
    c = compute_fbank(samples, rate, FbankConfig(dither=1.0, dither_seed=4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, plain)
    # Unit-variance noise on the int16 scale barely moves speech frames.
    assert np.median(np.abs(a - plain)) < 0.05
