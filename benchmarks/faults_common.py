"""What the fault scenarios of ``server_faults.py`` share: the plan, a case (requests as bytes
and the status it must get), and running calls on client threads with bounded concurrency."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from server_load import STREAM, pb

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


@dataclass(frozen=True)
class Case:
    kind: str
    requests: tuple[bytes, ...]
    expected: str
    unary: bool = False
    gap_s: float = 0.0  # pause between requests (real-time pacing)


CLIENT_POOL = ThreadPoolExecutor(max_workers=64, thread_name_prefix="client")
LOCAL = [("grpc.use_local_subchannel_pool", 1)]  # a channel with its own TCP connection


def paced(requests, gap_s: float, hold: threading.Event | None = None):
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
            requests = paced(case.requests, case.gap_s, hold)
            for raw in channel.stream_stream(STREAM)(requests, timeout=timeout_s):
                pb.StreamingRecognizeResponse.FromString(raw)
        return OK, ""
    except grpc.RpcError as err:
        return err.code().name, err.details() or ""


async def in_thread(func, *args):
    return await asyncio.get_running_loop().run_in_executor(CLIENT_POOL, func, *args)


async def bounded(items, concurrency: int, func):
    gate = asyncio.Semaphore(concurrency)

    async def one(item):
        async with gate:
            return await func(item)

    return await asyncio.gather(*(one(item) for item in items))
