"""Fakes for the server tests and benchmarks: a tiny energy-based recognizer with the
``asr.recognizer`` Recognizer/Stream interface, synthetic audio, and an
in-process server running on its own event-loop thread.

The fake "recognizes" every tone burst of >= 50 ms as the word ``"yes"`` with
the burst's start/end as word times (10 ms frames, threshold on the frame's
mean absolute amplitude), so its transcripts and endpoints are known exactly.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import numpy as np

from asr.audio import resample

RATE = 16000
FRAME = 160  # 10 ms
ENDPOINT_FRAMES = 50  # 0.5 s of silence after speech


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    confidence: float


@dataclass(frozen=True)
class Result:
    text: str
    words: tuple
    confidence: float
    duration_s: float
    rtf: float | None = None


class FakeAcousticModel:
    family = "gmm"
    num_pdfs = 2

    def __init__(self) -> None:
        self.calls: list[int] = []  # number of frames per call

    def log_likelihoods(self, feats: np.ndarray) -> np.ndarray:
        self.calls.append(int(feats.shape[0]))
        return np.concatenate([feats, -feats], axis=1).astype(np.float32)


class FakeStream:
    def __init__(self, model: FakeAcousticModel) -> None:
        self.model = model
        self._buffer = np.zeros(0, np.float32)
        self._offset_frames = 0  # frames before the current utterance
        self._speech: list[bool] = []  # frames of the current utterance

    def accept_samples(self, samples, *, sampling_rate=None):
        if sampling_rate and sampling_rate != RATE:
            samples = resample(samples, orig_rate=sampling_rate, new_rate=RATE)
        self._buffer = np.concatenate([self._buffer, samples.astype(np.float32)])
        num = self._buffer.size // FRAME
        frames = self._buffer[: num * FRAME].reshape(num, FRAME)
        self._buffer = self._buffer[num * FRAME :]
        return (np.abs(frames).mean(axis=1, keepdims=True) > 0.05).astype(np.float32) * 2 - 1

    def advance(self, log_likes) -> None:
        self._speech.extend(bool(v) for v in (np.asarray(log_likes)[:, 0] > 0))

    def accept_waveform(self, samples, *, sampling_rate=None) -> None:
        feats = self.accept_samples(samples, sampling_rate=sampling_rate)
        self.advance(self.model.log_likelihoods(feats))

    def _result(self) -> Result:
        words, start = [], None
        for i, speech in enumerate([*self._speech, False]):
            if speech and start is None:
                start = i
            elif not speech and start is not None:
                if i - start >= 5:
                    t0 = (self._offset_frames + start) / 100
                    t1 = (self._offset_frames + i) / 100
                    words.append(Word("yes", t0, t1, 0.9))
                start = None
        text = " ".join(w.word for w in words)
        return Result(text, tuple(words), 0.9 if words else 0.0, len(self._speech) / 100)

    def partial(self) -> Result:
        return self._result()

    def is_endpoint(self) -> bool:
        tail = self._speech[-ENDPOINT_FRAMES:]
        return len(tail) == ENDPOINT_FRAMES and not any(tail) and bool(self._result().words)

    def finalize(self) -> Result:
        return self._result()

    def reset(self) -> None:
        self._offset_frames += len(self._speech)
        self._speech = []


class FakeRecognizer:
    sampling_rate = RATE
    family = "gmm"

    def __init__(self) -> None:
        self.acoustic_model = FakeAcousticModel()

    def stream(self) -> FakeStream:
        return FakeStream(self.acoustic_model)

    def decode_streams(self, streams, chunks, *, sampling_rates=None):
        """As ``Recognizer.decode_streams``: one model call for all streams' new frames."""
        from asr.recognizer import StreamBatch

        rates = sampling_rates or [None] * len(streams)
        errors, frames = [None] * len(streams), {}
        for i, (stream, chunk, rate) in enumerate(zip(streams, chunks, rates, strict=True)):
            try:
                feats = stream.accept_samples(chunk, sampling_rate=rate)
                if len(feats):
                    frames[i] = feats
            except Exception as err:  # noqa: BLE001
                errors[i] = err
        if not frames:
            return StreamBatch(errors)
        feats = np.concatenate(list(frames.values()))
        log_likes = self.acoustic_model.log_likelihoods(feats)
        offsets = np.cumsum([0, *(len(f) for f in frames.values())])
        for i, lo, hi in zip(frames, offsets[:-1], offsets[1:], strict=True):
            streams[i].advance(log_likes[lo:hi])
        return StreamBatch(errors, int(feats.shape[0]))

    def transcribe(self, samples, *, sampling_rate=None) -> Result:
        stream = self.stream()
        stream.accept_waveform(np.asarray(samples, np.float32), sampling_rate=sampling_rate)
        return stream.finalize()


def bursts(spans_s, total_s: float, rate: int = RATE) -> np.ndarray:
    """Silence of ``total_s`` with 440 Hz tone bursts (amplitude 0.3) over ``spans_s``."""
    samples = np.zeros(int(total_s * rate), np.float32)
    t = np.arange(samples.size) / rate
    for lo, hi in spans_s:
        mask = (t >= lo) & (t < hi)
        samples[mask] = 0.3 * np.sin(2 * np.pi * 440 * t[mask])
    return samples


def to_linear16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1 - 1 / 32768) * 32768).astype("<i2").tobytes()


class ServerThread:
    """A server from :func:`server.main.start_server` on an event loop in a thread."""

    def __init__(self, recognizers, config) -> None:
        from server.main import start_server

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.running = self.call(start_server(recognizers, config))
        self.address = f"127.0.0.1:{self.running.port}"

    def call(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, grace_s: float = 1.0) -> None:
        self.call(self.running.stop(grace_s))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
