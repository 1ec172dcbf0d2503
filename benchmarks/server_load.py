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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REPO = Path(__file__).resolve().parent.parent


def an4_files(corpus: Path, limit: int) -> list[Path]:
    files = sorted((corpus / "wav").rglob("*.wav"))
    if not files:
        raise SystemExit(f"no AN4 wav files under {corpus}/wav")
    # spread over speakers: every k-th file
    step = max(1, len(files) // max(limit, 1))
    return files[::step][:limit]


def start_server(args) -> tuple[subprocess.Popen, str]:
    command = [
        sys.executable, "-m", "asr.cli.main", "serve", "--model", args.model, "--port", "0",
        "--max-streams", str(max(64, args.streams * 2)), "--stats-interval", "0",
        "--device", args.device, "--tick-ms", str(args.tick_ms),
    ]  # fmt: skip
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.monotonic() + 300
    lines = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(r"listening on (\S+:\d+)", line)
        if match:
            return proc, match.group(1)
    proc.kill()
    raise SystemExit("the server did not start:\n" + "".join(lines[-20:]))


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
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
        pcm = (np.clip(samples, -1, 32767 / 32768) * 32768).astype("<i2").tobytes()
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

    from server.generated import cloud_speech_pb2 as pb
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
        proc, address = start_server(args)
    try:
        cpu0 = proc_cpu_s(proc.pid) if proc else None
        wall0 = time.monotonic()
        stats = asyncio.run(run_load(address, args, files))
        wall = time.monotonic() - wall0
        cpu = (proc_cpu_s(proc.pid) - cpu0) if proc else None
        rss = proc_rss_mb(proc.pid) if proc else None
    finally:
        if proc is not None:
            proc.terminate()
            try:
                _, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
    server_stats = None
    if proc is not None:
        for line in (err or "").splitlines():
            if "stopped: " in line:
                server_stats = json.loads(line.split("stopped: ", 1)[1])
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
