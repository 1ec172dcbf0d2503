"""``asr stream FILE... --server HOST:PORT``: the bundled streaming client.

Example::

    asr stream an4/wav/an4_clstk/fash/an251-fash-b.wav --server 127.0.0.1:50051 --interim
    an251-fash-b.wav [interim 0.60 s] YES        (stderr, with --interim)
    an4/wav/an4_clstk/fash/an251-fash-b.wav<TAB>YES TWELVE

Each file is sent in ``--chunk-ms`` LINEAR16 chunks at its own sampling rate (the
server resamples), paced in real time with ``--realtime``. stdout gets one line per
file, ``FILE<TAB>TRANSCRIPT`` (the finals of all its utterances, joined); interim
results go to stderr with ``--interim``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


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


def run(args: argparse.Namespace) -> int:
    import grpc

    from asr.audio import read_audio
    from server.generated import cloud_speech_pb2 as pb
    from server.generated import cloud_speech_pb2_grpc as pb_grpc

    status = 0
    with grpc.insecure_channel(args.server) as channel:
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
                for response in stub.StreamingRecognize(requests, timeout=args.timeout):
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
