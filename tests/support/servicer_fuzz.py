"""The servicer fuzz targets: bytes parsed as Recognize/StreamingRecognize requests, handed
to :class:`server.servicer.SpeechServicer` as gRPC would after deserializing them.

A stub scheduler stands in for the batching scheduler (it checks the samples it
gets and recognizes nothing), a stub context turns ``context.abort`` into
:class:`Aborted` (the gRPC status path: its label is ``status:<CODE>``).
Seeds are valid messages: a config, LINEAR16 audio, a WAV clip, and configs
with an edge value in each field the servicer checks.

>>> recognize, streaming = servicer_seeds(audio_seed)  # doctest: +SKIP
>>> ServicerDriver("streaming", streaming[0])(streaming[1], scratch_dir)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.support.fuzz_inputs import FuzzCheckError, check, wav_bytes

__all__ = ["Aborted", "ServicerDriver", "servicer_seeds"]


class Aborted(Exception):
    """``context.abort`` was called: the request got a gRPC status (the documented path)."""

    def __init__(self, code, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.label = f"status:{code.name}"


class _Context:
    async def abort(self, code, details: str) -> None:
        raise Aborted(code, details)


@dataclass(frozen=True)
class _Result:
    text: str = ""
    words: tuple = ()
    confidence: float = 0.0


class _StubScheduler:
    """Stands in for the BatchScheduler: checks the samples it gets, recognizes nothing."""

    def open(self, recognizer, *, sampling_rate, interim_results=False, single_utterance=False):
        from server.scheduler import StreamSlot

        check(sampling_rate > 0, f"stream opened at {sampling_rate} Hz")
        return StreamSlot(
            recognizer=recognizer,
            stream=None,
            sampling_rate=int(sampling_rate),
            interim_results=bool(interim_results),
            single_utterance=bool(single_utterance),
            slot_id=1,
        )

    def push(self, slot, samples: np.ndarray) -> None:
        _check_samples(samples)
        slot.num_samples_received += int(samples.size)

    def finish(self, slot) -> None:
        from server.scheduler import StreamEvent

        slot.events.put_nowait(StreamEvent("done"))

    def close(self, slot) -> None:
        slot.closed = True

    async def transcribe(self, recognizer, samples: np.ndarray, *, sampling_rate: int) -> _Result:
        _check_samples(samples)
        check(sampling_rate > 0, f"transcribe at {sampling_rate} Hz")
        return _Result()


def _check_samples(samples: np.ndarray) -> None:
    check(samples.dtype == np.float32 and samples.ndim == 1, "bad samples array")
    check(bool(np.all(np.abs(samples) <= 1.0)), "samples outside [-1, 1]")


class ServicerDriver:
    """Parses bytes as a RecognizeRequest (``kind="recognize"``) or a StreamingRecognizeRequest
    (``kind="streaming"``) and hands it to the servicer, as gRPC would after deserializing.

    A streaming message is sent both as the first request of a stream and after a valid
    config; the label is the outcome where the message is in its proper place (a config
    first, audio second).
    """

    def __init__(self, kind: str, config_bytes: bytes) -> None:
        from server.servicer import SpeechServicer

        self.kind = kind
        self.servicer = SpeechServicer({"default": object()}, _StubScheduler())
        self.config_bytes = config_bytes
        self.loop = asyncio.new_event_loop()

    def __call__(self, data: bytes, scratch_dir: Path) -> None:
        from server.generated import cloud_speech_pb2 as pb

        if self.kind == "recognize":
            self._run(self._recognize(pb.RecognizeRequest.FromString(data)))
            return
        request = pb.StreamingRecognizeRequest.FromString(data)
        config = pb.StreamingRecognizeRequest.FromString(self.config_bytes)
        outcomes = []
        for requests in ([request], [config, request]):
            try:
                self._run(self._stream(requests))
                outcomes.append(None)
            except Aborted as err:
                outcomes.append(err)
        proper = outcomes[0 if request.WhichOneof("streaming_request") == "streaming_config" else 1]
        if proper is not None:
            raise proper

    def _run(self, call) -> None:
        try:
            self.loop.run_until_complete(asyncio.wait_for(call, timeout=10.0))
        except TimeoutError:
            raise FuzzCheckError("the servicer did not answer within 10 s") from None

    async def _recognize(self, request) -> None:
        response = await self.servicer.Recognize(request, _Context())
        check(len(response.results) == 0, "the stub recognized something")

    async def _stream(self, requests) -> None:
        async def requests_iter():
            for request in requests:
                yield request

        async for _ in self.servicer.StreamingRecognize(requests_iter(), _Context()):
            raise FuzzCheckError("the stub scheduler sent no results, yet a response came")
        check(self.servicer.num_streams == 0, "stream count not released")


def servicer_seeds(audio_seed: bytes) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """(RecognizeRequest seeds, StreamingRecognizeRequest seeds; the first is a valid config)."""
    import soundfile as sf

    from server.generated import cloud_speech_pb2 as pb

    samples, rate = sf.read(io.BytesIO(audio_seed), dtype="int16")
    pcm = samples[: rate // 10].astype("<i2").tobytes()
    wav = wav_bytes(samples[:800], rate)
    enc = pb.RecognitionConfig.AudioEncoding
    config = pb.RecognitionConfig(
        encoding=enc.LINEAR16,
        sample_rate_hertz=rate,
        language_code="en-US",
        max_alternatives=1,
        enable_word_time_offsets=True,
        enable_word_confidence=True,
        model="default",
    )
    wav_config = pb.RecognitionConfig(encoding=enc.ENCODING_UNSPECIFIED, language_code="en-US")
    # Google's speech_contexts (6), which we do not declare: an unknown field.
    with_unknown = pb.RecognitionConfig.FromString(
        config.SerializeToString() + b"\x32\x03\x0a\x01a"
    )
    configs = [config, with_unknown]
    # Valid configs with edge values in each field the servicer checks.
    edges = [
        ("sample_rate_hertz", v) for v in (0, -1, 1, 7999, 8000, 48000, 48001, 2**31 - 1, -(2**31))
    ]
    edges += [("encoding", v) for v in (0, 2, 3, 9, 99, -5)]
    edges += [("audio_channel_count", v) for v in (0, 2, -1, 2**31 - 1)]
    edges += [("max_alternatives", v) for v in (-1, 0, 30, 31, 2**31 - 1)]
    edges += [("model", v) for v in ("", "nope", "default\0", "\u00e9" * 300)]
    edges += [
        ("enable_automatic_punctuation", True),
        ("enable_separate_recognition_per_channel", True),
        ("language_code", "x" * 10000),
    ]
    for name, value in edges:
        edged = pb.RecognitionConfig()
        edged.CopyFrom(config)
        setattr(edged, name, value)
        configs.append(edged)
    configs[-1].alternative_language_codes.append("fr-FR")
    recognize = [
        pb.RecognizeRequest(config=wav_config, audio=pb.RecognitionAudio(content=wav)),
        pb.RecognizeRequest(config=config, audio=pb.RecognitionAudio(uri="/etc/passwd")),
    ]
    streaming = [pb.StreamingRecognizeRequest(audio_content=pcm)]
    for index, edged in enumerate(configs):
        content = (pcm, wav, pcm[:-1])[index % 3]
        recognize.append(
            pb.RecognizeRequest(config=edged, audio=pb.RecognitionAudio(content=content))
        )
        streaming.append(
            pb.StreamingRecognizeRequest(
                streaming_config=pb.StreamingRecognitionConfig(
                    config=edged,
                    interim_results=index % 2 == 0,
                    single_utterance=index % 3 == 0,
                    enable_voice_activity_events=index % 7 == 6,
                )
            )
        )
    # voice_activity_timeout (6) of StreamingRecognitionConfig: an unknown field.
    streaming.append(
        pb.StreamingRecognizeRequest.FromString(
            streaming[1].SerializeToString()[:0] + b"\x0a\x04\x32\x02\x08\x01"
        )
    )
    streaming.insert(0, streaming.pop(1))  # the valid config first
    return (
        tuple(m.SerializeToString() for m in recognize),
        tuple(m.SerializeToString() for m in streaming),
    )
