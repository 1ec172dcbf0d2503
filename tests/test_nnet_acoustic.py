"""asr.nnet.nnet_acoustic (DNN / CTC model dirs behind load_acoustic_model) and asr.nnet.prepare
(frame targets from alignments, token targets from the lexicon).

Oracles: log-posteriors recomputed by hand from the network's pre-softmax activations
(numpy log-sum-exp), the definition of priors (normalized counts), the posterior
normalization sum_pdf exp(ll + log_prior) = 1, the token table asr graph mktlg writes, and
lexicon lookups by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asr.acoustic_model import load_acoustic_model
from asr.errors import ModelError, TrainingError
from asr.features.pipeline import FeaturePipelineConfig
from asr.hmm.model import init_monophone
from asr.lang import Lexicon, prepare_lang
from asr.nnet.models import CtcConfig, CtcModel, TdnnConfig, TdnnModel
from asr.nnet.nnet_acoustic import (
    CtcAcousticModel,
    DnnAcousticModel,
    read_tokens,
    save_ctc_model_dir,
    save_dnn_model_dir,
)
from asr.nnet.prepare import frame_targets, read_pronunciations, token_table, token_targets

PIPELINE = FeaturePipelineConfig(cmvn="utterance", deltas=0)


@pytest.fixture(scope="module")
def lang(tmp_path_factory):
    lexicon = Lexicon.from_pairs(
        [("YES", "Y EH S"), ("NO", "N OW"), ("NO", "N AO"), ("<UNK>", "SPN")]
    )
    return prepare_lang(lexicon, tmp_path_factory.mktemp("lang"))


def _log_softmax_np(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    top = x.max(axis=1, keepdims=True)
    return x - top - np.log(np.exp(x - top).sum(axis=1, keepdims=True))


def test_dnn_model_dir_round_trip_and_scores(lang, tmp_path):
    torch.manual_seed(0)
    hmm = init_monophone(lang)
    net = TdnnModel(
        TdnnConfig(input_dim=13, num_pdfs=hmm.num_pdfs, hidden_dim=32, num_layers=2, context=(3, 2))
    ).eval()
    counts = np.arange(1, hmm.num_pdfs + 1, dtype=np.float64)
    log_priors = np.log(counts / counts.sum()).astype(np.float32)
    save_dnn_model_dir(
        tmp_path, hmm=hmm, network=net, log_priors=log_priors, feature_pipeline=PIPELINE
    )
    model = load_acoustic_model(tmp_path)
    assert isinstance(model, DnnAcousticModel) and model.family == "dnn"
    assert model.num_pdfs == hmm.num_pdfs and model.feature_dim == 13
    raw = np.random.default_rng(1).normal(size=(40, 13)).astype(np.float32) * 3 + 5
    feats = model.features(raw)
    np.testing.assert_allclose(feats.mean(axis=0), 0.0, atol=1e-4)  # utterance CMN
    ll = model.log_likelihoods(feats)
    assert ll.shape == (40, hmm.num_pdfs) and ll.dtype == np.float32
    # oracle: pre-softmax activations -> numpy log-softmax - log(counts / total)
    with torch.no_grad():
        hidden, _ = net.stack(torch.from_numpy(feats)[None], torch.tensor([40]))
        logits = net.output(hidden)[0].numpy()
    expected = _log_softmax_np(logits) - np.log(counts / counts.sum())
    np.testing.assert_allclose(ll, expected, atol=1e-4)
    # posteriors recovered from the pseudo-likelihoods sum to one per frame
    np.testing.assert_allclose(np.exp(ll + log_priors).sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(ModelError, match="expects"):
        model.log_likelihoods(np.zeros((5, 12), np.float32))


def test_dnn_model_dir_rejects_mismatched_priors(lang, tmp_path):
    hmm = init_monophone(lang)
    net = TdnnModel(TdnnConfig(input_dim=4, num_pdfs=hmm.num_pdfs, hidden_dim=8, num_layers=1))
    with pytest.raises(ModelError, match="priors"):
        save_dnn_model_dir(
            tmp_path, hmm=hmm, network=net, log_priors=np.zeros(3), feature_pipeline=PIPELINE
        )
    wrong = TdnnModel(
        TdnnConfig(input_dim=4, num_pdfs=hmm.num_pdfs + 1, hidden_dim=8, num_layers=1)
    )
    with pytest.raises(ModelError, match="outputs"):
        DnnAcousticModel(
            hmm=hmm, network=wrong, log_priors=np.zeros(hmm.num_pdfs + 1), feature_pipeline=PIPELINE
        )


def test_ctc_model_dir_tokens_match_tlg(lang, tmp_path):
    from asr.graph.ctc import mktlg

    tokens = token_table(lang.path)
    assert tokens == ["<blk>", "SIL", "SPN", "AO", "EH", "N", "OW", "S", "Y"]
    torch.manual_seed(0)
    net = CtcModel(
        CtcConfig(
            input_dim=13, num_tokens=len(tokens), hidden=16, num_layers=1,
            conv_channels=8, conv_strides=(1, 2),
        )
    ).eval()  # fmt: skip
    save_ctc_model_dir(tmp_path / "ctc", network=net, tokens=tokens, feature_pipeline=PIPELINE)
    model = load_acoustic_model(tmp_path / "ctc")
    assert isinstance(model, CtcAcousticModel) and model.family == "ctc"
    assert model.num_pdfs == len(tokens) and model.subsampling == 2
    feats = model.features(np.random.default_rng(2).normal(size=(41, 13)).astype(np.float32))
    ll = model.log_likelihoods(feats)
    with torch.no_grad():
        expected, out_len = net(torch.from_numpy(feats)[None], torch.tensor([41]))
    assert ll.shape == (int(out_len[0]), len(tokens)) == (21, 9)
    np.testing.assert_allclose(ll, expected[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(np.exp(ll.astype(np.float64)).sum(axis=1), 1.0, atol=1e-5)
    # the TLG built for the same lang numbers its tokens exactly like the model's columns
    g = tmp_path / "G.fst"
    _write_unigram_g(lang, g)
    info = mktlg(lang.path, None, g, tmp_path / "graph")
    assert info.num_pdfs == model.num_pdfs
    assert read_tokens(tmp_path / "graph" / "tokens.txt") == list(model.tokens)


def _write_unigram_g(lang, path) -> None:
    import kaldifst

    fst = kaldifst.StdVectorFst()
    state = fst.add_state()
    fst.start = state
    fst.set_final(state, 0.0)
    for word in ("YES", "NO"):
        fst.add_arc(state, kaldifst.StdArc(lang.words[word], lang.words[word], 0.7, state))
    fst.write(str(path))


def test_read_tokens_errors(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("<blk> 0\nA 2\n")
    with pytest.raises(ModelError, match="tokens.txt:2"):
        read_tokens(path)
    path.write_text("A 0\nB 1\n")
    with pytest.raises(ModelError, match="<blk>"):
        read_tokens(path)
    with pytest.raises(ModelError, match="not found"):
        read_tokens(tmp_path / "missing.txt")


def test_frame_targets_map_transition_ids_to_pdfs(lang):
    tid2pdf = init_monophone(lang).transition_model.tid2pdf
    rng = np.random.default_rng(3)
    ali = {"a": rng.integers(1, len(tid2pdf), 30), "b": rng.integers(1, len(tid2pdf), 12)}
    targets, stats = frame_targets(ali, tid2pdf=tid2pdf, num_frames={"a": 30, "b": 11})
    assert list(targets) == ["a"] and "b" in stats.skipped and stats.num_kept == 1
    np.testing.assert_array_equal(targets["a"], [tid2pdf[t] for t in ali["a"]])
    with pytest.raises(TrainingError, match="another model"):
        frame_targets({"c": np.array([len(tid2pdf)])}, tid2pdf=tid2pdf)


def test_token_targets_first_pronunciation_and_oov(lang):
    tokens = token_table(lang.path)
    idx = {t: k for k, t in enumerate(tokens)}
    assert read_pronunciations(lang.path)["NO"] == ("N", "OW")  # first of two
    texts = {"u1": "YES NO", "u2": "NO MAYBE", "u3": ""}
    targets, stats = token_targets(texts, lang_dir=lang.path, oov="map")
    assert targets["u1"].tolist() == [idx[p] for p in ("Y", "EH", "S", "N", "OW")]
    assert targets["u2"].tolist() == [idx[p] for p in ("N", "OW", "SPN")]
    assert set(stats.skipped) == {"u3"}
    targets, stats = token_targets(texts, lang_dir=lang.path, oov="skip")
    assert set(targets) == {"u1"} and "MAYBE" in stats.skipped["u2"]
    with pytest.raises(TrainingError, match="oov"):
        token_targets(texts, lang_dir=lang.path, oov="drop")


def _gmm(num_pdfs: int, dim: int, seed: int):
    from asr.gmm.diag_gmm import DiagGmmSet

    rng = np.random.default_rng(seed)
    return DiagGmmSet(
        means=torch.from_numpy(rng.normal(0, 1.5, (num_pdfs, dim))),
        inv_vars=torch.from_numpy(rng.uniform(0.5, 2.0, (num_pdfs, dim))),
        log_weights=torch.zeros(num_pdfs, dtype=torch.float64),
        pdf_offsets=torch.arange(num_pdfs + 1),
    )


def test_fmllr_dnn_dir_is_speaker_adaptive_and_reads_the_old_si_gmm_name(lang, tmp_path):
    """An fMLLR DNN dir keeps its SAT model's SI GMMs as ``gmm_si.pt`` (the SAT dir's name);
    a dir written before (``sat_gmm_si.pt``) loads the same model."""
    from asr.acoustic_model import AcousticModel, SpeakerAdaptive
    from asr.gmm.sat import SI_GMM_FILE
    from asr.nnet.nnet_acoustic import LEGACY_SI_GMM_FILE, SAT_GMM_FILE, FmllrDnnAcousticModel

    torch.manual_seed(0)
    hmm = init_monophone(lang)
    net = TdnnModel(TdnnConfig(input_dim=13, num_pdfs=hmm.num_pdfs, hidden_dim=8, num_layers=1))
    log_priors = np.full(hmm.num_pdfs, -np.log(hmm.num_pdfs), np.float32)
    sat, si = _gmm(hmm.num_pdfs, 13, 1), _gmm(hmm.num_pdfs, 13, 2)
    save_dnn_model_dir(
        tmp_path, hmm=hmm, network=net.eval(), log_priors=log_priors, feature_pipeline=PIPELINE,
        sat_gmms=(sat, si), silence_phone_ids=(1,),
    )  # fmt: skip
    assert SI_GMM_FILE == "gmm_si.pt" and (tmp_path / SI_GMM_FILE).is_file()
    assert (tmp_path / SAT_GMM_FILE).is_file() and not (tmp_path / LEGACY_SI_GMM_FILE).exists()
    model = load_acoustic_model(tmp_path)
    assert isinstance(model, FmllrDnnAcousticModel) and isinstance(model, DnnAcousticModel)
    assert isinstance(model, AcousticModel) and isinstance(model, SpeakerAdaptive)
    torch.testing.assert_close(model.sat_model.gmm.means, si.means)
    torch.testing.assert_close(model.sat_model.sat.means, sat.means)
    assert model.sat_model.silence_phone_ids == (1,)
    feats = model.features(np.random.default_rng(3).normal(size=(20, 13)).astype(np.float32))
    np.testing.assert_array_equal(model.adapted_scores(feats, None), model.log_likelihoods(feats))
    shifted = np.hstack([np.eye(13), np.full((13, 1), 0.5)])
    np.testing.assert_allclose(
        model.adapted_scores(feats, shifted), model.log_likelihoods(feats + 0.5), atol=1e-5
    )
    # an old dir: the SI GMMs under their former name
    (tmp_path / SI_GMM_FILE).rename(tmp_path / LEGACY_SI_GMM_FILE)
    old = load_acoustic_model(tmp_path)
    assert isinstance(old, FmllrDnnAcousticModel)
    torch.testing.assert_close(old.sat_model.gmm.means, si.means)
    (tmp_path / LEGACY_SI_GMM_FILE).unlink()
    with pytest.raises(ModelError, match="SAT model's GMMs"):
        load_acoustic_model(tmp_path)


def test_every_family_declares_the_whole_contract(lang, tmp_path):
    """Plain DNN and CTC models implement AcousticModel (frame independence, subsampling,
    transform, model dir) and are not speaker-adaptive."""
    from asr.acoustic_model import AcousticModel, SpeakerAdaptive

    hmm = init_monophone(lang)
    net = TdnnModel(TdnnConfig(input_dim=4, num_pdfs=hmm.num_pdfs, hidden_dim=8, num_layers=1))
    dnn = save_dnn_model_dir(
        tmp_path / "dnn", hmm=hmm, network=net, feature_pipeline=PIPELINE,
        log_priors=np.zeros(hmm.num_pdfs, np.float32),
    )  # fmt: skip
    ctc_net = CtcModel(CtcConfig(input_dim=4, num_tokens=3, hidden=8, num_layers=1))
    ctc = save_ctc_model_dir(
        tmp_path / "ctc", network=ctc_net, tokens=["<blk>", "A", "B"], feature_pipeline=PIPELINE
    )
    for model in (dnn, ctc):
        assert isinstance(model, AcousticModel) and not isinstance(model, SpeakerAdaptive)
        assert model.transform is None and model.model_dir is not None
    assert (dnn.frame_independent, dnn.subsampling) == (True, 1)
    assert ctc.frame_independent is False and ctc.subsampling == ctc_net.config.subsampling
