"""asr.nnet.trainer: learning on synthetic tasks, exact resume (also after a mid-epoch kill), schedules."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from asr.errors import TrainingError
from asr.nnet.checkpoint import load_checkpoint, load_model
from asr.nnet.ctc import greedy_decode
from asr.nnet.data import NnetDataset, SpecAugmentConfig, collate
from asr.nnet.models import CtcConfig, CtcModel, TdnnConfig, TdnnModel
from asr.nnet.trainer import TrainConfig, train

NUM_PDFS, DIM = 6, 8


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def ce_data(num_utts: int, seed: int, *, random_labels: bool = False) -> NnetDataset:
    """Segments of pdf-ids, each frame a noisy class mean (the generating labels are the oracle)."""
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(123).normal(size=(NUM_PDFS, DIM)) * 1.5
    feats, targets = {}, {}
    for i in range(num_utts):
        segs = rng.integers(0, NUM_PDFS, size=rng.integers(2, 6))
        labels = np.concatenate([[s] * rng.integers(3, 8) for s in segs])
        feats[f"u{i}"] = (means[labels] + rng.normal(size=(len(labels), DIM))).astype(np.float32)
        targets[f"u{i}"] = rng.permutation(labels) if random_labels else labels
    return NnetDataset.from_arrays(feats, targets, target_type="frames")


def ctc_data(num_utts: int, seed: int, num_tokens: int = 5) -> NnetDataset:
    """Token sequences rendered as noisy one-hot segments (blank = silence between tokens)."""
    rng = np.random.default_rng(seed)
    feats, targets = {}, {}
    for i in range(num_utts):
        tokens = rng.integers(1, num_tokens, size=rng.integers(1, 5))
        frames: list[int] = []
        for k, tok in enumerate(tokens):
            if k == 0 or tokens[k - 1] == tok or rng.random() < 0.5:
                frames += [0] * int(rng.integers(1, 4))
            frames += [int(tok)] * int(rng.integers(2, 5))
        frames += [0] * int(rng.integers(1, 4))
        x = np.eye(DIM)[frames] * 2 + rng.normal(size=(len(frames), DIM)) * 0.5
        feats[f"u{i}"], targets[f"u{i}"] = x.astype(np.float32), tokens
    return NnetDataset.from_arrays(feats, targets, target_type="tokens")


def tdnn(dropout: float = 0.0, init_seed: int = 0) -> TdnnModel:
    torch.manual_seed(init_seed)
    cfg = TdnnConfig(
        input_dim=DIM,
        num_pdfs=NUM_PDFS,
        hidden_dim=32,
        num_layers=2,
        context=(2, 2),
        dropout=dropout,
    )
    return TdnnModel(cfg)


@pytest.fixture(scope="module")
def ce_sets() -> tuple[NnetDataset, NnetDataset]:
    return ce_data(60, 1), ce_data(20, 2)


def test_ce_training_learns_separable_task(ce_sets, tmp_path):
    train_set, dev_set = ce_sets
    model = tdnn()
    cfg = TrainConfig(lr=0.01, epochs=6, batch_frames=400, early_stopping_patience=0)
    result = train(
        model, train_set, dev_set, loss="ce", config=cfg, out_dir=tmp_path, progress=False
    )
    assert [h.epoch for h in result.history] == list(range(1, 7))
    assert result.best_dev_loss < 0.15 and result.history[0].dev_loss > 0.3
    assert result.best_dev_loss == min(h.dev_loss for h in result.history)
    # Frame accuracy against the generating labels.
    batch = collate(dev_set, list(range(len(dev_set))))
    log_probs, _ = model.eval()(batch.feats, batch.lengths)
    valid = batch.targets >= 0
    accuracy = float((log_probs.argmax(-1)[valid] == batch.targets[valid]).float().mean())
    assert accuracy > 0.95
    # The model ends with best.pt's weights; files are complete.
    best = load_model(tmp_path / "best.pt")
    for name, tensor in best.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name])
    assert json.loads((tmp_path / "history.json").read_text())[-1]["epoch"] == 6
    assert load_checkpoint(tmp_path / "checkpoint.pt")["trainer_state"]["epoch"] == 6


def test_ctc_training_learns_to_greedy_decode_exactly(tmp_path):
    train_set, dev_set = ctc_data(200, 1), ctc_data(30, 2)
    torch.manual_seed(0)
    model = CtcModel(CtcConfig(input_dim=DIM, num_tokens=5, hidden=24, num_layers=1))
    cfg = TrainConfig(lr=0.02, epochs=12, batch_frames=500, early_stopping_patience=0)
    result = train(
        model, train_set, dev_set, loss="ctc", config=cfg, out_dir=tmp_path, progress=False
    )
    assert result.best_dev_loss < 0.1
    batch = collate(dev_set, list(range(len(dev_set))))
    with torch.no_grad():
        log_probs, out_lengths = model.eval()(batch.feats, batch.lengths)
    hyps = greedy_decode(log_probs, out_lengths)
    assert hyps == [dev_set[i][2].tolist() for i in range(len(dev_set))]


def _final_state(out_dir) -> tuple[dict, list]:
    ckpt = load_checkpoint(out_dir / "checkpoint.pt")
    return ckpt["state_dict"], ckpt["trainer_state"]["history"]


def _assert_same_run(dir_a, dir_b) -> None:
    state_a, hist_a = _final_state(dir_a)
    state_b, hist_b = _final_state(dir_b)
    for name in state_a:
        assert torch.equal(state_a[name], state_b[name]), name
    strip = [{k: v for k, v in h.items() if k != "frames_per_second"} for h in hist_a]
    assert strip == [{k: v for k, v in h.items() if k != "frames_per_second"} for h in hist_b]


RESUME_CFG = dict(
    lr=0.01, batch_frames=300, early_stopping_patience=0,
    spec_augment=SpecAugmentConfig(num_freq_masks=1, max_freq_width=2, num_time_masks=1, max_time_width=3),
)  # fmt: skip


def test_resume_after_two_epochs_equals_uninterrupted_run(ce_sets, tmp_path):
    """Dropout and SpecAugment on, so RNG state and data order must be restored exactly."""
    train_set, dev_set = ce_sets
    full_dir, split_dir = tmp_path / "full", tmp_path / "split"
    train(tdnn(0.2), train_set, dev_set, loss="ce", config=TrainConfig(epochs=4, **RESUME_CFG),
          out_dir=full_dir, progress=False)  # fmt: skip
    first = train(tdnn(0.2), train_set, dev_set, loss="ce", config=TrainConfig(epochs=2, **RESUME_CFG),
                  out_dir=split_dir, progress=False)  # fmt: skip
    assert len(first.history) == 2
    # A fresh, differently initialized model: everything must come from the checkpoint.
    resumed = train(tdnn(0.2, init_seed=5), train_set, dev_set, loss="ce", config=TrainConfig(epochs=4, **RESUME_CFG),
                    out_dir=split_dir, progress=False)  # fmt: skip
    assert resumed.resumed_from_epoch == 2 and len(resumed.history) == 4
    _assert_same_run(full_dir, split_dir)


def test_run_killed_mid_epoch_resumes_from_last_epoch_checkpoint(ce_sets, tmp_path):
    train_set, dev_set = ce_sets
    cfg = TrainConfig(epochs=4, lr_schedule="cosine", **RESUME_CFG)
    full_dir, killed_dir = tmp_path / "full", tmp_path / "killed"
    train(tdnn(0.2), train_set, dev_set, loss="ce", config=cfg, out_dir=full_dir, progress=False)

    def kill(*, epoch, step, loss):
        if epoch == 3 and step == 2:
            raise KeyboardInterrupt("simulated kill")

    model = tdnn(0.2)
    with pytest.raises(KeyboardInterrupt):
        train(
            model,
            train_set,
            dev_set,
            loss="ce",
            config=cfg,
            out_dir=killed_dir,
            progress=False,
            on_step=kill,
        )
    assert load_checkpoint(killed_dir / "checkpoint.pt")["trainer_state"]["epoch"] == 2
    assert not list(killed_dir.glob(".*.tmp"))
    result = train(
        model, train_set, dev_set, loss="ce", config=cfg, out_dir=killed_dir, progress=False
    )
    assert result.resumed_from_epoch == 2
    _assert_same_run(full_dir, killed_dir)
    lrs = [h.lr for h in result.history]
    expected = [1e-6 + (0.01 - 1e-6) * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)
    # Rerunning a finished training trains nothing and changes nothing.
    before = (killed_dir / "checkpoint.pt").stat().st_mtime_ns
    again = train(
        model, train_set, dev_set, loss="ce", config=cfg, out_dir=killed_dir, progress=False
    )
    assert (
        again.history == result.history
        and (killed_dir / "checkpoint.pt").stat().st_mtime_ns == before
    )


def test_resume_refuses_a_different_config_or_model(ce_sets, tmp_path):
    train_set, dev_set = ce_sets
    train(
        tdnn(),
        train_set,
        dev_set,
        loss="ce",
        config=TrainConfig(epochs=1),
        out_dir=tmp_path,
        progress=False,
    )
    with pytest.raises(TrainingError, match="TrainConfig"):
        train(tdnn(), train_set, dev_set, loss="ce", config=TrainConfig(epochs=2, lr=0.5), out_dir=tmp_path,
              progress=False)  # fmt: skip
    other = TdnnModel(
        TdnnConfig(input_dim=DIM, num_pdfs=NUM_PDFS, hidden_dim=16, num_layers=1, context=(1, 1))
    )
    with pytest.raises(TrainingError, match="model"):
        train(
            other,
            train_set,
            dev_set,
            loss="ce",
            config=TrainConfig(epochs=2),
            out_dir=tmp_path,
            progress=False,
        )


def test_newbob_halving_and_early_stopping_follow_the_dev_losses(tmp_path):
    """Unlearnable (shuffled) labels: the dev loss plateaus, so the LR halves and training stops."""
    train_set, dev_set = ce_data(30, 3, random_labels=True), ce_data(10, 4, random_labels=True)
    cfg = TrainConfig(
        lr=0.05, epochs=30, batch_frames=300, early_stopping_patience=2, newbob_factor=0.5
    )
    result = train(
        tdnn(), train_set, dev_set, loss="ce", config=cfg, out_dir=tmp_path, progress=False
    )
    hist = result.history
    assert result.stopped_early and len(hist) < 30
    assert hist[-1].epoch - result.best_epoch == 2
    best_so_far = math.inf
    for prev, cur in zip(hist[:-1], hist[1:], strict=True):
        expected = prev.lr * 0.5 if prev.dev_loss >= best_so_far else prev.lr
        assert cur.lr == pytest.approx(expected, rel=1e-12)
        best_so_far = min(best_so_far, prev.dev_loss)
    assert any(h.lr < 0.05 for h in hist)


def test_train_rejects_mismatched_loss_and_targets(ce_sets, tmp_path):
    train_set, dev_set = ce_sets
    with pytest.raises(TrainingError, match="needs tokens"):
        train(
            tdnn(),
            train_set,
            dev_set,
            loss="ctc",
            config=TrainConfig(),
            out_dir=tmp_path,
            progress=False,
        )
    with pytest.raises(TrainingError, match="loss must be"):
        train(
            tdnn(),
            train_set,
            dev_set,
            loss="mse",
            config=TrainConfig(),
            out_dir=tmp_path,
            progress=False,
        )
    with pytest.raises(TrainingError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")
