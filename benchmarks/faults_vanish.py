"""Scenario b) of ``server_faults.py``: clients that vanish mid-stream (calls cancelled,
channels closed abruptly, deadlines expiring, client subprocesses SIGKILLed mid-stream and
after half-close)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path

import grpc
import numpy as np
from faults_common import LOCAL, FaultPlan, bounded
from server_load import REPO, STREAM, Clip, audio_request, config_request, stream_requests

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

    codes = await bounded(jobs, plan.vanish_concurrency, run)
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
