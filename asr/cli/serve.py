"""``asr serve --model BUNDLE``: the gRPC streaming recognition server.

Example::

    asr serve --model exp/an4/tri2/bundle --port 50051
    asr serve --model default=exp/an4/dnn/bundle --model digits=exp/fsdd/mono/bundle

Clients select a model with ``RecognitionConfig.model`` (empty: the first one).
Ctrl-C or SIGTERM drains gracefully: health NOT_SERVING, streams in flight finish.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

EPILOG = """limits (defaults): --max-streams 64 concurrent streams (then RESOURCE_EXHAUSTED),
--max-message-mb 10 per message, --max-stream-s 305 s of audio per stream (then
OUT_OF_RANGE), --grace-s 30 s for streams in flight at shutdown.
The server speaks google.cloud.speech.v1.Speech (Recognize, StreamingRecognize), the
standard grpc.health.v1.Health service and server reflection (grpcurl -plaintext HOST:PORT list).
"""


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
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=50051, help="port (default 50051; 0: any)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--max-streams", type=int, default=64, metavar="N")
    parser.add_argument("--max-message-mb", type=float, default=10.0, metavar="MB")
    parser.add_argument("--max-stream-s", type=float, default=305.0, metavar="S")
    parser.add_argument("--grace-s", type=float, default=30.0, metavar="S")
    parser.add_argument(
        "--stats-interval", type=float, default=60.0, metavar="S",
        help="log a JSON stats line every S seconds (0: never; default 60)",
    )  # fmt: skip
    parser.add_argument(
        "--tick-ms", type=float, default=20.0, metavar="MS",
        help="least time between two batches of the scheduler (default 20)",
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


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal

    from server.main import ServerConfig, load_recognizers, serve
    from server.scheduler import SchedulerConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = ServerConfig(
        host=args.host,
        port=args.port,
        max_streams=args.max_streams,
        max_message_bytes=int(args.max_message_mb * 1024 * 1024),
        max_stream_duration_s=args.max_stream_s,
        grace_s=args.grace_s,
        stats_interval_s=args.stats_interval,
        scheduler=SchedulerConfig(tick_s=args.tick_ms / 1000.0),
    )
    recognizers = load_recognizers(parse_models(args.model), device=args.device)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def started(running) -> None:
            print(f"asr serve: listening on {running.address}", file=sys.stderr, flush=True)

        await serve(recognizers, config, stop_event=stop, on_started=started)

    asyncio.run(main())
    return 0
