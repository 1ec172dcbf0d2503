"""Tests for asr.graph.grammar: ARPA -> G.fst through kaldilm, and ``asr lm to-g``.

Oracles: OpenFst's ``fstinfo`` reads the file; the best path through G for a sentence costs
``-ln P(sentence)`` where P is computed from the ARPA file by a back-off recursion written here.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import kaldifst
import pytest

from asr.cli.main import main
from asr.errors import GraphError, LmError
from asr.graph import arpa_to_g
from asr.graph.grammar import read_word_symbols
from asr.lang.lm import NgramConfig, read_arpa, train_ngram, write_arpa

BOS, EOS = "<s>", "</s>"


def an4_sentences(an4_dir: Path) -> list[list[str]]:
    lines = (an4_dir / "etc" / "an4_train.transcription").read_text().splitlines()
    return [line.split()[1:-2] for line in lines]


def write_words_txt(path: Path, words) -> dict[str, int]:
    """Kaldi words.txt: <eps> 0, the words, #0, <s>, </s>."""
    symbols = ["<eps>", *sorted(words), "#0", BOS, EOS]
    path.write_text("".join(f"{w} {i}\n" for i, w in enumerate(symbols)))
    return {w: i for i, w in enumerate(symbols)}


@pytest.fixture(scope="module")
def an4_lm(an4_dir, tmp_path_factory):
    """A KN trigram on AN4 (with 10 vocabulary words never seen), its ARPA and words.txt."""
    tmp = tmp_path_factory.mktemp("an4_lm")
    sentences = an4_sentences(an4_dir)
    vocab = {w for s in sentences for w in s} | {f"EXTRA{i}" for i in range(10)}
    model = train_ngram(sentences, vocab=vocab, config=NgramConfig(order=3))
    write_arpa(model, tmp / "lm.arpa")
    symbols = write_words_txt(tmp / "words.txt", vocab)
    return tmp, sentences, symbols


def arpa_log10_prob(entries, sentence: list[str], order: int) -> float:
    """log10 P(sentence </s> | <s>) by the back-off recursion over ARPA entries."""

    def logprob(word: str, history: tuple[str, ...]) -> float:
        if (*history, word) in entries:
            return entries[(*history, word)][0]
        bow = entries[history][1] if history in entries else 0.0
        return bow + logprob(word, history[1:])

    tokens = [BOS, *sentence, EOS]
    return sum(
        logprob(tokens[i], tuple(tokens[max(0, i - order + 1) : i])) for i in range(1, len(tokens))
    )


def best_path_cost(g: kaldifst.StdVectorFst, word_ids: list[int]) -> float:
    """Cost of the best path of G whose output is ``word_ids`` (compose G with an acceptor)."""
    acceptor = kaldifst.make_linear_acceptor(word_ids)
    best = kaldifst.shortest_path(kaldifst.compose(g, acceptor))
    ok, _, olabels, weight = kaldifst.get_linear_symbol_sequence(best)
    assert ok and [o for o in olabels if o != 0] == word_ids
    return float(weight.value)


def test_g_fst_is_readable_by_openfst(an4_lm, tmp_path):
    lm_dir, _, symbols = an4_lm
    out = arpa_to_g(lm_dir / "lm.arpa", words_txt=lm_dir / "words.txt", out_path=tmp_path / "G.fst")
    assert out == tmp_path / "G.fst" and out.stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == ["G.fst"]  # no temporary left behind
    fstinfo = shutil.which("fstinfo")
    if fstinfo is None:
        pytest.skip("OpenFst's fstinfo is not installed")
    info = subprocess.run([fstinfo, str(out)], capture_output=True, text=True, check=True).stdout
    fields = dict(line.rsplit(None, 1) for line in info.splitlines() if line.strip())
    assert fields["fst type"].strip() == "vector" and fields["arc type"].strip() == "standard"
    assert int(fields["# of states"]) > 100
    # Back-off arcs carry #0 on the input side, epsilon on the output side.
    g = kaldifst.StdVectorFst.read(str(out))
    disambig = symbols["#0"]
    backoff_arcs = [
        arc
        for state in range(g.num_states)
        for arc in kaldifst.ArcIterator(g, state)
        if arc.ilabel == disambig
    ]
    assert backoff_arcs and all(arc.olabel == 0 for arc in backoff_arcs)


def test_best_path_cost_is_minus_ln_arpa_probability(an4_lm, tmp_path):
    lm_dir, sentences, symbols = an4_lm
    g_path = arpa_to_g(
        lm_dir / "lm.arpa", words_txt=lm_dir / "words.txt", out_path=tmp_path / "G.fst"
    )
    g = kaldifst.StdVectorFst.read(str(g_path))
    kaldifst.arcsort(g, sort_type="olabel")
    model = read_arpa(lm_dir / "lm.arpa")
    entries = {k: (lp, bo) for n in (1, 2, 3) for k, lp, bo in model.ngrams(n)}
    tests = sentences[::25] + [["EXTRA3", "A", "EXTRA7"], ["TWO", "TWO", "TWO", "GO", "ENTER"]]
    for sentence in tests:
        expected = -arpa_log10_prob(entries, sentence, 3) * math.log(10)
        cost = best_path_cost(g, [symbols[w] for w in sentence])
        assert cost == pytest.approx(expected, rel=1e-5, abs=1e-4), sentence


@pytest.mark.parametrize("max_order", [1, 2])
def test_max_order_gives_the_lower_order_grammar(an4_lm, tmp_path, max_order):
    lm_dir, sentences, symbols = an4_lm
    g_path = arpa_to_g(
        lm_dir / "lm.arpa",
        words_txt=lm_dir / "words.txt",
        out_path=tmp_path / "G.fst",
        max_order=max_order,
    )
    g = kaldifst.StdVectorFst.read(str(g_path))
    kaldifst.arcsort(g, sort_type="olabel")
    model = read_arpa(lm_dir / "lm.arpa")
    # The proper lower-order model: n-grams up to max_order, and no back-off weights on the
    # top order (histories are shorter). kaldilm's own max_order keeps those weights.
    entries = {
        key: (lp, bo if n < max_order else 0.0)
        for n in range(1, max_order + 1)
        for key, lp, bo in model.ngrams(n)
    }
    for sentence in sentences[:200:20]:
        expected = -arpa_log10_prob(entries, sentence, max_order) * math.log(10)
        cost = best_path_cost(g, [symbols[w] for w in sentence])
        assert cost == pytest.approx(expected, rel=1e-5, abs=1e-4), sentence


def test_errors_are_clear(an4_lm, tmp_path):
    lm_dir, sentences, _ = an4_lm
    arpa, words = lm_dir / "lm.arpa", lm_dir / "words.txt"
    lines = words.read_text().splitlines()
    missing = tmp_path / "words_missing.txt"
    missing.write_text("\n".join(x for x in lines if x.split()[0] not in ("SEVEN", "EXTRA2")))
    with pytest.raises(
        GraphError, match=r"2 word\(s\) of the ARPA file are not in .*: EXTRA2 SEVEN"
    ):
        arpa_to_g(arpa, words_txt=missing, out_path=tmp_path / "G.fst")
    no_disambig = tmp_path / "words_no_disambig.txt"
    no_disambig.write_text("\n".join(x for x in lines if not x.startswith("#0 ")))
    with pytest.raises(GraphError, match="missing symbol.* #0"):
        arpa_to_g(arpa, words_txt=no_disambig, out_path=tmp_path / "G.fst")
    bad_words = tmp_path / "words_bad.txt"
    bad_words.write_text("<eps> 0\nA one\n")
    with pytest.raises(GraphError, match="words_bad.txt:2"):
        arpa_to_g(arpa, words_txt=bad_words, out_path=tmp_path / "G.fst")
    with pytest.raises(GraphError, match="not found"):
        arpa_to_g(arpa, words_txt=tmp_path / "none.txt", out_path=tmp_path / "G.fst")
    bad_arpa = tmp_path / "bad.arpa"
    bad_arpa.write_text(arpa.read_text().replace("\\2-grams:", "\\2-gram:"))
    with pytest.raises(LmError, match=r"bad.arpa:\d+: expected '\\2-grams:'"):
        arpa_to_g(bad_arpa, words_txt=words, out_path=tmp_path / "G.fst")
    with pytest.raises(GraphError, match="max_order"):
        arpa_to_g(arpa, words_txt=words, out_path=tmp_path / "G.fst", max_order=0)
    no_bos = tmp_path / "no_bos.arpa"
    model = train_ngram([["A"]], config=NgramConfig(order=1))
    write_arpa(model, no_bos)
    no_bos.write_text(
        no_bos.read_text().replace("ngram 1=3", "ngram 1=2").replace("-99\t<s>\n", "")
    )
    with pytest.raises(GraphError, match="no <s> unigram"):
        arpa_to_g(no_bos, words_txt=words, out_path=tmp_path / "G.fst")
    assert not (tmp_path / "G.fst").exists()


def test_read_word_symbols(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("<eps> 0\nA 1\n\nB 2\n")
    assert read_word_symbols(path) == {"<eps>": 0, "A": 1, "B": 2}
    path.write_text("<eps> 0\nA 1\nA 2\n")
    with pytest.raises(GraphError, match="words.txt:3: duplicate symbol 'A'"):
        read_word_symbols(path)
    path.write_text("")
    with pytest.raises(GraphError, match="empty"):
        read_word_symbols(path)


def test_cli_to_g(an4_lm, tmp_path, capsys):
    lm_dir, _, _ = an4_lm
    out = tmp_path / "lang" / "G.fst"
    argv = ["lm", "to-g", str(lm_dir / "lm.arpa"), "--words", str(lm_dir / "words.txt")]
    assert main([*argv, "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    g = kaldifst.StdVectorFst.read(str(out))
    assert g.num_states > 100
    assert main([*argv, "--out", str(out), "--max-order", "0"]) == 2
    assert "max_order must be >= 1" in capsys.readouterr().err
