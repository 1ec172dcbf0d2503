"""Live audio sources of ``asr stream``: a pipe on stdin (WAV or raw s16le) and a microphone.

Each source gives its sampling rate and an iterator of mono little-endian int16 PCM chunks
(bytes) that yields audio as it arrives, so that the gRPC request iterator sends it while
the source is still producing it. Errors are :class:`asr.errors.AudioError` with one line.
"""

from __future__ import annotations

import queue
import struct
import threading
from collections.abc import Iterator
from typing import BinaryIO

from asr.errors import AudioError

PORTAUDIO_HINT = "--mic needs PortAudio: apt-get install libportaudio2"
# a WAV size field that a writer to a pipe leaves as "unknown" (0 or the 32-bit maximum)
_UNKNOWN_SIZES = (0, 0xFFFFFFFF, 0x7FFFFFFF)
_WAVE_FORMAT_PCM = 1
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE


class PipeSource:
    """Audio read incrementally from a binary stream (stdin): a WAV stream, recognised by its
    RIFF header, or raw s16le mono PCM at ``rate``. The header (or, raw, the first bytes)
    is read on construction so that a bad or empty input fails before any call is made."""

    def __init__(self, stream: BinaryIO, *, rate: int | None, chunk_ms: float, name: str = "-"):
        self.name = name
        self._stream = stream
        self._channels = 1
        self._remaining: int | None = None  # bytes of WAV data left (None: until EOF)
        head = self._read(4)
        if head == b"RIFF":
            self.rate = self._read_wav_header()
        else:
            if rate is None:
                if not head:
                    raise AudioError(f"{name}: no audio (empty input)")
                raise AudioError(
                    f"{name}: raw PCM (no RIFF/WAV header) needs --rate R, e.g. --rate 16000"
                )
            self.rate = rate
        if self.rate <= 0:
            raise AudioError(f"{name}: sampling rate must be positive, got {self.rate}")
        frame = 2 * self._channels
        self._chunk_bytes = max(1, int(self.rate * chunk_ms / 1000.0)) * frame
        self._pending = b"" if head == b"RIFF" else head
        first = self._read_data(self._chunk_bytes - len(self._pending))
        self._pending += first
        if not self._pending:
            raise AudioError(f"{name}: no audio (empty input)")

    def _read(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at EOF."""
        parts, got = [], 0
        while got < n:
            part = self._stream.read(n - got)
            if not part:
                break
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    def _read_exact(self, n: int, what: str) -> bytes:
        data = self._read(n)
        if len(data) < n:
            raise AudioError(f"{self.name}: truncated WAV header ({what})")
        return data

    def _read_wav_header(self) -> int:
        self._read_exact(4, "RIFF size")
        if self._read_exact(4, "WAVE tag") != b"WAVE":
            raise AudioError(f"{self.name}: a RIFF stream but not WAVE")
        rate = None
        while True:
            chunk_id = self._read_exact(4, "chunk id")
            (size,) = struct.unpack("<I", self._read_exact(4, "chunk size"))
            if chunk_id == b"fmt ":
                if size < 16:
                    raise AudioError(f"{self.name}: WAV fmt chunk too short ({size} bytes)")
                body = self._read_exact(size + (size & 1), "fmt chunk")
                fmt, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
                if fmt == _WAVE_FORMAT_EXTENSIBLE and size >= 26:
                    fmt = struct.unpack("<H", body[24:26])[0]
                if fmt != _WAVE_FORMAT_PCM or bits != 16 or channels < 1:
                    raise AudioError(
                        f"{self.name}: WAV on stdin must be 16-bit integer PCM (got format "
                        f"{fmt}, {bits} bits, {channels} channels); convert with "
                        "sox ... -e signed -b 16"
                    )
                self._channels = channels
            elif chunk_id == b"data":
                if rate is None:
                    raise AudioError(f"{self.name}: WAV data chunk before its fmt chunk")
                self._remaining = None if size in _UNKNOWN_SIZES else size
                return rate
            else:
                self._read_exact(size + (size & 1), f"{chunk_id!r} chunk")

    def _read_data(self, n: int) -> bytes:
        if self._remaining is not None:
            n = min(n, self._remaining)
        data = self._read(n) if n > 0 else b""
        if self._remaining is not None:
            self._remaining -= len(data)
        return data

    def chunks(self) -> Iterator[bytes]:
        """Mono s16le chunks of about ``chunk_ms`` each, as they arrive, until EOF."""
        import numpy as np

        frame = 2 * self._channels
        data = self._pending
        self._pending = b""
        while True:
            if len(data) < self._chunk_bytes:
                data += self._read_data(self._chunk_bytes - len(data))
            if not data:
                return
            whole = len(data) - len(data) % frame
            if whole < len(data) and len(data) < self._chunk_bytes:  # EOF mid-frame
                raise AudioError(
                    f"{self.name}: input ends with a partial sample ({len(data) % frame} "
                    f"stray byte(s)); s16le needs {frame} bytes per frame"
                )
            block, data = data[:whole], data[whole:]
            if self._channels > 1:
                pcm = np.frombuffer(block, dtype="<i2").reshape(-1, self._channels)
                block = pcm.mean(axis=1).round().astype("<i2").tobytes()
            if block:
                yield block


def import_sounddevice():
    """The ``sounddevice`` module, or one line saying how to install PortAudio."""
    try:
        import sounddevice
    except ImportError as err:
        raise AudioError(f"{PORTAUDIO_HINT} and pip install sounddevice ({err})") from None
    except OSError as err:  # sounddevice's "PortAudio library not found"
        raise AudioError(f"{PORTAUDIO_HINT} ({err})") from None
    return sounddevice


def input_devices(sd) -> list[tuple[int, str, int, float]]:
    """(index, name, input channels, default rate) of every device with an input."""
    found = []
    for index, info in enumerate(sd.query_devices()):
        if info["max_input_channels"] > 0:
            found.append(
                (index, info["name"], info["max_input_channels"], info["default_samplerate"])
            )
    return found


def describe_devices(devices: list[tuple[int, str, int, float]]) -> str:
    if not devices:
        return "no input devices at all"
    return "; ".join(f"{i}: {name}" for i, name, _, _ in devices)


def resolve_device(sd, device: str | None) -> int:
    """The index of the input device ``device`` (an index or a name substring), or of the
    default input; :class:`AudioError` listing the input devices when there is none."""
    devices = input_devices(sd)
    if device is None:
        try:
            index = sd.query_devices(kind="input")["index"]
        except Exception:  # PortAudioError: no default input device
            index = None
        if index is None:
            if not devices:
                raise AudioError("--mic: no input device found (PortAudio sees none)")
            index = devices[0][0]
        return int(index)
    if device.strip().lstrip("-").isdigit():
        wanted = int(device)
        matches = [d for d in devices if d[0] == wanted]
    else:
        matches = [d for d in devices if device.lower() in d[1].lower()]
    if len(matches) != 1:
        why = "no input device" if not matches else f"{len(matches)} input devices match"
        raise AudioError(f"--device {device}: {why}; input devices: {describe_devices(devices)}")
    return matches[0][0]


class MicSource:
    """Mono int16 audio from a PortAudio input device (``sounddevice.InputStream``), in
    ``chunk_ms`` blocks, until :meth:`stop` (Ctrl-C)."""

    def __init__(self, *, device: str | None, rate: int, chunk_ms: float):
        self._sd = sd = import_sounddevice()
        self.rate = rate
        self.name = "mic"
        self._device = resolve_device(sd, device)
        self._blocks: queue.Queue[bytes | None] = queue.Queue()
        self._stopped = threading.Event()
        self.overflows = 0
        try:
            self._stream = sd.InputStream(
                samplerate=rate, channels=1, dtype="int16", device=self._device,
                blocksize=max(1, int(rate * chunk_ms / 1000.0)), callback=self._callback,
            )  # fmt: skip
        except Exception as err:  # PortAudioError, ValueError: unsupported settings
            info = sd.query_devices(self._device)
            raise AudioError(
                f"--mic: cannot open input device {self._device} ({info['name']}) at "
                f"{rate} Hz mono int16: {err}; try --rate {int(info['default_samplerate'])}"
            ) from None

    def _callback(self, indata, frames, time_info, status) -> None:
        if status:
            self.overflows += 1
        if not self._stopped.is_set():
            self._blocks.put(bytes(indata.astype("<i2", copy=False).tobytes()))

    def start(self) -> None:
        self._stream.start()

    def stop(self) -> None:
        """Stop capturing; :meth:`chunks` ends after the blocks already captured."""
        if not self._stopped.is_set():
            self._stopped.set()
            self._blocks.put(None)

    def close(self) -> None:
        """Stop capturing and release the device (idempotent)."""
        self.stop()
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
            stream.close()

    def chunks(self) -> Iterator[bytes]:
        while True:
            block = self._blocks.get()
            if block is None:
                return
            yield block
