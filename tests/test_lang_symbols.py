"""Tests for asr.lang.symbols: Kaldi/OpenFst symbol tables.

Oracle: OpenFst's own text reader (``kaldifst.SymbolTable.read_text``) must
read what we write and agree on every id.
"""

from __future__ import annotations

import kaldifst
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asr.errors import LangError
from asr.lang.symbols import SymbolTable, read_int_list, read_symbol_table

_SYMBOL = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
    min_size=1,
    max_size=8,
).filter(lambda s: not any(c.isspace() for c in s))


def test_round_trip_and_openfst_reads_it(tmp_path):
    table = SymbolTable.from_symbols(["<eps>", "SIL", "AA", "#0", "#1"])
    path = tmp_path / "phones.txt"
    table.write(path)
    assert path.read_text() == "<eps> 0\nSIL 1\nAA 2\n#0 3\n#1 4\n"
    again = read_symbol_table(path)
    assert again == table
    assert list(again) == ["<eps>", "SIL", "AA", "#0", "#1"]
    openfst = kaldifst.SymbolTable.read_text(str(path))
    assert openfst.num_symbols() == len(table)
    for symbol, sym_id in table.pairs:
        assert openfst.find(symbol) == sym_id
        assert openfst.find(sym_id) == symbol


def test_lookup_both_ways_and_errors():
    table = SymbolTable(pairs=(("<eps>", 0), ("YES", 5), ("NO", 2)))
    assert table["YES"] == 5 and table.symbol(2) == "NO"
    assert table.ids(["NO", "YES"]) == [2, 5]
    assert table.symbols([0, 5]) == ["<eps>", "YES"]
    assert table.max_id == 5 and "NO" in table and "MAYBE" not in table
    assert table.get("MAYBE") is None and table.get("MAYBE", -1) == -1
    with pytest.raises(LangError, match="MAYBE"):
        table["MAYBE"]
    with pytest.raises(LangError, match="id 3"):
        table.symbol(3)


def test_to_kaldifst_matches():
    table = SymbolTable(pairs=(("<eps>", 0), ("a", 1), ("b", 7)))
    kt = table.to_kaldifst()
    assert [kt.find(i) for i in (0, 1, 7)] == ["<eps>", "a", "b"]
    assert kt.find("b") == 7


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<eps> 0\nA 1\nA 2\n", r"words\.txt:3: duplicate symbol 'A'"),
        ("<eps> 0\nA 1\nB 1\n", r"words\.txt:3: duplicate id 1"),
        ("<eps> 0\nA one\n", r"words\.txt:2: id 'one' of 'A' is not an integer"),
        ("<eps> 0\nA 1 2\n", r"words\.txt:2: expected 'symbol id'"),
        ("<eps> 0\n\nA -3\n", r"words\.txt:3: id -3 of 'A' is negative"),
    ],
)
def test_parse_errors_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "words.txt"
    path.write_text(text)
    with pytest.raises(LangError, match=message):
        read_symbol_table(path)


def test_missing_file(tmp_path):
    with pytest.raises(LangError, match="not found"):
        read_symbol_table(tmp_path / "nope.txt")


def test_read_int_list(tmp_path):
    path = tmp_path / "disambig.int"
    path.write_text("40\n41 42\n")
    assert read_int_list(path) == (40, 41, 42)
    path.write_text("40\n#1\n")
    with pytest.raises(LangError, match=r"disambig\.int:2: '#1' is not an integer"):
        read_int_list(path)


@settings(max_examples=50, deadline=None)
@given(symbols=st.lists(_SYMBOL, min_size=1, max_size=30, unique=True), start=st.integers(0, 9))
def test_text_round_trip_property(symbols, start):
    table = SymbolTable.from_symbols(symbols, start=start)
    again = SymbolTable.from_text(table.to_text())
    assert again == table
    assert [again[s] for s in symbols] == list(range(start, start + len(symbols)))
