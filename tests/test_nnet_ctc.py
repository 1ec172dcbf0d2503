"""asr.nnet.ctc: greedy decoding vs a per-frame reference, CTC loss vs brute-force path enumeration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from asr.errors import ModelError
from asr.nnet.ctc import ctc_loss_sum, greedy_decode, greedy_decode_with_frames


def _reference_greedy(log_probs: np.ndarray, length: int, blank: int = 0) -> list[tuple[int, int]]:
    """Frame-by-frame reference: keep a token when it differs from the previous frame's and is not blank."""
    out, prev = [], None
    for t in range(length):
        best = int(np.argmax(log_probs[t]))
        if best != prev and best != blank:
            out.append((best, t))
        prev = best
    return out


def test_greedy_decode_matches_reference_on_random_batches():
    rng = np.random.default_rng(0)
    for _ in range(20):
        batch, num_frames, num_tokens = rng.integers(1, 6), rng.integers(1, 30), rng.integers(2, 6)
        # Few tokens and peaky scores so repeats and blanks are frequent.
        log_probs = torch.log_softmax(
            torch.from_numpy(rng.normal(size=(batch, num_frames, num_tokens)) * 3), -1
        )
        lengths = torch.from_numpy(rng.integers(0, num_frames + 1, size=batch))
        expected = [_reference_greedy(log_probs[b].numpy(), int(lengths[b])) for b in range(batch)]
        assert greedy_decode_with_frames(log_probs, lengths) == expected
        assert greedy_decode(log_probs, lengths) == [[tok for tok, _ in e] for e in expected]


def test_greedy_decode_other_blank_and_errors():
    ids = torch.tensor([[2, 2, 1, 2, 0, 0]])
    log_probs = torch.nn.functional.one_hot(ids, 3).float().log()
    assert greedy_decode(log_probs, torch.tensor([6]), blank=2) == [[1, 0]]
    with pytest.raises(ModelError, match="lengths"):
        greedy_decode(log_probs, torch.tensor([7]))
    with pytest.raises(ModelError, match="log_probs"):
        greedy_decode(log_probs[0], torch.tensor([6]))


def _collapse(path: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(tok for tok, _ in itertools.groupby(path) if tok != 0)


def test_ctc_loss_sum_equals_brute_force_path_sum():
    """Oracle: -log sum over all T^V frame paths whose collapse is the target."""
    rng = np.random.default_rng(1)
    num_frames, num_tokens = 5, 3
    log_probs = torch.log_softmax(
        torch.from_numpy(rng.normal(size=(2, num_frames, num_tokens))), -1
    )
    targets = torch.tensor([[1, 1], [2, 0]])
    target_lengths = torch.tensor([2, 1])
    out_lengths = torch.tensor([5, 4])
    expected = 0.0
    for b in range(2):
        target = tuple(targets[b, : target_lengths[b]].tolist())
        total = 0.0
        for path in itertools.product(range(num_tokens), repeat=int(out_lengths[b])):
            if _collapse(path) == target:
                total += math.exp(sum(float(log_probs[b, t, k]) for t, k in enumerate(path)))
        expected -= math.log(total)
    got = ctc_loss_sum(log_probs, out_lengths, targets, target_lengths)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_ctc_loss_sum_is_zero_for_impossible_targets():
    log_probs = torch.log_softmax(torch.zeros(1, 2, 4), -1)
    # Three tokens cannot fit in two frames: zero_infinity turns inf into 0.
    loss = ctc_loss_sum(log_probs, torch.tensor([2]), torch.tensor([[1, 2, 3]]), torch.tensor([3]))
    assert float(loss) == 0.0
