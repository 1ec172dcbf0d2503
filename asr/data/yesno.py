"""Prepare OpenSLR SLR1 "yesno" as Kaldi data directories ``train`` and ``test``.

Official layout: ``yesno/waves_yesno/0_1_0_0_1_0_1_1.wav`` -- 60 files of eight Hebrew
words each, the labels in the file name (1 = ``YES``, 0 = ``NO``). Kaldi's split
(``egs/yesno``): the first 30 files in sorted order are ``train``, the last 30 ``test``.
There is one speaker, ``global``; utterance ids are ``global-<file stem>`` so that they
start with the speaker id.

Example:

>>> sets = prepare_yesno("corpora/yesno", "data/yesno")  # doctest: +SKIP
>>> sets["train"].text["global-0_0_0_0_1_1_1_1"]  # doctest: +SKIP
'NO NO NO NO YES YES YES YES'
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from asr.data.datadir import DataDir, write_data_dirs
from asr.errors import CorpusError

__all__ = ["NUM_FILES", "SPEAKER_ID", "prepare_yesno"]

#: Speaker id of the corpus's single speaker.
SPEAKER_ID = "global"
#: Number of recordings in the official corpus (the first half is train, the rest test).
NUM_FILES = 60
_FILE_NAME = re.compile(r"^[01](_[01]){7}\.wav$")
_WORDS = {"0": "NO", "1": "YES"}


def prepare_yesno(corpus_dir: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, DataDir]:
    """Write ``out_dir/train`` and ``out_dir/test`` from the yesno corpus at ``corpus_dir``.

    Raises :class:`CorpusError` (before writing anything) when ``waves_yesno/`` is missing,
    a WAV file is not named with eight 0/1 labels, or there are not exactly 60 of them
    (a missing file would silently shift Kaldi's split). Non-WAV files (the README) are
    ignored. Returns ``{"train": ..., "test": ...}``.
    """
    corpus_dir = Path(os.path.abspath(corpus_dir))
    if not corpus_dir.is_dir():
        raise CorpusError(f"yesno corpus not found: {corpus_dir} is not a directory")
    waves = corpus_dir / "waves_yesno"
    if not waves.is_dir():
        raise CorpusError(f"yesno corpus not found: {waves} is not a directory")
    names = sorted(
        e.name for e in os.scandir(waves) if e.name.lower().endswith(".wav") and e.is_file()
    )
    for name in names:
        if not _FILE_NAME.match(name):
            raise CorpusError(f"{waves / name}: file name is not eight 0/1 labels (0_1_..._1.wav)")
    if len(names) != NUM_FILES:
        raise CorpusError(f"{waves}: expected {NUM_FILES} WAV files, found {len(names)}")
    sets = {}
    half = NUM_FILES // 2
    for set_name, set_files in (("train", names[:half]), ("test", names[half:])):
        wav_scp, text, utt2spk = {}, {}, {}
        for name in set_files:
            stem = name[: -len(".wav")]
            utt_id = f"{SPEAKER_ID}-{stem}"
            wav_scp[utt_id] = str(waves / name)
            text[utt_id] = " ".join(_WORDS[label] for label in stem.split("_"))
            utt2spk[utt_id] = SPEAKER_ID
        sets[set_name] = DataDir(wav_scp=wav_scp, text=text, utt2spk=utt2spk)
    write_data_dirs(sets, out_dir)
    return sets
