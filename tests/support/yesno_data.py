"""yesno test material: small data directories with MFCCs (the feature-pipeline, model-decoding
and neural end-to-end tests) and a small trained monophone model with its graph (the bundle,
recognizer, transcription and plot tests)."""

from __future__ import annotations

from pathlib import Path

import kaldifst
import numpy as np

from asr.data import DataDir, write_data_dir
from asr.data.yesno import prepare_yesno
from asr.features import MfccConfig
from asr.features.batch import compute_data_dir_features
from asr.gmm.train_mono import MonoConfig, train_mono
from asr.graph import mkgraph
from asr.lang import Lexicon, prepare_lang

#: The MFCC front-end of the yesno tests (the corpus is 8 kHz).
MFCC = MfccConfig(sampling_rate=8000)


def make_yesno_data_dir(
    yesno_dir: Path, out: Path, *, names: list[str], speakers: tuple[str, ...] = ("a", "b")
) -> Path:
    """A data dir of the named yesno files, assigned round-robin to ``speakers``, with MFCCs."""
    words = {"0": "NO", "1": "YES"}
    wav_scp, text, utt2spk = {}, {}, {}
    for i, name in enumerate(names):
        spk_id = speakers[i % len(speakers)]
        utt_id = f"{spk_id}-{name}"
        wav_scp[utt_id] = str(yesno_dir / "waves_yesno" / f"{name}.wav")
        text[utt_id] = " ".join(words[c] for c in name.split("_"))
        utt2spk[utt_id] = spk_id
    write_data_dir(DataDir(wav_scp=wav_scp, text=text, utt2spk=utt2spk), out)
    compute_data_dir_features(out, out / "data", config=MFCC)
    return out


def build_yesno_model(yesno_dir: Path, root: Path) -> dict[str, Path]:
    """Kaldi's yesno split with MFCCs, a lang, a YES/NO loop G, a 6-iteration monophone
    model and its HCLG; returns the paths."""
    sets = prepare_yesno(yesno_dir, root / "data")
    for name in sets:
        compute_data_dir_features(root / "data" / name, root / "data" / name / "feats", config=MFCC)
    lang = prepare_lang(Lexicon.from_pairs([("YES", "Y"), ("NO", "N")]), root / "lang")
    cost = -np.log(0.1)
    yes, no = lang.words["YES"], lang.words["NO"]
    g_fst = root / "G.fst"
    kaldifst.compile(f"0 0 {yes} {yes} {cost}\n0 0 {no} {no} {cost}\n0 {cost}\n").write(str(g_fst))
    model = root / "mono"
    config = MonoConfig(num_iters=6, totgauss=60, max_iter_inc=4, realign_iters=(1, 2, 4))
    train_mono(root / "data" / "train", lang.path, model, config=config)
    mkgraph(lang.path, model, g_fst, model / "graph")
    return {
        "model": model,
        "graph": model / "graph",
        "lang": Path(lang.path),
        "train": root / "data" / "train",
        "test": root / "data" / "test",
    }
