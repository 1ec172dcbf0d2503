"""asr.gmm.train_sat (tri3, fMLLR speaker-adaptive training), asr.gmm.sat (multi-pass decoding)
and ``asr train sat``.

On the small FSDD subset of tests/support/fsdd_tri.py (two speakers, as test_train_tri.py):
SAT from its tri2. Oracles: the GMM's own log-likelihoods (each speaker's transform must raise
the likelihood of its aligned frames, Jacobian included, over no transform), an uninterrupted
run for resumption, and held-out decoding.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from asr.acoustic_model import load_acoustic_model
from asr.align import read_alignments
from asr.batch.decode_dir import decode_data_dir
from asr.cli.main import main
from asr.decode import DecoderConfig, DecodingGraph
from asr.decode.search_graph import resolve_graph_dir
from asr.features.pipeline import load_features
from asr.gmm import DiagGmmSet
from asr.gmm.fmllr import apply_fmllr, identity_transform
from asr.gmm.sat import SatAcousticModel, decode_speaker
from asr.gmm.train_sat import SatConfig, load_transforms, train_sat
from asr.gmm.train_tri import TriConfig
from asr.graph import mkgraph
from tests.support import fsdd_tri

# the shared module fixtures of tests/support/fsdd_tri.py (as in test_train_tri.py)
setup, tri1, tri2 = fsdd_tri.setup, fsdd_tri.tri1, fsdd_tri.tri2

SAT = SatConfig(
    tri=TriConfig(
        num_leaves=120, totgauss=500, num_iters=8, max_iter_inc=5, realign_iters=(5,),
        tree_thresh=50.0,
    ),
    fmllr_iters=(2, 4),
)  # fmt: skip


@pytest.fixture(scope="module")
def tri3(setup, tri2):
    return train_sat(
        setup["train"], setup["lang"].path, setup["root"] / "tri2", setup["root"] / "tri3",
        config=SAT,
    )  # fmt: skip


def test_sat_model_dir_and_transforms_raise_the_likelihood(setup, tri3):
    model_dir = setup["root"] / "tri3"
    model = load_acoustic_model(model_dir)
    assert isinstance(model, SatAcousticModel) and model.family == "sat"
    assert json.loads((model_dir / "model.json").read_text())["silence_phone_ids"]
    assert tri3.num_speakers == 2 and sorted(tri3.fmllr_gain_per_frame) == [0, 2, 4]
    assert all(gain > 0 for gain in tri3.fmllr_gain_per_frame.values())
    transforms = load_transforms(model_dir / "trans.npz")
    assert sorted(transforms) == ["jackson", "theo"]
    # oracle: the SAT GMMs' log-likelihood of each speaker's aligned frames (+ log|det A| per
    # frame) is higher with the speaker's transform than without
    si = load_features(setup["train"], model.feature_pipeline, model_dir=model_dir)
    alignments = read_alignments(model_dir / "ali")
    tid2pdf = model.hmm.transition_model.tid2pdf
    for spk_id, transform in transforms.items():
        utts = [u for u in alignments if u.startswith(spk_id)]
        feats = np.concatenate([si[u] for u in utts])
        pdfs = np.concatenate([tid2pdf[alignments[u]] for u in utts])

        def total(x: np.ndarray, logdet: float) -> float:
            scores = model.sat.log_likelihoods(torch.from_numpy(x)).numpy()  # noqa: B023
            return float(scores[np.arange(len(x)), pdfs].sum()) + len(x) * logdet  # noqa: B023

        adapted = total(apply_fmllr(feats, transform), np.linalg.slogdet(transform[:, :-1])[1])
        assert adapted > total(feats, 0.0) + 0.1 * len(feats), spk_id
    # the SI alignment model has the SAT model's structure, with other parameters
    si_gmm = DiagGmmSet.load(model_dir / "gmm_si.pt")
    assert torch.equal(si_gmm.pdf_offsets, model.sat.pdf_offsets)
    assert not torch.allclose(si_gmm.means, model.sat.means)


def test_sat_decodes_held_out_takes_in_passes(setup, tri2, tri3, tmp_path):
    root = setup["root"]
    wers = {}
    for name in ("tri2", "tri3"):
        mkgraph(setup["lang"].path, root / name, root / "G.fst", tmp_path / name / "graph")
        summary = decode_data_dir(
            root / name, tmp_path / name / "graph", setup["test"], tmp_path / name / "decode"
        )
        wers[name] = summary.wer
    # 40 held-out digits after training on 100 (one error is 2.5 %): tri2 is the weakest model
    # of tests/test_train_tri.py here; SAT on top of it must not be worse beyond noise. At the
    # ~3 % error rate of these models the error count on 40 words has a standard deviation of
    # about one word (sqrt(40 * 0.03 * 0.97) = 1.1), and another CPU's BLAS kernels move
    # single decisions (seen: tri2 1 error, tri3 2 errors on an AMD EPYC), so the margin is two
    # words (about 2 sigma) rather than none.
    two_words = 2 * 100.0 / 40
    assert wers["tri3"] <= 15.0 and wers["tri3"] <= wers["tri2"] + two_words, wers
    hyp = (tmp_path / "tri3" / "decode" / "hyp.txt").read_text().splitlines()
    assert len(hyp) == 40
    # each test speaker got its own (non-identity) transform from the first pass
    model = SatAcousticModel.load(root / "tri3")
    graph = DecodingGraph.from_fst(*resolve_graph_dir(tmp_path / "tri3" / "graph")[:2])
    feats = load_features(setup["test"], model.feature_pipeline, model_dir=root / "tri3")
    for spk_id in ("jackson", "theo"):
        spk_feats = [f for u, f in feats.items() if u.startswith(spk_id)]
        results, transform = decode_speaker(model, graph, spk_feats, [DecoderConfig()])
        assert len(results) == len(spk_feats) == 20
        assert np.abs(transform - identity_transform(transform.shape[0])).max() > 0.01


def test_sat_resume_after_interruption_gives_the_same_model(setup, tri3, tmp_path):
    class Stop(Exception):
        pass

    def stop_after_4(stats) -> None:
        if stats.iteration == 4:
            raise Stop

    args = (setup["train"], setup["lang"].path, setup["root"] / "tri2", tmp_path / "b")
    with pytest.raises(Stop):  # after the fMLLR update of iteration 4
        train_sat(*args, config=SAT, progress=stop_after_4)
    assert not (tmp_path / "b" / "hmm.json").exists()
    resumed = train_sat(*args, config=SAT)
    assert resumed.resumed_from == 5
    a, b = (DiagGmmSet.load(d / "gmm.pt") for d in (setup["root"] / "tri3", tmp_path / "b"))
    np.testing.assert_allclose(b.means.numpy(), a.means.numpy(), rtol=1e-6, atol=1e-8)
    ta, tb = (load_transforms(d / "trans.npz") for d in (setup["root"] / "tri3", tmp_path / "b"))
    for spk_id in ta:
        np.testing.assert_allclose(tb[spk_id], ta[spk_id], rtol=1e-6, atol=1e-8)


def test_cli_train_sat_keeps_an_up_to_date_model(setup, tri3, capsys):
    root = setup["root"]
    code = main(
        ["train", "sat", str(setup["train"]), str(setup["lang"].path), str(root / "tri2"),
         str(root / "tri3"), "--num-leaves", "120", "--totgauss", "500", "--num-iters", "8",
         "--max-iter-inc", "5", "--realign-iters", "5", "--fmllr-iters", "2,4",
         "--tree-thresh", "50"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "SAT, 2 speakers" in out and f"{tri3.num_pdfs} pdfs" in out


def test_bundle_transcribes_a_speaker_like_the_decode_stage(setup, tri3, tmp_path):
    """A tri3 bundle through ``Recognizer.transcribe_speaker`` (the speaker's audio: pooled CMVN
    and one fMLLR transform) gives the hypotheses of ``decode_data_dir`` on the same data."""
    from asr.bundle import export_bundle
    from asr.data import read_data_dir
    from asr.recognizer import Recognizer
    from asr.scoring import read_text_file

    root = setup["root"]
    graph = tmp_path / "graph"
    mkgraph(setup["lang"].path, root / "tri3", root / "G.fst", graph)
    config = DecoderConfig(beam=13.0, acoustic_scale=0.1)
    decode_data_dir(root / "tri3", graph, setup["test"], tmp_path / "decode", config=config)
    decoded = read_text_file(tmp_path / "decode" / "hyp.txt")
    export_bundle(root / "tri3", graph_dir=graph, out_dir=tmp_path / "bundle",
                  lang_dir=setup["lang"].path, decoder_config=config)  # fmt: skip
    rec = Recognizer.from_dir(tmp_path / "bundle", device="cpu")
    data = read_data_dir(setup["test"])
    for spk_id in ("jackson", "theo"):
        utts = sorted(u for u in data.wav_scp if data.utt2spk[u] == spk_id)
        results = rec.transcribe_speaker([data.wav_scp[u] for u in utts])
        assert [r.text for r in results] == [decoded[u] for u in utts], spk_id
    # a lone utterance (a stream, `asr transcribe FILE`): its own transform when it has the
    # frames for one (these digits do not: SI scores), the same in a stream and in transcribe
    path = data.wav_scp[utts[0]]
    stream = rec.stream()
    stream.accept_waveform(rec.load_audio(path))
    assert stream.finalize().text == rec.transcribe(path).text


def test_dnn_on_fmllr_features_adapts_to_each_speaker(setup, tri3, tmp_path):
    """``asr train dnn --fmllr`` on the SAT alignments: the DNN dir keeps the SAT GMMs, decodes
    a speaker at a time (its own transform), and its bundle gives the decode stage's hypotheses;
    a non-SAT alignment model is refused."""
    from asr.bundle import export_bundle
    from asr.data import read_data_dir
    from asr.errors import TrainingError
    from asr.nnet.nnet_acoustic import DnnAcousticModel
    from asr.nnet.train_steps import DnnRecipeConfig, train_dnn
    from asr.nnet.trainer import TrainConfig
    from asr.recognizer import Recognizer
    from asr.scoring import read_text_file

    root = setup["root"]
    config = DnnRecipeConfig(
        hidden_dim=64, num_layers=2, context=(4, 4), fmllr=True,
        train=TrainConfig(lr=2e-3, epochs=3, device="cpu"),
    )  # fmt: skip
    args = (setup["train"], setup["test"], setup["lang"].path)
    train_dnn(*args, root / "tri3" / "ali", tmp_path / "dnn", config=config, progress=False)
    model = load_acoustic_model(tmp_path / "dnn")
    assert isinstance(model, DnnAcousticModel) and model.sat_model is not None
    assert model.feature_dim == fsdd_tri.TRI2.lda_dim and model.transform is not None
    # the dev set's speakers were adapted with transforms from their SAT alignment
    assert sorted(load_transforms(tmp_path / "dnn" / "ali_dev" / "trans.npz")) == [
        "jackson",
        "theo",
    ]
    graph = tmp_path / "graph"
    mkgraph(setup["lang"].path, tmp_path / "dnn", root / "G.fst", graph)
    decoder = DecoderConfig(beam=13.0, acoustic_scale=0.1)
    summary = decode_data_dir(tmp_path / "dnn", graph, setup["test"], tmp_path / "decode",
                              config=decoder)  # fmt: skip
    assert summary.num_utterances == 40 and summary.wer is not None
    decoded = read_text_file(tmp_path / "decode" / "hyp.txt")
    export_bundle(tmp_path / "dnn", graph_dir=graph, out_dir=tmp_path / "bundle",
                  lang_dir=setup["lang"].path, decoder_config=decoder)  # fmt: skip
    rec = Recognizer.from_dir(tmp_path / "bundle", device="cpu")
    data = read_data_dir(setup["test"])
    utts = sorted(u for u in data.wav_scp if data.utt2spk[u] == "theo")
    results = rec.transcribe_speaker([data.wav_scp[u] for u in utts])
    assert [r.text for r in results] == [decoded[u] for u in utts]
    with pytest.raises(TrainingError, match="speaker-adaptive"):
        train_dnn(*args, root / "tri2" / "ali", tmp_path / "bad", config=config, progress=False)
