"""Prepare the CMU AN4 corpus as Kaldi data directories: ``train``, ``dev`` and (if present) ``test``.

Official layout (as distributed by CMU / cmusphinx, WAV version)::

    an4/etc/an4_train.fileids          an4_clstk/fash/an251-fash-b
    an4/etc/an4_train.transcription    <s> YES </s> (an251-fash-b)
    an4/wav/an4_clstk/fash/an251-fash-b.wav
    an4/etc/an4_test.fileids           (optional) an4test_clstk/<spk>/<id>
    an4/etc/an4_test.transcription     (optional)
    an4/wav/an4test_clstk/<spk>/<id>.wav

Utterance ids are ``<spk_id>-<file id>`` (``fash-an251-fash-b``), so they start with the
speaker id. Transcripts drop ``<s>``, ``</s>`` and ``<sil>`` and keep the upper-case words
of ``etc/an4.dic``. ``dev`` is a speaker-disjoint slice of the official training portion
chosen by :func:`select_dev_speakers` (deterministic, no random numbers); ``train`` is the
rest. ``test`` is written only when the official test portion is present.

Example:

>>> sets = prepare_an4("corpora/an4", "data/an4")  # doctest: +SKIP
>>> {name: len(d) for name, d in sets.items()}  # doctest: +SKIP
{'train': 820, 'dev': 128}
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from asr.data.datadir import DataDir, write_data_dirs
from asr.errors import CorpusError

__all__ = ["prepare_an4", "read_an4_portion", "select_dev_speakers"]

# Filler tokens of etc/an4.filler that are not words.
_FILLERS = frozenset({"<s>", "</s>", "<sil>"})
_TRANSCRIPTION_LINE = re.compile(r"^(?P<words>.*?)[ \t]*\((?P<file_id>[^()\s]+)\)[ \t\r]*$")
_AUDIO_ALTERNATIVES = (".sph", ".raw", ".flac", ".WAV")


def _read_text_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CorpusError(f"{path}: not found (not the official AN4 layout)") from None
    except UnicodeDecodeError as err:
        raise CorpusError(f"{path}: not valid UTF-8 text ({err.reason})") from None


def _audio_path(wav_dir: Path, fileid: str, fileids_label: str) -> Path:
    audio = wav_dir / f"{fileid}.wav"
    if audio.is_file():
        return audio
    other = [
        audio.with_suffix(s).name for s in _AUDIO_ALTERNATIVES if audio.with_suffix(s).exists()
    ]
    hint = f" (found {other[0]}: convert the corpus to the WAV layout)" if other else ""
    raise CorpusError(f"{fileids_label}: audio file not found: {audio}{hint}")


def read_an4_portion(corpus_dir: str | os.PathLike, portion: str) -> DataDir:
    """Read the official ``portion`` (``"train"`` or ``"test"``) of AN4 into a :class:`DataDir`.

    Raises :class:`CorpusError` naming the file and line when ``etc/an4_<portion>.fileids``
    and ``etc/an4_<portion>.transcription`` are missing, malformed or disagree, or when an
    audio file is missing.
    """
    corpus_dir = Path(os.path.abspath(corpus_dir))
    fileids_path = corpus_dir / "etc" / f"an4_{portion}.fileids"
    trans_path = corpus_dir / "etc" / f"an4_{portion}.transcription"
    fileids = _read_text_lines(fileids_path)
    transcriptions = _read_text_lines(trans_path)
    if len(fileids) != len(transcriptions):
        raise CorpusError(
            f"{fileids_path} has {len(fileids)} lines but {trans_path} has "
            f"{len(transcriptions)}; they must list the same utterances in the same order"
        )
    wav_dir = corpus_dir / "wav"
    wav_scp: dict[str, str] = {}
    text: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    for line_no, (fileid, trans_line) in enumerate(
        zip(fileids, transcriptions, strict=True), start=1
    ):
        fileid = fileid.strip()
        fileids_label = f"{fileids_path}:{line_no}"
        trans_label = f"{trans_path}:{line_no}"
        parts = fileid.split("/")
        if len(parts) != 3 or not all(parts) or any(c.isspace() for c in fileid):
            raise CorpusError(
                f"{fileids_label}: expected '<folder>/<speaker>/<file id>', got {fileid!r}"
            )
        _, spk_id, file_id = parts
        match = _TRANSCRIPTION_LINE.match(trans_line)
        if match is None:
            raise CorpusError(
                f"{trans_label}: expected '<s> WORDS </s> (file-id)', got {trans_line!r}"
            )
        if match["file_id"] != file_id:
            raise CorpusError(
                f"{trans_label}: transcription id {match['file_id']!r} does not match "
                f"{fileids_label} file id {file_id!r}"
            )
        words = [w for w in match["words"].split() if w not in _FILLERS]
        if not words:
            raise CorpusError(f"{trans_label}: empty transcript")
        utt_id = f"{spk_id}-{file_id}"
        if utt_id in wav_scp:
            raise CorpusError(f"{fileids_label}: duplicate file id {fileid!r}")
        wav_scp[utt_id] = str(_audio_path(wav_dir, fileid, fileids_label))
        text[utt_id] = " ".join(words)
        utt2spk[utt_id] = spk_id
    if not wav_scp:
        raise CorpusError(f"{fileids_path}: lists no utterances")
    return DataDir(wav_scp=wav_scp, text=text, utt2spk=utt2spk)


def _evenly_spaced(items: list[str], count: int) -> list[str]:
    """``count`` items spread evenly over ``items`` (centres of ``count`` equal slices)."""
    n = len(items)
    return [items[(2 * i + 1) * n // (2 * count)] for i in range(count)]


def select_dev_speakers(spk_ids: Iterable[str], *, num_dev_speakers: int = 10) -> list[str]:
    """Choose about ``num_dev_speakers`` held-out speakers, deterministically.

    Speaker ids that differ only by a trailing number (AN4's ``mdcs`` and ``mdcs2``, likely
    the same person recorded twice) form one group and are never split. When every id
    starts with ``f`` or ``m`` (AN4's gender mark), half of the groups come from each
    gender (the extra one, for an odd count, from the larger gender). Within a gender,
    groups sorted by id are picked at evenly spaced positions. The result (sorted) may
    hold slightly more than ``num_dev_speakers`` ids when a picked group has two.

    >>> select_dev_speakers(["fa", "fb", "fc", "ma", "mb", "mb2", "mc"], num_dev_speakers=2)
    ['fb', 'mb', 'mb2']
    """
    speakers = sorted(set(spk_ids))
    if num_dev_speakers < 0:
        raise CorpusError(f"num_dev_speakers must be >= 0, got {num_dev_speakers}")
    groups: dict[str, list[str]] = {}
    for spk_id in speakers:
        groups.setdefault(re.sub(r"\d+$", "", spk_id) or spk_id, []).append(spk_id)
    if num_dev_speakers >= len(groups):
        raise CorpusError(
            f"num_dev_speakers={num_dev_speakers} leaves no training speakers: "
            f"there are only {len(groups)} distinct speakers"
        )
    if num_dev_speakers == 0:
        return []
    bases = sorted(groups)
    if all(b[0] in "fm" for b in bases):
        pools = [[b for b in bases if b[0] == "f"], [b for b in bases if b[0] == "m"]]
        pools.sort(key=len)  # smaller gender first
        want_small = min(num_dev_speakers // 2, len(pools[0]))
        want_large = num_dev_speakers - want_small
        if want_large > len(pools[1]):
            want_large = len(pools[1])
            want_small = num_dev_speakers - want_large
        chosen = _evenly_spaced(pools[0], want_small) + _evenly_spaced(pools[1], want_large)
    else:
        chosen = _evenly_spaced(bases, num_dev_speakers)
    return sorted(spk for base in chosen for spk in groups[base])


def prepare_an4(
    corpus_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    num_dev_speakers: int = 10,
) -> dict[str, DataDir]:
    """Write ``out_dir/{train,dev[,test]}`` from the AN4 corpus at ``corpus_dir``.

    ``dev`` holds the speakers picked by :func:`select_dev_speakers` (omitted when
    ``num_dev_speakers`` is 0), ``train`` the other official training speakers. ``test``
    is the official test portion, written only when ``etc/an4_test.fileids`` exists.
    Everything is read and checked before anything is written, so a bad corpus raises
    :class:`CorpusError` and leaves ``out_dir`` untouched. Returns the sets by name.
    """
    corpus_dir = Path(os.path.abspath(corpus_dir))
    if not corpus_dir.is_dir():
        raise CorpusError(f"AN4 corpus not found: {corpus_dir} is not a directory")
    full_train = read_an4_portion(corpus_dir, "train")
    dev_speakers = set(select_dev_speakers(full_train.speakers, num_dev_speakers=num_dev_speakers))
    train_utts = [u for u in full_train.utt_ids if full_train.utt2spk[u] not in dev_speakers]
    dev_utts = [u for u in full_train.utt_ids if full_train.utt2spk[u] in dev_speakers]
    sets = {"train": full_train.subset(train_utts)}
    if dev_utts:
        sets["dev"] = full_train.subset(dev_utts)
    test_fileids = corpus_dir / "etc" / "an4_test.fileids"
    test_trans = corpus_dir / "etc" / "an4_test.transcription"
    if test_fileids.exists() or test_trans.exists():
        sets["test"] = read_an4_portion(corpus_dir, "test")
    write_data_dirs(sets, out_dir)
    return sets
