"""MFCC/fbank (asr.features) against torchaudio's Kaldi-compliance front-end.

``torchaudio.compliance.kaldi`` re-implements Kaldi's ``compute-mfcc-feats`` /
``compute-fbank-feats`` in torch: a second oracle beside kaldi-native-fbank
(tests/test_features_mfcc.py), written independently of both Kaldi's C++ and ours. Like
Kaldi it takes samples at int16 scale; its defaults differ from Kaldi's in a few places
(``use_energy=False`` and ``energy_floor=1.0`` for MFCC, ``dither=1.0``), which are set to
Kaldi's (and ours) here.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from torchaudio.compliance import kaldi

from asr.features import FbankConfig, MfccConfig, compute_fbank, compute_mfcc

# The acceptance bound of tests/test_features_mfcc.py. Both sides round in float32; observed
# (AN4 16 kHz, FSDD 8 kHz): MFCC up to 5.2e-4 (lifted high cepstra), fbank up to 1.0e-4.
TOL = 1e-3


def read_wav(path) -> tuple[np.ndarray, int]:
    data, rate = sf.read(path, dtype="int16")
    return data.astype(np.float32) / 32768.0, rate


def torchaudio_features(kind: str, samples: np.ndarray, rate: int, **options) -> np.ndarray:
    wave = torch.from_numpy(samples * 32768.0).unsqueeze(0)
    common = {"sample_frequency": float(rate), "dither": 0.0, "energy_floor": 0.0}
    if kind == "mfcc":
        feats = kaldi.mfcc(wave, use_energy=True, **common, **options)
    else:
        feats = kaldi.fbank(wave, **common, **options)
    return feats.numpy()


@pytest.fixture(scope="module")
def wavs(an4_dir, fsdd_dir):
    speakers = sorted((an4_dir / "wav" / "an4_clstk").iterdir())
    an4 = [sorted(spk.glob("*.wav"))[0] for spk in speakers[:: max(1, len(speakers) // 3)]][:3]
    fsdd = sorted((fsdd_dir / "recordings").glob("*.wav"))[::700][:3]
    return an4 + fsdd  # 16 kHz and 8 kHz


@pytest.mark.parametrize("snip_edges", [True, False])
def test_mfcc_matches_torchaudio_kaldi(wavs, snip_edges):
    for path in wavs:
        samples, rate = read_wav(path)
        ours = compute_mfcc(samples, rate, MfccConfig(sampling_rate=rate, snip_edges=snip_edges))
        ref = torchaudio_features("mfcc", samples, rate, snip_edges=snip_edges)
        assert ours.shape == ref.shape, path
        assert np.abs(ours - ref).max() <= TOL, (path, np.abs(ours - ref).max())


@pytest.mark.parametrize("snip_edges", [True, False])
def test_fbank_matches_torchaudio_kaldi(wavs, snip_edges):
    for path in wavs:
        samples, rate = read_wav(path)
        ours = compute_fbank(samples, rate, FbankConfig(sampling_rate=rate, snip_edges=snip_edges))
        ref = torchaudio_features("fbank", samples, rate, snip_edges=snip_edges)
        assert ours.shape == ref.shape == (ref.shape[0], 23), path
        assert np.abs(ours - ref).max() <= TOL, (path, np.abs(ours - ref).max())


@pytest.mark.parametrize(
    ("ours_kw", "ta_kw"),
    [
        ({"num_mel_bins": 40, "num_ceps": 20}, {"num_mel_bins": 40, "num_ceps": 20}),
        ({"window_type": "hamming", "preemph_coeff": 0.0}, {"window_type": "hamming",
                                                           "preemphasis_coefficient": 0.0}),
        ({"raw_energy": False, "cepstral_lifter": 0.0}, {"raw_energy": False,
                                                         "cepstral_lifter": 0.0}),
        ({"low_freq": 100.0, "high_freq": -400.0}, {"low_freq": 100.0, "high_freq": -400.0}),
    ],
)  # fmt: skip
def test_mfcc_options_match_torchaudio_kaldi(wavs, ours_kw, ta_kw):
    samples, rate = read_wav(wavs[0])
    ours = compute_mfcc(samples, rate, MfccConfig(sampling_rate=rate, **ours_kw))
    ref = torchaudio_features("mfcc", samples, rate, **ta_kw)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= TOL, np.abs(ours - ref).max()
