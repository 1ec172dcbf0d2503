"""asr.nnet.acoustic (DNN / CTC model dirs behind load_acoustic_model) and asr.nnet.prepare
(frame targets from alignments, token targets from the lexicon).

Oracles: log-posteriors recomputed by hand from the network's pre-softmax activations
(numpy log-sum-exp), the definition of priors (normalized counts), the posterior
normalization sum_pdf exp(ll + log_prior) = 1, the token table asr graph mktlg writes, and
lexicon lookups by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asr.acoustic import load_acoustic_model
from asr.errors import ModelError, TrainingError
from asr.features.pipeline import FeaturePipelineConfig
from asr.hmm.model import init_monophone
from asr.lang import Lexicon, prepare_lang
from asr.nnet.acoustic import (
    CtcAcousticModel,
    DnnAcousticModel,
    read_tokens,
    save_ctc_model_dir,
    save_dnn_model_dir,
)
from asr.nnet.models import CtcConfig, CtcModel, TdnnConfig, TdnnModel
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
