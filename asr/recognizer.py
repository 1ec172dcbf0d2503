"""Recognizer (a loaded bundle: shared, read-only) and Stream (one utterance at a time).

:meth:`Recognizer.transcribe` is the offline path: read and resample the audio
to the model's rate, compute the front-end features of the whole utterance,
apply the model's feature pipeline, score and decode with the bundle's graph.
CMVN follows the model: ``"speaker"`` CMVN uses the utterance's own stats (a
single file is its own speaker), unless the utterances of one speaker go
through :meth:`Recognizer.transcribe_speaker`, which pools their stats exactly
as ``asr features compute`` + ``asr decode`` do for a data dir (the same
hypotheses as the recipe's decode stage); ``"utterance"`` uses its own stats,
``"sliding"`` Kaldi's sliding window.

:meth:`Recognizer.stream` returns a :class:`Stream` for incremental input
(online features, :mod:`asr.features.online`; the Viterbi search of
:mod:`asr.decode`). What ``finalize()`` returns, compared with ``transcribe()``
on the same audio at the model's rate:

* CMVN ``"none"``/``"sliding"``, frame-independent model (GMM, spliced DNN):
  truly incremental decoding; the same result (features and search are the same
  arithmetic; only the batching of the acoustic model's matrix products differs);
* CMVN ``"utterance"``/``"speaker"``: partial results and endpointing use sliding
  CMVN (600-frame window, as Kaldi's online CMVN stands in for utterance stats);
  ``finalize()`` re-decodes the utterance with its own stats: the same result;
  a speaker-adaptive model (tri3, an fMLLR DNN) also estimates its fMLLR transform
  from the utterance there (partials use the speaker-independent scores);
* models that are not frame-independent (``frame_independent = False``, e.g. a
  recurrent CTC model): partials re-score everything so far; ``finalize()``
  decodes the whole utterance: the same result;
* input at another rate is resampled chunk by chunk (soxr's streaming
  resampler), which differs slightly from resampling the whole file at once.

Confidences are an acoustic frame-posterior proxy (:mod:`asr.confidence`), not
lattice word posteriors. Endpointing: Kaldi's rules (:mod:`asr.endpoint`).

>>> from asr.recognizer import Recognizer  # doctest: +SKIP
>>> rec = Recognizer.from_dir("exp/yesno/mono/bundle")  # doctest: +SKIP
>>> rec.transcribe("waves_yesno/0_0_1_0_1_0_1_1.wav").text  # doctest: +SKIP
'NO NO YES NO YES NO YES YES'
>>> stream = rec.stream()  # doctest: +SKIP
>>> for chunk in chunks:  # doctest: +SKIP
...     stream.accept_waveform(chunk)
...     if stream.is_endpoint():
...         print(stream.finalize().text); stream.reset()
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.audio import read_audio, resample, validate_samples
from asr.bundle import Bundle, load_bundle
from asr.confidence import frame_confidences, group_posteriors, pdf_groups, word_confidences
from asr.decode.graph import DecodingGraph, read_ilabel_map
from asr.decode.traceback import DecodeResult
from asr.decode.viterbi import DecoderConfig, SearchState, check_log_likes
from asr.endpoint import (
    EndpointConfig,
    endpoint_detected,
    final_relative_cost,
    trailing_silence_frames,
)
from asr.errors import AsrError, AudioError, DecodeError, ModelError
from asr.features.extractors import compute_features, num_frames
from asr.features.functional import compute_cmvn_stats
from asr.features.online import OnlineFeatureExtractor, OnlineSlidingCmvn, SlidingCmvnConfig
from asr.features.pipeline import apply_pipeline

#: ``decode_raw_features``: estimate a speaker-adaptive model's transform from the utterance
_OWN_TRANSFORM = object()

__all__ = ["Recognizer", "Result", "Stream", "Word", "resolve_device"]


@dataclass(frozen=True)
class Word:
    """One recognized word; ``start``/``end`` in seconds from the start of the audio
    (of the stream, for :class:`Stream`); ``confidence`` in [0, 1]."""

    word: str
    start: float
    end: float
    confidence: float


@dataclass(frozen=True)
class Result:
    """A hypothesis: ``text`` (words joined by spaces), ``words``, ``confidence`` in [0, 1],
    ``duration_s`` of the audio, ``rtf`` (processing time / duration; None for streams)."""

    text: str
    words: tuple[Word, ...]
    confidence: float
    duration_s: float
    rtf: float | None = None

    def to_dict(self) -> dict:
        """JSON-ready: ``text``, ``words`` [{word, start, end, confidence}], ``confidence``,
        ``duration`` (seconds), ``rtf``."""
        return {
            "text": self.text,
            "words": [dataclasses.asdict(w) for w in self.words],
            "confidence": self.confidence,
            "duration": self.duration_s,
            "rtf": self.rtf,
        }


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; checks the name."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" or device == "cuda" or device.startswith("cuda:"):
        return device
    raise ModelError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")


class Recognizer:
    """A loaded bundle: acoustic model, graph, words; read-only, safe to share across threads
    (each call builds its own search state). Build it with :meth:`from_dir`."""

    def __init__(self, bundle: Bundle, *, acoustic_model, graph: DecodingGraph, device: str):
        from asr.lang.symbols import read_symbol_table

        self.bundle = bundle
        self.acoustic_model = acoustic_model
        self.graph = graph
        self.device = device
        self.family: str = bundle.family
        self.sampling_rate: int = bundle.sampling_rate
        self.decoder_config: DecoderConfig = bundle.decoder_config
        self.endpoint_config = EndpointConfig()
        self.frame_independent: bool = bool(
            getattr(acoustic_model, "frame_independent", bundle.family != "ctc")
        )
        self.feature_pipeline = bundle.feature_pipeline
        self.front_end = bundle.feature_pipeline.base_config()
        # seconds per decoded frame: a subsampling CTC model emits one per `subsampling` inputs
        self.frame_shift_s = (
            float(self.front_end.frame_shift_ms) / 1000.0
            * int(getattr(acoustic_model, "subsampling", 1))
        )  # fmt: skip
        self.word_symbols = read_symbol_table(bundle.graph_dir / "words.txt")
        phone_map = bundle.graph_dir / "ilabel_to_phone.int"
        if phone_map.is_file():
            self.ilabel_to_phone = read_ilabel_map(phone_map)
            self.pdf_to_group = pdf_groups(
                arc_pdf=graph.pdf, arc_ilabel=graph.ilabel,
                ilabel_to_phone=self.ilabel_to_phone, num_pdfs=acoustic_model.num_pdfs,
            )  # fmt: skip
        else:  # CTC: the "phone" of an ilabel is its token
            self.ilabel_to_phone = read_ilabel_map(bundle.graph_dir / "ilabel_to_pdf.int")
            self.pdf_to_group = np.arange(acoustic_model.num_pdfs, dtype=np.int64)
        self.silence_phones = bundle.silence_phones
        self._silence_table = np.isin(
            self.ilabel_to_phone, np.fromiter(self.silence_phones, dtype=np.int64)
        )
        self._transform = getattr(acoustic_model, "transform", None)

    @classmethod
    def from_dir(
        cls, bundle_dir: str | os.PathLike, *, device: str = "auto", verify: bool = True
    ) -> Recognizer:
        """Load and verify a bundle (:func:`asr.bundle.load_bundle`) on ``device``."""
        from asr.acoustic import load_acoustic_model

        bundle = load_bundle(bundle_dir, verify=verify)
        device = resolve_device(device)
        model = load_acoustic_model(bundle.model_dir, device=device)
        graph = DecodingGraph.from_fst(bundle.graph_fst, bundle.graph_dir / "ilabel_to_pdf.int")
        if graph.num_pdfs_required > model.num_pdfs:
            raise ModelError(
                f"{bundle.graph_fst}: the graph reads pdf {graph.num_pdfs_required - 1} but the "
                f"model has {model.num_pdfs} pdfs"
            )
        return cls(bundle, acoustic_model=model, graph=graph, device=device)

    # ------------------------------------------------------------------ offline
    def load_audio(
        self, path_or_samples, *, sampling_rate: int | None = None, name: str = "samples"
    ) -> np.ndarray:
        """A path or a 1-D float array (at ``sampling_rate``, default the model's) ->
        float32 samples at the model's rate; :class:`AudioError` on bad input."""
        if isinstance(path_or_samples, (str, os.PathLike)):
            samples, rate = read_audio(Path(path_or_samples))
            name = str(path_or_samples)
        else:
            samples = validate_samples(path_or_samples, name=name)
            rate = self.sampling_rate if sampling_rate is None else int(sampling_rate)
        if rate != self.sampling_rate:
            samples = resample(samples, orig_rate=rate, new_rate=self.sampling_rate)
        if num_frames(samples.shape[0], self.front_end) < 1:
            raise AudioError(
                f"{name}: too short ({samples.shape[0] / self.sampling_rate * 1000:.1f} ms) "
                "for a single feature frame"
            )
        return samples

    def transcribe(self, path_or_samples, *, sampling_rate: int | None = None) -> Result:
        """Recognize one utterance: a file path or float samples at ``sampling_rate``
        (default: the model's). Raises :class:`AudioError` for unusable audio."""
        (outcome,) = self.transcribe_speaker([path_or_samples], sampling_rate=sampling_rate)
        if isinstance(outcome, AsrError):
            raise outcome
        return outcome

    def transcribe_speaker(
        self, inputs, *, sampling_rate: int | None = None
    ) -> list[Result | AsrError]:
        """The utterances of ONE speaker (paths or float samples at ``sampling_rate``),
        with the speaker's pooled CMVN stats when the model's CMVN is ``"speaker"``
        (what the recipes' decode stage does). One entry per input, in order: its
        :class:`Result`, or the :class:`AsrError` that made it unusable (its audio
        is left out of the stats; the other utterances still decode)."""
        prepared: list[tuple[np.ndarray, float, float] | AsrError] = []
        for index, item in enumerate(inputs):
            start = time.perf_counter()
            try:
                samples = self.load_audio(
                    item, sampling_rate=sampling_rate, name=f"samples[{index}]"
                )
                raw = compute_features(
                    samples, sampling_rate=self.sampling_rate, config=self.front_end
                )
            except AsrError as err:
                prepared.append(err)
                continue
            seconds = samples.shape[0] / self.sampling_rate
            prepared.append((raw, seconds, time.perf_counter() - start))
        good = [entry for entry in prepared if not isinstance(entry, AsrError)]
        stats = None
        if self.feature_pipeline.cmvn == "speaker" and good:
            stats = np.sum([compute_cmvn_stats(raw) for raw, _, _ in good], axis=0)
        transform = _OWN_TRANSFORM
        sat_model = getattr(self.acoustic_model, "sat_model", None)
        if sat_model is not None and good:
            # speaker-adaptive (SAT) model: the speaker's fMLLR transform from all its audio
            from asr.gmm.sat import speaker_transform

            feats = [self.acoustic_model.features(raw, cmvn_stats=stats) for raw, _, _ in good]
            transform = speaker_transform(sat_model, self.graph, feats, self.decoder_config)
        results: list[Result | AsrError] = []
        for entry in prepared:
            if isinstance(entry, AsrError):
                results.append(entry)
                continue
            raw, seconds, feature_s = entry
            start = time.perf_counter()
            result = self.decode_raw_features(
                raw, duration_s=seconds, cmvn_stats=stats, speaker_transform=transform
            )
            rtf = (time.perf_counter() - start + feature_s) / max(seconds, 1e-9)
            results.append(dataclasses.replace(result, rtf=rtf))
        return results

    def decode_raw_features(
        self,
        raw_feats: np.ndarray,
        *,
        duration_s: float,
        time_offset_s: float = 0.0,
        cmvn_stats: np.ndarray | None = None,
        speaker_transform: np.ndarray | None | object = _OWN_TRANSFORM,
    ) -> Result:
        """Front-end features of a whole utterance -> :class:`Result` (offline decode);
        ``cmvn_stats``: the speaker's Kaldi CMVN stats (default: the utterance's own);
        ``speaker_transform``: for a speaker-adaptive model, the speaker's fMLLR transform
        (None: the SI scores); by default one is estimated from this utterance alone."""
        feats = self.acoustic_model.features(raw_feats, cmvn_stats=cmvn_stats)
        sat_model = getattr(self.acoustic_model, "sat_model", None)
        if sat_model is None:
            log_likes = self.acoustic_model.log_likelihoods(feats)
        else:
            if speaker_transform is _OWN_TRANSFORM:
                from asr.gmm.sat import speaker_transform as estimate

                speaker_transform = estimate(sat_model, self.graph, [feats], self.decoder_config)
            log_likes = self.acoustic_model.scores(feats, speaker_transform)
        search = SearchState(self.graph, self.decoder_config)
        search.init()
        search.advance(check_log_likes(self.graph, log_likes))
        decoded = self._result(search, use_final=True)
        post = self.group_posteriors(log_likes)
        return self.make_result(decoded, post, duration_s=duration_s, offset_s=time_offset_s)

    # ------------------------------------------------------------------ shared helpers
    def group_posteriors(self, log_likes: np.ndarray) -> np.ndarray:
        return group_posteriors(
            log_likes, self.pdf_to_group, acoustic_scale=self.decoder_config.acoustic_scale
        )

    def _result(self, search: SearchState, *, use_final: bool) -> DecodeResult:
        return search.result(
            use_final=use_final,
            word_symbols=self.word_symbols,
            ilabel_to_phone=self.ilabel_to_phone,
            silence_phones=self.silence_phones,
        )

    def make_result(
        self, decoded: DecodeResult, group_post: np.ndarray, *, duration_s: float, offset_s: float
    ) -> Result:
        """Frames -> seconds (clipped to the audio), words, confidences."""
        frame_conf = frame_confidences(group_post, decoded.pdf_alignment, self.pdf_to_group)
        bounds = decoded.word_boundaries
        word_conf = word_confidences(frame_conf, bounds)
        times = np.minimum(bounds.astype(np.float64) * self.frame_shift_s, duration_s)
        words = tuple(
            Word(
                word=w,
                start=round(offset_s + float(times[k, 0]), 3),
                end=round(offset_s + float(times[k, 1]), 3),
                confidence=round(float(word_conf[k]), 4),
            )
            for k, w in enumerate(decoded.words or ())
        )
        if words:
            confidence = float(np.mean(word_conf))
        else:
            confidence = float(frame_conf.mean()) if frame_conf.size else 0.0
        return Result(
            text=decoded.text,
            words=words,
            confidence=round(confidence, 4),
            duration_s=float(duration_s),
        )

    def stream(self) -> Stream:
        """A new :class:`Stream` over this recognizer (cheap; one per utterance/client)."""
        return Stream(self)


class _ContextFrames:
    """Deltas/splice/transform of the pipeline, applied incrementally to CMVN-normalized
    frames: a frame is emitted once its right context has arrived (all at the end)."""

    def __init__(self, recognizer: Recognizer, raw_dim: int) -> None:
        pipe = recognizer.feature_pipeline
        self._pipe = dataclasses.replace(pipe, cmvn="none")
        self._transform = recognizer._transform
        splice = pipe.splice or (0, 0)
        self._left = pipe.deltas * pipe.delta_window + splice[0]
        self._right = pipe.deltas * pipe.delta_window + splice[1]
        self._out_dim = pipe.output_dim(raw_dim, self._transform)
        self._frames = np.zeros((0, raw_dim), dtype=np.float32)
        self._first = 0  # absolute index of self._frames[0]
        self._emitted = 0

    def accept(self, frames: np.ndarray, *, finished: bool) -> np.ndarray:
        if frames.shape[0]:
            self._frames = np.concatenate([self._frames, frames])
        total = self._first + self._frames.shape[0]
        ready = total if finished else max(self._emitted, total - self._right)
        if ready <= self._emitted:
            return np.zeros((0, self._out_dim), dtype=np.float32)
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
    (search); a batching scheduler may call the two halves itself, scoring the frames
    of many streams at once (only when ``recognizer.frame_independent``).
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
        self._context = _ContextFrames(rec, self._extractor.dim)
        self._raw: list[np.ndarray] = []
        self._posts: list[np.ndarray] = []
        self._search = SearchState(rec.graph, rec.decoder_config)
        self._search.init()
        self._num_samples = 0
        self._final: Result | None = None
        self._whole_cache: tuple[int, Result, DecodeResult] | None = None

    @property
    def duration_s(self) -> float:
        """Audio accepted in this utterance, seconds (at the model's rate)."""
        return self._num_samples / self.recognizer.sampling_rate

    @property
    def num_frames_decoded(self) -> int:
        return self._search.num_frames_decoded

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
            return np.zeros((0, self._context._out_dim), dtype=np.float32)
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

    def advance(self, log_likes: np.ndarray) -> None:
        """Decode scores ``(num_frames, num_pdfs)`` of the frames ``accept_samples`` returned."""
        self._check_open()
        scores = check_log_likes(self.recognizer.graph, log_likes, allow_empty=True)
        if scores.shape[0] == 0:
            return
        self._posts.append(self.recognizer.group_posteriors(scores))
        self._search.advance(scores)

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
            search = SearchState(rec.graph, rec.decoder_config)
            search.init()
            search.advance(check_log_likes(rec.graph, log_likes))
            decoded = rec._result(search, use_final=False)
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
        decoded = self.recognizer._result(self._search, use_final=False)
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
            decoded = rec._result(self._search, use_final=False)
            states = self._search.cur_list[: int(self._search.counters[0])]
            relative = final_relative_cost(
                self._search.cur_cost[states], rec.graph.final_cost[states]
            )
        else:
            whole = self._whole()
            if whole is None:
                return False
            decoded, relative = whole[1], (0.0 if whole[1].reached_final else math.inf)
        is_sil = rec._silence_table[decoded.alignment]
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
        decoded = rec._result(self._search, use_final=True)
        self._final = rec.make_result(
            decoded, np.concatenate(self._posts),
            duration_s=self.duration_s, offset_s=self.time_offset_s,
        )  # fmt: skip
        return self._final

    def reset(self) -> None:
        """Start the next utterance; word times keep counting from the stream's start."""
        self.time_offset_s += self.duration_s
        self._start_utterance()
