"""Audio input: read, validate and resample waveforms, with clear errors.

Every reader returns mono ``float32`` samples in ``[-1, 1]``. 16-bit PCM is
read as ``int16 / 32768`` exactly, so ``samples * 32768`` gives back the very
integers Kaldi computes its features on. Anything libsndfile reads (WAV,
FLAC, OGG, AIFF, ...) is accepted; every failure is an
:class:`asr.errors.AudioError` whose message starts with the file's path.

>>> import tempfile, pathlib, numpy as np, soundfile as sf
>>> path = pathlib.Path(tempfile.mkdtemp()) / "a.wav"
>>> sf.write(path, np.array([0, 16384, -32768], dtype=np.int16), 8000)
>>> samples, rate = read_audio(path)
>>> samples.tolist(), rate
([0.0, 0.5, -1.0], 8000)
>>> audio_info(path).num_samples
3
>>> resample(np.zeros(800, dtype=np.float32), orig_rate=8000, new_rate=16000).shape
(1600,)

Truncated files: libsndfile silently returns only the samples present when a
WAV header declares more data than the file holds. We check the RIFF ``data``
chunk size against the file size before decoding and raise instead (sizes of
``0x7ffff000`` and above are the placeholders streaming writers such as
``sox ... -t wav -`` leave when they cannot seek back; those files are read as
they are). For other containers (FLAC, ...) a short decode raises as well.
"""

from __future__ import annotations

import numbers
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from asr.errors import AudioError

__all__ = ["AudioInfo", "audio_info", "read_audio", "resample", "validate_samples"]

# RIFF data-chunk sizes at or above this are "unknown length" placeholders
# written by streaming writers (sox writes 0x7ffff000, others 0xffffffff).
_STREAMING_SIZE_PLACEHOLDER = 0x7FFFF000
# libsndfile subtypes read through int16 (8-bit is scaled up to 16 by libsndfile).
_INT16_SUBTYPES = frozenset({"PCM_16", "PCM_S8", "PCM_U8"})
_SOXR_QUALITY = "HQ"
# read_audio refuses to resample by more than these factors: a corrupt header's 1 Hz rate
# would turn a 100 kB file into gigabytes of samples at 16 kHz, and its 1 GHz rate would
# take soxr seconds (its filter grows with the ratio: 4 s for 1.07 GHz -> 16 kHz).
_MAX_UPSAMPLING = 64
_MAX_DOWNSAMPLING = 1000
# Samples (frames x channels) decoded per read: 4 Mi values (16 MB of float32) at most.
_READ_BLOCK_VALUES = 1 << 22


@dataclass(frozen=True)
class AudioInfo:
    """What an audio file's header says, read without decoding the samples.

    ``num_samples`` counts samples per channel (frames); ``duration_s`` is
    ``num_samples / sampling_rate`` in seconds.
    """

    sampling_rate: int
    num_channels: int
    num_samples: int
    duration_s: float


def validate_samples(samples: np.ndarray, *, name: str = "samples") -> np.ndarray:
    """Check that ``samples`` is a usable waveform and return it as ``float32``.

    Requires a non-empty 1-D floating-point array of finite values (integer
    PCM must be scaled first, e.g. ``pcm16 / 32768``). ``name`` (a path, a
    stream id) starts every error message. Returns a ``(num_samples,)``
    float32 array (the input itself when it already is one).
    """
    try:
        array = np.asarray(samples)
    except (TypeError, ValueError) as err:
        raise AudioError(f"{name}: cannot be read as an array of samples ({err})") from err
    if array.ndim != 1:
        raise AudioError(f"{name}: expected a 1-D array of samples, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise AudioError(
            f"{name}: expected floating-point samples, got dtype {array.dtype} "
            "(scale integer PCM first, e.g. samples / 32768 for 16-bit)"
        )
    if array.size == 0:
        raise AudioError(f"{name}: contains no samples (empty array)")
    finite = np.isfinite(array)
    if not finite.all():
        num_bad = int(array.size - np.count_nonzero(finite))
        first_bad = int(np.argmin(finite))
        raise AudioError(
            f"{name}: contains {num_bad} non-finite sample value(s) (NaN or inf), "
            f"the first at sample {first_bad}"
        )
    return array.astype(np.float32, copy=False)


def resample(samples: np.ndarray, *, orig_rate: int, new_rate: int) -> np.ndarray:
    """Resample a 1-D waveform from ``orig_rate`` to ``new_rate`` Hz.

    Uses soxr's high-quality polyphase/sinc resampler, which low-passes below
    the lower Nyquist frequency, so downsampling does not alias. The output
    has ``floor(num_samples * new_rate / orig_rate + 1/2)`` samples (round
    half up), float32. Equal rates return a float32 copy.
    """
    orig_rate = _check_rate(orig_rate, what="resample: orig_rate")
    new_rate = _check_rate(new_rate, what="resample: new_rate")
    wave = validate_samples(samples, name="resample input")
    if orig_rate == new_rate:
        return wave.copy()
    num_out = (2 * wave.shape[0] * new_rate + orig_rate) // (2 * orig_rate)
    out = soxr.resample(wave, orig_rate, new_rate, quality=_SOXR_QUALITY)
    out = np.asarray(out, dtype=np.float32)
    if out.shape[0] > num_out:
        out = out[:num_out]
    elif out.shape[0] < num_out:
        out = np.concatenate([out, np.zeros(num_out - out.shape[0], dtype=np.float32)])
    return np.ascontiguousarray(out)


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Header information of an audio file, without reading its samples.

    Raises :class:`AudioError` for the same file-level problems as
    :func:`read_audio` (missing, empty, not audio, truncated WAV, no samples);
    problems only decoding reveals (NaN values, a corrupt FLAC stream) are
    left to :func:`read_audio`.
    """
    path = Path(path)
    _check_file(path)
    with _open(path) as snd:
        rate, num_channels, num_samples = snd.samplerate, snd.channels, snd.frames
    _check_header(path, sampling_rate=rate, num_channels=num_channels, num_samples=num_samples)
    return AudioInfo(
        sampling_rate=rate,
        num_channels=num_channels,
        num_samples=num_samples,
        duration_s=num_samples / rate,
    )


def read_audio(
    path: str | os.PathLike,
    *,
    sampling_rate: int | None = None,
    channel: int | None = None,
) -> tuple[np.ndarray, int]:
    """Read an audio file as mono float32 samples; return ``(samples, sampling_rate)``.

    - ``samples``: ``(num_samples,)`` float32; 16-bit (and 8-bit) PCM is
      ``int / 32768`` exactly; 24/32-bit PCM is scaled by libsndfile to
      ``[-1, 1)``; float files are returned as stored (values outside
      ``[-1, 1]`` are kept, NaN/inf raise).
    - ``channel=None`` averages the channels of multi-channel audio;
      ``channel=k`` keeps channel ``k`` (0-based) only.
    - ``sampling_rate``: when given and different from the file's, the
      samples are resampled (see :func:`resample`) and that rate is returned;
      resampling by more than 64x up or 1000x down (a corrupt header) raises.
    """
    path = Path(path)
    if sampling_rate is not None:
        sampling_rate = _check_rate(sampling_rate, what=f"{path}: requested sampling_rate")
    if channel is not None and (
        isinstance(channel, bool) or not isinstance(channel, numbers.Integral)
    ):
        raise AudioError(f"{path}: channel must be an integer or None, got {channel!r}")
    _check_file(path)
    with _open(path) as snd:
        rate, num_channels, num_samples = snd.samplerate, snd.channels, snd.frames
        _check_header(path, sampling_rate=rate, num_channels=num_channels, num_samples=num_samples)
        if sampling_rate is not None and not (
            rate <= sampling_rate * _MAX_DOWNSAMPLING and sampling_rate <= rate * _MAX_UPSAMPLING
        ):
            raise AudioError(
                f"{path}: cannot resample {rate} Hz audio to {sampling_rate} Hz (more than "
                f"{_MAX_UPSAMPLING}x up or {_MAX_DOWNSAMPLING}x down; is the header's sampling "
                "rate corrupt?)"
            )
        if channel is not None and not 0 <= channel < num_channels:
            raise AudioError(
                f"{path}: channel {channel} requested, but the file has "
                f"{num_channels} channel(s) (valid: 0..{num_channels - 1})"
            )
        int16 = snd.subtype in _INT16_SUBTYPES
        try:
            data = _read_blocks(snd, num_samples=num_samples, dtype="int16" if int16 else "float32")
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioError(f"{path}: truncated or corrupt audio data ({err})") from err
    if data.shape[0] != num_samples:
        raise AudioError(
            f"{path}: truncated or corrupt: the header declares {num_samples} samples "
            f"but only {data.shape[0]} could be decoded"
        )
    if channel is not None:
        data = data[:, channel]
    elif num_channels == 1:
        data = data[:, 0]
    else:
        data = data.mean(axis=1, dtype=np.float64)
    wave = data.astype(np.float32)
    if int16:
        wave *= np.float32(1.0 / 32768.0)  # exact: a power of two
    wave = validate_samples(wave, name=str(path))
    if sampling_rate is not None and sampling_rate != rate:
        return resample(wave, orig_rate=rate, new_rate=sampling_rate), sampling_rate
    return wave, rate


def _read_blocks(snd: sf.SoundFile, *, num_samples: int, dtype: str) -> np.ndarray:
    """Decode up to ``num_samples`` frames, ``(num_decoded, num_channels)``, in blocks of at
    most ``_READ_BLOCK_VALUES`` values: a corrupt header's huge frame count costs no memory
    beyond what the file really decodes to (the caller compares the counts)."""
    block_frames = max(1, _READ_BLOCK_VALUES // snd.channels)
    if num_samples <= block_frames:
        return snd.read(num_samples, dtype=dtype, always_2d=True)
    blocks = []
    remaining = num_samples
    while remaining > 0:
        block = snd.read(min(remaining, block_frames), dtype=dtype, always_2d=True)
        if block.shape[0] == 0:
            break
        blocks.append(block)
        remaining -= block.shape[0]
    if not blocks:
        return np.zeros((0, snd.channels), dtype=dtype)
    return np.concatenate(blocks)


def _check_rate(rate: object, *, what: str) -> int:
    if isinstance(rate, bool) or not isinstance(rate, numbers.Integral) or rate <= 0:
        raise AudioError(f"{what}: invalid sampling rate {rate!r} (need a positive integer in Hz)")
    return int(rate)


def _check_file(path: Path) -> None:
    """Raise for a missing, non-regular or empty file, and for a truncated WAV."""
    if not path.exists():
        raise AudioError(f"{path}: no such audio file")
    if not path.is_file():
        raise AudioError(f"{path}: not a regular file")
    try:
        size = path.stat().st_size
    except OSError as err:
        raise AudioError(f"{path}: cannot stat audio file ({err})") from err
    if size == 0:
        raise AudioError(f"{path}: audio file is empty (0 bytes)")
    _check_riff_data_size(path, file_size=size)


def _check_riff_data_size(path: Path, *, file_size: int) -> None:
    """For RIFF/WAVE files, raise if the ``data`` chunk claims more bytes than exist."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return
            pos = 12
            while pos + 8 <= file_size:
                handle.seek(pos)
                chunk = handle.read(8)
                if len(chunk) < 8:
                    return
                chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if chunk_id == b"data":
                    available = file_size - pos - 8
                    if available < chunk_size < _STREAMING_SIZE_PLACEHOLDER:
                        raise AudioError(
                            f"{path}: truncated WAV file: the header declares {chunk_size} "
                            f"bytes of audio data but only {available} are present"
                        )
                    return
                pos += 8 + chunk_size + (chunk_size & 1)
    except OSError as err:
        raise AudioError(f"{path}: cannot read audio file ({err})") from err


def _open(path: Path) -> sf.SoundFile:
    try:
        return sf.SoundFile(str(path))
    except sf.LibsndfileError as err:
        if "Format not recognised" in str(err):
            raise AudioError(
                f"{path}: not a recognised audio file (libsndfile: {err.error_string})"
            ) from err
        raise AudioError(f"{path}: cannot read audio header ({err.error_string})") from err
    except (RuntimeError, OSError) as err:
        raise AudioError(f"{path}: cannot open audio file ({err})") from err


def _check_header(path: Path, *, sampling_rate: int, num_channels: int, num_samples: int) -> None:
    if sampling_rate <= 0:
        raise AudioError(f"{path}: invalid sampling rate {sampling_rate} in header")
    if num_channels <= 0:
        raise AudioError(f"{path}: invalid channel count {num_channels} in header")
    if num_samples <= 0:
        raise AudioError(f"{path}: contains no audio samples (header only)")
