"""The batching scheduler: one acoustic-model call per tick for all active streams.

The scheduler owns timing, fairness and events; the recognition itself is the
recognizer's. Every tick it gathers the audio that arrived for each active stream,
in whole units of ``unit_s`` (100 ms; at most ``max_chunk_s`` per stream, so no
stream starves the others), and in ONE worker thread, one unit per stream per
round, hands the units of all streams of one recognizer to
:meth:`asr.recognizer.Recognizer.decode_streams` (features of every stream, one
acoustic-model call for all of them, every search advanced), then checks endpoints
and collects interim/final results as :class:`StreamEvent` objects for the servicer.

While the worker computes, the event loop keeps receiving audio, so the next batch is
bigger under load (dynamic batching). All ``Stream`` objects are touched only
by the single worker thread; the event loop touches only the slots' pending
audio and queues.

>>> import asyncio
>>> async def demo(recognizer, samples):  # doctest: +SKIP
...     scheduler = BatchScheduler(SchedulerConfig(tick_s=0.02))
...     scheduler.start()
...     slot = scheduler.open(recognizer, sampling_rate=16000, interim_results=True)
...     scheduler.push(slot, samples)
...     scheduler.finish(slot)
...     while (event := await slot.events.get()).kind != "final":
...         pass
...     await scheduler.stop()
...     return event.result.text
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import itertools
import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from asr.errors import AsrError, ServerError
from asr.recognizer import AcousticModelFailure

__all__ = [
    "release_stream",
    "LATENCY_BUCKETS_MS",
    "BatchScheduler",
    "LatencyHistogram",
    "SchedulerConfig",
    "StreamEvent",
    "StreamSlot",
]

logger = logging.getLogger("asr.server")

#: Upper bounds (ms) of the latency histogram buckets; the last bucket is open.
LATENCY_BUCKETS_MS: tuple[float, ...] = (10, 25, 50, 100, 150, 250, 500, 1000, 2500)


@dataclass(frozen=True)
class SchedulerConfig:
    """``tick_s``: least time between two batches (audio gathers meanwhile);
    ``unit_s``: the audio of each stream is decoded in units of exactly this length
    (the last one may be shorter), checking endpoints and interim results after each,
    so results do not depend on how audio arrives or is batched;
    ``max_chunk_s``: most new audio per stream per tick (whole units, in rounds of one
    acoustic-model call each, to catch up after a backlog);
    ``trim_after_peak``: when the last stream closes after at least this many were open
    at once, freed heap memory is handed back to the OS (glibc ``malloc_trim``; 0: never),
    so that a burst of streams does not leave the process's RSS at its peak for ever
    (1,000 streams at once: +100 MB RSS kept without, +20 MB with)."""

    tick_s: float = 0.02
    unit_s: float = 0.1
    max_chunk_s: float = 0.5
    trim_after_peak: int = 32

    def __post_init__(self) -> None:
        if not self.tick_s >= 0:
            raise ServerError(f"tick_s must be >= 0, got {self.tick_s}")
        if not self.unit_s > 0:
            raise ServerError(f"unit_s must be > 0, got {self.unit_s}")
        if not self.max_chunk_s >= self.unit_s:
            raise ServerError(f"max_chunk_s must be >= unit_s, got {self.max_chunk_s}")
        if self.trim_after_peak < 0:
            raise ServerError(f"trim_after_peak must be >= 0, got {self.trim_after_peak}")


@dataclass(frozen=True)
class StreamEvent:
    """What the scheduler tells a stream's servicer.

    ``kind``: ``"interim"`` / ``"final"`` (``result`` set), ``"end_of_single_utterance"``,
    ``"done"`` (no more events: input finished and flushed, or single utterance over),
    ``"error"`` (``message`` set; ``internal`` for a server fault rather than bad input).
    ``end_time_s``: stream time (seconds of audio consumed) when the event was made.
    """

    kind: str
    result: Any = None
    end_time_s: float = 0.0
    stability: float = 0.0
    message: str = ""
    internal: bool = False


class LatencyHistogram:
    """Counts of latencies (ms) in :data:`LATENCY_BUCKETS_MS` buckets, plus sum and max."""

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        self.total = 0
        self.sum_ms = 0.0
        self.max_ms = 0.0

    def add(self, latency_ms: float) -> None:
        index = int(np.searchsorted(LATENCY_BUCKETS_MS, latency_ms, side="left"))
        self.counts[index] += 1
        self.total += 1
        self.sum_ms += latency_ms
        self.max_ms = max(self.max_ms, latency_ms)

    def as_dict(self) -> dict[str, Any]:
        labels = [f"le_{int(b)}" for b in LATENCY_BUCKETS_MS] + ["inf"]
        return {
            "count": self.total,
            "mean_ms": round(self.sum_ms / self.total, 2) if self.total else 0.0,
            "max_ms": round(self.max_ms, 2),
            "buckets": dict(zip(labels, self.counts, strict=True)),
        }


@dataclass(eq=False)
class StreamSlot:
    """One active stream: its ``Stream``, pending audio and outgoing events."""

    recognizer: Any
    stream: Any
    sampling_rate: int
    interim_results: bool
    single_utterance: bool
    slot_id: int
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    pending: deque = field(default_factory=deque)  # (arrival monotonic s, float32 samples)
    num_samples_received: int = 0
    num_samples_consumed: int = 0
    input_finished: bool = False
    finish_time: float | None = None
    closed: bool = False  # no more work: done, failed or abandoned
    last_interim_words: tuple[str, ...] = ()

    @property
    def received_s(self) -> float:
        """Seconds of audio received so far (at the client's rate)."""
        return self.num_samples_received / self.sampling_rate


@dataclass
class _Job:
    slot: StreamSlot
    units: list  # float32 sample arrays, each unit_s long except maybe the last
    finish: bool
    oldest_arrival: float | None
    start_samples: int  # samples of the stream consumed before this job
    frames: np.ndarray | None = None
    events: list[StreamEvent] = field(default_factory=list)
    failed: bool = False
    ended: bool = False  # single utterance over: later units are dropped
    done_samples: int = 0
    delivered: bool = False  # its events already went out (finishing jobs, before the batch)

    @property
    def num_samples(self) -> int:
        return sum(unit.size for unit in self.units)


class BatchScheduler:
    """Runs the compute of all streams in batches in one worker thread.

    Lifecycle: :meth:`start` (inside a running event loop), then per stream
    :meth:`open`, :meth:`push` (float32 samples in [-1, 1]), :meth:`finish` when the
    client half-closes, read ``slot.events`` until a ``"done"`` or ``"error"`` event,
    and :meth:`close` in every case (also when the client vanished); :meth:`stop` at
    shutdown.
    """

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        self.config = config or SchedulerConfig()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr-batch")
        self._offline = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr-offline")
        self._slots: dict[int, StreamSlot] = {}
        self._peak_active = 0  # most slots open at once since memory was last handed back
        self.memory_trims = 0
        self._ids = itertools.count(1)
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._stats_lock = threading.Lock()
        self.streams_opened = 0
        self.num_batches = 0
        self.num_frames_scored = 0
        self.audio_s = 0.0
        self.compute_s = 0.0
        self.interim_latency = LatencyHistogram()
        self.final_latency = LatencyHistogram()

    # ---- lifecycle

    def start(self) -> None:
        """Start the tick loop on the running event loop."""
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="asr-scheduler")

    async def stop(self) -> None:
        """Stop the tick loop and the worker threads (streams still open get no more events)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._executor.shutdown(wait=True)
        self._offline.shutdown(wait=True)

    # ---- per-stream API (event-loop thread)

    def open(
        self,
        recognizer: Any,
        *,
        sampling_rate: int,
        interim_results: bool = False,
        single_utterance: bool = False,
    ) -> StreamSlot:
        """Register a new stream of audio at ``sampling_rate`` Hz for ``recognizer``."""
        slot = StreamSlot(
            recognizer=recognizer,
            stream=recognizer.stream(),
            sampling_rate=int(sampling_rate),
            interim_results=bool(interim_results),
            single_utterance=bool(single_utterance),
            slot_id=next(self._ids),
        )
        self._slots[slot.slot_id] = slot
        self._peak_active = max(self._peak_active, len(self._slots))
        self.streams_opened += 1
        return slot

    def push(self, slot: StreamSlot, samples: np.ndarray) -> None:
        """Queue ``samples`` (num_samples,) float32 for the next tick."""
        if slot.closed or slot.input_finished or samples.size == 0:
            return
        slot.pending.append((time.monotonic(), samples))
        slot.num_samples_received += int(samples.size)
        self._notify()

    def finish(self, slot: StreamSlot) -> None:
        """The client sent its last audio: flush and finalize once it is consumed."""
        if not slot.input_finished:
            slot.input_finished = True
            slot.finish_time = time.monotonic()
            self._notify()

    def close(self, slot: StreamSlot) -> None:
        """Forget ``slot`` (idempotent); a batch in flight drops its results."""
        slot.closed = True
        slot.pending.clear()
        self._slots.pop(slot.slot_id, None)
        trim_after = self.config.trim_after_peak
        if not self._slots and trim_after and self._peak_active >= trim_after:
            self._peak_active = 0
            with contextlib.suppress(RuntimeError):  # the worker is shut down: no matter
                self._executor.submit(self._release_memory)

    def _release_memory(self) -> None:
        """In the worker thread: hand freed heap memory back to the OS, where libc can."""
        if _malloc_trim() is not None:
            _malloc_trim()(0)
            self.memory_trims += 1

    @property
    def num_active(self) -> int:
        return len(self._slots)

    async def transcribe(self, recognizer: Any, samples: np.ndarray, *, sampling_rate: int):
        """Offline recognition of a whole clip in the offline worker thread."""
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        result = await loop.run_in_executor(
            self._offline,
            lambda: recognizer.transcribe(samples, sampling_rate=sampling_rate),
        )
        with self._stats_lock:
            self.compute_s += time.perf_counter() - start
            self.audio_s += samples.size / sampling_rate
        return result

    def stats(self) -> dict[str, Any]:
        """Active streams, totals, real-time factor and latency histograms."""
        with self._stats_lock:
            return {
                "active_streams": self.num_active,
                "streams_opened": self.streams_opened,
                "memory_trims": self.memory_trims,
                "batches": self.num_batches,
                "frames_scored": self.num_frames_scored,
                "audio_s": round(self.audio_s, 3),
                "compute_s": round(self.compute_s, 3),
                "rtf": round(self.compute_s / self.audio_s, 4) if self.audio_s else None,
                "interim_latency_ms": self.interim_latency.as_dict(),
                "final_latency_ms": self.final_latency.as_dict(),
            }

    # ---- the tick loop

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._tick()
            except Exception as err:  # a fault of ours: fail the active streams, keep the loop
                logger.exception("scheduler tick failed")
                for slot in list(self._slots.values()):
                    if not slot.closed:
                        slot.closed = True
                        slot.events.put_nowait(_error(f"internal error: {err}", internal=True))

    async def _tick(self) -> None:
        jobs = self._gather()
        if not jobs:
            return
        start = time.perf_counter()
        loop = asyncio.get_running_loop()

        def deliver_early(done: list[_Job]) -> None:  # worker thread -> event loop
            loop.call_soon_threadsafe(self._deliver, done)

        try:
            await loop.run_in_executor(self._executor, self._compute, jobs, deliver_early)
        except Exception as err:  # the worker itself failed: fail the batch, keep serving
            for job in jobs:
                job.events = [_error(f"internal error: {err}", internal=True)]
        elapsed = time.perf_counter() - start
        self._dispatch(jobs, elapsed=elapsed)
        if any(slot.pending or _needs_finish(slot) for slot in self._slots.values()):
            self._wake.set()
        if elapsed < self.config.tick_s:
            await asyncio.sleep(self.config.tick_s - elapsed)

    def _gather(self) -> list[_Job]:
        jobs = []
        for slot in list(self._slots.values()):
            if slot.closed:
                continue
            unit = max(1, int(round(self.config.unit_s * slot.sampling_rate)))
            max_units = max(1, int(self.config.max_chunk_s / self.config.unit_s + 1e-9))
            available = sum(samples.size for _, samples in slot.pending)
            if not slot.input_finished:
                available = min(available // unit, max_units) * unit
            else:
                available = min(available, max_units * unit)
            parts, taken, oldest = [], 0, None
            while taken < available:
                arrival, samples = slot.pending[0]
                oldest = arrival if oldest is None else oldest
                room = available - taken
                if samples.size > room:
                    parts.append(samples[:room])
                    slot.pending[0] = (arrival, samples[room:])
                    taken += room
                    break
                parts.append(samples)
                taken += samples.size
                slot.pending.popleft()
            finish = slot.input_finished and not slot.pending
            if not parts and not finish:
                continue
            chunk = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
            units = [chunk[i : i + unit] for i in range(0, chunk.size, unit)]
            start_samples = slot.num_samples_consumed
            slot.num_samples_consumed += taken
            if finish:
                slot.closed = True  # its last job: flushed below, then "done"
            jobs.append(
                _Job(slot=slot, units=units, finish=finish, oldest_arrival=oldest,
                     start_samples=start_samples)
            )  # fmt: skip
        return jobs

    def _dispatch(self, jobs: list[_Job], *, elapsed: float) -> None:
        audio_s = sum(job.num_samples / job.slot.sampling_rate for job in jobs)
        with self._stats_lock:
            self.num_batches += 1
            self.compute_s += elapsed
            self.audio_s += audio_s
        self._deliver(jobs)

    def _deliver(self, jobs: list[_Job]) -> None:
        """Event loop: hand each job's events to its stream (once), recording latencies."""
        jobs = [job for job in jobs if not job.delivered]
        now = time.monotonic()
        with self._stats_lock:
            for job in jobs:
                job.delivered = True
                for event in job.events:
                    if event.kind == "interim" and job.oldest_arrival is not None:
                        self.interim_latency.add(1000.0 * (now - job.oldest_arrival))
                    elif event.kind == "final" and job.finish and job.slot.finish_time:
                        self.final_latency.add(1000.0 * (now - job.slot.finish_time))
        for job in jobs:
            slot = job.slot
            if slot.slot_id not in self._slots and not job.finish:
                continue  # abandoned while computing
            for event in job.events:
                slot.events.put_nowait(event)
            if any(e.kind in ("done", "error") for e in job.events):
                slot.closed = True

    # ---- the worker thread

    def _compute(self, jobs: list[_Job], deliver_early=None) -> None:
        """The streams whose client has finished first (their final results go out through
        ``deliver_early`` before the rest of the batch is computed: the final latency users
        wait for does not include the other streams' work), then the others."""
        finishing = [job for job in jobs if job.finish]
        others = [job for job in jobs if not job.finish]
        self._compute_group(finishing)
        if finishing and others and deliver_early is not None:
            deliver_early(finishing)
        self._compute_group(others)

    def _compute_group(self, jobs: list[_Job]) -> None:
        """Rounds of one unit per stream: features, one scoring call per model, decoder steps."""
        num_rounds = max((len(job.units) for job in jobs), default=0)
        for index in range(num_rounds):
            self._round([job for job in jobs if index < len(job.units)], index)
        for job in jobs:
            if job.finish and not (job.failed or job.ended):
                self._finish(job)

    def _round(self, jobs: list[_Job], index: int) -> None:
        """One unit of every job's stream, each recognizer's streams in one batch."""
        groups: dict[int, list[_Job]] = {}
        active = []
        for job in jobs:
            if job.failed or job.ended:
                continue
            active.append(job)
            groups.setdefault(id(job.slot.recognizer), []).append(job)
        for group in groups.values():
            self._decode_group(group, index)
        for job in active:
            if not job.failed:
                job.done_samples += job.units[index].size
                self._collect(job, last=index == len(job.units) - 1)

    def _decode_group(self, group: list[_Job], index: int) -> None:
        recognizer = group[0].slot.recognizer
        try:
            batch = recognizer.decode_streams(
                [job.slot.stream for job in group],
                [job.units[index] for job in group],
                sampling_rates=[job.slot.sampling_rate for job in group],
            )
        except Exception as err:  # the recognizer itself failed: fail its streams
            for job in group:
                job.failed, job.events = True, [_error(f"internal error: {err}", internal=True)]
            return
        with self._stats_lock:
            self.num_frames_scored += batch.num_frames_scored
        for job, err in zip(group, batch.errors, strict=True):
            if err is not None:
                job.failed, job.events = True, [_stream_error(err)]

    def _collect(self, job: _Job, *, last: bool) -> None:
        """Endpoint and interim checks for one stream after one unit's decoder step."""
        slot, stream = job.slot, job.slot.stream
        end_s = (job.start_samples + job.done_samples) / slot.sampling_rate
        try:
            if stream.is_endpoint():
                result = stream.finalize()
                slot.last_interim_words = ()
                if slot.single_utterance:
                    job.events.append(StreamEvent("end_of_single_utterance", end_time_s=end_s))
                    job.events.append(StreamEvent("final", result, end_time_s=end_s))
                    job.events.append(StreamEvent("done", end_time_s=end_s))
                    job.ended = True
                else:
                    if result.text:
                        job.events.append(StreamEvent("final", result, end_time_s=end_s))
                    stream.reset()
            elif slot.interim_results and last and not job.finish:
                result = stream.partial()
                words = tuple(result.text.split())
                if words and words != slot.last_interim_words:
                    stability = _stability(slot.last_interim_words, words)
                    slot.last_interim_words = words
                    job.events.append(
                        StreamEvent("interim", result, end_time_s=end_s, stability=stability)
                    )
        except AsrError as err:
            job.failed, job.events = True, [_error(str(err))]
        except Exception as err:
            job.failed, job.events = True, [_error(f"internal error: {err}", internal=True)]

    def _finish(self, job: _Job) -> None:
        """The client's audio is all decoded: flush, final result, done."""
        slot = job.slot
        end_s = (job.start_samples + job.done_samples) / slot.sampling_rate
        try:
            result = slot.stream.finalize()
            if result.text:
                job.events.append(StreamEvent("final", result, end_time_s=end_s))
            job.events.append(StreamEvent("done", end_time_s=end_s))
        except AsrError as err:
            job.failed, job.events = True, [_error(str(err))]
        except Exception as err:
            job.failed, job.events = True, [_error(f"internal error: {err}", internal=True)]


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None (another C library, or no symbol table)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def _needs_finish(slot: StreamSlot) -> bool:
    return slot.input_finished and not slot.closed


def _error(message: str, internal: bool = False) -> StreamEvent:
    return StreamEvent("error", message=message, internal=internal)


def _stream_error(err: BaseException) -> StreamEvent:
    """The event for what stopped one stream in a batch: bad input (an ``AsrError``), the
    acoustic model's failure, or another fault of ours."""
    if isinstance(err, AsrError):
        return _error(str(err))
    if isinstance(err, AcousticModelFailure):
        return _error(str(err), internal=True)
    return _error(f"internal error: {err}", internal=True)


def _stability(previous: tuple[str, ...], current: tuple[str, ...]) -> float:
    """Share of ``current``'s words already in the previous interim (same prefix), in [0.1, 0.9]."""
    shared = 0
    for old, new in zip(previous, current, strict=False):
        if old != new:
            break
        shared += 1
    return float(min(0.9, max(0.1, shared / len(current))))


async def release_stream(
    scheduler: Any, slot: StreamSlot | None, reader: asyncio.Task | None
) -> None:
    """The end of every stream (gRPC or WebSocket): cancel the task reading its client's
    audio, if still running, and close its slot on ``scheduler``, if one was opened."""
    if reader is not None and not reader.done():
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
    if slot is not None:
        scheduler.close(slot)
