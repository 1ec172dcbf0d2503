"""LM rescoring of word lattices vs independent computations: OpenFst shortest paths through
G.fst for the old LM, ``NgramModel.sentence_logprobs`` for the new one."""

from __future__ import annotations

import math

import kaldifst
import numpy as np
import pytest

from asr.errors import DecodeError
from asr.graph.grammar import arpa_to_g
from asr.lang.arpa import read_arpa, write_arpa
from asr.lang.lm import NgramConfig, train_ngram
from asr.lang.symbols import read_symbol_table
from asr.lattice import WordLattice
from asr.lattice.rescore import GrammarFst, rescore
from tests.support.openfst_oracle import best_cost_of_words

WORDS = ["A", "B", "C", "D"]
TEXT = [
    "A B C", "A B D", "B C A", "C A B C", "D D A", "A C", "B B C D", "A B C D A",
    "C D", "B A", "D A B", "A A B C",
]  # fmt: skip


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    words_txt = root / "words.txt"
    symbols = ["<eps>", *WORDS, "<s>", "</s>", "#0"]
    words_txt.write_text("".join(f"{w} {i}\n" for i, w in enumerate(symbols)))
    sentences = [t.split() for t in TEXT]
    out = {}
    for order in (2, 3):
        model = train_ngram(sentences, vocab=WORDS, config=NgramConfig(order=order, unk=None))
        write_arpa(model, root / f"lm{order}.arpa")
        arpa_to_g(root / f"lm{order}.arpa", words_txt=words_txt, out_path=root / f"G{order}.fst")
        out[order] = (read_arpa(root / f"lm{order}.arpa"), root / f"G{order}.fst")
    return out, read_symbol_table(words_txt), symbols.index("#0")


def g_cost(g_path, word_ids) -> float:
    """OpenFst: best cost of a word sequence through G (back-off labels made epsilon)."""
    g = kaldifst.StdVectorFst.read(str(g_path))
    text = g.to_str()
    fst = kaldifst.StdVectorFst()
    rows = [line.split() for line in text.strip().splitlines()]
    n = 1 + max(max(int(r[0]), int(r[1]) if len(r) >= 4 else 0) for r in rows)
    for _ in range(n):
        fst.add_state()
    fst.start = int(rows[0][0])
    for r in rows:
        if len(r) >= 4:
            label = int(r[3])  # output side: back-off arcs have epsilon there
            fst.add_arc(
                state=int(r[0]),
                arc=kaldifst.StdArc(label, label, float(r[4]) if len(r) > 4 else 0.0, int(r[1])),
            )
        else:
            fst.set_final(state=int(r[0]), weight=float(r[1]) if len(r) > 1 else 0.0)
    return best_cost_of_words(fst, word_ids)


def arpa_cost(model, words) -> float:
    return -float(np.sum(model.sentence_logprobs(words))) * math.log(10.0)


def word_loop_lattice(rng, symbols, g_path, num_words=4, length=3):
    """A deterministic word lattice: every sequence of ``length`` words (a tree), with
    graph cost = G's cost of the sequence + a random non-LM part, random acoustics."""
    arcs, finals = [], {}
    states = [(0, ())]
    n = 1
    extra = {}
    for _ in range(length):
        nxt = []
        for s, words in states:
            for w in range(1, num_words + 1):
                arcs.append([s, n, w, 0.0, float(rng.uniform(0, 5)), (w, w)])
                nxt.append((n, (*words, w)))
                n += 1
        states = nxt
    for s, words in states:
        extra[words] = float(rng.uniform(0, 1))
        finals[s] = (g_cost(g_path, words) + extra[words], 0.0, ())
    return WordLattice.from_parts(n, [tuple(a) for a in arcs], finals, 2 * length, 0.1), extra


def test_rescoring_with_the_decoding_lm_changes_no_path(lms):
    models, symbols, backoff = lms
    model2, g2 = models[2]
    lat, _ = word_loop_lattice(np.random.default_rng(0), symbols, g2)
    out = rescore(
        lat, old_g=GrammarFst(g2, backoff_label=backoff), new_lm=model2, word_symbols=symbols
    )
    before = {p.word_ids: p.cost for p in lat.nbest(1000)}
    after = {p.word_ids: p.cost for p in out.nbest(1000)}
    assert out.is_deterministic() and after.keys() == before.keys()
    # the same LM: only where G's cheaper back-off path beat the listed n-gram may it differ
    same = sum(abs(after[w] - before[w]) < 1e-4 for w in before)
    for w in before:
        assert after[w] == pytest.approx(
            before[w] - g_cost(g2, w) + arpa_cost(model2, [symbols.symbol(i) for i in w]), abs=1e-4
        )
    assert same >= 0.9 * len(before)


def test_rescoring_with_a_trigram_is_old_minus_g_plus_arpa(lms):
    models, symbols, backoff = lms
    model3, _ = models[3]
    _, g2 = models[2]
    lat, _ = word_loop_lattice(np.random.default_rng(1), symbols, g2)
    out = rescore(
        lat, old_g=GrammarFst(g2, backoff_label=backoff), new_lm=model3, word_symbols=symbols,
        lm_scale=0.5,
    )  # fmt: skip
    before = {p.word_ids: p for p in lat.nbest(1000)}
    for p in out.nbest(1000):
        words = [symbols.symbol(i) for i in p.word_ids]
        expected = (
            before[p.word_ids].graph_cost - g_cost(g2, p.word_ids) + 0.5 * arpa_cost(model3, words)
        )
        assert p.graph_cost == pytest.approx(expected, abs=1e-4)
        assert p.acoustic_cost == pytest.approx(before[p.word_ids].acoustic_cost, abs=1e-6)
        np.testing.assert_array_equal(p.alignment, before[p.word_ids].alignment)


def test_rescoring_lm_without_a_lattice_word_is_a_clear_error(lms):
    models, symbols, backoff = lms
    _, g2 = models[2]
    small = train_ngram([["A", "B"]], vocab=["A", "B"], config=NgramConfig(order=2, unk=None))
    lat, _ = word_loop_lattice(np.random.default_rng(2), symbols, g2, num_words=3, length=1)
    with pytest.raises(DecodeError, match="no word 'C'"):
        rescore(
            lat, old_g=GrammarFst(g2, backoff_label=backoff), new_lm=small, word_symbols=symbols
        )
