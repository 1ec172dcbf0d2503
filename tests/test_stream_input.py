"""``asr stream -`` (stdin: WAV or raw s16le) and ``asr stream --mic`` (sounddevice).

The stdin reader is checked on byte streams (WAV headers, raw PCM, its errors, and that it
yields audio before the writer closes the pipe); end to end, the yesno wavs piped into
``asr stream -`` (a subprocess) as WAV and as raw PCM give exactly the line of
``asr stream FILE``. The microphone is a fake ``sounddevice`` module whose ``InputStream``
plays a yesno wav's samples and then presses Ctrl-C (no audio device on CI; the approach
sounddevice's own tests take); a real PortAudio sees an ALSA null device configured for
the test (skipped where PortAudio is not installed: ``apt-get install libportaudio2``).
"""

from __future__ import annotations

import ctypes.util
import io
import os
import re
import subprocess
import sys
import threading
import time
import types
import wave
from pathlib import Path

import numpy as np
import pytest

from asr.cli.main import main
from asr.cli.stream_input import PipeSource
from asr.errors import AudioError
from server.main import ServerConfig
from tests.support.server_fakes import ServerThread
from tests.support.yesno_server import stream_directly

REPO = Path(__file__).resolve().parents[1]


def _wav_bytes(pcm: np.ndarray, rate: int, channels: int = 1) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return out.getvalue()


def _pcm(n: int = 2500) -> np.ndarray:
    return (np.arange(n) * 37 % 20000 - 10000).astype("<i2")


# ---------------------------------------------------------------- the stdin reader


def test_pipe_source_reads_wav_and_raw_in_chunks():
    pcm = _pcm()
    wav = PipeSource(io.BytesIO(_wav_bytes(pcm, 8000)), rate=None, chunk_ms=100)
    chunks = list(wav.chunks())
    assert wav.rate == 8000 and [len(c) for c in chunks] == [1600] * 3 + [200]
    assert b"".join(chunks) == pcm.tobytes()
    raw = PipeSource(io.BytesIO(pcm.tobytes()), rate=16000, chunk_ms=50)
    assert raw.rate == 16000 and b"".join(raw.chunks()) == pcm.tobytes()


def test_pipe_source_wav_from_a_pipe_writer_and_stereo():
    """sox/ffmpeg writing to a pipe leave the sizes unknown (0xFFFFFFFF): read to EOF; a
    known data size stops before trailing chunks; stereo is averaged to mono."""
    pcm = _pcm(1000)
    data = bytearray(_wav_bytes(pcm, 8000))
    data[4:8] = data[40:44] = b"\xff\xff\xff\xff"
    assert b"".join(PipeSource(io.BytesIO(bytes(data)), rate=None, chunk_ms=100).chunks()) == (
        pcm.tobytes()
    )
    trailing = _wav_bytes(pcm, 8000) + b"LIST\x04\x00\x00\x00abcd"
    assert b"".join(PipeSource(io.BytesIO(trailing), rate=None, chunk_ms=100).chunks()) == (
        pcm.tobytes()
    )
    stereo = np.stack([pcm, pcm // 2 * 2], axis=1)
    source = PipeSource(io.BytesIO(_wav_bytes(stereo, 8000, channels=2)), rate=None, chunk_ms=100)
    mono = np.frombuffer(b"".join(source.chunks()), dtype="<i2")
    assert np.abs(mono.astype(int) - pcm).max() <= 1


@pytest.mark.parametrize(
    ("data", "rate", "message"),
    [
        (b"", None, "no audio (empty input)"),
        (b"", 16000, "no audio (empty input)"),
        (b"\x01\x02\x03\x04", None, "raw PCM (no RIFF/WAV header) needs --rate R"),
        (_wav_bytes(np.zeros(0, dtype="<i2"), 8000), None, "no audio (empty input)"),
        (b"RIFF\x00\x00", None, "truncated WAV header"),
    ],
)
def test_pipe_source_errors(data, rate, message):
    with pytest.raises(AudioError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PipeSource(io.BytesIO(data), rate=rate, chunk_ms=100)


def test_pipe_source_odd_byte_at_eof_and_non_pcm_wav():
    source = PipeSource(io.BytesIO(_pcm(10).tobytes() + b"\x07"), rate=8000, chunk_ms=100)
    with pytest.raises(AudioError, match=r"partial sample \(1 stray byte"):
        list(source.chunks())
    floats = bytearray(_wav_bytes(_pcm(10), 8000))
    floats[20:22] = (3).to_bytes(2, "little")  # WAVE_FORMAT_IEEE_FLOAT
    with pytest.raises(AudioError, match="must be 16-bit integer PCM"):
        PipeSource(io.BytesIO(bytes(floats)), rate=None, chunk_ms=100)


def test_pipe_source_yields_audio_before_eof():
    """The audio goes out as it arrives: the first chunk comes while the writer is open."""
    read_fd, write_fd = os.pipe()
    with open(read_fd, "rb") as reader, open(write_fd, "wb", buffering=0) as writer:
        writer.write(_wav_bytes(_pcm(8000), 8000)[: 44 + 3200])  # header + 2 chunks
        source = PipeSource(reader, rate=None, chunk_ms=100)
        chunks = source.chunks()
        got = [next(chunks), next(chunks)]  # would block forever if it waited for EOF
        assert [len(c) for c in got] == [1600, 1600]
        writer.close()
        assert list(chunks) == []


# ---------------------------------------------------------------- end to end (yesno server)


@pytest.fixture(scope="module")
def server(recognizer):
    srv = ServerThread({"default": recognizer}, ServerConfig(port=0))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def wav_path(yesno_dir) -> Path:
    return sorted(Path(yesno_dir).rglob("*.wav"))[-1]


def _asr_stream_subprocess(args: list[str], stdin: bytes) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "asr.cli.main", "stream", *args], input=stdin,
        capture_output=True, timeout=180, cwd=REPO,
    )  # fmt: skip


def test_stdin_wav_and_raw_equal_the_file(server, recognizer, wav_path, capsys):
    from asr.audio import read_audio

    assert main(["stream", str(wav_path), "--server", server.address]) == 0
    file_text = capsys.readouterr().out.split("\t", 1)[1]
    assert file_text.strip() == " ".join(stream_directly(recognizer, wav_path))
    samples, rate = read_audio(wav_path)
    raw = (samples * 32768).astype("<i2").tobytes()
    for args, stdin in [
        (["-"], wav_path.read_bytes()),
        (["-", "--rate", str(rate), "--encoding", "s16le"], raw),
    ]:
        proc = _asr_stream_subprocess([*args, "--server", server.address], stdin)
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        assert proc.stdout.decode() == f"-\t{file_text}"


def test_stdin_errors_are_one_line(server):
    cases = [
        ([], b"\x01\x02" * 400, "raw PCM (no RIFF/WAV header) needs --rate R"),
        (["--rate", "8000"], b"", "no audio (empty input)"),
        (["--rate", "8000"], b"\x00\x01" * 4000 + b"\x05", "partial sample (1 stray byte"),
    ]
    for extra, stdin, message in cases:
        proc = _asr_stream_subprocess(["-", *extra, "--server", server.address], stdin)
        err = proc.stderr.decode()
        assert proc.returncode == 2 and message in err, err[-2000:]
        assert err.startswith("asr stream: error: -: ") and err.count("\n") == 1, err
        assert proc.stdout == b""


# ---------------------------------------------------------------- the microphone


def _fake_sounddevice(devices, *, play=None, default_input=0):
    """A stand-in ``sounddevice`` module: ``query_devices`` over ``devices`` and an
    ``InputStream`` whose callback gets ``play`` (int16) in blocks, then Ctrl-C."""
    import _thread

    module = types.ModuleType("sounddevice")
    module.opened = []

    def query_devices(device=None, kind=None):
        if kind == "input":
            if default_input is None:
                raise RuntimeError("Error querying device -1")
            return dict(devices[default_input], index=default_input)
        if device is not None:
            return devices[device]
        return list(devices)

    class InputStream:
        def __init__(self, *, samplerate, channels, dtype, device, blocksize, callback):
            assert (channels, dtype) == (1, "int16")
            self.settings = dict(samplerate=samplerate, device=device, blocksize=blocksize)
            self.callback, self.blocksize = callback, blocksize
            self.thread = threading.Thread(target=self._play, daemon=True)
            module.opened.append(self)

        def _play(self):
            time.sleep(0.5)  # the client is waiting on its responses by now
            for start in range(0, len(play), self.blocksize):
                block = play[start : start + self.blocksize].reshape(-1, 1)
                self.callback(block, len(block), None, None)
            time.sleep(0.3)
            _thread.interrupt_main()  # Ctrl-C

        def start(self):
            if play is not None:
                self.thread.start()

        def stop(self):
            pass

        def close(self):
            pass

    module.query_devices = query_devices
    module.InputStream = InputStream
    return module


def _device(name, inputs, rate=48000.0):
    return {"name": name, "max_input_channels": inputs, "default_samplerate": rate}


def test_mic_transcript_equals_the_file(server, recognizer, wav_path, monkeypatch, capsys):
    from asr.audio import read_audio

    samples, rate = read_audio(wav_path)
    pcm = (samples * 32768).astype("<i2")
    devices = [_device("HDMI out", 0), _device("USB mic", 1), _device("Webcam mic", 2)]
    fake = _fake_sounddevice(devices, play=pcm, default_input=1)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    argv = ["stream", "--mic", "--device", "webcam", "--rate", str(rate), "--interim"]
    assert main([*argv, "--server", server.address]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"mic\t{' '.join(stream_directly(recognizer, wav_path))}\n"
    assert fake.opened[0].settings == {"samplerate": rate, "device": 2, "blocksize": rate // 10}
    assert "listening at 8000 Hz" in captured.err and "mic [final" in captured.err

    assert main(["stream", "--mic", "--list-devices"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["* 1\tUSB mic\t1 ch\t48000 Hz", "  2\tWebcam mic\t2 ch\t48000 Hz"]


def test_mic_without_an_input_device(monkeypatch, capsys):
    monkeypatch.setitem(
        sys.modules, "sounddevice", _fake_sounddevice([_device("HDMI out", 0)], default_input=None)
    )
    assert main(["stream", "--mic", "--server", "127.0.0.1:1", "--wait", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "asr stream: error: --mic: no input device found (PortAudio sees none)\n"
    devices = [_device("HDMI out", 0), _device("USB mic", 1)]
    monkeypatch.setitem(sys.modules, "sounddevice", _fake_sounddevice(devices, default_input=1))
    assert main(["stream", "--mic", "--device", "nosuch", "--server", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "asr stream: error: --device nosuch: no input device; input devices: 1: USB mic\n"
    )
    assert main(["stream", "--mic", "--device", "0", "--server", "127.0.0.1:1"]) == 2
    assert "--device 0: no input device; input devices: 1: USB mic" in capsys.readouterr().err


def test_mic_without_portaudio(tmp_path, monkeypatch, capsys):
    """sounddevice raises OSError('PortAudio library not found') on import where the PortAudio
    library is missing (its Linux wheel does not bundle it)."""
    (tmp_path / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    for argv in (["stream", "--mic"], ["stream", "--list-devices"]):
        assert main([*argv, "--server", "127.0.0.1:1"]) == 2
        err = capsys.readouterr().err
        assert err == (
            "asr stream: error: --mic needs PortAudio: apt-get install libportaudio2 "
            "(PortAudio library not found)\n"
        )


def test_stream_needs_a_source(capsys):
    assert main(["stream"]) == 2
    assert "nothing to stream: give FILE..., '-' (stdin) or --mic" in capsys.readouterr().err
    assert main(["stream", "a.wav", "--mic"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["stream", "-", "-"]) == 2
    assert "only once" in capsys.readouterr().err


def test_real_portaudio_lists_an_alsa_null_device(tmp_path):
    """A real PortAudio (libportaudio2) over ALSA sees the capture device of an ALSA config
    that defines only a null device: what a machine without a sound card can offer."""
    if ctypes.util.find_library("portaudio") is None:
        pytest.skip("PortAudio library not installed (apt-get install libportaudio2)")
    config = tmp_path / "asoundrc"
    config.write_text(
        'pcm.!default { type null }\npcm.nullmic { type null hint { show on description "x" } }\n'
    )
    env = dict(os.environ, ALSA_CONFIG_PATH=str(config))
    proc = subprocess.run(
        [sys.executable, "-m", "asr.cli.main", "stream", "--list-devices"],
        capture_output=True, text=True, timeout=60, env=env, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "nullmic" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "asr.cli.main", "stream", "--mic", "--device", "nosuch"],
        capture_output=True, text=True, timeout=60, env=env, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 2 and "--device nosuch: no input device" in proc.stderr
    assert re.search(r"input devices: .*\d+: nullmic", proc.stderr), proc.stderr
