"""The Speech servicer over a real gRPC channel (127.0.0.1, ephemeral port) with a
fake energy-based recognizer whose answers are known exactly (tone bursts -> "yes").

Covers every error status of the issue, interim results, endpointing of a
two-utterance stream, single_utterance, Recognize, limits, a vanishing client,
health, reflection and graceful shutdown.
"""

from __future__ import annotations

import queue
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from server.generated import cloud_speech_pb2 as pb
from server.generated import cloud_speech_pb2_grpc as pb_grpc
from server.main import ServerConfig
from tests.support.server_fakes import RATE, FakeRecognizer, ServerThread, bursts, to_linear16

LINEAR16 = pb.RecognitionConfig.AudioEncoding.LINEAR16
TWO_BURSTS = [(0.3, 0.8), (2.0, 2.6)]


@pytest.fixture(scope="module")
def server():
    srv = ServerThread(
        {"default": FakeRecognizer(), "other": FakeRecognizer()}, ServerConfig(port=0)
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def limited():
    config = ServerConfig(
        port=0, max_streams=2, max_stream_duration_s=2.0, max_message_bytes=64 * 1024
    )
    srv = ServerThread({"default": FakeRecognizer()}, config)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.SpeechStub(channel)


def streaming_config(rate=RATE, *, interim=False, single=False, **kwargs):
    config = pb.RecognitionConfig(
        encoding=kwargs.pop("encoding", LINEAR16),
        sample_rate_hertz=rate,
        language_code="en-US",
        enable_word_time_offsets=True,
        enable_word_confidence=True,
        **kwargs,
    )
    return pb.StreamingRecognizeRequest(
        streaming_config=pb.StreamingRecognitionConfig(
            config=config, interim_results=interim, single_utterance=single
        )
    )


def audio_requests(samples, rate=RATE, chunk_s=0.1):
    step = int(rate * chunk_s)
    data = to_linear16(samples)
    return [
        pb.StreamingRecognizeRequest(audio_content=data[2 * i : 2 * (i + step)])
        for i in range(0, samples.size, step)
    ]


def run_stream(stub, requests):
    return list(stub.StreamingRecognize(iter(requests), timeout=30))


def expect_status(stub, requests, code, text):
    with pytest.raises(grpc.RpcError) as info:
        run_stream(stub, requests)
    assert info.value.code() == code, info.value.details()
    assert text in info.value.details()
    return info.value.details()


def finals(responses):
    return [r.results[0] for r in responses if r.results and r.results[0].is_final]


def seconds(duration):
    return duration.seconds + duration.nanos / 1e9


# ---- error statuses


def test_audio_before_config(stub):
    requests = audio_requests(bursts([(0.1, 0.5)], 1.0))
    expect_status(stub, requests, grpc.StatusCode.INVALID_ARGUMENT, "must carry streaming_config")


def test_second_config(stub):
    audio = audio_requests(bursts([(0.1, 0.5)], 1.0))
    requests = [streaming_config(), *audio[:3], streaming_config(), *audio[3:]]
    expect_status(stub, requests, grpc.StatusCode.INVALID_ARGUMENT, "only be sent once")


def test_odd_length_linear16(stub):
    requests = [streaming_config(), pb.StreamingRecognizeRequest(audio_content=b"\x00" * 321)]
    expect_status(stub, requests, grpc.StatusCode.INVALID_ARGUMENT, "odd-length")


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"encoding": pb.RecognitionConfig.AudioEncoding.FLAC}, "unsupported encoding FLAC"),
        ({"encoding": pb.RecognitionConfig.AudioEncoding.ENCODING_UNSPECIFIED}, "LINEAR16"),
        ({"rate": 4000}, "sample_rate_hertz 4000"),
        ({"rate": 96000}, "sample_rate_hertz 96000"),
        ({"rate": 0}, "sample_rate_hertz 0"),
        ({"audio_channel_count": 2}, "mono"),
        ({"model": "nope"}, "unknown model 'nope'; this server has: default, other"),
        ({"max_alternatives": 31}, "max_alternatives"),
        ({"enable_automatic_punctuation": True}, "enable_automatic_punctuation"),
    ],
)
def test_unsupported_config(stub, kwargs, text):
    kwargs = dict(kwargs)
    rate = kwargs.pop("rate", RATE)
    requests = [streaming_config(rate, **kwargs), *audio_requests(bursts([], 0.3))]
    expect_status(stub, requests, grpc.StatusCode.INVALID_ARGUMENT, text)


def test_malformed_config(stub):
    missing = pb.StreamingRecognizeRequest(streaming_config=pb.StreamingRecognitionConfig())
    expect_status(stub, [missing], grpc.StatusCode.INVALID_ARGUMENT, "config is required")
    # Google's speech_contexts (field 6), which we do not declare, arrives as an unknown field
    first = streaming_config()
    first.streaming_config.config.MergeFromString(b"\x32\x00")
    expect_status(stub, [first], grpc.StatusCode.INVALID_ARGUMENT, "speech_contexts (6)")


def test_over_long_stream(limited):
    with grpc.insecure_channel(limited.address) as channel:
        stub = pb_grpc.SpeechStub(channel)
        requests = [streaming_config(), *audio_requests(bursts([(0.2, 0.6)], 3.0))]
        expect_status(stub, requests, grpc.StatusCode.OUT_OF_RANGE, "maximum duration of 2 s")


def test_oversized_message(limited):
    with grpc.insecure_channel(limited.address) as channel:
        stub = pb_grpc.SpeechStub(channel)
        big = pb.StreamingRecognizeRequest(audio_content=b"\x00" * (100 * 1024))
        with pytest.raises(grpc.RpcError) as info:
            run_stream(stub, [streaming_config(), big])
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # the server is still up and serving
        assert run_stream(stub, [streaming_config(), *audio_requests(bursts([], 0.5))]) == []


def wait_for(predicate, what, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_full_server_and_vanishing_client(limited):
    running = limited.running
    with grpc.insecure_channel(limited.address) as channel:
        stub = pb_grpc.SpeechStub(channel)
        feeds = [queue.Queue() for _ in range(2)]
        calls = []
        for feed in feeds:
            feed.put(streaming_config())
            for request in audio_requests(bursts([(0.1, 0.4)], 0.5)):
                feed.put(request)
            calls.append(stub.StreamingRecognize(iter(feed.get, None), timeout=30))
        wait_for(lambda: running.servicer.num_streams == 2, "two open streams")
        wait_for(lambda: running.scheduler.num_active == 2, "two scheduled streams")
        requests = [streaming_config(), *audio_requests(bursts([], 0.2))]
        expect_status(stub, requests, grpc.StatusCode.RESOURCE_EXHAUSTED, "server is full")
        # the first client vanishes: its stream and scheduler slot are freed
        calls[0].cancel()
        wait_for(lambda: running.servicer.num_streams == 1, "the cancelled stream to close")
        wait_for(lambda: running.scheduler.num_active == 1, "the cancelled slot to go")
        # the second one half-closes and gets its result
        feeds[1].put(None)
        assert [r.alternatives[0].transcript for r in finals(list(calls[1]))] == ["yes"]
        wait_for(lambda: running.scheduler.num_active == 0, "all slots to go")
        assert run_stream(stub, [streaming_config(), *audio_requests(bursts([], 0.2))]) == []


# ---- results


def test_interim_and_two_utterance_endpointing(stub, server):
    samples = bursts(TWO_BURSTS, 3.5)
    responses = run_stream(stub, [streaming_config(interim=True), *audio_requests(samples)])
    results = [r.results[0] for r in responses]
    final_results = finals(responses)
    # endpointing: two utterances, two finals, word times of each burst (absolute stream time)
    assert [r.alternatives[0].transcript for r in final_results] == ["yes", "yes"]
    for result, (lo, hi) in zip(final_results, TWO_BURSTS, strict=True):
        (word,) = result.alternatives[0].words
        assert abs(seconds(word.start_time) - lo) <= 0.011
        assert abs(seconds(word.end_time) - hi) <= 0.011
        assert word.confidence == pytest.approx(0.9)
        assert result.alternatives[0].confidence == pytest.approx(0.9)
        assert seconds(result.result_end_time) >= hi + 0.5  # after the endpoint silence
    # interim results come before each final, with stability and growing end times
    assert not results[0].is_final
    interim = [r for r in results if not r.is_final]
    assert len(interim) >= 2
    assert all(0 < r.stability <= 1 and r.alternatives[0].transcript == "yes" for r in interim)
    ends = [seconds(r.result_end_time) for r in results]
    assert ends == sorted(ends)
    # the scheduler batches: the fake model saw every frame exactly once
    assert server.running.stats()["frames_scored"] >= 350


def test_no_interim_unless_asked(stub):
    responses = run_stream(stub, [streaming_config(), *audio_requests(bursts(TWO_BURSTS, 3.5))])
    assert all(r.results[0].is_final for r in responses)
    assert len(responses) == 2


def test_single_utterance(stub):
    requests = [streaming_config(single=True), *audio_requests(bursts(TWO_BURSTS, 3.5))]
    responses = run_stream(stub, requests)
    event = pb.StreamingRecognizeResponse.END_OF_SINGLE_UTTERANCE
    assert [r.speech_event_type for r in responses] == [event, 0]
    assert [r.alternatives[0].transcript for r in finals(responses)] == ["yes"]


def test_resampled_8khz_and_model_selection(stub):
    samples = bursts(TWO_BURSTS, 3.5, rate=8000)
    requests = [streaming_config(8000, model="other"), *audio_requests(samples, rate=8000)]
    final_results = finals(run_stream(stub, requests))
    assert [r.alternatives[0].transcript for r in final_results] == ["yes", "yes"]
    starts = [seconds(r.alternatives[0].words[0].start_time) for r in final_results]
    assert starts == pytest.approx([lo for lo, _ in TWO_BURSTS], abs=0.021)


def test_last_utterance_flushed_at_half_close(stub):
    # no trailing silence: the final comes from the half-close, not from an endpoint
    responses = run_stream(stub, [streaming_config(), *audio_requests(bursts([(0.2, 0.9)], 0.9))])
    assert [r.alternatives[0].transcript for r in finals(responses)] == ["yes"]


def test_recognize_raw_and_wav(stub, tmp_path):
    import soundfile as sf

    samples = bursts(TWO_BURSTS, 3.0)
    config = pb.RecognitionConfig(
        encoding=LINEAR16, sample_rate_hertz=RATE, enable_word_time_offsets=True
    )
    response = stub.Recognize(
        pb.RecognizeRequest(config=config, audio=pb.RecognitionAudio(content=to_linear16(samples)))
    )
    (result,) = response.results
    assert result.alternatives[0].transcript == "yes yes"
    assert [seconds(w.start_time) for w in result.alternatives[0].words] == pytest.approx(
        [0.3, 2.0], abs=0.011
    )
    assert seconds(response.total_billed_time) == pytest.approx(3.0)
    path = tmp_path / "a.wav"
    sf.write(path, np.frombuffer(to_linear16(samples), "<i2"), RATE, subtype="PCM_16")
    wav_config = pb.RecognitionConfig()  # ENCODING_UNSPECIFIED: the header says it all
    response = stub.Recognize(
        pb.RecognizeRequest(config=wav_config, audio=pb.RecognitionAudio(content=path.read_bytes()))
    )
    assert response.results[0].alternatives[0].transcript == "yes yes"
    for request, text in [
        (pb.RecognizeRequest(config=config, audio=pb.RecognitionAudio(uri="gs://x/y")), "uri"),
        (pb.RecognizeRequest(audio=pb.RecognitionAudio(content=b"\0\0")), "config is required"),
        (
            pb.RecognizeRequest(config=config, audio=pb.RecognitionAudio(content=b"\0\0\0")),
            "odd-length",
        ),
    ]:
        with pytest.raises(grpc.RpcError) as info:
            stub.Recognize(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert text in info.value.details()


# ---- health, reflection, stats, shutdown


def test_health_and_reflection(server):
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "google.cloud.speech.v1.Speech"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="google.cloud.speech.v1.Speech"
            ),
        ]
        listed, files = list(reflect.ServerReflectionInfo(iter(requests)))
        names = {s.name for s in listed.list_services_response.service}
        assert {"google.cloud.speech.v1.Speech", "grpc.health.v1.Health"} <= names
        from google.protobuf import descriptor_pb2

        proto = descriptor_pb2.FileDescriptorProto.FromString(
            files.file_descriptor_response.file_descriptor_proto[0]
        )
        assert proto.name == "google/cloud/speech/v1/cloud_speech.proto"
        assert [m.name for m in proto.service[0].method] == ["Recognize", "StreamingRecognize"]


def test_stats(server, stub):
    run_stream(stub, [streaming_config(interim=True), *audio_requests(bursts(TWO_BURSTS, 3.5))])
    stats = server.running.stats()
    assert stats["streams_opened"] >= 1
    assert stats["active_streams"] == 0
    assert stats["audio_s"] >= 3.5 and stats["rtf"] is not None
    assert stats["interim_latency_ms"]["count"] >= 1
    assert stats["final_latency_ms"]["count"] >= 0
    assert (
        sum(stats["interim_latency_ms"]["buckets"].values()) == stats["interim_latency_ms"]["count"]
    )


def test_streaming_calls_counts_every_stream_not_only_open_ones():
    """stats()["streaming_calls"]: StreamingRecognize calls since the start (it used to be the
    calls in progress, so 0 after six finished streams); the open ones are reported apart."""
    srv = ServerThread({"default": FakeRecognizer()}, ServerConfig(port=0))
    try:
        assert srv.running.stats()["streaming_calls"] == 0
        with grpc.insecure_channel(srv.address) as channel:
            stub = pb_grpc.SpeechStub(channel)
            for _ in range(6):
                run_stream(stub, [streaming_config(), *audio_requests(bursts([(0.1, 0.4)], 0.6))])
        stats = srv.running.stats()
        assert stats["streaming_calls"] == 6 and stats["streaming_calls_active"] == 0
    finally:
        srv.stop()


def test_graceful_shutdown_finishes_streams_in_flight():
    srv = ServerThread({"default": FakeRecognizer()}, ServerConfig(port=0))
    channel = grpc.insecure_channel(srv.address)
    stub = pb_grpc.SpeechStub(channel)
    feed = queue.Queue()
    feed.put(streaming_config())
    for request in audio_requests(bursts([(0.2, 0.9)], 1.0)):
        feed.put(request)
    call = stub.StreamingRecognize(iter(feed.get, None), timeout=30)
    wait_for(lambda: srv.running.servicer.num_streams == 1, "the stream to open")
    stopping = srv.submit(srv.running.stop(20.0, drain_s=2.0))
    wait_for(lambda: not srv.running.servicer.accepting, "draining")
    # while draining: NOT_SERVING, and new streams are refused
    health = health_pb2_grpc.HealthStub(channel)
    status = health.Check(health_pb2.HealthCheckRequest(service="")).status
    assert status == health_pb2.HealthCheckResponse.NOT_SERVING
    expect_status(stub, [streaming_config()], grpc.StatusCode.UNAVAILABLE, "shutting down")
    # the stream in flight still completes
    feed.put(None)
    assert [r.alternatives[0].transcript for r in finals(list(call))] == ["yes"]
    stopping.result(30)
    channel.close()
    srv.loop.call_soon_threadsafe(srv.loop.stop)
    srv.thread.join(10)


def test_finishing_streams_get_their_final_before_the_rest_of_the_batch():
    """A stream whose client has half-closed is computed first in its batch and its final
    goes out before the other streams' (here: deliberately slow) work is done."""
    import asyncio
    import threading

    from server.scheduler import BatchScheduler, SchedulerConfig
    from tests.support.server_fakes import FakeStream

    slow_done = threading.Event()

    class SlowStream(FakeStream):
        def accept_samples(self, samples, *, sampling_rate=None):
            time.sleep(0.3)
            slow_done.set()
            return super().accept_samples(samples, sampling_rate=sampling_rate)

    class SlowRecognizer(FakeRecognizer):
        def stream(self):
            return SlowStream(self.acoustic_model)

    async def scenario() -> tuple[bool, str]:
        scheduler = BatchScheduler(SchedulerConfig(tick_s=0.0))
        scheduler.start()
        quick = scheduler.open(FakeRecognizer(), sampling_rate=RATE)
        slow = scheduler.open(SlowRecognizer(), sampling_rate=RATE)
        scheduler.push(quick, bursts([(0.05, 0.35)], 0.45))  # within one tick (max_chunk_s)
        scheduler.push(slow, bursts([(0.1, 0.5)], 0.3))
        scheduler.finish(quick)  # one batch: quick finishing, slow still streaming
        kinds = []
        while (event := await quick.events.get()).kind != "done":
            kinds.append(event.kind)
        before_slow_work = not slow_done.is_set()
        await scheduler.stop()
        return before_slow_work, " ".join(kinds)

    before_slow_work, kinds = asyncio.run(scenario())
    assert kinds == "final" and before_slow_work
