"""asr.nnet.models: shapes, stated context, streaming == full forward, priors, DNN contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asr.errors import ModelError
from asr.nnet.models import (
    CtcConfig,
    CtcModel,
    TdnnConfig,
    TdnnModel,
    build_model,
    dnn_log_likelihoods,
    estimate_log_priors,
    model_spec,
)


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Tiny models: one intra-op thread is faster (and the CPU is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def _tdnn(**kwargs) -> TdnnModel:
    cfg = dict(input_dim=6, num_pdfs=7, hidden_dim=12, num_layers=3, context=(4, 2))
    cfg.update(kwargs)
    return TdnnModel(TdnnConfig(**cfg)).eval()


def _chunks(rng: np.random.Generator, num_frames: int, max_chunk: int) -> list[int]:
    sizes = []
    while sum(sizes) < num_frames:
        sizes.append(int(rng.integers(0, max_chunk + 1)))
    sizes[-1] -= sum(sizes) - num_frames
    return sizes


def _stream(model, feats: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    outs, state, pos = [], None, 0
    with torch.no_grad():
        for i, size in enumerate(sizes):
            out, state = model.forward_chunk(
                feats[:, pos : pos + size], state, is_final=i == len(sizes) - 1
            )
            outs.append(out)
            pos += size
    return torch.cat(outs, dim=1)


# ------------------------------------------------------------------ TDNN


def test_tdnn_layer_contexts_sum_to_stated_context():
    for context in [(0, 0), (1, 0), (3, 3), (7, 2), (16, 4)]:
        for num_layers in (1, 2, 6):
            cfg = TdnnConfig(input_dim=3, num_pdfs=2, num_layers=num_layers, context=context)
            layers = cfg.resolved_layer_contexts()
            assert len(layers) == num_layers
            assert (sum(lc[0] for lc in layers), sum(lc[1] for lc in layers)) == context
            model = TdnnModel(cfg)
            assert (model.left_context, model.right_context) == context


def test_tdnn_config_errors():
    with pytest.raises(ModelError, match="layer_contexts sum"):
        TdnnConfig(
            input_dim=3, num_pdfs=2, num_layers=2, context=(2, 2), layer_contexts=((1, 1), (0, 0))
        )
    with pytest.raises(ModelError, match="entries"):
        TdnnConfig(input_dim=3, num_pdfs=2, num_layers=2, context=(1, 1), layer_contexts=((1, 1),))
    with pytest.raises(ModelError, match="hidden_dim"):
        TdnnConfig(input_dim=3, num_pdfs=2, hidden_dim=0)
    with pytest.raises(ModelError, match="feats must be"):
        _tdnn()(torch.zeros(1, 5, 3), torch.tensor([5]))


def test_tdnn_shapes_and_log_softmax():
    model = _tdnn()
    log_probs, out_lengths = model(torch.randn(3, 11, 6), torch.tensor([11, 5, 1]))
    assert log_probs.shape == (3, 11, 7)
    assert out_lengths.tolist() == [11, 5, 1]
    np.testing.assert_allclose(log_probs.exp().sum(-1).detach().numpy(), 1.0, rtol=1e-5)


def test_tdnn_receptive_field_is_the_stated_context():
    """Perturbing input frame t changes exactly the outputs t - right .. t + left."""
    model = _tdnn(context=(4, 2))
    feats = torch.randn(1, 30, 6)
    base, _ = model(feats, torch.tensor([30]))
    t = 15
    moved = feats.clone()
    moved[0, t] += 3.0
    out, _ = model(moved, torch.tensor([30]))
    changed = ((out - base).abs().amax(-1)[0] > 1e-6).nonzero().flatten().tolist()
    assert changed == list(range(t - 2, t + 4 + 1))


def test_tdnn_one_layer_matches_numpy_splicing_with_edge_replication():
    """Oracle: explicit Kaldi-style splicing (edge frames replicated) and the layer math in numpy."""
    model = _tdnn(num_layers=1, context=(2, 1))
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(6, 6)).astype(np.float32)
    conv = model.stack.convs[0]
    weight = conv.weight.detach().numpy()  # (hidden, in, kernel)
    idx = np.clip(np.arange(6)[:, None] + np.arange(-2, 2)[None, :], 0, 5)  # (T, 4)
    spliced = feats[idx]  # (T, 4, in)
    hidden = np.einsum("tki,oik->to", spliced, weight) + conv.bias.detach().numpy()
    hidden = np.maximum(hidden, 0)
    hidden = (hidden - hidden.mean(-1, keepdims=True)) / np.sqrt(
        hidden.var(-1, keepdims=True) + 1e-5
    )
    norm = model.stack.norms[0]
    hidden = hidden * norm.weight.detach().numpy() + norm.bias.detach().numpy()
    logits = hidden @ model.output.weight.detach().numpy().T + model.output.bias.detach().numpy()
    expected = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    got, _ = model(torch.from_numpy(feats)[None], torch.tensor([6]))
    np.testing.assert_allclose(got[0].detach().numpy(), expected, atol=1e-5)


def test_tdnn_batching_with_padding_equals_single_utterances():
    model = _tdnn()
    a, b = torch.randn(1, 13, 6), torch.randn(1, 4, 6)
    batch = torch.zeros(2, 13, 6)
    batch[0], batch[1, :4] = a[0], b[0]
    batch[1, 4:] = 100.0  # padding content must not leak into valid outputs
    out, _ = model(batch, torch.tensor([13, 4]))
    out_a, _ = model(a, torch.tensor([13]))
    out_b, _ = model(b, torch.tensor([4]))
    torch.testing.assert_close(out[0], out_a[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1, :4], out_b[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"context": (0, 0)},
        {"context": (3, 0)},
        {"num_layers": 3, "context": (5, 3), "layer_contexts": ((1, 2), (4, 0), (0, 1))},
    ],
)
def test_tdnn_chunked_equals_full_forward(kwargs):
    model = _tdnn(**kwargs)
    rng = np.random.default_rng(7)
    feats = torch.randn(2, 41, 6)
    full, _ = model(feats, torch.tensor([41, 41]))
    for max_chunk in (1, 3, 17, 50):
        sizes = _chunks(rng, 41, max_chunk)
        streamed = _stream(model, feats, sizes)
        assert streamed.shape == full.shape
        torch.testing.assert_close(streamed, full, atol=1e-5, rtol=0)


def test_tdnn_stream_output_is_delayed_by_right_context():
    model = _tdnn(context=(4, 2))
    feats = torch.randn(1, 10, 6)
    out, state = model.forward_chunk(feats, None)
    assert out.shape[1] == 10 - 2
    out, _ = model.forward_chunk(feats[:, :0], state, is_final=True)
    assert out.shape[1] == 2


# ------------------------------------------------------------------ CTC


def _ctc(**kwargs) -> CtcModel:
    cfg = dict(input_dim=5, num_tokens=6, hidden=8, num_layers=2, bidirectional=False)
    cfg.update(kwargs)
    return CtcModel(CtcConfig(**cfg)).eval()


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"conv_channels": 7, "conv_strides": (1, 2)},
        {"conv_channels": 7, "conv_strides": (2, 2), "conv_kernel": 5},
        {"conv_channels": 4, "conv_strides": (3,), "conv_kernel": 4},
    ],
)
def test_unidirectional_ctc_chunked_equals_full_forward(kwargs):
    model = _ctc(**kwargs)
    rng = np.random.default_rng(3)
    for num_frames in (1, 2, 37):
        feats = torch.randn(2, num_frames, 5)
        full, out_lengths = model(feats, torch.tensor([num_frames, num_frames]))
        assert (
            full.shape[1]
            == int(out_lengths[0])
            == int(model.output_lengths(torch.tensor(num_frames)))
        )
        for max_chunk in (1, 4, 40):
            streamed = _stream(model, feats, _chunks(rng, num_frames, max_chunk))
            assert streamed.shape == full.shape
            torch.testing.assert_close(streamed, full, atol=1e-5, rtol=0)


def test_ctc_output_lengths_follow_subsampling():
    model = _ctc(conv_channels=4, conv_strides=(1, 2))
    lengths = torch.arange(1, 30)
    assert model.output_lengths(lengths).tolist() == [(n + 1) // 2 for n in range(1, 30)]
    assert model.config.subsampling == 2
    assert (model.left_context, model.right_context) == (2, 2)


def test_bilstm_has_unbounded_right_context_and_cannot_stream():
    model = _ctc(bidirectional=True)
    assert model.right_context is None
    with pytest.raises(ModelError, match="bidirectional"):
        model.forward_chunk(torch.zeros(1, 3, 5), None)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_ctc_batching_with_padding_equals_single_utterances(bidirectional):
    model = _ctc(bidirectional=bidirectional, conv_channels=4, conv_strides=(1, 2))
    a, b = torch.randn(1, 12, 5), torch.randn(1, 5, 5)
    batch = torch.full((2, 12, 5), 50.0)
    batch[0], batch[1, :5] = a[0], b[0]
    out, lengths = model(batch, torch.tensor([12, 5]))
    assert lengths.tolist() == [6, 3]
    out_a, _ = model(a, torch.tensor([12]))
    out_b, _ = model(b, torch.tensor([5]))
    torch.testing.assert_close(out[0], out_a[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1, :3], out_b[0], atol=1e-5, rtol=0)


def test_ctc_config_errors():
    with pytest.raises(ModelError, match="num_tokens"):
        CtcConfig(input_dim=3, num_tokens=1)
    with pytest.raises(ModelError, match="conv"):
        CtcConfig(input_dim=3, num_tokens=4, conv_channels=4, conv_strides=(0,))


def test_model_spec_roundtrip_rebuilds_same_architecture():
    for model in (_tdnn(layer_contexts=((1, 1), (2, 0), (1, 1))), _ctc(conv_channels=3)):
        rebuilt = build_model(model_spec(model))
        assert type(rebuilt) is type(model) and rebuilt.config == model.config
        rebuilt.load_state_dict(model.state_dict())
    with pytest.raises(ModelError, match="unknown model kind"):
        build_model({"kind": "gmm", "config": {}})


# ------------------------------------------------------------------ priors / DNN contract


def test_estimate_log_priors_against_direct_formula():
    counts = np.array([10, 0, 30, 60])
    log_priors = estimate_log_priors(counts, floor=1e-6)
    assert log_priors.dtype == np.float32
    np.testing.assert_allclose(log_priors, np.log([0.1, 1e-6, 0.3, 0.6]), rtol=1e-6)
    for bad in ([], [0, 0], [1, -1], [[1, 2]], [np.nan, 1]):
        with pytest.raises(ModelError):
            estimate_log_priors(np.array(bad, dtype=float))


def test_dnn_log_likelihoods_are_log_posteriors_minus_log_priors():
    model = _tdnn()
    feats = np.random.default_rng(0).normal(size=(9, 6)).astype(np.float32)
    log_priors = estimate_log_priors(np.arange(1, 8))
    log_likes = dnn_log_likelihoods(model, feats, log_priors=log_priors)
    assert log_likes.shape == (9, 7) and log_likes.dtype == np.float32
    # Bayes: adding the log prior back recovers a normalized posterior per frame.
    np.testing.assert_allclose(np.exp(log_likes + log_priors).sum(-1), 1.0, rtol=1e-5)
    log_post, _ = model(torch.from_numpy(feats)[None], torch.tensor([9]))
    np.testing.assert_allclose(log_likes, log_post[0].detach().numpy() - log_priors, atol=1e-6)
    with pytest.raises(ModelError, match="log_priors"):
        dnn_log_likelihoods(model, feats, log_priors=log_priors[:3])


def test_bilstm_equals_torch_bidirectional_lstm_with_the_same_weights():
    """Oracle: torch's own bidirectional multi-layer nn.LSTM on an unpadded utterance."""
    model = _ctc(bidirectional=True, num_layers=2)
    reference = torch.nn.LSTM(5, 8, num_layers=2, bidirectional=True, batch_first=True)
    with torch.no_grad():
        for i, (fw, bw) in enumerate(zip(model.forward_layers, model.backward_layers, strict=True)):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(reference, f"{name}_l{i}").copy_(getattr(fw, f"{name}_l0"))
                getattr(reference, f"{name}_l{i}_reverse").copy_(getattr(bw, f"{name}_l0"))
        feats = torch.randn(1, 17, 5)
        hidden, _ = reference(feats)
        expected = torch.log_softmax(model.output(hidden), dim=-1)
        got, _ = model(feats, torch.tensor([17]))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
