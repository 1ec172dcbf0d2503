"""Scenarios c) and d) of ``server_faults.py``: slow clients (one sample a second, and raw TCP
clients sending one byte a second), and a burst of 4x max-streams connections at once."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import grpc
from faults_common import EXHAUSTED, LOCAL, OK, Case, FaultPlan, in_thread, run_case
from server_load import Clip, audio_request, config_request, stream_requests


async def _slow_client(channel, clip: Clip, seconds: float, timeout_s: float) -> str:
    samples = [clip.pcm[i : i + 2] for i in range(0, 2 * int(seconds), 2)]
    case = Case("slow", (config_request(clip.sampling_rate), *map(audio_request, samples)), OK,
                gap_s=1.0)  # fmt: skip
    return (await in_thread(run_case, channel, case, timeout_s))[0]


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
    tasks = [asyncio.ensure_future(in_thread(one, i)) for i in range(total)]
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
