r"""Linear interpolation of back-off n-gram models into one back-off (ARPA) model.

:func:`interpolate_models` does what SRILM's ``ngram -mix-lm B -lambda wA -write-lm`` does
(static interpolation): the mixed model lists the union of the components' n-grams over the
union of their vocabularies, each with the mixture probability

    P(w | h) = sum_i lambda_i P_i(w | h)            (P_i with its own back-off; 0 for a word
                                                    outside model i's vocabulary)

and every context gets the back-off weight that makes it normalise,
``bow(h) = (1 - sum_{w listed after h} P(w|h)) / (1 - sum_{same w} P(w|h'))``, where the
lower-order probabilities are the mixed model's own. Listed n-grams have exactly the mixture
probability; an n-gram no component lists gets ``bow(h) P(w|h')``, which normalises but is
not ``sum_i lambda_i bow_i(h) P_i(w|h')`` -- the one approximation of static interpolation
(SRILM's too). :func:`mixture_perplexity` scores the exact (dynamic) mixture for comparison.

:func:`tune_weights` chooses the lambdas that maximise the dev-set likelihood of the exact
mixture by EM over per-token component probabilities, as SRILM's ``compute-best-mix`` does:
``lambda_i <- mean_t lambda_i P_i(t) / sum_j lambda_j P_j(t)`` (the likelihood is concave in
the lambdas, so EM finds the optimum).

Words: the union vocabulary keeps every component's words; the mixed model's ``<unk>`` is the
first component's that has one. Dev words outside every vocabulary are scored as that
``<unk>`` (OOVs without one), as :func:`asr.lang.lm.perplexity` does.

>>> from asr.lang.lm import NgramConfig, train_ngram
>>> a = train_ngram([["A", "B"], ["A", "C"]], config=NgramConfig(order=2, unk=None))
>>> b = train_ngram([["B", "C"], ["C"]], config=NgramConfig(order=2, unk=None))
>>> mix = interpolate_models([a, b], [0.5, 0.5])
>>> mix.vocab, mix.num_ngrams
(('</s>', '<s>', 'A', 'B', 'C'), (5, 8))
>>> weights = tune_weights([a, b], [["A", "B"], ["A", "C"], ["C"]])
>>> [round(x, 3) for x in weights.lambdas]
[0.765, 0.235]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from asr.errors import LmError
from asr.lang.arpa import BOS, EOS, LOG10_ZERO, NgramModel, NgramTable
from asr.lang.lm import PerplexityResult

__all__ = [
    "MixtureWeights",
    "component_probabilities",
    "interpolate_models",
    "mixture_perplexity",
    "tune_weights",
]


@dataclass(frozen=True)
class MixtureWeights:
    """Tuned interpolation weights: ``lambdas`` (sum 1), EM ``iterations`` run, and the
    dev-set perplexity of the exact mixture at those weights."""

    lambdas: tuple[float, ...]
    iterations: int
    perplexity: PerplexityResult


@dataclass(frozen=True, eq=False)
class ComponentProbabilities:
    """Per-token probabilities of a text under each component (what the mixture needs).

    ``probs``: (num_models, num_tokens) float64 linear probabilities of every scored token
    (words and ``</s>``; OOVs of the union vocabulary are left out); the counts are those of
    :class:`asr.lang.lm.PerplexityResult`.
    """

    probs: np.ndarray
    num_words: int
    num_sentences: int
    num_oovs: int

    def perplexity(self, lambdas: Sequence[float]) -> PerplexityResult:
        """SRILM-style perplexity of the mixture ``sum_i lambdas[i] P_i``."""
        mixture = np.asarray(lambdas, dtype=np.float64) @ self.probs
        zero = mixture <= 10.0**LOG10_ZERO
        logprob = float(np.sum(np.log10(mixture[~zero])))
        denominator = self.num_words - self.num_oovs - int(zero.sum())
        return PerplexityResult(
            ppl=10.0 ** (-logprob / (denominator + self.num_sentences)),
            ppl1=10.0 ** (-logprob / denominator) if denominator > 0 else math.nan,
            logprob=logprob,
            num_words=self.num_words,
            num_sentences=self.num_sentences,
            num_oovs=self.num_oovs,
            num_zeroprobs=int(zero.sum()),
        )


def _check_lambdas(models: Sequence[NgramModel], lambdas: Sequence[float]) -> np.ndarray:
    if len(models) < 1:
        raise LmError("interpolation needs at least one model")
    weights = np.asarray(lambdas, dtype=np.float64)
    if weights.shape != (len(models),):
        raise LmError(f"{len(models)} models need {len(models)} weights, got {len(weights)}")
    if not np.all(np.isfinite(weights)) or (weights < 0).any():
        raise LmError(f"interpolation weights must be finite and >= 0, got {list(lambdas)}")
    if not math.isclose(float(weights.sum()), 1.0, rel_tol=0, abs_tol=1e-6):
        raise LmError(f"interpolation weights must sum to 1, got {float(weights.sum())}")
    return weights / weights.sum()


def _union_vocab(models: Sequence[NgramModel]) -> tuple[tuple[str, ...], str | None]:
    vocab = tuple(sorted({w for m in models for w in m.vocab} | {BOS, EOS}))
    unk = next((m.unk for m in models if m.unk is not None), None)
    return vocab, unk


def _id_maps(models: Sequence[NgramModel], vocab: tuple[str, ...]) -> list[np.ndarray]:
    """For each model, (union vocab size,) int64: the model's id of each union word, or -1."""
    return [np.array([m.word_to_id.get(w, -1) for w in vocab], dtype=np.int64) for m in models]


def _ngram_probs(model: NgramModel, ids: np.ndarray) -> np.ndarray:
    """Linear P(w | h) under ``model`` (back-off included) of n-grams ``ids`` (num, n) of the
    model's word ids (-1: a word it lacks: 0 as the predicted word, a history break inside h)."""
    num, n = ids.shape
    if n == 1:
        logprob = np.where(
            ids[:, 0] >= 0, model.tables[0].logprob[np.maximum(ids[:, 0], 0)], np.nan
        )
    else:
        positions = np.tile(np.arange(n), num)
        logprob = model.score_ids(ids.reshape(-1), positions).reshape(num, n)[:, -1]
    probs = np.where(
        np.isnan(logprob) | (logprob <= LOG10_ZERO), 0.0, 10.0 ** np.nan_to_num(logprob)
    )
    return probs


def interpolate_models(models: Sequence[NgramModel], lambdas: Sequence[float]) -> NgramModel:
    """One back-off model of the mixture ``sum_i lambdas[i] models[i]`` (see the module notes).

    The order is the highest component order; the result is normalised for every context
    (float64 rounding aside) and writes to ARPA with :func:`asr.lang.arpa.write_arpa`.
    """
    weights = _check_lambdas(models, lambdas)
    vocab, unk = _union_vocab(models)
    vocab_size = len(vocab)
    maps = _id_maps(models, vocab)
    word_to_id = {w: i for i, w in enumerate(vocab)}
    order = max(m.order for m in models)
    union_ids: list[np.ndarray] = []  # per order: (num_ngrams, n) union ids, in table order
    tables: list[NgramTable] = []
    for n in range(1, order + 1):
        if n == 1:
            ids = np.arange(vocab_size, dtype=np.int64)[:, None]
            keys = ids[:, 0].copy()
        else:
            parts = []
            for model in models:
                if n <= model.order and len(model.tables[n - 1]):
                    to_union = np.array([word_to_id[w] for w in model.vocab], dtype=np.int64)
                    parts.append(to_union[model.ngram_word_ids(n)])
            if not parts:
                break
            ids = np.unique(np.concatenate(parts), axis=0)
            history = ids[:, 0]
            for k in range(1, n - 1):
                history = tables[k].lookup(history, ids[:, k], vocab_size)
            if (history < 0).any():
                raise LmError(f"a component {n}-gram has no listed history (not an ARPA model)")
            keys = history * vocab_size + ids[:, -1]
            sort = np.argsort(keys, kind="stable")
            ids, keys = ids[sort], keys[sort]
        probs = np.zeros(len(ids))
        for weight, model, to_model in zip(weights, models, maps, strict=True):
            if weight > 0:
                probs += weight * _ngram_probs(model, to_model[ids])
        with np.errstate(divide="ignore"):
            logprob = np.maximum(np.log10(probs), LOG10_ZERO)
        union_ids.append(ids)
        tables.append(NgramTable(keys=keys, logprob=logprob, backoff=np.zeros(len(ids))))
    tables = _add_backoffs(tables, union_ids, vocab, unk)
    return NgramModel(vocab=vocab, tables=tuple(tables), unk=unk)


def _add_backoffs(tables, union_ids, vocab, unk) -> list[NgramTable]:
    """Back-off weights that normalise every context, from the lowest order up."""
    vocab_size = len(vocab)
    bos = vocab.index(BOS)
    for n in range(2, len(tables) + 1):
        upper, lower = tables[n - 1], tables[n - 2]
        history = upper.keys // vocab_size  # row of each n-gram's context in order n - 1
        prob = 10.0**upper.logprob
        prob[upper.logprob <= LOG10_ZERO] = 0.0
        partial = NgramModel(vocab=vocab, tables=tuple(tables[: n - 1]), unk=unk)
        ids = union_ids[n - 1]
        if n == 2:
            lower_log = partial.tables[0].logprob[ids[:, 1]]
        else:
            positions = np.tile(np.arange(n - 1), len(ids))
            lower_log = partial.score_ids(ids[:, 1:].reshape(-1), positions)
            lower_log = lower_log.reshape(-1, n - 1)[:, -1]
        lower_prob = np.where(lower_log <= LOG10_ZERO, 0.0, 10.0**lower_log)
        lower_prob[ids[:, -1] == bos] = 0.0
        listed = np.bincount(history, weights=prob, minlength=len(lower))
        listed_lower = np.bincount(history, weights=lower_prob, minlength=len(lower))
        numerator = np.maximum(1.0 - listed, 0.0)
        denominator = 1.0 - listed_lower
        with np.errstate(divide="ignore", invalid="ignore"):
            bow = np.where(
                denominator > 0, numerator / np.where(denominator > 0, denominator, 1), 1.0
            )
            log_bow = np.where(bow > 0, np.log10(np.where(bow > 0, bow, 1.0)), LOG10_ZERO)
        tables[n - 2] = NgramTable(keys=lower.keys, logprob=lower.logprob, backoff=log_bow)
    return tables


def component_probabilities(
    models: Sequence[NgramModel], sentences: Iterable[Sequence[str]]
) -> ComponentProbabilities:
    """Each component's probability of every token of ``sentences`` (words, then ``</s>``),
    in the union vocabulary (see the module notes)."""
    if not models:
        raise LmError("no models to score")
    vocab, unk = _union_vocab(models)
    word_to_id = {w: i for i, w in enumerate(vocab)}
    cleaned = [words for words in map(_strip_markers, sentences) if words]
    if not cleaned:
        raise LmError("no sentences to score")
    unk_id = word_to_id[unk] if unk is not None else -1
    tokens = [BOS] + [tok for words in cleaned for tok in (*words, EOS, BOS)][:-1]
    ids = np.fromiter((word_to_id.get(t, unk_id) for t in tokens), np.int64, len(tokens))
    lengths = np.array([len(words) + 2 for words in cleaned])
    starts = np.cumsum(lengths) - lengths
    positions = np.arange(len(tokens)) - np.repeat(starts, lengths)
    scored = (positions >= 1) & (ids >= 0)
    probs = []
    for model, to_model in zip(models, _id_maps(models, vocab), strict=True):
        model_ids = np.where(ids >= 0, to_model[np.maximum(ids, 0)], -1)
        logprob = model.score_ids(model_ids, positions)[scored]
        probs.append(np.where(np.isnan(logprob) | (logprob <= LOG10_ZERO), 0.0,
                              10.0 ** np.nan_to_num(logprob)))  # fmt: skip
    num_sentences = len(cleaned)
    return ComponentProbabilities(
        probs=np.stack(probs),
        num_words=int(lengths.sum()) - 2 * num_sentences,
        num_sentences=num_sentences,
        num_oovs=int(((positions >= 1) & (ids < 0)).sum()),
    )


def _strip_markers(sentence: Sequence[str]) -> list[str]:
    """The words of a sentence without a leading ``<s>`` / trailing ``</s>`` (refused
    elsewhere), as :func:`asr.lang.lm.perplexity` reads them."""
    words = list(sentence)
    if words and words[0] == BOS:
        words = words[1:]
    if words and words[-1] == EOS:
        words = words[:-1]
    if BOS in words or EOS in words:
        raise LmError(f"{BOS} or {EOS} inside a sentence: {' '.join(words)!r}")
    return words


def mixture_perplexity(
    models: Sequence[NgramModel], lambdas: Sequence[float], sentences: Iterable[Sequence[str]]
) -> PerplexityResult:
    """Perplexity of the exact (dynamic) mixture on ``sentences``, counted as SRILM does."""
    weights = _check_lambdas(models, lambdas)
    return component_probabilities(models, sentences).perplexity(weights)


def tune_weights(
    models: Sequence[NgramModel],
    dev_sentences: Iterable[Sequence[str]],
    *,
    max_iterations: int = 1000,
    tolerance: float = 1e-7,
) -> MixtureWeights:
    """The interpolation weights that minimise the dev perplexity of the mixture (EM from
    equal weights until no weight moves by more than ``tolerance``)."""
    stats = component_probabilities(models, dev_sentences)
    probs = stats.probs[:, (stats.probs > 0).any(axis=0)]
    if probs.shape[1] == 0:
        raise LmError("no dev token has a non-zero probability under any model")
    weights = np.full(len(models), 1.0 / len(models))
    iterations = 0
    while iterations < max_iterations:
        iterations += 1
        posterior = weights[:, None] * probs
        posterior /= posterior.sum(axis=0, keepdims=True)
        new = posterior.mean(axis=1)
        moved = float(np.max(np.abs(new - weights)))
        weights = new
        if moved < tolerance:
            break
    return MixtureWeights(
        lambdas=tuple(float(w) for w in weights),
        iterations=iterations,
        perplexity=stats.perplexity(weights),
    )
