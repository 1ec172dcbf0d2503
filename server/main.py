"""Start, run and stop the gRPC server: :func:`start_server`, :func:`serve`.

The server is ``grpc.aio`` with our Speech service, the standard health
service (``grpc.health.v1.Health``; SERVING while up, NOT_SERVING while
draining) and server reflection (``grpcurl -plaintext 127.0.0.1:50051 list``).
Limits, with defaults in :class:`ServerConfig`: messages up to
``max_message_bytes`` (10 MiB; larger ones are refused by gRPC with
RESOURCE_EXHAUSTED), ``max_streams`` concurrent streams (64; then
RESOURCE_EXHAUSTED), ``max_stream_duration_s`` of audio per stream (305 s, as
Google's; then OUT_OF_RANGE). It binds 127.0.0.1 unless told otherwise.
Shutdown is graceful: health goes NOT_SERVING, new calls are refused, calls in
flight get ``grace_s`` seconds to finish.

>>> import asyncio
>>> async def main(recognizer):  # doctest: +SKIP
...     running = await start_server({"default": recognizer}, ServerConfig(port=0))
...     print(running.port)
...     await running.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from asr.errors import ServerError
from server.scheduler import BatchScheduler, SchedulerConfig
from server.servicer import SERVICE_NAME, ServicerLimits, SpeechServicer, add_servicer

__all__ = ["RunningServer", "ServerConfig", "load_recognizers", "serve", "start_server"]

logger = logging.getLogger("asr.server")


@dataclass(frozen=True)
class ServerConfig:
    """Address, limits and scheduling of one server (``port=0``: an ephemeral port)."""

    host: str = "127.0.0.1"
    port: int = 50051
    max_streams: int = 64
    max_message_bytes: int = 10 * 1024 * 1024
    max_stream_duration_s: float = 305.0
    grace_s: float = 30.0
    drain_s: float = 0.0  # at shutdown: NOT_SERVING this long before refusing new calls
    stats_interval_s: float = 0.0  # > 0: log a JSON stats line this often
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ServerError(f"port must be in 0..65535, got {self.port}")
        if self.max_streams < 1:
            raise ServerError(f"max_streams must be >= 1, got {self.max_streams}")
        if self.max_message_bytes < 1024:
            raise ServerError(f"max_message_bytes must be >= 1024, got {self.max_message_bytes}")
        if not self.max_stream_duration_s > 0:
            raise ServerError(
                f"max_stream_duration_s must be > 0, got {self.max_stream_duration_s}"
            )


class RunningServer:
    """A started server: its bound ``port``, :meth:`stats` and :meth:`stop`."""

    def __init__(self, *, server, servicer, scheduler, health_servicer, port, config) -> None:
        self.server = server
        self.servicer: SpeechServicer = servicer
        self.scheduler: BatchScheduler = scheduler
        self.health = health_servicer
        self.port: int = port
        self.config: ServerConfig = config
        self._stats_task: asyncio.Task | None = None
        self._stopped = False

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.port}"

    def stats(self) -> dict[str, Any]:
        """Scheduler stats plus streams in progress and the process's CPU time and RSS."""
        out = self.scheduler.stats()
        out["streaming_calls"] = self.servicer.num_streams
        times = os.times()
        out["cpu_s"] = round(times.user + times.system, 3)
        out["rss_mb"] = _rss_mb()
        return out

    async def stop(self, grace_s: float | None = None, *, drain_s: float | None = None) -> None:
        """Drain and stop.

        Health goes NOT_SERVING and new streams get UNAVAILABLE; after ``drain_s`` (so that
        load balancers notice) gRPC refuses new calls and the calls in flight get ``grace_s``
        seconds to finish before they are cancelled.
        """
        if self._stopped:
            return
        self._stopped = True
        grace = self.config.grace_s if grace_s is None else grace_s
        drain = self.config.drain_s if drain_s is None else drain_s
        self.servicer.accepting = False
        await self.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._stats_task is not None:
            self._stats_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stats_task
        if drain > 0:
            await asyncio.sleep(drain)
        await self.server.stop(grace)
        await self.scheduler.stop()
        logger.info("stopped: %s", json.dumps(self.stats()))

    async def wait(self) -> None:
        await self.server.wait_for_termination()

    async def _log_stats(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            logger.info("stats %s", json.dumps(self.stats()))


async def start_server(recognizers: Mapping[str, Any], config: ServerConfig | None = None):
    """Start serving ``recognizers`` (model name -> Recognizer; the first is the default)."""
    config = config or ServerConfig()
    scheduler = BatchScheduler(config.scheduler)
    limits = ServicerLimits(
        max_streams=config.max_streams, max_stream_duration_s=config.max_stream_duration_s
    )
    servicer = SpeechServicer(recognizers, scheduler, limits)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
    )
    add_servicer(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(f"{config.host}:{config.port}")
    if port == 0:
        raise ServerError(f"cannot bind {config.host}:{config.port} (in use or not permitted)")
    scheduler.start()
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    running = RunningServer(
        server=server,
        servicer=servicer,
        scheduler=scheduler,
        health_servicer=health_servicer,
        port=port,
        config=config,
    )
    if config.stats_interval_s > 0:
        running._stats_task = asyncio.get_running_loop().create_task(
            running._log_stats(config.stats_interval_s)
        )
    logger.info(
        "serving %s on %s:%d (models: %s)", SERVICE_NAME, config.host, port, ", ".join(recognizers)
    )
    return running


async def serve(
    recognizers: Mapping[str, Any],
    config: ServerConfig | None = None,
    *,
    stop_event: asyncio.Event | None = None,
    on_started=None,
) -> None:
    """Serve until ``stop_event`` is set (or forever), then shut down gracefully.

    ``on_started(running_server)`` is called once the port is bound.
    """
    running = await start_server(recognizers, config)
    if on_started is not None:
        on_started(running)
    try:
        if stop_event is None:
            await running.wait()
        else:
            await stop_event.wait()
    finally:
        await running.stop()


def load_recognizers(models: Mapping[str, str | os.PathLike], *, device: str = "auto"):
    """Model name -> bundle directory ==> model name -> loaded Recognizer (order kept)."""
    from asr.recognizer import Recognizer

    if not models:
        raise ServerError("no model given: pass at least one bundle directory")
    return {name: Recognizer.from_dir(path, device=device) for name, path in models.items()}


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        return None
    return None
