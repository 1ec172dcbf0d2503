"""The server with a real model bundle on real audio (yesno): streaming == offline.

A short yesno monophone training (the recipe's stages in-process, 10 iterations),
``asr export`` to a bundle, :class:`asr.recognizer.Recognizer` on it; then every
test utterance streamed in 100 ms chunks through the in-process server must give
exactly the finals of the Recognizer's own ``Stream`` fed the same 100 ms units, and
(finals joined) mostly the transcript of ``Recognizer.transcribe``, with
word times inside the audio; ``asr stream`` and the official google-cloud-speech
client (subprocess) get the same finals, and the client's ``recognize`` the offline text.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from test_server_fakes import ServerThread

from asr.cli.main import main
from server.generated import cloud_speech_pb2 as pb
from server.generated import cloud_speech_pb2_grpc as pb_grpc
from server.main import ServerConfig

REPO = Path(__file__).resolve().parent.parent
NUM_FILES = 12


def run_cli(argv: list[str]) -> None:
    assert main(argv) == 0, argv


@pytest.fixture(scope="module")
def bundle(yesno_dir, tmp_path_factory):
    from asr.data import prepare_yesno
    from asr.features.batch import compute_data_dir_features
    from asr.features.extractors import MfccConfig
    from asr.gmm.train_mono import MonoConfig, train_mono

    root = tmp_path_factory.mktemp("server_yesno")
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


@pytest.fixture(scope="module")
def recognizer(bundle):
    from asr.recognizer import Recognizer

    return Recognizer.from_dir(bundle, device="cpu")


@pytest.fixture(scope="module")
def server(recognizer):
    srv = ServerThread({"default": recognizer}, ServerConfig(port=0))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def test_files(yesno_dir):
    files = sorted(Path(yesno_dir).rglob("*.wav"))
    return files[-NUM_FILES:]  # the recipe's test half


def stream_file(stub, path: Path, *, interim=False):
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


def test_streaming_finals_equal_the_stream_api_and_offline(server, recognizer, test_files):
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.SpeechStub(channel)
        mismatches, differ_from_stream = [], []
        for path in test_files:
            responses, duration_s = stream_file(stub, path, interim=True)
            finals = [r.results[0] for r in responses if r.results[0].is_final]
            if [f.alternatives[0].transcript for f in finals] != stream_directly(recognizer, path):
                differ_from_stream.append(path.name)
            streamed = " ".join(f.alternatives[0].transcript for f in finals)
            offline = recognizer.transcribe(path).text
            if streamed != offline:
                mismatches.append((path.name, streamed, offline))
            for final in finals:
                alt = final.alternatives[0]
                assert len(alt.words) == len(alt.transcript.split())
                times = [(w.start_time.ToTimedelta(), w.end_time.ToTimedelta()) for w in alt.words]
                for start, end in times:
                    assert 0 <= start.total_seconds() <= end.total_seconds() <= duration_s + 0.05
                assert all(0 <= w.confidence <= 1 for w in alt.words)
            assert offline, f"{path.name}: empty offline transcript"
    # batching, chunking and threading change nothing: exactly the Stream API's finals
    assert not differ_from_stream, differ_from_stream
    # Endpointing splits long yesno files into utterances (a weak 10-iteration model); a
    # split can change a word at the seams (a tiny last segment may decode as a word of its
    # own: the Recognizer's behaviour, seen with the Stream API alone), so allow 3 in 12.
    assert len(mismatches) <= 3, mismatches


def test_asr_stream_cli(server, recognizer, test_files, capsys):
    files = [str(p) for p in test_files[:3]]
    assert main(["stream", *files, "--server", server.address, "--interim"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == files
    for line, path in zip(lines, files, strict=True):
        assert line.split("\t")[1] == " ".join(stream_directly(recognizer, Path(path)))


def test_official_client_on_real_audio(server, recognizer, test_files, tmp_path):
    from test_server_google_client import CLIENT

    from asr.audio import read_audio

    path = test_files[0]
    samples, rate = read_audio(path)
    raw = tmp_path / "a.raw"
    raw.write_bytes((samples * 32768).astype("<i2").tobytes())
    proc = subprocess.run(
        [sys.executable, "-c", CLIENT, server.address, str(raw), str(rate)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    offline = recognizer.transcribe(path).text
    assert " ".join(r["transcript"] for r in out["recognize"]) == offline
    finals = [r for r in out["streaming"] if r["is_final"]]
    assert [r["transcript"] for r in finals] == stream_directly(recognizer, path)
    assert any(not r["is_final"] for r in out["streaming"])
