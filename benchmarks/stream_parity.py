"""Streaming vs offline: every utterance of a data dir through the gRPC server vs ``transcribe``.

Starts ``asr serve --model BUNDLE`` (or uses ``--server HOST:PORT``), streams each
utterance of ``DATA_DIR/wav.scp`` as LINEAR16 in ``--chunk-ms`` chunks (faster than
real time, ``--concurrency`` streams at once, continuous recognition: the stream's
transcript is its final results joined), transcribes the same files offline with
:meth:`asr.recognizer.Recognizer.transcribe` (what ``asr transcribe FILE`` does), and
prints one JSON object: ``utterances``, ``equal``, ``equal_fraction`` (issue target:
>= 0.98), the first ``mismatches`` and, when ``DATA_DIR/text`` exists, the WER of both.

    python benchmarks/stream_parity.py --model exp/an4/tri2/bundle --data-dir data/an4/dev --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.server_load import ServerProcess, pcm16, serve_command  # noqa: E402


async def stream_one(stub, pb, samples, rate: int, chunk_ms: float) -> str:
    """Stream ``samples`` and return the joined transcripts of the final results."""
    config = pb.StreamingRecognitionConfig(
        config=pb.RecognitionConfig(
            encoding=pb.RecognitionConfig.AudioEncoding.LINEAR16, sample_rate_hertz=rate
        )
    )
    pcm = pcm16(samples)
    step = 2 * max(1, int(rate * chunk_ms / 1000))

    async def requests():
        yield pb.StreamingRecognizeRequest(streaming_config=config)
        for offset in range(0, len(pcm), step):
            yield pb.StreamingRecognizeRequest(audio_content=pcm[offset : offset + step])

    finals = []
    async for response in stub.StreamingRecognize(requests(), timeout=300):
        for result in response.results:
            if result.is_final and result.alternatives:
                finals.append(result.alternatives[0].transcript.strip())
    return " ".join(t for t in finals if t)


async def stream_all(address: str, items, *, chunk_ms: float, concurrency: int) -> dict:
    import grpc

    from server.generated import cloud_speech_pb2 as pb
    from server.generated import cloud_speech_pb2_grpc as pb_grpc

    limit = asyncio.Semaphore(concurrency)
    out: dict[str, str] = {}
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.SpeechStub(channel)

        async def one(utt_id, samples, rate):
            async with limit:
                out[utt_id] = await stream_one(stub, pb, samples, rate, chunk_ms)

        await asyncio.gather(*(one(*item) for item in items))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="bundle (also used for the offline side)")
    parser.add_argument("--data-dir", required=True, type=Path, help="Kaldi data dir (wav.scp)")
    parser.add_argument("--server", help="HOST:PORT of a running server serving --model")
    parser.add_argument("--chunk-ms", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--limit", type=int, default=0, help="first N utterances (0: all)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    from asr.audio import read_audio
    from asr.data import read_kaldi_map
    from asr.recognizer import Recognizer
    from asr.scoring import read_text_file, score

    torch.set_num_threads(1)
    wavs = read_kaldi_map(args.data_dir / "wav.scp")
    utts = list(wavs)[: args.limit or None]
    audio = {utt: read_audio(wavs[utt]) for utt in utts}
    recognizer = Recognizer.from_dir(args.model, device="cpu")
    start = time.perf_counter()
    offline = {utt: recognizer.transcribe(wavs[utt]).text for utt in utts}
    offline_s = time.perf_counter() - start

    server = None
    if args.server:
        address = args.server
    else:
        server = ServerProcess(serve_command(args.model, max_streams=max(8, args.concurrency)))
        address = server.address
    try:
        start = time.perf_counter()
        items = [(utt, *audio[utt]) for utt in utts]
        streamed = asyncio.run(
            stream_all(address, items, chunk_ms=args.chunk_ms, concurrency=args.concurrency)
        )
        streaming_s = time.perf_counter() - start
    finally:
        if server is not None:
            server.proc.terminate()
            server.proc.wait(timeout=60)
    equal = [utt for utt in utts if streamed[utt] == offline[utt]]
    report = {
        "model": str(args.model),
        "data_dir": str(args.data_dir),
        "chunk_ms": args.chunk_ms,
        "utterances": len(utts),
        "equal": len(equal),
        "equal_fraction": round(len(equal) / len(utts), 4) if utts else None,
        "offline_s": round(offline_s, 2),
        "streaming_s": round(streaming_s, 2),
        "mismatches": [
            {"utt_id": utt, "offline": offline[utt], "streamed": streamed[utt]}
            for utt in utts
            if streamed[utt] != offline[utt]
        ][:20],
    }
    text = args.data_dir / "text"
    if text.is_file():
        refs = {k: v for k, v in read_text_file(text).items() if k in offline}
        report["offline_wer"] = round(score(refs, offline).wer, 2)
        report["streamed_wer"] = round(score(refs, streamed).wer, 2)
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
