"""Build and read Kaldi-style lang directories (phones, words, topology, L.fst).

:func:`prepare_lang` does what Kaldi's ``utils/prepare_lang.sh`` does for a
lexicon and writes::

    phones.txt             <eps> 0, silence phones, non-silence phones, #0 #1 ... #N
    words.txt              <eps> 0, sorted words, #0, <s>, </s>
    oov.txt, oov.int       the OOV word (its pronunciation is the OOV/garbage phone)
    phones/{silence,nonsilence,optional_silence,disambig,context_indep}.{txt,int,csl}
    phones/{sets,roots,extra_questions}.{txt,int}, phones/wdisambig{,_phones,_words}.*
    phones/align_lexicon.{txt,int}, phones/word_boundary.{txt,int} (position-dependent only)
    topo                   Kaldi text topology (gen_topo.pl's)
    L.fst, L_disambig.fst  binary OpenFst StdVectorFst, input = phone ids, output = word ids,
                           arc-sorted on output labels (ready for composition with G)
    lexicon.txt, lexiconp.txt, lexiconp_disambig.txt (with the #n), lang_config.json

L.fst is Kaldi's optional-silence lexicon (``make_lexicon_fst.py``): a start
state, a loop state where words begin and end, and a silence state. From the
start, silence is taken with cost ``-log(sil_prob)`` and skipped with
``-log(1 - sil_prob)``; after every word the same split decides whether a
silence phone follows. The loop state is the only final state. A word's
first arc carries the word and ``-log(pron_prob)``. L_disambig.fst also
has the ``#n`` disambiguation symbols at the end of ambiguous pronunciations,
the last ``#N`` after the optional silence phone, and a ``#0:#0`` self-loop on
the loop state (Kaldi's ``fstaddselfloops``) to pass G's back-off symbol.

>>> import tempfile
>>> from asr.lang.lexicon import Lexicon
>>> lexicon = Lexicon.from_pairs([("YES", "Y"), ("NO", "N")])
>>> lang = prepare_lang(lexicon, tempfile.mkdtemp())
>>> list(lang.phones)[:4], lang.words["YES"], lang.words.symbol(lang.word_disambig_id)
(['<eps>', 'SIL', 'SPN', 'N'], 3, '#0')
>>> read_lang(lang.path).phones == lang.phones
True
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from asr.errors import LangError
from asr.fileio import atomic_write_text, new_file_mode, replace_if_changed
from asr.lang.lexicon import Lexicon, LexiconEntry, add_disambig_symbols
from asr.lang.symbols import SymbolTable, read_int_list, read_symbol_table
from asr.lang.topology import Topology, make_default_topology, read_topology

if TYPE_CHECKING:  # pragma: no cover - typing only
    import kaldifst

__all__ = ["LangConfig", "Lang", "prepare_lang", "read_lang", "make_lexicon_fst"]

POSITIONS = ("B", "E", "I", "S")  # begin, end, internal, singleton (Kaldi's order)
_BOUNDARY_NAMES = {"B": "begin", "E": "end", "I": "internal", "S": "singleton"}


@dataclass(frozen=True)
class LangConfig:
    """How to build a lang directory.

    ``sil_prob``: probability of optional silence at the start and after each
    word (0 disables optional silence). ``oov_word`` is added to the lexicon
    with pronunciation ``oov_phone`` when absent. With
    ``position_dependent_phones`` every phone gets ``_B/_E/_I/_S`` variants
    (Kaldi's word-position-dependent phones).
    """

    sil_phone: str = "SIL"
    sil_prob: float = 0.5
    oov_word: str = "<UNK>"
    oov_phone: str = "SPN"
    position_dependent_phones: bool = False
    num_nonsil_states: int = 3
    num_sil_states: int = 5

    def __post_init__(self) -> None:
        if not 0.0 <= self.sil_prob < 1.0:
            raise LangError(f"sil_prob must be in [0, 1), got {self.sil_prob}")
        if self.num_nonsil_states < 1 or self.num_sil_states < 1:
            raise LangError("num_nonsil_states and num_sil_states must be >= 1")
        for name in ("sil_phone", "oov_word", "oov_phone"):
            value = getattr(self, name)
            if not value or any(c.isspace() for c in value) or value.startswith("#"):
                raise LangError(f"{name} {value!r} is not a valid symbol")

    @classmethod
    def from_json(cls, text: str, *, source: str = "<json>") -> LangConfig:
        try:
            values = json.loads(text)
            return cls(**values)
        except (ValueError, TypeError) as err:
            raise LangError(f"{source}: invalid lang config ({err})") from None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class Lang:
    """A lang directory in memory. Phone lists hold phones.txt symbols.

    ``silence_phones``/``nonsilence_phones`` include position variants when
    the config is position-dependent; ``disambig_phone_ids`` are ``#0..#N``
    in phones.txt; ``word_disambig_id`` is ``#0`` in words.txt.
    """

    path: Path
    config: LangConfig
    phones: SymbolTable
    words: SymbolTable
    silence_phones: tuple[str, ...]
    nonsilence_phones: tuple[str, ...]
    optional_silence: str
    disambig_phone_ids: tuple[int, ...]
    word_disambig_id: int
    oov_word: str
    topology: Topology

    @property
    def silence_phone_ids(self) -> tuple[int, ...]:
        return tuple(self.phones.ids(self.silence_phones))

    @property
    def nonsilence_phone_ids(self) -> tuple[int, ...]:
        return tuple(self.phones.ids(self.nonsilence_phones))

    @property
    def context_indep_ids(self) -> tuple[int, ...]:
        """Context-independent phones (the silence phones, as in Kaldi)."""
        return self.silence_phone_ids

    @property
    def optional_silence_id(self) -> int:
        return self.phones[self.optional_silence]

    @property
    def oov_id(self) -> int:
        return self.words[self.oov_word]

    @property
    def phone_disambig_id(self) -> int:
        """Id of ``#0`` in phones.txt (G's back-off symbol on the phone side)."""
        return self.disambig_phone_ids[0]

    @property
    def num_phones(self) -> int:
        """Number of real phones (no ``<eps>``, no disambiguation symbols)."""
        return len(self.silence_phones) + len(self.nonsilence_phones)

    def load_l_fst(self, disambig: bool = False) -> kaldifst.StdVectorFst:
        """Read ``L_disambig.fst`` (``disambig=True``) or ``L.fst``."""
        import kaldifst

        path = self.path / ("L_disambig.fst" if disambig else "L.fst")
        if not path.is_file():
            raise LangError(f"{path}: lexicon FST not found")
        return kaldifst.StdVectorFst.read(str(path))

    def roots(self) -> tuple[tuple[bool, bool, tuple[int, ...]], ...]:
        """``phones/roots.int`` as ``(shared, split, phone_ids)`` per line."""
        path = self.path / "phones" / "roots.int"
        rows = []
        for line_no, line in enumerate(_read_text(path).splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 3 or fields[0] not in ("shared", "not-shared"):
                raise LangError(f"{path}:{line_no}: expected '(not-)shared (not-)split ids...'")
            ids = tuple(_ints(fields[2:], f"{path}:{line_no}"))
            rows.append((fields[0] == "shared", fields[1] == "split", ids))
        return tuple(rows)

    def word_boundary(self) -> dict[int, str]:
        """``phones/word_boundary.int`` as phone id -> begin/end/internal/singleton/nonword."""
        path = self.path / "phones" / "word_boundary.int"
        table = {}
        for line_no, line in enumerate(_read_text(path).splitlines(), 1):
            fields = line.split()
            if len(fields) != 2:
                raise LangError(f"{path}:{line_no}: expected 'phone_id kind'")
            table[_ints(fields[:1], f"{path}:{line_no}")[0]] = fields[1]
        return table


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LangError(f"{path}: not found") from None


def _ints(tokens: list[str], where: str) -> list[int]:
    try:
        return [int(t) for t in tokens]
    except ValueError:
        raise LangError(f"{where}: expected integers, got {' '.join(tokens)!r}") from None


def make_lexicon_fst(
    *,
    word_ids: np.ndarray,
    prons: list[list[int]],
    pron_probs: np.ndarray,
    sil_prob: float,
    sil_phone_id: int,
    sil_disambig_id: int | None = None,
) -> kaldifst.StdVectorFst:
    """Kaldi's ``make_lexicon_fst.py`` lexicon FST (not yet arc-sorted).

    ``word_ids[k]`` is pronounced ``prons[k]`` (phone ids, disambiguation
    symbols already appended) with probability ``pron_probs[k]``. With
    ``sil_prob == 0`` there is no optional silence (one loop state).
    """
    import kaldifst

    lengths = np.array([len(p) for p in prons], dtype=np.int64)
    if len(prons) == 0 or lengths.min() < 1:
        raise LangError("cannot build L.fst: the lexicon is empty or has an empty pronunciation")
    phones = np.concatenate([np.asarray(p, dtype=np.int64) for p in prons])
    pron_cost = -np.log(np.asarray(pron_probs, dtype=np.float64))
    header: list[tuple[int, int, int, int, float]] = []
    if sil_prob > 0.0:
        sil_cost, no_sil_cost = -math.log(sil_prob), -math.log(1.0 - sil_prob)
        start, loop, sil = 0, 1, 2
        header += [(start, loop, 0, 0, no_sil_cost), (start, sil, 0, 0, sil_cost)]
        if sil_disambig_id is None:
            header.append((sil, loop, sil_phone_id, 0, 0.0))
            first_free = 3
        else:
            header += [(sil, 3, sil_phone_id, 0, 0.0), (3, loop, sil_disambig_id, 0, 0.0)]
            first_free = 4
        exits = ((loop, no_sil_cost), (sil, sil_cost))
    else:
        loop, first_free = 0, 1
        exits = ((loop, 0.0),)
    # Entry k uses lengths[k] - 1 fresh states: base[k], base[k] + 1, ...
    base = first_free + np.concatenate(([0], np.cumsum(lengths - 1)[:-1]))
    entry = np.repeat(np.arange(len(prons)), lengths)
    pos = np.arange(len(phones)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    first = pos == 0
    last = pos == lengths[entry] - 1
    src = np.where(first, loop, base[entry] + pos - 1)
    olabel = np.where(first, np.asarray(word_ids, dtype=np.int64)[entry], 0)
    cost = np.where(first, pron_cost[entry], 0.0)
    inner = ~last
    columns = [
        (src[inner], base[entry[inner]] + pos[inner], phones[inner], olabel[inner], cost[inner])
    ]
    for dest, extra in exits:
        n = int(last.sum())
        columns.append(
            (src[last], np.full(n, dest), phones[last], olabel[last], cost[last] + extra)
        )
    lines = [f"{a}\t{b}\t{i}\t{o}\t{w!r}" for a, b, i, o, w in header]
    for s, d, i, o, w in columns:
        lines += [
            f"{a}\t{b}\t{c}\t{e}\t{f!r}"
            for a, b, c, e, f in zip(
                s.tolist(), d.tolist(), i.tolist(), o.tolist(), w.tolist(), strict=True
            )
        ]
    lines.append(f"{loop}\t0")
    return kaldifst.compile("\n".join(lines) + "\n")


def _position_variants(phone: str, *, silence: bool) -> list[str]:
    variants = [f"{phone}_{p}" for p in POSITIONS]
    return [phone, *variants] if silence else variants


def _with_positions(pron: tuple[str, ...]) -> tuple[str, ...]:
    if len(pron) == 1:
        return (f"{pron[0]}_S",)
    return (f"{pron[0]}_B", *(f"{p}_I" for p in pron[1:-1]), f"{pron[-1]}_E")


def _write_fst(fst: kaldifst.StdVectorFst, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if not fst.write(tmp):
            raise LangError(f"{path}: OpenFst could not write the FST")
        os.chmod(tmp, new_file_mode())  # not mkstemp's 0600: honour the umask
        replace_if_changed(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_list(phones_dir: Path, name: str, table: SymbolTable, symbols: list[str]) -> None:
    ids = table.ids(symbols)
    atomic_write_text(phones_dir / f"{name}.txt", "".join(f"{s}\n" for s in symbols))
    atomic_write_text(phones_dir / f"{name}.int", "".join(f"{i}\n" for i in ids))
    atomic_write_text(phones_dir / f"{name}.csl", ":".join(map(str, ids)) + "\n")


def _write_rows(phones_dir: Path, name: str, table: SymbolTable, rows: list[list[str]]) -> None:
    atomic_write_text(phones_dir / f"{name}.txt", "".join(" ".join(r) + "\n" for r in rows))
    int_rows = [" ".join(str(table[s]) if s in table else s for s in r) + "\n" for r in rows]
    atomic_write_text(phones_dir / f"{name}.int", "".join(int_rows))


def prepare_lang(
    lexicon: Lexicon, out_dir: str | os.PathLike, config: LangConfig | None = None
) -> Lang:
    """Write a Kaldi-style lang directory for ``lexicon`` into ``out_dir``; return it.

    Silence phones are ``config.sil_phone``, ``config.oov_phone`` and the
    lexicon's ``silence_phones`` (filler phones), in that order; every other
    phone is a non-silence phone (sorted).
    """
    import kaldifst

    config = config or LangConfig()
    out = Path(out_dir)
    phones_dir = out / "phones"
    phones_dir.mkdir(parents=True, exist_ok=True)

    if config.oov_word not in lexicon:
        oov = LexiconEntry(word=config.oov_word, pron=(config.oov_phone,))
        lexicon = Lexicon(entries=(*lexicon.entries, oov), silence_phones=lexicon.silence_phones)
    base_sil = [config.sil_phone, config.oov_phone]
    base_sil += sorted(lexicon.silence_phones - set(base_sil))
    base_sil = list(dict.fromkeys(base_sil))
    base_nonsil = [p for p in lexicon.phones if p not in set(base_sil)]
    pos_dep = config.position_dependent_phones
    if pos_dep:
        sil_phones = [v for p in base_sil for v in _position_variants(p, silence=True)]
        nonsil_phones = [v for p in base_nonsil for v in _position_variants(p, silence=False)]
        entries = [
            LexiconEntry(word=e.word, pron=_with_positions(e.pron), prob=e.prob)
            for e in lexicon.entries
        ]
    else:
        sil_phones, nonsil_phones, entries = (
            list(base_sil),
            list(base_nonsil),
            list(lexicon.entries),
        )

    disambig, max_disambig = add_disambig_symbols([e.pron for e in entries])
    num_disambig = max_disambig + 1  # one more for the optional silence in L_disambig
    disambig_syms = [f"#{n}" for n in range(num_disambig + 1)]
    phones = SymbolTable.from_symbols(["<eps>", *sil_phones, *nonsil_phones, *disambig_syms])
    word_list = sorted({e.word for e in entries})
    words = SymbolTable.from_symbols(["<eps>", *word_list, "#0", "<s>", "</s>"])

    phones.write(out / "phones.txt")
    words.write(out / "words.txt")
    atomic_write_text(out / "oov.txt", f"{config.oov_word}\n")
    atomic_write_text(out / "oov.int", f"{words[config.oov_word]}\n")
    final_lex = Lexicon(entries=tuple(entries), silence_phones=frozenset(base_sil))
    final_lex.write(out / "lexicon.txt")
    final_lex.write(out / "lexiconp.txt", with_probs=True)
    atomic_write_text(
        out / "lexiconp_disambig.txt",
        "".join(
            f"{e.word} {e.prob:g} {' '.join(e.pron)}{f' #{d}' if d else ''}\n"
            for e, d in zip(entries, disambig, strict=True)
        ),
    )
    atomic_write_text(out / "lang_config.json", config.to_json())

    _write_list(phones_dir, "silence", phones, sil_phones)
    _write_list(phones_dir, "nonsilence", phones, nonsil_phones)
    _write_list(phones_dir, "optional_silence", phones, [config.sil_phone])
    _write_list(phones_dir, "disambig", phones, disambig_syms)
    _write_list(phones_dir, "context_indep", phones, sil_phones)
    _write_list(phones_dir, "wdisambig", phones, ["#0"])
    atomic_write_text(phones_dir / "wdisambig_phones.int", f"{phones['#0']}\n")
    atomic_write_text(phones_dir / "wdisambig_words.int", f"{words['#0']}\n")

    groups = [
        _position_variants(p, silence=p in base_sil) if pos_dep else [p]
        for p in [*base_sil, *base_nonsil]
    ]
    _write_rows(phones_dir, "sets", phones, groups)
    _write_rows(phones_dir, "roots", phones, [["shared", "split", *g] for g in groups])
    questions = [sil_phones, nonsil_phones] if base_nonsil else [sil_phones]
    if pos_dep:
        questions += [[f"{p}_{pos}" for p in base_nonsil] for pos in POSITIONS if base_nonsil]
    _write_rows(phones_dir, "extra_questions", phones, questions)
    align = [["<eps>", "<eps>", config.sil_phone]] + [[e.word, e.word, *e.pron] for e in entries]
    atomic_write_text(phones_dir / "align_lexicon.txt", "".join(" ".join(r) + "\n" for r in align))
    atomic_write_text(
        phones_dir / "align_lexicon.int",
        "".join(
            f"{words[r[0]]} {words[r[1]]} {' '.join(map(str, phones.ids(r[2:])))}\n" for r in align
        ),
    )
    boundary_files = [phones_dir / "word_boundary.txt", phones_dir / "word_boundary.int"]
    if pos_dep:
        kinds = [
            (p, "nonword" if p in base_sil else _BOUNDARY_NAMES[p[-1]])
            for p in [*sil_phones, *nonsil_phones]
        ]
        atomic_write_text(boundary_files[0], "".join(f"{p} {k}\n" for p, k in kinds))
        atomic_write_text(boundary_files[1], "".join(f"{phones[p]} {k}\n" for p, k in kinds))
    else:
        for stale in boundary_files:
            stale.unlink(missing_ok=True)

    topology = make_default_topology(
        nonsil_phone_ids=phones.ids(nonsil_phones),
        sil_phone_ids=phones.ids(sil_phones),
        num_nonsil_states=config.num_nonsil_states,
        num_sil_states=config.num_sil_states,
    )
    topology.write(out / "topo")

    word_ids = np.array([words[e.word] for e in entries], dtype=np.int64)
    probs = np.array([e.prob for e in entries], dtype=np.float64)
    plain = [phones.ids(e.pron) for e in entries]
    l_fst = make_lexicon_fst(
        word_ids=word_ids,
        prons=plain,
        pron_probs=probs,
        sil_prob=config.sil_prob,
        sil_phone_id=phones[config.sil_phone],
    )
    kaldifst.arcsort(l_fst, sort_type="olabel")
    _write_fst(l_fst, out / "L.fst")
    with_disambig = [
        p + [phones[f"#{d}"]] if d else p for p, d in zip(plain, disambig, strict=True)
    ]
    l_disambig = make_lexicon_fst(
        word_ids=word_ids,
        prons=with_disambig,
        pron_probs=probs,
        sil_prob=config.sil_prob,
        sil_phone_id=phones[config.sil_phone],
        sil_disambig_id=phones[f"#{num_disambig}"],
    )
    kaldifst.add_self_loops(l_disambig, isyms=[phones["#0"]], osyms=[words["#0"]])
    kaldifst.arcsort(l_disambig, sort_type="olabel")
    _write_fst(l_disambig, out / "L_disambig.fst")
    return read_lang(out)


def read_lang(lang_dir: str | os.PathLike) -> Lang:
    """Read a lang directory written by :func:`prepare_lang` (or Kaldi's prepare_lang.sh)."""
    path = Path(lang_dir)
    if not path.is_dir():
        raise LangError(f"{path}: lang directory not found")
    config_path = path / "lang_config.json"
    if config_path.is_file():
        config = LangConfig.from_json(_read_text(config_path), source=str(config_path))
    else:
        config = LangConfig()
    phones = read_symbol_table(path / "phones.txt")
    words = read_symbol_table(path / "words.txt")
    phones_dir = path / "phones"

    def symbols_of(name: str) -> tuple[str, ...]:
        ids = read_int_list(phones_dir / f"{name}.int")
        for sym_id in ids:
            if not phones.has_id(sym_id):
                raise LangError(f"{phones_dir / name}.int: phone id {sym_id} not in phones.txt")
        return tuple(phones.symbols(ids))

    optional = symbols_of("optional_silence")
    if len(optional) != 1:
        raise LangError(f"{phones_dir}/optional_silence.int: expected exactly one phone")
    if "#0" not in words:
        raise LangError(f"{path}/words.txt: has no #0 (word disambiguation symbol)")
    oov_word = _read_text(path / "oov.txt").strip()
    if oov_word not in words:
        raise LangError(f"{path}/oov.txt: OOV word {oov_word!r} is not in words.txt")
    disambig_ids = tuple(phones.ids(symbols_of("disambig")))
    if not disambig_ids or phones.symbol(disambig_ids[0]) != "#0":
        raise LangError(f"{phones_dir}/disambig.int: must start with #0")
    return Lang(
        path=path,
        config=config,
        phones=phones,
        words=words,
        silence_phones=symbols_of("silence"),
        nonsilence_phones=symbols_of("nonsilence"),
        optional_silence=optional[0],
        disambig_phone_ids=disambig_ids,
        word_disambig_id=words["#0"],
        oov_word=oov_word,
        topology=read_topology(path / "topo"),
    )
