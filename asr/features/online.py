"""Streaming front-end: incremental feature extraction and sliding-window CMVN.

:class:`OnlineFeatureExtractor` accepts audio in chunks of any size and
returns exactly the frames the offline :func:`asr.features.compute_features`
gives for the whole signal (Kaldi processes every frame from its own window
of samples: DC removal, pre-emphasis and the window are per frame). It keeps
only the samples from the next frame's start on, computes all complete frames
of that buffer with the offline function and drops the consumed samples. With
``snip_edges=False`` the first frames use the reflected start of the signal
and the last frames (those reaching past the end) appear at
:meth:`~OnlineFeatureExtractor.input_finished`.

:func:`sliding_cmvn` is Kaldi's ``apply-cmvn-sliding`` (mean, and optionally
variance, over a window of ``cmn_window`` frames; ``center=False`` looks back
as online decoding does, except that the first ``min_window`` frames share
one window). :class:`OnlineSlidingCmvn` produces bit-identical frames when
fed frame chunks, emitting each frame as soon as its window is complete.

>>> import numpy as np
>>> from asr.features import MfccConfig, compute_features
>>> config = MfccConfig(sampling_rate=8000)
>>> wave = np.random.default_rng(0).uniform(-0.5, 0.5, 8000).astype(np.float32)
>>> extractor = OnlineFeatureExtractor(config)
>>> parts = []
>>> for start in range(0, 8000, 1234):
...     extractor.accept_waveform(wave[start:start + 1234])
...     parts.append(extractor.pop_frames())
>>> extractor.input_finished()
>>> feats = np.concatenate(parts + [extractor.pop_frames()])
>>> offline = compute_features(wave, sampling_rate=8000, config=config)
>>> feats.shape == offline.shape and bool(np.abs(feats - offline).max() < 1e-3)
True
>>> cmvn = OnlineSlidingCmvn(SlidingCmvnConfig(cmn_window=50, min_window=10))
>>> cmvn.accept_frames(offline[:30]); cmvn.input_finished()
>>> bool((cmvn.pop_frames() == sliding_cmvn(offline[:30], SlidingCmvnConfig(50, 10))).all())
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asr.errors import FeatureError
from asr.features.extractors import get_extractor
from asr.features.functional import count_frames, frame_signal

__all__ = [
    "OnlineFeatureExtractor",
    "OnlineSlidingCmvn",
    "SlidingCmvnConfig",
    "sliding_cmvn",
]


# --------------------------------------------------------------------------- extraction


class OnlineFeatureExtractor:
    """Incremental feature extraction for one stream (one utterance).

    ``config``: any front-end config of :mod:`asr.features` (``MfccConfig``,
    ``FbankConfig``, ``LpcConfig``, ``LpccConfig``). Audio is float32 in
    [-1, 1] at ``config.sampling_rate``. Frames are numbered from 0 over the
    whole stream; :attr:`num_frames_ready` counts those computable so far and
    :meth:`pop_frames` returns the ones not yet returned, as
    ``(num_frames, dim)`` float32. With ``dither != 0`` frames are not
    reproducible (the noise differs per call), as in Kaldi.
    """

    def __init__(self, config) -> None:
        self.config = config
        self._extractor = get_extractor(config)
        self.dim = int(self._extractor.dim)
        self._frame_length = int(config.frame_length)
        self._frame_shift = int(config.frame_shift)
        self._snip_edges = bool(config.snip_edges)
        # Samples of (reflected) padding before the signal when not snipping.
        self._left_pad = 0 if self._snip_edges else self._frame_length // 2 - self._frame_shift // 2
        if self._left_pad < 0:
            raise FeatureError(
                f"online extraction with snip_edges=False needs frame_shift <= frame_length, "
                f"got {self._frame_shift} > {self._frame_length} samples"
            )
        self._tail_capacity = self._frame_length + self._frame_shift
        self._pending: list[np.ndarray] = []
        self._buffer = np.zeros(0, dtype=np.float32)  # padded coordinates, from next frame on
        self._head: list[np.ndarray] = []  # whole signal until the left padding is built
        self._head_done = self._left_pad == 0
        self._tail = np.zeros(0, dtype=np.float32)  # last samples of the signal
        self._num_samples = 0
        self._frames_computed = 0
        self._frames_popped = 0
        self._computed: list[np.ndarray] = []
        self._finished = False

    # ---- input

    def accept_waveform(self, samples: np.ndarray) -> None:
        """Append ``samples`` (num_samples,) float32 in [-1, 1] to the stream."""
        if self._finished:
            raise FeatureError("accept_waveform called after input_finished()")
        samples = np.asarray(samples)
        if samples.ndim != 1:
            raise FeatureError(f"expected a 1-D chunk of samples, got shape {samples.shape}")
        if samples.size == 0:
            return
        if not np.issubdtype(samples.dtype, np.floating):
            raise FeatureError(f"expected float samples in [-1, 1], got dtype {samples.dtype}")
        samples = samples.astype(np.float32, copy=True)
        if not np.isfinite(samples).all():
            raise FeatureError("audio chunk contains NaN or infinite samples")
        self._pending.append(samples)
        self._num_samples += samples.size

    def input_finished(self) -> None:
        """Mark the end of the stream: the remaining (edge) frames become ready."""
        self._finished = True

    @property
    def num_samples(self) -> int:
        """Samples accepted so far."""
        return self._num_samples

    @property
    def is_finished(self) -> bool:
        return self._finished

    # ---- output

    @property
    def num_frames_ready(self) -> int:
        """Frames (counted from the stream start) whose values are final."""
        length, shift, n = self._frame_length, self._frame_shift, self._num_samples
        if self._snip_edges or self._finished:
            return count_frames(
                n, frame_length=length, frame_shift=shift, snip_edges=self._snip_edges
            )
        # Frames whose window ends inside the signal received so far.
        end_of_first = length - self._left_pad
        if n < end_of_first:
            return 0
        return (n - end_of_first) // shift + 1

    @property
    def num_frames_popped(self) -> int:
        """Frames already returned by :meth:`pop_frames`."""
        return self._frames_popped

    def pop_frames(self) -> np.ndarray:
        """Return the ready frames not returned before, (num_frames, dim) float32."""
        self._compute()
        frames = (
            np.concatenate(self._computed)
            if self._computed
            else np.zeros((0, self.dim), dtype=np.float32)
        )
        self._computed = []
        self._frames_popped += frames.shape[0]
        return frames

    # ---- internals

    def _merge_pending(self) -> None:
        if not self._pending:
            return
        new = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending = []
        tail = np.concatenate([self._tail, new])
        self._tail = tail[-self._tail_capacity :]
        if self._head_done:
            self._buffer = np.concatenate([self._buffer, new])
            return
        self._head.append(new)
        pad = self._left_pad
        if sum(chunk.size for chunk in self._head) >= pad:
            signal = np.concatenate(self._head)
            self._head = []
            self._head_done = True
            # Kaldi's reflection: sample -1 is sample 0, -2 is sample 1, ...
            self._buffer = np.concatenate([signal[:pad][::-1], signal])

    def _finish_edges(self, num_frames_total: int) -> None:
        """On the final call without snipping: pad the buffer's end by reflection."""
        if not self._head_done:  # a signal shorter than the left padding: pad it whole
            signal = np.concatenate(self._head) if self._head else np.zeros(0, np.float32)
            self._head = []
            self._head_done = True
            self._buffer = np.pad(signal, (self._left_pad, 0), mode="symmetric")
        start = self._frames_computed * self._frame_shift
        needed_end = (num_frames_total - 1) * self._frame_shift + self._frame_length
        missing = needed_end - (start + self._buffer.size)
        if missing > 0 and self._tail.size > 0:
            right = np.pad(self._tail, (0, missing), mode="symmetric")[-missing:]
            self._buffer = np.concatenate([self._buffer, right])

    def _compute(self) -> None:
        self._merge_pending()
        target = self.num_frames_ready
        count = target - self._frames_computed
        if count <= 0:
            return
        if not self._snip_edges and self._finished:
            self._finish_edges(target)
        shift, length = self._frame_shift, self._frame_length
        used = (count - 1) * shift + length
        if self._buffer.size < used:
            raise FeatureError(
                f"internal error: {count} frames need {used} buffered samples, "
                f"have {self._buffer.size}"
            )
        # The buffer starts at the next frame and is already padded: cut frames as snipping.
        raw_frames = frame_signal(
            self._buffer[:used], frame_length=length, frame_shift=shift, snip_edges=True
        )
        if count == 1:
            # BLAS computes a one-row product on another path (gemv) than a batch (gemm),
            # rounding differently; two copies keep the frame bit-identical to offline.
            frames = self._extractor.from_frames(np.repeat(raw_frames, 2, axis=0))[:1]
        else:
            frames = self._extractor.from_frames(raw_frames)
        if frames.shape[0] != count:
            raise FeatureError(
                f"internal error: expected {count} frames from {used} samples, "
                f"got {frames.shape[0]}"
            )
        self._computed.append(np.asarray(frames, dtype=np.float32))
        self._frames_computed = target
        self._buffer = self._buffer[count * shift :].copy()


# --------------------------------------------------------------------------- sliding CMVN


@dataclass(frozen=True)
class SlidingCmvnConfig:
    """Options of Kaldi's ``apply-cmvn-sliding`` (same names and defaults).

    ``cmn_window``: frames in the running window; ``min_window``: the minimum
    window at the start when ``center=False`` (adds latency only there);
    ``center``: centre the window on the frame instead of looking back;
    ``norm_vars``: also scale to unit variance.
    """

    cmn_window: int = 600
    min_window: int = 100
    center: bool = False
    norm_vars: bool = False

    def __post_init__(self) -> None:
        if self.cmn_window < 1 or self.min_window < 1:
            raise FeatureError(
                f"cmn_window ({self.cmn_window}) and min_window ({self.min_window}) "
                "must be positive"
            )


def _window_bounds(
    frame_index: np.ndarray, num_frames: int | None, config: SlidingCmvnConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Kaldi's window ``[start, end)`` for each frame; ``num_frames=None``: not yet known."""
    t = frame_index.astype(np.int64)
    if config.center:
        start = t - config.cmn_window // 2
        end = start + config.cmn_window
    else:
        start = t - config.cmn_window
        end = t + 1
    shift = np.maximum(-start, 0)  # a window starting before 0 moves right
    start, end = start + shift, end + shift
    if not config.center:
        end = np.where(end > t, np.maximum(t + 1, config.min_window), end)
    if num_frames is not None:
        over = np.maximum(end - num_frames, 0)  # a window past the end moves left
        start = np.maximum(start - over, 0)
        end = end - over
    return start, end


def _cumulative(frames: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """Running sums ``initial, initial + f0, initial + f0 + f1, ...`` (rows, float64).

    Always sequential from ``initial``, so chunked and whole computations agree bitwise.
    """
    return np.cumsum(np.concatenate([initial[None, :], frames]), axis=0)


def _normalize(
    frames: np.ndarray,
    sums: np.ndarray,
    sumsqs: np.ndarray | None,
    counts: np.ndarray,
) -> np.ndarray:
    """Kaldi's per-frame arithmetic (double precision), returning float32."""
    inv = 1.0 / counts.astype(np.float64)
    out = frames + (-inv)[:, None] * sums
    if sumsqs is not None:
        variance = sumsqs * inv[:, None]
        variance += (-1.0 / (counts * counts).astype(np.float64))[:, None] * (sums * sums)
        np.maximum(variance, 1.0e-10, out=variance)
        out *= variance**-0.5
        out[counts == 1] = 0.0
    return out.astype(np.float32)


def sliding_cmvn(feats: np.ndarray, config: SlidingCmvnConfig | None = None) -> np.ndarray:
    """Kaldi ``apply-cmvn-sliding`` on one utterance: (num_frames, dim) -> float32."""
    config = config if config is not None else SlidingCmvnConfig()
    feats = np.asarray(feats)
    if feats.ndim != 2:
        raise FeatureError(f"sliding_cmvn needs (num_frames, dim) features, got {feats.shape}")
    num_frames, dim = feats.shape
    if num_frames == 0:
        return np.zeros((0, dim), dtype=np.float32)
    x = feats.astype(np.float64)
    sums = _cumulative(x, np.zeros(dim))
    sumsqs = _cumulative(x * x, np.zeros(dim)) if config.norm_vars else None
    start, end = _window_bounds(np.arange(num_frames), num_frames, config)
    return _normalize(
        x,
        sums[end] - sums[start],
        None if sumsqs is None else sumsqs[end] - sumsqs[start],
        end - start,
    )


class OnlineSlidingCmvn:
    """Incremental :func:`sliding_cmvn` over frame chunks (bit-identical to it).

    Frame ``t`` is emitted once every frame of its window has arrived (with
    ``center=False``: from frame ``min_window - 1`` on, at once; with
    ``center=True``: ``cmn_window // 2`` frames later), or at
    :meth:`input_finished`. Memory stays bounded by the window.
    """

    def __init__(self, config: SlidingCmvnConfig | None = None) -> None:
        self.config = config if config is not None else SlidingCmvnConfig()
        self._dim: int | None = None
        self._base = 0  # absolute index of the first kept frame
        self._frames = np.zeros((0, 0))  # kept input frames, float64
        self._sums = np.zeros((1, 0))  # running sums at absolute indices base .. received
        self._sumsqs = np.zeros((1, 0))
        self._received = 0
        self._emitted = 0
        self._finished = False

    @property
    def num_frames_received(self) -> int:
        return self._received

    @property
    def num_frames_popped(self) -> int:
        return self._emitted

    def accept_frames(self, feats: np.ndarray) -> None:
        """Append frames (num_frames, dim) of the stream."""
        if self._finished:
            raise FeatureError("accept_frames called after input_finished()")
        feats = np.asarray(feats)
        if feats.ndim != 2:
            raise FeatureError(f"expected (num_frames, dim) frames, got shape {feats.shape}")
        if self._dim is None:
            self._dim = feats.shape[1]
            self._frames = np.zeros((0, self._dim))
            self._sums = np.zeros((1, self._dim))
            self._sumsqs = np.zeros((1, self._dim))
        elif feats.shape[1] != self._dim:
            raise FeatureError(f"frame dimension changed from {self._dim} to {feats.shape[1]}")
        if feats.shape[0] == 0:
            return
        x = feats.astype(np.float64)
        self._frames = np.concatenate([self._frames, x])
        self._sums = np.concatenate([self._sums[:-1], _cumulative(x, self._sums[-1])])
        if self.config.norm_vars:
            self._sumsqs = np.concatenate([self._sumsqs[:-1], _cumulative(x * x, self._sumsqs[-1])])
        self._received += feats.shape[0]

    def input_finished(self) -> None:
        self._finished = True

    @property
    def num_frames_ready(self) -> int:
        """Frames (from the stream start) whose normalized values are final."""
        if self._finished:
            return self._received
        if self._received == self._emitted:
            return self._emitted
        candidates = np.arange(self._emitted, self._received)
        _, end = _window_bounds(candidates, None, self.config)
        return self._emitted + int(np.count_nonzero(end <= self._received))

    def pop_frames(self) -> np.ndarray:
        """Return the ready frames not returned before, (num_frames, dim) float32."""
        dim = self._dim if self._dim is not None else 0
        ready = self.num_frames_ready
        if ready == self._emitted:
            return np.zeros((0, dim), dtype=np.float32)
        t = np.arange(self._emitted, ready)
        start, end = _window_bounds(t, self._received if self._finished else None, self.config)
        base = self._base
        sums = self._sums[end - base] - self._sums[start - base]
        sumsqs = (
            self._sumsqs[end - base] - self._sumsqs[start - base] if self.config.norm_vars else None
        )
        out = _normalize(self._frames[t - base], sums, sumsqs, end - start)
        self._emitted = ready
        self._drop_old_frames()
        return out

    def _drop_old_frames(self) -> None:
        """Forget frames no future window can reach."""
        # Windows of later frames start no earlier than the next frame's unclipped window;
        # at the end of the stream a window may move left, but stays within the last
        # cmn_window + 1 frames of what has been received.
        start, _ = _window_bounds(np.array([self._emitted]), None, self.config)
        longest = self.config.cmn_window + 1
        keep_from = max(0, min(int(start[0]), self._received - longest, self._emitted))
        drop = keep_from - self._base
        if drop > 0:
            self._frames = self._frames[drop:]
            self._sums = self._sums[drop:]
            if self.config.norm_vars:
                self._sumsqs = self._sumsqs[drop:]
            self._base = keep_from
