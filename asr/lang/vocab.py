"""Choosing a recognition vocabulary and measuring its out-of-vocabulary rate.

:func:`select_vocabulary` keeps every word of the training transcripts and fills up to
``size`` words with the most frequent words of a general frequency list (such as
``gutenberg_lm/word_counts.tsv``: ``count<TAB>WORD`` lines). Words that only a test set
needs must not be added by hand: the dev OOV rate of :func:`oov_rate` is then an honest
estimate of the test one.

>>> import tempfile, pathlib
>>> freq = pathlib.Path(tempfile.mkdtemp()) / "counts.tsv"
>>> _ = freq.write_text("90\\tTHE\\n50\\tOF\\n40\\tDOG\\n7\\tCAT\\n")
>>> selection = select_vocabulary(["A", "CAT"], freq, 4)
>>> selection.words, selection.num_from_frequency_list
(('A', 'CAT', 'OF', 'THE'), 2)
>>> oov_rate([["THE", "COW"], ["A", "CAT"]], selection.words)
OovStats(num_tokens=4, num_oov_tokens=1, num_types=4, num_oov_types=1)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from asr.errors import LangError
from asr.lang.lexicon import SENTENCE_MARKERS

__all__ = [
    "OovStats",
    "VocabularySelection",
    "oov_rate",
    "read_frequency_list",
    "select_vocabulary",
]


@dataclass(frozen=True)
class VocabularySelection:
    """The chosen ``words`` (sorted, C-locale order), how many came from the training
    transcripts and how many were added from the frequency list."""

    words: tuple[str, ...]
    num_from_train: int
    num_from_frequency_list: int


@dataclass(frozen=True)
class OovStats:
    """Out-of-vocabulary counts of a text: running words (tokens) and distinct words (types)."""

    num_tokens: int
    num_oov_tokens: int
    num_types: int
    num_oov_types: int

    @property
    def rate(self) -> float:
        """Token OOV rate: OOV running words over all running words."""
        return self.num_oov_tokens / self.num_tokens if self.num_tokens else 0.0


def read_frequency_list(path: str | os.PathLike) -> list[str]:
    """Words of a frequency list, most frequent first: ``count<TAB>word`` (or ``word<TAB>count``)
    lines; equal counts keep the file's order. Errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise LangError(f"{path}: frequency list not found") from None
    except OSError as err:
        raise LangError(f"{path}: cannot read frequency list: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise LangError(f"{path}: not UTF-8 text ({err.reason})") from None
    counted: list[tuple[int, str]] = []
    seen: set[str] = set()
    for line_no, line in enumerate(text.split("\n"), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) == 2 and _is_count(fields[0]):
            count, word = fields
        elif len(fields) == 2 and _is_count(fields[1]):
            word, count = fields
        else:
            raise LangError(f"{path}:{line_no}: expected 'count<TAB>word', got {line.strip()!r}")
        if word in seen:
            raise LangError(f"{path}:{line_no}: word {word!r} is listed twice")
        seen.add(word)
        counted.append((int(count), word))
    if not counted:
        raise LangError(f"{path}: the frequency list is empty")
    counted.sort(key=lambda pair: -pair[0])  # stable: ties keep file order
    return [word for _, word in counted]


def _is_count(text: str) -> bool:
    return text.isascii() and text.isdigit()


def select_vocabulary(
    train_text_words: Iterable[str], frequency_list_path: str | os.PathLike, size: int
) -> VocabularySelection:
    """Every distinct training word, then the most frequent words of the frequency list that
    are not among them, until ``size`` words. When the training words alone number ``size``
    or more, they are all kept (the vocabulary is then larger than ``size``)."""
    if size < 1:
        raise LangError(f"vocabulary size must be >= 1, got {size}")
    train = set(train_text_words) - SENTENCE_MARKERS
    chosen = set(train)
    for word in read_frequency_list(frequency_list_path):
        if len(chosen) >= size:
            break
        if word not in SENTENCE_MARKERS:
            chosen.add(word)
    return VocabularySelection(
        words=tuple(sorted(chosen)),
        num_from_train=len(train),
        num_from_frequency_list=len(chosen) - len(train),
    )


def oov_rate(sentences: Iterable[Sequence[str]], vocab: Iterable[str]) -> OovStats:
    """Token and type OOV counts of ``sentences`` (lists of words) against ``vocab``."""
    vocab_set = set(vocab)
    num_tokens = num_oov_tokens = 0
    types: set[str] = set()
    for words in sentences:
        for word in words:
            num_tokens += 1
            num_oov_tokens += word not in vocab_set
            types.add(word)
    return OovStats(
        num_tokens=num_tokens,
        num_oov_tokens=num_oov_tokens,
        num_types=len(types),
        num_oov_types=len(types - vocab_set),
    )
