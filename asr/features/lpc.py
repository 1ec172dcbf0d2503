"""Linear prediction for a batch of frames: autocorrelation/Levinson-Durbin, Burg, LPC cepstra.

Every function takes all frames (num_frames, frame_length) at once: Levinson-
Durbin and the cepstrum recursion are numpy operations across frames (a loop
over the prediction order only); the autocorrelation and Burg's method, whose
inner recursions are sequential, are compiled numba loops over all frames.
Coefficients follow ``librosa.lpc``: ``[1, a1, ..., a_p]`` with the
prediction-error filter ``A(z) = 1 + a1 z^-1 + ... + a_p z^-p``. Silent
(all-zero) frames give ``[1, 0, ..., 0]``, never NaN.

>>> import numpy as np
>>> t = np.arange(400)
>>> frames = np.stack([np.sin(0.3 * t) + 0.01 * np.cos(1.1 * t), np.zeros(400)])
>>> a = lpc(frames, order=2, method="autocorrelation")
>>> a.shape, a[1].tolist()
((2, 3), [1.0, 0.0, 0.0])
>>> b = lpc(frames, order=2, method="burg")  # a sinusoid: A(z) ~ 1 - 2 cos(w) z^-1 + z^-2
>>> bool(abs(b[0, 1] + 2 * np.cos(0.3)) < 0.01 and abs(b[0, 2] - 1.0) < 0.01)
True
>>> lpc_to_cepstrum(a, num_ceps=4, log_gain=np.zeros(2)).shape
(2, 4)
"""

from __future__ import annotations

import numba
import numpy as np

from asr.errors import FeatureError

LPC_METHODS = ("autocorrelation", "burg")

# Stop the Levinson recursion once the prediction error falls below this fraction of r0.
_RELATIVE_ERROR_FLOOR = 1e-12


def _as_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 2:
        raise FeatureError(
            f"LPC needs frames of shape (num_frames, frame_length), got {frames.shape}"
        )
    return frames


@numba.njit(cache=True, nogil=True, fastmath=True)
def _autocorrelation_kernel(frames, max_lag, out):
    num_rows, frame_length = frames.shape
    for row in range(num_rows):
        x = frames[row]
        for lag in range(max_lag + 1):
            acc = 0.0
            for j in range(frame_length - lag):
                acc += x[j] * x[j + lag]
            out[row, lag] = acc


def autocorrelation(frames: np.ndarray, *, max_lag: int) -> np.ndarray:
    """``r[:, k] = sum_n x[n] x[n + k]`` for ``k = 0..max_lag``: (num_frames, max_lag + 1) float64.

    Lags at or beyond the frame length are 0.
    """
    frames = np.ascontiguousarray(_as_frames(frames))
    out = np.zeros((frames.shape[0], max_lag + 1))
    _autocorrelation_kernel(frames, min(max_lag, frames.shape[1] - 1), out)
    return out


def levinson_durbin(autocorr: np.ndarray, *, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Solve the Yule-Walker equations for every row of ``autocorr`` (num_frames, >= order + 1).

    Returns ``(coeffs (num_frames, order + 1), error (num_frames,))`` where
    ``error`` is the final prediction-error energy. Rows whose error falls to
    (numerically) zero keep their coefficients from then on (all-zero frames
    give ``[1, 0, ..., 0]``).
    """
    r = np.asarray(autocorr, dtype=np.float64)
    if r.ndim != 2 or r.shape[1] < order + 1:
        raise FeatureError(f"autocorrelation of shape {r.shape} is too short for order {order}")
    num_rows = r.shape[0]
    coeffs = np.zeros((num_rows, order + 1))
    coeffs[:, 0] = 1.0
    error = r[:, 0].copy()
    error_floor = np.maximum(r[:, 0], 0.0) * _RELATIVE_ERROR_FLOOR
    for i in range(1, order + 1):
        acc = np.einsum("ij,ij->i", coeffs[:, :i], r[:, i:0:-1])
        ok = error > error_floor
        k = np.divide(-acc, error, out=np.zeros(num_rows), where=ok)
        np.clip(k, -1.0, 1.0, out=k)
        coeffs[:, 1:i] += k[:, None] * coeffs[:, i - 1 : 0 : -1].copy()
        coeffs[:, i] = k
        error = np.where(ok, error * (1.0 - k * k), error)
    return coeffs, error


def lpc_autocorrelation(frames: np.ndarray, *, order: int) -> np.ndarray:
    """LPC by the autocorrelation method (frames already windowed): (num_frames, order + 1)."""
    frames = _as_frames(frames)
    return levinson_durbin(autocorrelation(frames, max_lag=order), order=order)[0]


@numba.njit(cache=True, nogil=True, fastmath=True)
def _burg_kernel(frames, order, coeffs):
    """Burg's method frame by frame in compiled code (Marple's recursive denominator)."""
    num_rows, frame_length = frames.shape
    tiny = np.finfo(np.float64).tiny
    fwd = np.empty(frame_length)
    bwd = np.empty(frame_length)
    prev = np.empty(order + 1)
    for row in range(num_rows):
        for j in range(frame_length):
            fwd[j] = frames[row, j]
            bwd[j] = frames[row, j]
        coeffs[row, 0] = 1.0
        for j in range(1, order + 1):
            coeffs[row, j] = 0.0
        # Round i: forward errors are fwd[i + 1 + m], backward errors bwd[m],
        # m = 0 .. frame_length - 2 - i (librosa's fwd[1:] / bwd[:-1] trimming).
        den = 0.0
        for j in range(1, frame_length):
            den += fwd[j] * fwd[j] + bwd[j - 1] * bwd[j - 1]
        for i in range(order):
            count = frame_length - 1 - i
            num = 0.0
            for m in range(count):
                num += bwd[m] * fwd[i + 1 + m]
            k = -2.0 * num / (den + tiny)
            for j in range(i + 2):
                prev[j] = coeffs[row, j]
            for j in range(1, i + 2):
                coeffs[row, j] = prev[j] + k * prev[i + 1 - j]
            for m in range(count):
                f_old = fwd[i + 1 + m]
                fwd[i + 1 + m] = f_old + k * bwd[m]
                bwd[m] = bwd[m] + k * f_old
            den = (1.0 - k * k) * den - bwd[count - 1] ** 2 - fwd[i + 1] ** 2


def lpc_burg(frames: np.ndarray, *, order: int) -> np.ndarray:
    """LPC by Burg's method (Marple's recursion, as ``librosa.lpc``): (num_frames, order + 1).

    A compiled loop over frames (each frame's recursion is sequential in the
    order); all frames are processed in one call.
    """
    frames = np.ascontiguousarray(_as_frames(frames))
    num_rows, frame_length = frames.shape
    if order >= frame_length:
        raise FeatureError(f"Burg LPC order {order} needs frames longer than {frame_length}")
    coeffs = np.empty((num_rows, order + 1))
    _burg_kernel(frames, order, coeffs)
    return coeffs


def lpc(frames: np.ndarray, *, order: int, method: str = "autocorrelation") -> np.ndarray:
    """LPC coefficients ``[1, a1, ..., a_p]`` of each frame by ``method``: (num_frames, order + 1)."""
    if method == "autocorrelation":
        return lpc_autocorrelation(frames, order=order)
    if method == "burg":
        return lpc_burg(frames, order=order)
    raise FeatureError(f"unknown LPC method {method!r}; expected one of {LPC_METHODS}")


def prediction_error_energy(frames: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    """Energy of ``A(z) x`` over the whole (zero-extended) frame: (num_frames,) float64.

    The quadratic form ``a^T R a`` with ``R`` the frames' autocorrelation
    matrix; for the autocorrelation method it equals Levinson's final error.
    """
    coeffs = np.asarray(coeffs, dtype=np.float64)
    order = coeffs.shape[1] - 1
    r = autocorrelation(frames, max_lag=order)
    energy = r[:, 0] * np.einsum("ij,ij->i", coeffs, coeffs)
    for lag in range(1, order + 1):
        coeff_corr = np.einsum("ij,ij->i", coeffs[:, : order + 1 - lag], coeffs[:, lag:])
        energy += 2.0 * r[:, lag] * coeff_corr
    return np.maximum(energy, 0.0)


def lpc_to_cepstrum(coeffs: np.ndarray, *, num_ceps: int, log_gain: np.ndarray) -> np.ndarray:
    """Cepstrum of the all-pole model ``G / A(z)``: (num_frames, num_ceps) float64.

    ``c_0 = log_gain`` (``ln G``) and, for ``n >= 1``,
    ``c_n = -a_n - sum_{k=1}^{n-1} (k / n) c_k a_{n-k}`` (``a_n = 0`` for
    ``n > p``): the complex cepstrum of the minimum-phase model, i.e. twice the
    real cepstrum of ``|G / A(e^jw)|`` at ``n >= 1``.
    """
    coeffs = np.asarray(coeffs, dtype=np.float64)
    order = coeffs.shape[1] - 1
    ceps = np.zeros((coeffs.shape[0], num_ceps))
    ceps[:, 0] = log_gain
    for n in range(1, num_ceps):
        acc = -coeffs[:, n] if n <= order else np.zeros(coeffs.shape[0])
        ks = np.arange(max(1, n - order), n)
        if ks.size:
            acc = acc - (ceps[:, ks] * coeffs[:, n - ks]) @ (ks / n)
        ceps[:, n] = acc
    return ceps
