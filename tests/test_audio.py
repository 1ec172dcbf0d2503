"""Tests for asr.audio: exact PCM reading vs soundfile, resampling vs scipy, typed errors."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from asr.audio import AudioInfo, audio_info, read_audio, resample, validate_samples
from asr.errors import AudioError


def _write_pcm16(path: Path, ints: np.ndarray, rate: int = 16000) -> Path:
    sf.write(str(path), ints.astype(np.int16), rate, subtype="PCM_16")
    return path


@pytest.fixture
def pcm16(tmp_path: Path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    ints = rng.integers(-32768, 32768, size=4000).astype(np.int16)
    ints[:2] = [-32768, 32767]
    return _write_pcm16(tmp_path / "a.wav", ints), ints


def _sine(freq_hz: float, rate: int, num_samples: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(num_samples) / rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


# --- reading -------------------------------------------------------------------------------


def test_pcm16_is_int_over_32768_exactly(pcm16):
    path, ints = pcm16
    samples, rate = read_audio(path)
    assert rate == 16000
    assert samples.dtype == np.float32 and samples.shape == (4000,)
    np.testing.assert_array_equal(samples * 32768, ints.astype(np.float32))
    assert samples.min() == -1.0


def test_real_an4_files_match_soundfile(an4_dir):
    wavs = sorted((an4_dir / "wav" / "an4_clstk").glob("*/*.wav"))[::97][:8]
    assert len(wavs) >= 5
    for wav in wavs:
        samples, rate = read_audio(wav)
        expected, expected_rate = sf.read(str(wav), dtype="int16")
        assert rate == expected_rate == 16000
        np.testing.assert_array_equal(samples, expected.astype(np.float32) / 32768)
        info = audio_info(wav)
        assert info == AudioInfo(
            sampling_rate=16000,
            num_channels=1,
            num_samples=expected.shape[0],
            duration_s=expected.shape[0] / 16000,
        )


def test_real_fsdd_files_match_soundfile(fsdd_dir):
    wavs = sorted((fsdd_dir / "recordings").glob("*.wav"))[::503][:6]
    assert len(wavs) >= 5
    for wav in wavs:
        samples, rate = read_audio(wav)
        expected, _ = sf.read(str(wav), dtype="int16")
        assert rate == 8000
        np.testing.assert_array_equal(samples, expected.astype(np.float32) / 32768)


def test_real_file_resampled_on_read(fsdd_dir):
    wav = sorted((fsdd_dir / "recordings").glob("*.wav"))[0]
    native, _ = read_audio(wav)
    up, rate = read_audio(wav, sampling_rate=16000)
    assert rate == 16000
    assert up.dtype == np.float32 and up.shape == (2 * native.shape[0],)
    np.testing.assert_allclose(up, resample(native, orig_rate=8000, new_rate=16000))
    same, same_rate = read_audio(wav, sampling_rate=8000)
    assert same_rate == 8000
    np.testing.assert_array_equal(same, native)


def test_flac_reads_like_wav(tmp_path, pcm16):
    path, ints = pcm16
    flac = tmp_path / "a.flac"
    sf.write(str(flac), ints, 16000, subtype="PCM_16", format="FLAC")
    np.testing.assert_array_equal(read_audio(flac)[0], read_audio(path)[0])


@pytest.mark.parametrize("subtype", ["PCM_24", "PCM_32", "PCM_U8", "FLOAT"])
def test_other_subtypes_match_soundfile_float(tmp_path, subtype):
    wave = _sine(300.0, 16000, 1600, amplitude=0.7)
    path = tmp_path / f"{subtype}.wav"
    sf.write(str(path), wave, 16000, subtype=subtype)
    samples, _ = read_audio(path)
    expected, _ = sf.read(str(path), dtype="float32")
    np.testing.assert_array_equal(samples, expected)
    np.testing.assert_allclose(samples, wave, atol=1.0 / 64)  # 8-bit is the coarsest


def test_multichannel_average_and_select(tmp_path):
    rng = np.random.default_rng(1)
    ints = rng.integers(-32768, 32768, size=(500, 3)).astype(np.int16)
    path = tmp_path / "three.wav"
    sf.write(str(path), ints, 16000, subtype="PCM_16")
    mixed, _ = read_audio(path)
    np.testing.assert_allclose(mixed, ints.astype(np.float64).mean(axis=1) / 32768, atol=1e-7)
    for channel in range(3):
        picked, _ = read_audio(path, channel=channel)
        np.testing.assert_array_equal(picked * 32768, ints[:, channel].astype(np.float32))
    assert audio_info(path).num_channels == 3


# --- errors --------------------------------------------------------------------------------


def _expect_error(fragment: str, func, *args, **kwargs) -> str:
    with pytest.raises(AudioError, match=fragment) as info:
        func(*args, **kwargs)
    return str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    message = _expect_error("no such audio file", read_audio, path)
    assert str(path) in message
    _expect_error("no such audio file", audio_info, path)


def test_directory(tmp_path):
    _expect_error("not a regular file", read_audio, tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    message = _expect_error(r"empty \(0 bytes\)", read_audio, path)
    assert str(path) in message
    _expect_error(r"empty \(0 bytes\)", audio_info, path)


def test_header_only_file(tmp_path, pcm16):
    path, _ = pcm16
    header_only = tmp_path / "header.wav"
    data = path.read_bytes()
    # A well-formed header that declares zero data bytes.
    header = bytearray(data[:44])
    header[4:8] = struct.pack("<I", 36)
    header[40:44] = struct.pack("<I", 0)
    header_only.write_bytes(bytes(header))
    _expect_error("no audio samples", read_audio, header_only)
    _expect_error("no audio samples", audio_info, header_only)


def test_truncated_wav_raises_instead_of_returning_fewer_samples(tmp_path, pcm16):
    path, _ = pcm16
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(path.read_bytes()[: 44 + 1000])
    # libsndfile itself would silently return the 500 samples that are there:
    assert sf.read(str(truncated))[0].shape == (500,)
    message = _expect_error("truncated WAV", read_audio, truncated)
    assert "8000 bytes" in message and "1000" in message
    _expect_error("truncated WAV", audio_info, truncated)
    # A header cut off right after the data-chunk header: also truncated, not "no samples".
    cut = tmp_path / "cut.wav"
    cut.write_bytes(path.read_bytes()[:44])
    _expect_error("truncated WAV", read_audio, cut)


def test_streamed_wav_with_placeholder_size_is_read(tmp_path, pcm16):
    path, ints = pcm16
    streamed = bytearray(path.read_bytes())
    streamed[4:8] = struct.pack("<I", 0x7FFFF024)  # what `sox ... -t wav -` writes
    streamed[40:44] = struct.pack("<I", 0x7FFFF000)
    out = tmp_path / "streamed.wav"
    out.write_bytes(bytes(streamed))
    samples, _ = read_audio(out)
    np.testing.assert_array_equal(samples * 32768, ints.astype(np.float32))


def test_truncated_flac(tmp_path):
    flac = tmp_path / "t.flac"
    sf.write(str(flac), (_sine(200.0, 16000, 48000) * 20000).astype(np.int16), 16000)
    data = flac.read_bytes()
    flac.write_bytes(data[: len(data) // 2])
    _expect_error("truncated or corrupt", read_audio, flac)


def test_text_file_is_not_audio(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 20)
    message = _expect_error("not a recognised audio file", read_audio, path)
    assert str(path) in message
    _expect_error("not a recognised audio file", audio_info, path)


def test_corrupt_header_sampling_rate(tmp_path, pcm16):
    path, _ = pcm16
    data = bytearray(path.read_bytes())
    data[24:28] = struct.pack("<I", 0)  # sample rate 0
    bad = tmp_path / "rate0.wav"
    bad.write_bytes(bytes(data))
    _expect_error("cannot read audio header", read_audio, bad)


def test_nan_in_float_wav(tmp_path):
    wave = _sine(100.0, 8000, 800)
    wave[123] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(str(path), wave, 8000, subtype="FLOAT")
    message = _expect_error("non-finite", read_audio, path)
    assert str(path) in message and "sample 123" in message


@pytest.mark.parametrize("channel", [2, -1, 5])
def test_unsupported_channel(tmp_path, channel):
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.zeros((100, 2), dtype=np.int16), 16000, subtype="PCM_16")
    message = _expect_error(f"channel {channel} requested", read_audio, path, channel=channel)
    assert "2 channel(s)" in message
    _expect_error("channel must be an integer", read_audio, path, channel=1.0)


@pytest.mark.parametrize("rate", [0, -16000, 16000.5, True])
def test_invalid_sampling_rate(pcm16, rate):
    path, _ = pcm16
    _expect_error("invalid sampling rate", read_audio, path, sampling_rate=rate)
    _expect_error("invalid sampling rate", resample, np.zeros(10), orig_rate=rate, new_rate=8000)
    _expect_error("invalid sampling rate", resample, np.zeros(10), orig_rate=8000, new_rate=rate)


# --- validate_samples ----------------------------------------------------------------------


def test_validate_samples_accepts_and_converts():
    out = validate_samples(np.array([0.0, 0.5, -1.0]))
    assert out.dtype == np.float32 and out.tolist() == [0.0, 0.5, -1.0]
    same = np.zeros(5, dtype=np.float32)
    assert validate_samples(same) is same


@pytest.mark.parametrize(
    ("samples", "fragment"),
    [
        (np.zeros((2, 5), dtype=np.float32), "1-D"),
        (np.zeros(5, dtype=np.int16), "floating-point"),
        (np.zeros(0, dtype=np.float32), "no samples"),
        (np.array([0.0, np.nan], dtype=np.float32), "non-finite"),
        (np.array([np.inf, 0.0]), "non-finite"),
    ],
)
def test_validate_samples_rejects(samples, fragment):
    message = _expect_error(fragment, validate_samples, samples, name="stream-7")
    assert message.startswith("stream-7: ")


# --- resample ------------------------------------------------------------------------------


def test_sine_survives_round_trip():
    wave = _sine(440.0, 8000, 8000)
    up = resample(wave, orig_rate=8000, new_rate=16000)
    back = resample(up, orig_rate=16000, new_rate=8000)
    assert back.dtype == np.float32 and back.shape == wave.shape
    # Away from the edges (filter transients) the tone comes back almost exactly.
    assert np.max(np.abs(back - wave)[200:-200]) < 1e-4
    # and the upsampled signal is the same tone sampled at 16 kHz
    assert np.max(np.abs(up - _sine(440.0, 16000, 16000))[400:-400]) < 1e-4


def test_agrees_with_scipy_resample_poly():
    rng = np.random.default_rng(2)
    wave = sum(_sine(f, 16000, 16000, amplitude=0.2) for f in rng.uniform(100, 3500, size=5))
    for new_rate, up, down in [(8000, 1, 2), (22050, 441, 320), (48000, 3, 1)]:
        ours = resample(wave, orig_rate=16000, new_rate=new_rate)
        peer = scipy.signal.resample_poly(wave.astype(np.float64), up, down)
        assert ours.shape == peer.shape
        edge = new_rate // 50
        assert np.max(np.abs(ours - peer)[edge:-edge]) < 5e-3


@pytest.mark.parametrize("num_samples", [1, 2, 3, 7, 100, 101, 999, 16001])
@pytest.mark.parametrize(
    ("orig_rate", "new_rate"),
    [(8000, 16000), (16000, 8000), (44100, 16000), (16000, 22050), (48000, 16000), (16000, 16000)],
)
def test_output_length_is_rounded_ratio(num_samples, orig_rate, new_rate):
    out = resample(np.ones(num_samples, dtype=np.float32), orig_rate=orig_rate, new_rate=new_rate)
    exact = num_samples * new_rate / orig_rate
    assert out.shape == (int(np.floor(exact + 0.5)),)
    assert out.dtype == np.float32


def test_downsampling_removes_energy_above_new_nyquist():
    tone = _sine(6000.0, 16000, 16000, amplitude=1.0)  # above 4 kHz, the 8 kHz Nyquist
    down = resample(tone, orig_rate=16000, new_rate=8000)
    assert np.sqrt(np.mean(down[200:-200] ** 2)) < 1e-4  # input RMS is 0.707
    # a naive decimation would alias it to 2 kHz at full strength:
    assert np.sqrt(np.mean(tone[::2] ** 2)) > 0.5


def test_upsampling_adds_no_images_above_old_nyquist():
    noise = np.random.default_rng(3).standard_normal(8000).astype(np.float32) * 0.1
    up = resample(noise, orig_rate=8000, new_rate=16000)[400:-400]  # skip edge transients
    power = np.abs(np.fft.rfft(up * np.hanning(up.shape[0]))) ** 2
    freqs = np.fft.rfftfreq(up.shape[0], d=1.0 / 16000)
    assert power[freqs > 4200].sum() / power.sum() < 1e-8
