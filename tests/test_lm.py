"""Tests for asr.lang.lm / asr.lang.arpa: n-gram training, ARPA I/O, perplexity, ``asr lm``.

Oracles: probabilities worked out by hand from counts enumerated by hand (formulas written
out below, not calling the code under test); the normalization of every back-off
distribution, computed by a back-off recursion written here; a straightforward per-word
scorer written here for perplexity (SRILM's ``ngram -ppl`` formulas).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from asr.cli.main import main
from asr.errors import LmError
from asr.lang.arpa import truncate_model
from asr.lang.lm import (
    NgramConfig,
    perplexity,
    read_arpa,
    read_text_sentences,
    read_vocab,
    train_ngram,
    write_arpa,
)

BOS, EOS = "<s>", "</s>"


def an4_sentences(an4_dir: Path) -> list[list[str]]:
    """AN4 training transcripts: ``<s> W W </s> (utt_id)`` per line."""
    lines = (an4_dir / "etc" / "an4_train.transcription").read_text().splitlines()
    sentences = []
    for line in lines:
        words = line.split()
        assert words[0] == BOS and words[-2] == EOS and words[-1].startswith("(")
        sentences.append(words[1:-2])
    return sentences


def as_dict(model) -> dict[tuple[str, ...], tuple[float, float]]:
    """All n-grams of the model as ``words -> (log10 prob, log10 backoff)``."""
    return {words: (lp, bo) for n in range(1, model.order + 1) for words, lp, bo in model.ngrams(n)}


def ref_logprob(entries, word: str, history: tuple[str, ...]) -> float:
    """Back-off recursion, written independently: log10 P(word | history)."""
    if (*history, word) in entries:
        return entries[(*history, word)][0]
    if not history:
        return -math.inf
    bow = entries[history][1] if history in entries else 0.0
    return bow + ref_logprob(entries, word, history[1:])


def close(log10_value: float, probability: float) -> bool:
    return math.isclose(10.0**log10_value, probability, rel_tol=1e-9, abs_tol=1e-12)


# ---------------------------------------------------------------------------------------------
# Hand-computed examples

TINY = [["a", "b"], ["a", "c"], ["b"]]  # <s> a b </s> | <s> a c </s> | <s> b </s>


def test_kneser_ney_bigram_by_hand():
    d = 0.5
    model = train_ngram(
        TINY, vocab=["a", "b", "c", "d"], config=NgramConfig(order=2, discount=d, unk=None)
    )
    got = as_dict(model)
    # Continuation counts N1+(. w) from the bigram types:
    # a <- {<s>}, b <- {a, <s>}, c <- {a}, </s> <- {b, c}, d <- {} ; total 6, 4 types seen.
    cont = {"a": 1, "b": 2, "c": 1, EOS: 2, "d": 0}
    gamma0 = d * 4 / 6
    p1 = {w: max(c - d, 0) / 6 + gamma0 / 5 for w, c in cont.items()}  # |V| = a b c d </s>
    assert math.isclose(sum(p1.values()), 1.0)
    for w, p in p1.items():
        assert close(got[(w,)][0], p), w
    assert got[(BOS,)][0] == -99.0
    # Bigram raw counts: <s> a 2, <s> b 1, a b 1, a c 1, b </s> 2, c </s> 1.
    gamma = {BOS: d * 2 / 3, "a": d * 2 / 2, "b": d * 1 / 2, "c": d * 1 / 1}
    expected = {
        (BOS, "a"): (2 - d) / 3 + gamma[BOS] * p1["a"],
        (BOS, "b"): (1 - d) / 3 + gamma[BOS] * p1["b"],
        ("a", "b"): (1 - d) / 2 + gamma["a"] * p1["b"],
        ("a", "c"): (1 - d) / 2 + gamma["a"] * p1["c"],
        ("b", EOS): (2 - d) / 2 + gamma["b"] * p1[EOS],
        ("c", EOS): (1 - d) / 1 + gamma["c"] * p1[EOS],
    }
    assert {k for k in got if len(k) == 2} == set(expected)
    for key, p in expected.items():
        assert close(got[key][0], p), key
    for history, g in gamma.items():
        assert close(got[(history,)][1], g), history
    # An unseen vocabulary word after "a": bow(a) * P1(d).
    assert close(ref_logprob(got, "d", ("a",)), gamma["a"] * p1["d"])


def test_kneser_ney_trigram_by_hand_uses_continuation_counts():
    d = 0.5
    sentences = [["a", "b"], ["a", "b"], ["c", "a", "b"]]
    model = train_ngram(sentences, vocab=None, config=NgramConfig(order=3, discount=d))
    got = as_dict(model)
    assert model.vocab == (EOS, BOS, "a", "b", "c")  # no OOVs, so no <UNK>
    # Trigram raw counts: <s> a b 2, a b </s> 3, <s> c a 1, c a b 1.
    # Bigram counts for KN: raw for those starting with <s> (<s> a 2, <s> c 1); otherwise the
    # number of distinct left words in trigram types: a b <- {<s>, c} 2, b </s> <- {a} 1,
    # c a <- {<s>} 1.  (Raw counts would give a b 3.)
    # Unigram continuation counts from bigram types: a <- {<s>, c} 2, b 1, c 1, </s> 1; total 5.
    p1 = {"a": (2 - d) / 5, "b": (1 - d) / 5, "c": (1 - d) / 5, EOS: (1 - d) / 5}
    p1 = {w: p + (d * 4 / 5) / 4 for w, p in p1.items()}
    p2 = {
        (BOS, "a"): (2 - d) / 3 + (d * 2 / 3) * p1["a"],
        (BOS, "c"): (1 - d) / 3 + (d * 2 / 3) * p1["c"],
        ("a", "b"): (2 - d) / 2 + (d / 2) * p1["b"],
        ("b", EOS): (1 - d) / 1 + d * p1[EOS],
        ("c", "a"): (1 - d) / 1 + d * p1["a"],
    }
    p3 = {
        (BOS, "a", "b"): (2 - d) / 2 + (d / 2) * p2[("a", "b")],
        ("a", "b", EOS): (3 - d) / 3 + (d / 3) * p2[("b", EOS)],
        (BOS, "c", "a"): (1 - d) / 1 + d * p2[("c", "a")],
        ("c", "a", "b"): (1 - d) / 1 + d * p2[("a", "b")],
    }
    for table in (p1, p2, p3):
        for key, p in table.items():
            key = key if isinstance(key, tuple) else (key,)
            assert close(got[key][0], p), key
    assert close(got[(BOS, "a")][1], d / 2)  # bow(<s> a): one type, count 2
    assert close(got[("a", "b")][1], d / 3)


def test_modified_kneser_ney_discounts_by_hand():
    # One sentence: counts a 1, b 1, c 2, d 3, e 4, f 5, </s> 1; "g" is in the vocabulary only.
    words = ["a", "b", "c", "c", "d", "d", "d", "e", "e", "e", "e", "f", "f", "f", "f", "f"]
    model = train_ngram([words], vocab=list("abcdefg"), config=NgramConfig(order=1))
    counts = {"a": 1, "b": 1, "c": 2, "d": 3, "e": 4, "f": 5, EOS: 1, "g": 0}
    n1, n2, n3, n4 = 3, 1, 1, 1
    y = n1 / (n1 + 2 * n2)
    d1, d2, d3 = 1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3
    assert (round(d1, 9), round(d2, 9), round(d3, 9)) == (0.6, 0.2, 0.6)
    discount = {0: 0.0, 1: d1, 2: d2}
    total = 17
    gamma0 = sum(discount.get(c, d3) for c in counts.values()) / total
    got = as_dict(model)
    for w, c in counts.items():
        assert close(got[(w,)][0], (c - discount.get(c, d3)) / total + gamma0 / 8), w


def test_witten_bell_bigram_by_hand():
    model = train_ngram(
        TINY, vocab=["a", "b", "c", "d"], config=NgramConfig(order=2, method="witten_bell")
    )
    got = as_dict(model)
    # Unigram raw counts a 2, b 2, c 1, </s> 3, d 0: total 8, 4 types.
    counts = {"a": 2, "b": 2, "c": 1, EOS: 3, "d": 0}
    p1 = {w: (c + 4 * (1 / 5)) / (8 + 4) for w, c in counts.items()}
    for w, p in p1.items():
        assert close(got[(w,)][0], p), w
    # history (count, types): <s> (3, 2), a (2, 2), b (2, 1), c (1, 1)
    expected = {
        (BOS, "a"): (2 + 2 * p1["a"]) / (3 + 2),
        (BOS, "b"): (1 + 2 * p1["b"]) / (3 + 2),
        ("a", "b"): (1 + 2 * p1["b"]) / (2 + 2),
        ("a", "c"): (1 + 2 * p1["c"]) / (2 + 2),
        ("b", EOS): (2 + 1 * p1[EOS]) / (2 + 1),
        ("c", EOS): (1 + 1 * p1[EOS]) / (1 + 1),
    }
    for key, p in expected.items():
        assert close(got[key][0], p), key
    for history, bow in {BOS: 2 / 5, "a": 2 / 4, "b": 1 / 3, "c": 1 / 2}.items():
        assert close(got[(history,)][1], bow), history


# ---------------------------------------------------------------------------------------------
# Normalization of every back-off distribution


def distributions(model) -> tuple[list[str], dict[tuple[str, ...], np.ndarray]]:
    """P(. | h) over all predictable words for every history h, by the back-off recursion."""
    entries = as_dict(model)
    words = [w for w in model.vocab if w != BOS]
    index = {w: i for i, w in enumerate(words)}
    cache: dict[tuple[str, ...], np.ndarray] = {}

    def dist(history: tuple[str, ...]) -> np.ndarray:
        if history in cache:
            return cache[history]
        if history:
            bow = entries[history][1] if history in entries else 0.0
            probs = 10.0**bow * dist(history[1:])
        else:
            probs = np.zeros(len(words))
        for key, (lp, _) in entries.items():
            if len(key) == len(history) + 1 and key[:-1] == history and key[-1] != BOS:
                probs[index[key[-1]]] = 10.0**lp
        cache[history] = probs
        return probs

    histories = [()] + [k for k in entries if len(k) < model.order]
    return words, {h: dist(h) for h in histories}


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize(
    "config",
    [
        {"method": "kneser_ney"},
        {"method": "kneser_ney", "discount": 0.7},
        {"method": "kneser_ney", "min_count": 2},
        {"method": "witten_bell"},
        {"method": "witten_bell", "min_count": 2},
    ],
    ids=["mkn", "kn-d0.7", "mkn-min2", "wb", "wb-min2"],
)
def test_every_history_sums_to_one(an4_dir, order, config):
    sentences = an4_sentences(an4_dir)[::4]
    vocab = sorted({w for s in sentences for w in s} - {"NINE"}) + ["UNSEEN1", "UNSEEN2"]
    model = train_ngram(sentences, vocab=vocab, config=NgramConfig(order=order, **config))
    assert "<UNK>" in model.vocab and "UNSEEN1" in model.vocab  # NINE is an OOV -> <UNK>
    _, dists = distributions(model)
    assert len(dists) == 1 if order == 1 else len(dists) > 50
    sums = np.array([d.sum() for d in dists.values()])
    np.testing.assert_allclose(sums, 1.0, atol=1e-6)
    assert all((d > 0).all() for d in dists.values())  # every word reachable from every history


@pytest.mark.parametrize("order", [1, 2])
def test_truncated_model_stays_normalized(an4_dir, order):
    model = train_ngram(an4_sentences(an4_dir)[::3], config=NgramConfig(order=3))
    small = truncate_model(model, order)
    assert small.order == order and small.num_ngrams == model.num_ngrams[:order]
    _, dists = distributions(small)
    np.testing.assert_allclose([d.sum() for d in dists.values()], 1.0, atol=1e-6)
    assert truncate_model(model, 3) is model
    with pytest.raises(LmError, match="cannot truncate"):
        truncate_model(small, order + 1)


def test_min_count_prunes_but_keeps_histories(an4_dir):
    sentences = an4_sentences(an4_dir)
    full = train_ngram(sentences, config=NgramConfig(order=3))
    pruned = train_ngram(sentences, config=NgramConfig(order=3, min_count=3))
    assert pruned.num_ngrams[0] == full.num_ngrams[0]
    assert pruned.num_ngrams[1] < full.num_ngrams[1] and pruned.num_ngrams[2] < full.num_ngrams[2]
    entries = as_dict(pruned)
    for key in entries:
        assert len(key) == 1 or key[:-1] in entries  # ARPA needs every history listed


# ---------------------------------------------------------------------------------------------
# ARPA round trip and errors


def parse_arpa_text(path: Path) -> dict[tuple[str, ...], tuple[float, float | None]]:
    """A minimal ARPA parser written for the test."""
    entries, order = {}, 0
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) == 1 and fields[0].endswith("-grams:"):
            order = int(fields[0][1:].split("-")[0])
        elif order and len(fields) >= order + 1:
            bow = float(fields[order + 1]) if len(fields) == order + 2 else None
            entries[tuple(fields[1 : order + 1])] = (float(fields[0]), bow)
    return entries


def test_arpa_round_trip(tmp_path, an4_dir):
    model = train_ngram(an4_sentences(an4_dir), config=NgramConfig(order=3))
    path = tmp_path / "lm.arpa"
    write_arpa(model, path)
    text = path.read_text()
    assert text.lstrip().startswith("\\data\\\nngram 1=")
    assert text.rstrip().endswith("\\end\\")
    for n, count in enumerate(model.num_ngrams, start=1):
        assert f"ngram {n}={count}\n" in text
    written = parse_arpa_text(path)
    expected = as_dict(model)
    assert written.keys() == expected.keys()
    for key, (lp, bo) in written.items():
        assert math.isclose(lp, expected[key][0], rel_tol=1e-9, abs_tol=1e-9)
        assert bo is None or math.isclose(bo, expected[key][1], rel_tol=1e-9, abs_tol=1e-9)
        if len(key) == 3:
            assert bo is None  # no back-off weights at the highest order
        if len(key) < 3 and any(k[:-1] == key for k in written if len(k) == len(key) + 1):
            assert bo is not None  # every history carries its weight
    assert written[(BOS,)][0] == -99.0
    again = read_arpa(path)
    assert again.vocab == model.vocab and again.num_ngrams == model.num_ngrams
    assert again.unk is None
    for table, other in zip(again.tables, model.tables, strict=True):
        np.testing.assert_array_equal(table.keys, other.keys)
        np.testing.assert_allclose(table.logprob, other.logprob, atol=1e-9)
        np.testing.assert_allclose(table.backoff, other.backoff, atol=1e-9)


GOOD = "\\data\\\nngram 1=3\nngram 2=1\n\n\\1-grams:\n-0.5\t</s>\n-99\t<s>\t-0.2\n-0.3\tA\t-0.1\n\n\\2-grams:\n-0.1\t<s> A\n\n\\end\\\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ngram 1=1\n", "no '\\\\data\\\\' line"),
        (GOOD.replace("ngram 2=1", "ngram 2=2"), "header says ngram 2=2"),
        (GOOD.replace("ngram 2=1", "ngram two"), ":3: expected 'ngram N=count'"),
        (GOOD.replace("-0.3\tA", "-0.x\tA"), ":8: '-0.x' is not a finite number"),
        (GOOD.replace("-0.3\tA\t-0.1", "-0.3\tA\t-0.1\t7"), ":8: a 1-gram line needs"),
        (GOOD.replace("<s> A\n", "<s> B\n"), ":11: word 'B' has no unigram entry"),
        (GOOD.replace("\\2-grams:", "\\3-grams:"), ":10: expected '\\\\2-grams:'"),
        (GOOD.replace("\\end\\\n", ""), "expected '\\\\end\\\\'"),
        (GOOD.replace("-0.5\t</s>", "-0.5\tA"), ":8: duplicate unigram 'A'"),
    ],
)
def test_read_arpa_errors_name_the_line(tmp_path, text, message):
    path = tmp_path / "bad.arpa"
    path.write_text(text)
    with pytest.raises(LmError, match=message):
        read_arpa(path)


def test_read_arpa_missing_history_and_duplicate(tmp_path):
    text = (
        "\\data\\\nngram 1=3\nngram 2=2\nngram 3=1\n\n\\1-grams:\n-1\t</s>\n-99\t<s>\n-1\tA\n\n"
        "\\2-grams:\n-0.1\t<s> A\n-0.2\t<s> A\n\n\\3-grams:\n-0.1\tA A A\n\n\\end\\\n"
    )
    path = tmp_path / "bad.arpa"
    path.write_text(text)
    with pytest.raises(LmError, match=":13: duplicate 2-gram"):
        read_arpa(path)
    path.write_text(text.replace("-0.2\t<s> A", "-0.2\tA </s>"))
    with pytest.raises(LmError, match=":16: the history of this 3-gram is not listed"):
        read_arpa(path)
    with pytest.raises(LmError, match="not found"):
        read_arpa(tmp_path / "missing.arpa")


# ---------------------------------------------------------------------------------------------
# Perplexity


def ref_perplexity(model, sentences, *, map_unk: bool):
    """SRILM ngram -ppl, scored word by word with the test's back-off recursion."""
    entries = as_dict(model)
    vocab = set(model.vocab)
    logprob, words, oovs = 0.0, 0, 0
    for sentence in sentences:
        tokens = [BOS] + [
            w if w in vocab else (model.unk if map_unk and model.unk else None) for w in sentence
        ]
        tokens.append(EOS)
        words += len(sentence)
        for i in range(1, len(tokens)):
            if tokens[i] is None:
                oovs += 1
                continue
            history = tokens[max(0, i - model.order + 1) : i]
            if None in history:  # the history restarts after an OOV
                history = history[len(history) - history[::-1].index(None) :]
            logprob += ref_logprob(entries, tokens[i], tuple(history))
    ppl = 10 ** (-logprob / (words - oovs + len(sentences)))
    ppl1 = 10 ** (-logprob / (words - oovs))
    return ppl, ppl1, logprob, words, oovs


@pytest.mark.parametrize("map_unk", [True, False])
@pytest.mark.parametrize("unk", ["<UNK>", None])
def test_perplexity_matches_word_by_word_scoring(tmp_path, an4_dir, unk, map_unk):
    sentences = an4_sentences(an4_dir)
    train, test = sentences[:700], sentences[700:]
    vocab = sorted({w for s in train for w in s} - {"TWO", "G"})  # TWO, G become OOVs
    model = train_ngram(train, vocab=vocab, config=NgramConfig(order=3, unk=unk))
    write_arpa(model, tmp_path / "lm.arpa")
    model = read_arpa(tmp_path / "lm.arpa")
    result = perplexity(model, test, map_oovs_to_unk=map_unk)
    ppl, ppl1, logprob, words, oovs = ref_perplexity(model, test, map_unk=map_unk)
    assert result.num_sentences == len(test) and result.num_words == words
    assert result.num_oovs == oovs and result.num_zeroprobs == 0
    assert (oovs == 0) == (unk is not None and map_unk)
    assert math.isclose(result.logprob, logprob, rel_tol=1e-9)
    assert math.isclose(result.ppl, ppl, rel_tol=1e-9)
    assert math.isclose(result.ppl1, ppl1, rel_tol=1e-9)


def test_perplexity_counts_zeroprobs_and_skips_empty_sentences(tmp_path):
    # A hand-made ARPA where "B" has probability zero (log10 -99): a zeroprob, as in SRILM.
    path = tmp_path / "lm.arpa"
    path.write_text(GOOD.replace("ngram 1=3", "ngram 1=4").replace("-0.3\tA", "-99\tB\n-0.3\tA"))
    model = read_arpa(path)
    result = perplexity(model, [["A", "B"], [], ["C"]])
    assert (result.num_sentences, result.num_words) == (2, 3)
    assert (result.num_oovs, result.num_zeroprobs) == (1, 1)
    # Scored: P(A|<s>) = 10^-0.1; P(B|A) = bow(A) P(B) = 0 (zeroprob); P(</s>|A B) = bow(B)
    # (none: 1) * P(</s>) = 10^-0.5; C is an OOV; P(</s>|<s> C): history restarts after C,
    # so P(</s>) = 10^-0.5 (no back-off weight of <s>).
    assert math.isclose(result.logprob, -0.1 - 0.5 - 0.5)
    assert math.isclose(result.ppl, 10 ** (1.1 / (3 - 1 - 1 + 2)))
    assert math.isclose(result.ppl1, 10 ** (1.1 / (3 - 1 - 1)))


def test_trigram_beats_unigram_on_heldout_an4(an4_dir):
    sentences = an4_sentences(an4_dir)
    heldout = sentences[9::10]
    train = [s for i, s in enumerate(sentences) if i % 10 != 9]
    vocab = sorted({w for s in sentences for w in s})
    ppl = {}
    for method in ("kneser_ney", "witten_bell"):
        for order in (1, 2, 3):
            config = NgramConfig(order=order, method=method)
            model = train_ngram(train, vocab=vocab, config=config)
            ppl[method, order] = perplexity(model, heldout).ppl
    for method in ("kneser_ney", "witten_bell"):
        assert ppl[method, 3] < ppl[method, 2] < ppl[method, 1]
    assert ppl["kneser_ney", 3] < 0.6 * ppl["kneser_ney", 1]


# ---------------------------------------------------------------------------------------------
# Config, inputs, CLI


@pytest.mark.parametrize(
    "kwargs",
    [
        {"order": 0},
        {"method": "good_turing"},
        {"method": "witten_bell", "discount": 0.5},
        {"discount": 0.0},
        {"min_count": 0},
        {"unk": "</s>"},
    ],
)
def test_bad_config(kwargs):
    with pytest.raises(LmError):
        NgramConfig(**kwargs)


def test_training_input_errors_and_unk():
    with pytest.raises(LmError, match="no training sentences"):
        train_ngram([[], []])
    with pytest.raises(LmError, match="inside a sentence"):
        train_ngram([["a", "</s>", "b"]])
    model = train_ngram([["<s>", "a", "zz", "</s>"]], vocab=["a"], config=NgramConfig(order=2))
    assert model.vocab == (EOS, "<UNK>", BOS, "a") and model.unk == "<UNK>"
    entries = as_dict(model)
    assert ("a", "<UNK>") in entries and ("<UNK>", EOS) in entries
    dropped = train_ngram([["a", "zz", "a"]], vocab=["a"], config=NgramConfig(order=2, unk=None))
    assert dropped.vocab == (EOS, BOS, "a")
    # n-grams through the OOV are dropped, not bridged: no "a a" bigram.
    assert {k for k in as_dict(dropped) if len(k) == 2} == {(BOS, "a"), ("a", EOS)}


def test_read_text_and_vocab(tmp_path):
    text = tmp_path / "text"
    text.write_text("utt1 A B\nutt2\n\nutt3 <s> C </s>\n")
    assert read_text_sentences(text) == [["A", "B"], [], ["C"]]
    plain = tmp_path / "plain.txt"
    plain.write_text("<s> A B </s>\n\nC\n")
    assert read_text_sentences(plain, utt_ids=False) == [["A", "B"], [], ["C"]]
    with pytest.raises(LmError, match="text:4: <s> or </s> inside"):
        read_text_sentences(text, utt_ids=False)
    words = tmp_path / "words.txt"
    words.write_text("<eps> 0\nA 1\nB 2\n#0 3\n<s> 4\n</s> 5\n")
    assert read_vocab(words) == ["A", "B"]
    words.write_text("<eps> 0\nA\n")
    with pytest.raises(LmError, match="words.txt:2"):
        read_vocab(words)


def test_cli_train_perplexity(tmp_path, capsys, an4_dir):
    sentences = an4_sentences(an4_dir)
    text = tmp_path / "text"
    text.write_text("".join(f"utt{i} {' '.join(s)}\n" for i, s in enumerate(sentences[:800])))
    heldout = tmp_path / "dev"
    heldout.write_text("".join(f"{' '.join(s)}\n" for s in sentences[800:]))
    words = tmp_path / "words.txt"
    vocab = sorted({w for s in sentences for w in s})
    words.write_text("".join(f"{w} {i}\n" for i, w in enumerate(["<eps>", *vocab, "#0"])))
    arpa = tmp_path / "lm.arpa"
    argv = ["lm", "train", str(text), "--order", "2", "--vocab", str(words), "--out", str(arpa)]
    assert main([*argv, "--method", "wb"]) == 0
    out = capsys.readouterr().out
    model = read_arpa(arpa)
    assert f"ngram 2={model.num_ngrams[1]}" in out and model.order == 2
    assert set(model.vocab) == {*vocab, BOS, EOS}
    assert main(["lm", "perplexity", str(arpa), str(heldout), "--no-utt-ids"]) == 0
    out = capsys.readouterr().out
    expected = perplexity(model, sentences[800:])
    assert f"ppl= {expected.ppl:.6g} ppl1= {expected.ppl1:.6g}" in out
    assert main(["lm", "perplexity", str(tmp_path / "none.arpa"), str(heldout)]) == 2
    assert "ARPA file not found" in capsys.readouterr().err
