"""Soak test of the gRPC server: many short real-audio streams; RSS, fds and threads.

Starts ``asr serve --model BUNDLE`` (``--max-streams`` = ``--concurrency``, at least 64) on
an ephemeral 127.0.0.1 port, then runs

1. ``--sequential`` streams one after another on one channel, and
2. ``--concurrent`` streams with up to ``--concurrency`` of them open at once (by default
   all 1,000 at once: the server is started with that many stream slots), spread over
   ``--channels`` connections that are closed afterwards;

each stream is a 0.5-1.0 s clip of real speech sent in 100 ms chunks as fast as the
server takes them. Every ``--sample-every`` streams it reads the server's RSS, open fds and
threads from /proc. Reported: RSS growth from the end of the warm-up (the first
``--warmup`` sequential streams) to the end (target <= 50 MB), fd and thread growth (target
0: measured when the concurrent connections are closed and no stream is active), errors,
and whether any clip's transcript ever changed. ``--plot PNG`` draws the curves. Exit
status 1 when a target is missed.

    python benchmarks/server_soak.py --model exp/yesno/mono/bundle --sequential 10000 \\
        --concurrent 1000 --json --plot benchmarks/results/server_soak.png
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server_load import (  # noqa: E402
    REPO,
    ServerProcess,
    corpus_wavs,
    pcm16,
    serve_command,
    stream_once,
    stream_requests,
)  # fmt: skip

LOCAL = [("grpc.use_local_subchannel_pool", 1)]  # a channel with its own TCP connection


@dataclass(frozen=True)
class SoakPlan:
    sequential: int = 10000
    concurrent: int = 1000
    concurrency: int = 1000
    channels: int = 8
    warmup: int = 500
    sample_every: int = 100
    rss_target_mb: float = 50.0
    call_timeout_s: float = 300.0


def short_streams(files: list[Path], *, num: int, seed: int = 0) -> list[tuple[bytes, ...]]:
    """``num`` request lists (config + 100 ms LINEAR16 chunks) of 0.5-1.0 s real-audio clips."""
    from asr.audio import read_audio

    rng = np.random.default_rng(seed)
    audio = [read_audio(path) for path in files]
    streams = []
    for index in range(num):
        samples, rate = audio[index % len(audio)]
        size = int(rate * rng.uniform(0.5, 1.0))
        start = int(rng.integers(0, max(1, samples.size - size)))
        streams.append(tuple(stream_requests(rate, pcm16(samples[start : start + size]))))
    return streams


class Soak:
    def __init__(self, streams, plan: SoakPlan, server: ServerProcess | None) -> None:
        self.streams, self.plan, self.server = streams, plan, server
        self.done = 0
        self.errors: list[str] = []
        self.transcripts: dict[int, str] = {}
        self.mismatches = 0
        self.samples: list[dict] = []
        self.start = time.monotonic()

    def sample(self, phase: str) -> None:
        if self.server is None:
            return
        self.samples.append({
            "streams": self.done, "phase": phase, "t_s": round(time.monotonic() - self.start, 2),
            "rss_mb": round(self.server.rss_mb(), 2), "fds": self.server.fd_count(),
            "threads": self.server.thread_count(),
        })  # fmt: skip

    async def one(self, channel, index: int, phase: str) -> None:
        key = index % len(self.streams)
        try:
            finals, _ = await stream_once(
                channel, self.streams[key], timeout_s=self.plan.call_timeout_s
            )
        except grpc.aio.AioRpcError as err:
            self.errors.append(f"{phase} #{index}: {err.code().name}: {err.details()}")
        else:
            text = " ".join(finals)
            if self.transcripts.setdefault(key, text) != text:
                self.mismatches += 1
        self.done += 1
        if self.done % self.plan.sample_every == 0 or self.done == self.plan.warmup:
            self.sample(phase)

    async def run(self, address: str) -> dict:
        plan = self.plan
        self.sample("start")
        async with grpc.aio.insecure_channel(address) as channel:
            t0 = time.monotonic()
            for index in range(plan.sequential):
                await self.one(channel, index, "sequential")
            sequential_s = time.monotonic() - t0
            channels = [grpc.aio.insecure_channel(address, options=LOCAL)
                        for _ in range(plan.channels)]  # fmt: skip
            gate = asyncio.Semaphore(plan.concurrency)

            async def gated(index: int) -> None:
                async with gate:
                    await self.one(channels[index % len(channels)], index, "concurrent")

            t0 = time.monotonic()
            await asyncio.gather(*(gated(plan.sequential + i) for i in range(plan.concurrent)))
            concurrent_s = time.monotonic() - t0
            await asyncio.gather(*(c.close() for c in channels))
            idle = await self.settle()
        return {"sequential_s": round(sequential_s, 1), "concurrent_s": round(concurrent_s, 1),
                "idle_end": idle}  # fmt: skip

    async def settle(self, timeout_s: float = 30.0) -> bool | None:
        """Wait until no stream is active and fds/threads are back to the warm-up level."""
        if self.server is None:
            return None
        idle = await asyncio.to_thread(
            self.server.wait_stats,
            lambda s: s["active_streams"] == 0 and s["streaming_calls_active"] == 0,
            timeout_s=timeout_s,
        )
        reference = self.reference()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and reference and (
            self.server.fd_count() > reference["fds"]
            or self.server.thread_count() > reference["threads"]
        ):  # fmt: skip
            await asyncio.sleep(0.5)
        self.sample("end")
        return idle is not None

    def reference(self) -> dict | None:
        """The sample at the end of the warm-up (or the last one before it)."""
        before = [s for s in self.samples if s["streams"] <= self.plan.warmup]
        return before[-1] if before else None

    def report(self) -> dict:
        plan = self.plan
        out: dict = {
            "sequential": plan.sequential, "concurrent": plan.concurrent,
            "concurrency": plan.concurrency, "channels": plan.channels, "warmup": plan.warmup,
            "streams_done": self.done, "errors": len(self.errors),
            "error_messages": self.errors[:5], "transcript_mismatches": self.mismatches,
        }  # fmt: skip
        ref, end = self.reference(), (self.samples[-1] if self.samples else None)
        if ref and end:
            out.update({
                "rss_mb_start": self.samples[0]["rss_mb"], "rss_mb_warmup": ref["rss_mb"],
                "rss_mb_end": end["rss_mb"], "rss_mb_max": max(s["rss_mb"] for s in self.samples),
                "rss_growth_mb": round(end["rss_mb"] - ref["rss_mb"], 2),
                "fds_warmup": ref["fds"], "fds_end": end["fds"],
                "fds_max": max(s["fds"] for s in self.samples),
                "fd_growth": end["fds"] - ref["fds"],
                "threads_warmup": ref["threads"], "threads_end": end["threads"],
                "threads_max": max(s["threads"] for s in self.samples),
                "thread_growth": end["threads"] - ref["threads"],
            })  # fmt: skip
            seq = [s for s in self.samples if s["phase"] == "sequential" and s["streams"] >= ref["streams"]]  # fmt: skip
            if len(seq) >= 2:  # steady state: a straight line through RSS vs streams
                slope = np.polyfit([s["streams"] for s in seq], [s["rss_mb"] for s in seq], 1)[0]
                out["rss_slope_kb_per_1000_streams"] = round(float(slope) * 1024 * 1000, 1)
        failures = []
        if self.errors or self.mismatches:
            failures.append(f"{len(self.errors)} errors, {self.mismatches} changed transcripts")
        if "rss_growth_mb" in out:
            if out["rss_growth_mb"] > plan.rss_target_mb:
                failures.append(f"RSS grew {out['rss_growth_mb']} MB after the warm-up")
            if out["fd_growth"] > 0 or out["thread_growth"] > 0:
                failures.append(f"fds +{out['fd_growth']}, threads +{out['thread_growth']}")
        out["failures"] = failures
        out["passed"] = not failures
        return out


def plot_soak(samples: list[dict], *, warmup: int, sequential: int, out_png: Path) -> Path:
    """RSS, fds and threads against streams served, one panel each (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from asr.fileio import atomic_write

    streams = [s["streams"] for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(10, 7), sharex=True)
    for ax, key, label, color in zip(
        axes, ("rss_mb", "fds", "threads"), ("RSS (MB)", "open fds", "threads"),
        ("tab:blue", "tab:orange", "tab:green"), strict=True,
    ):  # fmt: skip
        ax.plot(streams, [s[key] for s in samples], marker=".", linewidth=1, color=color)
        ax.set_ylabel(label)
        ax.axvline(warmup, color="0.6", linestyle=":", linewidth=1)
        ax.axvline(sequential, color="0.3", linestyle="--", linewidth=1)
        ax.grid(alpha=0.3)
    axes[0].set_title(
        f"server soak: {sequential} sequential then {streams[-1] - sequential} concurrent "
        "streams (dotted: end of warm-up; dashed: concurrent phase starts)"
    )
    axes[-1].set_xlabel("streams served")
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out_png, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out_png


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="bundle to serve")
    parser.add_argument("--sequential", type=int, default=10000)
    parser.add_argument("--concurrent", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1000, help="streams open at once")
    parser.add_argument("--channels", type=int, default=8, help="connections, concurrent phase")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--sample-every", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "data" / "yesno")
    parser.add_argument("--plot", type=Path, help="write the RSS/fd/thread curves here (PNG)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    plan = SoakPlan(
        sequential=args.sequential, concurrent=args.concurrent, concurrency=args.concurrency,
        channels=args.channels, warmup=min(args.warmup, args.sequential),
        sample_every=args.sample_every,
    )  # fmt: skip
    streams = short_streams(corpus_wavs(args.corpus, 32), num=64)
    command = serve_command(args.model, max_streams=max(64, plan.concurrency),
                            device=args.device, stats_interval_s=0.5)  # fmt: skip
    server = ServerProcess(command)
    soak = Soak(streams, plan, server)
    try:
        timing = asyncio.run(soak.run(server.address))
    finally:
        alive = server.alive()
        server.stop()
    out = soak.report()
    out.update(timing)
    out["server_alive_at_end"] = alive
    out["server_faults"] = server.faults[:10]
    if server.faults or not alive:
        out["failures"].append("the server died or logged a traceback")
        out["passed"] = False
    out["load_avg"] = os.getloadavg()[0]
    if args.plot:
        out["plot"] = str(plot_soak(soak.samples, warmup=plan.warmup,
                                    sequential=plan.sequential, out_png=args.plot))  # fmt: skip
    out["samples"] = soak.samples
    print(json.dumps(out, indent=None if args.json else 2))
    return 0 if out["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
