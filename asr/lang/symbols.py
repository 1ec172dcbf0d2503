"""Symbol tables: the ``symbol id`` text files of Kaldi and OpenFst.

A :class:`SymbolTable` is an immutable two-way map between symbols (phones,
words, tokens) and non-negative integer ids, read from and written to the
``phones.txt`` / ``words.txt`` format (one ``symbol id`` pair per line).

>>> table = SymbolTable.from_symbols(["<eps>", "YES", "NO"])
>>> table["NO"], table.symbol(1), len(table)
(2, 'YES', 3)
>>> table.to_text()
'<eps> 0\\nYES 1\\nNO 2\\n'
>>> SymbolTable.from_text(table.to_text()) == table
True
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from asr.errors import LangError
from asr.fileio import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover - typing only
    import kaldifst

__all__ = ["SymbolTable", "read_symbol_table", "read_int_list"]


@dataclass(frozen=True)
class SymbolTable:
    """An immutable symbol <-> id map, in the order the pairs were given.

    ``pairs`` is a tuple of ``(symbol, id)``; symbols and ids are both unique
    and ids are non-negative. Use :meth:`from_symbols`, :meth:`from_text` or
    :func:`read_symbol_table` rather than building ``pairs`` by hand.
    """

    pairs: tuple[tuple[str, int], ...]
    _to_id: dict[str, int] = field(init=False, repr=False, compare=False)
    _to_symbol: dict[int, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        to_id: dict[str, int] = {}
        to_symbol: dict[int, str] = {}
        for symbol, sym_id in self.pairs:
            _check_pair(symbol, sym_id, to_id, to_symbol, where="symbol table")
            to_id[symbol] = sym_id
            to_symbol[sym_id] = symbol
        object.__setattr__(self, "_to_id", to_id)
        object.__setattr__(self, "_to_symbol", to_symbol)

    # -- construction -------------------------------------------------------
    @classmethod
    def from_symbols(cls, symbols: Iterable[str], *, start: int = 0) -> SymbolTable:
        """Number ``symbols`` consecutively from ``start`` in the given order."""
        return cls(pairs=tuple((s, i) for i, s in enumerate(symbols, start)))

    @classmethod
    def from_text(cls, text: str, *, source: str = "<text>") -> SymbolTable:
        """Parse Kaldi/OpenFst text (``symbol id`` per line); errors name ``source``."""
        to_id: dict[str, int] = {}
        to_symbol: dict[int, str] = {}
        pairs: list[tuple[str, int]] = []
        for line_no, line in enumerate(text.splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            where = f"{source}:{line_no}"
            if len(fields) != 2:
                raise LangError(f"{where}: expected 'symbol id', got {line.strip()!r}")
            symbol, id_text = fields
            try:
                sym_id = int(id_text)
            except ValueError:
                raise LangError(
                    f"{where}: id {id_text!r} of {symbol!r} is not an integer"
                ) from None
            _check_pair(symbol, sym_id, to_id, to_symbol, where=where)
            to_id[symbol] = sym_id
            to_symbol[sym_id] = symbol
            pairs.append((symbol, sym_id))
        return cls(pairs=tuple(pairs))

    @classmethod
    def read(cls, path: str | os.PathLike) -> SymbolTable:
        """Read a ``phones.txt``/``words.txt`` style file."""
        return read_symbol_table(path)

    # -- lookup ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[str]:
        return (symbol for symbol, _ in self.pairs)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._to_id

    def __getitem__(self, symbol: str) -> int:
        try:
            return self._to_id[symbol]
        except KeyError:
            raise LangError(f"symbol {symbol!r} is not in the symbol table") from None

    def get(self, symbol: str, default: int | None = None) -> int | None:
        """The id of ``symbol``, or ``default`` when it is absent."""
        return self._to_id.get(symbol, default)

    def symbol(self, sym_id: int) -> str:
        """The symbol with id ``sym_id``; :class:`LangError` if there is none."""
        try:
            return self._to_symbol[int(sym_id)]
        except KeyError:
            raise LangError(f"id {sym_id} is not in the symbol table") from None

    def has_id(self, sym_id: int) -> bool:
        return int(sym_id) in self._to_symbol

    def ids(self, symbols: Iterable[str]) -> list[int]:
        """Map a sequence of symbols to ids (error on the first unknown one)."""
        return [self[s] for s in symbols]

    def symbols(self, ids: Iterable[int]) -> list[str]:
        """Map a sequence of ids to symbols (error on the first unknown one)."""
        return [self.symbol(i) for i in ids]

    @property
    def max_id(self) -> int:
        """The largest id (-1 for an empty table)."""
        return max(self._to_symbol, default=-1)

    # -- output ---------------------------------------------------------------
    def to_text(self) -> str:
        """Kaldi text format: ``symbol id`` per line, in table order."""
        return "".join(f"{symbol} {sym_id}\n" for symbol, sym_id in self.pairs)

    def write(self, path: str | os.PathLike) -> None:
        """Write the table atomically in Kaldi text format."""
        atomic_write_text(path, self.to_text())

    def to_kaldifst(self, name: str = "") -> kaldifst.SymbolTable:
        """The same table as a ``kaldifst.SymbolTable`` (for FST drawing/printing)."""
        import kaldifst

        table = kaldifst.SymbolTable(name) if name else kaldifst.SymbolTable()
        for symbol, sym_id in self.pairs:
            table.add_symbol(symbol, sym_id)
        return table


def _check_pair(
    symbol: str, sym_id: int, to_id: dict[str, int], to_symbol: dict[int, str], *, where: str
) -> None:
    if not symbol or any(c.isspace() for c in symbol):
        raise LangError(f"{where}: symbol {symbol!r} is empty or contains whitespace")
    if sym_id < 0:
        raise LangError(f"{where}: id {sym_id} of {symbol!r} is negative")
    if symbol in to_id:
        raise LangError(f"{where}: duplicate symbol {symbol!r} (ids {to_id[symbol]} and {sym_id})")
    if sym_id in to_symbol:
        raise LangError(
            f"{where}: duplicate id {sym_id} (symbols {to_symbol[sym_id]!r} and {symbol!r})"
        )


def read_symbol_table(path: str | os.PathLike) -> SymbolTable:
    """Read a Kaldi/OpenFst symbol table; errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LangError(f"{path}: symbol table not found") from None
    except UnicodeDecodeError as err:
        raise LangError(f"{path}: not UTF-8 text ({err})") from None
    return SymbolTable.from_text(text, source=str(path))


def read_int_list(path: str | os.PathLike) -> tuple[int, ...]:
    """Read a Kaldi ``*.int`` list (whitespace-separated integers, e.g. ``disambig.int``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LangError(f"{path}: file not found") from None
    values: list[int] = []
    for line_no, line in enumerate(text.splitlines(), 1):
        for token in line.split():
            try:
                values.append(int(token))
            except ValueError:
                raise LangError(f"{path}:{line_no}: {token!r} is not an integer") from None
    return tuple(values)


def symbols_to_int_text(table: SymbolTable, symbols: Sequence[str]) -> str:
    """One id per line for ``symbols`` (the ``*.int`` twin of a ``*.txt`` list)."""
    return "".join(f"{table[s]}\n" for s in symbols)
