"""The real-model server tests' material (yesno): a small monophone bundle, and the finals of
a file streamed through the server vs through the Recognizer's own Stream API.

The pytest fixtures ``bundle`` and ``recognizer`` built from it are in ``tests/conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

from asr.cli.main import main
from server.generated import cloud_speech_pb2 as pb

REPO = Path(__file__).resolve().parents[2]


def run_cli(argv: list[str]) -> None:
    assert main(argv) == 0, argv


def build_server_bundle(yesno_dir: Path, root: Path) -> Path:
    """A short yesno monophone training (the recipe's stages in-process, 10 iterations) under
    ``root``, exported with ``asr export``; returns the bundle directory."""
    from asr.data import prepare_yesno
    from asr.features.batch import compute_data_dir_features
    from asr.features.extractors import MfccConfig
    from asr.gmm.train_mono import MonoConfig, train_mono

    data = root / "data"
    prepare_yesno(yesno_dir, data)
    compute_data_dir_features(
        data / "train", data / "train" / "data", config=MfccConfig(sampling_rate=8000)
    )
    lang = data / "lang"
    run_cli(["lang", "prepare", "--dict", str(REPO / "recipes/yesno/local/lexicon.txt"),
             "--out", str(lang)])  # fmt: skip
    words = str(lang / "words.txt")
    run_cli(["lm", "train", str(data / "train/text"), "--order", "1", "--vocab", words,
             "--out", str(lang / "lm.arpa")])  # fmt: skip
    run_cli(["lm", "to-g", str(lang / "lm.arpa"), "--words", words, "--out", str(lang / "G.fst")])
    mono = root / "mono"
    config = MonoConfig(
        num_iters=10, max_iter_inc=8, totgauss=100, realign_iters=(1, 2, 3, 4, 6, 8)
    )
    train_mono(data / "train", lang, mono, config=config)
    run_cli(["graph", "mkgraph", str(lang), str(mono), str(mono / "graph")])
    out = root / "bundle"
    run_cli(["export", str(mono), "--graph", str(mono / "graph"), "--out", str(out)])
    return out


def stream_file(stub, path: Path, *, interim=False):
    """The responses of ``path`` streamed through ``stub`` in 100 ms chunks, and its duration (s)."""
    from asr.audio import read_audio
    from asr.cli.stream import stream_requests

    samples, rate = read_audio(path)
    config = pb.StreamingRecognitionConfig(
        config=pb.RecognitionConfig(
            encoding=pb.RecognitionConfig.AudioEncoding.LINEAR16,
            sample_rate_hertz=rate,
            enable_word_time_offsets=True,
            enable_word_confidence=True,
        ),
        interim_results=interim,
    )
    requests = stream_requests(samples, sampling_rate=rate, chunk_ms=100, realtime=False,
                               config=config)  # fmt: skip
    return list(stub.StreamingRecognize(requests, timeout=120)), samples.size / rate


def stream_directly(recognizer, path: Path) -> list[str]:
    """The finals of the Recognizer's own Stream, fed 100 ms units, endpointing after each."""
    from asr.audio import read_audio

    samples, rate = read_audio(path)
    stream, finals = recognizer.stream(), []
    for start in range(0, samples.size, rate // 10):
        stream.accept_waveform(samples[start : start + rate // 10], sampling_rate=rate)
        if stream.is_endpoint():
            finals.append(stream.finalize().text)
            stream.reset()
    finals.append(stream.finalize().text)
    return [text for text in finals if text]
