"""The official google-cloud-speech client, unchanged, against our server.

The client runs in a subprocess of its own (it registers the same protobuf message
names as our generated code); it talks to an in-process server on 127.0.0.1 over a
plain channel with anonymous credentials, runs ``recognize`` and
``streaming_recognize`` and prints what it got as JSON. The server uses the fake
recognizer of ``tests/support/server_fakes.py`` (tone bursts -> "yes"), so transcripts, word
times and interim results are known exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from server.main import ServerConfig
from tests.support.google_client import CLIENT
from tests.support.server_fakes import RATE, FakeRecognizer, ServerThread, bursts, to_linear16

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
