"""Word and character error rates with Levenshtein alignment, Kaldi/sclite style.

:func:`align` aligns two token sequences (unit costs for substitution,
deletion and insertion); :func:`score` scores a set of utterances and returns
a :class:`ScoreResult` whose summary lines match Kaldi's ``compute-wer`` and
whose per-utterance report matches ``align-text | wer_per_utt_details.pl``
with ``***`` marking gaps.

>>> result = score({"u1": "A B C D", "u2": "E F"}, {"u1": "A X C", "u2": "E F G"})
>>> print(result.summary())
%WER 50.00 [ 3 / 6, 1 ins, 1 del, 1 sub ]
%SER 100.00 [ 2 / 2 ]
Scored 2 sentences, 0 not present in hyp.
>>> print(result.per_utt_report().splitlines()[1])
u1 hyp  A  X  C  ***
>>> align("A B C".split(), "A C C D".split()).pairs
(('A', 'A'), ('B', 'C'), ('C', 'C'), (None, 'D'))

Conventions (chosen so that counts equal ``jiwer``'s exactly):

- Among alignments of equal cost, the one ``rapidfuzz``'s ``Levenshtein.editops``
  (which ``jiwer`` uses) returns is taken: common prefix and suffix are matched
  first; the backtrace prefers a deletion, then an insertion, then the
  diagonal.
- ``unit="char"`` scores the characters of each transcript with its words
  joined by single spaces; the spaces count as characters (``jiwer.cer``).
- A missing hypothesis scores as an empty one (all deletions) and is listed
  in :attr:`ScoreResult.missing_hyps`; the summary then ends in ``[PARTIAL]``
  as Kaldi's does. A hypothesis without a reference raises
  :class:`~asr.errors.ScoringError`.
- Empty references are allowed. When the references hold no tokens at all,
  the error rate is ``100 * errors`` (as if there were one reference token:
  0 for an empty hypothesis), which is ``jiwer``'s convention, instead of a
  division by zero.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from asr.data.datadir import read_kaldi_map
from asr.errors import DataDirError, ScoringError
from asr.fileio import atomic_write_text

__all__ = [
    "GAP",
    "Alignment",
    "ScoreResult",
    "UttScore",
    "align",
    "read_text_file",
    "score",
    "tokenize",
]

Unit = Literal["word", "char"]
GAP = "***"
"""How a gap (deletion or insertion) is printed in reports."""


@dataclass(frozen=True)
class Alignment:
    """A minimum-edit alignment of a reference and a hypothesis token sequence.

    ``pairs`` lists ``(ref_token, hyp_token)`` in order; ``None`` on one side
    is a gap: ``(tok, None)`` a deletion, ``(None, tok)`` an insertion.
    """

    pairs: tuple[tuple[str | None, str | None], ...]
    correct: int
    substitutions: int
    deletions: int
    insertions: int

    @property
    def errors(self) -> int:
        """Levenshtein distance: substitutions + deletions + insertions."""
        return self.substitutions + self.deletions + self.insertions

    @property
    def num_ref_tokens(self) -> int:
        return self.correct + self.substitutions + self.deletions

    @property
    def num_hyp_tokens(self) -> int:
        return self.correct + self.substitutions + self.insertions

    def ops(self) -> tuple[str, ...]:
        """One Kaldi op letter per pair: ``C`` correct, ``S``, ``D``, ``I``."""
        return tuple(_op(ref, hyp) for ref, hyp in self.pairs)


@dataclass(frozen=True)
class UttScore:
    """One utterance's tokens and alignment; ``missing`` when it had no hypothesis."""

    utt_id: str
    ref: tuple[str, ...]
    hyp: tuple[str, ...]
    alignment: Alignment
    missing: bool = False

    @property
    def is_error(self) -> bool:
        """Sentence error: the hypothesis differs from the reference."""
        return self.ref != self.hyp


@dataclass(frozen=True)
class ScoreResult:
    """Utterance-level scores (in reference order) and their totals."""

    unit: Unit
    utterances: tuple[UttScore, ...]
    missing_hyps: tuple[str, ...]

    @property
    def num_ref_tokens(self) -> int:
        return sum(u.alignment.num_ref_tokens for u in self.utterances)

    @property
    def correct(self) -> int:
        return sum(u.alignment.correct for u in self.utterances)

    @property
    def substitutions(self) -> int:
        return sum(u.alignment.substitutions for u in self.utterances)

    @property
    def deletions(self) -> int:
        return sum(u.alignment.deletions for u in self.utterances)

    @property
    def insertions(self) -> int:
        return sum(u.alignment.insertions for u in self.utterances)

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def error_rate(self) -> float:
        """Errors per reference token, in percent (see the module notes for 0 tokens)."""
        return 100.0 * self.errors / max(self.num_ref_tokens, 1)

    @property
    def wer(self) -> float:
        """The error rate in percent: WER for ``unit="word"``, CER for ``"char"``."""
        return self.error_rate

    @property
    def num_sentences(self) -> int:
        return len(self.utterances)

    @property
    def sentence_errors(self) -> int:
        return sum(u.is_error for u in self.utterances)

    @property
    def ser(self) -> float:
        """Sentence error rate in percent."""
        return 100.0 * self.sentence_errors / self.num_sentences

    def summary_line(self) -> str:
        """``%WER 10.61 [ 82 / 773, 4 ins, 10 del, 68 sub ]`` (``%CER`` for characters)."""
        label = "%WER" if self.unit == "word" else "%CER"
        partial = " [PARTIAL]" if self.missing_hyps else ""
        return (
            f"{label} {self.error_rate:.2f} [ {self.errors} / {self.num_ref_tokens}, "
            f"{self.insertions} ins, {self.deletions} del, {self.substitutions} sub ]{partial}"
        )

    def ser_line(self) -> str:
        """``%SER 50.00 [ 10 / 20 ]``."""
        return f"%SER {self.ser:.2f} [ {self.sentence_errors} / {self.num_sentences} ]"

    def summary(self) -> str:
        """The three lines Kaldi's ``compute-wer`` prints (no trailing newline)."""
        return "\n".join(
            [
                self.summary_line(),
                self.ser_line(),
                f"Scored {self.num_sentences} sentences, "
                f"{len(self.missing_hyps)} not present in hyp.",
            ]
        )

    def per_utt_report(self) -> str:
        """Kaldi's ``per_utt`` report: ``ref``/``hyp``/``op``/``#csid`` lines per utterance.

        Columns are centred to a common width; ``***`` marks gaps. For
        ``unit="char"`` a space token is shown as ``<space>``.
        """
        lines: list[str] = []
        for utt in self.utterances:
            lines.extend(_utt_report_lines(utt, unit=self.unit))
        return "".join(line + "\n" for line in lines)

    def write_per_utt(self, path: str | os.PathLike) -> None:
        """Write :meth:`per_utt_report` to ``path`` atomically."""
        atomic_write_text(path, self.per_utt_report())


def tokenize(text: str, *, unit: Unit = "word") -> tuple[str, ...]:
    """Split a transcript into scoring tokens.

    ``"word"``: whitespace-separated words. ``"char"``: the characters of
    the words joined by single spaces (spaces included).
    """
    words = text.split()
    if unit == "word":
        return tuple(words)
    if unit == "char":
        return tuple(" ".join(words))
    raise ScoringError(f"unknown scoring unit {unit!r} (expected 'word' or 'char')")


def align(ref: Sequence[str], hyp: Sequence[str]) -> Alignment:
    """Levenshtein-align ``hyp`` to ``ref`` (unit costs) and count the edits.

    O(len(ref) * len(hyp)) time and memory; each DP row is computed with
    numpy (the in-row insertion recurrence as a cumulative minimum).
    """
    ref, hyp = list(ref), list(hyp)
    # Match the common prefix and suffix first, as rapidfuzz does.
    num_ref, num_hyp = len(ref), len(hyp)
    prefix = 0
    while prefix < min(num_ref, num_hyp) and ref[prefix] == hyp[prefix]:
        prefix += 1
    suffix = 0
    while (
        suffix < min(num_ref, num_hyp) - prefix
        and ref[num_ref - 1 - suffix] == hyp[num_hyp - 1 - suffix]
    ):
        suffix += 1
    mid_ref = ref[prefix : num_ref - suffix]
    mid_hyp = hyp[prefix : num_hyp - suffix]
    pairs = [(tok, tok) for tok in ref[:prefix]]
    pairs.extend(_align_middle(mid_ref, mid_hyp))
    pairs.extend((tok, tok) for tok in ref[num_ref - suffix :])
    counts = {"C": 0, "S": 0, "D": 0, "I": 0}
    for ref_tok, hyp_tok in pairs:
        counts[_op(ref_tok, hyp_tok)] += 1
    return Alignment(
        pairs=tuple(pairs),
        correct=counts["C"],
        substitutions=counts["S"],
        deletions=counts["D"],
        insertions=counts["I"],
    )


def score(
    refs: Mapping[str, str],
    hyps: Mapping[str, str],
    *,
    unit: Unit = "word",
) -> ScoreResult:
    """Score hypotheses against references, both ``utt_id -> transcript``.

    Utterances are scored in the order of ``refs``. A reference without a
    hypothesis scores as all deletions and is listed in ``missing_hyps``; a
    hypothesis without a reference raises :class:`ScoringError`, as does an
    empty ``refs``.
    """
    if unit not in ("word", "char"):
        raise ScoringError(f"unknown scoring unit {unit!r} (expected 'word' or 'char')")
    extra = [utt_id for utt_id in hyps if utt_id not in refs]
    if extra:
        shown = ", ".join(extra[:5]) + (", ..." if len(extra) > 5 else "")
        raise ScoringError(f"{len(extra)} hypothesis utterance(s) have no reference: {shown}")
    if not refs:
        raise ScoringError("no reference utterances to score")
    utterances = []
    missing = []
    for utt_id, ref_text in refs.items():
        hyp_text = hyps.get(utt_id)
        if hyp_text is None:
            missing.append(utt_id)
        ref_tokens = tokenize(ref_text, unit=unit)
        hyp_tokens = tokenize(hyp_text or "", unit=unit)
        utterances.append(
            UttScore(
                utt_id=utt_id,
                ref=ref_tokens,
                hyp=hyp_tokens,
                alignment=align(ref_tokens, hyp_tokens),
                missing=hyp_text is None,
            )
        )
    return ScoreResult(unit=unit, utterances=tuple(utterances), missing_hyps=tuple(missing))


def read_text_file(path: str | os.PathLike) -> dict[str, str]:
    """Read a Kaldi ``text`` file: ``utt_id word1 word2 ...`` per line.

    Returns ``utt_id -> transcript`` (words joined by single spaces; a line
    with only an ``utt_id`` is an empty transcript) in file order. Parsing is
    :func:`asr.data.read_kaldi_map`'s; its errors (missing file, blank line,
    duplicate ``utt_id``, bad UTF-8, each naming the file and line) are
    re-raised as :class:`ScoringError`.
    """
    try:
        texts = read_kaldi_map(path, allow_empty_value=True)
    except DataDirError as err:
        raise ScoringError(str(err)) from err
    return {utt_id: " ".join(text.split()) for utt_id, text in texts.items()}


def _op(ref: str | None, hyp: str | None) -> str:
    if hyp is None:
        return "D"
    if ref is None:
        return "I"
    return "C" if ref == hyp else "S"


def _align_middle(ref: list[str], hyp: list[str]) -> list[tuple[str | None, str | None]]:
    """Align sequences that share no common prefix/suffix (rapidfuzz's tie-breaking)."""
    num_ref, num_hyp = len(ref), len(hyp)
    if num_ref == 0 or num_hyp == 0:
        return [(tok, None) for tok in ref] + [(None, tok) for tok in hyp]
    vocab: dict[str, int] = {}
    ref_ids = np.array([vocab.setdefault(tok, len(vocab)) for tok in ref], dtype=np.int64)
    hyp_ids = np.array([vocab.setdefault(tok, len(vocab)) for tok in hyp], dtype=np.int64)
    # dist[i, j]: edit distance between ref[:i] and hyp[:j].
    dist = np.empty((num_ref + 1, num_hyp + 1), dtype=np.int32)
    cols = np.arange(num_hyp + 1, dtype=np.int32)
    dist[0] = cols
    for i in range(1, num_ref + 1):
        prev = dist[i - 1]
        best = np.empty(num_hyp + 1, dtype=np.int32)
        best[0] = i
        sub_cost = (hyp_ids != ref_ids[i - 1]).astype(np.int32)
        np.minimum(prev[1:] + 1, prev[:-1] + sub_cost, out=best[1:])
        # Insertions along the row: dist[i, j] = min_k<=j best[k] + (j - k).
        dist[i] = np.minimum.accumulate(best - cols) + cols
    # Backtrace from the end, preferring deletion, then insertion, then the diagonal
    # (rapidfuzz tests vertical differences of its bit-parallel matrix in this order).
    pairs: list[tuple[str | None, str | None]] = []
    i, j = num_ref, num_hyp
    while i > 0 and j > 0:
        if dist[i, j] == dist[i - 1, j] + 1:
            i -= 1
            pairs.append((ref[i], None))
        elif j > 1 and dist[i, j - 1] == dist[i - 1, j - 1] - 1:
            j -= 1
            pairs.append((None, hyp[j]))
        else:
            i -= 1
            j -= 1
            pairs.append((ref[i], hyp[j]))
    pairs.extend((ref[k], None) for k in range(i - 1, -1, -1))
    pairs.extend((None, hyp[k]) for k in range(j - 1, -1, -1))
    pairs.reverse()
    return pairs


def _utt_report_lines(utt: UttScore, *, unit: Unit) -> list[str]:
    def show(tok: str | None) -> str:
        if tok is None:
            return GAP
        return "<space>" if unit == "char" and tok == " " else tok

    refs, hyps, ops = [], [], []
    for (ref_tok, hyp_tok), op in zip(utt.alignment.pairs, utt.alignment.ops(), strict=True):
        ref_str, hyp_str = show(ref_tok), show(hyp_tok)
        width = max(len(ref_str), len(hyp_str), len(op))
        refs.append(_centre(ref_str, width))
        hyps.append(_centre(hyp_str, width))
        ops.append(_centre(op, width))
    a = utt.alignment
    return [
        f"{utt.utt_id} ref  " + "  ".join(refs),
        f"{utt.utt_id} hyp  " + "  ".join(hyps),
        f"{utt.utt_id} op   " + "  ".join(ops),
        f"{utt.utt_id} #csid {a.correct} {a.substitutions} {a.insertions} {a.deletions}",
    ]


def _centre(text: str, width: int) -> str:
    """Centre like Kaldi's wer_per_utt_details.pl: the odd space goes on the left."""
    right = (width - len(text)) // 2
    left = width - len(text) - right
    return " " * left + text + " " * right
