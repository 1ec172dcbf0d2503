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

The scenarios live in ``faults_malformed.py`` (a), ``faults_vanish.py`` (b) and
``faults_slow.py`` (c, d), the probe in ``faults_probe.py``, what they share in
``faults_common.py``; this module runs them in order and judges the result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faults_common import OK, Case, FaultPlan, bounded, in_thread, run_case  # noqa: E402
from faults_malformed import malformed_cases, tally  # noqa: E402
from faults_probe import Probe  # noqa: E402
from faults_slow import burst_phase, slow_phase  # noqa: E402
from faults_vanish import vanish_phase  # noqa: E402
from server_load import (  # noqa: E402
    REPO,
    Clip,
    ServerProcess,
    audio_request,
    config_request,
    corpus_wavs,
    load_clips,
    serve_command,
    stream_requests,
)  # fmt: skip

__all__ = [
    "FaultPlan", "Probe", "audio_request", "burst_phase", "config_request", "load_clips",
    "malformed_cases", "run_faults", "slow_phase", "vanish_phase",
]  # fmt: skip


# ---- the whole run


async def _idle(server: ServerProcess | None, timeout_s: float = 30.0) -> dict:
    """Wait for a stats line with no stream in progress; what the server said, and when."""
    if server is None:
        return {"checked": False}
    start = time.monotonic()
    stats = await asyncio.to_thread(
        server.wait_stats,
        lambda s: s["active_streams"] == 0 and s["streaming_calls_active"] == 0,
        timeout_s=timeout_s,
    )
    last = stats or server.stats() or {}
    return {
        "checked": True,
        "idle": stats is not None,
        "seconds": round(time.monotonic() - start, 2),
        "active_streams": last.get("active_streams"),
        "streaming_calls_active": last.get("streaming_calls_active"),
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
            return await in_thread(run_case, sync_channel, case, plan.call_timeout_s)

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
            bounded([c for c in cases if not c.gap_s], plan.malformed_concurrency, call),
            bounded(realtime, plan.realtime_concurrency, call),
        )  # fmt: skip
        ordered = [c for c in cases if not c.gap_s] + realtime
        out["malformed"] = tally(ordered, got[0] + got[1])
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
