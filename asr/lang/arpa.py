r"""Back-off n-gram models in ARPA form: the in-memory model, its scorer, ARPA I/O.

An :class:`NgramModel` is exactly what an ARPA file holds: for every order
``n`` a table of n-grams with a log10 probability and (for ``n`` below the
model order) a log10 back-off weight. Scoring follows the standard back-off
recursion (SRILM's ``ngram``, Kaldi's ``arpa2fst``)::

    P(w | h) = P*(w | h)                     if the n-gram (h, w) is listed
             = bow(h) * P(w | h')             otherwise (h' = h without its first word;
                                              bow(h) = 1 when h is not listed)

Tables are stored as sorted integer keys, ``key = history_row * vocab_size +
word_id`` (the history is a row of the table one order lower; unigram rows are
word ids), so lookups for a whole corpus are a few ``np.searchsorted`` calls.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "lm.arpa"
>>> _ = path.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n"
...     "-0.30103\t</s>\n-99\t<s>\t0\n-0.30103\tYES\n\n\\end\\\n")
>>> model = read_arpa(path)
>>> model.order, model.vocab
(1, ('</s>', '<s>', 'YES'))
>>> [round(float(x), 5) for x in model.sentence_logprobs(["YES"])]
[-0.30103, -0.30103]
>>> write_arpa(model, path)
>>> read_arpa(path).num_ngrams
(3,)
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from asr.errors import LmError
from asr.fileio import atomic_write

__all__ = [
    "BOS",
    "EOS",
    "LOG10_ZERO",
    "NgramTable",
    "NgramModel",
    "read_arpa",
    "read_arpa_vocab",
    "truncate_model",
    "write_arpa",
]

# A count in the header: ASCII digits only (str.isdigit() also accepts '²', which int() refuses).
_COUNT = re.compile(r"[0-9]{1,18}")

BOS = "<s>"
EOS = "</s>"
#: log10 probability written for impossible events (``<s>`` as a predicted word), as SRILM does.
LOG10_ZERO = -99.0


@dataclass(frozen=True, eq=False)
class NgramTable:
    """All n-grams of one order ``n``.

    ``keys``: (num_ngrams,) int64, sorted ascending, ``history_row * vocab_size + word_id``
    where ``history_row`` indexes the order ``n - 1`` table (0 for unigrams).
    ``logprob``: (num_ngrams,) float64 log10 P(word | history).
    ``backoff``: (num_ngrams,) float64 log10 back-off weight of the n-gram used as a history
    (0.0 when it has none).
    """

    keys: np.ndarray
    logprob: np.ndarray
    backoff: np.ndarray

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def lookup(self, history_rows: np.ndarray, word_ids: np.ndarray, vocab_size: int) -> np.ndarray:
        """Rows of the n-grams ``(history_rows[i], word_ids[i])``; -1 where absent or inputs < 0."""
        history_rows = np.asarray(history_rows, dtype=np.int64)
        word_ids = np.asarray(word_ids, dtype=np.int64)
        if len(self) == 0:
            return np.full(np.broadcast(history_rows, word_ids).shape, -1, dtype=np.int64)
        valid = (history_rows >= 0) & (word_ids >= 0)
        query = np.where(valid, history_rows * vocab_size + word_ids, -1)
        rows = np.searchsorted(self.keys, query)
        rows_clipped = np.minimum(rows, len(self) - 1)
        found = valid & (self.keys[rows_clipped] == query)
        return np.where(found, rows_clipped, -1)


@dataclass(frozen=True, eq=False)
class NgramModel:
    """A back-off n-gram model (what an ARPA file holds).

    ``vocab``: the unigram words; word id ``i`` is ``vocab[i]`` and is also row ``i`` of
    ``tables[0]``. ``tables[n - 1]`` holds the n-grams of order ``n``. ``unk`` is the
    unknown-word symbol when the model has one (out-of-vocabulary words are then scored as it,
    as SRILM does), else ``None``.
    """

    vocab: tuple[str, ...]
    tables: tuple[NgramTable, ...]
    unk: str | None = None

    def __post_init__(self) -> None:
        if not self.tables:
            raise LmError("an n-gram model needs at least a unigram table")
        if len(self.tables[0]) != len(self.vocab):
            raise LmError(
                f"unigram table has {len(self.tables[0])} rows for {len(self.vocab)} words"
            )
        if self.unk is not None and self.unk not in self.word_to_id:
            raise LmError(f"unknown-word symbol {self.unk!r} is not in the model vocabulary")

    @property
    def order(self) -> int:
        return len(self.tables)

    @property
    def num_ngrams(self) -> tuple[int, ...]:
        """Number of n-grams per order, as in the ARPA header."""
        return tuple(len(t) for t in self.tables)

    @cached_property
    def word_to_id(self) -> dict[str, int]:
        return {word: i for i, word in enumerate(self.vocab)}

    def ngram_word_ids(self, order: int) -> np.ndarray:
        """(num_ngrams, order) int64 word ids of every n-gram of ``order``, in table order."""
        if not 1 <= order <= self.order:
            raise LmError(f"order {order} outside 1..{self.order}")
        vocab_size = len(self.vocab)
        ids = (self.tables[0].keys % vocab_size)[:, None]
        for n in range(2, order + 1):
            keys = self.tables[n - 1].keys
            ids = np.concatenate([ids[keys // vocab_size], (keys % vocab_size)[:, None]], axis=1)
        return ids

    def ngrams(self, order: int) -> list[tuple[tuple[str, ...], float, float]]:
        """``(words, log10 prob, log10 backoff)`` for every n-gram of ``order``."""
        table = self.tables[order - 1]
        words = np.asarray(self.vocab, dtype=object)[self.ngram_word_ids(order)]
        return [
            (tuple(row), float(lp), float(bo))
            for row, lp, bo in zip(words, table.logprob, table.backoff, strict=True)
        ]

    def map_words(self, words: Sequence[str]) -> np.ndarray:
        """Word ids (int64) of ``words``; OOVs become the ``unk`` id, or -1 without one."""
        unk_id = self.word_to_id[self.unk] if self.unk is not None else -1
        get = self.word_to_id.get
        return np.fromiter((get(w, unk_id) for w in words), dtype=np.int64, count=len(words))

    def score_ids(self, token_ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """log10 P of each token given its history, for many sentences at once.

        ``token_ids``: (num_tokens,) int64 word ids of the sentences laid end to end, each
        starting with ``<s>``; -1 marks an OOV (it scores NaN and ends every history through
        it). ``positions``: (num_tokens,) position of each token in its sentence (0 at ``<s>``).
        Returns (num_tokens,) float64; NaN at ``<s>`` (position 0) and at OOVs.
        """
        token_ids = np.asarray(token_ids, dtype=np.int64)
        positions = np.asarray(positions, dtype=np.int64)
        vocab_size = len(self.vocab)
        # rows[n - 1][t]: row of the n-gram ending at t in tables[n - 1], or -1.
        rows = [np.where(token_ids >= 0, token_ids, -1)]
        for n in range(2, self.order + 1):
            prev = np.full_like(token_ids, -1)
            prev[1:] = rows[-1][:-1]
            prev[positions < n - 1] = -1
            rows.append(self.tables[n - 1].lookup(prev, token_ids, vocab_size))
        max_history = np.minimum(positions, self.order - 1)
        logprob = np.full(token_ids.shape, np.nan)
        found = np.zeros(token_ids.shape, dtype=bool)
        backoff_sum = np.zeros(token_ids.shape)
        # From the longest history down: use the first listed n-gram, adding back-off
        # weights of the longer histories that were listed but did not contain the word.
        for n in range(self.order, 0, -1):
            table = self.tables[n - 1]
            eligible = ~found & (max_history >= n - 1)
            hit = eligible & (rows[n - 1] >= 0)
            logprob[hit] = table.logprob[rows[n - 1][hit]] + backoff_sum[hit]
            found |= hit
            if n > 1:
                hist = np.full_like(token_ids, -1)
                hist[1:] = rows[n - 2][:-1]
                use_bow = eligible & ~hit & (hist >= 0)
                backoff_sum[use_bow] += self.tables[n - 2].backoff[hist[use_bow]]
        logprob[(positions == 0) | (token_ids < 0)] = np.nan
        return logprob

    def sentence_logprobs(self, words: Sequence[str]) -> np.ndarray:
        """log10 P of each word of one sentence and of the final ``</s>`` (NaN at OOVs)."""
        ids = self.map_words([BOS, *words, EOS])
        return self.score_ids(ids, np.arange(len(ids)))[1:]


def truncate_model(model: NgramModel, order: int) -> NgramModel:
    """The ``order``-gram model inside ``model``: higher orders dropped, and the back-off
    weights of the new highest order reset to 1 (a history has at most ``order - 1`` words,
    so they are never used). The result is normalized whenever ``model`` is."""
    if not 1 <= order <= model.order:
        raise LmError(f"cannot truncate an order-{model.order} model to order {order}")
    if order == model.order:
        return model
    top = model.tables[order - 1]
    top = NgramTable(keys=top.keys, logprob=top.logprob, backoff=np.zeros_like(top.backoff))
    return NgramModel(vocab=model.vocab, tables=(*model.tables[: order - 1], top), unk=model.unk)


# ---------------------------------------------------------------------------------------------
# ARPA I/O


def _format_floats(values: np.ndarray, precision: int) -> np.ndarray:
    """log10 values as ARPA text (object array): ``-99`` for zero, ``0`` for one."""
    fmt = f"{{:.{precision}g}}".format
    text = np.array([fmt(v) for v in values.tolist()], dtype=object)
    text[values <= LOG10_ZERO] = "-99"
    text[values == 0.0] = "0"
    return text


def write_arpa(model: NgramModel, path: str | os.PathLike, *, precision: int = 10) -> None:
    """Write ``model`` as a standard ARPA file (atomically).

    Each line is ``log10prob<TAB>w1 ... wn[<TAB>log10backoff]``; the back-off weight is written
    for every n-gram below the model order that is the history of a longer n-gram or has a
    non-zero weight. ``precision`` is the number of significant digits (SRILM writes 7).
    """
    vocab = np.asarray(model.vocab, dtype=object)
    vocab_size = len(model.vocab)
    with atomic_write(path, "w") as handle:
        handle.write("\n\\data\\\n")
        handle.writelines(f"ngram {n}={c}\n" for n, c in enumerate(model.num_ngrams, start=1))
        for n in range(1, model.order + 1):
            table = model.tables[n - 1]
            handle.write(f"\n\\{n}-grams:\n")
            if not len(table):
                continue
            ids = model.ngram_word_ids(n)
            lines = _format_floats(table.logprob, precision) + "\t" + vocab[ids[:, 0]]
            for k in range(1, n):
                lines = lines + " " + vocab[ids[:, k]]
            if n < model.order:
                has_bow = table.backoff != 0.0
                has_bow[model.tables[n].keys // vocab_size] = True
                bows = _format_floats(table.backoff[has_bow], precision)
                lines[has_bow] = lines[has_bow] + "\t" + bows
            handle.write("\n".join(lines.tolist()))
            handle.write("\n")
        handle.write("\n\\end\\\n")


def _parse_floats(texts: list[str], line_nos: np.ndarray, path: Path) -> np.ndarray:
    """Parse many numbers at once; on failure name the first bad line."""
    try:
        values = np.array(texts, dtype=object).astype(np.float64)
    except ValueError:
        values = None
    if values is not None and np.all(np.isfinite(values)):
        return values
    for text, line_no in zip(texts, line_nos.tolist(), strict=True):
        try:
            ok = bool(np.isfinite(float(text)))
        except ValueError:
            ok = False
        if not ok:
            raise LmError(f"{path}:{line_no}: {text!r} is not a finite number")
    raise LmError(f"{path}: cannot parse numbers")  # pragma: no cover - unreachable


def _read_header(lines: list[str], path: Path) -> tuple[list[int], int]:
    r"""Parse ``\data\`` and the ``ngram N=count`` lines; return counts and the next line index."""
    index = 0
    while index < len(lines) and lines[index].strip() != "\\data\\":
        index += 1
    if index == len(lines):
        raise LmError(f"{path}: no '\\data\\' line; not an ARPA file")
    index += 1
    counts: list[int] = []
    while index < len(lines):
        line = lines[index].strip()
        if line.startswith("\\"):
            break
        if line:
            where = f"{path}:{index + 1}"
            key, _, value = line.partition("=")
            parts = key.split()
            if len(parts) != 2 or parts[0] != "ngram" or not _COUNT.fullmatch(value.strip()):
                raise LmError(f"{where}: expected 'ngram N=count', got {line!r}")
            if not _COUNT.fullmatch(parts[1]) or int(parts[1]) != len(counts) + 1:
                raise LmError(f"{where}: expected 'ngram {len(counts) + 1}=...', got {line!r}")
            counts.append(int(value))
        index += 1
    if not counts:
        raise LmError(f"{path}: the '\\data\\' section lists no 'ngram N=count' lines")
    return counts, index


def _read_sections(path: Path, max_order: int | None = None):
    """Yield ``(order, line_nos, fields)`` for each n-gram section of an ARPA file.

    ``line_nos``: (num_ngrams,) int64 1-based line numbers; ``fields``: the split lines.
    """
    try:  # lines end at "\n" only, so that line numbers are the file's
        lines = path.read_bytes().decode("utf-8").split("\n")
    except FileNotFoundError:
        raise LmError(f"{path}: ARPA file not found") from None
    except OSError as err:
        raise LmError(f"{path}: cannot read ARPA file: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise LmError(f"{path}: not UTF-8 text ({err})") from None
    counts, index = _read_header(lines, path)
    for n in range(1, len(counts) + 1):
        while index < len(lines) and not lines[index].strip():
            index += 1
        if index == len(lines) or lines[index].strip() != f"\\{n}-grams:":
            found = repr(lines[index].strip()) if index < len(lines) else "the end of the file"
            raise LmError(f"{_where(path, index, lines)}: expected '\\{n}-grams:', got {found}")
        begin = index = index + 1
        while index < len(lines) and not lines[index].startswith("\\"):
            index += 1
        split = [line.split() for line in lines[begin:index]]
        line_nos = np.flatnonzero(np.fromiter(map(len, split), np.int64, len(split))) + begin + 1
        fields = [f for f in split if f]
        num_fields = np.fromiter(map(len, fields), np.int64, len(fields))
        bad = np.flatnonzero((num_fields != n + 1) & (num_fields != n + 2))
        if bad.size:
            raise LmError(
                f"{path}:{line_nos[bad[0]]}: a {n}-gram line needs log10prob, {n} word(s) and "
                f"an optional back-off weight; got {num_fields[bad[0]]} fields"
            )
        if len(fields) != counts[n - 1]:
            raise LmError(
                f"{path}: header says ngram {n}={counts[n - 1]} but the \\{n}-grams: section "
                f"has {len(fields)} entries"
            )
        yield n, line_nos, fields
        if max_order is not None and n >= max_order:
            return
    while index < len(lines) and not lines[index].strip():
        index += 1
    if index == len(lines) or lines[index].strip() != "\\end\\":
        where = _where(path, index, lines)
        raise LmError(f"{where}: expected '\\end\\' after the last n-gram section")


def _where(path: Path, index: int, lines: list[str]) -> str:
    """``path:line`` of ``lines[index]``, or ``path`` (at end of file) past the last line."""
    return f"{path}:{index + 1}" if index < len(lines) else f"{path} (at end of file)"


def read_arpa_vocab(path: str | os.PathLike) -> list[str]:
    """The words of the unigram section of an ARPA file (in file order)."""
    for _, _, fields in _read_sections(Path(path), max_order=1):
        return [f[1] for f in fields]
    return []  # pragma: no cover - _read_sections always yields the unigrams


def read_arpa(path: str | os.PathLike, *, unk: str = "<unk>") -> NgramModel:
    """Read an ARPA file into an :class:`NgramModel`.

    Raises :class:`LmError` naming the file and line for malformed input: a missing header or
    section, a count that does not match the header, a bad number, a word missing from the
    unigrams, an n-gram whose history is not listed, a duplicate n-gram. ``unk`` names the
    unknown-word symbol; it is matched case-insensitively (``<unk>``, ``<UNK>``).
    """
    path = Path(path)
    vocab: list[str] = []
    word_to_id: dict[str, int] = {}
    tables: list[NgramTable] = []
    for n, line_nos, fields in _read_sections(path):
        if n == 1:
            vocab = [f[1] for f in fields]
            word_to_id = {w: i for i, w in enumerate(vocab)}
            if len(word_to_id) != len(vocab):
                seen: set[str] = set()
                for word, line_no in zip(vocab, line_nos.tolist(), strict=True):
                    if word in seen:
                        raise LmError(f"{path}:{line_no}: duplicate unigram {word!r}")
                    seen.add(word)
        logprob = _parse_floats([f[0] for f in fields], line_nos, path)
        with_bow = np.fromiter((len(f) == n + 2 for f in fields), bool, len(fields))
        backoff = np.zeros(len(fields))
        backoff[with_bow] = _parse_floats(
            [f[-1] for f in fields if len(f) == n + 2], line_nos[with_bow], path
        )
        get = word_to_id.get
        ids = np.fromiter(
            (get(w, -1) for f in fields for w in f[1 : n + 1]), np.int64, len(fields) * n
        ).reshape(len(fields), n)
        missing = np.argwhere(ids < 0)
        if missing.size:
            row, col = missing[0]
            word = fields[row][1 + col]
            raise LmError(f"{path}:{line_nos[row]}: word {word!r} has no unigram entry")
        tables.append(_build_table(tables, ids, logprob, backoff, line_nos, len(vocab), path))
    unk_symbol = next((w for w in vocab if w.lower() == unk.lower()), None)
    return NgramModel(vocab=tuple(vocab), tables=tuple(tables), unk=unk_symbol)


def _build_table(
    lower: list[NgramTable],
    ids: np.ndarray,
    logprob: np.ndarray,
    backoff: np.ndarray,
    line_nos: np.ndarray,
    vocab_size: int,
    path: Path,
) -> NgramTable:
    """Sort n-grams (ids: (num_ngrams, n)) into a table, checking histories and duplicates."""
    n = ids.shape[1]
    if n == 1:
        return NgramTable(keys=ids[:, 0].copy(), logprob=logprob, backoff=backoff)
    history = ids[:, 0]
    for k in range(2, n):
        history = lower[k - 1].lookup(history, ids[:, k - 1], vocab_size)
    missing = np.flatnonzero(history < 0)
    if missing.size:
        bad = missing[0]
        raise LmError(
            f"{path}:{line_nos[bad]}: the history of this {n}-gram is not listed among the "
            f"{n - 1}-grams (an ARPA back-off model needs it)"
        )
    keys = history * vocab_size + ids[:, -1]
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    duplicate = np.flatnonzero(np.diff(keys) == 0)
    if duplicate.size:
        raise LmError(f"{path}:{line_nos[order[duplicate[0] + 1]]}: duplicate {n}-gram")
    return NgramTable(keys=keys, logprob=logprob[order], backoff=backoff[order])
