"""Load test of the gRPC server: N concurrent real-time streams of real AN4 audio.

Starts ``asr serve --model BUNDLE`` in a subprocess on an ephemeral port (or uses
``--server HOST:PORT``), then opens ``--streams`` concurrent StreamingRecognize calls
(interim results on), each sending AN4 utterances in ``--chunk-ms`` LINEAR16 chunks at
real-time pace (staggered starts), and prints one JSON object:

* ``p50/p95/p99_interim_latency_ms``: for each interim result, receive time minus the
  send time of the chunk that completed the audio up to its ``result_end_time``;
* ``p50/p95/p99_final_latency_ms``: receive time of a file's last final minus the send
  time of its last chunk (the client half-closes right after it);
* ``errors``: calls that ended with a non-OK status;
* ``server_cpu_percent`` / ``server_rss_mb`` (from /proc, subprocess servers only),
  ``server_stats`` (the server's own stats line, when started here), ``load_avg`` (the
  machine's 1-minute load: the CPU is shared, read the figures with it).

    python benchmarks/server_load.py --model exp/an4/tri2/bundle --streams 32 --json
    python benchmarks/server_load.py --server 127.0.0.1:50051 --streams 8 --seconds 20

The helpers here (:func:`serve_command`, :class:`ServerProcess`, the ``/proc`` readers,
:func:`corpus_wavs`, :class:`Clip`, requests as bytes, :func:`stream_once`) are shared with
``server_faults.py`` and ``server_soak.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.generated import cloud_speech_pb2 as pb  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
STREAM = "/google.cloud.speech.v1.Speech/StreamingRecognize"
LINEAR16 = pb.RecognitionConfig.AudioEncoding.LINEAR16


def corpus_wavs(corpus: Path, limit: int) -> list[Path]:
    """Up to ``limit`` WAV files under ``corpus``, spread over it (every k-th, sorted)."""
    files = sorted(Path(corpus).rglob("*.wav"))
    if not files:
        raise SystemExit(f"no wav files under {corpus}")
    step = max(1, len(files) // max(limit, 1))
    return files[::step][:limit]


def an4_files(corpus: Path, limit: int) -> list[Path]:
    return corpus_wavs(Path(corpus) / "wav", limit)  # spread over speakers


def pcm16(samples: np.ndarray) -> bytes:
    """float32 samples in [-1, 1] -> LINEAR16 (little-endian int16) bytes."""
    return (np.clip(samples, -1, 32767 / 32768) * 32768).astype("<i2").tobytes()


@dataclass(frozen=True)
class Clip:
    pcm: bytes  # LINEAR16
    sampling_rate: int

    def chunks(self, chunk_s: float = 0.1) -> list[bytes]:
        step = 2 * max(1, int(self.sampling_rate * chunk_s))
        return [self.pcm[i : i + step] for i in range(0, len(self.pcm), step)]


def load_clips(files: list[Path], *, clip_s: float, num: int) -> list[Clip]:
    """``num`` clips of ``clip_s`` seconds cut from ``files`` (real audio, native rate)."""
    from asr.audio import read_audio

    clips = []
    for path in files:
        samples, rate = read_audio(path)
        size = int(clip_s * rate)
        for start in range(0, samples.size - size + 1, size):
            clips.append(Clip(pcm16(samples[start : start + size]), rate))
            if len(clips) == num:
                return clips
    if not clips:
        raise SystemExit(f"no audio of {clip_s} s in {len(files)} files")
    return clips


def config_request(rate: int, *, encoding=LINEAR16, interim=False, **config) -> bytes:
    """A serialized first StreamingRecognizeRequest (``config``: RecognitionConfig fields)."""
    streaming = pb.StreamingRecognitionConfig(
        config=pb.RecognitionConfig(encoding=encoding, sample_rate_hertz=rate, **config),
        interim_results=interim,
    )
    return pb.StreamingRecognizeRequest(streaming_config=streaming).SerializeToString()


def audio_request(pcm: bytes) -> bytes:
    return pb.StreamingRecognizeRequest(audio_content=pcm).SerializeToString()


def stream_requests(rate: int, pcm: bytes, *, chunk_s: float = 0.1, **config) -> list[bytes]:
    """The config request, then ``pcm`` in ``chunk_s`` chunks (all serialized)."""
    chunks = Clip(pcm, rate).chunks(chunk_s)
    return [config_request(rate, **config), *map(audio_request, chunks)]


async def stream_once(channel, requests, *, timeout_s: float, pace_s: float = 0.0):
    """One StreamingRecognize call on a ``grpc.aio`` channel: ``requests`` (bytes), the
    second one on sent ``pace_s`` apart (0: as fast as they go) -> (final transcripts,
    monotonic time the last request was sent). Raises ``grpc.aio.AioRpcError``."""
    last_sent = [0.0]

    async def paced():
        start = time.monotonic()
        for index, request in enumerate(requests):
            if index > 1 and pace_s:
                await asyncio.sleep(max(0.0, start + pace_s * (index - 1) - time.monotonic()))
            if index == 1:
                start = time.monotonic()
            last_sent[0] = time.monotonic()
            yield request

    finals = []
    async for raw in channel.stream_stream(STREAM)(paced(), timeout=timeout_s):
        response = pb.StreamingRecognizeResponse.FromString(raw)
        finals += [r.alternatives[0].transcript for r in response.results if r.is_final]
    return finals, last_sent[0]


def serve_command(
    model: str | os.PathLike,
    *,
    max_streams: int,
    device: str = "auto",
    tick_ms: float = 20.0,
    max_stream_s: float | None = None,
    max_message_mb: float | None = None,
    stats_interval_s: float = 0.0,
) -> list[str]:
    """The ``asr serve`` command line for a server on an ephemeral 127.0.0.1 port."""
    command = [
        sys.executable, "-m", "asr.cli.main", "serve", "--model", str(model), "--port", "0",
        "--max-streams", str(max_streams), "--stats-interval", str(stats_interval_s),
        "--device", device, "--tick-ms", str(tick_ms),
    ]  # fmt: skip
    if max_stream_s is not None:
        command += ["--max-stream-s", str(max_stream_s)]
    if max_message_mb is not None:
        command += ["--max-message-mb", str(max_message_mb)]
    return command


class ServerProcess:
    """A server subprocess: its address, ``/proc`` figures and the lines it logs.

    ``command`` must log ``listening on HOST:PORT`` once bound (``asr serve`` does), and
    may log ``stats {json}`` lines (``--stats-interval``) and a ``stopped: {json}`` line.
    A thread reads stderr: the last stats line is :meth:`stats`; tracebacks and
    never-retrieved task exceptions are kept in :attr:`faults`.
    """

    def __init__(self, command: list[str], *, cwd: Path = REPO, start_timeout_s: float = 300):
        self.proc = subprocess.Popen(
            command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=cwd
        )
        self.lines: deque[str] = deque(maxlen=400)
        self.faults: list[str] = []
        self.final_stats: dict | None = None
        self.address: str | None = None
        self._stats: tuple[float, dict] | None = None
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        with self._cond:
            self._cond.wait_for(
                lambda: self.address is not None or self.proc.poll() is not None, start_timeout_s
            )
        if self.address is None:
            self.proc.kill()
            raise SystemExit("the server did not start:\n" + "".join(list(self.lines)[-20:]))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line)
                if "Traceback (most recent call last)" in line or "never retrieved" in line:
                    self.faults.append(line.strip())
                if self.address is None and (m := re.search(r"listening on (\S+:\d+)", line)):
                    self.address = m.group(1)
                if m := re.search(r" stats (\{.*\})\s*$", line):
                    self._stats = (time.monotonic(), json.loads(m.group(1)))
                if m := re.search(r"stopped: (\{.*\})\s*$", line):
                    self.final_stats = json.loads(m.group(1))
                self._cond.notify_all()

    def stats(self, *, newer_than: float = 0.0) -> dict | None:
        """The last stats line logged after the monotonic time ``newer_than``, if any."""
        with self._cond:
            if self._stats is not None and self._stats[0] > newer_than:
                return self._stats[1]
        return None

    def wait_stats(self, predicate, *, timeout_s: float) -> dict | None:
        """Wait for a fresh stats line (logged from now on) for which ``predicate`` holds."""
        start = time.monotonic()
        deadline = start + timeout_s
        with self._cond:
            while True:
                fresh = self._stats is not None and self._stats[0] > start
                if fresh and predicate(self._stats[1]):
                    return self._stats[1]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    return None
                self._cond.wait(remaining)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def fd_count(self) -> int:
        return proc_fd_count(self.pid)

    def thread_count(self) -> int:
        return proc_thread_count(self.pid)

    def rss_mb(self) -> float:
        return proc_rss_mb(self.pid)

    def cpu_s(self) -> float:
        return proc_cpu_s(self.pid)

    def stop(self, timeout_s: float = 60.0) -> dict | None:
        """SIGTERM (graceful drain), then SIGKILL after ``timeout_s``; the final stats."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(10)
        return self.final_stats


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    return _status_field(pid, "VmRSS:") / 1024.0


def proc_thread_count(pid: int) -> int:
    return int(_status_field(pid, "Threads:"))


def proc_fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _status_field(pid: int, name: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name):
            return float(line.split()[1])
    return float("nan")


async def one_stream(stub, pb, files, *, chunk_ms, seconds, start_delay, stats, index):
    from asr.audio import read_audio

    await asyncio.sleep(start_delay)
    deadline = time.monotonic() + seconds
    k = 0
    while True:
        path = files[(index + k) % len(files)]
        k += 1
        samples, rate = read_audio(path)
        pcm = pcm16(samples)
        step = int(rate * chunk_ms / 1000) * 2
        sent: list[tuple[float, float]] = []  # (audio end s, send time)
        config = pb.StreamingRecognitionConfig(
            config=pb.RecognitionConfig(
                encoding=pb.RecognitionConfig.AudioEncoding.LINEAR16, sample_rate_hertz=rate
            ),
            interim_results=True,
        )

        async def requests(pcm=pcm, step=step, rate=rate, sent=sent, config=config):
            yield pb.StreamingRecognizeRequest(streaming_config=config)
            t0 = time.monotonic()
            for offset in range(0, len(pcm), step):
                delay = t0 + offset / 2 / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                chunk = pcm[offset : offset + step]
                sent.append(((offset + len(chunk)) / 2 / rate, time.monotonic()))
                yield pb.StreamingRecognizeRequest(audio_content=chunk)

        last_final = None
        try:
            async for response in stub.StreamingRecognize(requests(), timeout=120):
                now = time.monotonic()
                for result in response.results:
                    if result.is_final:
                        last_final = now
                        continue
                    end_s = result.result_end_time.seconds + result.result_end_time.nanos / 1e9
                    covering = [t for audio_s, t in sent if audio_s >= end_s - 1e-6]
                    if covering:
                        stats["interim"].append(1000 * (now - covering[0]))
            if last_final is not None and sent and last_final >= sent[-1][1]:
                stats["final"].append(1000 * (last_final - sent[-1][1]))
            stats["files"] += 1
        except Exception as err:  # any failed call counts as an error
            stats["errors"] += 1
            details = err.details() if hasattr(err, "details") else str(err)
            stats["error_messages"].append(f"{type(err).__name__}: {details}")
        if time.monotonic() >= deadline:
            return


def percentile(values, q):
    return round(float(np.percentile(values, q)), 1) if values else None


async def run_load(address, args, files):
    import grpc

    from server.generated import cloud_speech_pb2_grpc as pb_grpc

    stats = {"interim": [], "final": [], "errors": 0, "files": 0, "error_messages": []}
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.SpeechStub(channel)
        tasks = [
            one_stream(
                stub,
                pb,
                files,
                chunk_ms=args.chunk_ms,
                seconds=args.seconds,
                start_delay=i * args.stagger_s / max(args.streams, 1),
                stats=stats,
                index=i,
            )  # fmt: skip
            for i in range(args.streams)
        ]
        await asyncio.gather(*tasks)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="bundle to serve (starts a server subprocess)")
    parser.add_argument("--server", help="HOST:PORT of a running server instead")
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0, help="per stream (whole files)")
    parser.add_argument("--chunk-ms", type=float, default=100.0)
    parser.add_argument("--stagger-s", type=float, default=1.0, help="spread of stream starts")
    parser.add_argument("--tick-ms", type=float, default=20.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "data" / "an4")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.model and not args.server:
        parser.error("give --model BUNDLE or --server HOST:PORT")
    files = an4_files(args.corpus, 64)
    proc = None
    if args.server:
        address = args.server
    else:
        command = serve_command(
            args.model, max_streams=max(64, args.streams * 2), device=args.device,
            tick_ms=args.tick_ms,
        )  # fmt: skip
        proc = ServerProcess(command)
        address = proc.address
    server_stats = None
    try:
        cpu0 = proc.cpu_s() if proc else None
        wall0 = time.monotonic()
        stats = asyncio.run(run_load(address, args, files))
        wall = time.monotonic() - wall0
        cpu = (proc.cpu_s() - cpu0) if proc else None
        rss = proc.rss_mb() if proc else None
    finally:
        if proc is not None:
            server_stats = proc.stop()
    out = {
        "streams": args.streams,
        "seconds_per_stream": args.seconds,
        "chunk_ms": args.chunk_ms,
        "files_done": stats["files"],
        "errors": stats["errors"],
        "interim_results": len(stats["interim"]),
        **{f"p{q}_interim_latency_ms": percentile(stats["interim"], q) for q in (50, 95, 99)},
        **{f"p{q}_final_latency_ms": percentile(stats["final"], q) for q in (50, 95, 99)},
        "wall_s": round(wall, 2),
        "server_cpu_percent": round(100 * cpu / wall, 1) if cpu is not None else None,
        "server_rss_mb": round(rss, 1) if rss is not None else None,
        "load_avg": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
        "server_stats": server_stats,
        "error_messages": stats["error_messages"][:5],
    }
    print(json.dumps(out, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
