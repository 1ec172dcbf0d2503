"""EM letter/phone alignment (asr/lang/g2p_align.py) against brute-force enumeration of every
segmentation of small entries."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest

from asr.errors import LangError
from asr.lang.g2p_align import AlignConfig, align_entries, chunk_key, chunk_symbols

NUM_LETTERS, NUM_PHONES = 5, 4
# (letters, phones): "abc"~"A B C"-like entries with a silent letter, a 1:2 and a 2:1 chunk.
ENTRIES = [
    ([1, 2, 3], [1, 2, 3]),
    ([1, 2, 2], [1, 2]),
    ([4, 3], [4, 1, 3]),
    ([5, 1, 3], [2, 3]),
    ([1, 5], [1, 2, 4]),
]


def segmentations(letters, phones, shapes):
    """Every segmentation of the entry into allowed chunks, as lists of chunk keys."""
    if not letters:
        return [[]] if not phones else []
    result = []
    for nl, np_ in shapes:
        if nl <= len(letters) and np_ <= len(phones):
            key = chunk_key(letters[:nl], phones[:np_], NUM_LETTERS, NUM_PHONES)
            for rest in segmentations(letters[nl:], phones[np_:], shapes):
                result.append([key, *rest])
    return result


def brute_force_em(entries, shapes, iterations):
    """Joint-probability EM by enumeration: (chunk probabilities, log-likelihoods)."""
    prob = defaultdict(lambda: 1.0)
    history = []
    for _ in range(iterations):
        counts = defaultdict(float)
        log_lik = 0.0
        for letters, phones in entries:
            segs = segmentations(letters, phones, shapes)
            weights = [math.prod(prob[k] for k in seg) for seg in segs]
            total = sum(weights)
            if total == 0:
                continue
            log_lik += math.log(total)
            for seg, weight in zip(segs, weights, strict=True):
                for key in seg:
                    counts[key] += weight / total
        norm = sum(counts.values())
        prob = defaultdict(float, {k: c / norm for k, c in counts.items()})
        history.append(log_lik)
    return prob, history


def test_chunk_keys_round_trip_and_are_distinct():
    chunks = [((1,), ()), ((1,), (2,)), ((1,), (2, 3)), ((1, 5), (4,)), ((5, 5), (4, 4))]
    keys = [chunk_key(*c, NUM_LETTERS, NUM_PHONES) for c in chunks]
    assert len(set(keys)) == len(keys)
    assert [chunk_symbols(k, NUM_LETTERS, NUM_PHONES) for k in keys] == chunks
    assert max(keys) < (NUM_LETTERS + 1) ** 2 * (NUM_PHONES + 1) ** 2


def test_default_chunk_shapes_are_restricted():
    assert AlignConfig().chunk_shapes().tolist() == [[1, 0], [1, 1], [1, 2], [2, 1]]
    shapes = AlignConfig(many_to_many=True, letter_deletions=False).chunk_shapes().tolist()
    assert shapes == [[1, 1], [1, 2], [2, 1], [2, 2]]
    assert AlignConfig(max_letters=1, max_phones=1).chunk_shapes().tolist() == [[1, 0], [1, 1]]


@pytest.mark.parametrize("config", [AlignConfig(), AlignConfig(many_to_many=True)])
@pytest.mark.parametrize("iterations", [1, 3])
def test_em_equals_enumeration(config, iterations):
    config = AlignConfig(
        many_to_many=config.many_to_many, iterations=iterations, tolerance=0.0, penalize=False
    )
    result = align_entries(
        [np.array(e[0]) for e in ENTRIES],
        [np.array(e[1]) for e in ENTRIES],
        num_letters=NUM_LETTERS,
        num_phones=NUM_PHONES,
        config=config,
    )
    shapes = [tuple(s) for s in config.chunk_shapes().tolist()]
    prob, history = brute_force_em(ENTRIES, shapes, iterations)
    np.testing.assert_allclose(result.log_likelihood, history, rtol=1e-12)
    expected = np.zeros(len(result.chunk_logprob))
    for key, p in prob.items():
        expected[key] = p
    np.testing.assert_allclose(np.exp(result.chunk_logprob), expected, rtol=1e-12, atol=1e-15)

    # Viterbi: the most probable segmentation of each entry under the final probabilities.
    def cost(seg):
        return sum(math.log(prob[k]) if prob[k] else -math.inf for k in seg)

    for index, (letters, phones) in enumerate(ENTRIES):
        segs = segmentations(letters, phones, shapes)
        got = result.keys[result.offsets[index] : result.offsets[index + 1]].tolist()
        assert got in segs  # ties (a silent first or second "b") may go either way
        assert cost(got) == pytest.approx(max(map(cost, segs)), rel=1e-12)


def test_penalized_viterbi_weighs_long_chunks_by_their_length():
    config = AlignConfig(iterations=2, tolerance=0.0)
    result = align_entries(
        [np.array(e[0]) for e in ENTRIES],
        [np.array(e[1]) for e in ENTRIES],
        num_letters=NUM_LETTERS,
        num_phones=NUM_PHONES,
        config=config,
    )
    shapes = [tuple(s) for s in config.chunk_shapes().tolist()]
    logp = result.chunk_logprob

    def cost(seg):
        total = 0.0
        for key in seg:
            letters, phones = chunk_symbols(key, NUM_LETTERS, NUM_PHONES)
            total += max(len(letters), len(phones)) * logp[key]
        return total

    for index, (letters, phones) in enumerate(ENTRIES):
        segs = segmentations(letters, phones, shapes)
        got = result.keys[result.offsets[index] : result.offsets[index + 1]].tolist()
        assert got in segs
        assert cost(got) == pytest.approx(max(map(cost, segs)), rel=1e-12)


def test_entries_that_cannot_be_segmented_are_marked_not_dropped():
    letters = [np.array([1]), np.array([1, 2])]
    phones = [np.array([1, 2, 3]), np.array([1, 2])]  # 1 letter cannot carry 3 phones
    result = align_entries(letters, phones, num_letters=2, num_phones=3)
    assert result.aligned.tolist() == [False, True]
    assert result.offsets[1] == 0 and result.offsets[2] > 0


def test_errors():
    with pytest.raises(LangError, match="chunk sizes"):
        AlignConfig(max_letters=3)
    with pytest.raises(LangError, match="iterations"):
        AlignConfig(iterations=0)
    one = [np.array([1])]
    with pytest.raises(LangError, match="1 spellings for 2"):
        align_entries(one, one * 2, num_letters=1, num_phones=1)
    with pytest.raises(LangError, match="no entries"):
        align_entries([], [], num_letters=1, num_phones=1)
    with pytest.raises(LangError, match="phone codes"):
        align_entries(one, [np.array([2])], num_letters=1, num_phones=1)
    with pytest.raises(LangError, match="no letters"):
        align_entries([np.array([], dtype=np.int64)], one, num_letters=1, num_phones=1)
    with pytest.raises(LangError, match="no entry can be segmented"):
        align_entries(one, [np.array([1, 1, 1])], num_letters=1, num_phones=1)
