"""N-gram language models: interpolated Kneser-Ney / Witten-Bell training, perplexity.

:func:`train_ngram` counts n-grams of sentences (each wrapped in ``<s> ... </s>``, as SRILM
does) and estimates an *interpolated* model, then stores it in back-off form (ARPA) so that
the two are the same distribution:

- ``method="kneser_ney"``: interpolated modified Kneser-Ney, as SRILM's
  ``ngram-count -kndiscount -interpolate``. Highest-order counts are raw counts; lower orders
  use continuation counts (number of distinct words seen to the left), except n-grams that
  start with ``<s>``, which cannot be extended to the left and keep raw counts. Discounts
  ``D1, D2, D3+`` per order come from the count-of-counts ``n1..n4`` of the counts used at that
  order (Chen & Goodman): ``Y = n1 / (n1 + 2 n2)``, ``Dk = k - (k + 1) Y n(k+1) / nk``. When
  they cannot be estimated (a zero count-of-count, or a discount outside ``(0, k]``) all
  three fall back to ``Y`` (or 0.5 if ``n1`` or ``n2`` is 0). ``discount=D`` instead uses one
  absolute discount at every order (plain interpolated Kneser-Ney).
- ``method="witten_bell"``: interpolated Witten-Bell (``-wbdiscount -interpolate``):
  ``P(w|h) = (c(h,w) + T(h) P(w|h')) / (c(h) + T(h))``, ``T(h)`` = number of word types after h.

At the unigram level both methods interpolate with the uniform distribution over the
vocabulary (all words that can be predicted: the vocabulary, ``</s>`` and ``<unk>``, not
``<s>``), with the weight left over by discounting. So vocabulary words never seen in
training get probability ``gamma / |V|`` instead of zero. ``<s>`` gets ``-99`` (log10 zero)
as a unigram and carries only a back-off weight.

Back-off weights are ``bow(h) = (1 - sum_{w listed after h} P(w|h)) / (1 - sum_{same w} P(w|h'))``,
which without pruning equals the interpolation weight ``gamma(h)`` exactly and is computed in
that closed form (no cancellation). With ``min_count > 1``, n-grams of order >= 2 seen fewer
times are dropped and their discounted mass joins the back-off weight, so the model stays
normalized.

:func:`perplexity` reports what SRILM's ``ngram -ppl`` does: ``ppl`` over words plus ``</s>``,
``ppl1`` over words only, OOVs (and zero-probability words) excluded and counted.

>>> model = train_ngram([["A", "B"], ["A", "C"], ["B"]], vocab=None,
...                     config=NgramConfig(order=2, method="witten_bell"))
>>> model.num_ngrams
(5, 6)
>>> result = perplexity(model, [["A", "B"], ["C", "D"]])
>>> result.num_sentences, result.num_words, result.num_oovs
(2, 4, 1)
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.errors import LangError, LmError
from asr.lang.arpa import (
    BOS,
    EOS,
    LOG10_ZERO,
    NgramModel,
    NgramTable,
    read_arpa,
    read_arpa_vocab,
    write_arpa,
)
from asr.lang.symbols import read_symbol_table

__all__ = [
    "NgramConfig",
    "NgramModel",
    "PerplexityResult",
    "train_ngram",
    "perplexity",
    "read_arpa",
    "read_arpa_vocab",
    "write_arpa",
    "read_text_sentences",
    "read_vocab",
]

METHODS = ("kneser_ney", "witten_bell")


@dataclass(frozen=True)
class NgramConfig:
    """How to estimate an n-gram model.

    ``order``: highest n-gram order (>= 1). ``method``: ``"kneser_ney"`` or ``"witten_bell"``.
    ``discount``: Kneser-Ney only; ``None`` estimates modified-KN discounts D1, D2, D3+ per order
    from count-of-counts, a number uses that one absolute discount everywhere.
    ``unk``: symbol that training words outside the vocabulary are mapped to; it is part of the
    model when it is in the vocabulary or when such words occur. ``None`` drops every n-gram
    containing an out-of-vocabulary word (SRILM without ``-unk``).
    ``min_count``: n-grams of order >= 2 seen fewer times are left to the back-off.
    """

    order: int = 3
    method: str = "kneser_ney"
    discount: float | None = None
    unk: str | None = "<UNK>"
    min_count: int = 1

    def __post_init__(self) -> None:
        if self.order < 1:
            raise LmError(f"n-gram order must be >= 1, got {self.order}")
        if self.method not in METHODS:
            raise LmError(f"unknown smoothing method {self.method!r}; choose one of {METHODS}")
        if self.discount is not None:
            if self.method != "kneser_ney":
                raise LmError("a fixed discount applies to method='kneser_ney' only")
            if not self.discount > 0:
                raise LmError(f"discount must be > 0, got {self.discount}")
        if self.min_count < 1:
            raise LmError(f"min_count must be >= 1, got {self.min_count}")
        if self.unk in (BOS, EOS):
            raise LmError(f"unk symbol cannot be {self.unk!r}")


@dataclass(frozen=True)
class PerplexityResult:
    """Perplexity as SRILM's ``ngram -ppl`` reports it.

    ``logprob``: total log10 probability of the scored tokens (words and ``</s>``).
    ``ppl = 10 ** (-logprob / (num_words - num_oovs - num_zeroprobs + num_sentences))``;
    ``ppl1`` is the same without ``num_sentences`` (i.e. without ``</s>``).
    """

    ppl: float
    ppl1: float
    logprob: float
    num_words: int
    num_sentences: int
    num_oovs: int
    num_zeroprobs: int = 0

    def __str__(self) -> str:
        return (
            f"{self.num_sentences} sentences, {self.num_words} words, {self.num_oovs} OOVs\n"
            f"{self.num_zeroprobs} zeroprobs, logprob= {self.logprob:.6g} "
            f"ppl= {self.ppl:.6g} ppl1= {self.ppl1:.6g}"
        )


# ---------------------------------------------------------------------------------------------
# Input helpers


def _clean_sentence(words: Sequence[str], where: str) -> list[str]:
    """Drop a leading ``<s>`` and a trailing ``</s>``; refuse them anywhere else."""
    words = list(words)
    if words and words[0] == BOS:
        words = words[1:]
    if words and words[-1] == EOS:
        words = words[:-1]
    if BOS in words or EOS in words:
        raise LmError(f"{where}: {BOS} or {EOS} inside a sentence: {' '.join(words)!r}")
    return words


def read_text_sentences(path: str | os.PathLike, *, utt_ids: bool = True) -> list[list[str]]:
    """Sentences of a Kaldi ``text`` file (``utt_id w1 w2 ...``) or, with ``utt_ids=False``,
    of a plain one-sentence-per-line file. A leading ``<s>`` / trailing ``</s>`` is dropped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise LmError(f"{path}: text file not found") from None
    except UnicodeDecodeError as err:
        raise LmError(f"{path}: not UTF-8 text ({err})") from None
    sentences = []
    for line_no, line in enumerate(lines, start=1):
        fields = line.split()
        if utt_ids:
            if not fields:
                continue
            fields = fields[1:]
        sentences.append(_clean_sentence(fields, f"{path}:{line_no}"))
    return sentences


def read_vocab(words_txt: str | os.PathLike) -> list[str]:
    """Words of a Kaldi ``words.txt`` (``word id`` per line), without ``<eps>``, ``<s>``,
    ``</s>`` and disambiguation symbols (``#0``, ``#1``, ...)."""
    try:
        table = read_symbol_table(words_txt)
    except LangError as err:
        raise LmError(str(err)) from None
    return [
        word
        for word in table
        if word not in ("<eps>", BOS, EOS) and not (word.startswith("#") and word[1:].isdigit())
    ]


# ---------------------------------------------------------------------------------------------
# Training


def _kn_discounts(counts: np.ndarray) -> tuple[float, float, float]:
    """Modified Kneser-Ney discounts (D1, D2, D3+) from the counts (>0) of one order."""
    n1, n2, n3, n4 = (int(np.count_nonzero(counts == k)) for k in (1, 2, 3, 4))
    if n1 == 0 or n2 == 0:
        return 0.5, 0.5, 0.5
    y = n1 / (n1 + 2 * n2)
    if n3 == 0 or n4 == 0:
        return y, y, y
    d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    if all(0 < dk <= k for k, dk in enumerate(d, start=1)):
        return d
    return y, y, y


def _discount_mass(counts: np.ndarray, config: NgramConfig) -> np.ndarray:
    """Per n-gram amount ``min(c, D(c))`` that Kneser-Ney takes away from its count ``c``."""
    if config.discount is not None:
        discount = np.full(counts.shape, config.discount)
    else:
        d1, d2, d3 = _kn_discounts(counts[counts > 0])
        discount = np.where(counts == 1, d1, np.where(counts == 2, d2, d3))
    return np.where(counts > 0, np.minimum(counts, discount), 0.0)


def _smooth(counts, groups, num_groups, config):
    """Discounted relative frequencies ``alpha`` (per n-gram) and interpolation weights
    ``gamma`` (per history group), with ``sum(alpha over a group) + gamma = 1``."""
    total = np.bincount(groups, weights=counts, minlength=num_groups)
    if config.method == "kneser_ney":
        mass = _discount_mass(counts, config)
        denominator = total
        left_over = np.bincount(groups, weights=mass, minlength=num_groups)
        numerator = counts - mass
    else:
        types = np.bincount(groups, weights=counts > 0, minlength=num_groups)
        denominator = total + types
        left_over = types
        numerator = counts
    safe = np.where(denominator > 0, denominator, 1.0)
    alpha = numerator / safe[groups]
    gamma = np.where(denominator > 0, left_over / safe, 1.0)
    return alpha, gamma


def _prepare_sentences(sentences, vocab, config):
    """Vocabulary tuple, flat token ids (OOV -> -1 unless unk) and positions in sentence."""
    cleaned = []
    for index, words in enumerate(sentences):
        words = _clean_sentence(words, f"sentence {index + 1}")
        if words:
            cleaned.append(words)
    if not cleaned:
        raise LmError("no training sentences (all empty)")
    train_words = {w for words in cleaned for w in words}
    if vocab is None:
        words = train_words
    else:
        words = {w for w in vocab if w not in (BOS, EOS)}
        if not words:
            raise LmError("the vocabulary is empty")
    has_oov = not train_words <= words
    if config.unk is not None and (config.unk in words or has_oov):
        words = words | {config.unk}
    vocab_tuple = tuple(sorted(words | {BOS, EOS}))
    word_to_id = {w: i for i, w in enumerate(vocab_tuple)}
    oov_id = word_to_id.get(config.unk, -1) if config.unk is not None else -1
    tokens = [BOS] + [tok for words in cleaned for tok in (*words, EOS, BOS)][:-1]
    token_ids = np.fromiter(
        (word_to_id.get(tok, oov_id) for tok in tokens), dtype=np.int64, count=len(tokens)
    )
    lengths = np.array([len(words) + 2 for words in cleaned])
    starts = np.cumsum(lengths) - lengths
    positions = np.arange(len(tokens)) - np.repeat(starts, lengths)
    return vocab_tuple, token_ids, positions


def _count(token_ids, positions, order, vocab_size):
    """Raw n-gram counts per order, as sorted tables.

    Returns per order n: ``keys`` (sorted int64, ``history_row * vocab_size + word``),
    ``raw`` counts and ``rows`` (row of the n-gram ending at each token, -1 where none); for
    n >= 2 also ``suffix`` (row of the n-gram minus its first word in order n - 1) and
    ``first_token`` (id of its first word).
    """
    rows = np.where(token_ids >= 0, token_ids, -1)
    predicted = (positions >= 1) & (token_ids >= 0)
    levels = [
        {
            "keys": np.arange(vocab_size, dtype=np.int64),
            "raw": np.bincount(token_ids[predicted], minlength=vocab_size).astype(np.float64),
            "first_token": None,
            "rows": rows,
        }
    ]
    for n in range(2, order + 1):
        prev = np.full_like(rows, -1)
        prev[1:] = levels[-1]["rows"][:-1]
        valid = (positions >= n - 1) & (prev >= 0) & (token_ids >= 0)
        where = np.flatnonzero(valid)
        keys = prev[where] * vocab_size + token_ids[where]
        uniq, first, inverse, raw = np.unique(
            keys, return_index=True, return_inverse=True, return_counts=True
        )
        n_rows = np.full_like(rows, -1)
        n_rows[where] = inverse
        first_pos = where[first]
        levels.append(
            {
                "keys": uniq,
                "raw": raw.astype(np.float64),
                "first_token": token_ids[first_pos - (n - 1)],
                "suffix": levels[-1]["rows"][first_pos],
                "rows": n_rows,
            }
        )
    return levels


def train_ngram(
    sentences: Iterable[Sequence[str]],
    *,
    vocab: Iterable[str] | None = None,
    config: NgramConfig | None = None,
) -> NgramModel:
    """Estimate a back-off n-gram model from ``sentences`` (lists of words, no ``<s>``/``</s>``
    needed; a leading ``<s>`` and trailing ``</s>`` are tolerated, empty sentences skipped).

    ``vocab``: the words the model predicts (e.g. from ``words.txt``); other training words map
    to ``config.unk``. ``None`` uses the training words.
    """
    config = config if config is not None else NgramConfig()
    vocab_tuple, token_ids, positions = _prepare_sentences(
        sentences, None if vocab is None else list(vocab), config
    )
    vocab_size = len(vocab_tuple)
    bos_id = vocab_tuple.index(BOS)
    levels = _count(token_ids, positions, config.order, vocab_size)
    # Counts used at each order: raw at the top, continuation counts below (Kneser-Ney).
    for n, level in enumerate(levels, start=1):
        level["counts"] = level["raw"]
        if config.method == "kneser_ney" and n < config.order:
            upper = levels[n]
            continuation = np.bincount(upper["suffix"], minlength=len(level["keys"]))
            starts_bos = level["keys"] == bos_id if n == 1 else level["first_token"] == bos_id
            level["counts"] = np.where(starts_bos, level["raw"], continuation).astype(np.float64)
    # Unigrams: interpolate with the uniform distribution over predictable words.
    unigram_counts = levels[0]["counts"].copy()
    unigram_counts[bos_id] = 0.0
    alpha, gamma = _smooth(unigram_counts, np.zeros(vocab_size, np.int64), 1, config)
    probs = alpha + gamma[0] / (vocab_size - 1)
    probs[bos_id] = 0.0
    levels[0]["prob"] = probs
    levels[0]["keep"] = np.ones(vocab_size, dtype=bool)
    for n in range(2, config.order + 1):
        level, lower = levels[n - 1], levels[n - 2]
        groups = level["keys"] // vocab_size
        alpha, gamma = _smooth(level["counts"], groups, len(lower["keys"]), config)
        lower_prob = lower["prob"][level["suffix"]]
        level["prob"] = alpha + gamma[groups] * lower_prob
        level["keep"] = keep = level["raw"] >= config.min_count
        # bow(h) = gamma(h) + sum_{dropped} alpha / (1 - sum_{kept} P(w|h'))
        dropped_alpha = np.bincount(groups[~keep], weights=alpha[~keep], minlength=len(gamma))
        kept_lower = np.bincount(groups[keep], weights=lower_prob[keep], minlength=len(gamma))
        dropped_lower = np.bincount(groups[~keep], weights=lower_prob[~keep], minlength=len(gamma))
        denominator = np.maximum(1.0 - kept_lower, dropped_lower)
        safe = np.where(denominator > 0, denominator, 1.0)
        lower["bow"] = gamma + np.where(dropped_alpha > 0, dropped_alpha / safe, 0.0)
    return _to_model(levels, vocab_tuple, bos_id, config)


def _to_model(levels, vocab_tuple, bos_id, config) -> NgramModel:
    """Drop pruned n-grams, renumber history rows, convert to log10 tables."""
    vocab_size = len(vocab_tuple)
    tables = []
    new_row = np.arange(vocab_size)
    for n, level in enumerate(levels, start=1):
        keep = level["keep"]
        keys = level["keys"][keep]
        if n > 1:
            keys = new_row[keys // vocab_size] * vocab_size + keys % vocab_size
        with np.errstate(divide="ignore"):
            logprob = np.log10(level["prob"][keep])
            backoff = np.log10(level["bow"][keep]) if "bow" in level else np.zeros(keys.shape)
        if n == 1:
            logprob[bos_id] = LOG10_ZERO
        logprob = np.maximum(logprob, LOG10_ZERO)
        backoff = np.maximum(backoff, LOG10_ZERO)
        tables.append(NgramTable(keys=keys, logprob=logprob, backoff=backoff))
        new_row = np.cumsum(keep) - 1
    unk = config.unk if config.unk in vocab_tuple else None
    return NgramModel(vocab=vocab_tuple, tables=tuple(tables), unk=unk)


# ---------------------------------------------------------------------------------------------
# Perplexity


def perplexity(
    model: NgramModel, sentences: Iterable[Sequence[str]], *, map_oovs_to_unk: bool = True
) -> PerplexityResult:
    """Perplexity of ``model`` on ``sentences`` as SRILM's ``ngram -ppl`` computes it.

    Out-of-vocabulary words are scored as the model's ``<unk>`` when it has one and
    ``map_oovs_to_unk`` (SRILM's ``-unk``); otherwise they are OOVs: excluded from the sums and
    counted, and the words after them are scored with the history restarting after the OOV.
    Words with probability zero (log10 <= -99) are excluded and counted as zeroprobs.
    Empty sentences are skipped.
    """
    cleaned = []
    for index, words in enumerate(sentences):
        words = _clean_sentence(words, f"sentence {index + 1}")
        if words:
            cleaned.append(words)
    if not cleaned:
        raise LmError("no sentences to compute perplexity on")
    tokens = [BOS] + [tok for words in cleaned for tok in (*words, EOS, BOS)][:-1]
    if map_oovs_to_unk:
        token_ids = model.map_words(tokens)
    else:
        get = model.word_to_id.get
        token_ids = np.fromiter((get(t, -1) for t in tokens), dtype=np.int64, count=len(tokens))
    lengths = np.array([len(words) + 2 for words in cleaned])
    starts = np.cumsum(lengths) - lengths
    positions = np.arange(len(tokens)) - np.repeat(starts, lengths)
    logprobs = model.score_ids(token_ids, positions)
    scored = positions >= 1
    oov = scored & (token_ids < 0)
    zeroprob = scored & ~oov & (logprobs <= LOG10_ZERO)
    counted = scored & ~oov & ~zeroprob
    total = float(np.sum(logprobs[counted]))
    num_sentences = len(cleaned)
    num_words = int(lengths.sum()) - 2 * num_sentences
    num_oovs = int(oov.sum())
    num_zeroprobs = int(zeroprob.sum())
    denominator = num_words - num_oovs - num_zeroprobs
    ppl = 10.0 ** (-total / (denominator + num_sentences))
    ppl1 = 10.0 ** (-total / denominator) if denominator > 0 else math.nan
    return PerplexityResult(
        ppl=ppl,
        ppl1=ppl1,
        logprob=total,
        num_words=num_words,
        num_sentences=num_sentences,
        num_oovs=num_oovs,
        num_zeroprobs=num_zeroprobs,
    )
