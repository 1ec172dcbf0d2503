"""The ``google.cloud.speech.v1.Speech`` servicer: messages <-> Recognizer/Stream.

It validates requests, turns LINEAR16 bytes into float32 samples, hands them
to the :class:`~server.scheduler.BatchScheduler` and turns its events into
``StreamingRecognizeResponse`` messages. No recognition happens here.

Status codes: malformed or unsupported configuration, audio before the
config, a second config, odd-length LINEAR16 and sample rates outside
``[min_sampling_rate, max_sampling_rate]`` -> ``INVALID_ARGUMENT``; streams
longer than ``max_stream_duration_s`` of audio, or open longer than
``ServicerLimits.stream_wall_limit_s`` of wall-clock time -> ``OUT_OF_RANGE``; more than
``max_streams`` concurrent streams -> ``RESOURCE_EXHAUSTED``; a shutting-down
server -> ``UNAVAILABLE``; a fault of our own -> ``INTERNAL``. Requests whose bytes
do not parse as the request message -> ``INVALID_ARGUMENT`` (they are parsed
leniently here, not by gRPC, which would answer ``UNKNOWN`` or leave the stream
hanging). Oversized messages are refused by gRPC itself (``RESOURCE_EXHAUSTED``).

>>> servicer = SpeechServicer({"default": recognizer}, scheduler)  # doctest: +SKIP
>>> add_servicer(servicer, grpc_aio_server)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from google.protobuf import unknown_fields

from asr.errors import AsrError
from server.generated import cloud_speech_pb2 as pb
from server.generated import cloud_speech_pb2_grpc as pb_grpc
from server.scheduler import BatchScheduler, StreamEvent, StreamSlot, release_stream

__all__ = ["SERVICE_NAME", "ServicerLimits", "SpeechServicer", "add_servicer"]

SERVICE_NAME = "google.cloud.speech.v1.Speech"

logger = logging.getLogger("asr.server")

# Google's field numbers we do not declare (they arrive as unknown fields).
_UNDECLARED_FIELDS: dict[str, dict[int, str]] = {
    "RecognitionConfig": {
        6: "speech_contexts",
        9: "metadata",
        19: "diarization_config",
        20: "adaptation",
        22: "enable_spoken_punctuation",
        23: "enable_spoken_emojis",
        24: "transcript_normalization",
    },
    "StreamingRecognitionConfig": {6: "voice_activity_timeout"},
}
_MAX_ALTERNATIVES = 30


@dataclass(frozen=True)
class ServicerLimits:
    """Per-request limits (documented defaults).

    ``max_streams``: concurrent StreamingRecognize calls (then RESOURCE_EXHAUSTED);
    ``max_stream_duration_s``: audio per stream and per Recognize call (then OUT_OF_RANGE);
    ``min_sampling_rate`` / ``max_sampling_rate``: client rates the server resamples;
    ``max_stream_wall_s``: wall-clock time a stream may stay open (then OUT_OF_RANGE), so
    that slow or idle clients cannot hold stream slots for ever; ``None``: the larger of
    twice ``max_stream_duration_s`` and ``max_stream_duration_s`` + 30 s (610 s by default).
    """

    max_streams: int = 64
    max_stream_duration_s: float = 305.0
    min_sampling_rate: int = 8000
    max_sampling_rate: int = 48000
    max_stream_wall_s: float | None = None

    @property
    def stream_wall_limit_s(self) -> float:
        """Wall-clock seconds a StreamingRecognize call may stay open."""
        if self.max_stream_wall_s is not None:
            return float(self.max_stream_wall_s)
        return max(2.0 * self.max_stream_duration_s, self.max_stream_duration_s + 30.0)


class _Invalid(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(message: str) -> _Invalid:
    return _Invalid(grpc.StatusCode.INVALID_ARGUMENT, message)


class _Undecodable:
    """What the lenient deserializer hands over for bytes that are not a valid request."""

    __slots__ = ("message",)

    def __init__(self, type_name: str, error: Exception, num_bytes: int) -> None:
        self.message = f"the request is not a valid {type_name} ({num_bytes} bytes): {error}"


def _lenient(message_type):
    """A request deserializer that returns :class:`_Undecodable` instead of raising."""

    def parse(data: bytes):
        try:
            return message_type.FromString(data)
        except Exception as err:  # DecodeError, or whatever the parser raises on garbage
            return _Undecodable(message_type.DESCRIPTOR.name, err, len(data))

    return parse


async def _before(deadline: float, awaitable, limit_s: float):
    """Await ``awaitable`` until the monotonic ``deadline``; then OUT_OF_RANGE."""
    try:
        return await asyncio.wait_for(awaitable, timeout=max(deadline - time.monotonic(), 0.0))
    except TimeoutError:
        raise _Invalid(
            grpc.StatusCode.OUT_OF_RANGE,
            f"the stream was open longer than {limit_s:g} s (send audio close to real time)",
        ) from None


class SpeechServicer(pb_grpc.SpeechServicer):
    """``recognizers``: model name -> Recognizer; the first one is the default."""

    def __init__(
        self,
        recognizers: Mapping[str, Any],
        scheduler: BatchScheduler,
        limits: ServicerLimits | None = None,
    ) -> None:
        if not recognizers:
            raise AsrError("the servicer needs at least one recognizer")
        self.recognizers = dict(recognizers)
        self.default_model = next(iter(self.recognizers))
        self.scheduler = scheduler
        self.limits = limits or ServicerLimits()
        self.accepting = True
        self._num_streams = 0
        self._num_streaming_calls = 0

    @property
    def num_streams(self) -> int:
        """StreamingRecognize calls in progress."""
        return self._num_streams

    @property
    def num_streaming_calls(self) -> int:
        """StreamingRecognize calls accepted since the start (finished ones included)."""
        return self._num_streaming_calls

    # ---- validation

    def _check_config(self, config: pb.RecognitionConfig, *, streaming: bool) -> Any:
        """Validate ``config``; return the recognizer it selects."""
        _reject_unknown(config, "RecognitionConfig")
        enc = pb.RecognitionConfig.AudioEncoding
        if config.encoding != enc.LINEAR16 and not (
            config.encoding == enc.ENCODING_UNSPECIFIED and not streaming
        ):
            name = enc.Name(config.encoding) if config.encoding in enc.values() else config.encoding
            raise _invalid(
                f"unsupported encoding {name}: only LINEAR16 (16-bit signed little-endian PCM) "
                "is supported" + ("" if streaming else ", or a WAV file with ENCODING_UNSPECIFIED")
            )
        rate = config.sample_rate_hertz
        if rate or config.encoding == enc.LINEAR16:
            lo, hi = self.limits.min_sampling_rate, self.limits.max_sampling_rate
            if not lo <= rate <= hi:
                raise _invalid(
                    f"sample_rate_hertz {rate} is not supported: "
                    f"the server resamples {lo}..{hi} Hz audio"
                )
        if config.audio_channel_count not in (0, 1):
            raise _invalid(
                f"audio_channel_count {config.audio_channel_count}: only mono audio is supported"
            )
        if config.enable_separate_recognition_per_channel:
            raise _invalid("enable_separate_recognition_per_channel is not supported")
        if config.alternative_language_codes:
            raise _invalid("alternative_language_codes is not supported")
        if config.enable_automatic_punctuation:
            raise _invalid("enable_automatic_punctuation is not supported")
        if not 0 <= config.max_alternatives <= _MAX_ALTERNATIVES:
            raise _invalid(
                f"max_alternatives must be in 0..{_MAX_ALTERNATIVES}, got {config.max_alternatives}"
            )
        name = config.model or self.default_model
        if name not in self.recognizers:
            raise _invalid(
                f"unknown model {_clip(config.model)}; this server has: "
                f"{', '.join(self.recognizers)}"
            )
        return self.recognizers[name]

    # ---- Recognize

    async def Recognize(self, request: pb.RecognizeRequest, context) -> pb.RecognizeResponse:
        try:
            if isinstance(request, _Undecodable):
                raise _invalid(request.message)
            if not request.HasField("config"):
                raise _invalid("RecognizeRequest.config is required")
            recognizer = self._check_config(request.config, streaming=False)
            if request.audio.WhichOneof("audio_source") == "uri":
                raise _invalid("RecognitionAudio.uri is not supported: send the audio as content")
            samples, rate = _decode_clip(request.audio.content, request.config)
            lo, hi = self.limits.min_sampling_rate, self.limits.max_sampling_rate
            if not lo <= rate <= hi:
                raise _invalid(
                    f"{rate} Hz audio is not supported: the server resamples {lo}..{hi} Hz"
                )
            duration_s = samples.size / rate
            if duration_s > self.limits.max_stream_duration_s:
                raise _Invalid(
                    grpc.StatusCode.OUT_OF_RANGE,
                    f"audio is {duration_s:.1f} s long; the limit is "
                    f"{self.limits.max_stream_duration_s:g} s",
                )
            if samples.size == 0:
                return pb.RecognizeResponse()
            result = await self.scheduler.transcribe(recognizer, samples, sampling_rate=rate)
        except _Invalid as err:
            await context.abort(err.code, _details(err.message))
        except AsrError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _details(str(err)))
        except Exception as err:  # a fault of ours: INTERNAL, logged, the server keeps serving
            logger.exception("Recognize failed")
            await context.abort(grpc.StatusCode.INTERNAL, _details(f"internal error: {err}"))
        response = pb.RecognizeResponse()
        _duration(response.total_billed_time, duration_s)
        if result.text:
            out = response.results.add()
            _fill_alternative(out.alternatives.add(), result, request.config)
            _duration(out.result_end_time, duration_s)
        return response

    # ---- StreamingRecognize

    async def StreamingRecognize(
        self, request_iterator: AsyncIterator[pb.StreamingRecognizeRequest], context
    ) -> AsyncIterator[pb.StreamingRecognizeResponse]:
        if not self.accepting:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
        if self._num_streams >= self.limits.max_streams:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the server is full ({self.limits.max_streams} concurrent streams); retry later",
            )
        self._num_streams += 1
        self._num_streaming_calls += 1
        slot: StreamSlot | None = None
        reader: asyncio.Task | None = None
        wall_s = self.limits.stream_wall_limit_s
        deadline = time.monotonic() + wall_s
        try:
            try:
                try:
                    first = await _before(deadline, anext(aiter(request_iterator)), wall_s)
                except StopAsyncIteration:
                    return
                slot, config = self._open_stream(first)
                failure: list[_Invalid] = []
                reader = asyncio.get_running_loop().create_task(
                    self._read_audio(request_iterator, slot, failure)
                )
                while True:
                    event: StreamEvent = await _before(deadline, slot.events.get(), wall_s)
                    if event.kind == "reader_failed":
                        raise failure[0]
                    if event.kind == "error":
                        code = grpc.StatusCode.INTERNAL if event.internal else None
                        raise _Invalid(code or grpc.StatusCode.INVALID_ARGUMENT, event.message)
                    if event.kind == "done":
                        return
                    response = _response(event, config)
                    if response is not None:
                        yield response
            except _Invalid as err:
                await context.abort(err.code, _details(err.message))
            except AsrError as err:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _details(str(err)))
            except Exception as err:  # a fault of ours: INTERNAL, logged, the slot is freed
                logger.exception("StreamingRecognize failed")
                await context.abort(grpc.StatusCode.INTERNAL, _details(f"internal error: {err}"))
        finally:
            self._num_streams -= 1
            await release_stream(self.scheduler, slot, reader)

    def _open_stream(self, first: pb.StreamingRecognizeRequest):
        if isinstance(first, _Undecodable):
            raise _invalid(first.message)
        kind = first.WhichOneof("streaming_request")
        if kind != "streaming_config":
            raise _invalid(
                "the first StreamingRecognizeRequest must carry streaming_config "
                f"(got {kind or 'an empty request'}); audio_content comes after it"
            )
        streaming = first.streaming_config
        _reject_unknown(streaming, "StreamingRecognitionConfig")
        if not streaming.HasField("config"):
            raise _invalid("StreamingRecognitionConfig.config is required")
        if streaming.enable_voice_activity_events:
            raise _invalid("enable_voice_activity_events is not supported")
        recognizer = self._check_config(streaming.config, streaming=True)
        slot = self.scheduler.open(
            recognizer,
            sampling_rate=streaming.config.sample_rate_hertz,
            interim_results=streaming.interim_results,
            single_utterance=streaming.single_utterance,
        )
        return slot, streaming.config

    async def _read_audio(self, request_iterator, slot: StreamSlot, failure: list) -> None:
        """Feed the audio requests to the scheduler; report bad ones to the main loop."""
        limit_s = self.limits.max_stream_duration_s
        try:
            async for request in request_iterator:
                if isinstance(request, _Undecodable):
                    raise _invalid(request.message)
                kind = request.WhichOneof("streaming_request")
                if kind == "streaming_config":
                    raise _invalid(
                        "streaming_config may only be sent once, in the first request; "
                        "later requests must carry audio_content"
                    )
                audio = request.audio_content
                if len(audio) % 2:
                    raise _invalid(
                        f"odd-length LINEAR16 audio_content ({len(audio)} bytes): "
                        "16-bit samples need an even number of bytes"
                    )
                if slot.closed:
                    continue  # single utterance over: later audio is ignored
                samples = np.frombuffer(audio, dtype="<i2").astype(np.float32) / 32768.0
                if slot.received_s + samples.size / slot.sampling_rate > limit_s:
                    raise _Invalid(
                        grpc.StatusCode.OUT_OF_RANGE,
                        f"the stream exceeded the maximum duration of {limit_s:g} s of audio",
                    )
                self.scheduler.push(slot, samples)
            self.scheduler.finish(slot)
            return
        except _Invalid as err:
            failure.append(err)
        except grpc.aio.AbortError:
            return  # the call was ended (aborted) while we were reading: nothing to report
        except Exception as err:  # the transport failed under us: end the stream, never hang
            logger.warning("reading a stream's requests failed: %r", err)
            failure.append(
                _Invalid(grpc.StatusCode.INTERNAL, f"reading the requests failed: {err}")
            )
        slot.events.put_nowait(StreamEvent("reader_failed"))


def add_servicer(servicer: SpeechServicer, server: grpc.aio.Server) -> None:
    """Register ``servicer`` on ``server`` under :data:`SERVICE_NAME`.

    As the generated ``add_SpeechServicer_to_server``, but requests are parsed by
    :func:`_lenient`, so that bytes which are no valid request get INVALID_ARGUMENT.
    """
    handlers = {
        "Recognize": grpc.unary_unary_rpc_method_handler(
            servicer.Recognize,
            request_deserializer=_lenient(pb.RecognizeRequest),
            response_serializer=pb.RecognizeResponse.SerializeToString,
        ),
        "StreamingRecognize": grpc.stream_stream_rpc_method_handler(
            servicer.StreamingRecognize,
            request_deserializer=_lenient(pb.StreamingRecognizeRequest),
            response_serializer=pb.StreamingRecognizeResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


# ---- message helpers


#: Longest status details we send: gRPC carries them in a header (16 KiB limit by default),
#: and a message that echoes request data must not outgrow it.
MAX_DETAILS_CHARS = 1024


def _details(message: str) -> str:
    if len(message) <= MAX_DETAILS_CHARS:
        return message
    return message[: MAX_DETAILS_CHARS - 30] + f"... ({len(message)} characters)"


def _clip(value: str, limit: int = 64) -> str:
    """``repr`` of a client-supplied string, at most ``limit`` characters of it."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} chars)"


def _reject_unknown(message, name: str) -> None:
    fields = unknown_fields.UnknownFieldSet(message)
    if len(fields):
        names = _UNDECLARED_FIELDS.get(name, {})
        numbers = sorted({f.field_number for f in fields})
        what = ", ".join(f"{names.get(n, 'field')} ({n})" for n in numbers[:8])
        if len(numbers) > 8:
            what += f" and {len(numbers) - 8} more"
        raise _invalid(f"{name}: unsupported field(s) {what}")


def _decode_clip(content: bytes, config: pb.RecognitionConfig) -> tuple[np.ndarray, int]:
    """LINEAR16 bytes (raw, or a WAV file) -> float32 samples and their rate."""
    if content[:4] == b"RIFF" and content[8:12] == b"WAVE":
        import soundfile as sf

        try:
            with sf.SoundFile(io.BytesIO(content)) as snd:
                if snd.channels != 1:
                    raise _invalid(f"the WAV file has {snd.channels} channels; send mono audio")
                if snd.subtype != "PCM_16":
                    raise _invalid(f"the WAV file is {snd.subtype}; send 16-bit PCM (LINEAR16)")
                rate = snd.samplerate
                data = snd.read(dtype="int16")
        except sf.LibsndfileError as err:
            raise _invalid(f"cannot read the WAV content: {err}") from None
        if config.sample_rate_hertz and config.sample_rate_hertz != rate:
            raise _invalid(
                f"sample_rate_hertz {config.sample_rate_hertz} does not match the WAV header "
                f"({rate} Hz)"
            )
        return data.astype(np.float32) / 32768.0, int(rate)
    if config.encoding != pb.RecognitionConfig.AudioEncoding.LINEAR16:
        raise _invalid("ENCODING_UNSPECIFIED needs a WAV file (RIFF header) as content")
    if len(content) % 2:
        raise _invalid(
            f"odd-length LINEAR16 content ({len(content)} bytes): "
            "16-bit samples need an even number of bytes"
        )
    return np.frombuffer(content, dtype="<i2").astype(np.float32) / 32768.0, int(
        config.sample_rate_hertz
    )


def _duration(target, seconds: float) -> None:
    nanos_total = int(round(max(seconds, 0.0) * 1e9))
    target.seconds, target.nanos = divmod(nanos_total, 1_000_000_000)


def _fill_alternative(alt, result, config: pb.RecognitionConfig) -> None:
    alt.transcript = result.text
    alt.confidence = float(result.confidence)
    if config.enable_word_time_offsets or config.enable_word_confidence:
        for word in result.words:
            info = alt.words.add()
            info.word = word.word
            if config.enable_word_time_offsets:
                _duration(info.start_time, word.start)
                _duration(info.end_time, word.end)
            if config.enable_word_confidence:
                info.confidence = float(word.confidence)


def _response(event: StreamEvent, config: pb.RecognitionConfig):
    response = pb.StreamingRecognizeResponse()
    if event.kind == "end_of_single_utterance":
        response.speech_event_type = pb.StreamingRecognizeResponse.END_OF_SINGLE_UTTERANCE
        _duration(response.speech_event_time, event.end_time_s)
        return response
    if event.kind not in ("interim", "final"):
        return None
    out = response.results.add()
    out.is_final = event.kind == "final"
    _duration(out.result_end_time, event.end_time_s)
    alt = out.alternatives.add()
    if out.is_final:
        _fill_alternative(alt, event.result, config)
    else:
        alt.transcript = event.result.text
        out.stability = event.stability
    return response
