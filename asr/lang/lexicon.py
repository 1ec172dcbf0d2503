"""Pronunciation lexicons: reading, merging, restricting, disambiguating.

:func:`read_lexicon` reads the dictionary formats the recipes meet:

* AN4/Sphinx ``an4.dic`` -- ``WORD  PH PH ...``, variants written ``WORD(2)``;
* Sphinx filler files (``an4.filler``) -- ``<s>``/``</s>`` are sentence
  markers (words.txt adds them itself) and are dropped; the phones of the other
  fillers (``<sil> SIL``, ``++NOISE++ +NOISE+``) are silence/noise phones;
* CMUdict ``cmudict.dict`` -- lower-case words, ``word(2)`` variants, trailing
  ``# comments``, stress digits on vowels (stripped by default);
* Kaldi ``lexicon.txt`` (``word ph ph ...``) and ``lexiconp.txt``
  (``word prob ph ph ...``).

:func:`add_disambig_symbols` applies Kaldi's ``add_lex_disambig.pl`` rule:
a pronunciation that is a proper prefix of another one, or that several
entries share (homophones), gets ``#1``, ``#2``, ... appended.

>>> lex = Lexicon.from_pairs([("YES", "Y"), ("NO", "N"), ("NOT", "N AA T")])
>>> lex.words
('NO', 'NOT', 'YES')
>>> add_disambig_symbols([e.pron for e in lex.entries])
([0, 1, 0], 1)
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asr.errors import LangError
from asr.fileio import atomic_write_text

__all__ = [
    "LexiconEntry",
    "Lexicon",
    "read_lexicon",
    "add_disambig_symbols",
    "read_vocabulary",
    "SENTENCE_MARKERS",
    "RESERVED_WORDS",
]

SENTENCE_MARKERS: frozenset[str] = frozenset({"<s>", "</s>"})
RESERVED_WORDS: frozenset[str] = frozenset({"<eps>", "#0", "<s>", "</s>"})
_VARIANT = re.compile(r"^(.+)\((\d+)\)$")
_STRESS = re.compile(r"^([A-Za-z]+)[0-2]$")
_FORMATS = ("auto", "dict", "lexiconp", "filler")


@dataclass(frozen=True)
class LexiconEntry:
    """One pronunciation: ``word``, its phones ``pron`` and probability ``prob`` in (0, 1]."""

    word: str
    pron: tuple[str, ...]
    prob: float = 1.0


@dataclass(frozen=True)
class Lexicon:
    """An ordered list of pronunciations (word -> [(pron, prob), ...]).

    ``silence_phones`` are phones a source marked as silence or noise (the
    phones of a Sphinx filler dictionary); ``prepare_lang`` treats them as
    silence phones alongside the configured silence and OOV phones.
    Duplicate (word, pron) pairs are rejected; use :meth:`merge` to combine
    lexicons (it drops repeats).
    """

    entries: tuple[LexiconEntry, ...]
    silence_phones: frozenset[str] = frozenset()
    _index: dict[str, list[int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, list[int]] = {}
        seen: set[tuple[str, tuple[str, ...]]] = set()
        for i, entry in enumerate(self.entries):
            key = (entry.word, entry.pron)
            if key in seen:
                raise LangError(f"lexicon: duplicate entry {entry.word} {' '.join(entry.pron)}")
            seen.add(key)
            if not entry.pron or not 0.0 < entry.prob <= 1.0:
                _check_entry(entry.word, entry.pron, entry.prob, where="lexicon")
            index.setdefault(entry.word, []).append(i)
        for word in index:
            _check_word(word, where="lexicon")
        for phone in {p for e in self.entries for p in e.pron}:
            _check_phone(phone, where="lexicon")
        object.__setattr__(self, "_index", index)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str | Sequence[str]]]) -> Lexicon:
        """Build from ``(word, "PH PH ...")`` or ``(word, [PH, PH])`` pairs, prob 1."""
        entries = []
        for word, pron in pairs:
            phones = tuple(pron.split()) if isinstance(pron, str) else tuple(pron)
            entries.append(LexiconEntry(word=word, pron=phones))
        return cls(entries=tuple(entries))

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, word: object) -> bool:
        return word in self._index

    @property
    def words(self) -> tuple[str, ...]:
        """Distinct words, sorted (C-locale order, as Kaldi's words.txt)."""
        return tuple(sorted(self._index))

    @property
    def phones(self) -> tuple[str, ...]:
        """Distinct phones used by the pronunciations, sorted."""
        return tuple(sorted({p for e in self.entries for p in e.pron}))

    @property
    def has_probs(self) -> bool:
        return any(e.prob != 1.0 for e in self.entries)

    def prons(self, word: str) -> list[tuple[tuple[str, ...], float]]:
        """The ``(pron, prob)`` list of ``word`` (empty when absent)."""
        return [(self.entries[i].pron, self.entries[i].prob) for i in self._index.get(word, [])]

    def merge(self, other: Lexicon) -> Lexicon:
        """Entries of ``self`` then new entries of ``other``; silence phones united."""
        seen = {(e.word, e.pron) for e in self.entries}
        extra = tuple(e for e in other.entries if (e.word, e.pron) not in seen)
        return Lexicon(
            entries=self.entries + extra,
            silence_phones=self.silence_phones | other.silence_phones,
        )

    def restrict(self, words: Iterable[str], *, allow_missing: bool = False) -> Lexicon:
        """Keep only the entries of ``words``; unknown words raise unless ``allow_missing``."""
        vocab = set(words) - SENTENCE_MARKERS
        missing = sorted(vocab - {e.word for e in self.entries})
        if missing and not allow_missing:
            raise LangError(_missing_message(missing, "the lexicon"))
        kept = tuple(e for e in self.entries if e.word in vocab)
        return Lexicon(entries=kept, silence_phones=self.silence_phones)

    def to_text(self, *, with_probs: bool = False) -> str:
        """Kaldi ``lexicon.txt`` (or ``lexiconp.txt`` with ``with_probs``) text."""
        if with_probs:
            return "".join(f"{e.word} {e.prob:g} {' '.join(e.pron)}\n" for e in self.entries)
        return "".join(f"{e.word} {' '.join(e.pron)}\n" for e in self.entries)

    def write(self, path: str | os.PathLike, *, with_probs: bool = False) -> None:
        atomic_write_text(path, self.to_text(with_probs=with_probs))


def _check_word(word: str, *, where: str) -> None:
    if word in RESERVED_WORDS or word.startswith("#"):
        raise LangError(f"{where}: {word!r} is reserved and cannot be a lexicon word")


def _check_phone(phone: str, *, where: str, word: str = "") -> None:
    if phone == "<eps>" or phone.startswith("#"):
        owner = f"word {word!r} uses " if word else ""
        raise LangError(f"{where}: {owner}reserved phone {phone!r}")


def _check_entry(word: str, pron: tuple[str, ...], prob: float, *, where: str) -> None:
    _check_word(word, where=where)
    if not pron:
        raise LangError(f"{where}: word {word!r} has an empty pronunciation")
    for phone in pron:
        _check_phone(phone, where=where, word=word)
    if not 0.0 < prob <= 1.0:
        raise LangError(f"{where}: word {word!r} has probability {prob}, not in (0, 1]")


def _missing_message(missing: Sequence[str], where: str) -> str:
    shown = " ".join(missing[:20])
    more = f" ... ({len(missing)} in all)" if len(missing) > 20 else ""
    return f"{len(missing)} word(s) not in {where}: {shown}{more}"


def _detect_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".filler"):
        return "filler"
    if "lexiconp" in name:
        return "lexiconp"
    return "dict"


def read_lexicon(
    path: str | os.PathLike,
    *,
    words: Iterable[str] | None = None,
    uppercase: bool = False,
    strip_stress: bool = True,
    allow_missing: bool = False,
    fmt: str = "auto",
) -> Lexicon:
    """Read a pronunciation dictionary (AN4 .dic/.filler, CMUdict, Kaldi lexicon[p].txt).

    ``fmt`` is ``"auto"`` (``*.filler`` -> filler, ``*lexiconp*`` -> lexiconp,
    anything else -> dict), ``"dict"`` (``WORD PH ...``), ``"lexiconp"``
    (``WORD PROB PH ...``) or ``"filler"``. Variant markers ``WORD(2)`` are
    removed, ``# comments`` dropped, stress digits stripped from phones
    (``AH0`` -> ``AH``) unless ``strip_stress=False``, words upper-cased with
    ``uppercase=True``. Pronunciations that become identical are kept once.
    ``words`` restricts the result to a vocabulary: words absent from the file
    raise :class:`LangError` listing them, unless ``allow_missing``.
    Errors name the file and line.
    """
    path = Path(path)
    if fmt not in _FORMATS:
        raise LangError(f"unknown lexicon format {fmt!r}; expected one of {_FORMATS}")
    if fmt == "auto":
        fmt = _detect_format(path)
    text = _read_text(path, what="lexicon")
    vocab = None if words is None else set(words) - SENTENCE_MARKERS
    entries: dict[tuple[str, tuple[str, ...]], LexiconEntry] = {}
    silence_phones: set[str] = set()
    phone_map: dict[str, str] = {}  # raw phone -> checked, stress-stripped phone
    for line_no, line in enumerate(text.split("\n"), 1):
        head = line.split(None, 1)
        if not head:
            continue
        word = head[0]
        match = _VARIANT.match(word)
        if match:
            word = match.group(1)
        if uppercase:
            word = word.upper()
        if (fmt == "filler" and word in SENTENCE_MARKERS) or (
            vocab is not None and word not in vocab
        ):
            continue
        where = f"{path}:{line_no}"
        fields = line.split()
        if "#" in line:
            fields = _strip_comment(fields)
        prob = 1.0
        phones = fields[1:]
        if fmt == "lexiconp":
            if not phones:
                raise LangError(f"{where}: expected 'word prob phones...', got {line.strip()!r}")
            try:
                prob = float(phones[0])
            except ValueError:
                raise LangError(f"{where}: probability {phones[0]!r} is not a number") from None
            phones = phones[1:]
        for raw in phones:
            if raw not in phone_map:
                _check_phone(raw, where=where, word=word)
                phone_map[raw] = _STRESS.sub(r"\1", raw) if strip_stress else raw
        pron = tuple(phone_map[p] for p in phones)
        _check_word(word, where=where)
        if not pron or not 0.0 < prob <= 1.0:
            _check_entry(word, pron, prob, where=where)
        if fmt == "filler":
            silence_phones.update(pron)
        key = (word, pron)
        if key not in entries or prob > entries[key].prob:
            entries[key] = LexiconEntry(word=word, pron=pron, prob=prob)
    if vocab is not None:
        missing = sorted(vocab - {w for w, _ in entries})
        if missing and not allow_missing:
            raise LangError(_missing_message(missing, str(path)))
    return Lexicon(entries=tuple(entries.values()), silence_phones=frozenset(silence_phones))


def _read_text(path: Path, *, what: str) -> str:
    """The file's UTF-8 text, its lines ending at "\\n" only (as Kaldi reads them: no
    universal-newline translation, so line numbers are the file's)."""
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise LangError(f"{path}: {what} not found") from None
    except OSError as err:
        raise LangError(f"{path}: cannot read {what}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        line_no = err.object.count(b"\n", 0, err.start) + 1
        raise LangError(f"{path}:{line_no}: not UTF-8 text ({err.reason})") from None


def _strip_comment(fields: list[str]) -> list[str]:
    """Drop a trailing ``# comment`` (a field after the word that starts with '#'
    and is not a disambiguation symbol like ``#1``)."""
    for i, token in enumerate(fields[1:], 1):
        if token.startswith("#") and not token[1:].isdigit():
            return fields[:i]
    return fields


def add_disambig_symbols(prons: Sequence[Sequence[str]]) -> tuple[list[int], int]:
    """Kaldi's ``add_lex_disambig.pl`` rule on a list of pronunciations.

    Returns ``(disambig, max_disambig)``: ``disambig[i]`` is the ``n`` of the
    ``#n`` to append to ``prons[i]`` (0 for none) and ``max_disambig`` the
    largest ``n`` used (0 when no entry needs one). A pronunciation needs one
    when it is a proper prefix of another pronunciation or when several
    entries share it; the k-th entry sharing a pronunciation gets ``#k``.
    """
    keys = [tuple(p) for p in prons]
    count = Counter(keys)
    prefixes = {key[:n] for key in keys for n in range(len(key))}
    last_used: dict[tuple[str, ...], int] = {}
    disambig: list[int] = []
    for key in keys:
        if count[key] == 1 and key not in prefixes:
            disambig.append(0)
            continue
        cur = last_used.get(key, 0) + 1
        last_used[key] = cur
        disambig.append(cur)
    return disambig, max(disambig, default=0)


def read_vocabulary(path: str | os.PathLike, *, kind: str = "auto") -> set[str]:
    """The words of a word list (one per line) or of a Kaldi ``text`` file.

    ``kind`` is ``"list"``, ``"text"`` (first field of each line is the
    ``utt_id``) or ``"auto"``: a word list when every non-empty line holds a
    single token, else a Kaldi text. ``<s>`` and ``</s>`` are left out.
    """
    path = Path(path)
    if kind not in ("auto", "list", "text"):
        raise LangError(f"unknown vocabulary kind {kind!r}; expected auto, list or text")
    rows = [line.split() for line in _read_text(path, what="vocabulary file").split("\n")]
    rows = [r for r in rows if r]
    if kind == "auto":
        kind = "list" if all(len(r) == 1 for r in rows) else "text"
    words = {w for r in rows for w in (r if kind == "list" else r[1:])}
    return words - SENTENCE_MARKERS
