"""Kaldi data directories: read, write and validate ``wav.scp``, ``text``, ``utt2spk``, ``spk2utt``.

A data directory describes one set of utterances, exactly as Kaldi lays it out:

* ``wav.scp``  -- ``<utt_id> <audio file path>``
* ``text``     -- ``<utt_id> <WORD> <WORD> ...``
* ``utt2spk``  -- ``<utt_id> <spk_id>``
* ``spk2utt``  -- ``<spk_id> <utt_id> <utt_id> ...``

Every file is sorted by its first field in C-locale byte order (as ``LC_ALL=C sort``),
has unique keys and no blank lines. Like Kaldi's ``utils/validate_data_dir.sh`` we require
that utterance ids sort consistently with speaker ids: ``utt2spk`` sorted by speaker (``sort
-k2``) is ``utt2spk`` itself. The usual way to get this is to start each ``utt_id`` with its
``spk_id`` (``fash-an251-fash-b`` for speaker ``fash``), but any consistent scheme is accepted
(speechocean762's ``000010011`` for speaker ``0001``).

``wav.scp`` values are plain file paths (absolute, or relative to the current working
directory, as in Kaldi). Kaldi's piped commands (``sox x.sph -t wav - |``) are not
supported and are rejected by :func:`validate_data_dir`.

Example:

>>> import tempfile, pathlib, wave
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> with wave.open(str(d / "a.wav"), "wb") as w:
...     w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000); w.writeframes(bytes(1600))
>>> data = DataDir(wav_scp={"spk1-a": str(d / "a.wav")}, text={"spk1-a": "YES NO"},
...                utt2spk={"spk1-a": "spk1"})
>>> write_data_dir(data, d / "train")
>>> sorted(p.name for p in (d / "train").iterdir())
['spk2utt', 'text', 'utt2spk', 'wav.scp']
>>> read_data_dir(d / "train").spk2utt
{'spk1': ['spk1-a']}
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from asr.errors import DataDirError
from asr.fileio import atomic_write

__all__ = [
    "DATA_DIR_FILES",
    "DataDir",
    "read_data_dir",
    "read_kaldi_map",
    "total_duration_seconds",
    "validate_data_dir",
    "write_data_dir",
    "write_data_dirs",
    "write_kaldi_map",
]

#: The files every data directory has, in the order they are checked.
DATA_DIR_FILES: tuple[str, ...] = ("wav.scp", "text", "utt2spk", "spk2utt")

# Kaldi separates fields by spaces and tabs (not by other Unicode whitespace).
_FIELD_SEP = re.compile(r"[ \t]+")
_STRIP = " \t\r"


def _c_key(key: str) -> bytes:
    """Sort key giving C-locale (byte) order, as ``LC_ALL=C sort``."""
    return key.encode("utf-8")


def _split_line(line: str) -> tuple[str, str]:
    parts = _FIELD_SEP.split(line.rstrip(_STRIP), maxsplit=1)
    key = parts[0]
    value = parts[1].strip(_STRIP) if len(parts) > 1 else ""
    return key, value


def _read_lines(path: Path, label: str) -> list[str]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataDirError(f"{label}: file not found") from None
    except OSError as err:
        raise DataDirError(f"{label}: cannot read: {err.strerror or err}") from None
    chunks = raw.split(b"\n")
    if chunks and chunks[-1] == b"":
        chunks.pop()  # the newline that ends the last line
    lines = []
    for line_no, chunk in enumerate(chunks, start=1):
        try:
            lines.append(chunk.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise DataDirError(
                f"{label}:{line_no}: not valid UTF-8 (byte {err.start}): {chunk[:60]!r}"
            ) from None
    return lines


def _parse_map(
    path: Path, label: str, *, allow_empty_value: bool, check_sorted: bool
) -> dict[str, str]:
    mapping: dict[str, str] = {}
    previous: str | None = None
    for line_no, line in enumerate(_read_lines(path, label), start=1):
        if line.strip(_STRIP) == "":
            raise DataDirError(f"{label}:{line_no}: blank line (Kaldi rejects blank lines)")
        key, value = _split_line(line)
        if key == "":
            raise DataDirError(f"{label}:{line_no}: empty key (line starts with whitespace)")
        if not value and not allow_empty_value:
            raise DataDirError(f"{label}:{line_no}: key {key!r} has no value")
        if key in mapping:
            raise DataDirError(f"{label}:{line_no}: duplicate key {key!r}")
        if check_sorted and previous is not None and _c_key(key) < _c_key(previous):
            raise DataDirError(
                f"{label}:{line_no}: not sorted: key {key!r} comes after {previous!r} "
                "(sort with LC_ALL=C)"
            )
        mapping[key] = value
        previous = key
    return mapping


def read_kaldi_map(
    path: str | os.PathLike, *, name: str | None = None, allow_empty_value: bool = False
) -> dict[str, str]:
    """Read a Kaldi ``key value...`` file (``wav.scp``, ``text``, ``utt2spk``, ``feats.scp``...).

    The key is the first space/tab-delimited token of a line, the value the rest of the
    line with surrounding whitespace stripped (so it may contain spaces). ``name`` is the
    label used in error messages (default: the path). Raises :class:`DataDirError`, naming
    the file and 1-based line number, on a blank line, an empty key (a line starting with
    whitespace), an empty value (unless ``allow_empty_value``), a duplicate key or bytes
    that are not UTF-8. Sort order is not checked here; :func:`validate_data_dir` does.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "text"
    >>> _ = p.write_text("u1 HELLO  WORLD\\nu2\\tYES\\n")
    >>> read_kaldi_map(p)
    {'u1': 'HELLO  WORLD', 'u2': 'YES'}
    """
    path = Path(path)
    return _parse_map(
        path, name or str(path), allow_empty_value=allow_empty_value, check_sorted=False
    )


def write_kaldi_map(path: str | os.PathLike, mapping: Mapping[str, str]) -> None:
    """Write ``mapping`` as ``key value`` lines sorted by key in C-locale byte order, atomically.

    Keys must be non-empty and free of whitespace; values must be non-empty single
    lines. When ``path`` already holds exactly these bytes it is left untouched, so its
    modification time (which up-to-date checks of later steps use) does not change.
    """
    path = Path(path)
    lines = []
    for key in sorted(mapping, key=_c_key):
        value = str(mapping[key]).strip(_STRIP)
        if not key or _FIELD_SEP.search(key) or "\n" in key or "\r" in key:
            raise DataDirError(f"{path}: invalid key {key!r} (empty or contains whitespace)")
        if not value or "\n" in value or "\r" in value:
            raise DataDirError(f"{path}: invalid value {value!r} for key {key!r}")
        lines.append(f"{key} {value}\n")
    payload = "".join(lines).encode("utf-8")
    try:
        if path.is_file() and path.read_bytes() == payload:
            return
    except OSError:
        pass
    with atomic_write(path, "wb") as handle:
        handle.write(payload)


def _first_inconsistent_speaker(
    pairs: Iterable[tuple[str, str]],
) -> tuple[int, str, str, str] | None:
    """Kaldi's rule on ``(utt_id, spk_id)`` pairs in utterance order: sorting them by speaker
    (``sort -k2``) must not change their order. The first ``(index, utt_id, spk_id,
    previous spk_id)`` that breaks it, or None."""
    previous_spk = None
    for index, (utt_id, spk_id) in enumerate(pairs):
        if previous_spk is not None and _c_key(spk_id) < _c_key(previous_spk):
            return index, utt_id, spk_id, previous_spk
        previous_spk = spk_id
    return None


def _spk2utt_of(utt2spk: Mapping[str, str]) -> dict[str, list[str]]:
    spk2utt: dict[str, list[str]] = {}
    for utt_id in sorted(utt2spk, key=_c_key):
        spk2utt.setdefault(utt2spk[utt_id], []).append(utt_id)
    return {spk_id: spk2utt[spk_id] for spk_id in sorted(spk2utt, key=_c_key)}


@dataclass(frozen=True)
class DataDir:
    """One set of utterances: the in-memory form of a Kaldi data directory.

    ``wav_scp``: utt_id -> audio file path; ``text``: utt_id -> transcript words
    (space-separated); ``utt2spk``: utt_id -> spk_id. The three must have the same
    utterance ids, and utterance ids must sort consistently with speaker ids (in C-locale
    order of ``utt_id``, speakers never go back); otherwise :class:`DataDirError` is raised.
    The mappings are copied on construction.
    """

    wav_scp: Mapping[str, str]
    text: Mapping[str, str]
    utt2spk: Mapping[str, str]

    def __post_init__(self) -> None:
        for field in ("wav_scp", "text", "utt2spk"):
            object.__setattr__(self, field, dict(getattr(self, field)))
        wav_ids, text_ids, spk_ids = set(self.wav_scp), set(self.text), set(self.utt2spk)
        for name, ids in (("text", text_ids), ("utt2spk", spk_ids)):
            if ids != wav_ids:
                extra = sorted(ids - wav_ids, key=_c_key)[:3]
                missing = sorted(wav_ids - ids, key=_c_key)[:3]
                raise DataDirError(
                    f"utterance ids of wav.scp and {name} differ: "
                    f"in {name} only {extra}, in wav.scp only {missing}"
                )
        inconsistent = _first_inconsistent_speaker(
            [(u, self.utt2spk[u]) for u in sorted(self.utt2spk, key=_c_key)]
        )
        if inconsistent is not None:
            _, utt_id, spk_id, previous_spk = inconsistent
            raise DataDirError(
                f"utterance {utt_id!r}: speaker {spk_id!r} sorts before the previous "
                f"utterance's speaker {previous_spk!r}; utt ids must sort consistently with "
                "speaker ids (e.g. start each utt id with its speaker id)"
            )

    @property
    def utt_ids(self) -> list[str]:
        """All utterance ids, sorted in C-locale order."""
        return sorted(self.wav_scp, key=_c_key)

    @property
    def spk2utt(self) -> dict[str, list[str]]:
        """spk_id -> sorted list of its utt_ids (keys in sorted order)."""
        return _spk2utt_of(self.utt2spk)

    @property
    def speakers(self) -> list[str]:
        """All speaker ids, sorted in C-locale order."""
        return sorted(set(self.utt2spk.values()), key=_c_key)

    def __len__(self) -> int:
        return len(self.wav_scp)

    def subset(self, utt_ids: Iterable[str]) -> DataDir:
        """A new :class:`DataDir` with only ``utt_ids`` (each must be present)."""
        keep = list(utt_ids)
        unknown = [u for u in keep if u not in self.wav_scp]
        if unknown:
            raise DataDirError(f"subset: unknown utterance ids {sorted(unknown)[:5]}")
        return DataDir(
            wav_scp={u: self.wav_scp[u] for u in keep},
            text={u: self.text[u] for u in keep},
            utt2spk={u: self.utt2spk[u] for u in keep},
        )


def write_data_dir(data: DataDir, path: str | os.PathLike) -> None:
    """Write ``wav.scp``, ``text``, ``utt2spk`` and ``spk2utt`` under ``path`` (each atomically).

    Raises :class:`DataDirError` for an empty data set (Kaldi rejects empty data dirs).
    """
    path = Path(path)
    if len(data) == 0:
        raise DataDirError(f"{path}: refusing to write an empty data directory")
    write_kaldi_map(path / "wav.scp", data.wav_scp)
    write_kaldi_map(path / "text", data.text)
    write_kaldi_map(path / "utt2spk", data.utt2spk)
    write_kaldi_map(path / "spk2utt", {spk: " ".join(utts) for spk, utts in data.spk2utt.items()})


def _check_same_keys(
    reference: Mapping[str, str], ref_label: str, other: Mapping[str, str], other_label: str
) -> None:
    for utt_id in other:
        if utt_id not in reference:
            raise DataDirError(f"{other_label}: utterance {utt_id!r} is not in {ref_label}")
    for utt_id in reference:
        if utt_id not in other:
            raise DataDirError(f"{ref_label}: utterance {utt_id!r} is not in {other_label}")


def _load_validated(path: Path, *, check_audio: bool) -> DataDir:
    if not path.is_dir():
        raise DataDirError(f"{path}: not a data directory")
    if (path / "segments").exists():
        raise DataDirError(
            f"{path / 'segments'}: data dirs with segments (utterances cut from longer "
            "recordings) are not supported; cut the audio into one file per utterance"
        )
    maps = {}
    for name in DATA_DIR_FILES:
        maps[name] = _parse_map(
            path / name, str(path / name), allow_empty_value=False, check_sorted=True
        )
        if not maps[name]:
            raise DataDirError(f"{path / name}: file is empty")
    wav_scp, text, utt2spk, spk2utt = (maps[name] for name in DATA_DIR_FILES)
    wav_label, utt2spk_label, spk2utt_label = (
        str(path / "wav.scp"),
        str(path / "utt2spk"),
        str(path / "spk2utt"),
    )
    _check_same_keys(wav_scp, wav_label, text, str(path / "text"))
    _check_same_keys(wav_scp, wav_label, utt2spk, utt2spk_label)

    for line_no, (utt_id, spk_id) in enumerate(utt2spk.items(), start=1):
        if _FIELD_SEP.search(spk_id):
            raise DataDirError(
                f"{utt2spk_label}:{line_no}: speaker id {spk_id!r} of {utt_id!r} has whitespace"
            )
    # Kaldi's rule: sorting utt2spk by speaker must not change it.
    inconsistent = _first_inconsistent_speaker(utt2spk.items())
    if inconsistent is not None:
        index, _, spk_id, previous_spk = inconsistent
        raise DataDirError(
            f"{utt2spk_label}:{index + 1}: speaker {spk_id!r} sorts before the previous "
            f"line's speaker {previous_spk!r}; utt ids must sort consistently with speakers "
            "(utils/validate_data_dir.sh: 'sort -k2 utt2spk' must equal utt2spk; the usual fix "
            "is to start each utt id with its speaker id)"
        )

    expected = _spk2utt_of(utt2spk)
    for line_no, (spk_id, utts) in enumerate(spk2utt.items(), start=1):
        if spk_id not in expected:
            raise DataDirError(f"{spk2utt_label}:{line_no}: speaker {spk_id!r} is not in utt2spk")
        if utts.split() != expected[spk_id]:
            raise DataDirError(
                f"{spk2utt_label}:{line_no}: utterances of speaker {spk_id!r} disagree with "
                f"utt2spk (expected {len(expected[spk_id])} sorted ids starting "
                f"{expected[spk_id][:2]})"
            )
    for spk_id in expected:
        if spk_id not in spk2utt:
            raise DataDirError(f"{spk2utt_label}: speaker {spk_id!r} of utt2spk is missing")

    for line_no, (utt_id, audio) in enumerate(wav_scp.items(), start=1):
        if audio.endswith("|"):
            raise DataDirError(
                f"{wav_label}:{line_no}: {utt_id!r}: piped commands are not supported; "
                "convert the audio to WAV/FLAC files"
            )
        if check_audio and not os.path.isfile(audio):
            raise DataDirError(f"{wav_label}:{line_no}: {utt_id!r}: audio file not found: {audio}")
    return DataDir(wav_scp=wav_scp, text=text, utt2spk=utt2spk)


def validate_data_dir(path: str | os.PathLike, *, check_audio: bool = True) -> None:
    """Check a data directory the way Kaldi's ``utils/validate_data_dir.sh`` does.

    Raises :class:`DataDirError` naming the file (and line, where there is one) for: a
    missing or empty file, a blank line, bad UTF-8, an empty key or value, unsorted keys
    (C-locale order), duplicate keys, an utterance in ``text``/``utt2spk`` but not in
    ``wav.scp`` or vice versa, speakers not sorting consistently with utterances (Kaldi's
    ``sort -k2 utt2spk`` check; utt ids need not start with their speaker ids), ``spk2utt`` disagreeing with ``utt2spk``, a
    piped ``wav.scp`` command, a ``segments`` file (not supported) and (when ``check_audio``)
    an audio file that does not exist.
    """
    _load_validated(Path(path), check_audio=check_audio)


def read_data_dir(path: str | os.PathLike, *, check_audio: bool = True) -> DataDir:
    """Validate (see :func:`validate_data_dir`) and load the data directory at ``path``."""
    return _load_validated(Path(path), check_audio=check_audio)


def total_duration_seconds(data: DataDir) -> float:
    """Total audio duration of ``data`` in seconds, from the audio file headers."""
    import soundfile  # local import: only needed for summaries

    total = 0.0
    for utt_id in data.utt_ids:
        audio = data.wav_scp[utt_id]
        try:
            info = soundfile.info(audio)
        except (RuntimeError, OSError) as err:  # soundfile raises LibsndfileError(RuntimeError)
            raise DataDirError(f"{utt_id}: cannot read audio header of {audio}: {err}") from None
        total += info.frames / info.samplerate
    return total


def write_data_dirs(sets: Mapping[str, DataDir], out_dir: str | os.PathLike) -> None:
    """Write each named set to ``out_dir/<name>`` (e.g. ``data/an4/train``).

    Every set is checked (non-empty, valid names) before the first file is written.
    """
    out_dir = Path(out_dir)
    for name, data in sets.items():
        if not name or "/" in name or name in (".", ".."):
            raise DataDirError(f"invalid set name {name!r}")
        if len(data) == 0:
            raise DataDirError(f"{out_dir / name}: refusing to write an empty data directory")
    for name, data in sets.items():
        write_data_dir(data, out_dir / name)
