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

``asr stream -`` reads stdin as it arrives: a WAV stream (recognised by its RIFF header;
16-bit PCM, channels averaged) or raw s16le mono PCM at ``--rate R``::

    sox in.wav -t raw -r 16000 -e signed -b 16 -c 1 - | asr stream - --rate 16000

``asr stream --mic`` captures mono int16 at ``--rate`` (default 16000; the server resamples)
from the default input or ``--device`` (an index or part of a name; ``--list-devices``) with
the ``sounddevice`` package, which needs the PortAudio library (``apt-get install
libportaudio2``). Ctrl-C ends the capture: the request stream is half-closed and the final
result printed as ``mic<TAB>TRANSCRIPT`` (stdin's line is ``-<TAB>TRANSCRIPT``); a second
Ctrl-C cancels. With ``--interim`` the live sources also print each final to stderr.

Before the first file the client waits up to ``--wait`` seconds for the server to accept
connections (a server started just before, as in the README's quick start pasted as one
block, needs a few seconds to load its models); then it gives up with one line (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TOKEN_ENV = "ASR_AUTH_TOKEN"
DEFAULT_WAIT_S = 10.0

EPILOG = """examples:
  asr stream ../shared/data/yesno/waves_yesno/1_0_1_1_1_0_1_0.wav --interim
  asr stream a.wav b.wav --server 127.0.0.1:50051 --realtime --chunk-ms 50
  asr serve --model exp/yesno/mono/bundle & asr stream --wait 30 a.wav; kill %1
  asr stream a.wav --server speech.example:50051 --tls-ca ca.pem --auth-token-file token.txt
  sox in.wav -t raw -r 16000 -e signed -b 16 -c 1 - | asr stream - --rate 16000
  arecord -f S16_LE -r 16000 -c 1 -t wav | asr stream - --interim
  asr stream --mic --interim            (Ctrl-C ends the stream and prints the final result)
  asr stream --list-devices
"""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The epilog as written, and each option's default (when it has a value) in its help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" not in text
            and action.default not in (None, False, "", argparse.SUPPRESS)
            and action.option_strings
        ):
            text += " (default: %(default)s)"
        return text


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stream",
        help="stream audio files, stdin or the microphone to an asr (or Google Speech v1) server",
        description="Stream audio files, stdin ('-') or the microphone (--mic) to a server "
        "speaking google.cloud.speech.v1 StreamingRecognize and print one FILE<TAB>TRANSCRIPT "
        "line per file ('-' for stdin, 'mic' for the microphone).",
        epilog=EPILOG,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "files", nargs="*", type=Path, metavar="FILE",
        help="audio files; '-' reads a WAV stream or raw PCM (with --rate) from stdin",
    )  # fmt: skip
    parser.add_argument(
        "--rate", type=int, metavar="R",
        help="sampling rate of raw PCM on stdin, and of --mic capture (default 16000 for --mic)",
    )  # fmt: skip
    parser.add_argument(
        "--encoding", choices=["s16le"], default="s16le", help="raw PCM sample format on stdin"
    )
    parser.add_argument(
        "--mic", action="store_true",
        help="stream from the microphone (PortAudio via sounddevice) until Ctrl-C",
    )  # fmt: skip
    parser.add_argument(
        "--device", metavar="NAME_OR_INDEX",
        help="with --mic: the input device, an index or part of its name (default: the "
        "system's default input)",
    )  # fmt: skip
    parser.add_argument(
        "--list-devices", action="store_true", help="list the audio input devices and exit"
    )
    parser.add_argument(
        "--server", default="127.0.0.1:50051", metavar="HOST:PORT", help="the server's address"
    )
    parser.add_argument(
        "--wait", type=float, default=DEFAULT_WAIT_S, metavar="S",
        help="wait up to S seconds for the server to accept connections (0: do not wait)",
    )  # fmt: skip
    parser.add_argument("--realtime", action="store_true", help="send audio at real-time pace")
    parser.add_argument("--interim", action="store_true", help="print interim results (stderr)")
    parser.add_argument(
        "--chunk-ms", type=float, default=100.0, metavar="MS", help="audio per request"
    )
    parser.add_argument(
        "--model", default="", help="model name on the server (default: the server's first)"
    )
    parser.add_argument(
        "--single-utterance", action="store_true", help="stop at the first endpoint"
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, metavar="S",
        help="seconds per file (stdin and --mic: no limit)",
    )  # fmt: skip
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


# reconnect quickly while waiting for a starting server (gRPC's default backoff starts at
# 1 s and grows by 1.6x, so a server up after 3 s would be found only after ~5 s)
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def open_channel(server: str, *, tls_ca: Path | None = None, tls_server_name: str | None = None):
    """A gRPC channel to ``server`` (HOST:PORT): plaintext, or TLS trusting ``tls_ca``."""
    import grpc

    from asr.errors import ServerError

    if tls_ca is None:
        if tls_server_name:
            raise ServerError("--tls-server-name needs --tls-ca")
        return grpc.insecure_channel(server, options=_CHANNEL_OPTIONS)
    try:
        root = Path(tls_ca).read_bytes()
    except OSError as err:
        raise ServerError(f"cannot read the TLS CA file {tls_ca}: {err.strerror or err}") from None
    if b"-----BEGIN CERTIFICATE-----" not in root:
        raise ServerError(f"{tls_ca}: not a PEM certificate (no BEGIN CERTIFICATE line)")
    options = list(_CHANNEL_OPTIONS)
    if tls_server_name:
        options.append(("grpc.ssl_target_name_override", tls_server_name))
    credentials = grpc.ssl_channel_credentials(root_certificates=root)
    return grpc.secure_channel(server, credentials, options=options)


def wait_for_server(channel, server: str, wait_s: float, *, listening_grace_s: float = 3.0):
    """Wait up to ``wait_s`` seconds until ``channel`` is connected (gRPC's
    ``channel_ready_future``; the channel keeps reconnecting meanwhile) and raise
    :class:`asr.errors.ServerError` when nothing answers. When something accepts TCP
    connections at ``server`` but the channel is still not ready ``listening_grace_s`` later
    (plaintext against TLS, an untrusted certificate), stop waiting: the call then reports
    gRPC's own reason. ``wait_s <= 0``: do not wait."""
    import time

    import grpc

    from asr.errors import ServerError

    if wait_s <= 0:
        return
    ready = grpc.channel_ready_future(channel)
    deadline = time.monotonic() + wait_s
    listening_since = None
    try:
        while True:
            try:
                ready.result(timeout=min(0.25, max(deadline - time.monotonic(), 0.01)))
                return
            except grpc.FutureTimeoutError:
                pass
            now = time.monotonic()
            if listening_since is None and _accepts_tcp(server):
                listening_since = now
            if listening_since is not None and now - listening_since >= listening_grace_s:
                return
            if now >= deadline:
                raise ServerError(
                    f"cannot connect to {server} within {wait_s:g} s (no server listening there "
                    "yet?); start it with `asr serve`, or wait longer with --wait S"
                )
    finally:
        ready.cancel()


def _accepts_tcp(server: str) -> bool:
    """Whether a TCP connection to ``server`` (HOST:PORT) is accepted right now."""
    import socket

    host, _, port = server.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit():
        return False
    try:
        with socket.create_connection((host, int(port)), timeout=0.25):
            return True
    except OSError:
        return False


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


def _check_sources(args: argparse.Namespace) -> None:
    from asr.errors import AudioError

    stdin_count = sum(str(path) == "-" for path in args.files)
    if args.mic and args.files:
        raise AudioError("give either FILE... (or '-' for stdin) or --mic, not both")
    if not args.mic and not args.files:
        raise AudioError("nothing to stream: give FILE..., '-' (stdin) or --mic")
    if stdin_count > 1:
        raise AudioError("'-' (stdin) can be given only once")
    if args.device is not None and not args.mic:
        raise AudioError("--device needs --mic")
    if args.rate is not None and args.rate <= 0:
        raise AudioError(f"--rate must be positive, got {args.rate}")


def list_devices() -> int:
    """``--list-devices``: one line per input device (``*`` marks the default)."""
    from asr.cli.stream_input import import_sounddevice, input_devices

    sd = import_sounddevice()
    devices = input_devices(sd)
    try:
        default = sd.query_devices(kind="input")["index"]
    except Exception:  # PortAudioError: no default input
        default = None
    if not devices:
        print("no audio input devices", file=sys.stderr)
        return 1
    for index, name, channels, rate in devices:
        mark = "*" if index == default else " "
        print(f"{mark} {index}\t{name}\t{channels} ch\t{rate:g} Hz")
    return 0


def _streaming_config(args: argparse.Namespace, rate: int):
    from server.generated import cloud_speech_pb2 as pb

    return pb.StreamingRecognitionConfig(
        config=pb.RecognitionConfig(
            encoding=pb.RecognitionConfig.AudioEncoding.LINEAR16,
            sample_rate_hertz=rate,
            enable_word_time_offsets=True,
            model=args.model,
        ),
        interim_results=args.interim,
        single_utterance=args.single_utterance,
    )


def stream_live(stub, source, args: argparse.Namespace, metadata, *, stop=None) -> int:
    """Stream a live ``source`` (stdin or the microphone: ``rate``, ``name``, ``chunks()``)
    as its audio arrives and print ``NAME<TAB>TRANSCRIPT``. The responses are read in a
    thread; Ctrl-C calls ``stop`` (which ends ``chunks()``: the request stream is half-closed
    and the server's final result still printed); a second Ctrl-C cancels the call."""
    import signal
    import threading

    import grpc

    from server.generated import cloud_speech_pb2 as pb

    failure: list[BaseException] = []

    def requests():
        yield pb.StreamingRecognizeRequest(streaming_config=_streaming_config(args, source.rate))
        try:
            for chunk in source.chunks():
                yield pb.StreamingRecognizeRequest(audio_content=chunk)
        except Exception as err:  # AudioError (a partial sample at EOF), a broken pipe
            failure.append(err)

    responses = stub.StreamingRecognize(requests(), timeout=None, metadata=metadata)
    finals: list[str] = []

    def consume():
        try:
            for response in responses:
                for result in response.results:
                    text = result.alternatives[0].transcript if result.alternatives else ""
                    end = result.result_end_time
                    end_s = end.seconds + end.nanos / 1e9
                    if result.is_final:
                        finals.append(text)
                    if args.interim:
                        kind = "final" if result.is_final else "interim"
                        print(f"{source.name} [{kind} {end_s:.2f} s] {text}", file=sys.stderr)
        except grpc.RpcError as err:
            failure.append(err)

    interrupts = 0

    def on_interrupt() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1 or stop is None:
            responses.cancel()
            raise KeyboardInterrupt
        stop()

    # Ctrl-C as a SIGINT handler, not as a KeyboardInterrupt: an exception raised while
    # gRPC's extension checks for signals ends the response stream before the final result
    handled = stop is not None and threading.current_thread() is threading.main_thread()
    if handled:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: on_interrupt())
    worker = threading.Thread(target=consume, name="asr-stream-responses", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            try:
                worker.join(0.1)
            except KeyboardInterrupt:
                on_interrupt()
    finally:
        if handled:
            signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
    if failure:
        err = failure[0]
        if isinstance(err, grpc.RpcError):
            print(f"asr stream: {source.name}: {err.code().name}: {err.details()}",
                  file=sys.stderr)  # fmt: skip
            return 1
        raise err
    print(f"{source.name}\t{' '.join(t for t in finals if t)}", flush=True)
    return 0


def _stream_mic(stub, source, args: argparse.Namespace, metadata) -> int:
    print(f"asr stream: listening at {source.rate} Hz; Ctrl-C ends", file=sys.stderr)
    source.start()
    try:
        return stream_live(stub, source, args, metadata, stop=source.stop)
    finally:
        source.close()


def run(args: argparse.Namespace) -> int:
    from server.main import is_loopback_host

    if args.list_devices:
        return list_devices()
    _check_sources(args)
    metadata = call_metadata(args)
    # the live source first: a bad pipe or a missing microphone fails before connecting
    stdin_source = mic_source = None
    if args.mic:
        from asr.cli.stream_input import MicSource

        mic_source = MicSource(device=args.device, rate=args.rate or 16000, chunk_ms=args.chunk_ms)
    elif any(str(path) == "-" for path in args.files):
        from asr.cli.stream_input import PipeSource

        stdin_source = PipeSource(sys.stdin.buffer, rate=args.rate, chunk_ms=args.chunk_ms)
    host = args.server.rsplit(":", 1)[0] if ":" in args.server else args.server
    if metadata and args.tls_ca is None and not is_loopback_host(host):
        print(
            f"asr stream: WARNING: sending the bearer token to {args.server} without TLS "
            "(anyone on the path can read it); give --tls-ca",
            file=sys.stderr,
        )
    try:
        return _run_sources(args, metadata, stdin_source, mic_source)
    finally:
        if mic_source is not None:
            mic_source.close()


def _run_sources(args: argparse.Namespace, metadata, stdin_source, mic_source) -> int:
    import grpc

    from asr.audio import read_audio
    from server.generated import cloud_speech_pb2_grpc as pb_grpc

    status = 0
    channel = open_channel(args.server, tls_ca=args.tls_ca, tls_server_name=args.tls_server_name)
    with channel:
        wait_for_server(channel, args.server, args.wait)
        stub = pb_grpc.SpeechStub(channel)
        if mic_source is not None:
            return _stream_mic(stub, mic_source, args, metadata)
        for path in args.files:
            if str(path) == "-":
                status = max(status, stream_live(stub, stdin_source, args, metadata))
                continue
            samples, rate = read_audio(path)
            requests = stream_requests(
                samples, sampling_rate=rate, chunk_ms=args.chunk_ms, realtime=args.realtime,
                config=_streaming_config(args, rate),
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
