"""LPC/LPCC (asr.features.lpc and the lpc/lpcc extractors) against independent oracles.

* Burg: ``librosa.lpc`` run one frame at a time.
* Autocorrelation: ``scipy.linalg.solve_toeplitz`` on autocorrelations computed
  here with ``np.correlate``.
* LPCC: the real cepstrum of the model spectrum ``G / |A(e^jw)|`` computed
  numerically with a long FFT.
"""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import scipy.linalg
import soundfile as sf

from asr.errors import FeatureError
from asr.features import LpccConfig, LpcConfig, MfccConfig, compute_lpc, compute_lpcc, compute_mfcc
from asr.features import lpc as L


def reference_frames(samples: np.ndarray, config: LpcConfig) -> np.ndarray:
    """Kaldi-style framing and preprocessing written plainly (float64, int16 scale)."""
    length, shift = config.frame_length, config.frame_shift
    starts = range(0, samples.size - length + 1, shift)
    frames = np.stack([samples[s : s + length] for s in starts]).astype(np.float64) * 32768.0
    frames -= frames.mean(axis=1, keepdims=True)
    emphasised = frames.copy()
    emphasised[:, 1:] -= config.preemph_coeff * frames[:, :-1]
    emphasised[:, 0] -= config.preemph_coeff * frames[:, 0]
    n = np.arange(length)
    if config.window_type == "povey":
        window = (0.5 - 0.5 * np.cos(2 * np.pi * n / (length - 1))) ** 0.85
    elif config.window_type == "hamming":
        window = np.hamming(length)
    else:
        raise ValueError(config.window_type)
    return emphasised * window


@pytest.fixture(scope="module")
def speech(an4_dir):
    wavs = sorted((an4_dir / "wav" / "an4_clstk").glob("*/*.wav"))
    data, rate = sf.read(wavs[10], dtype="int16")
    return data.astype(np.float32) / 32768.0


def test_burg_matches_librosa_frame_by_frame(speech):
    config = LpcConfig(method="burg", window_type="hamming")
    frames = reference_frames(speech, config)
    ours = L.lpc_burg(frames, order=12)
    ref = np.stack([librosa.lpc(frame, order=12) for frame in frames])
    assert np.abs(ours - ref).max() <= 1e-4
    # The same through the public function (float32 output).
    public = compute_lpc(speech, 16000, config)
    assert public.dtype == np.float32 and public.shape == ref.shape
    assert np.abs(public - ref).max() <= 1e-4


def test_autocorrelation_matches_solve_toeplitz(speech):
    config = LpcConfig(order=12)
    frames = reference_frames(speech, config)
    ours = L.lpc_autocorrelation(frames, order=12)
    ref = []
    for frame in frames:
        r = np.correlate(frame, frame, mode="full")[frame.size - 1 : frame.size + 12]
        ref.append(np.concatenate([[1.0], scipy.linalg.solve_toeplitz(r[:12], -r[1:13])]))
    ref = np.array(ref)
    assert np.abs(ours - ref).max() <= 1e-6
    public = compute_lpc(speech, 16000, config)
    # float32 output: bounded by rounding of coefficients of this size.
    np.testing.assert_allclose(public, ref, rtol=2e-6, atol=1e-6)


def test_lpc_filters_are_minimum_phase(speech):
    for method in ("autocorrelation", "burg"):
        coeffs = compute_lpc(speech, 16000, LpcConfig(method=method)).astype(np.float64)
        for row in coeffs[:: max(1, coeffs.shape[0] // 20)]:
            assert np.abs(np.roots(row)).max() < 1.0, method


def test_silent_and_tiny_frames_give_no_nan():
    silence = np.zeros(3200, dtype=np.float32)
    for method in ("autocorrelation", "burg"):
        coeffs = compute_lpc(silence, 16000, LpcConfig(method=method))
        expected = np.zeros((coeffs.shape[0], 13), np.float32)
        expected[:, 0] = 1.0
        np.testing.assert_array_equal(coeffs, expected)
        cepstra = compute_lpcc(silence, 16000, LpccConfig(method=method))
        assert np.isfinite(cepstra).all()
        # A pure sinusoid is almost perfectly predictable: still finite.
        tone = (0.5 * np.sin(0.2 * np.arange(3200))).astype(np.float32)
        for use_energy in (True, False):
            config = LpccConfig(method=method, use_energy=use_energy, preemph_coeff=0.0)
            assert np.isfinite(compute_lpcc(tone, 16000, config)).all()
    frames = np.zeros((2, 50))
    frames[1, 25] = 1e-300
    assert np.isfinite(L.lpc_autocorrelation(frames, order=10)).all()
    assert np.isfinite(L.lpc_burg(frames, order=10)).all()


@pytest.mark.parametrize("method", ["autocorrelation", "burg"])
def test_lpcc_equals_cepstrum_of_model_spectrum(speech, method):
    """LPCC c_n (n >= 1) is twice the real cepstrum of |G / A(e^jw)|; c_0 = ln G.

    The numeric cepstrum aliases terms n + k N (N = 8192); LPC cepstra decay
    like r^n / n with r the largest pole radius (< 0.999 is checked), so the
    aliasing is below 0.999^8192 / 8192 ~ 4e-8. Our float32 output rounds
    values |c| < 20 by < 1.2e-6. Tolerance 1e-5 (observed: ~5e-7).
    """
    config = LpccConfig(method=method, use_energy=False, num_ceps=20)
    ours = compute_lpcc(speech, 16000, config).astype(np.float64)
    frames = reference_frames(speech, config)
    coeffs = L.lpc(frames, order=config.order, method=method)
    n_fft = 8192
    a_spec = np.fft.rfft(coeffs, n=n_fft, axis=1)
    error = np.array(
        [np.sum(np.convolve(frame, a) ** 2) for frame, a in zip(frames, coeffs, strict=True)]
    )
    gain = np.sqrt(error)
    log_mag = np.log(gain)[:, None] - np.log(np.abs(a_spec))
    real_cepstrum = np.fft.irfft(log_mag, n=n_fft, axis=1)
    ref = real_cepstrum[:, :20].copy()
    ref[:, 1:] *= 2.0
    max_pole = max(np.abs(np.roots(row)).max() for row in coeffs)
    assert max_pole < 0.999
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


def test_lpcc_c0_is_raw_log_energy_as_in_mfcc(speech):
    lpcc = compute_lpcc(speech, 16000, LpccConfig(use_energy=True))
    mfcc = compute_mfcc(speech, 16000, MfccConfig())
    np.testing.assert_allclose(lpcc[:, 0], mfcc[:, 0], atol=1e-4)
    # Liftering scales cepstra exactly as in MFCC.
    lifted = compute_lpcc(speech, 16000, LpccConfig(cepstral_lifter=22.0))
    lifter = 1.0 + 11.0 * np.sin(np.pi * np.arange(13) / 22.0)
    np.testing.assert_allclose(lifted, lpcc * lifter, rtol=1e-5, atol=1e-5)


def test_cepstrum_recursion_on_a_known_pole():
    # A(z) = 1 - p z^-1  ->  -log A = sum_n p^n / n z^-n, so c_n = p^n / n.
    p = 0.9
    ceps = L.lpc_to_cepstrum(np.array([[1.0, -p]]), num_ceps=8, log_gain=np.array([0.5]))
    expected = [0.5] + [p**n / n for n in range(1, 8)]
    np.testing.assert_allclose(ceps[0], expected, rtol=1e-12)


def test_lpc_input_checks():
    with pytest.raises(FeatureError, match="frames"):
        L.lpc(np.zeros(10), order=2)
    with pytest.raises(FeatureError, match="method"):
        L.lpc(np.zeros((1, 10)), order=2, method="covariance")
    with pytest.raises(FeatureError, match="too short"):
        L.levinson_durbin(np.ones((1, 3)), order=4)
    assert compute_lpc(np.zeros(10, np.float32), 16000).shape == (0, 13)
