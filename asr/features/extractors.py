"""Feature configs (frozen dataclasses) and the extractors that cache their tables.

One config per feature type: :class:`MfccConfig`, :class:`FbankConfig`,
:class:`LpcConfig`, :class:`LpccConfig`. They share Kaldi's framing options
(``sampling_rate``, ``frame_length_ms``, ``frame_shift_ms``, ``dither``,
``preemph_coeff``, ``remove_dc_offset``, ``window_type``,
``round_to_power_of_two``, ``snip_edges``) with Kaldi's defaults except one:
``dither`` defaults to 0.0 here (Kaldi: 1.0) so features are deterministic.
When ``dither > 0`` the noise comes from ``numpy.random.default_rng(dither_seed)``
(Kaldi draws it from its global RNG), so repeated calls give equal features.

Samples are float arrays in [-1, 1]. Kaldi computes on the int16 scale, so
they are multiplied by 32768 internally and MFCC/fbank values equal those of
``compute-mfcc-feats`` / ``compute-fbank-feats`` (and kaldi-native-fbank).
Input shorter than one frame (``snip_edges=True``) gives ``(0, feature_dim)``;
NaN or infinite samples raise :class:`~asr.errors.FeatureError`.
``htk_compat`` and VTLN warping are not supported.

>>> import numpy as np
>>> samples = np.random.default_rng(0).uniform(-0.1, 0.1, 16000).astype(np.float32)
>>> compute_mfcc(samples, 16000).shape
(98, 13)
>>> compute_fbank(samples, 16000, FbankConfig(num_mel_bins=40)).shape
(98, 40)
>>> config_from_dict(config_to_dict(MfccConfig(num_ceps=20))) == MfccConfig(num_ceps=20)
True
>>> compute_features(samples, 16000, LpccConfig(order=10, num_ceps=13)).shape
(98, 13)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from asr.errors import FeatureError
from asr.features import functional as F
from asr.features import lpc as L


@dataclass(frozen=True)
class _FrameConfig:
    """Kaldi ``FrameExtractionOptions`` (shared by every feature type)."""

    sampling_rate: int = 16000
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    dither: float = 0.0
    dither_seed: int = 0
    preemph_coeff: float = 0.97
    remove_dc_offset: bool = True
    window_type: str = "povey"
    blackman_coeff: float = 0.42
    round_to_power_of_two: bool = True
    snip_edges: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.sampling_rate, int) or self.sampling_rate <= 0:
            raise FeatureError(f"sampling_rate must be a positive int, got {self.sampling_rate!r}")
        if self.window_type not in F.WINDOW_TYPES:
            raise FeatureError(
                f"unknown window_type {self.window_type!r}; expected one of {F.WINDOW_TYPES}"
            )
        if self.dither < 0.0:
            raise FeatureError(f"dither must be >= 0, got {self.dither}")
        if not 0.0 <= self.preemph_coeff <= 1.0:
            raise FeatureError(f"preemph_coeff must be in [0, 1], got {self.preemph_coeff}")
        if self.frame_shift_ms <= 0.0 or self.frame_length_ms <= 0.0:
            raise FeatureError("frame_length_ms and frame_shift_ms must be positive")
        if self.frame_length < 2 or self.frame_shift < 1:
            raise FeatureError(
                f"frame of {self.frame_length} samples / shift of {self.frame_shift} samples "
                f"is too short at {self.sampling_rate} Hz"
            )

    @property
    def frame_length(self) -> int:
        """Samples per frame (Kaldi's ``WindowSize``)."""
        return F.window_size_samples(
            sampling_rate=self.sampling_rate, length_ms=self.frame_length_ms
        )

    @property
    def frame_shift(self) -> int:
        """Samples between frame starts (Kaldi's ``WindowShift``)."""
        return F.window_size_samples(
            sampling_rate=self.sampling_rate, length_ms=self.frame_shift_ms
        )

    @property
    def padded_length(self) -> int:
        """FFT length (Kaldi's ``PaddedWindowSize``)."""
        return F.padded_window_size(
            self.frame_length, round_to_power_of_two=self.round_to_power_of_two
        )


@dataclass(frozen=True)
class _MelConfig(_FrameConfig):
    """Framing plus Kaldi ``MelBanksOptions``."""

    num_mel_bins: int = 23
    low_freq: float = 20.0
    high_freq: float = 0.0
    use_energy: bool = True
    raw_energy: bool = True
    energy_floor: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        nyquist = 0.5 * self.sampling_rate
        high = self.high_freq if self.high_freq > 0.0 else nyquist + self.high_freq
        if self.num_mel_bins < 3:
            raise FeatureError(f"num_mel_bins must be >= 3, got {self.num_mel_bins}")
        if not 0.0 <= self.low_freq < high <= nyquist:
            raise FeatureError(
                f"bad mel range: low_freq={self.low_freq}, high_freq={self.high_freq} "
                f"at sampling_rate={self.sampling_rate}"
            )
        if self.energy_floor < 0.0:
            raise FeatureError(f"energy_floor must be >= 0, got {self.energy_floor}")


@dataclass(frozen=True)
class MfccConfig(_MelConfig):
    """Kaldi ``MfccOptions`` (``compute-mfcc-feats``), with ``dither=0`` by default.

    C0 is replaced by the log frame energy when ``use_energy`` (the energy
    before pre-emphasis and windowing when ``raw_energy``).
    """

    num_ceps: int = 13
    cepstral_lifter: float = 22.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.num_ceps <= self.num_mel_bins:
            raise FeatureError(
                f"num_ceps must be in [1, num_mel_bins={self.num_mel_bins}], got {self.num_ceps}"
            )
        if self.cepstral_lifter < 0.0:
            raise FeatureError(f"cepstral_lifter must be >= 0, got {self.cepstral_lifter}")


@dataclass(frozen=True)
class FbankConfig(_MelConfig):
    """Kaldi ``FbankOptions`` (``compute-fbank-feats``): log mel energies.

    ``use_energy`` (default False, as Kaldi) prepends the log energy as column 0.
    """

    use_energy: bool = False
    use_log_fbank: bool = True
    use_power: bool = True


@dataclass(frozen=True)
class LpcConfig(_FrameConfig):
    """Linear prediction per frame: ``order`` coefficients by ``method``.

    ``method="autocorrelation"`` solves the Yule-Walker equations of the
    windowed frame with Levinson-Durbin; ``method="burg"`` runs Burg's
    method on the windowed frame (use ``window_type="rectangular"`` for
    textbook Burg). Output ``[1, a1, ..., a_p]`` as ``librosa.lpc``.
    """

    order: int = 12
    method: str = "autocorrelation"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method not in L.LPC_METHODS:
            raise FeatureError(
                f"unknown LPC method {self.method!r}; expected one of {L.LPC_METHODS}"
            )
        if not 1 <= self.order < self.frame_length:
            raise FeatureError(
                f"LPC order must be in [1, frame_length={self.frame_length}), got {self.order}"
            )


@dataclass(frozen=True)
class LpccConfig(LpcConfig):
    """LPC cepstra (``num_ceps`` values per frame) from the LPC model by the usual recursion.

    C0 is the log raw frame energy when ``use_energy`` (as in MFCC), else the
    log gain ``ln G`` of the all-pole model ``G / A(z)``, ``G**2`` being the
    prediction-error energy of the windowed frame. ``cepstral_lifter`` works
    as in MFCC (0 = none).
    """

    num_ceps: int = 13
    use_energy: bool = True
    cepstral_lifter: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_ceps < 1:
            raise FeatureError(f"num_ceps must be >= 1, got {self.num_ceps}")
        if self.cepstral_lifter < 0.0:
            raise FeatureError(f"cepstral_lifter must be >= 0, got {self.cepstral_lifter}")


FeatureConfig = MfccConfig | FbankConfig | LpcConfig | LpccConfig

_TYPE_NAMES: dict[type, str] = {
    MfccConfig: "mfcc",
    FbankConfig: "fbank",
    LpcConfig: "lpc",
    LpccConfig: "lpcc",
}
_TYPES_BY_NAME = {name: cls for cls, name in _TYPE_NAMES.items()}


def _type_name(config: Any) -> str:
    name = _TYPE_NAMES.get(type(config))
    if name is None:
        raise FeatureError(f"not a feature config: {type(config).__name__}")
    return name


def config_to_dict(config: FeatureConfig) -> dict[str, Any]:
    """JSON-ready dict of ``config`` with a ``"type"`` key (mfcc, fbank, lpc or lpcc)."""
    return {"type": _type_name(config), **dataclasses.asdict(config)}


def config_from_dict(d: dict[str, Any]) -> FeatureConfig:
    """Inverse of :func:`config_to_dict`; unknown keys or types raise :class:`FeatureError`."""
    d = dict(d)
    type_name = d.pop("type", None)
    cls = _TYPES_BY_NAME.get(type_name)
    if cls is None:
        raise FeatureError(
            f"feature config 'type' must be one of {sorted(_TYPES_BY_NAME)}, got {type_name!r}"
        )
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise FeatureError(f"unknown {type_name} config keys: {unknown}")
    try:
        return cls(**d)
    except TypeError as err:
        raise FeatureError(f"bad {type_name} config: {err}") from err


def feature_dim(config: FeatureConfig) -> int:
    """Dimension of one feature vector for ``config``."""
    name = _type_name(config)
    if name in ("mfcc", "lpcc"):
        return config.num_ceps
    if name == "fbank":
        return config.num_mel_bins + int(config.use_energy)
    return config.order + 1


def num_frames(num_samples: int, config: FeatureConfig) -> int:
    """Frames extracted from ``num_samples`` samples (Kaldi's rule, both ``snip_edges`` modes)."""
    return F.count_frames(
        num_samples,
        frame_length=config.frame_length,
        frame_shift=config.frame_shift,
        snip_edges=config.snip_edges,
    )


def _check_samples(samples: Any, sampling_rate: int, config: FeatureConfig) -> np.ndarray:
    if sampling_rate != config.sampling_rate:
        raise FeatureError(
            f"audio sampling_rate {sampling_rate} Hz differs from the config's {config.sampling_rate} Hz"
        )
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise FeatureError(f"samples must be 1-D (num_samples,), got shape {samples.shape}")
    if not (np.issubdtype(samples.dtype, np.floating) or np.issubdtype(samples.dtype, np.integer)):
        raise FeatureError(f"samples must be numeric, got dtype {samples.dtype}")
    if np.issubdtype(samples.dtype, np.integer):
        raise FeatureError("samples must be float in [-1, 1]; divide int16 audio by 32768")
    if not np.isfinite(samples).all():
        raise FeatureError("samples contain NaN or infinite values")
    return samples


class FeatureExtractor:
    """Extractor for any feature config; caches the window, mel banks and DCT.

    ``FeatureExtractor(MfccConfig())(samples)`` equals ``compute_mfcc(samples,
    16000)``. :meth:`from_frames` computes features of raw frames (as cut by
    :func:`asr.features.functional.frame_signal`), for online extraction.
    """

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self.kind = _type_name(config)
        self.frame_length = config.frame_length
        self.frame_shift = config.frame_shift
        self.padded_length = config.padded_length
        self.dim = feature_dim(config)
        self.window = F.window_function(
            config.window_type, self.frame_length, blackman_coeff=config.blackman_coeff
        )
        self._window32 = self.window.astype(np.float32)
        if self.kind in ("mfcc", "fbank"):
            banks = F.mel_banks(
                num_mel_bins=config.num_mel_bins,
                padded_length=self.padded_length,
                sampling_rate=config.sampling_rate,
                low_freq=config.low_freq,
                high_freq=config.high_freq,
            )
            self.mel_banks = banks.astype(np.float32)
            self._mel_interleaved = np.repeat(self.mel_banks, 2, axis=0)
        if self.kind == "mfcc":
            dct = F.dct_matrix(num_ceps=config.num_ceps, num_mel_bins=config.num_mel_bins)
            lifter = F.lifter_coeffs(
                num_ceps=config.num_ceps, cepstral_lifter=config.cepstral_lifter
            )
            self.dct_lifted = np.ascontiguousarray((dct * lifter[:, None]).T.astype(np.float32))
        if self.kind == "lpcc":
            self.lifter = F.lifter_coeffs(
                num_ceps=config.num_ceps, cepstral_lifter=config.cepstral_lifter
            )

    def __repr__(self) -> str:
        return f"FeatureExtractor({self.config!r})"

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """Features (num_frames, dim) float32 of ``samples`` (num_samples,) in [-1, 1]."""
        samples = _check_samples(samples, self.config.sampling_rate, self.config)
        dtype = np.float64 if self.kind in ("lpc", "lpcc") else np.float32
        frames = F.frame_signal(
            samples.astype(dtype, copy=False),
            frame_length=self.frame_length,
            frame_shift=self.frame_shift,
            snip_edges=self.config.snip_edges,
        )
        return self.from_frames(frames)

    def from_frames(self, frames: np.ndarray) -> np.ndarray:
        """Features (num_frames, dim) float32 of raw frames (num_frames, frame_length) in [-1, 1]."""
        frames = np.asarray(frames)
        if frames.ndim != 2 or frames.shape[1] != self.frame_length:
            raise FeatureError(
                f"frames must have shape (num_frames, {self.frame_length}), got {frames.shape}"
            )
        if frames.shape[0] == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.kind in ("lpc", "lpcc"):
            return self._lpc_features(frames)
        return self._mel_features(frames)

    def _rng(self) -> np.random.Generator | None:
        return np.random.default_rng(self.config.dither_seed) if self.config.dither > 0 else None

    def _mel_features(self, frames: np.ndarray) -> np.ndarray:
        config = self.config
        buf, raw_energy = F.preprocess_frames(
            frames,
            window=self._window32,
            padded_length=self.padded_length,
            remove_dc_offset=config.remove_dc_offset,
            preemph_coeff=config.preemph_coeff,
            dither=config.dither,
            rng=self._rng(),
        )
        if config.use_energy and not config.raw_energy:
            energy = np.einsum("ij,ij->i", buf, buf)
        else:
            energy = raw_energy
        mel = F.power_spectrum_mel(
            buf,
            mel_interleaved=self._mel_interleaved,
            use_power=self.kind == "mfcc" or config.use_power,
        )
        if self.kind == "mfcc" or config.use_log_fbank:
            F.log_floor(mel)
        if self.kind == "mfcc":
            feats = mel @ self.dct_lifted
            if config.use_energy:
                feats[:, 0] = self._log_energy(energy)
            return feats
        if config.use_energy:
            return np.concatenate([self._log_energy(energy)[:, None], mel], axis=1)
        return mel

    def _log_energy(self, energy: np.ndarray) -> np.ndarray:
        log_energy = F.log_floor(energy.astype(np.float32))
        floor = self.config.energy_floor
        if floor > 0.0:
            np.maximum(log_energy, np.float32(math.log(floor)), out=log_energy)
        return log_energy

    def _lpc_features(self, frames: np.ndarray) -> np.ndarray:
        config = self.config
        windowed, raw_energy = F.preprocess_frames(
            frames,
            window=self.window,
            padded_length=self.frame_length,
            remove_dc_offset=config.remove_dc_offset,
            preemph_coeff=config.preemph_coeff,
            dither=config.dither,
            rng=self._rng(),
            dtype=np.float64,
        )
        coeffs = L.lpc(windowed, order=config.order, method=config.method)
        if self.kind == "lpc":
            return coeffs.astype(np.float32)
        if config.use_energy:
            log_gain = np.log(np.maximum(raw_energy, F.FLT_EPSILON))
        else:
            error = L.prediction_error_energy(windowed, coeffs)
            log_gain = 0.5 * np.log(np.maximum(error, F.FLT_EPSILON))
        ceps = L.lpc_to_cepstrum(coeffs, num_ceps=config.num_ceps, log_gain=log_gain)
        return (ceps * self.lifter).astype(np.float32)


# Backwards-friendly names: one class serves every feature type.
MfccExtractor = FeatureExtractor
FbankExtractor = FeatureExtractor
LpcExtractor = FeatureExtractor
LpccExtractor = FeatureExtractor


@functools.lru_cache(maxsize=16)
def get_extractor(config: FeatureConfig) -> FeatureExtractor:
    """Cached :class:`FeatureExtractor` for ``config`` (configs are frozen, hence hashable)."""
    return FeatureExtractor(config)


def _checked_extractor(config: Any, expected: type) -> FeatureExtractor:
    if type(config) is not expected:
        raise FeatureError(f"expected a {expected.__name__}, got {type(config).__name__}")
    return get_extractor(config)


def compute_mfcc(
    samples: np.ndarray, sampling_rate: int, config: MfccConfig = MfccConfig()
) -> np.ndarray:
    """Kaldi MFCC of ``samples`` (num_samples,) in [-1, 1]: (num_frames, num_ceps) float32."""
    _check_samples(samples, sampling_rate, config)
    return _checked_extractor(config, MfccConfig)(samples)


def compute_fbank(
    samples: np.ndarray, sampling_rate: int, config: FbankConfig = FbankConfig()
) -> np.ndarray:
    """Kaldi log-mel filterbank: (num_frames, num_mel_bins [+1 with use_energy]) float32."""
    _check_samples(samples, sampling_rate, config)
    return _checked_extractor(config, FbankConfig)(samples)


def compute_lpc(
    samples: np.ndarray, sampling_rate: int, config: LpcConfig = LpcConfig()
) -> np.ndarray:
    """LPC coefficients ``[1, a1, ..., a_p]`` per frame: (num_frames, order + 1) float32."""
    _check_samples(samples, sampling_rate, config)
    return _checked_extractor(config, LpcConfig)(samples)


def compute_lpcc(
    samples: np.ndarray, sampling_rate: int, config: LpccConfig = LpccConfig()
) -> np.ndarray:
    """LPC cepstra per frame: (num_frames, num_ceps) float32 (C0: see :class:`LpccConfig`)."""
    _check_samples(samples, sampling_rate, config)
    return _checked_extractor(config, LpccConfig)(samples)


def compute_features(samples: np.ndarray, sampling_rate: int, config: FeatureConfig) -> np.ndarray:
    """Dispatch on the config type: (num_frames, feature_dim(config)) float32."""
    _type_name(config)
    _check_samples(samples, sampling_rate, config)
    return get_extractor(config)(samples)
