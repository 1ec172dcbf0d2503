"""Phone questions for decision-tree building (Kaldi's ``cluster-phones`` + ``compile-questions``).

:func:`cluster_phones` pools the tree statistics of each phone set (``phones/sets.int``: one
line per base phone, e.g. its word-position variants) at the chosen pdf-classes (Kaldi's
``--pdf-class-list``, the central HMM state by default), and clusters the sets top-down into a
binary tree: every node is split by a two-way k-means whose objective is the likelihood of a
single diagonal Gaussian per cluster (restarts from a principal-direction split and random
splits, batch moves with a single-best-move fallback, so the objective never decreases). Every
node of the tree but the root is a question ("is the phone in this set?"), down to the single
sets, so every phone is covered. Sets with no statistics become questions of their own.

:class:`Questions` holds the phone questions (asked about every context position) and the
pdf-class questions (``{0}, {0,1}, ...`` and the singletons, asked about key -1 when a root is
shared by the HMM states). :func:`make_questions` adds extra questions (the lang's
``phones/extra_questions.int`` or any file of that form, read with :func:`read_question_sets`)
and removes duplicates; :func:`lang_questions` does it all for a lang directory.

>>> import numpy as np
>>> from asr.hmm.tree_stats import TreeStats
>>> events = np.array([[0, p, 0, 1] for p in (1, 2, 3, 4)])
>>> means = np.array([0.0, 0.1, 5.0, 5.1])[:, None]
>>> stats = TreeStats(3, 1, events, np.full(4, 10.0), 10 * means, 10 * (means**2 + 1))
>>> sorted(sorted(q) for q in cluster_phones(stats, phone_sets=[[1], [2], [3], [4]]))
[[1], [1, 2], [2], [3], [3, 4], [4]]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.errors import EstimationError, LangError
from asr.hmm.tree import PDF_CLASS_KEY
from asr.hmm.tree_stats import TreeStats, gaussian_log_likelihood

__all__ = [
    "Questions",
    "QuestionsConfig",
    "cluster_phones",
    "lang_questions",
    "make_questions",
    "pdf_class_questions",
    "read_question_sets",
    "two_way_split",
]


@dataclass(frozen=True)
class QuestionsConfig:
    """``pdf_classes``: the pdf-classes whose statistics describe a phone (a set without data
    there falls back to all of its pdf-classes); ``var_floor`` for the Gaussian objective;
    ``num_tries`` random restarts of each two-way k-means (plus one principal-direction
    start), at most ``max_iters`` iterations each, random generator seeded by ``seed``."""

    pdf_classes: tuple[int, ...] = (1,)
    var_floor: float = 0.01
    num_tries: int = 5
    max_iters: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.var_floor <= 0 or self.num_tries < 0 or self.max_iters < 1:
            raise EstimationError(
                "QuestionsConfig needs var_floor > 0, num_tries >= 0 and max_iters >= 1"
            )


@dataclass(frozen=True)
class Questions:
    """Yes/no questions per event key: ``phone_questions`` for the context positions and
    ``pdf_class_questions`` for :data:`~asr.hmm.tree.PDF_CLASS_KEY`."""

    phone_questions: tuple[frozenset[int], ...]
    pdf_class_questions: tuple[frozenset[int], ...]

    def for_key(self, key: int) -> tuple[frozenset[int], ...]:
        return self.pdf_class_questions if key == PDF_CLASS_KEY else self.phone_questions

    def to_text(self) -> str:
        """Phone questions one per line (the ``questions.int`` form)."""
        return "".join(" ".join(map(str, sorted(q))) + "\n" for q in self.phone_questions)


def _dedup(sets: Iterable[Iterable[int]]) -> tuple[frozenset[int], ...]:
    seen: dict[frozenset[int], None] = {}
    for values in sets:
        key = frozenset(int(v) for v in values)
        if key:
            seen.setdefault(key, None)
    return tuple(seen)


def pdf_class_questions(max_pdf_classes: int) -> tuple[frozenset[int], ...]:
    """Kaldi's pdf-class questions ``{0}, {0,1}, ..., {0..n-2}`` plus every singleton."""
    prefixes = [range(i + 1) for i in range(max_pdf_classes - 1)]
    singletons = [[c] for c in range(max_pdf_classes)] if max_pdf_classes > 1 else []
    return _dedup([*prefixes, *singletons])


def read_question_sets(path: str | os.PathLike) -> tuple[tuple[int, ...], ...]:
    """Integer sets, one per line (``phones/sets.int``, ``extra_questions.int``, a questions
    file); blank lines skipped. Raises :class:`LangError` naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LangError(f"{path}: not found") from None
    rows = []
    for line_no, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = tuple(int(f) for f in fields)
        except ValueError:
            raise LangError(f"{path}:{line_no}: expected phone ids, got {line.strip()!r}") from None
        if min(values) < 1:
            raise LangError(f"{path}:{line_no}: phone ids must be >= 1")
        rows.append(values)
    return tuple(rows)


def two_way_split(
    counts: np.ndarray,
    sums: np.ndarray,
    sumsq: np.ndarray,
    *,
    config: QuestionsConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """Two-way k-means of points given as Gaussian stats ``counts: (num_points,)``, ``sums,
    sumsq: (num_points, dim)``: the best of the restarts, each refined until no single point's
    move improves ``L(yes) + L(no)``. Returns ``(num_points,) bool`` (both sides non-empty;
    needs ``num_points >= 2``)."""
    num = len(counts)
    if num < 2:
        raise EstimationError(f"two_way_split needs at least 2 points, got {num}")
    if num == 2:
        return np.array([True, False])

    def objf(assign: np.ndarray) -> float:
        parts = [
            gaussian_log_likelihood(
                counts[m].sum(), sums[m].sum(0), sumsq[m].sum(0), var_floor=config.var_floor
            )
            for m in (assign, ~assign)
        ]
        return float(sum(parts))

    def refine(assign: np.ndarray) -> np.ndarray:
        for _ in range(config.max_iters):
            stats = []
            for m in (assign, ~assign):
                stats.append((counts[m].sum(), sums[m].sum(0), sumsq[m].sum(0)))
            (ca, sa, qa), (cb, sb, qb) = stats
            own_c = np.where(assign, ca, cb)
            own_s = np.where(assign[:, None], sa, sb)
            own_q = np.where(assign[:, None], qa, qb)
            oth_c = np.where(assign, cb, ca)
            oth_s = np.where(assign[:, None], sb, sa)
            oth_q = np.where(assign[:, None], qb, qa)

            def like(c, s, q):
                return gaussian_log_likelihood(c, s, q, var_floor=config.var_floor)

            delta = (
                like(own_c - counts, own_s - sums, own_q - sumsq)
                + like(oth_c + counts, oth_s + sums, oth_q + sumsq)
                - like(own_c, own_s, own_q)
                - like(oth_c, oth_s, oth_q)
            )
            sizes = np.where(assign, assign.sum(), num - assign.sum())
            delta[sizes <= 1] = -np.inf  # never empty a cluster
            movers = delta > 1e-9
            if not movers.any():
                return assign
            batch = assign ^ movers
            if 0 < batch.sum() < num and objf(batch) > objf(assign) + 1e-9:
                assign = batch
            else:
                single = assign.copy()
                best = int(np.argmax(delta))
                single[best] = ~single[best]
                assign = single
        return assign

    starts = []
    weights = np.maximum(counts, 1e-10)
    means = sums / weights[:, None]
    centred = (means - np.average(means, axis=0, weights=weights)) * np.sqrt(weights)[:, None]
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    projection = means @ vt[0]
    order = np.argsort(projection, kind="stable")
    cut = np.searchsorted(np.cumsum(weights[order]), 0.5 * weights.sum())
    cut = min(max(int(cut), 1), num - 1)
    first = np.zeros(num, dtype=bool)
    first[order[:cut]] = True
    starts.append(first)
    for _ in range(config.num_tries):
        assign = rng.random(num) < 0.5
        if 0 < assign.sum() < num:
            starts.append(assign)
    best_assign, best_objf = None, -np.inf
    for start in starts:
        assign = refine(start)
        value = objf(assign)
        if value > best_objf + 1e-9:
            best_assign, best_objf = assign, value
    return best_assign


def cluster_phones(
    stats: TreeStats,
    *,
    phone_sets: Sequence[Sequence[int]],
    config: QuestionsConfig | None = None,
) -> tuple[tuple[int, ...], ...]:
    """Automatic questions: the phone sets of every node (but the root) of a top-down binary
    clustering of ``phone_sets`` by their pooled Gaussian statistics (see module docstring)."""
    config = config or QuestionsConfig()
    sets = [tuple(sorted({int(p) for p in s})) for s in phone_sets if len(s)]
    if not sets:
        raise EstimationError("cluster_phones: no phone sets given")
    phone_to_set = {}
    for index, phone_set in enumerate(sets):
        for phone in phone_set:
            if phone in phone_to_set:
                raise EstimationError(f"phone {phone} is in more than one phone set")
            phone_to_set[phone] = index
    centre = stats.central_phones
    lookup = np.full(max(int(centre.max(initial=0)), max(phone_to_set)) + 1, -1, dtype=np.int64)
    lookup[list(phone_to_set)] = list(phone_to_set.values())
    set_of_event = lookup[centre]
    num_sets = len(sets)

    def pooled(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        index = np.where(mask & (set_of_event >= 0), set_of_event, num_sets)
        counts = np.bincount(index, stats.counts, minlength=num_sets + 1)[:num_sets]
        sums = np.zeros((num_sets + 1, stats.dim))
        sumsq = np.zeros((num_sets + 1, stats.dim))
        np.add.at(sums, index, stats.sums)
        np.add.at(sumsq, index, stats.sumsq)
        return counts, sums[:num_sets], sumsq[:num_sets]

    chosen = np.isin(stats.pdf_classes, np.asarray(config.pdf_classes, dtype=np.int64))
    counts, sums, sumsq = pooled(chosen)
    all_counts, all_sums, all_sumsq = pooled(np.ones(stats.num_events, dtype=bool))
    fallback = counts <= 0
    counts = np.where(fallback, all_counts, counts)
    sums = np.where(fallback[:, None], all_sums, sums)
    sumsq = np.where(fallback[:, None], all_sumsq, sumsq)

    seen = np.flatnonzero(counts > 0)
    questions: list[tuple[int, ...]] = []
    rng = np.random.default_rng(config.seed)
    stack = [seen] if len(seen) > 1 else []
    while stack:
        node = stack.pop()
        assign = two_way_split(counts[node], sums[node], sumsq[node], config=config, rng=rng)
        for child in (node[assign], node[~assign]):
            questions.append(tuple(sorted(p for i in child for p in sets[i])))
            if len(child) > 1:
                stack.append(child)
    if len(seen) == 1:
        questions.append(sets[int(seen[0])])
    questions.extend(sets[i] for i in np.flatnonzero(counts <= 0))
    return tuple(questions)


def make_questions(
    stats: TreeStats,
    *,
    phone_sets: Sequence[Sequence[int]],
    max_pdf_classes: int,
    extra_questions: Sequence[Sequence[int]] = (),
    config: QuestionsConfig | None = None,
) -> Questions:
    """:func:`cluster_phones` plus ``extra_questions``, and the pdf-class questions."""
    automatic = cluster_phones(stats, phone_sets=phone_sets, config=config)
    return Questions(
        phone_questions=_dedup([*automatic, *extra_questions]),
        pdf_class_questions=pdf_class_questions(max_pdf_classes),
    )


def lang_questions(
    stats: TreeStats,
    lang_dir: str | os.PathLike,
    *,
    max_pdf_classes: int,
    question_file: str | os.PathLike | None = None,
    config: QuestionsConfig | None = None,
) -> Questions:
    """Questions for a lang directory: ``phones/sets.int`` clustered, plus
    ``phones/extra_questions.int`` (if present) and ``question_file`` (if given)."""
    phones_dir = Path(lang_dir) / "phones"
    extra: list[tuple[int, ...]] = []
    if (phones_dir / "extra_questions.int").is_file():
        extra.extend(read_question_sets(phones_dir / "extra_questions.int"))
    if question_file is not None:
        extra.extend(read_question_sets(question_file))
    return make_questions(
        stats,
        phone_sets=read_question_sets(phones_dir / "sets.int"),
        max_pdf_classes=max_pdf_classes,
        extra_questions=extra,
        config=config,
    )
