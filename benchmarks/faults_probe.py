"""The probe of ``server_faults.py``: well-formed real-audio streams at real-time pace before,
during and after the faults (final latency, unchanged transcripts)."""

from __future__ import annotations

import asyncio
import time

import grpc
from faults_common import bounded
from server_load import Clip, percentile, stream_once, stream_requests


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
        await bounded(range(count), self.concurrency, lambda _: self.one(phase))

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
