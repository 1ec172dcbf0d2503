"""``asr stream FILE... --server HOST:PORT``: the bundled streaming client.

Example::

    asr stream an4/wav/an4_clstk/fash/an251-fash-b.wav --server 127.0.0.1:50051 --interim
    an251-fash-b.wav [interim 0.60 s] YES        (stderr, with --interim)
    an4/wav/an4_clstk/fash/an251-fash-b.wav<TAB>YES TWELVE

Each file is sent in ``--chunk-ms`` LINEAR16 chunks at its own sampling rate (the
server resamples), paced in real time with ``--realtime``. stdout gets one line per
file, ``FILE<TAB>TRANSCRIPT`` (the finals of all its utterances, joined); interim
results go to stderr with ``--interim``.

With ``--tls-ca PEM`` the channel is TLS, trusting that CA (or self-signed
certificate); ``--auth-token-file FILE`` (or ``$ASR_AUTH_TOKEN``) sends the
metadata ``authorization: Bearer <token>``::

    asr stream a.wav --server speech.example:50051 --tls-ca ca.pem --auth-token-file token.txt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TOKEN_ENV = "ASR_AUTH_TOKEN"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stream",
        help="stream audio files to an asr (or Google Speech v1) server",
        description="Stream audio files to a server speaking google.cloud.speech.v1 "
        "StreamingRecognize and print one FILE<TAB>TRANSCRIPT line per file.",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument("--server", default="127.0.0.1:50051", metavar="HOST:PORT")
    parser.add_argument("--realtime", action="store_true", help="send audio at real-time pace")
    parser.add_argument("--interim", action="store_true", help="print interim results (stderr)")
    parser.add_argument("--chunk-ms", type=float, default=100.0, metavar="MS")
    parser.add_argument("--model", default="", help="model name on the server (default: its first)")
    parser.add_argument(
        "--single-utterance", action="store_true", help="stop at the first endpoint"
    )
    parser.add_argument("--timeout", type=float, default=600.0, metavar="S", help="per file")
    parser.add_argument(
        "--tls-ca", type=Path, metavar="PEM",
        help="connect with TLS, trusting the CA certificate(s) in PEM (default: plaintext)",
    )  # fmt: skip
    parser.add_argument(
        "--tls-server-name", metavar="NAME",
        help="with --tls-ca: the name to expect in the server's certificate "
        "(default: the host of --server)",
    )  # fmt: skip
    parser.add_argument(
        "--auth-token-file", type=Path, metavar="FILE",
        help="send 'authorization: Bearer <token>' with the token in FILE "
        f"(default: ${TOKEN_ENV} if set)",
    )  # fmt: skip
    parser.set_defaults(func=run)


def stream_requests(samples, *, sampling_rate: int, chunk_ms: float, realtime: bool, config):
    """The StreamingRecognize requests for float32 ``samples``: config, then LINEAR16 chunks."""
    import time

    import numpy as np

    from server.generated import cloud_speech_pb2 as pb

    yield pb.StreamingRecognizeRequest(streaming_config=config)
    pcm = (np.clip(samples, -1.0, 32767 / 32768) * 32768).astype("<i2").tobytes()
    step = max(1, int(sampling_rate * chunk_ms / 1000.0)) * 2
    start = time.monotonic()
    for offset in range(0, len(pcm), step):
        if realtime:
            delay = start + offset / 2 / sampling_rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield pb.StreamingRecognizeRequest(audio_content=pcm[offset : offset + step])


def open_channel(server: str, *, tls_ca: Path | None = None, tls_server_name: str | None = None):
    """A gRPC channel to ``server`` (HOST:PORT): plaintext, or TLS trusting ``tls_ca``."""
    import grpc

    from asr.errors import ServerError

    if tls_ca is None:
        if tls_server_name:
            raise ServerError("--tls-server-name needs --tls-ca")
        return grpc.insecure_channel(server)
    try:
        root = Path(tls_ca).read_bytes()
    except OSError as err:
        raise ServerError(f"cannot read the TLS CA file {tls_ca}: {err.strerror or err}") from None
    if b"-----BEGIN CERTIFICATE-----" not in root:
        raise ServerError(f"{tls_ca}: not a PEM certificate (no BEGIN CERTIFICATE line)")
    options = [("grpc.ssl_target_name_override", tls_server_name)] if tls_server_name else None
    credentials = grpc.ssl_channel_credentials(root_certificates=root)
    return grpc.secure_channel(server, credentials, options=options)


def call_metadata(args: argparse.Namespace, environ=None) -> tuple[tuple[str, str], ...]:
    """The bearer-token metadata of ``--auth-token-file`` / ``$ASR_AUTH_TOKEN`` (or none)."""
    import os

    from asr.errors import ServerError
    from server.auth import check_token, read_token_file

    if args.auth_token_file is not None:
        token = read_token_file(args.auth_token_file)
    else:
        token = (os.environ if environ is None else environ).get(TOKEN_ENV, "").strip()
        if not token:
            return ()
        try:
            check_token(token)
        except ServerError as err:
            raise ServerError(f"${TOKEN_ENV}: {err}") from None
    return (("authorization", f"Bearer {token}"),)


def run(args: argparse.Namespace) -> int:
    import grpc

    from asr.audio import read_audio
    from server.generated import cloud_speech_pb2 as pb
    from server.generated import cloud_speech_pb2_grpc as pb_grpc
    from server.main import is_loopback_host

    metadata = call_metadata(args)
    host = args.server.rsplit(":", 1)[0] if ":" in args.server else args.server
    if metadata and args.tls_ca is None and not is_loopback_host(host):
        print(
            f"asr stream: WARNING: sending the bearer token to {args.server} without TLS "
            "(anyone on the path can read it); give --tls-ca",
            file=sys.stderr,
        )
    status = 0
    channel = open_channel(args.server, tls_ca=args.tls_ca, tls_server_name=args.tls_server_name)
    with channel:
        stub = pb_grpc.SpeechStub(channel)
        for path in args.files:
            samples, rate = read_audio(path)
            config = pb.StreamingRecognitionConfig(
                config=pb.RecognitionConfig(
                    encoding=pb.RecognitionConfig.AudioEncoding.LINEAR16,
                    sample_rate_hertz=rate,
                    enable_word_time_offsets=True,
                    model=args.model,
                ),
                interim_results=args.interim,
                single_utterance=args.single_utterance,
            )
            requests = stream_requests(
                samples, sampling_rate=rate, chunk_ms=args.chunk_ms, realtime=args.realtime,
                config=config,
            )  # fmt: skip
            finals = []
            try:
                for response in stub.StreamingRecognize(
                    requests, timeout=args.timeout, metadata=metadata
                ):
                    for result in response.results:
                        text = result.alternatives[0].transcript if result.alternatives else ""
                        if result.is_final:
                            finals.append(text)
                        elif args.interim:
                            end = result.result_end_time
                            end_s = end.seconds + end.nanos / 1e9
                            print(f"{path.name} [interim {end_s:.2f} s] {text}", file=sys.stderr)
            except grpc.RpcError as err:
                print(f"asr stream: {path}: {err.code().name}: {err.details()}", file=sys.stderr)
                status = 1
                continue
            print(f"{path}\t{' '.join(t for t in finals if t)}", flush=True)
    return status
