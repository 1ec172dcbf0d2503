"""The official google-cloud-speech client, unchanged, against our server.

The client runs in a subprocess of its own (it registers the same protobuf message
names as our generated code); it talks to an in-process server on 127.0.0.1 over a
plain channel with anonymous credentials, runs ``recognize`` and
``streaming_recognize`` and prints what it got as JSON. The server uses the fake
recognizer of ``test_server_fakes`` (tone bursts -> "yes"), so transcripts, word
times and interim results are known exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_server_fakes import RATE, FakeRecognizer, ServerThread, bursts, to_linear16

from server.main import ServerConfig

CLIENT = r"""
import json, sys
import grpc
from google.auth.credentials import AnonymousCredentials
from google.cloud import speech_v1 as speech
from google.cloud.speech_v1.services.speech.transports import SpeechGrpcTransport

address, audio_path, rate = sys.argv[1], sys.argv[2], int(sys.argv[3])
audio = open(audio_path, "rb").read()
channel = grpc.insecure_channel(address)
client = speech.SpeechClient(
    transport=SpeechGrpcTransport(channel=channel, credentials=AnonymousCredentials())
)
config = speech.RecognitionConfig(
    encoding=speech.RecognitionConfig.AudioEncoding.LINEAR16,
    sample_rate_hertz=rate,
    language_code="en-US",
    enable_word_time_offsets=True,
    enable_word_confidence=True,
)

def words(alt):
    return [[w.word, w.start_time.total_seconds(), w.end_time.total_seconds(), w.confidence]
            for w in alt.words]

out = {}
response = client.recognize(config=config, audio=speech.RecognitionAudio(content=audio))
out["recognize"] = [
    {"transcript": r.alternatives[0].transcript, "words": words(r.alternatives[0])}
    for r in response.results
]
step = rate // 10 * 2
requests = (
    speech.StreamingRecognizeRequest(audio_content=audio[i : i + step])
    for i in range(0, len(audio), step)
)
streaming = speech.StreamingRecognitionConfig(config=config, interim_results=True)
out["streaming"] = [
    {
        "is_final": r.is_final,
        "stability": r.stability,
        "transcript": r.alternatives[0].transcript,
        "words": words(r.alternatives[0]),
        "end": r.result_end_time.total_seconds(),
    }
    for response in client.streaming_recognize(config=streaming, requests=requests)
    for r in response.results
]
try:
    bad = speech.RecognitionConfig(encoding=speech.RecognitionConfig.AudioEncoding.MP3,
                                   sample_rate_hertz=rate, language_code="en-US")
    client.recognize(config=bad, audio=speech.RecognitionAudio(content=audio))
    out["bad"] = None
except Exception as err:
    out["bad"] = type(err).__name__
print(json.dumps(out))
"""

SPANS = [(0.3, 0.8), (2.0, 2.6)]


@pytest.fixture(scope="module")
def server():
    srv = ServerThread({"default": FakeRecognizer()}, ServerConfig(port=0))
    yield srv
    srv.stop()


def run_client(address: str, audio: bytes, rate: int, tmp_path) -> dict:
    path = tmp_path / "audio.raw"
    path.write_bytes(audio)
    proc = subprocess.run(
        [sys.executable, "-c", CLIENT, address, str(path), str(rate)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_official_client_recognize_and_streaming(server, tmp_path):
    out = run_client(server.address, to_linear16(bursts(SPANS, 3.5)), RATE, tmp_path)
    (offline,) = out["recognize"]
    assert offline["transcript"] == "yes yes"
    assert [w[0] for w in offline["words"]] == ["yes", "yes"]
    for (_, start, end, confidence), (lo, hi) in zip(offline["words"], SPANS, strict=True):
        assert start == pytest.approx(lo, abs=0.011) and end == pytest.approx(hi, abs=0.011)
        assert confidence == pytest.approx(0.9)
    finals = [r for r in out["streaming"] if r["is_final"]]
    interim = [r for r in out["streaming"] if not r["is_final"]]
    assert [r["transcript"] for r in finals] == ["yes", "yes"]
    for final, (lo, hi) in zip(finals, SPANS, strict=True):
        ((word, start, end, _),) = final["words"]
        assert word == "yes"
        assert start == pytest.approx(lo, abs=0.011) and end == pytest.approx(hi, abs=0.011)
    assert interim and all(0 < r["stability"] <= 1 for r in interim)
    assert out["streaming"][0]["is_final"] is False  # an interim result came first
    assert out["bad"] == "InvalidArgument"  # google.api_core's INVALID_ARGUMENT
