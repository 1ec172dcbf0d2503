"""Tests for asr.lang.lexicon: dictionary readers, restriction, disambiguation.

Oracles: the raw dictionary files themselves (counted with independent code
here), and the defining property of Kaldi's disambiguation: after appending
the ``#n`` symbols no pronunciation is a prefix of, or equal to, another.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asr.errors import LangError
from asr.lang.lexicon import (
    Lexicon,
    LexiconEntry,
    add_disambig_symbols,
    read_lexicon,
    read_vocabulary,
)

DIGITS = ["ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"]


def test_an4_dic(an4_dir):
    path = an4_dir / "etc" / "an4.dic"
    lex = read_lexicon(path)
    raw = [line.split() for line in path.read_text().splitlines() if line.strip()]
    assert len(lex) == len(raw)
    assert set(lex.words) == {re.sub(r"\(\d+\)$", "", r[0]) for r in raw}
    assert lex.prons("A") == [(("AH",), 1.0), (("EY",), 1.0)]
    assert lex.prons("EIGHTH") == [(("EY", "T", "TH"), 1.0), (("EY", "TH"), 1.0)]
    phone_list = (an4_dir / "etc" / "an4.phone").read_text().split()
    assert set(lex.phones) <= set(phone_list)
    assert not lex.silence_phones


def test_an4_filler(an4_dir):
    lex = read_lexicon(an4_dir / "etc" / "an4.filler")
    assert "<s>" not in lex and "</s>" not in lex
    assert lex.prons("<sil>") == [(("SIL",), 1.0)]
    assert lex.silence_phones == frozenset({"SIL"})
    merged = read_lexicon(an4_dir / "etc" / "an4.dic").merge(lex)
    assert "<sil>" in merged and merged.silence_phones == frozenset({"SIL"})


def test_cmudict_digits(cmudict_dir):
    lex = read_lexicon(cmudict_dir / "cmudict.dict", words=DIGITS, uppercase=True)
    assert set(lex.words) == set(DIGITS)
    # cmudict: zero Z IH1 R OW0 / zero(2) Z IY1 R OW0; stress stripped
    assert lex.prons("ZERO") == [(("Z", "IH", "R", "OW"), 1.0), (("Z", "IY", "R", "OW"), 1.0)]
    assert lex.prons("SEVEN") == [(("S", "EH", "V", "AH", "N"), 1.0)]
    symbols = set((cmudict_dir / "cmudict.phones").read_text().split()[::2])
    assert set(lex.phones) <= symbols
    kept = read_lexicon(
        cmudict_dir / "cmudict.dict", words=["ZERO"], uppercase=True, strip_stress=False
    )
    assert kept.prons("ZERO")[0][0] == ("Z", "IH1", "R", "OW0")


def test_cmudict_comments_and_variant_dedup(cmudict_dir):
    lex = read_lexicon(cmudict_dir / "cmudict.dict", words=["AALBORG", "EIGHTEEN"], uppercase=True)
    # aalborg AO1 L B AO0 R G # place, danish / aalborg(2) AA1 L B AO0 R G
    assert [p for p, _ in lex.prons("AALBORG")] == [
        ("AO", "L", "B", "AO", "R", "G"),
        ("AA", "L", "B", "AO", "R", "G"),
    ]
    # eighteen EY0 T IY1 N / eighteen(2) EY1 T IY1 N collapse once stress is gone
    assert lex.prons("EIGHTEEN") == [(("EY", "T", "IY", "N"), 1.0)]


def test_unknown_words_are_listed(cmudict_dir, tmp_path):
    with pytest.raises(LangError, match=r"2 word\(s\) not in .*cmudict\.dict: QWXZ ZZYZX"):
        read_lexicon(cmudict_dir / "cmudict.dict", words=["ONE", "QWXZ", "ZZYZX"], uppercase=True)
    lex = read_lexicon(
        cmudict_dir / "cmudict.dict", words=["ONE", "QWXZ"], uppercase=True, allow_missing=True
    )
    assert lex.words == ("ONE",)
    small = Lexicon.from_pairs([("YES", "Y"), ("NO", "N")])
    with pytest.raises(LangError, match="MAYBE"):
        small.restrict(["YES", "MAYBE"])
    assert small.restrict(["YES", "<s>"]).words == ("YES",)


def test_kaldi_lexicon_and_lexiconp(tmp_path):
    plain = tmp_path / "lexicon.txt"
    plain.write_text("YES Y EH S\nNO N OW\n")
    lex = read_lexicon(plain)
    assert lex.prons("YES") == [(("Y", "EH", "S"), 1.0)]
    withp = tmp_path / "lexiconp.txt"
    withp.write_text("YES 1.0 Y EH S\nYES 0.5 Y AA\nNO 1 N OW\n")
    lex = read_lexicon(withp)
    assert lex.prons("YES") == [(("Y", "EH", "S"), 1.0), (("Y", "AA"), 0.5)]
    assert lex.has_probs
    again = tmp_path / "again_lexiconp.txt"
    lex.write(again, with_probs=True)
    assert read_lexicon(again) == lex


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("lexiconp.txt", "YES 1.0 Y\nNO high N\n", r"lexiconp\.txt:2: probability 'high'"),
        ("lexiconp.txt", "YES 1.0 Y\nNO 1.5 N\n", r"lexiconp\.txt:2: .*probability 1\.5"),
        ("lexicon.txt", "YES Y\n\nNO\n", r"lexicon\.txt:3: word 'NO' has an empty"),
        ("lexicon.txt", "YES Y\nNO #1\n", r"lexicon\.txt:2: .*reserved phone"),
        ("lexicon.txt", "<s> SIL\n", r"lexicon\.txt:1: '<s>' is reserved"),
        ("lexicon.txt", "YES Y\nNO <eps>\n", r"lexicon\.txt:2: .*reserved phone '<eps>'"),
    ],
)
def test_parse_errors_name_file_and_line(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(LangError, match=message):
        read_lexicon(path)


def test_merge_drops_repeats_and_duplicates_rejected():
    a = Lexicon.from_pairs([("YES", "Y"), ("NO", "N")])
    b = Lexicon.from_pairs([("NO", "N"), ("NO", "N OW")])
    assert a.merge(b).prons("NO") == [(("N",), 1.0), (("N", "OW"), 1.0)]
    with pytest.raises(LangError, match="duplicate entry NO N"):
        Lexicon(entries=(LexiconEntry("NO", ("N",)), LexiconEntry("NO", ("N",))))


def test_disambig_kaldi_example():
    prons = [("A",), ("A",), ("A", "B"), ("C",), ("A", "B", "C"), ("D", "E"), ("A",)]
    disambig, max_disambig = add_disambig_symbols(prons)
    # A: homophone x3 and prefix -> #1 #2 #3; A B: prefix of A B C -> #1; C, D E: unique
    assert disambig == [1, 2, 1, 0, 0, 0, 3]
    assert max_disambig == 3
    assert add_disambig_symbols([("Y",), ("N",)]) == ([0, 0], 0)


@settings(max_examples=100, deadline=None)
@given(
    prons=st.lists(
        st.lists(st.sampled_from("abc"), min_size=1, max_size=4).map(tuple),
        min_size=1,
        max_size=12,
    )
)
def test_disambig_makes_prefix_free(prons):
    disambig, max_disambig = add_disambig_symbols(prons)
    marked = [p + ((f"#{d}",) if d else ()) for p, d in zip(prons, disambig, strict=True)]
    assert len(set(marked)) == len(marked)
    for i, p in enumerate(marked):
        for j, q in enumerate(marked):
            if i != j:
                assert q[: len(p)] != p, (p, q)
    assert max_disambig == max(disambig)
    # unambiguous entries get none
    for p, d in zip(prons, disambig, strict=True):
        ambiguous = prons.count(p) > 1 or any(len(q) > len(p) and q[: len(p)] == p for q in prons)
        assert (d > 0) == ambiguous


def test_read_vocabulary(tmp_path):
    words = tmp_path / "words"
    words.write_text("YES\nNO\n\n")
    assert read_vocabulary(words) == {"YES", "NO"}
    text = tmp_path / "text"
    text.write_text("utt1 <s> YES NO </s>\nutt2 NO\n")
    assert read_vocabulary(text) == {"YES", "NO"}
    assert read_vocabulary(words, kind="text") == set()
