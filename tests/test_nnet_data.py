"""asr.nnet.data: dataset validation, bucketed batching, sharding, collation, SpecAugment."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asr.errors import TrainingError
from asr.features.io import write_matrices
from asr.nnet.data import (
    IGNORE_INDEX,
    NnetDataset,
    SpecAugmentConfig,
    collate,
    make_batches,
    shard_batches,
    spec_augment,
    time_stretch,
)


def _frames_data(lengths=(5, 9, 3)) -> NnetDataset:
    rng = np.random.default_rng(0)
    feats = {f"u{i}": rng.normal(size=(n, 4)).astype(np.float32) for i, n in enumerate(lengths)}
    targets = {u: rng.integers(0, 6, size=len(f)) for u, f in feats.items()}
    return NnetDataset.from_arrays(feats, targets, target_type="frames")


def test_dataset_validation_errors_name_the_utterance():
    feats = {"a": np.zeros((4, 2), np.float32)}
    with pytest.raises(TrainingError, match="a: 3 frame targets for 4"):
        NnetDataset.from_arrays(feats, {"a": np.zeros(3, int)}, target_type="frames")
    with pytest.raises(TrainingError, match="a: empty token"):
        NnetDataset.from_arrays(feats, {"a": np.zeros(0, int)}, target_type="tokens")
    with pytest.raises(TrainingError, match="non-negative ints"):
        NnetDataset.from_arrays(feats, {"a": np.array([1.5])}, target_type="tokens")
    with pytest.raises(TrainingError, match="no utterance"):
        NnetDataset.from_arrays(feats, {"b": np.ones(4, int)}, target_type="frames")
    with pytest.raises(TrainingError, match="dimensions differ"):
        NnetDataset.from_arrays(
            {"a": np.zeros((2, 2)), "b": np.zeros((2, 3))},
            {"a": np.ones(1, int), "b": np.ones(1, int)},
            target_type="tokens",
        )
    with pytest.raises(TrainingError, match="target_type"):
        NnetDataset.from_arrays(feats, {"a": np.ones(4, int)}, target_type="pdfs")


def test_from_scp_skips_utterances_without_targets(tmp_path):
    rng = np.random.default_rng(0)
    mats = [(f"u{i}", rng.normal(size=(3 + i, 2)).astype(np.float32)) for i in range(3)]
    write_matrices(mats, ark_path=tmp_path / "f.ark", scp_path=tmp_path / "f.scp")
    data = NnetDataset.from_scp(
        tmp_path / "f.scp", {"u0": np.array([1]), "u2": np.array([2, 3])}, target_type="tokens"
    )
    assert data.utt_ids == ["u0", "u2"]
    np.testing.assert_array_equal(data[1][1].numpy(), mats[2][1])
    assert data.lengths.tolist() == [3, 5] and data.num_frames == 8


def test_pdf_counts_match_bincount():
    data = _frames_data()
    expected = np.bincount(np.concatenate([data[i][2].numpy() for i in range(3)]), minlength=8)
    np.testing.assert_array_equal(data.pdf_counts(8), expected)
    with pytest.raises(TrainingError, match="num_pdfs"):
        data.pdf_counts(2)


def test_make_batches_partition_bounds_and_determinism():
    lengths = np.random.default_rng(0).integers(1, 200, size=300)
    batches = make_batches(
        lengths, batch_frames=1000, max_batch_size=16, shuffle=True, seed=3, epoch=1
    )
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(300))
    for batch in batches:
        assert len(batch) <= 16
        assert len(batch) == 1 or len(batch) * lengths[batch].max() <= 1000
    again = make_batches(
        lengths, batch_frames=1000, max_batch_size=16, shuffle=True, seed=3, epoch=1
    )
    other = make_batches(
        lengths, batch_frames=1000, max_batch_size=16, shuffle=True, seed=3, epoch=2
    )
    assert again == batches and other != batches
    # Without shuffling, batches are consecutive runs of the length-sorted order.
    plain = make_batches(lengths, batch_frames=1000, max_batch_size=16, shuffle=False)
    assert [i for b in plain for i in b] == np.argsort(lengths, kind="stable").tolist()
    # A single utterance longer than batch_frames gets a batch of its own.
    assert make_batches(np.array([5, 50]), batch_frames=10, max_batch_size=4, shuffle=False) == [
        [0],
        [1],
    ]


def test_shard_batches_equal_counts_and_exact_partition():
    batches = [[i] for i in range(7)]
    shards = [shard_batches(batches, rank=r, world_size=3) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    flat = sorted(b[0] for s in shards for b in s)
    assert set(flat) == set(range(7)) and flat == sorted([*range(7), 0, 1])  # 2 repeats
    exact = [shard_batches(batches, rank=r, world_size=3, pad=False) for r in range(3)]
    assert sorted(b[0] for s in exact for b in s) == list(range(7))
    with pytest.raises(TrainingError, match="rank"):
        shard_batches(batches, rank=3, world_size=3)


def test_collate_pads_features_and_targets():
    data = _frames_data()
    batch = collate(data, [2, 1])
    assert batch.utt_ids == ("u2", "u1")
    assert batch.feats.shape == (2, 9, 4) and batch.lengths.tolist() == [3, 9]
    assert (batch.targets[0, 3:] == IGNORE_INDEX).all()
    torch.testing.assert_close(batch.targets[1], data[1][2])
    assert float(batch.feats[0, 3:].abs().sum()) == 0.0


def test_spec_augment_masks_within_bounds():
    cfg = SpecAugmentConfig(
        num_freq_masks=1, max_freq_width=3, num_time_masks=1, max_time_width=5, fill_value=-7.0
    )
    feats = torch.randn(64, 30, 10)
    lengths = torch.randint(5, 31, (64,))
    out = spec_augment(feats, lengths, cfg, generator=torch.Generator().manual_seed(0))
    masked = out == -7.0
    freq = masked.all(dim=1)  # bins masked on every frame
    time = masked.all(dim=2)  # frames masked in every bin
    assert int(freq.sum(1).max()) <= 3 and int(freq.sum()) > 0
    for b in range(64):
        frames = time[b].nonzero().flatten()
        assert len(frames) <= min(5, int(0.2 * lengths[b]))
        if len(frames):  # one contiguous span inside the utterance
            assert int(frames[-1] - frames[0]) + 1 == len(frames) and int(frames[-1]) < int(
                lengths[b]
            )
    untouched = ~masked
    torch.testing.assert_close(out[untouched], feats[untouched])
    same = spec_augment(feats, lengths, cfg, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(same, out)
    none = spec_augment(feats, lengths, SpecAugmentConfig(0, 0, 0, 0), generator=torch.Generator())
    torch.testing.assert_close(none, feats)


def test_time_stretch_is_linear_interpolation_in_time():
    feats = torch.from_numpy(np.random.default_rng(0).normal(size=(11, 3)).astype(np.float32))
    for factor, expected_frames in ((2.0, 6), (0.9, 12), (1.0, 11)):
        out = time_stretch(feats, factor)
        assert out.shape == (expected_frames, 3)
        grid = np.linspace(0, 10, expected_frames)
        oracle = np.stack(
            [np.interp(grid, np.arange(11), feats[:, d].numpy()) for d in range(3)], 1
        )
        np.testing.assert_allclose(out.numpy(), oracle, atol=1e-5)
    with pytest.raises(TrainingError, match="> 0"):
        time_stretch(feats, 0.0)


def test_collate_speed_perturbation_only_for_token_targets():
    tokens = NnetDataset.from_arrays(
        {"a": np.zeros((10, 2), np.float32), "b": np.ones((4, 2), np.float32)},
        {"a": np.array([1]), "b": np.array([2])},
        target_type="tokens",
    )
    batch = collate(tokens, [0, 1], speed_factors=(2.0,), generator=torch.Generator())
    assert batch.lengths.tolist() == [5, 2] and batch.targets.tolist() == [[1], [2]]
    with pytest.raises(TrainingError, match="token targets"):
        collate(_frames_data(), [0], speed_factors=(1.1,), generator=torch.Generator())
