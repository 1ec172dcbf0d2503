"""asr.data.perturb: sox-style speed perturbation of waveforms and of data dirs.

Oracles: a tone played 1.1 times faster is 1.1 times higher and 1/1.1 as long; torchaudio's
``functional.speed`` (its own windowed-sinc resampler) gives the same waveform; the perturbed
data dir passes Kaldi's data-dir checks with 2.02 times the audio."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.data import (
    DataDir,
    SpeedPerturbConfig,
    perturb_data_dir_speed,
    read_data_dir,
    speed_perturb,
    total_duration_seconds,
    validate_data_dir,
    write_data_dir,
    write_kaldi_map,
)
from asr.data.perturb import PERTURB_INFO_FILE, speed_prefix
from asr.errors import DataDirError

RATE = 16000


def tones(num_samples: int, freqs=(440.0, 1234.0)) -> np.ndarray:
    t = np.arange(num_samples) / RATE
    return sum(0.3 * np.sin(2 * np.pi * f * t) for f in freqs).astype(np.float32)


def peak_hz(wave: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / RATE)[np.argmax(spectrum)])


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_length_and_pitch_by_the_factor(factor):
    wave = tones(RATE, freqs=(440.0,))
    out = speed_perturb(wave, sampling_rate=RATE, factor=factor)
    assert out.dtype == np.float32
    assert out.shape == (int(np.floor(RATE / factor + 0.5)),)
    bin_hz = RATE / len(out)  # the FFT's resolution
    assert abs(peak_hz(out) - 440.0 * factor) <= bin_hz


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_matches_torchaudio(factor):
    import torchaudio.functional as F

    wave = tones(RATE)
    ours = speed_perturb(wave, sampling_rate=RATE, factor=factor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchaudio's deprecation notices
        peer, _ = F.speed(torch.from_numpy(wave)[None], RATE, factor)
    peer = peer[0].numpy()
    assert abs(len(peer) - len(ours)) <= 1  # it rounds the length up
    n = min(len(peer), len(ours))
    edge = 200  # the filters' start-up at both ends differs
    # two windowed-sinc resamplers, tones far below Nyquist: both within ~1e-3 of the ideal
    assert np.max(np.abs(ours[edge : n - edge] - peer[edge : n - edge])) < 2e-3


def test_speed_one_is_a_copy_and_bad_input_is_an_error():
    wave = tones(100)
    assert np.array_equal(speed_perturb(wave, sampling_rate=RATE, factor=1.0), wave)
    with pytest.raises(DataDirError, match="mono"):
        speed_perturb(np.zeros((2, 10)), sampling_rate=RATE, factor=0.9)
    with pytest.raises(DataDirError, match="factor"):
        speed_perturb(wave, sampling_rate=RATE, factor=0.0)
    with pytest.raises(DataDirError, match="repeat"):
        SpeedPerturbConfig(factors=(0.9, 0.9))
    assert speed_prefix(0.9) == "sp0.9-" and speed_prefix(1) == "sp1.0-"


@pytest.fixture
def small_data_dir(tmp_path):
    """Two speakers, three utterances (ids not starting with the speaker, as speechocean762's)."""
    rng = np.random.default_rng(0)
    wavs = {}
    for utt_id, seconds in (("000010011", 1.0), ("000010035", 0.5), ("000020001", 0.75)):
        path = tmp_path / "audio" / f"{utt_id}.flac"
        path.parent.mkdir(exist_ok=True)
        samples = tones(int(RATE * seconds)) + 0.01 * rng.normal(size=int(RATE * seconds))
        sf.write(path, samples.astype(np.float32), RATE, subtype="PCM_16")
        wavs[utt_id] = str(path)
    data = DataDir(
        wav_scp=wavs,
        text={"000010011": "WE CALL IT", "000010035": "ZERO", "000020001": "THREE TWO"},
        utt2spk={"000010011": "0001", "000010035": "0001", "000020001": "0002"},
    )
    write_data_dir(data, tmp_path / "train")
    write_kaldi_map(tmp_path / "train" / "spk2gender", {"0001": "m", "0002": "f"})
    return tmp_path / "train"


def test_perturbed_data_dir_has_a_copy_per_factor_and_2_02_times_the_audio(small_data_dir):
    out = small_data_dir.parent / "train_sp"
    perturbed = perturb_data_dir_speed(small_data_dir, out)
    validate_data_dir(out)  # Kaldi's checks, the audio files included
    source = read_data_dir(small_data_dir)
    assert sorted(perturbed.utt_ids) == sorted(
        f"sp{f}-{u}" for f in ("0.9", "1.1") for u in source.utt_ids
    )
    assert perturbed.utt2spk["sp1.1-000020001"] == "sp1.1-0002"  # a new speaker per factor
    assert perturbed.text["sp0.9-000010035"] == "ZERO"
    genders = "sp0.9-0001 m\nsp0.9-0002 f\nsp1.1-0001 m\nsp1.1-0002 f\n"
    assert (out / "spk2gender").read_text() == genders
    for utt_id in source.utt_ids:
        num_samples = sf.info(source.wav_scp[utt_id]).frames
        for factor in (0.9, 1.1):
            info = sf.info(perturbed.wav_scp[speed_prefix(factor) + utt_id])
            assert info.samplerate == RATE and info.subtype == "PCM_16"
            assert info.frames == int(np.floor(num_samples / factor + 0.5))
    ratio = total_duration_seconds(perturbed) / total_duration_seconds(source)
    assert ratio == pytest.approx(1 / 0.9 + 1 / 1.1, abs=1e-3)  # 2.0202
    assert json.loads((out / PERTURB_INFO_FILE).read_text())["factors"] == [0.9, 1.1]


def test_a_finished_copy_is_skipped_and_a_new_config_redoes_it(small_data_dir):
    out = small_data_dir.parent / "train_sp"
    perturb_data_dir_speed(small_data_dir, out)
    wav_scp = out / "wav.scp"
    stamp = wav_scp.stat().st_mtime_ns
    audio = sorted((out / "wav").iterdir())
    mtimes = [p.stat().st_mtime_ns for p in audio]
    perturb_data_dir_speed(small_data_dir, out)  # up to date: nothing rewritten
    assert wav_scp.stat().st_mtime_ns == stamp
    assert [p.stat().st_mtime_ns for p in audio] == mtimes
    three_way = perturb_data_dir_speed(
        small_data_dir, out, config=SpeedPerturbConfig(factors=(0.9, 1.0, 1.1))
    )
    assert len(three_way) == 9
    assert len(read_data_dir(out)) == 9
    with pytest.raises(DataDirError, match="another directory"):
        perturb_data_dir_speed(small_data_dir, small_data_dir)


def test_an_unreadable_recording_is_named(small_data_dir):
    first = read_data_dir(small_data_dir).utt_ids[0]
    path = read_data_dir(small_data_dir).wav_scp[first]
    with open(path, "wb") as handle:
        handle.write(b"not audio")
    with pytest.raises(DataDirError, match=first):
        perturb_data_dir_speed(small_data_dir, small_data_dir.parent / "sp")
    assert not os.path.exists(small_data_dir.parent / "sp" / "wav.scp")
