"""The small FSDD subset of the triphone and SAT training tests: two speakers' digits (takes
5-9 train, 0-1 test), a digit lang and loop G, a short monophone model, and the tri1 (deltas)
and tri2 (LDA+MLLT) configurations and trainings on it.

The module fixtures :func:`setup`, :func:`tri1` and :func:`tri2` are shared by the test
modules that import them (``from tests.support.fsdd_tri import setup, tri1, tri2``); each
such module builds its own copy under its own temporary dir."""

from __future__ import annotations

from pathlib import Path

import kaldifst
import numpy as np
import pytest

from asr.data import DataDir, write_data_dir
from asr.features import MfccConfig
from asr.features.batch import compute_data_dir_features
from asr.gmm.train_mono import MonoConfig, train_mono
from asr.gmm.train_tri import TriConfig, train_tri
from asr.lang import prepare_lang
from asr.lang.lexicon import read_lexicon

DIGITS = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")
SPEAKERS = ("jackson", "theo")
TRI1 = TriConfig(
    num_leaves=120, totgauss=500, num_iters=8, max_iter_inc=5, realign_iters=(4,), tree_thresh=50.0
)
TRI2 = TriConfig(
    feature_mode="lda_mllt", num_leaves=120, totgauss=500, num_iters=8, max_iter_inc=5,
    realign_iters=(5,), mllt_iters=(2, 4), lda_dim=24, tree_thresh=50.0,
)  # fmt: skip


def fsdd_data_dir(fsdd_dir: Path, out: Path, takes: range) -> Path:
    """A data dir of ``takes`` of every digit by :data:`SPEAKERS`, with MFCCs."""
    wav_scp, text, utt2spk = {}, {}, {}
    for spk_id in SPEAKERS:
        for digit, word in enumerate(DIGITS):
            for take in takes:
                utt_id = f"{spk_id}-{digit}_{spk_id}_{take}"
                wav_scp[utt_id] = str(fsdd_dir / "recordings" / f"{digit}_{spk_id}_{take}.wav")
                text[utt_id], utt2spk[utt_id] = word, spk_id
    write_data_dir(DataDir(wav_scp=wav_scp, text=text, utt2spk=utt2spk), out)
    compute_data_dir_features(out, out / "data", config=MfccConfig(sampling_rate=8000))
    return out


def build_setup(fsdd_dir: Path, cmudict_dir: Path, root: Path) -> dict:
    """Train/test dirs, lang, G.fst and a short monophone model with its alignment under
    ``root``: ``{"root", "train", "test", "lang"}``."""
    train = fsdd_data_dir(fsdd_dir, root / "train", range(5, 10))
    test = fsdd_data_dir(fsdd_dir, root / "test", range(0, 2))
    lexicon = read_lexicon(cmudict_dir / "cmudict.dict", words=DIGITS, uppercase=True)
    lang = prepare_lang(lexicon, root / "lang")
    cost = -np.log(0.1)
    arcs = "".join(f"0 0 {lang.words[w]} {lang.words[w]} {cost}\n" for w in DIGITS)
    kaldifst.compile(arcs + f"0 {cost}\n").write(str(root / "G.fst"))
    mono = MonoConfig(num_iters=12, totgauss=150, max_iter_inc=8, realign_iters=(1, 2, 3, 5, 7, 9))
    train_mono(train, lang.path, root / "mono", config=mono)
    return {"root": root, "train": train, "test": test, "lang": lang}


def train_tri1(setup: dict):
    """tri1 (:data:`TRI1`) from the monophone model of :func:`build_setup`."""
    summary = train_tri(
        setup["train"], setup["lang"].path, setup["root"] / "mono", setup["root"] / "tri1",
        config=TRI1,
    )  # fmt: skip
    return summary


def train_tri2(setup: dict):
    """tri2 (:data:`TRI2`) from tri1 (:func:`train_tri1` must have run)."""
    summary = train_tri(
        setup["train"], setup["lang"].path, setup["root"] / "tri1", setup["root"] / "tri2",
        config=TRI2,
    )  # fmt: skip
    return summary


@pytest.fixture(scope="module")
def setup(fsdd_dir, cmudict_dir, tmp_path_factory):
    """Train/test dirs, lang, G.fst and a short monophone model with its alignment."""
    return build_setup(fsdd_dir, cmudict_dir, tmp_path_factory.mktemp("tri"))


@pytest.fixture(scope="module")
def tri1(setup):
    return train_tri1(setup)


@pytest.fixture(scope="module")
def tri2(setup, tri1):
    return train_tri2(setup)
