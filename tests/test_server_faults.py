"""Server faults, abuse and a short soak (CI-sized samples of the benchmarks), and the fixes.

* ``benchmarks/server_faults.py`` on a small plan (2 streams of each of its 22 malformed
  kinds, vanishing and SIGKILLed clients, slow and raw-TCP clients, a 4x burst) and
  ``benchmarks/server_soak.py`` (200 sequential + 50 concurrent streams), both against a
  server *subprocess* (so that its fds and threads can be read from /proc) serving the
  fake energy-based recognizer of ``tests/support/server_fakes.py`` on real yesno audio: every status
  as documented, no stream, fd or thread left behind, health still SERVING. Latency and RSS
  are reported by the benchmarks, never asserted.
* In-process (exact): undecodable requests get INVALID_ARGUMENT (they got UNKNOWN, or hung
  the stream for ever when they followed the config); idle clients hit the wall-clock
  limit; a failing scheduler tick or an unexpected servicer fault ends the stream with
  INTERNAL, frees its slot, and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import dataclasses
import queue
import sys
import time
from pathlib import Path

import grpc
import pytest

from server.generated import cloud_speech_pb2 as pb
from server.main import ServerConfig
from tests.support.server_fakes import FakeRecognizer, ServerThread, bursts, to_linear16

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import server_faults  # noqa: E402
import server_soak  # noqa: E402
from server_load import ServerProcess, corpus_wavs  # noqa: E402

STREAM = "/google.cloud.speech.v1.Speech/StreamingRecognize"
RECOGNIZE = "/google.cloud.speech.v1.Speech/Recognize"

FAKE_SERVER = r"""
import asyncio, logging, signal, sys
sys.path.insert(0, sys.argv[1])
from tests.support.server_fakes import FakeRecognizer
from server.main import ServerConfig, serve

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
config = ServerConfig(
    port=0, max_streams=int(sys.argv[2]), max_stream_duration_s=float(sys.argv[3]),
    max_message_bytes=int(sys.argv[4]), stats_interval_s=0.2, grace_s=1.0,
)

async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    def started(running):
        print(f"asr serve: listening on {running.address}", file=sys.stderr, flush=True)
    await serve({"default": FakeRecognizer()}, config, stop_event=stop, on_started=started)

asyncio.run(main())
"""


def fake_server(*, max_streams: int, max_stream_s: float, max_message_bytes: int):
    command = [sys.executable, "-c", FAKE_SERVER, str(REPO), str(max_streams),
               str(max_stream_s), str(max_message_bytes)]  # fmt: skip
    return ServerProcess(command, start_timeout_s=120)


@pytest.fixture(scope="module")
def clips(yesno_dir):
    return server_faults.load_clips(corpus_wavs(Path(yesno_dir), 4), clip_s=1.0, num=4)


def test_faults_sample(clips):
    plan = server_faults.FaultPlan(
        max_streams=6, max_stream_s=2.0, max_message_bytes=64 * 1024, malformed=46,
        malformed_concurrency=2, realtime_silence=2, realtime_concurrency=2,
        vanish_cancel=3, vanish_close=2, vanish_deadline=2, vanish_kill=2,
        vanish_concurrency=3, slow_clients=1, slow_raw=2, slow_s=3.0, probe_concurrency=1,
        probe_streams=2, call_timeout_s=30.0,
    )  # fmt: skip
    server = fake_server(max_streams=6, max_stream_s=2.0, max_message_bytes=64 * 1024)
    try:
        out = asyncio.run(server_faults.run_faults(server.address, clips, plan, server))
    finally:
        server.stop()
    malformed = out["malformed"]
    assert malformed["wrong"] == 0, malformed["wrong_examples"]
    assert malformed["total"] == 46 and len(malformed["by_kind"]) == 24
    assert all(row["count"] >= 1 for row in malformed["by_kind"].values())
    assert out["vanish"]["sigkilled_clients"] == 2
    assert out["vanish"]["after"]["idle"], out["vanish"]
    assert out["slow"]["codes"] == ["OK"]
    assert out["burst"] == {"connections": 24, "ok": 6, "resource_exhausted": 18, "other": []}
    res = out["resources"]
    assert res["fds_end"] <= res["fds_baseline"] and res["threads_end"] <= res["threads_baseline"]
    assert out["probe"]["errors"] == 0 and out["probe"]["transcript_mismatches"] == 0
    assert out["health_end"] == "SERVING" and out["server_alive"]
    assert out["failures"] == [] and out["passed"]


def test_short_soak(yesno_dir):
    plan = server_soak.SoakPlan(
        sequential=200, concurrent=50, concurrency=50, channels=4, warmup=50, sample_every=50
    )
    streams = server_soak.short_streams(corpus_wavs(Path(yesno_dir), 8), num=16)
    server = fake_server(max_streams=64, max_stream_s=30.0, max_message_bytes=1 << 20)
    try:
        soak = server_soak.Soak(streams, plan, server)
        timing = asyncio.run(soak.run(server.address))
        report = soak.report()
    finally:
        server.stop()
    assert timing["idle_end"]
    assert report["streams_done"] == 250
    assert report["errors"] == 0, report["error_messages"]
    assert report["transcript_mismatches"] == 0
    assert report["fd_growth"] <= 0 and report["thread_growth"] <= 0, report
    assert report["fds_max"] > report["fds_warmup"]  # the concurrent connections were seen
    assert not server.faults


# ---- the fixes, in-process


@pytest.fixture(scope="module")
def server():
    srv = ServerThread({"default": FakeRecognizer()}, ServerConfig(port=0, max_streams=4))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.address) as chan:
        yield chan


def config_bytes(rate=16000) -> bytes:
    return server_faults.config_request(rate)


def idle(server) -> None:
    """Wait until no stream is open: the status reaches the client a moment before the
    servicer's cleanup has run."""
    deadline = time.monotonic() + 10
    while server.running.servicer.num_streams or server.running.scheduler.num_active:
        assert time.monotonic() < deadline, "streams left open"
        time.sleep(0.01)


def status(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_undecodable_requests_are_invalid_argument(channel, server):
    stream = channel.stream_stream(STREAM)
    audio = server_faults.audio_request(to_linear16(bursts([(0.1, 0.3)], 0.5)))
    for requests in ([b"\x0f\xff\xff"], [config_bytes(), audio, b"\x0f\xff"]):
        # a deadline, so that a regression fails as DEADLINE_EXCEEDED instead of hanging
        code, details = status(lambda r=requests: list(stream(iter(r), timeout=10)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert "not a valid StreamingRecognizeRequest" in details
    code, details = status(lambda: channel.unary_unary(RECOGNIZE)(b"\x0f\xff", timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a valid RecognizeRequest" in details
    idle(server)


def test_wall_clock_limit_ends_idle_streams(server, channel):
    servicer = server.running.servicer
    limits = servicer.limits
    assert limits.stream_wall_limit_s == max(2 * limits.max_stream_duration_s,
                                             limits.max_stream_duration_s + 30)  # fmt: skip
    servicer.limits = dataclasses.replace(limits, max_stream_wall_s=0.5)
    try:
        for first in ([config_bytes()], []):  # idle after the config; no config at all
            feed = queue.Queue()
            for request in first:
                feed.put(request)
            call = channel.stream_stream(STREAM)(iter(feed.get, None), timeout=10)
            code, details = status(lambda c=call: list(c))
            feed.put(None)
            assert code == grpc.StatusCode.OUT_OF_RANGE, details
            assert "open longer than 0.5 s" in details
    finally:
        servicer.limits = limits
    idle(server)


def good_stream(channel) -> list[str]:
    samples = bursts([(0.2, 0.6)], 1.0)
    requests = [config_bytes(), server_faults.audio_request(to_linear16(samples))]
    finals = []
    for raw in channel.stream_stream(STREAM)(iter(requests), timeout=10):
        response = pb.StreamingRecognizeResponse.FromString(raw)
        finals += [r.alternatives[0].transcript for r in response.results if r.is_final]
    return finals


def test_faults_of_our_own_are_internal_and_free_the_slot(server, channel, monkeypatch):
    scheduler = server.running.scheduler
    original = scheduler._gather
    calls = []

    def failing_gather():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected scheduler fault")
        return original()

    monkeypatch.setattr(scheduler, "_gather", failing_gather)
    code, details = status(lambda: good_stream(channel))
    assert code == grpc.StatusCode.INTERNAL and "injected scheduler fault" in details
    assert good_stream(channel) == ["yes"]  # the tick loop survived
    monkeypatch.undo()

    import server.servicer as servicer_module

    def failing_response(event, config):
        raise ValueError("injected servicer fault")

    monkeypatch.setattr(servicer_module, "_response", failing_response)
    code, details = status(lambda: good_stream(channel))
    assert code == grpc.StatusCode.INTERNAL and "injected servicer fault" in details
    monkeypatch.undo()
    assert good_stream(channel) == ["yes"]
    idle(server)


def test_memory_handed_back_after_a_burst():
    from server.scheduler import BatchScheduler, SchedulerConfig, _malloc_trim

    async def trims(peak: int) -> int:
        scheduler = BatchScheduler(SchedulerConfig(trim_after_peak=3))
        scheduler.start()
        recognizer = FakeRecognizer()
        slots = [scheduler.open(recognizer, sampling_rate=16000) for _ in range(peak)]
        for slot in slots:
            assert scheduler.memory_trims == 0  # never while a stream is open
            scheduler.close(slot)
        await scheduler.stop()  # the worker runs what was submitted before it stops
        return scheduler.memory_trims

    assert asyncio.run(trims(2)) == 0  # below the peak: no trim
    assert asyncio.run(trims(3)) == (1 if _malloc_trim() is not None else 0)
