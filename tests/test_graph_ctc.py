"""Tests for asr.graph.ctc: the CTC topology T, TLG and `asr graph mktlg`.

Oracles: the CTC collapse rule written out in Python (merge repeats, drop blanks) against T
run through OpenFst composition; the lexicon against TLG's paths.
"""

from __future__ import annotations

import kaldifst
import numpy as np
import pytest

from asr.cli.main import main
from asr.errors import GraphError
from asr.graph.ctc import make_ctc_topo, mktlg
from asr.graph.hmm_fst import FstArrays
from asr.graph.mkgraph import GraphInfo
from asr.lang import Lexicon, prepare_lang

LEXICON = [("YES", "Y EH S"), ("YEAH", "Y EH"), ("NO", "N OW")]


def collapse(tokens: list[int]) -> list[int]:
    out, prev = [], None
    for t in tokens:
        if t != prev and t != 0:
            out.append(t)
        prev = t
    return out


def outputs_for_input(fst: kaldifst.StdVectorFst, ilabels: list[int]) -> list[int] | None:
    """Output labels of the best path of ``fst`` reading ``ilabels``; None when none exists."""
    graph = fst.copy()
    kaldifst.arcsort(graph, sort_type="ilabel")
    composed = kaldifst.compose(kaldifst.make_linear_acceptor(ilabels), graph)
    if composed.num_states == 0:
        return None
    ok, _, olabels, _ = kaldifst.get_linear_symbol_sequence(kaldifst.shortest_path(composed))
    assert ok
    return list(olabels)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("tlg")
    lang = prepare_lang(Lexicon.from_pairs(LEXICON), root / "lang")
    w = lang.words
    g = "".join(f"0 0 {w[x]} {w[x]} 1.0\n" for x in ("YES", "YEAH", "NO")) + "0 1.5\n"
    kaldifst.compile(g).write(str(root / "lang" / "G.fst"))
    info = mktlg(root / "lang", None, root / "lang" / "G.fst", root / "graph")
    fst = kaldifst.StdVectorFst.read(str(root / "graph" / "TLG.fst"))
    return root, lang, info, fst


def test_ctc_topo_applies_the_collapse_rule():
    num_tokens = 5
    topo = make_ctc_topo(num_tokens).to_fst()
    rng = np.random.default_rng(0)
    for length in (1, 2, 5, 12, 30):
        for _ in range(5):
            tokens = rng.integers(0, num_tokens, size=length).tolist()
            outputs = outputs_for_input(topo, [t + 1 for t in tokens])
            assert outputs == collapse(tokens), tokens
    assert outputs_for_input(topo, [1, 1, 1]) == []  # blanks only


def test_ctc_topo_structure():
    topo = make_ctc_topo(3, olabels=[0, 7, 9], passthrough=[20, 21])
    assert topo.num_states == 3 and np.all(topo.final == 0)
    assert topo.num_arcs == 9 + 3 * 2
    loops = topo.ilabel > 3
    assert np.all(topo.src[loops] == topo.dst[loops])
    assert sorted(set(topo.olabel[loops].tolist())) == [20, 21]
    moves = ~loops
    # arriving in state j consumes token j; emits its label unless a repeat or blank
    assert np.all(topo.ilabel[moves] == topo.dst[moves] + 1)
    emit = topo.olabel[moves] > 0
    assert np.all(topo.src[moves][emit] != topo.dst[moves][emit])
    assert set(topo.olabel[moves][emit].tolist()) == {7, 9}
    with pytest.raises(GraphError, match="at least one token"):
        make_ctc_topo(1)
    with pytest.raises(GraphError, match="blank to 0"):
        make_ctc_topo(2, olabels=[1, 2])


def test_tlg_files(setup):
    root, lang, info, fst = setup
    out = root / "graph"
    num_tokens = lang.num_phones + 1
    assert GraphInfo.read(out) == info
    assert info.graph_type == "tlg" and info.num_pdfs == num_tokens
    assert info.num_ilabels == num_tokens + 1
    tokens = (out / "tokens.txt").read_text().splitlines()
    assert tokens[0] == "<blk> 0"
    real = [s for s, i in lang.phones.pairs if i and i not in lang.disambig_phone_ids]
    assert tokens[1:] == [f"{s} {k}" for k, s in enumerate(real, 1)]
    pdfs = [int(v) for v in (out / "ilabel_to_pdf.int").read_text().split()]
    assert pdfs == list(range(-1, num_tokens))
    arrays = FstArrays.read(out / "TLG.fst")
    assert arrays.ilabel.max() <= num_tokens  # disambiguation symbols became epsilons
    assert (arrays.num_states, arrays.num_arcs) == (info.num_states, info.num_arcs)
    assert (out / "words.txt").read_text() == (lang.path / "words.txt").read_text()


@pytest.mark.parametrize("words", [["YES"], ["YEAH", "NO"], ["NO", "NO", "YES", "YEAH"]])
def test_tlg_best_path_collapses_to_the_pronunciation(setup, words):
    _, lang, _, fst = setup
    graph = fst.copy()
    kaldifst.arcsort(graph, sort_type="olabel")
    restricted = kaldifst.compose(graph, kaldifst.make_linear_acceptor(lang.words.ids(words)))
    ok, ilabels, olabels, _ = kaldifst.get_linear_symbol_sequence(
        kaldifst.shortest_path(restricted)
    )
    assert ok and lang.words.symbols(olabels) == words
    token_phones = ["<blk>", *lang.phones.symbols(
        i for _, i in lang.phones.pairs if i and i not in lang.disambig_phone_ids)]  # fmt: skip
    phones = [token_phones[t] for t in collapse([i - 1 for i in ilabels])]
    phones = [p for p in phones if p not in lang.silence_phones]
    expected = [ph for w in words for ph in dict(LEXICON)[w].split()]
    assert phones == expected


def test_tlg_blanks_skipped_and_repeated(setup):
    root, lang, _, fst = setup
    tokens = {s: k for k, s in enumerate(
        line.split()[0] for line in (root / "graph" / "tokens.txt").read_text().splitlines())}  # fmt: skip

    def decode(seq: list[str]) -> list[str] | None:
        out = outputs_for_input(fst, [tokens[s] + 1 for s in seq])
        return None if out is None else lang.words.symbols(o for o in out if o)

    assert decode(["Y", "EH"]) == ["YEAH"]  # no blank at all
    assert decode(["<blk>", "<blk>", "Y", "Y", "<blk>", "EH", "EH", "EH", "<blk>"]) == ["YEAH"]
    assert decode(["Y", "Y", "EH", "S"]) == ["YES"]  # repeats merge
    assert decode(["N", "OW", "<blk>", "N", "OW"]) == ["NO", "NO"]
    assert decode(["Y", "<blk>", "Y", "EH"]) is None  # blank splits a repeat: Y Y EH is no word
    assert decode(["N", "OW", "SIL", "SIL", "Y", "EH"]) == ["NO", "YEAH"]  # optional silence


def test_mktlg_tokens_and_errors(setup, tmp_path, capsys):
    root, lang, _, _ = setup
    g = root / "lang" / "G.fst"
    with pytest.raises(GraphError, match="not phones"):
        mktlg(root / "lang", ["Y", "ZZ"], g, tmp_path / "x")
    with pytest.raises(GraphError, match="distinct real phones"):
        mktlg(root / "lang", ["Y", "Y"], g, tmp_path / "x")
    with pytest.raises(GraphError, match="G.fst not found"):
        mktlg(root / "lang", None, tmp_path / "nope.fst", tmp_path / "x")
    # a custom token order is honoured in tokens.txt and in the graph's input labels
    (tmp_path / "tokens").write_text("<blk> 0\nY 1\nEH 2\nS 3\nN 4\nOW 5\nSIL 6\nSPN 7\n")
    args = ["graph", "mktlg", str(root / "lang"), str(tmp_path / "g"), "--tokens"]
    assert main([*args, str(tmp_path / "tokens")]) == 0
    assert "8 tokens incl. blank" in capsys.readouterr().out
    assert (tmp_path / "g" / "tokens.txt").read_text() == (tmp_path / "tokens").read_text()
    fst = kaldifst.StdVectorFst.read(str(tmp_path / "g" / "TLG.fst"))
    assert lang.words.symbols(outputs_for_input(fst, [1 + 1, 2 + 1, 3 + 1])) == ["YES"]
