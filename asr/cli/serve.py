"""``asr serve --model BUNDLE``: the gRPC streaming recognition server.

Example::

    asr serve --model exp/an4/tri2/bundle --port 50051
    asr serve --model default=exp/an4/dnn/bundle --model digits=exp/fsdd/mono/bundle
    asr serve --model exp/an4/tri2/bundle --host 0.0.0.0 \
        --tls-cert server.pem --tls-key server.key --auth-token-file token.txt

Clients select a model with ``RecognitionConfig.model`` (empty: the first one).
Ctrl-C or SIGTERM drains gracefully: health NOT_SERVING, streams in flight finish
(a server started with ``asr serve ... &`` stops with ``kill %1``).
A port already taken is one line and exit 2, checked before the models load.
The periodic JSON stats line is logged only when asked (``--stats-interval S``) or when
stderr, where it goes, is not a terminal (a service's log): 60 s then.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

EPILOG = """security: the server binds 127.0.0.1 by default. Binding any other address
(not 127.0.0.0/8, ::1 or localhost) requires TLS (--tls-cert, --tls-key) AND a bearer
token (--auth-token-file, or the ASR_AUTH_TOKEN environment variable); without both
it refuses to start (exit 2) unless --insecure-allow-remote is given. With a token,
every Speech RPC needs the metadata 'authorization: Bearer <token>' (else
UNAUTHENTICATED); the health service and server reflection stay open. Requests
select models by name only (RecognitionConfig.model): nothing in a request names a file.

The server speaks google.cloud.speech.v1.Speech (Recognize, StreamingRecognize), the
standard grpc.health.v1.Health service and server reflection (grpcurl -plaintext HOST:PORT list).

stopping: Ctrl-C, or SIGTERM (`kill PID`, `kill %1` for `asr serve ... &`) drains: health
goes NOT_SERVING, new streams are refused, streams in flight get --grace-s to finish.

examples:
  asr serve --model exp/yesno/mono/bundle &     # then: asr stream FILE; stop it: kill %1
  asr serve --model default=exp/an4/dnn/bundle --model digits=exp/fsdd/mono/bundle --port 50052
  asr serve --model exp/an4/tri2/bundle --stats-interval 10 2>>server.log &
  # a remote server (TLS, and a token file readable by you only):
  python -c 'import secrets; print(secrets.token_urlsafe(32))' > token.txt; chmod 600 token.txt
  asr serve --model BUNDLE --host 0.0.0.0 --tls-cert cert.pem --tls-key key.pem \\
      --auth-token-file token.txt
  asr stream a.wav --server HOST:50051 --tls-ca cert.pem --auth-token-file token.txt
"""

TOKEN_ENV = "ASR_AUTH_TOKEN"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve model bundles over gRPC (Google Speech-to-Text v1 compatible)",
        description="Start a gRPC server speaking google.cloud.speech.v1.Speech "
        "(Recognize, StreamingRecognize) for one or more model bundles, with a batching "
        "scheduler that scores all active streams in one acoustic-model call per tick.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="[NAME=]BUNDLE",
        help="model bundle directory, optionally named (repeatable; the first is the default)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="address to bind (default 127.0.0.1; any non-loopback address needs TLS and a token)",
    )  # fmt: skip
    parser.add_argument("--port", type=int, default=50051, help="port (default 50051; 0: any)")
    parser.add_argument(
        "--web-port", type=int, default=None, metavar="P",
        help="also serve the live browser demo (microphone -> WebSocket -> live text, and file "
        "upload) on this port of --host, under the same TLS and token rules (0: any port; "
        "with a token, open the page as /?token=TOKEN)",
    )  # fmt: skip
    parser.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda"),
        help="where the models run (default auto: cuda when torch sees a GPU, else cpu)",
    )  # fmt: skip
    security = parser.add_argument_group("security")
    security.add_argument(
        "--tls-cert", type=Path, metavar="PEM", help="serve TLS: certificate chain"
    )
    security.add_argument("--tls-key", type=Path, metavar="PEM", help="serve TLS: its private key")
    security.add_argument(
        "--auth-token-file", type=Path, metavar="FILE",
        help="require 'authorization: Bearer <token>' with the token in FILE (one line, >= 16 "
        f"characters) on every Speech RPC; default: ${TOKEN_ENV} if set, else no token. "
        "Health checks and reflection stay open",
    )  # fmt: skip
    security.add_argument(
        "--insecure-allow-remote", action="store_true",
        help="allow a non-loopback --host without TLS and a token (logs a warning)",
    )  # fmt: skip
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--max-streams", type=int, default=64, metavar="N",
        help="concurrent streams, then RESOURCE_EXHAUSTED (default 64)",
    )  # fmt: skip
    limits.add_argument(
        "--max-message-mb", type=float, default=10.0, metavar="MB",
        help="largest request or response message, then RESOURCE_EXHAUSTED (default 10)",
    )  # fmt: skip
    limits.add_argument(
        "--max-stream-s", type=float, default=305.0, metavar="S",
        help="seconds of audio per stream or Recognize call, then OUT_OF_RANGE (default 305)",
    )  # fmt: skip
    limits.add_argument(
        "--max-stream-wall-s", type=float, default=None, metavar="S",
        help="wall-clock seconds a stream may stay open (slow or idle clients), then "
        "OUT_OF_RANGE (default: the larger of 2x and 30 s more than --max-stream-s: 610)",
    )  # fmt: skip
    limits.add_argument(
        "--grace-s", type=float, default=30.0, metavar="S",
        help="at shutdown, time for streams in flight to finish (default 30)",
    )  # fmt: skip
    parser.add_argument(
        "--stats-interval", type=float, default=None, metavar="S",
        help="log a JSON stats line every S seconds (0: never; default: 60 when stderr is "
        "not a terminal, e.g. a service's log, else never)",
    )  # fmt: skip
    parser.add_argument(
        "--tick-ms", type=float, default=20.0, metavar="MS",
        help="least time between two batches of the scheduler (default 20)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=1, metavar="N",
        help="torch CPU threads for the batch worker (default 1: on a small CPU, extra "
        "threads contend with the server's own threads and multiply small-op latency)",
    )  # fmt: skip
    parser.set_defaults(func=run)


def parse_models(specs: list[str]) -> dict[str, Path]:
    """``["a=dir1", "dir2"]`` -> ``{"a": dir1, "default": dir2}`` (names must be unique)."""
    from asr.errors import ServerError

    models: dict[str, Path] = {}
    for spec in specs:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)=(.+)", spec)
        name, path = (match.group(1), match.group(2)) if match else ("default", spec)
        if name in models:
            raise ServerError(f"model name {name!r} given twice (name them: --model NAME=BUNDLE)")
        models[name] = Path(path)
    return models


def auth_token(args: argparse.Namespace, environ=None) -> str | None:
    """The bearer token: ``--auth-token-file``, else ``$ASR_AUTH_TOKEN``, else None."""
    import os

    from asr.errors import ServerError
    from server.auth import check_token, read_token_file

    if args.auth_token_file is not None:
        return read_token_file(args.auth_token_file)
    token = (os.environ if environ is None else environ).get(TOKEN_ENV, "").strip()
    if not token:
        return None
    try:
        check_token(token)
    except ServerError as err:
        raise ServerError(f"${TOKEN_ENV}: {err}") from None
    return token


DEFAULT_STATS_INTERVAL_S = 60.0


def stats_interval(value: float | None, log_stream) -> float:
    """``--stats-interval``, or by default 60 s when the log (``log_stream``) is not a terminal
    and 0 (off) when it is: no JSON blob in the middle of an interactive shell."""
    from asr.errors import ServerError

    if value is not None:
        if value < 0:
            raise ServerError(f"--stats-interval must be >= 0, got {value:g}")
        return value
    isatty = getattr(log_stream, "isatty", None)
    return 0.0 if isatty is not None and isatty() else DEFAULT_STATS_INTERVAL_S


def config_from_args(args: argparse.Namespace, environ=None):
    """The :class:`server.main.ServerConfig` of parsed ``asr serve`` arguments (checked)."""
    from server.main import ServerConfig, load_server_credentials
    from server.scheduler import SchedulerConfig

    config = ServerConfig(
        host=args.host,
        port=args.port,
        max_streams=args.max_streams,
        max_message_bytes=int(args.max_message_mb * 1024 * 1024),
        max_stream_duration_s=args.max_stream_s,
        max_stream_wall_s=args.max_stream_wall_s,
        grace_s=args.grace_s,
        stats_interval_s=stats_interval(args.stats_interval, sys.stderr),
        scheduler=SchedulerConfig(tick_s=args.tick_ms / 1000.0),
        tls_cert_file=args.tls_cert,
        tls_key_file=args.tls_key,
        auth_token=auth_token(args, environ),
        insecure_allow_remote=args.insecure_allow_remote,
        web_port=args.web_port,
    )
    load_server_credentials(config)  # TLS file errors now, before the models load
    return config


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal

    from asr.errors import ServerError
    from server.main import bind_problem, is_loopback_host, load_recognizers, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = config_from_args(args)
    for port in (config.port, config.web_port):  # before the models take seconds to load
        problem = None if port is None else bind_problem(config.host, port)
        if problem is not None:
            raise ServerError(f"cannot bind {config.host}:{port}: {problem}")
    if args.threads < 1:
        print(f"asr serve: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    if not is_loopback_host(config.host) and not (config.tls and config.auth_token):
        print(
            f"asr serve: WARNING: --insecure-allow-remote: {config.host} is reachable from "
            "other machines without TLS and a token; anyone who can reach it can use it",
            file=sys.stderr,
            flush=True,
        )
    recognizers = load_recognizers(parse_models(args.model), device=args.device)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def started(running) -> None:
            print(f"asr serve: listening on {running.address}", file=sys.stderr, flush=True)
            if running.web_url is not None:
                print(f"asr serve: browser demo on {running.web_url}", file=sys.stderr, flush=True)

        await serve(recognizers, config, stop_event=stop, on_started=started)

    asyncio.run(main())
    return 0
