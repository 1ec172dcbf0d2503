"""Pure feature math: Kaldi-exact framing, windows, mel banks, DCT, deltas and CMVN.

Everything here is a plain function of arrays and keyword parameters; the
frozen configs and the extractors that cache windows and filterbanks live in
:mod:`asr.features.extractors`. Framing follows Kaldi's
``FrameExtractionOptions`` exactly (``snip_edges`` both ways, reflection at the
edges when ``snip_edges=False``), the mel banks follow Kaldi's ``MelBanks``
(``1127 ln(1 + f/700)``, triangles in the mel domain, the Nyquist bin unused)
and the DCT is Kaldi's orthonormal DCT-II.

>>> import numpy as np
>>> count_frames(16000, frame_length=400, frame_shift=160, snip_edges=True)
98
>>> frames = frame_signal(np.arange(1000.0), frame_length=400, frame_shift=160, snip_edges=True)
>>> frames.shape, float(frames[1, 0])
((4, 400), 160.0)
>>> feats = np.random.default_rng(0).normal(size=(50, 13)).astype(np.float32)
>>> compute_deltas(feats, window=2, order=2).shape
(50, 39)
>>> stats = compute_cmvn_stats(feats)
>>> stats.shape, float(stats[0, -1])
((2, 14), 50.0)
>>> bool(np.abs(apply_cmvn(feats, stats).mean(axis=0)).max() < 1e-5)
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numba
import numpy as np
import torch

from asr.errors import FeatureError

#: ``std::numeric_limits<float>::epsilon()``, Kaldi's floor before every log.
FLT_EPSILON = float(np.finfo(np.float32).eps)

#: Window shapes Kaldi knows (``--window-type``).
WINDOW_TYPES = ("povey", "hamming", "hanning", "rectangular", "blackman", "sine")

#: Kaldi computes on the 16-bit integer scale; float samples in [-1, 1] are scaled by this.
INT16_SCALE = 32768.0


# --------------------------------------------------------------------------- framing


def window_size_samples(*, sampling_rate: float, length_ms: float) -> int:
    """Samples in ``length_ms`` milliseconds, truncated as Kaldi does (float math)."""
    return int(float(np.float32(sampling_rate)) * 0.001 * float(np.float32(length_ms)))


def padded_window_size(frame_length: int, *, round_to_power_of_two: bool) -> int:
    """FFT length: the next power of two of ``frame_length`` (Kaldi), or itself."""
    if not round_to_power_of_two:
        return frame_length
    return 1 << max(0, (frame_length - 1).bit_length())


def count_frames(num_samples: int, *, frame_length: int, frame_shift: int, snip_edges: bool) -> int:
    """Number of frames Kaldi extracts from ``num_samples`` samples.

    ``snip_edges=True``: only frames that fit completely, ``1 + (N - L) // S``
    (0 when ``N < L``). ``snip_edges=False``: ``(N + S // 2) // S`` frames
    centred on multiples of the shift, edges filled by reflection.
    """
    if snip_edges:
        if num_samples < frame_length:
            return 0
        return 1 + (num_samples - frame_length) // frame_shift
    return (num_samples + frame_shift // 2) // frame_shift


def first_sample_of_frame(
    frame_index: int, *, frame_length: int, frame_shift: int, snip_edges: bool
) -> int:
    """Index of the first sample of frame ``frame_index`` (negative at the start when not snipping)."""
    if snip_edges:
        return frame_index * frame_shift
    midpoint = frame_shift * frame_index + frame_shift // 2
    return midpoint - frame_length // 2


def _reflect_indices(indices: np.ndarray, num_samples: int) -> np.ndarray:
    """Kaldi's edge reflection: -1 -> 0, -2 -> 1, N -> N-1, N+1 -> N-2 (repeated if needed)."""
    indices = indices.copy()
    while True:
        low = indices < 0
        high = indices >= num_samples
        if not (low.any() or high.any()):
            return indices
        indices[low] = -indices[low] - 1
        indices[high] = 2 * num_samples - 1 - indices[high]


def frame_signal(
    samples: np.ndarray, *, frame_length: int, frame_shift: int, snip_edges: bool
) -> np.ndarray:
    """Cut ``samples`` (num_samples,) into raw frames (num_frames, frame_length).

    With ``snip_edges=True`` the result is a read-only strided view (no copy).
    With ``snip_edges=False`` the signal is extended by reflection at both ends
    (Kaldi's rule) and the frames are a view of that extended copy.
    """
    samples = np.asarray(samples)
    num_samples = samples.shape[0]
    n_out = count_frames(
        num_samples, frame_length=frame_length, frame_shift=frame_shift, snip_edges=snip_edges
    )
    if n_out == 0:
        return np.zeros((0, frame_length), dtype=samples.dtype)
    start = first_sample_of_frame(
        0, frame_length=frame_length, frame_shift=frame_shift, snip_edges=snip_edges
    )
    end = (
        first_sample_of_frame(
            n_out - 1, frame_length=frame_length, frame_shift=frame_shift, snip_edges=snip_edges
        )
        + frame_length
    )
    if start < 0 or end > num_samples:
        pad_left = max(0, -start)
        pad_right = max(0, end - num_samples)
        left = _reflect_indices(np.arange(-pad_left, 0), num_samples)
        right = _reflect_indices(np.arange(num_samples, num_samples + pad_right), num_samples)
        samples = np.concatenate([samples[left], samples, samples[right]])
        start += pad_left
    view = np.lib.stride_tricks.sliding_window_view(samples[start:], frame_length)
    return view[: (n_out - 1) * frame_shift + 1 : frame_shift]


def window_function(
    window_type: str, frame_length: int, *, blackman_coeff: float = 0.42
) -> np.ndarray:
    """Kaldi's analysis window (frame_length,) float64: povey, hamming, hanning, ... ."""
    if window_type not in WINDOW_TYPES:
        raise FeatureError(f"unknown window_type {window_type!r}; expected one of {WINDOW_TYPES}")
    i = np.arange(frame_length, dtype=np.float64)
    a = 2.0 * math.pi / (frame_length - 1) if frame_length > 1 else 0.0
    if window_type == "hanning":
        return 0.5 - 0.5 * np.cos(a * i)
    if window_type == "sine":
        return np.sin(0.5 * a * i)
    if window_type == "hamming":
        return 0.54 - 0.46 * np.cos(a * i)
    if window_type == "povey":
        return np.power(0.5 - 0.5 * np.cos(a * i), 0.85)
    if window_type == "rectangular":
        return np.ones(frame_length)
    return blackman_coeff - 0.5 * np.cos(a * i) + (0.5 - blackman_coeff) * np.cos(2 * a * i)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _process_window_kernel(
    signal, row_step, frame_length, scale, remove_dc_offset, preemph_coeff, window, out, raw_energy
):
    """One compiled pass per frame: DC removal, raw energy, pre-emphasis, window, scale, zero pad.

    Frame ``i`` is ``signal[i * row_step : i * row_step + frame_length]``: a
    contiguous 1-D buffer lets the compiler vectorize the inner loops.
    """
    n_frames, padded_length = out.shape
    one = preemph_coeff - preemph_coeff + 1.0
    for i in range(n_frames):
        row = signal[i * row_step : i * row_step + frame_length]
        dest = out[i]
        total = 0.0
        if remove_dc_offset:
            for j in range(frame_length):
                total += row[j]
        raw_energy[i] = total / frame_length  # the mean, held in the output dtype
        mean = raw_energy[i]
        energy = 0.0
        for j in range(frame_length):
            centred = row[j] - mean
            energy += centred * centred
        raw_energy[i] = energy * scale * scale
        offset = mean * (one - preemph_coeff)
        dest[0] = window[0] * ((row[0] - preemph_coeff * row[0] - offset) * scale)
        for j in range(1, frame_length):
            dest[j] = window[j] * ((row[j] - preemph_coeff * row[j - 1] - offset) * scale)
        for j in range(frame_length, padded_length):
            dest[j] = 0.0


def _flat_rows(frames: np.ndarray) -> tuple[np.ndarray, int]:
    """A 1-D contiguous view over all rows of ``frames`` and the step between row starts.

    Overlapping frames from :func:`frame_signal` share one buffer, so this
    costs nothing; other layouts are copied to C order first.
    """
    itemsize = frames.itemsize
    row_stride, col_stride = frames.strides
    if col_stride != itemsize or row_stride < 0 or row_stride % itemsize:
        frames = np.ascontiguousarray(frames)
        row_stride = frames.strides[0]
    n_frames, frame_length = frames.shape
    row_step = row_stride // itemsize
    span = (n_frames - 1) * row_step + frame_length
    flat = np.lib.stride_tricks.as_strided(
        frames, shape=(span,), strides=(itemsize,), writeable=False
    )
    return flat, row_step


def preprocess_frames(
    frames: np.ndarray,
    *,
    window: np.ndarray,
    padded_length: int,
    scale: float = INT16_SCALE,
    remove_dc_offset: bool = True,
    preemph_coeff: float = 0.97,
    dither: float = 0.0,
    rng: np.random.Generator | None = None,
    dtype: type = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """Kaldi's ``ProcessWindow`` on all frames at once (one compiled pass).

    ``frames``: raw frames (num_frames, frame_length) in [-1, 1]; they are
    multiplied by ``scale``, dithered (``dither`` times unit Gaussian noise on
    the scaled values), DC-removed, their raw energy taken, pre-emphasised
    (``x[0] -= c x[0]`` as Kaldi) and windowed, then zero-padded to
    ``padded_length``. Computed in ``dtype`` (sums in float64).

    Returns ``(processed (num_frames, padded_length), raw_energy (num_frames,))``
    where ``raw_energy`` is the sum of squares after DC removal and before
    pre-emphasis and windowing (Kaldi's ``raw_energy=true`` energy).
    """
    frames = np.asarray(frames, dtype=dtype)
    if frames.ndim != 2 or frames.shape[1] != window.shape[0] or padded_length < frames.shape[1]:
        raise FeatureError(
            f"frames of shape {frames.shape} do not fit a window of {window.shape[0]} samples "
            f"padded to {padded_length}"
        )
    if dither != 0.0:
        generator = rng if rng is not None else np.random.default_rng(0)
        noise = generator.standard_normal(size=frames.shape).astype(dtype)
        frames = frames + noise * dtype(dither / scale)
    out = np.empty((frames.shape[0], padded_length), dtype=dtype)
    raw_energy = np.empty(frames.shape[0], dtype=dtype)
    if frames.shape[0] == 0:
        return out, raw_energy
    flat, row_step = _flat_rows(frames)
    _process_window_kernel(
        flat,
        row_step,
        frames.shape[1],
        dtype(scale),
        bool(remove_dc_offset),
        dtype(preemph_coeff),
        np.ascontiguousarray(window, dtype=dtype),
        out,
        raw_energy,
    )
    return out, raw_energy


def power_spectrum_mel(
    frames: np.ndarray, *, mel_interleaved: np.ndarray, use_power: bool = True
) -> np.ndarray:
    """Mel energies of processed frames: (num_frames, padded_length) -> (num_frames, num_mel_bins).

    ``mel_interleaved`` is a mel matrix (padded_length // 2 + 1, num_mel_bins)
    with every row repeated twice (``np.repeat(banks, 2, axis=0)``): the real
    and imaginary parts of the FFT are squared in place and the mel matmul
    adds them up, so the power spectrum is never formed on its own. With
    ``use_power=False`` the magnitude spectrum is used instead (fbank only).
    The FFT is ``torch.fft.rfft`` (several times faster than numpy's here).
    """
    spectrum = torch.fft.rfft(torch.from_numpy(frames), dim=1)
    parts = torch.view_as_real(spectrum).reshape(spectrum.shape[0], -1)
    parts.square_()
    mel = torch.from_numpy(mel_interleaved)
    if use_power:
        return (parts @ mel).numpy()
    magnitude = parts.view(spectrum.shape[0], -1, 2).sum(dim=2).sqrt_()
    return (magnitude @ mel[::2]).numpy()


def log_floor(values: np.ndarray, floor: float = FLT_EPSILON) -> np.ndarray:
    """``log(max(values, floor))`` in place when possible (Kaldi's guard against log 0)."""
    out = np.maximum(
        values, values.dtype.type(floor), out=values if values.flags.writeable else None
    )
    return np.log(out, out=out)


# --------------------------------------------------------------------------- mel and DCT


def mel_scale(freq_hz: np.ndarray | float) -> np.ndarray | float:
    """Kaldi/HTK mel scale ``1127 ln(1 + f / 700)``."""
    return 1127.0 * np.log1p(np.asarray(freq_hz, dtype=np.float64) / 700.0)


def inverse_mel_scale(mel: np.ndarray | float) -> np.ndarray | float:
    """Inverse of :func:`mel_scale`."""
    return 700.0 * np.expm1(np.asarray(mel, dtype=np.float64) / 1127.0)


def mel_banks(
    *,
    num_mel_bins: int,
    padded_length: int,
    sampling_rate: float,
    low_freq: float,
    high_freq: float,
) -> np.ndarray:
    """Kaldi's triangular mel filterbank as a matrix (padded_length // 2 + 1, num_mel_bins).

    ``high_freq <= 0`` means ``nyquist + high_freq``. Row ``padded_length // 2``
    (the Nyquist bin) is zero, as in Kaldi, so the matrix multiplies a full
    one-sided power spectrum directly.
    """
    nyquist = 0.5 * sampling_rate
    if high_freq <= 0.0:
        high_freq = nyquist + high_freq
    if num_mel_bins < 3:
        raise FeatureError(f"num_mel_bins must be >= 3, got {num_mel_bins}")
    if not (0.0 <= low_freq < high_freq <= nyquist):
        raise FeatureError(
            f"bad mel frequency range: low_freq={low_freq}, high_freq={high_freq}, nyquist={nyquist}"
        )
    num_fft_bins = padded_length // 2
    fft_bin_width = sampling_rate / padded_length
    mel_low, mel_high = mel_scale(low_freq), mel_scale(high_freq)
    delta = (mel_high - mel_low) / (num_mel_bins + 1)
    left = mel_low + delta * np.arange(num_mel_bins)
    center = left + delta
    right = center + delta
    mel = mel_scale(fft_bin_width * np.arange(num_fft_bins))[:, None]
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    weights = np.where(mel <= center, up, down)
    weights = np.where((mel > left) & (mel < right), weights, 0.0)
    out = np.zeros((num_fft_bins + 1, num_mel_bins))
    out[:num_fft_bins] = weights
    return out


def dct_matrix(*, num_ceps: int, num_mel_bins: int) -> np.ndarray:
    """First ``num_ceps`` rows of the orthonormal DCT-II, (num_ceps, num_mel_bins) float64."""
    if not 1 <= num_ceps <= num_mel_bins:
        raise FeatureError(f"num_ceps must be in [1, num_mel_bins={num_mel_bins}], got {num_ceps}")
    k = np.arange(num_ceps)[:, None]
    n = np.arange(num_mel_bins)[None, :]
    out = math.sqrt(2.0 / num_mel_bins) * np.cos(math.pi / num_mel_bins * (n + 0.5) * k)
    out[0] *= math.sqrt(0.5)
    return out


def lifter_coeffs(*, num_ceps: int, cepstral_lifter: float) -> np.ndarray:
    """Kaldi's sinusoidal lifter ``1 + Q/2 sin(pi i / Q)`` (ones when ``Q == 0``)."""
    if cepstral_lifter == 0.0:
        return np.ones(num_ceps)
    i = np.arange(num_ceps)
    return 1.0 + 0.5 * cepstral_lifter * np.sin(math.pi * i / cepstral_lifter)


# --------------------------------------------------------------------------- deltas


def delta_scales(*, window: int, order: int) -> list[np.ndarray]:
    """Kaldi's ``DeltaFeatures`` kernels: ``scales[i]`` has ``2 * i * window + 1`` taps."""
    scales = [np.ones(1)]
    normalizer = float(sum(j * j for j in range(-window, window + 1)))
    for _ in range(order):
        prev = scales[-1]
        cur = np.zeros(prev.size + 2 * window)
        for j in range(-window, window + 1):
            cur[window + j : window + j + prev.size] += j * prev
        scales.append(cur / normalizer)
    return scales


def compute_deltas(feats: np.ndarray, *, window: int = 2, order: int = 2) -> np.ndarray:
    """Kaldi ``add-deltas``: (num_frames, dim) -> (num_frames, dim * (order + 1)).

    Block ``i`` is the ``i``-th order delta; frames beyond the edges are
    replaced by the first/last frame. Output dtype follows ``feats``
    (float32 for float32 input), accumulated in float64.
    """
    feats = np.asarray(feats)
    if feats.ndim != 2:
        raise FeatureError(
            f"compute_deltas needs (num_frames, dim) features, got shape {feats.shape}"
        )
    if window < 1 or order < 0:
        raise FeatureError(
            f"compute_deltas needs window >= 1 and order >= 0, got {window}, {order}"
        )
    n_frames, dim = feats.shape
    out_dtype = feats.dtype if np.issubdtype(feats.dtype, np.floating) else np.float32
    out = np.empty((n_frames, dim * (order + 1)), dtype=out_dtype)
    if n_frames == 0:
        return out
    reach = order * window
    padded = np.concatenate(
        [np.repeat(feats[:1], reach, axis=0), feats, np.repeat(feats[-1:], reach, axis=0)]
    ).astype(np.float64)
    for i, scale in enumerate(delta_scales(window=window, order=order)):
        half = scale.size // 2
        acc = np.zeros((n_frames, dim))
        for tap, weight in enumerate(scale):
            if weight != 0.0:
                offset = reach + tap - half
                acc += weight * padded[offset : offset + n_frames]
        out[:, i * dim : (i + 1) * dim] = acc
    return out


# --------------------------------------------------------------------------- CMVN


def compute_cmvn_stats(feats: np.ndarray) -> np.ndarray:
    """Kaldi CMVN stats of one utterance: (2, dim + 1) float64.

    Row 0 holds the per-dimension sums and the frame count in the last column;
    row 1 holds the sums of squares (last column 0). Stats of several
    utterances add up: see :func:`accumulate_cmvn_stats`.
    """
    feats = np.asarray(feats)
    if feats.ndim != 2:
        raise FeatureError(f"CMVN needs (num_frames, dim) features, got shape {feats.shape}")
    x = feats.astype(np.float64, copy=False)
    stats = np.zeros((2, feats.shape[1] + 1))
    stats[0, :-1] = x.sum(axis=0)
    stats[1, :-1] = np.einsum("ij,ij->j", x, x)
    stats[0, -1] = feats.shape[0]
    return stats


def accumulate_cmvn_stats(stats_list: Iterable[np.ndarray]) -> np.ndarray:
    """Sum CMVN stats (e.g. all utterances of a speaker), checking their shapes agree."""
    total = None
    for stats in stats_list:
        stats = np.asarray(stats, dtype=np.float64)
        if stats.ndim != 2 or stats.shape[0] != 2:
            raise FeatureError(f"CMVN stats must have shape (2, dim + 1), got {stats.shape}")
        if total is None:
            total = stats.copy()
        elif total.shape != stats.shape:
            raise FeatureError(f"CMVN stats shapes differ: {total.shape} vs {stats.shape}")
        else:
            total += stats
    if total is None:
        raise FeatureError("accumulate_cmvn_stats got no stats")
    return total


def apply_cmvn(feats: np.ndarray, stats: np.ndarray, *, norm_vars: bool = False) -> np.ndarray:
    """Kaldi ``apply-cmvn``: subtract the mean (and divide by the std when ``norm_vars``).

    Returns a new array of ``feats``' dtype. Raises :class:`FeatureError` when
    the count is below 1 or the dimensions disagree. Variances are floored at
    1e-20 as in Kaldi.
    """
    feats = np.asarray(feats)
    stats = np.asarray(stats, dtype=np.float64)
    if feats.ndim != 2 or stats.shape != (2, feats.shape[1] + 1):
        raise FeatureError(
            f"CMVN stats of shape {stats.shape} do not fit features of shape {feats.shape}"
        )
    count = stats[0, -1]
    if count < 1.0:
        raise FeatureError(f"insufficient stats for CMVN: count = {count}")
    mean = stats[0, :-1] / count
    out_dtype = feats.dtype if np.issubdtype(feats.dtype, np.floating) else np.float32
    if not norm_vars:
        return (feats - mean).astype(out_dtype, copy=False)
    var = np.maximum(stats[1, :-1] / count - mean * mean, 1.0e-20)
    scale = 1.0 / np.sqrt(var)
    return (feats * scale - mean * scale).astype(out_dtype, copy=False)
