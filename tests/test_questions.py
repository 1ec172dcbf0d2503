"""Tests for asr.hmm.questions (automatic phone questions by clustering).

Oracles: phones drawn from two well-separated groups must split into exactly those groups at
the top of the clustering; the binary hierarchy's node sets (every phone covered, singletons
present, 2m-2 questions, nested or disjoint); each two-way split is a local optimum of the
Gaussian likelihood (no single move improves it) and, on clustered data, the brute-force best
of all two-way partitions; file parsing against hand-written files with line-numbered errors.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from asr.errors import EstimationError, LangError
from asr.hmm import PDF_CLASS_KEY
from asr.hmm.questions import (
    QuestionsConfig,
    cluster_phones,
    lang_questions,
    make_questions,
    pdf_class_questions,
    read_question_sets,
    two_way_split,
)
from asr.hmm.tree_stats import TreeStats, gaussian_log_likelihood
from asr.lang import Lexicon, prepare_lang


def phone_stats(centres_means, *, rng, pdf_class=1, frames=40, dim=3):
    """Tree stats with one event per (phone, left context) at ``pdf_class`` from random frames
    around the phone's mean."""
    events, counts, sums, sumsq = [], [], [], []
    for phone, mean in centres_means.items():
        for left in (0, 1, 2):
            x = rng.normal(loc=mean, size=(frames, dim))
            events.append([left, phone, 0, pdf_class])
            counts.append(float(frames))
            sums.append(x.sum(0))
            sumsq.append((x**2).sum(0))
    return TreeStats(3, 1, np.array(events), np.array(counts), np.array(sums), np.array(sumsq))


def check_hierarchy(questions, phone_sets):
    """The questions are the non-root nodes of a binary tree over the sets."""
    sets = [frozenset(s) for s in phone_sets]
    qs = [frozenset(q) for q in questions]
    assert len(qs) == len(set(qs)) == 2 * len(sets) - 2
    assert set(sets) <= set(qs)  # every leaf set is a question
    assert frozenset().union(*qs) == frozenset().union(*sets)  # every phone covered
    for q in qs:  # each question is a union of whole sets
        assert q == frozenset().union(*[s for s in sets if s & q])
    for a, b in itertools.combinations(qs, 2):  # nested or disjoint
        assert a <= b or b <= a or not a & b


def test_two_well_separated_groups():
    rng = np.random.default_rng(0)
    group_a, group_b = [3, 5, 7, 9, 11], [4, 6, 8, 10]
    means = {p: rng.normal(scale=0.3, size=3) for p in group_a}
    means.update({p: 20 + rng.normal(scale=0.3, size=3) for p in group_b})
    stats = phone_stats(means, rng=rng)
    sets = [[p] for p in sorted(means)]
    questions = cluster_phones(stats, phone_sets=sets)
    check_hierarchy(questions, sets)
    assert {frozenset(questions[0]), frozenset(questions[1])} == {
        frozenset(group_a),
        frozenset(group_b),
    }
    again = cluster_phones(stats, phone_sets=sets)  # deterministic for a fixed seed
    assert again == questions


def test_phone_sets_stay_together_and_unseen_sets_are_covered():
    rng = np.random.default_rng(1)
    means = {1: 0.0, 2: 0.1, 3: 10.0, 4: 10.2, 5: 0.2, 6: 9.9}
    stats = phone_stats(means, rng=rng)
    sets = [[1, 2], [3, 4], [5], [6], [20, 21]]  # phones 20, 21: no statistics
    questions = cluster_phones(stats, phone_sets=sets)
    seen = sets[:4]
    check_hierarchy(questions[:-1], seen)
    assert frozenset(questions[-1]) == frozenset({20, 21})
    tops = {frozenset(questions[0]), frozenset(questions[1])}
    assert tops == {frozenset({1, 2, 5}), frozenset({3, 4, 6})}
    with pytest.raises(EstimationError, match="more than one phone set"):
        cluster_phones(stats, phone_sets=[[1, 2], [2, 3]])


def test_fallback_to_all_pdf_classes():
    """A phone without data at the chosen pdf-class is clustered by its other classes."""
    rng = np.random.default_rng(2)
    low = phone_stats({1: 0.0, 2: 0.2}, rng=rng)
    high = phone_stats({3: 8.0}, rng=rng)
    only_class0 = phone_stats({4: 8.1, 5: 0.1}, rng=rng, pdf_class=0)
    stats = TreeStats.merge_all([low, high, only_class0])
    questions = cluster_phones(stats, phone_sets=[[p] for p in range(1, 6)])
    assert {frozenset(questions[0]), frozenset(questions[1])} == {
        frozenset({1, 2, 5}),
        frozenset({3, 4}),
    }


def objf(assign, counts, sums, sumsq):
    return sum(
        float(gaussian_log_likelihood(counts[m].sum(), sums[m].sum(0), sumsq[m].sum(0)))
        for m in (assign, ~assign)
    )


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def testtwo_way_split_is_a_local_optimum(seed):
    rng = np.random.default_rng(seed)
    num, dim = 9, 2
    counts = rng.integers(5, 50, size=num).astype(float)
    means = rng.normal(scale=2.0, size=(num, dim))
    var = rng.uniform(0.5, 2.0, size=(num, dim))
    sums, sumsq = counts[:, None] * means, counts[:, None] * (means**2 + var)
    assign = two_way_split(counts, sums, sumsq, config=QuestionsConfig(), rng=rng)
    assert 0 < assign.sum() < num
    value = objf(assign, counts, sums, sumsq)
    for i in range(num):  # no single move that keeps both sides non-empty improves
        moved = assign.copy()
        moved[i] = ~moved[i]
        if 0 < moved.sum() < num:
            assert objf(moved, counts, sums, sumsq) <= value + 1e-7


def testtwo_way_split_finds_brute_force_optimum_on_clustered_data():
    rng = np.random.default_rng(7)
    centres = np.array([[0.0, 0.0], [6.0, 1.0]])
    truth = np.array([0, 1, 0, 1, 1, 0, 0, 1])
    counts = rng.integers(10, 30, size=len(truth)).astype(float)
    means = centres[truth] + rng.normal(scale=0.5, size=(len(truth), 2))
    sums, sumsq = counts[:, None] * means, counts[:, None] * (means**2 + 1.0)
    best, best_assign = -np.inf, None
    for bits in itertools.product([False, True], repeat=len(truth) - 1):
        assign = np.array([True, *bits])
        if assign.all():
            continue
        value = objf(assign, counts, sums, sumsq)
        if value > best:
            best, best_assign = value, assign
    got = two_way_split(counts, sums, sumsq, config=QuestionsConfig(num_tries=0), rng=rng)
    assert objf(got, counts, sums, sumsq) == pytest.approx(best)
    assert set(map(tuple, [got, ~got])) == set(map(tuple, [best_assign, ~best_assign]))
    assert set(map(tuple, [got, ~got])) == {tuple(truth == 0), tuple(truth == 1)}


def test_pdf_class_questions_and_make_questions():
    assert set(pdf_class_questions(3)) == {frozenset(s) for s in ({0}, {0, 1}, {1}, {2})}
    rng = np.random.default_rng(3)
    stats = phone_stats({1: 0.0, 2: 5.0, 3: 5.1}, rng=rng)
    q = make_questions(stats, phone_sets=[[1], [2], [3]], max_pdf_classes=3,
                       extra_questions=[[1, 3], [2, 3], [1]])  # fmt: skip
    assert q.for_key(PDF_CLASS_KEY) == pdf_class_questions(3)
    assert q.for_key(0) == q.for_key(2) == q.phone_questions
    assert frozenset({1, 3}) in q.phone_questions
    assert len(q.phone_questions) == len(set(q.phone_questions)) == 5  # {1} deduplicated
    assert q.to_text().splitlines()[-1] == "1 3"


def test_read_question_sets(tmp_path):
    path = tmp_path / "extra_questions.int"
    path.write_text("1 2 3\n\n4 5\n")
    assert read_question_sets(path) == ((1, 2, 3), (4, 5))
    path.write_text("1 2\n3 x\n")
    with pytest.raises(LangError, match=r"extra_questions.int:2"):
        read_question_sets(path)
    path.write_text("1 0\n")
    with pytest.raises(LangError, match=r":1: phone ids must be >= 1"):
        read_question_sets(path)
    with pytest.raises(LangError, match="not found"):
        read_question_sets(tmp_path / "missing.int")


def test_lang_questions(tmp_path):
    lang = prepare_lang(
        Lexicon.from_pairs([("YES", "Y EH S"), ("NO", "N OW"), ("SEE", "S IY")]), tmp_path / "l"
    )
    rng = np.random.default_rng(4)
    phones = lang.topology.phones
    stats = phone_stats({p: rng.normal(scale=3, size=3) for p in phones}, rng=rng)
    extra = tmp_path / "my_questions.int"
    extra.write_text(" ".join(map(str, lang.phones.ids(["Y", "N"]))) + "\n")
    q = lang_questions(stats, lang.path, max_pdf_classes=5, question_file=extra)
    assert frozenset(lang.silence_phone_ids) in q.phone_questions  # from extra_questions.int
    assert frozenset(lang.nonsilence_phone_ids) in q.phone_questions
    assert frozenset(lang.phones.ids(["Y", "N"])) in q.phone_questions
    assert frozenset().union(*q.phone_questions) == frozenset(phones)
    assert all(frozenset({p}) in q.phone_questions for p in phones)
    assert len(q.pdf_class_questions) == 8
