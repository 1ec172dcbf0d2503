"""The :class:`Recognizer`: a loaded bundle (acoustic model, graph, words), offline decoding
and the batched advancing of many :class:`asr.recognizer.stream.Stream` objects
(:meth:`Recognizer.decode_streams`); see :mod:`asr.recognizer`."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.acoustic_model import AcousticModel, SpeakerAdaptive
from asr.audio import read_audio, resample, validate_samples
from asr.bundle import Bundle, load_bundle
from asr.confidence import frame_confidences, group_posteriors, pdf_groups, word_confidences
from asr.decode.online import OnlineDecoder
from asr.decode.search_graph import DecodingGraph, read_ilabel_map
from asr.decode.traceback import DecodeResult
from asr.decode.viterbi import DecoderConfig, check_log_likes
from asr.endpoint import EndpointConfig
from asr.errors import AsrError, AudioError, ModelError
from asr.features.extractors import compute_features, num_frames
from asr.features.functional import compute_cmvn_stats
from asr.recognizer.result import Result, Word

#: ``decode_raw_features``: estimate a speaker-adaptive model's transform from the utterance
_OWN_TRANSFORM = object()

#: the searches a recognizer can run: the compiled single-stream one, the batched torch one
SEARCH_BACKENDS = ("numba", "torch")

__all__ = [
    "SEARCH_BACKENDS",
    "AcousticModelFailure",
    "Recognizer",
    "Result",
    "StreamBatch",
    "Word",
    "resolve_device",
]


class AcousticModelFailure(RuntimeError):
    """The acoustic model failed on a batch of streams' frames (a fault, not bad input)."""


@dataclass(frozen=True)
class StreamBatch:
    """What :meth:`Recognizer.decode_streams` did: ``errors[i]`` is None when stream ``i``
    advanced, else what stopped it (an :class:`asr.errors.AsrError` for bad input, an
    :class:`AcousticModelFailure`, or another exception: a fault); ``num_frames_scored``:
    frames scored in the one batched acoustic-model call."""

    errors: list[BaseException | None]
    num_frames_scored: int = 0


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; checks the name."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        check_cuda_device(device)
        return device
    raise ModelError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")


def check_cuda_device(device: str) -> None:
    """Raise :class:`ModelError` (one line, no traceback) when ``device`` (``cuda``, ``cuda:N``)
    cannot be used: a torch built without CUDA, no GPU visible, or no GPU ``N``."""
    import torch

    if not torch.cuda.is_available():
        why = (
            f"this torch ({torch.__version__}) was built without CUDA"
            if torch.version.cuda is None
            else "torch sees no CUDA GPU (driver, CUDA_VISIBLE_DEVICES?)"
        )
        raise ModelError(f"device {device!r}: {why}; use --device cpu (or auto)")
    index = device.partition(":")[2]
    if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
        raise ModelError(
            f"device {device!r}: no such GPU ({torch.cuda.device_count()} visible: "
            f"cuda:0..cuda:{torch.cuda.device_count() - 1})"
        )


class Recognizer:
    """A loaded bundle: acoustic model, graph, words; read-only, safe to share across threads
    (each call builds its own search state). Build it with :meth:`from_dir`.

    ``search_backend``: ``"numba"`` (the compiled single-stream search) or ``"torch"`` (the
    batched search, :mod:`asr.decode.batched_online`, on the model's device); default: torch
    when the device is CUDA."""

    def __init__(
        self,
        bundle: Bundle,
        *,
        acoustic_model: AcousticModel,
        graph: DecodingGraph,
        device: str,
        search_backend: str | None = None,
    ):
        from asr.lang.symbols import read_symbol_table

        self.bundle = bundle
        self.acoustic_model = acoustic_model
        self.graph = graph
        self.device = device
        self.family: str = bundle.family
        self.sampling_rate: int = bundle.sampling_rate
        self.decoder_config: DecoderConfig = bundle.decoder_config
        self.endpoint_config = EndpointConfig()
        self.frame_independent: bool = bool(acoustic_model.frame_independent)
        self.feature_pipeline = bundle.feature_pipeline
        self.front_end = bundle.feature_pipeline.base_config()
        # seconds per decoded frame: a subsampling CTC model emits one per `subsampling` inputs
        self.frame_shift_s = (
            float(self.front_end.frame_shift_ms) / 1000.0 * int(acoustic_model.subsampling)
        )
        if search_backend is None:
            search_backend = "torch" if device.startswith("cuda") else "numba"
        if search_backend not in SEARCH_BACKENDS:
            raise ModelError(
                f"search_backend must be one of {SEARCH_BACKENDS}, got {search_backend!r}"
            )
        self.search_backend = search_backend
        self._batched_search = None  # the graph on the device, made on first use
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
        self.silence_table = np.isin(
            self.ilabel_to_phone, np.fromiter(self.silence_phones, dtype=np.int64)
        )

    @classmethod
    def from_dir(
        cls,
        bundle_dir: str | os.PathLike,
        *,
        device: str = "auto",
        verify: bool = True,
        search_backend: str | None = None,
    ) -> Recognizer:
        """Load and verify a bundle (:func:`asr.bundle.load_bundle`) on ``device``
        (``search_backend``: see the class docstring)."""
        from asr.acoustic_model import load_acoustic_model

        bundle = load_bundle(bundle_dir, verify=verify)
        device = resolve_device(device)
        model = load_acoustic_model(bundle.model_dir, device=device)
        graph = DecodingGraph.from_fst(bundle.graph_fst, bundle.graph_dir / "ilabel_to_pdf.int")
        if graph.num_pdfs_required > model.num_pdfs:
            raise ModelError(
                f"{bundle.graph_fst}: the graph reads pdf {graph.num_pdfs_required - 1} but the "
                f"model has {model.num_pdfs} pdfs"
            )
        return cls(
            bundle, acoustic_model=model, graph=graph, device=device, search_backend=search_backend
        )

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
        model = self.acoustic_model
        if isinstance(model, SpeakerAdaptive) and good:
            # speaker-adaptive model: the speaker's fMLLR transform from all its audio
            feats = [model.features(raw, cmvn_stats=stats) for raw, _, _ in good]
            transform = model.adapt_to_speaker(self.graph, feats, self.decoder_config)
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
        model = self.acoustic_model
        feats = model.features(raw_feats, cmvn_stats=cmvn_stats)
        if not isinstance(model, SpeakerAdaptive):
            log_likes = model.log_likelihoods(feats)
        else:
            if speaker_transform is _OWN_TRANSFORM:
                speaker_transform = model.adapt_to_speaker(self.graph, [feats], self.decoder_config)
            log_likes = model.adapted_scores(feats, speaker_transform)
        decoded = self.decode_scores(log_likes, use_final=True)
        post = self.group_posteriors(log_likes)
        return self.make_result(decoded, post, duration_s=duration_s, offset_s=time_offset_s)

    # ------------------------------------------------------------------ search
    def new_decoder(self):
        """A fresh online decoder over the graph (not yet ``init()``-ed): an
        :class:`asr.decode.online.OnlineDecoder`, or with the torch backend a
        :class:`asr.decode.batched_online.TorchOnlineDecoder` on the model's device."""
        kwargs = {
            "word_symbols": self.word_symbols,
            "ilabel_to_phone": self.ilabel_to_phone,
            "silence_phones": self.silence_phones,
        }
        if self.search_backend == "numba":
            return OnlineDecoder(self.graph, self.decoder_config, **kwargs)
        from asr.decode.batched_online import BatchedSearch, TorchOnlineDecoder

        if self._batched_search is None:
            self._batched_search = BatchedSearch(
                self.graph, self.decoder_config, device=self.device
            )
        return TorchOnlineDecoder(self._batched_search, **kwargs)

    def advance_decoders(self, decoders: Sequence, chunks: Sequence[np.ndarray]) -> None:
        """Advance each decoder (from :meth:`new_decoder`) by its chunk of validated scores:
        one batched search for all with the torch backend, one after the other otherwise."""
        if self.search_backend == "torch":
            from asr.decode.batched_online import advance_torch_decoders

            advance_torch_decoders(decoders, chunks)
            return
        for decoder, chunk in zip(decoders, chunks, strict=True):
            decoder.advance(chunk)

    def decode_scores(self, log_likes: np.ndarray, *, use_final: bool) -> DecodeResult:
        """Decode one utterance's scores ``(num_frames > 0, num_pdfs)`` from the start state."""
        scores = check_log_likes(self.graph, log_likes)
        decoder = self.new_decoder()
        decoder.init()
        decoder.advance(scores)
        return decoder.finalize() if use_final else decoder.partial()

    def decode_streams(
        self,
        streams: Sequence,
        chunks: Sequence[np.ndarray],
        *,
        sampling_rates: Sequence[int | None] | None = None,
    ) -> StreamBatch:
        """Advance many of this recognizer's :class:`~asr.recognizer.stream.Stream` objects by
        one chunk of audio each (``sampling_rates[i]``: the rate of ``chunks[i]``, default
        the model's), as sherpa-onnx's ``DecodeStreams``: the new feature frames of all
        streams are scored in ONE acoustic-model call (frame-independent models; others are
        advanced one stream at a time, :meth:`Stream.accept_waveform`), then every stream's
        search is advanced (in one batched torch search with the torch backend). One
        stream's bad input stops only that stream (see :class:`StreamBatch`)."""
        rates = list(sampling_rates) if sampling_rates is not None else [None] * len(streams)
        if not len(streams) == len(chunks) == len(rates):
            raise AsrError("decode_streams: one chunk and one rate per stream")
        errors: list[BaseException | None] = [None] * len(streams)
        frames: dict[int, np.ndarray] = {}
        for index, (stream, chunk, rate) in enumerate(zip(streams, chunks, rates, strict=True)):
            try:
                if not self.frame_independent:
                    stream.accept_waveform(chunk, sampling_rate=rate)
                    continue
                feats = stream.accept_samples(chunk, sampling_rate=rate)
                if feats.shape[0]:
                    frames[index] = feats
            except Exception as err:  # noqa: BLE001 -- reported per stream
                errors[index] = err
        if not frames:
            return StreamBatch(errors)
        order = list(frames)
        feats = np.concatenate([frames[i] for i in order], axis=0)
        try:
            log_likes = np.asarray(self.acoustic_model.log_likelihoods(feats))
        except Exception as err:  # noqa: BLE001 -- a fault of the model: every stream in it
            failure = AcousticModelFailure(f"acoustic model failed: {err}")
            for index in order:
                errors[index] = failure
            return StreamBatch(errors, 0)
        offsets = np.cumsum([0, *(frames[i].shape[0] for i in order)])
        ready, decoders, scores = [], [], []
        for index, lo, hi in zip(order, offsets[:-1], offsets[1:], strict=True):
            try:
                scores.append(streams[index].accept_scores(log_likes[lo:hi]))
                decoders.append(streams[index].decoder)
                ready.append(index)
            except Exception as err:  # noqa: BLE001 -- reported per stream
                errors[index] = err
        if self.search_backend == "torch":
            try:
                self.advance_decoders(decoders, scores)
            except Exception as err:  # noqa: BLE001 -- the batched search failed: all of it
                for index in ready:
                    errors[index] = err
        else:
            for index, decoder, chunk in zip(ready, decoders, scores, strict=True):
                try:
                    decoder.advance(chunk)
                except Exception as err:  # noqa: BLE001 -- reported per stream
                    errors[index] = err
        return StreamBatch(errors, int(feats.shape[0]))

    # ------------------------------------------------------------------ shared helpers
    def group_posteriors(self, log_likes: np.ndarray) -> np.ndarray:
        return group_posteriors(
            log_likes, self.pdf_to_group, acoustic_scale=self.decoder_config.acoustic_scale
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

    def stream(self):
        """A new :class:`~asr.recognizer.stream.Stream` over this recognizer (cheap; one per
        utterance/client)."""
        from asr.recognizer.stream import Stream

        return Stream(self)
