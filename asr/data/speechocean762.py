"""Prepare speechocean762 (OpenSLR 101) as Kaldi data dirs ``train``, ``dev`` and (if present) ``test``.

The corpus ships its own Kaldi data directories; paths in ``wav.scp`` are relative to the
corpus root::

    speechocean762/train/{wav.scp,text,utt2spk,spk2utt,spk2gender,spk2age}
    speechocean762/test/...              (the official test half; same files, optional here)
    speechocean762/WAVE/SPEAKER0001/000010011.WAV      (or .flac: whatever wav.scp names)
    speechocean762/resource/lexicon.txt

``text`` and ``wav.scp`` are tab-separated, ``utt2spk`` space-separated; utterance ids
(``000010011``) do not start with their speaker ids (``0001``) but sort consistently with
them, which Kaldi (and :func:`asr.data.read_data_dir`) accepts.

Each portion is read with the data-dir rules of :mod:`asr.data.datadir` (sorted, unique,
consistent files; errors name the file and line), every ``wav.scp`` entry is resolved
against the corpus root and must name an existing file (exactly the file it names: ``.WAV``
or ``.flac``), and ``spk2gender`` (``m``/``f``) and ``spk2age`` (whole years) must list
exactly the speakers of ``utt2spk``. The output sets hold absolute audio paths and keep
``spk2gender`` and ``spk2age`` (both sorted, space-separated).

``dev`` is a speaker-disjoint slice of the official training half chosen by
:func:`select_stratified_dev_speakers` (children and adults of both genders, by a fixed
hash rule); ``train`` is the rest. ``test`` is prepared as the corpus has it, only when
``test/`` exists.

Example:

>>> sets = prepare_speechocean762("corpora/speechocean762", "data/speechocean762")  # doctest: +SKIP
>>> {name: (len(s.data), len(s.data.speakers)) for name, s in sets.items()}  # doctest: +SKIP
{'train': (2260, 113), 'dev': (240, 12)}
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from asr.data.datadir import (
    DataDir,
    read_data_dir,
    read_kaldi_map,
    write_data_dirs,
    write_kaldi_map,
)
from asr.errors import CorpusError

__all__ = [
    "CHILD_MAX_AGE",
    "DEFAULT_NUM_DEV_SPEAKERS",
    "GENDERS",
    "Speechocean762Set",
    "prepare_speechocean762",
    "read_speechocean762_portion",
    "select_stratified_dev_speakers",
]

#: Speakers of this age or younger count as children (the corpus's children are 5-12).
CHILD_MAX_AGE = 12
#: Speakers held out of the official training half as ``dev`` by default.
DEFAULT_NUM_DEV_SPEAKERS = 12
#: The gender labels of ``spk2gender`` (Kaldi's convention).
GENDERS: tuple[str, ...] = ("f", "m")
# Other spellings of an audio file, offered as a hint when wav.scp names a missing file.
_AUDIO_SUFFIXES = (".WAV", ".wav", ".flac", ".FLAC")


@dataclass(frozen=True)
class Speechocean762Set:
    """One prepared set: its data dir plus each speaker's gender (``m``/``f``) and age."""

    data: DataDir
    spk2gender: Mapping[str, str]
    spk2age: Mapping[str, int]

    @property
    def children(self) -> list[str]:
        """Speaker ids aged at most :data:`CHILD_MAX_AGE`, sorted."""
        return [s for s in self.data.speakers if self.spk2age[s] <= CHILD_MAX_AGE]

    @property
    def adults(self) -> list[str]:
        """Speaker ids older than :data:`CHILD_MAX_AGE`, sorted."""
        return [s for s in self.data.speakers if self.spk2age[s] > CHILD_MAX_AGE]

    def with_speakers(self, spk_ids: Iterable[str]) -> Speechocean762Set:
        """The utterances and speaker tables of ``spk_ids`` only."""
        keep = set(spk_ids)
        data = self.data.subset(u for u in self.data.utt_ids if self.data.utt2spk[u] in keep)
        return Speechocean762Set(
            data=data,
            spk2gender={s: self.spk2gender[s] for s in data.speakers},
            spk2age={s: self.spk2age[s] for s in data.speakers},
        )


def _resolve_audio(corpus_dir: Path, wav_label: str, data: DataDir) -> dict[str, str]:
    """utt_id -> absolute audio path of each ``wav.scp`` entry (read in file order)."""
    resolved = {}
    for line_no, (utt_id, value) in enumerate(data.wav_scp.items(), start=1):
        audio = Path(value) if os.path.isabs(value) else corpus_dir / value
        if not audio.is_file():
            others = [
                audio.with_suffix(s).name
                for s in _AUDIO_SUFFIXES
                if s != audio.suffix and audio.with_suffix(s).is_file()
            ]
            hint = f" (found {others[0]}: wav.scp must name the file that exists)" if others else ""
            raise CorpusError(
                f"{wav_label}:{line_no}: utterance {utt_id!r}: audio file not found: {audio}{hint}"
            )
        resolved[utt_id] = os.path.abspath(audio)
    return resolved


def _read_speaker_table(
    path: Path, data: DataDir, utt2spk_label: str, what: str
) -> tuple[dict[str, str], dict[str, int]]:
    """The table at ``path`` (speaker -> value) and each key's line number, checked to list
    exactly the speakers of ``data``."""
    if not path.is_file():
        raise CorpusError(f"{path}: file not found (the corpus lists each speaker's {what})")
    table = read_kaldi_map(path)
    line_of = {spk_id: line_no for line_no, spk_id in enumerate(table, start=1)}
    for line_no, (utt_id, spk_id) in enumerate(data.utt2spk.items(), start=1):
        if spk_id not in table:
            raise CorpusError(
                f"{path}: speaker {spk_id!r} (of utterance {utt_id!r}, {utt2spk_label}:{line_no}) "
                f"has no {what}"
            )
    speakers = set(data.speakers)
    for spk_id, line_no in line_of.items():
        if spk_id not in speakers:
            raise CorpusError(f"{path}:{line_no}: speaker {spk_id!r} is not in {utt2spk_label}")
    return table, line_of


def read_speechocean762_portion(corpus_dir: str | os.PathLike, portion: str) -> Speechocean762Set:
    """Read the corpus's own data dir ``corpus_dir/<portion>`` (``train`` or ``test``).

    Raises :class:`~asr.errors.DataDirError` or :class:`CorpusError`, naming the file and
    line, for a data dir that breaks Kaldi's rules, a ``wav.scp`` entry naming a missing
    audio file, a speaker of ``utt2spk`` missing from ``spk2gender`` or ``spk2age`` (or
    one there that ``utt2spk`` lacks), a gender other than ``m``/``f`` or an age that is
    not a whole number. ``spk2gender`` and ``spk2age`` need not be sorted (the corpus's
    ``spk2age`` is not); they are written sorted.
    """
    corpus_dir = Path(os.path.abspath(corpus_dir))
    portion_dir = corpus_dir / portion
    if not portion_dir.is_dir():
        raise CorpusError(
            f"{portion_dir} is not a directory (not the speechocean762 layout: expected "
            f"{portion}/wav.scp, text, utt2spk, spk2utt, spk2gender, spk2age)"
        )
    data = read_data_dir(portion_dir, check_audio=False)
    wav_scp = _resolve_audio(corpus_dir, str(portion_dir / "wav.scp"), data)
    utt2spk_label = str(portion_dir / "utt2spk")
    gender_path = portion_dir / "spk2gender"
    genders, gender_lines = _read_speaker_table(gender_path, data, utt2spk_label, "gender")
    for spk_id, gender in genders.items():
        if gender not in GENDERS:
            raise CorpusError(
                f"{gender_path}:{gender_lines[spk_id]}: gender of speaker {spk_id!r} must be "
                f"'m' or 'f', got {gender!r}"
            )
    age_path = portion_dir / "spk2age"
    ages, age_lines = _read_speaker_table(age_path, data, utt2spk_label, "age")
    spk2age = {}
    for spk_id, age in ages.items():
        if not (age.isascii() and age.isdigit()):
            raise CorpusError(
                f"{age_path}:{age_lines[spk_id]}: age of speaker {spk_id!r} must be a whole "
                f"number of years, got {age!r}"
            )
        spk2age[spk_id] = int(age)
    return Speechocean762Set(
        data=DataDir(wav_scp=wav_scp, text=data.text, utt2spk=data.utt2spk),
        spk2gender={s: genders[s] for s in data.speakers},
        spk2age={s: spk2age[s] for s in data.speakers},
    )


def _hash_key(spk_id: str) -> tuple[str, str]:
    return hashlib.sha256(spk_id.encode("utf-8")).hexdigest(), spk_id


def select_stratified_dev_speakers(
    spk2gender: Mapping[str, str],
    spk2age: Mapping[str, int],
    *,
    num_dev_speakers: int = DEFAULT_NUM_DEV_SPEAKERS,
) -> list[str]:
    """Choose ``num_dev_speakers`` held-out speakers covering children, adults and both genders.

    The rule (deterministic, no random numbers): speakers fall into cells by (child =
    age <= :data:`CHILD_MAX_AGE` or adult, gender). Every non-empty cell first gets one
    dev speaker (when ``num_dev_speakers`` is at least the number of cells), then the
    rest go one at a time to the cell furthest below its proportional share
    ``num_dev_speakers * cell size / all speakers`` (ties: children before adults, ``f``
    before ``m``), never more than the cell holds. Within a cell, speakers are taken in
    the order of the SHA-256 hex digest of their id. On speechocean762's 125 training
    speakers, 12 dev speakers are 5 children (2 girls, 3 boys) and 7 adults (4 women,
    3 men). Returns the sorted ids; ``spk2gender`` and ``spk2age`` must have the same keys.

    >>> spk2gender = {"a": "f", "b": "f", "c": "m", "d": "m", "e": "f", "f": "m"}
    >>> spk2age = {"a": 8, "b": 30, "c": 9, "d": 40, "e": 25, "f": 22}
    >>> select_stratified_dev_speakers(spk2gender, spk2age, num_dev_speakers=4)
    ['a', 'b', 'c', 'd']
    """
    if set(spk2gender) != set(spk2age):
        raise CorpusError("spk2gender and spk2age must list the same speakers")
    if num_dev_speakers < 0:
        raise CorpusError(f"num_dev_speakers must be >= 0, got {num_dev_speakers}")
    total = len(spk2gender)
    if num_dev_speakers >= total:
        raise CorpusError(
            f"num_dev_speakers={num_dev_speakers} leaves no training speakers: "
            f"there are only {total} speakers"
        )
    cells: dict[tuple[bool, str], list[str]] = {}
    for spk_id in sorted(spk2gender, key=_hash_key):
        is_adult = spk2age[spk_id] > CHILD_MAX_AGE
        cells.setdefault((is_adult, spk2gender[spk_id]), []).append(spk_id)
    order = sorted(cells)  # children (False) first, then f before m
    counts = dict.fromkeys(order, 1 if num_dev_speakers >= len(order) else 0)
    share = {cell: num_dev_speakers * len(cells[cell]) / total for cell in order}
    while sum(counts.values()) < num_dev_speakers:
        open_cells = [cell for cell in order if counts[cell] < len(cells[cell])]
        cell = max(open_cells, key=lambda c: (share[c] - counts[c], -order.index(c)))
        counts[cell] += 1
    return sorted(spk for cell in order for spk in cells[cell][: counts[cell]])


def prepare_speechocean762(
    corpus_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    num_dev_speakers: int = DEFAULT_NUM_DEV_SPEAKERS,
) -> dict[str, Speechocean762Set]:
    """Write ``out_dir/{train,dev[,test]}`` from speechocean762 at ``corpus_dir``.

    ``dev`` holds the speakers picked by :func:`select_stratified_dev_speakers` from the
    official ``train/`` (omitted when ``num_dev_speakers`` is 0), ``train`` the other
    training speakers; ``test`` is the official ``test/``, read the same way, written only
    when it exists. Each set gets ``wav.scp`` (absolute paths), ``text``, ``utt2spk``,
    ``spk2utt``, ``spk2gender`` and ``spk2age``. Everything is read and checked (see
    :func:`read_speechocean762_portion`) before anything is written, so a bad corpus
    leaves ``out_dir`` untouched. Returns the sets by name.
    """
    corpus_dir = Path(os.path.abspath(corpus_dir))
    if not corpus_dir.is_dir():
        raise CorpusError(f"speechocean762 corpus not found: {corpus_dir} is not a directory")
    full_train = read_speechocean762_portion(corpus_dir, "train")
    dev_speakers = select_stratified_dev_speakers(
        full_train.spk2gender, full_train.spk2age, num_dev_speakers=num_dev_speakers
    )
    dev_set = set(dev_speakers)
    sets = {
        "train": full_train.with_speakers(s for s in full_train.data.speakers if s not in dev_set)
    }
    if dev_speakers:
        sets["dev"] = full_train.with_speakers(dev_speakers)
    if (corpus_dir / "test").exists():
        sets["test"] = read_speechocean762_portion(corpus_dir, "test")
    write_data_dirs({name: s.data for name, s in sets.items()}, out_dir)
    for name, prepared in sets.items():
        set_dir = Path(out_dir) / name
        write_kaldi_map(set_dir / "spk2gender", prepared.spk2gender)
        write_kaldi_map(set_dir / "spk2age", {s: str(a) for s, a in prepared.spk2age.items()})
    return sets
