"""Speed perturbation of a data dir: Kaldi's ``utils/data/perturb_data_dir_speed.sh``.

Kaldi pipes every recording through ``sox -t wav - -t wav - speed FACTOR``: the audio is
played FACTOR times faster -- shorter by 1/FACTOR, every frequency FACTOR times higher --
at the same sampling rate. sox's ``speed`` is a change of rate: the samples are taken to be
at ``sampling_rate * FACTOR`` Hz and resampled to ``sampling_rate``. :func:`speed_perturb`
does exactly that with soxr (sox's own resampling library). :func:`perturb_data_dir_speed`
writes the perturbed recordings as 16-bit WAV files and a data dir of them: one copy of every
utterance per factor, utterance and speaker ids prefixed ``sp<FACTOR>-`` (a perturbed
speaker is a new speaker, as in Kaldi), the transcripts unchanged. The usual factors
0.9 and 1.1 give 1/0.9 + 1/1.1 = 2.02 times the audio (Kaldi's 3-way perturbation adds the
original, 1.0, for 3.02 times).

Example:

>>> import numpy as np
>>> wave = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
>>> speed_perturb(wave, sampling_rate=16000, factor=1.1).shape  # 1 s at 1.1x: 1/1.1 s
(14545,)
>>> perturb_data_dir_speed("data/sp/train", "data/sp/train_sp")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.data.datadir import (
    DATA_DIR_FILES,
    DataDir,
    read_data_dir,
    read_kaldi_map,
    write_data_dir,
    write_kaldi_map,
)
from asr.errors import DataDirError
from asr.fileio import atomic_write_text, is_up_to_date, replace_if_changed

__all__ = [
    "PERTURB_INFO_FILE",
    "SpeedPerturbConfig",
    "perturb_data_dir_speed",
    "speed_perturb",
    "speed_prefix",
]

#: Written last into a perturbed data dir: the config (a changed one redoes the copy).
PERTURB_INFO_FILE = "speed_perturb.json"
_SPEAKER_FILES = ("spk2gender", "spk2age")  # per-speaker files carried over (prefixed ids)
_SOXR_QUALITY = "VHQ"


@dataclass(frozen=True)
class SpeedPerturbConfig:
    """``factors``: one copy of the data per factor (Kaldi's default pair 0.9, 1.1; add 1.0
    for its 3-way perturbation); ``audio_subdir``: where the WAV files go, inside the output
    data dir."""

    factors: tuple[float, ...] = (0.9, 1.1)
    audio_subdir: str = "wav"

    def __post_init__(self) -> None:
        factors = tuple(float(f) for f in self.factors)
        if not factors or any(not (0.1 <= f <= 10.0) for f in factors):
            raise DataDirError(f"speed factors must be in [0.1, 10], got {self.factors}")
        if len(set(factors)) != len(factors):
            raise DataDirError(f"speed factors repeat: {self.factors}")
        object.__setattr__(self, "factors", factors)
        if not self.audio_subdir or os.sep in self.audio_subdir or self.audio_subdir in (".", ".."):
            raise DataDirError(f"audio_subdir must be a plain name, got {self.audio_subdir!r}")


def speed_prefix(factor: float) -> str:
    """The id prefix of a factor's copy, Kaldi's: ``sp0.9-``, ``sp1.1-``, ``sp1.0-``."""
    return f"sp{float(factor)!r}-"


def speed_perturb(samples: np.ndarray, *, sampling_rate: int, factor: float) -> np.ndarray:
    """sox's ``speed FACTOR`` on a mono waveform: ``(num_samples,)`` float ->
    ``(floor(num_samples / factor + 1/2),)`` float32 at the same ``sampling_rate``, every
    frequency ``factor`` times higher (a resampling from ``sampling_rate * factor`` Hz)."""
    wave = np.asarray(samples, dtype=np.float32)
    if wave.ndim != 1:
        raise DataDirError(f"speed perturbation needs a mono waveform, got shape {wave.shape}")
    if not (0.1 <= factor <= 10.0) or sampling_rate <= 0:
        raise DataDirError(f"bad speed factor {factor} or sampling rate {sampling_rate}")
    num_out = math.floor(wave.shape[0] / factor + 0.5)
    if factor == 1.0:
        return wave.copy()
    import soxr  # local import: only the data prep needs it

    out = np.asarray(
        soxr.resample(wave, sampling_rate * factor, sampling_rate, quality=_SOXR_QUALITY),
        dtype=np.float32,
    )
    if out.shape[0] >= num_out:
        return np.ascontiguousarray(out[:num_out])
    return np.concatenate([out, np.zeros(num_out - out.shape[0], dtype=np.float32)])


def _prefixed(mapping: Mapping[str, str], prefix: str, *, values: bool = False) -> dict[str, str]:
    return {prefix + k: (prefix + v if values else v) for k, v in mapping.items()}


def _write_wav(path: Path, wave: np.ndarray, sampling_rate: int) -> None:
    """16-bit PCM WAV, atomically (a temporary beside it, renamed)."""
    import soundfile

    pcm = np.clip(np.round(wave * 32768.0), -32768, 32767).astype(np.int16)
    tmp = path.with_name(f".{path.name}.tmp")
    soundfile.write(tmp, pcm, sampling_rate, subtype="PCM_16", format="WAV")
    replace_if_changed(tmp, path)


def _config_json(config: SpeedPerturbConfig, data_dir: Path) -> str:
    return json.dumps({"source": str(data_dir), **dataclasses.asdict(config)}, indent=1) + "\n"


def perturb_data_dir_speed(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    config: SpeedPerturbConfig | None = None,
) -> DataDir:
    """Write a speed-perturbed copy of the data dir ``data_dir`` to ``out_dir``: for every
    factor of ``config`` and every utterance, the recording through :func:`speed_perturb`
    (``out_dir/<audio_subdir>/<new utt id>.wav``, absolute paths in ``wav.scp``), ids prefixed
    by :func:`speed_prefix`; ``spk2gender``/``spk2age`` are carried over. Skipped when
    ``out_dir`` is newer than the input files and was made with the same config. Returns the
    new data dir. Raises :class:`DataDirError` for an unreadable recording (named) or a
    non-mono one."""
    import soundfile

    config = config or SpeedPerturbConfig()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if out_dir.resolve() == data_dir.resolve():
        raise DataDirError(f"{out_dir}: the perturbed copy must go to another directory")
    inputs = [data_dir / name for name in DATA_DIR_FILES]
    outputs = [out_dir / name for name in DATA_DIR_FILES] + [out_dir / PERTURB_INFO_FILE]
    info = _config_json(config, data_dir)
    if is_up_to_date(outputs, inputs) and (out_dir / PERTURB_INFO_FILE).read_text() == info:
        return read_data_dir(out_dir)
    source = read_data_dir(data_dir)
    audio_dir = (out_dir / config.audio_subdir).absolute()
    audio_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / PERTURB_INFO_FILE).unlink(missing_ok=True)  # incomplete until written again
    wav_scp: dict[str, str] = {}
    for utt_id in source.utt_ids:
        if "/" in utt_id or utt_id in (".", ".."):
            raise DataDirError(f"{data_dir}: utterance id {utt_id!r} cannot name a file")
        path = source.wav_scp[utt_id]
        try:
            wave, rate = soundfile.read(path, dtype="float32", always_2d=False)
        except (RuntimeError, OSError) as err:  # soundfile's LibsndfileError is a RuntimeError
            raise DataDirError(f"{utt_id}: cannot read {path}: {err}") from None
        if wave.ndim != 1:
            raise DataDirError(f"{utt_id}: {path} has {wave.shape[1]} channels; need mono")
        for factor in config.factors:
            new_id = speed_prefix(factor) + utt_id
            out_path = audio_dir / f"{new_id}.wav"
            _write_wav(out_path, speed_perturb(wave, sampling_rate=rate, factor=factor), rate)
            wav_scp[new_id] = str(out_path)
    perturbed = DataDir(
        wav_scp=wav_scp,
        text=_merge(source.text, config.factors),
        utt2spk=_merge(source.utt2spk, config.factors, values=True),
    )
    write_data_dir(perturbed, out_dir)
    for name in _SPEAKER_FILES:
        if (data_dir / name).is_file():
            per_speaker = read_kaldi_map(data_dir / name)
            write_kaldi_map(out_dir / name, _merge(per_speaker, config.factors))
    atomic_write_text(out_dir / PERTURB_INFO_FILE, info)
    return perturbed


def _merge(
    mapping: Mapping[str, str], factors: Sequence[float], *, values: bool = False
) -> dict[str, str]:
    merged: dict[str, str] = {}
    for factor in factors:
        merged.update(_prefixed(mapping, speed_prefix(factor), values=values))
    return merged
