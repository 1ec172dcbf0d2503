"""Start, run and stop the gRPC server: :func:`start_server`, :func:`serve`.

The server is ``grpc.aio`` with our Speech service, the standard health
service (``grpc.health.v1.Health``; SERVING while up, NOT_SERVING while
draining) and server reflection (``grpcurl -plaintext 127.0.0.1:50051 list``).
Limits, with defaults in :class:`ServerConfig`: messages up to
``max_message_bytes`` (10 MiB; larger ones are refused by gRPC with
RESOURCE_EXHAUSTED), ``max_streams`` concurrent streams (64; then
RESOURCE_EXHAUSTED), ``max_stream_duration_s`` of audio per stream (305 s, as
Google's; then OUT_OF_RANGE). It binds 127.0.0.1 unless told otherwise.

Security: ``tls_cert_file``/``tls_key_file`` (PEM) serve TLS; ``auth_token``
requires ``authorization: Bearer <token>`` on every Speech RPC
(:class:`server.auth.BearerTokenInterceptor`; health and reflection stay open).
A non-loopback ``host`` (anything but 127.0.0.0/8, ::1, localhost) needs both,
or :class:`ServerConfig` refuses it, unless ``insecure_allow_remote=True``
(then a loud warning is logged). Requests select models by name only
(``RecognitionConfig.model``): nothing in a request names a file.
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
import ipaddress
import json
import logging
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from asr.errors import ServerError
from server.auth import BearerTokenInterceptor, check_token
from server.scheduler import BatchScheduler, SchedulerConfig
from server.servicer import SERVICE_NAME, ServicerLimits, SpeechServicer, add_servicer

__all__ = [
    "RunningServer",
    "ServerConfig",
    "bind_problem",
    "is_loopback_host",
    "load_recognizers",
    "load_server_credentials",
    "serve",
    "start_server",
]

logger = logging.getLogger("asr.server")


@dataclass(frozen=True)
class ServerConfig:
    """Address, limits, security and scheduling of one server (``port=0``: an ephemeral port).

    ``tls_cert_file``/``tls_key_file``: PEM certificate chain and private key (both or
    neither); ``auth_token``: the bearer token clients must send (not shown in ``repr``);
    ``insecure_allow_remote``: accept a non-loopback ``host`` without TLS and a token.
    """

    host: str = "127.0.0.1"
    port: int = 50051
    max_streams: int = 64
    max_message_bytes: int = 10 * 1024 * 1024
    max_stream_duration_s: float = 305.0
    max_stream_wall_s: float | None = None  # None: max(2x, +30 s) of max_stream_duration_s
    grace_s: float = 30.0
    drain_s: float = 0.0  # at shutdown: NOT_SERVING this long before refusing new calls
    stats_interval_s: float = 0.0  # > 0: log a JSON stats line this often
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    auth_token: str | None = field(default=None, repr=False)
    insecure_allow_remote: bool = False
    web_port: int | None = None  # the browser demo (server.web_demo) on this port; None: off

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ServerError(f"port must be in 0..65535, got {self.port}")
        if self.web_port is not None and not 0 <= self.web_port <= 65535:
            raise ServerError(f"web_port must be in 0..65535, got {self.web_port}")
        if self.max_streams < 1:
            raise ServerError(f"max_streams must be >= 1, got {self.max_streams}")
        if self.max_message_bytes < 1024:
            raise ServerError(f"max_message_bytes must be >= 1024, got {self.max_message_bytes}")
        if self.max_stream_wall_s is not None and not self.max_stream_wall_s > 0:
            raise ServerError(f"max_stream_wall_s must be > 0, got {self.max_stream_wall_s}")
        if not self.max_stream_duration_s > 0:
            raise ServerError(
                f"max_stream_duration_s must be > 0, got {self.max_stream_duration_s}"
            )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ServerError(
                "TLS needs both a certificate and its private key "
                "(tls_cert_file and tls_key_file; asr serve --tls-cert and --tls-key)"
            )
        for name in ("tls_cert_file", "tls_key_file"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        if self.auth_token is not None:
            check_token(self.auth_token)
        if not is_loopback_host(self.host) and not self.insecure_allow_remote:
            missing = [
                what
                for what, ok in (("TLS", self.tls), ("a bearer token", self.auth_token))
                if not ok
            ]
            if missing:
                raise ServerError(
                    f"refusing to bind the non-loopback address {self.host!r} without "
                    f"{' and '.join(missing)}: anyone who can reach it could use the server. "
                    "Give a certificate, key and token (asr serve --tls-cert PEM --tls-key PEM "
                    "--auth-token-file FILE), bind 127.0.0.1, or accept the risk with "
                    "insecure_allow_remote (--insecure-allow-remote)"
                )


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback literals (127.0.0.0/8, ``::1``, ``[::1]``).

    Any other name is not resolved and counts as remote; so do ``""``, ``0.0.0.0``
    and ``::`` (every interface).
    """
    if host.lower() == "localhost":
        return True
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address(literal)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _read_pem(path: Path, what: str, marker: bytes) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ServerError(f"cannot read the TLS {what} {path}: {err.strerror or err}") from None
    if marker not in data:
        raise ServerError(f"{path}: not a PEM {what} (no '{marker.decode()}' line)")
    return data


def load_server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """The TLS credentials of ``config`` (None without TLS), checked before any bind.

    Missing or unreadable files, files that are not PEM, encrypted keys and a key
    that does not belong to the certificate raise :class:`ServerError`.
    """
    if config.tls_cert_file is None or config.tls_key_file is None:
        return None
    cert = _read_pem(config.tls_cert_file, "certificate", b"-----BEGIN CERTIFICATE-----")
    key = _read_pem(config.tls_key_file, "private key", b"PRIVATE KEY-----")
    if b"ENCRYPTED" in key:
        raise ServerError(f"{config.tls_key_file}: encrypted private keys are not supported")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(config.tls_cert_file, config.tls_key_file, password=b"")
    except ssl.SSLError as err:
        reason = err.reason or str(err)
        if "MISMATCH" in reason.upper():
            raise ServerError(
                f"the private key {config.tls_key_file} does not belong to the certificate "
                f"{config.tls_cert_file}"
            ) from None
        raise ServerError(
            f"cannot use the TLS certificate {config.tls_cert_file} with the key "
            f"{config.tls_key_file}: {reason}"
        ) from None
    except OSError as err:
        raise ServerError(f"cannot read the TLS files: {err}") from None
    return grpc.ssl_server_credentials([(key, cert)])


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
        self.web = None  # the running browser demo (server.web_demo), if any

    @property
    def web_port(self) -> int | None:
        return None if self.web is None else self.web.port

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.port}"

    @property
    def web_url(self) -> str | None:
        """The browser demo's page (``server.web_demo``), or None when it is off."""
        if self.web is None:
            return None
        scheme = "https" if self.config.tls else "http"
        host = self.config.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.web.port}/"

    def stats(self) -> dict[str, Any]:
        """Scheduler stats plus streams in progress and the process's CPU time and RSS."""
        out = self.scheduler.stats()
        out["streaming_calls"] = self.servicer.num_streaming_calls  # since the start
        out["streaming_calls_active"] = self.servicer.num_streams
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
        if self.web is not None:
            await self.web.stop()
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
    credentials = load_server_credentials(config)  # file errors before anything starts
    if not is_loopback_host(config.host) and not (credentials and config.auth_token):
        logger.warning(
            "INSECURE: serving %s on the non-loopback address %s without %s "
            "(insecure_allow_remote): anyone who can reach it can use it",
            SERVICE_NAME,
            config.host,
            " and ".join(
                w for w, ok in (("TLS", credentials), ("a token", config.auth_token)) if not ok
            ),
        )
    scheduler = BatchScheduler(config.scheduler)
    limits = ServicerLimits(
        max_streams=config.max_streams,
        max_stream_duration_s=config.max_stream_duration_s,
        max_stream_wall_s=config.max_stream_wall_s,
    )
    servicer = SpeechServicer(recognizers, scheduler, limits)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
        interceptors=[BearerTokenInterceptor(token=config.auth_token)]
        if config.auth_token
        else None,
    )
    add_servicer(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{config.host}:{config.port}"
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError:  # grpc: "Failed to bind to address ..."
        port = 0
    if port == 0:
        why = bind_problem(config.host, config.port) or "gRPC could not bind it"
        raise ServerError(f"cannot bind {address}: {why}")
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
    if config.web_port is not None:
        from server.web_demo import WebDemo, start_web_demo

        demo = WebDemo(
            recognizers,
            scheduler,
            limits,
            max_message_bytes=config.max_message_bytes,
            auth_token=config.auth_token,
        )
        try:
            running.web = await start_web_demo(
                demo,
                config.host,
                config.web_port,
                tls_cert_file=config.tls_cert_file,
                tls_key_file=config.tls_key_file,
            )
        except BaseException:
            await running.stop(0)
            raise
        logger.info("browser demo on %s", running.web_url)
    if config.stats_interval_s > 0:
        running._stats_task = asyncio.get_running_loop().create_task(
            running._log_stats(config.stats_interval_s)
        )
    logger.info(
        "serving %s on %s:%d (%s, %s; models: %s)",
        SERVICE_NAME,
        config.host,
        port,
        "TLS" if credentials else "plaintext",
        "bearer token required" if config.auth_token else "no token",
        ", ".join(recognizers),
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


def bind_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be bound now (asked of the OS with a plain socket, closed at
    once), and what to do; None when it can (or ``port`` is 0, any free port)."""
    import errno
    import socket

    if port == 0:
        return None
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        infos = socket.getaddrinfo(literal, port, type=socket.SOCK_STREAM)
    except OSError as err:
        return f"cannot resolve {host!r}: {err}"
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # as gRPC binds: connections of an earlier server in TIME_WAIT do not count
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return (
                    "address in use (another server is listening there: stop it, or choose "
                    "another port with --port)"
                )
            if err.errno == errno.EACCES:
                return "permission denied (ports below 1024 need privileges: choose --port)"
            if err.errno == errno.EADDRNOTAVAIL:
                return "no such address on this machine (check --host)"
            return err.strerror or str(err)
    return None


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        return None
    return None
