"""A :class:`Stream`: one client's audio, decoded incrementally (see :mod:`asr.recognizer`).

The features come from :mod:`asr.features.online` (CMVN, then the pipeline's
deltas/splice/transform through :class:`ContextFrames`); the search is the recognizer's
online decoder (:meth:`asr.recognizer.core.Recognizer.new_decoder`)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from asr.audio import validate_samples
from asr.decode.traceback import DecodeResult
from asr.decode.viterbi import check_log_likes
from asr.endpoint import endpoint_detected, trailing_silence_frames
from asr.errors import DecodeError
from asr.features.online import OnlineFeatureExtractor, OnlineSlidingCmvn, SlidingCmvnConfig
from asr.features.pipeline import apply_pipeline
from asr.recognizer.result import Result

# A stream's ``recognizer`` is an asr.recognizer.core.Recognizer (which creates streams with
# Recognizer.stream()); typed Any here so that this module does not import core back.
Recognizer = Any

__all__ = ["ContextFrames", "Stream"]


class ContextFrames:
    """Deltas/splice/transform of the pipeline, applied incrementally to CMVN-normalized
    frames: a frame is emitted once its right context has arrived (all at the end)."""

    def __init__(self, recognizer: Recognizer, raw_dim: int) -> None:
        pipe = recognizer.feature_pipeline
        self._pipe = dataclasses.replace(pipe, cmvn="none")
        self._transform = recognizer.acoustic_model.transform
        splice = pipe.splice or (0, 0)
        self._left = pipe.deltas * pipe.delta_window + splice[0]
        self._right = pipe.deltas * pipe.delta_window + splice[1]
        self.out_dim = pipe.output_dim(raw_dim, self._transform)
        self._frames = np.zeros((0, raw_dim), dtype=np.float32)
        self._first = 0  # absolute index of self._frames[0]
        self._emitted = 0

    def accept(self, frames: np.ndarray, *, finished: bool) -> np.ndarray:
        if frames.shape[0]:
            self._frames = np.concatenate([self._frames, frames])
        total = self._first + self._frames.shape[0]
        ready = total if finished else max(self._emitted, total - self._right)
        if ready <= self._emitted:
            return np.zeros((0, self.out_dim), dtype=np.float32)
        start = max(self._first, self._emitted - self._left)
        out = apply_pipeline(
            self._frames[start - self._first :], self._pipe, transform=self._transform
        )[self._emitted - start : ready - start]
        self._emitted = ready
        keep = max(self._first, ready - self._left)
        self._frames = self._frames[keep - self._first :]
        self._first = keep
        return out


class Stream:
    """One stream of audio (one client); NOT thread-safe. See the module docstring.

    ``accept_waveform`` = ``accept_samples`` (features) + the model's scores + ``advance``
    (search); :meth:`asr.recognizer.core.Recognizer.decode_streams` calls the halves itself
    for many streams at once, scoring their frames in one call (only when
    ``recognizer.frame_independent``).
    """

    def __init__(self, recognizer: Recognizer) -> None:
        self.recognizer = recognizer
        self.time_offset_s = 0.0
        self._resampler = None
        self._resampler_rate: int | None = None
        self._start_utterance()

    # ------------------------------------------------------------------ state
    def _start_utterance(self) -> None:
        rec = self.recognizer
        pipe = rec.feature_pipeline
        self._extractor = OnlineFeatureExtractor(rec.front_end)
        self._two_pass = pipe.cmvn in ("utterance", "speaker") or not rec.frame_independent
        self._cmvn = None
        if pipe.cmvn != "none":
            sliding = pipe.cmvn == "sliding"
            self._cmvn = OnlineSlidingCmvn(
                SlidingCmvnConfig(
                    cmn_window=pipe.cmn_window if sliding else 600,
                    min_window=min(100, pipe.cmn_window) if sliding else 100,
                    center=pipe.cmn_center if sliding else False,
                    norm_vars=pipe.norm_vars,
                )
            )
        self._context = ContextFrames(rec, self._extractor.dim)
        self._raw: list[np.ndarray] = []
        self._posts: list[np.ndarray] = []
        self.decoder = rec.new_decoder()
        self.decoder.init()
        self._num_samples = 0
        self._final: Result | None = None
        self._whole_cache: tuple[int, Result, DecodeResult] | None = None

    @property
    def duration_s(self) -> float:
        """Audio accepted in this utterance, seconds (at the model's rate)."""
        return self._num_samples / self.recognizer.sampling_rate

    @property
    def num_frames_decoded(self) -> int:
        return self.decoder.num_frames_decoded

    def _check_open(self) -> None:
        if self._final is not None:
            raise DecodeError("stream already finalized; call reset() to start the next utterance")

    # ------------------------------------------------------------------ input
    def _to_model_rate(self, samples: np.ndarray, sampling_rate: int | None) -> np.ndarray:
        rate = self.recognizer.sampling_rate if sampling_rate is None else int(sampling_rate)
        if rate == self.recognizer.sampling_rate:
            return samples
        import soxr

        if self._resampler is None or self._resampler_rate != rate:
            self._resampler = soxr.ResampleStream(
                rate, self.recognizer.sampling_rate, 1, dtype="float32", quality="HQ"
            )
            self._resampler_rate = rate
        return np.asarray(self._resampler.resample_chunk(samples), dtype=np.float32)

    def accept_samples(
        self, samples: np.ndarray, *, sampling_rate: int | None = None
    ) -> np.ndarray:
        """Append audio (1-D float in [-1, 1] at ``sampling_rate``, default the model's);
        return the new model-input frames ``(num_frames, dim)`` float32 (maybe 0 frames)."""
        self._check_open()
        samples = np.asarray(samples)
        if samples.size == 0:
            return self._features(np.zeros((0, self._extractor.dim), np.float32), False)
        samples = self._to_model_rate(validate_samples(samples, name="stream chunk"), sampling_rate)
        self._num_samples += samples.shape[0]
        self._extractor.accept_waveform(samples)
        return self._features(self._extractor.pop_frames(), False)

    def _features(self, raw: np.ndarray, finished: bool) -> np.ndarray:
        if self._two_pass and raw.shape[0]:
            self._raw.append(raw)
        if not self.recognizer.frame_independent:
            return np.zeros((0, self._context.out_dim), dtype=np.float32)
        normed = raw
        if self._cmvn is not None:
            if raw.shape[0]:
                self._cmvn.accept_frames(raw)
            if finished:
                self._cmvn.input_finished()
            normed = self._cmvn.pop_frames()
            if normed.shape[0] == 0:
                normed = np.zeros((0, raw.shape[1]), dtype=np.float32)
        return self._context.accept(normed, finished=finished)

    def accept_scores(self, log_likes: np.ndarray) -> np.ndarray:
        """Validate the scores ``(num_frames, num_pdfs)`` of the frames ``accept_samples``
        returned and keep their posteriors (for confidences); returns them for the search
        (:meth:`advance` does both halves; :meth:`Recognizer.decode_streams` batches the
        search of many streams)."""
        self._check_open()
        scores = check_log_likes(self.recognizer.graph, log_likes, allow_empty=True)
        if scores.shape[0]:
            self._posts.append(self.recognizer.group_posteriors(scores))
        return scores

    def advance(self, log_likes: np.ndarray) -> None:
        """Decode scores ``(num_frames, num_pdfs)`` of the frames ``accept_samples`` returned."""
        scores = self.accept_scores(log_likes)
        if scores.shape[0]:
            self.decoder.advance(scores)

    def accept_waveform(self, samples: np.ndarray, *, sampling_rate: int | None = None) -> None:
        """Features, scores and search for a chunk of audio (see :meth:`accept_samples`)."""
        feats = self.accept_samples(samples, sampling_rate=sampling_rate)
        if feats.shape[0]:
            self.advance(self.recognizer.acoustic_model.log_likelihoods(feats))

    # ------------------------------------------------------------------ output
    def _whole(self) -> tuple[Result, DecodeResult] | None:
        """Non-frame-independent models: decode everything so far (cached)."""
        raw_frames = sum(r.shape[0] for r in self._raw)
        if raw_frames == 0:
            return None
        if self._whole_cache is None or self._whole_cache[0] != raw_frames:
            rec = self.recognizer
            log_likes = rec.acoustic_model.log_likelihoods(
                rec.acoustic_model.features(np.concatenate(self._raw))
            )
            decoded = rec.decode_scores(log_likes, use_final=False)
            result = rec.make_result(
                decoded, rec.group_posteriors(log_likes),
                duration_s=self.duration_s, offset_s=self.time_offset_s,
            )  # fmt: skip
            self._whole_cache = (raw_frames, result, decoded)
        return self._whole_cache[1], self._whole_cache[2]

    def _empty(self) -> Result:
        return Result(text="", words=(), confidence=0.0, duration_s=self.duration_s)

    def partial(self) -> Result:
        """The current best hypothesis (final states not required); cheap."""
        if self._final is not None:
            return self._final
        if not self.recognizer.frame_independent:
            whole = self._whole()
            return whole[0] if whole is not None else self._empty()
        if self.num_frames_decoded == 0:
            return self._empty()
        decoded = self.decoder.partial()
        return self.recognizer.make_result(
            decoded, np.concatenate(self._posts),
            duration_s=self.duration_s, offset_s=self.time_offset_s,
        )  # fmt: skip

    def is_endpoint(self) -> bool:
        """Kaldi's endpoint rules on the best path so far (:mod:`asr.endpoint`)."""
        rec = self.recognizer
        if self._final is not None:
            return True
        if rec.frame_independent:
            if self.num_frames_decoded == 0:
                return False
            decoded = self.decoder.partial()
            relative = self.decoder.final_relative_cost()
        else:
            whole = self._whole()
            if whole is None:
                return False
            decoded, relative = whole[1], (0.0 if whole[1].reached_final else math.inf)
        is_sil = rec.silence_table[decoded.alignment]
        trailing = trailing_silence_frames(is_sil)
        return endpoint_detected(
            rec.endpoint_config,
            num_frames=decoded.num_frames,
            trailing_silence_frames=trailing,
            contains_nonsilence=decoded.num_frames > trailing,
            final_relative_cost=relative,
            frame_shift_s=rec.frame_shift_s,
        )

    def finalize(self) -> Result:
        """End the utterance: flush the features, apply final costs; equals
        :meth:`Recognizer.transcribe` on the same audio (see the module docstring)."""
        if self._final is not None:
            return self._final
        rec = self.recognizer
        if self._resampler is not None:  # flush the resampler's delay line
            tail = np.asarray(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
            if tail.size:
                self._num_samples += tail.shape[0]
                self._extractor.accept_waveform(tail.astype(np.float32))
            self._resampler = None
        self._extractor.input_finished()
        feats = self._features(self._extractor.pop_frames(), True)
        if self._two_pass:
            if not self._raw:
                self._final = self._empty()
                return self._final
            self._final = rec.decode_raw_features(
                np.concatenate(self._raw), duration_s=self.duration_s,
                time_offset_s=self.time_offset_s,
            )  # fmt: skip
            return self._final
        if feats.shape[0]:
            self.advance(rec.acoustic_model.log_likelihoods(feats))
        if self.num_frames_decoded == 0:
            self._final = self._empty()
            return self._final
        decoded = self.decoder.finalize()
        self._final = rec.make_result(
            decoded, np.concatenate(self._posts),
            duration_s=self.duration_s, offset_s=self.time_offset_s,
        )  # fmt: skip
        return self._final

    def reset(self) -> None:
        """Start the next utterance; word times keep counting from the stream's start."""
        self.time_offset_s += self.duration_s
        self._start_utterance()
