"""Prepare the Free Spoken Digit Dataset (FSDD) as Kaldi data directories ``train`` and ``test``.

Official layout: ``fsdd/recordings/{digit}_{speaker}_{take}.wav`` (8 kHz mono), e.g.
``7_jackson_32.wav``. The split documented by FSDD: takes 0-4 are ``test``, takes 5 and
above (5-49 in v1.0.10) are ``train``. Transcripts are the digit words ``ZERO`` .. ``NINE``
(upper-case, as the lexicon looks words up in upper case). Utterance ids are
``<speaker>-<file stem>`` (``jackson-7_jackson_32``) so that they start with the speaker id.

Example:

>>> sets = prepare_fsdd("corpora/fsdd", "data/fsdd")  # doctest: +SKIP
>>> len(sets["train"]), len(sets["test"])  # doctest: +SKIP
(2700, 300)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from asr.data.datadir import DataDir, write_data_dirs
from asr.errors import CorpusError

__all__ = ["DIGIT_WORDS", "NUM_TEST_TAKES", "prepare_fsdd"]

#: Transcript word of each digit label.
DIGIT_WORDS: tuple[str, ...] = (
    "ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE",
)  # fmt: skip
#: Takes ``0 .. NUM_TEST_TAKES - 1`` of every digit and speaker form the test set.
NUM_TEST_TAKES = 5
_FILE_NAME = re.compile(r"^(?P<digit>[0-9])_(?P<speaker>[A-Za-z0-9]+)_(?P<take>[0-9]+)\.wav$")


def prepare_fsdd(corpus_dir: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, DataDir]:
    """Write ``out_dir/train`` and ``out_dir/test`` from FSDD at ``corpus_dir``.

    Raises :class:`CorpusError` (before writing anything) when ``recordings/`` is missing,
    holds no WAV files, or holds a WAV file not named ``{digit}_{speaker}_{take}.wav``.
    Other files (e.g. ``.DS_Store``) are ignored. Returns ``{"train": ..., "test": ...}``.
    """
    corpus_dir = Path(os.path.abspath(corpus_dir))
    if not corpus_dir.is_dir():
        raise CorpusError(f"FSDD corpus not found: {corpus_dir} is not a directory")
    recordings = corpus_dir / "recordings"
    if not recordings.is_dir():
        raise CorpusError(
            f"FSDD corpus not found: {recordings} is not a directory "
            "(expected recordings/{digit}_{speaker}_{take}.wav)"
        )
    splits: dict[str, dict[str, dict[str, str]]] = {
        name: {"wav_scp": {}, "text": {}, "utt2spk": {}} for name in ("train", "test")
    }
    for entry in sorted(os.scandir(recordings), key=lambda e: e.name):
        if not entry.name.lower().endswith(".wav") or entry.name.startswith("."):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise CorpusError(
                f"{recordings / entry.name}: file name is not {{digit}}_{{speaker}}_{{take}}.wav"
            )
        if not entry.is_file():
            raise CorpusError(f"{recordings / entry.name}: not a regular file")
        spk_id = match["speaker"]
        utt_id = f"{spk_id}-{entry.name[: -len('.wav')]}"
        split = splits["test" if int(match["take"]) < NUM_TEST_TAKES else "train"]
        split["wav_scp"][utt_id] = str(recordings / entry.name)
        split["text"][utt_id] = DIGIT_WORDS[int(match["digit"])]
        split["utt2spk"][utt_id] = spk_id
    for name, split in splits.items():
        if not split["wav_scp"]:
            raise CorpusError(f"{recordings}: no {name} recordings found")
    sets = {name: DataDir(**split) for name, split in splits.items()}
    write_data_dirs(sets, out_dir)
    return sets
