"""Faults and abuse against the gRPC server, with a probe of well-formed streams throughout.

Starts ``asr serve --model BUNDLE`` on an ephemeral 127.0.0.1 port with small limits
(``--max-streams 8 --max-stream-s 5 --max-message-mb 0.5``, a stats line every 0.25 s),
or uses ``--server HOST:PORT`` (give its limits; /proc figures need ``--server-pid``):

a) ``--malformed`` (1,000) bad streams and calls, round-robin over 22 kinds: garbage
   bytes (a raw channel sends non-protobuf bytes), an empty first request, audio before
   the config, a second config, odd-length LINEAR16, unsupported encodings, bad rates,
   bad config fields, over-long silence (fast, and at real time), oversized messages,
   the same for unary Recognize, and well-formed oddities that must succeed (config
   fields in reverse wire order, a config merged from two fields, int16 min/max square
   waves and full-scale noise, exactly the maximum duration of silence, 8-48 kHz rates,
   no audio at all); each must get its documented status (expected vs got, per kind);
b) clients that vanish mid-stream: calls cancelled, channels closed abruptly, deadlines
   expiring, client subprocesses killed with SIGKILL (mid-stream and after half-close);
   the server's streams and scheduler slots must go back to 0;
c) slow clients sending one sample a second, and raw TCP clients sending one byte a
   second (the HTTP/2 preface, or garbage), for ``--slow-s`` seconds;
d) a burst of 4x max-streams connections at once: exactly max-streams succeed, the
   rest get RESOURCE_EXHAUSTED.

A probe of well-formed real-audio streams (2 s clips at real-time pace, 2 at a time)
measures p50/p95 final latency (call end minus the last chunk's send time) before,
during (a-c) and after, and checks each clip's transcript never changes. At the end:
no streams or slots active, the server's fd and thread counts (/proc) back to their
baseline, health SERVING, no traceback in the server log. Prints JSON; exit status 1
on any wrong status, leak, probe error or server fault (latency is reported, not judged).

    python benchmarks/server_faults.py --model exp/yesno/mono/bundle --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server_load import (  # noqa: E402
    LINEAR16,
    REPO,
    STREAM,
    Clip,
    ServerProcess,
    audio_request,
    config_request,
    corpus_wavs,
    load_clips,
    pb,
    pcm16,
    percentile,
    serve_command,
    stream_once,
    stream_requests,
)  # fmt: skip

RECOGNIZE = "/google.cloud.speech.v1.Speech/Recognize"
OK, INVALID, OUT_OF_RANGE, EXHAUSTED = (
    "OK",
    "INVALID_ARGUMENT",
    "OUT_OF_RANGE",
    "RESOURCE_EXHAUSTED",
)


@dataclass(frozen=True)
class FaultPlan:
    """How much abuse, and the server limits it is measured against."""

    max_streams: int = 8
    max_stream_s: float = 5.0
    max_message_bytes: int = 512 * 1024
    malformed: int = 1000
    malformed_concurrency: int = 3
    realtime_silence: int = 4  # of the malformed: silence streams sent at real time
    realtime_concurrency: int = 2
    vanish_concurrency: int = 3
    vanish_cancel: int = 20
    vanish_close: int = 10
    vanish_deadline: int = 6
    vanish_kill: int = 4
    slow_clients: int = 3
    slow_raw: int = 2
    slow_s: float = 8.0
    burst_factor: int = 4
    probe_concurrency: int = 2
    probe_streams: int = 10  # before and after
    call_timeout_s: float = 60.0
    seed: int = 0


# ---- requests as bytes


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: int | bytes) -> bytes:
    """One protobuf field: a varint (int payload) or length-delimited (bytes payload)."""
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


@dataclass(frozen=True)
class Case:
    kind: str
    requests: tuple[bytes, ...]
    expected: str
    unary: bool = False
    gap_s: float = 0.0  # pause between requests (real-time pacing)


def _recognize(content: bytes, **config) -> bytes:
    return pb.RecognizeRequest(
        config=pb.RecognitionConfig(**config), audio=pb.RecognitionAudio(content=content)
    ).SerializeToString()


def _extreme_pcm(rng: np.random.Generator, num_samples: int, clip: Clip) -> bytes:
    kind = int(rng.integers(6))
    if kind == 0:  # int16 min/max square wave of a random period
        half = int(rng.integers(1, 200))
        values = np.where((np.arange(num_samples) // half) % 2, 32767, -32768)
    elif kind == 1:
        values = np.where(np.arange(num_samples) % 2, 32767, -32768)
    elif kind == 2:
        values = np.full(num_samples, -32768 if rng.random() < 0.5 else 32767)
    elif kind == 3:
        values = rng.integers(-32768, 32768, num_samples)
    elif kind == 4:  # real speech driven far into clipping
        speech = np.frombuffer(clip.pcm, "<i2").astype(np.int64) * 64
        values = np.resize(np.clip(speech, -32768, 32767), num_samples)
    else:
        values = np.zeros(num_samples)
        values[rng.integers(0, num_samples, 20)] = -32768
    return values.astype("<i2").tobytes()


def malformed_cases(plan: FaultPlan, clips: list[Clip]) -> list[Case]:
    """``plan.malformed`` cases, round-robin over the kinds below (deterministic in the seed)."""
    from asr.audio import resample

    rng = np.random.default_rng(plan.seed)
    rate = clips[0].sampling_rate
    big = plan.max_message_bytes
    enc = pb.RecognitionConfig.AudioEncoding

    def clip() -> Clip:
        return clips[int(rng.integers(len(clips)))]

    def garbage(size: int) -> bytes:
        return rng.integers(0, 256, size, dtype=np.uint8).tobytes()

    def silence(seconds: float) -> bytes:
        return b"\0\0" * int(round(seconds * rate))

    def garbage_first():
        return [garbage(int(rng.integers(1, 4096)))], INVALID

    def garbage_after_audio():
        chunks = clip().chunks()[: int(rng.integers(0, 6))]
        # 0x0f: field 1 with wire type 7, which does not exist: never parses
        return [config_request(rate), *map(audio_request, chunks), b"\x0f" + garbage(50)], INVALID

    def empty_first_request():
        return [b"", *stream_requests(rate, clip().pcm)], INVALID

    def audio_before_config():
        chunks = list(map(audio_request, clip().chunks()))
        if rng.random() < 0.5:  # one message, config then audio: the oneof's last field wins
            return [config_request(rate) + chunks[0], *chunks[1:]], INVALID
        return [chunks[0], config_request(rate), *chunks[1:]], INVALID

    def second_config():
        requests = stream_requests(rate, clip().pcm)
        requests.insert(int(rng.integers(1, len(requests) + 1)), config_request(rate))
        return requests, INVALID

    def odd_length_audio():
        requests = stream_requests(rate, clip().pcm)
        odd = audio_request(silence(0.05) + b"\0")
        requests.insert(int(rng.integers(1, len(requests) + 1)), odd)
        return requests, INVALID

    def unsupported_encoding():
        names = [n for n in enc.keys() if n != "LINEAR16"]  # noqa: SIM118 (proto enum)
        code = 99 if rng.random() < 0.1 else enc.Value(names[int(rng.integers(len(names)))])
        return stream_requests(rate, clip().pcm, encoding=code), INVALID

    def bad_sample_rate():
        bad = [0, 1, 4000, 7999, 48001, 96000, 192000, -8000, 2**31 - 1, -(2**31)]
        return stream_requests(int(bad[int(rng.integers(len(bad)))]), clip().pcm), INVALID

    def bad_config_field():
        pcm, k = clip().pcm, int(rng.integers(7))
        if k == 6:  # Google's speech_contexts (6), which we do not declare: an unknown field
            first = config_request(rate) + _field(1, _field(1, _field(6, b"")))
            return [first, *map(audio_request, Clip(pcm, rate).chunks())], INVALID
        if k == 5:
            empty = pb.StreamingRecognizeRequest(streaming_config=pb.StreamingRecognitionConfig())
            return [empty.SerializeToString()], INVALID
        fields = [
            {"audio_channel_count": 2}, {"max_alternatives": 31}, {"model": "no-such-model"},
            {"enable_automatic_punctuation": True}, {"alternative_language_codes": ["de-DE"]},
        ][k]  # fmt: skip
        return stream_requests(rate, pcm, **fields), INVALID

    def silence_over_max_duration():
        pcm = silence(plan.max_stream_s + float(rng.uniform(0.01, 1.0)))
        return stream_requests(rate, pcm, chunk_s=1.0), OUT_OF_RANGE

    def oversized_audio_message():
        size = big + 2 * int(rng.integers(1, 32768))
        return [config_request(rate), audio_request(b"\0" * size)], EXHAUSTED

    def oversized_config_message():
        return [config_request(rate, language_code="x" * (big + 16))], EXHAUSTED

    def recognize_garbage():
        return [garbage(int(rng.integers(1, 4096)))], INVALID

    def recognize_invalid():
        pcm, k = clip().pcm, int(rng.integers(4))
        request = [
            _recognize(pcm + b"\0", encoding=LINEAR16, sample_rate_hertz=rate),
            pb.RecognizeRequest(audio=pb.RecognitionAudio(content=pcm)).SerializeToString(),
            pb.RecognizeRequest(
                config=pb.RecognitionConfig(encoding=LINEAR16, sample_rate_hertz=rate),
                audio=pb.RecognitionAudio(uri="gs://bucket/a.raw"),
            ).SerializeToString(),
            _recognize(pcm, encoding=enc.FLAC, sample_rate_hertz=rate),
        ][k]
        return [request], INVALID

    def recognize_over_max_duration():
        pcm = silence(plan.max_stream_s + float(rng.uniform(0.1, 1.0)))
        return [_recognize(pcm, encoding=LINEAR16, sample_rate_hertz=rate)], OUT_OF_RANGE

    def recognize_oversized():
        pcm = b"\0" * (big + 2 * int(rng.integers(1, 32768)))
        return [_recognize(pcm, encoding=LINEAR16, sample_rate_hertz=rate)], EXHAUSTED

    def reversed_field_order():
        interim = int(rng.integers(2))
        config = _field(3, b"en-US") + _field(2, rate) + _field(1, int(LINEAR16))
        first = _field(1, _field(3, interim) + _field(1, config))
        parsed = pb.StreamingRecognizeRequest.FromString(first).streaming_config
        if parsed.config.sample_rate_hertz != rate or parsed.interim_results != bool(interim):
            raise RuntimeError("the hand-encoded config does not parse as meant")
        chunks = list(map(audio_request, clip().chunks()))
        if rng.random() < 0.5:  # audio then config in one message: the config wins
            first = chunks[0] + first
        return [first, *chunks], OK

    def merged_duplicate_config():
        first = _field(1, _field(1, _field(1, int(LINEAR16)))) + _field(
            1, _field(1, _field(2, rate))
        )
        return [first, *map(audio_request, clip().chunks())], OK

    def extreme_samples():
        pcm = _extreme_pcm(rng, int(rate * rng.uniform(0.3, 2.0)), clip())
        return stream_requests(rate, pcm), OK

    def silence_max_duration():
        return stream_requests(rate, silence(plan.max_stream_s), chunk_s=1.0), OK

    def edge_sample_rates():
        new_rate = int([8000, 11025, 16000, 22050, 44100, 48000][int(rng.integers(6))])
        samples = np.frombuffer(clip().pcm, "<i2").astype(np.float32) / 32768
        pcm = pcm16(resample(samples, orig_rate=rate, new_rate=new_rate))
        return stream_requests(new_rate, pcm), OK

    def no_audio():
        k = int(rng.integers(3))
        empty = [config_request(rate), audio_request(b""), audio_request(b"")]
        return [[], [config_request(rate)], empty][k], OK

    kinds = [
        garbage_first, garbage_after_audio, empty_first_request, audio_before_config,
        second_config, odd_length_audio, unsupported_encoding, bad_sample_rate, bad_config_field,
        silence_over_max_duration, oversized_audio_message, oversized_config_message,
        recognize_garbage, recognize_invalid, recognize_over_max_duration, recognize_oversized,
        reversed_field_order, merged_duplicate_config, extreme_samples, silence_max_duration,
        edge_sample_rates, no_audio,
    ]  # fmt: skip
    cases = []
    for index in range(plan.malformed - plan.realtime_silence):
        make = kinds[index % len(kinds)]
        requests, expected = make()
        unary = make.__name__.startswith("recognize")
        cases.append(Case(make.__name__, tuple(requests), expected, unary=unary))
    for index in range(plan.realtime_silence):  # the maximum duration of silence, at real time
        over = index % 2 == 1
        pcm = silence(plan.max_stream_s + (0.5 if over else 0.0))
        kind = "silence_realtime_over_max" if over else "silence_realtime_max"
        cases.append(
            Case(kind, tuple(stream_requests(rate, pcm)), OUT_OF_RANGE if over else OK, gap_s=0.1)
        )
    return cases


# ---- calls


_POOL = ThreadPoolExecutor(max_workers=64, thread_name_prefix="client")
LOCAL = [("grpc.use_local_subchannel_pool", 1)]  # a channel with its own TCP connection


def _paced(requests, gap_s: float, hold: threading.Event | None = None):
    for index, request in enumerate(requests):
        if index and gap_s:
            time.sleep(gap_s)
        yield request
        if hold is not None and index == 0:
            hold.wait(120)


def run_case(channel, case: Case, timeout_s: float, hold=None) -> tuple[str, str]:
    """Send ``case`` on a sync channel; its final status name and details.

    Sync, because grpc.aio reports INTERNAL ("Internal error from Core") instead of the
    server's status when the server ends a stream the client is still writing
    (grpc/grpc#36066); the sync API reports the server's status.
    """
    try:
        if case.unary:
            channel.unary_unary(RECOGNIZE)(case.requests[0], timeout=timeout_s)
        else:
            requests = _paced(case.requests, case.gap_s, hold)
            for raw in channel.stream_stream(STREAM)(requests, timeout=timeout_s):
                pb.StreamingRecognizeResponse.FromString(raw)
        return OK, ""
    except grpc.RpcError as err:
        return err.code().name, err.details() or ""


async def _thread(func, *args):
    return await asyncio.get_running_loop().run_in_executor(_POOL, func, *args)


async def _bounded(items, concurrency: int, func):
    gate = asyncio.Semaphore(concurrency)

    async def one(item):
        async with gate:
            return await func(item)

    return await asyncio.gather(*(one(item) for item in items))


class Probe:
    """Well-formed real-audio streams at real-time pace: final latency and transcripts."""

    def __init__(self, channel, clips: list[Clip], *, concurrency: int, timeout_s: float):
        self.channel, self.clips = channel, clips
        self.concurrency, self.timeout_s = concurrency, timeout_s
        self.latency_ms: dict[str, list[float]] = {"before": [], "during": [], "after": []}
        self.errors: list[str] = []
        self.transcripts: dict[int, str] = {}
        self.mismatches = 0
        self._count = 0
        self._stop = asyncio.Event()
        self._workers: list[asyncio.Task] = []

    async def one(self, phase: str) -> None:
        index = self._count % len(self.clips)
        self._count += 1
        clip = self.clips[index]
        requests = stream_requests(clip.sampling_rate, clip.pcm)
        try:
            finals, last_sent = await stream_once(
                self.channel, requests, timeout_s=self.timeout_s, pace_s=0.1
            )
        except grpc.aio.AioRpcError as err:
            self.errors.append(f"{phase}: {err.code().name}: {err.details()}")
            return
        self.latency_ms.setdefault(phase, []).append(1000.0 * (time.monotonic() - last_sent))
        text = " ".join(finals)
        if self.transcripts.setdefault(index, text) != text:
            self.mismatches += 1

    async def batch(self, count: int, phase: str) -> None:
        await _bounded(range(count), self.concurrency, lambda _: self.one(phase))

    def start(self) -> None:
        self._stop.clear()

        async def worker():
            while not self._stop.is_set():
                await self.one("during")

        self._workers = [asyncio.create_task(worker()) for _ in range(self.concurrency)]

    async def pause(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._workers)
        self._workers = []

    def summary(self) -> dict:
        out = {}
        for phase in ("before", "during", "after"):
            values = self.latency_ms[phase]
            out[phase] = {
                "streams": len(values),
                "p50_final_latency_ms": percentile(values, 50),
                "p95_final_latency_ms": percentile(values, 95),
            }
        for phase in ("during", "after"):
            for q in (50, 95):
                key = f"p{q}_final_latency_ms"
                base, value = out["before"][key], out[phase][key]
                out[f"ratio_p{q}_{phase}_to_before"] = (
                    round(value / base, 2) if base and value is not None else None
                )
        out["errors"] = len(self.errors)
        out["error_messages"] = self.errors[:5]
        out["transcript_mismatches"] = self.mismatches
        return out


# ---- vanishing, slow and bursting clients

KILL_CLIENT = r"""
import sys, time
import grpc
address, path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
data, messages = open(path, "rb").read(), []
while data:
    size = int.from_bytes(data[:4], "little")
    messages.append(data[4 : 4 + size])
    data = data[4 + size :]
def requests():
    for k, message in enumerate(messages):
        yield message
        if mode == "mid":
            if k == 3:
                print("streaming", flush=True)
            time.sleep(0.1)
    if mode == "end":
        print("half-closed", flush=True)
channel = grpc.insecure_channel(address)
for _ in channel.stream_stream("/google.cloud.speech.v1.Speech/StreamingRecognize")(requests()):
    pass
time.sleep(600)
"""


async def _vanish_one(address: str, channel, clip: Clip, how: str, delay_s: float, timeout_s):
    requests = [config_request(clip.sampling_rate, interim=True)] + [
        audio_request(c) for c in clip.chunks()
    ] * 3
    own = grpc.aio.insecure_channel(address, options=LOCAL) if how == "close" else None
    gap_s = 0.05 if how != "deadline" else 0.1

    async def paced():
        for index, request in enumerate(requests):
            await asyncio.sleep(gap_s if index else 0.0)
            yield request

    call = (own or channel).stream_stream(STREAM)(
        paced(), timeout=delay_s if how == "deadline" else timeout_s
    )
    if how != "deadline":
        await asyncio.sleep(delay_s)
        if how == "cancel":
            call.cancel()
        else:
            await own.close(grace=None)
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
        async for _ in call:
            pass
    return (await call.code()).name


async def _kill_one(address: str, clip: Clip, mode: str, workdir: Path, index: int, rng) -> int:
    path = workdir / f"kill{index}.bin"
    requests = stream_requests(clip.sampling_rate, clip.pcm, interim=True)
    path.write_bytes(b"".join(len(r).to_bytes(4, "little") + r for r in requests))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILL_CLIENT, address, str(path), mode,
        stdout=asyncio.subprocess.PIPE, cwd=REPO,
    )  # fmt: skip
    try:
        await asyncio.wait_for(proc.stdout.readline(), 120)
        await asyncio.sleep(float(rng.uniform(0.0, 0.3)))
    finally:
        proc.kill()  # SIGKILL: the kernel closes its connection, no goodbye
        await proc.wait()
    return proc.returncode


async def vanish_phase(address: str, channel, clips: list[Clip], plan: FaultPlan) -> dict:
    rng = np.random.default_rng(plan.seed + 1)
    jobs = [("cancel", i) for i in range(plan.vanish_cancel)]
    jobs += [("close", i) for i in range(plan.vanish_close)]
    jobs += [("deadline", i) for i in range(plan.vanish_deadline)]

    async def run(job):
        how, i = job
        delay = float(rng.uniform(0.2, 0.8) if how == "deadline" else rng.uniform(0.0, 0.8))
        return how, await _vanish_one(
            address, channel, clips[i % len(clips)], how, delay, plan.call_timeout_s
        )

    codes = await _bounded(jobs, plan.vanish_concurrency, run)
    with tempfile.TemporaryDirectory() as tmp:
        kills = await asyncio.gather(*(
            _kill_one(address, clips[i % len(clips)], ("mid", "end")[i % 2], Path(tmp), i, rng)
            for i in range(plan.vanish_kill)
        ))  # fmt: skip
    out: dict = {"cancelled": 0, "channel_closed": 0, "deadline": 0, "deadline_exceeded": 0}
    for how, code in codes:
        if how == "cancel":
            out["cancelled"] += code == "CANCELLED"
        elif how == "close":
            out["channel_closed"] += code == "CANCELLED"
        else:
            out["deadline"] += 1
            out["deadline_exceeded"] += code == "DEADLINE_EXCEEDED"
    out["sigkilled_clients"] = sum(code == -9 for code in kills)
    return out


async def _slow_client(channel, clip: Clip, seconds: float, timeout_s: float) -> str:
    samples = [clip.pcm[i : i + 2] for i in range(0, 2 * int(seconds), 2)]
    case = Case("slow", (config_request(clip.sampling_rate), *map(audio_request, samples)), OK,
                gap_s=1.0)  # fmt: skip
    return (await _thread(run_case, channel, case, timeout_s))[0]


async def _slow_raw(address: str, seconds: float, payload: bytes) -> dict:
    """One byte a second over a raw TCP connection; did the server close it?"""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    sent, closed = 0, False
    try:
        for index in range(int(seconds)):
            writer.write(payload[index % len(payload) : index % len(payload) + 1])
            await writer.drain()
            sent += 1
            with contextlib.suppress(TimeoutError):
                if await asyncio.wait_for(reader.read(4096), 1.0) == b"":
                    closed = True
                    break
    except (ConnectionError, OSError):
        closed = True
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
    return {"bytes_sent": sent, "closed_by_server": closed}


async def slow_phase(address: str, channel, clips: list[Clip], plan: FaultPlan) -> dict:
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    garbage = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    results = await asyncio.gather(
        *(_slow_client(channel, clips[i % len(clips)], plan.slow_s, plan.call_timeout_s)
          for i in range(plan.slow_clients)),
        *(_slow_raw(address, plan.slow_s, (preface, garbage)[i % 2]) for i in range(plan.slow_raw)),
    )  # fmt: skip
    codes = results[: plan.slow_clients]
    return {
        "clients": plan.slow_clients,
        "ok": sum(code == OK for code in codes),
        "codes": codes,
        "seconds": plan.slow_s,
        "raw_tcp": results[plan.slow_clients :],
    }


async def burst_phase(address: str, clips: list[Clip], plan: FaultPlan) -> dict:
    """``burst_factor * max_streams`` connections at once, each with one stream."""
    total = plan.burst_factor * plan.max_streams
    channels = [grpc.insecure_channel(address, options=LOCAL) for _ in range(total)]
    release, rejected = threading.Event(), []

    def one(index: int) -> tuple[str, str]:
        clip = clips[index % len(clips)]
        case = Case("burst", tuple(stream_requests(clip.sampling_rate, clip.pcm)), OK)
        code, details = run_case(channels[index], case, plan.call_timeout_s, release)
        if code == EXHAUSTED:
            rejected.append(index)
        return code, details

    # every connection opens its stream and holds it until the excess has been refused
    tasks = [asyncio.ensure_future(_thread(one, i)) for i in range(total)]
    deadline = time.monotonic() + 30
    while len(rejected) < total - plan.max_streams and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    release.set()
    results = await asyncio.gather(*tasks)
    for channel in channels:
        channel.close()
    codes = [code for code, _ in results]
    return {
        "connections": total,
        "ok": codes.count(OK),
        "resource_exhausted": codes.count(EXHAUSTED),
        "other": [f"{c}: {d}" for c, d in results if c not in (OK, EXHAUSTED)][:5],
    }


# ---- the whole run


async def _idle(server: ServerProcess | None, timeout_s: float = 30.0) -> dict:
    """Wait for a stats line with no stream in progress; what the server said, and when."""
    if server is None:
        return {"checked": False}
    start = time.monotonic()
    stats = await asyncio.to_thread(
        server.wait_stats,
        lambda s: s["active_streams"] == 0 and s["streaming_calls"] == 0,
        timeout_s=timeout_s,
    )
    last = stats or server.stats() or {}
    return {
        "checked": True,
        "idle": stats is not None,
        "seconds": round(time.monotonic() - start, 2),
        "active_streams": last.get("active_streams"),
        "streaming_calls": last.get("streaming_calls"),
    }


async def _back_to(server: ServerProcess, baseline: dict, timeout_s: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        now = {"fds": server.fd_count(), "threads": server.thread_count()}
        if all(now[k] <= baseline[k] for k in now) or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.5)


async def _health(address: str) -> str:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(address) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=10
            )
        except grpc.aio.AioRpcError as err:
            return err.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def _tally(cases: list[Case], got: list[tuple[str, str]]) -> dict:
    kinds: dict[str, dict] = {}
    wrong = []
    for case, (code, details) in zip(cases, got, strict=True):
        row = kinds.setdefault(case.kind, {"count": 0, "expected": case.expected, "as_expected": 0})
        row["count"] += 1
        if code == case.expected:
            row["as_expected"] += 1
        else:
            wrong.append(f"{case.kind}: expected {case.expected}, got {code}: {details[:160]}")
    as_expected = sum(row["as_expected"] for row in kinds.values())
    return {
        "total": len(cases),
        "as_expected": as_expected,
        "wrong": len(cases) - as_expected,
        "by_kind": kinds,
        "wrong_examples": wrong[:10],
    }


async def run_faults(address: str, clips: list[Clip], plan: FaultPlan, server=None) -> dict:
    """Phases a-d with the probe around them; the JSON-ready figures and ``failures``."""
    start = time.monotonic()
    failures: list[str] = []
    out: dict = {"plan": plan.__dict__, "address": address}
    most = plan.probe_concurrency + max(
        plan.malformed_concurrency + plan.realtime_concurrency, plan.vanish_concurrency,
        plan.vanish_kill, plan.slow_clients,
    )  # fmt: skip
    if most >= plan.max_streams:  # leave a slot spare: a freed slot is counted a moment late
        raise SystemExit(f"the plan opens up to {most} streams at once; max_streams must be more")
    async with (
        grpc.aio.insecure_channel(address) as probe_channel,
        grpc.aio.insecure_channel(address) as channel,
    ):
        sync_channel = grpc.insecure_channel(address)  # for calls whose status is judged

        async def call(case: Case):
            return await _thread(run_case, sync_channel, case, plan.call_timeout_s)

        probe = Probe(probe_channel, clips, concurrency=plan.probe_concurrency,
                      timeout_s=plan.call_timeout_s)  # fmt: skip
        await probe.batch(plan.probe_concurrency, "warmup")
        await call(Case("warmup", tuple(stream_requests(8000, b"\0" * 800)), OK))
        await _idle(server)
        baseline = (
            {"fds": server.fd_count(), "threads": server.thread_count(), "rss_mb": server.rss_mb()}
            if server
            else {}
        )
        await probe.batch(plan.probe_streams, "before")
        probe.start()
        cases = malformed_cases(plan, clips)
        realtime = [c for c in cases if c.gap_s]
        got = await asyncio.gather(
            _bounded([c for c in cases if not c.gap_s], plan.malformed_concurrency, call),
            _bounded(realtime, plan.realtime_concurrency, call),
        )  # fmt: skip
        ordered = [c for c in cases if not c.gap_s] + realtime
        out["malformed"] = _tally(ordered, got[0] + got[1])
        out["malformed_s"] = round(time.monotonic() - start, 1)
        out["vanish"] = await vanish_phase(address, channel, clips, plan)
        await probe.pause()
        out["vanish"]["after"] = await _idle(server)
        probe.start()
        out["slow"] = await slow_phase(address, sync_channel, clips, plan)
        await probe.pause()
        out["idle_before_burst"] = await _idle(server)
        out["burst"] = await burst_phase(address, clips, plan)
        out["idle_after_burst"] = await _idle(server)
        await probe.batch(plan.probe_streams, "after")
        out["probe"] = probe.summary()
        out["idle_end"] = await _idle(server)
        sync_channel.close()
        if server is not None:
            end = await _back_to(server, baseline)
            out["resources"] = {
                "fds_baseline": baseline["fds"], "fds_end": end["fds"],
                "threads_baseline": baseline["threads"], "threads_end": end["threads"],
                "rss_mb_baseline": round(baseline["rss_mb"], 1),
                "rss_mb_end": round(server.rss_mb(), 1),
            }  # fmt: skip
    out["health_end"] = await _health(address)
    out["wall_s"] = round(time.monotonic() - start, 1)

    # ---- judge
    if out["malformed"]["wrong"]:
        failures.append(f"{out['malformed']['wrong']} malformed streams got a wrong status")
    vanish = out["vanish"]
    if vanish["cancelled"] != plan.vanish_cancel or vanish["channel_closed"] != plan.vanish_close:
        failures.append("a vanishing client's call did not end CANCELLED")
    if vanish["deadline_exceeded"] != plan.vanish_deadline:
        failures.append("a call past its deadline did not end DEADLINE_EXCEEDED")
    if vanish["sigkilled_clients"] != plan.vanish_kill:
        failures.append("a client subprocess was not SIGKILLed")
    if out["slow"]["ok"] != plan.slow_clients:
        failures.append(f"slow clients: {out['slow']['codes']}")
    burst = out["burst"]
    if burst["ok"] != plan.max_streams or burst["resource_exhausted"] != (
        burst["connections"] - plan.max_streams
    ):
        failures.append(f"burst: {burst['ok']} ok, {burst['resource_exhausted']} exhausted")
    for key in ("vanish", "idle_before_burst", "idle_after_burst", "idle_end"):
        idle = out[key]["after"] if key == "vanish" else out[key]
        if idle["checked"] and not idle["idle"]:
            failures.append(f"{key}: streams still active: {idle}")
    if probe.errors or probe.mismatches:
        failures.append(
            f"probe: {len(probe.errors)} errors, {probe.mismatches} changed transcripts"
        )
    if server is not None:
        res = out["resources"]
        if res["fds_end"] > res["fds_baseline"] or res["threads_end"] > res["threads_baseline"]:
            failures.append(f"leak: {res}")
        out["server_alive"] = server.alive()
        out["server_faults"] = server.faults[:10]
        if not server.alive() or server.faults:
            failures.append("the server died or logged a traceback")
    if out["health_end"] != "SERVING":
        failures.append(f"health: {out['health_end']}")
    out["load_avg"] = os.getloadavg()[0]
    out["failures"] = failures
    out["passed"] = not failures
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="bundle to serve (starts a server subprocess)")
    parser.add_argument("--server", help="HOST:PORT of a running server instead (its limits below)")
    parser.add_argument("--server-pid", type=int, help="with --server: its pid, for /proc figures")
    parser.add_argument("--max-streams", type=int, default=8)
    parser.add_argument("--max-stream-s", type=float, default=5.0)
    parser.add_argument("--max-message-mb", type=float, default=0.5)
    parser.add_argument("--malformed", type=int, default=1000)
    parser.add_argument("--slow-s", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--call-timeout-s", type=float, default=60.0, help="deadline of each call")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "data" / "yesno",
                        help="real audio (WAV files under it) for the probe and the streams")  # fmt: skip
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.model and not args.server:
        parser.error("give --model BUNDLE or --server HOST:PORT")
    plan = FaultPlan(
        max_streams=args.max_streams, max_stream_s=args.max_stream_s,
        max_message_bytes=int(args.max_message_mb * 1024 * 1024), malformed=args.malformed,
        slow_s=args.slow_s, seed=args.seed, call_timeout_s=args.call_timeout_s,
    )  # fmt: skip
    clips = load_clips(corpus_wavs(args.corpus, 16), clip_s=2.0, num=8)
    server = None
    if args.server:
        address = args.server
    else:
        server = ServerProcess(serve_command(
            args.model, max_streams=plan.max_streams, device=args.device,
            max_stream_s=plan.max_stream_s, max_message_mb=args.max_message_mb,
            stats_interval_s=0.25,
        ))  # fmt: skip
        address = server.address
    try:
        out = asyncio.run(run_faults(address, clips, plan, server))
    finally:
        if server is not None:
            server.stop()
    print(json.dumps(out, indent=None if args.json else 2))
    return 0 if out["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
