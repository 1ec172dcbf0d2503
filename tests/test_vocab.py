"""Vocabulary selection and OOV rates (asr/lang/vocab.py) and ``asr lang vocab``, on small
hand-made lists and on speechocean762 + gutenberg_lm."""

from __future__ import annotations

import json

import pytest

from asr.cli.main import main
from asr.errors import LangError
from asr.lang.lexicon import read_vocabulary
from asr.lang.lm import read_text_sentences
from asr.lang.vocab import OovStats, oov_rate, read_frequency_list, select_vocabulary


@pytest.fixture
def freq_list(tmp_path):
    path = tmp_path / "counts.tsv"
    path.write_text("90\tTHE\n50\tOF\n40\tDOG\n40\tAND\n7\tCAT\n5\t<s>\n3\tZEBRA\n")
    return path


def test_training_words_then_the_most_frequent(freq_list):
    selection = select_vocabulary(["CAT", "A", "CAT", "</s>"], freq_list, 5)
    # CAT is already in; ties (DOG, AND at 40) keep the file's order.
    assert selection.words == ("A", "CAT", "DOG", "OF", "THE")
    assert (selection.num_from_train, selection.num_from_frequency_list) == (2, 3)
    assert select_vocabulary(["CAT"], freq_list, 100).words == (
        "AND", "CAT", "DOG", "OF", "THE", "ZEBRA",
    )  # fmt: skip
    # More training words than the size: all of them, nothing added.
    big = select_vocabulary(["X", "Y", "Z"], freq_list, 2)
    assert big.words == ("X", "Y", "Z") and big.num_from_frequency_list == 0


def test_frequency_list_formats_and_errors(tmp_path):
    swapped = tmp_path / "swapped.tsv"
    swapped.write_text("B\t2\nA\t9\n\n")
    assert read_frequency_list(swapped) == ["A", "B"]
    cases = {
        "1\tA\nmany\tB\n": r"bad.tsv:2: expected 'count<TAB>word'",
        "1\tA\n2\tB\tC\n": r"bad.tsv:2: expected",
        "1\tA\n2\tA\n": r"bad.tsv:2: word 'A' is listed twice",
        "\n\n": "empty",
    }
    for text, message in cases.items():
        (tmp_path / "bad.tsv").write_text(text)
        with pytest.raises(LangError, match=message):
            read_frequency_list(tmp_path / "bad.tsv")
    with pytest.raises(LangError, match="not found"):
        read_frequency_list(tmp_path / "missing.tsv")
    with pytest.raises(LangError, match="size must be >= 1"):
        select_vocabulary(["A"], swapped, 0)


def test_oov_rate_by_hand():
    stats = oov_rate([["THE", "COW", "COW"], ["A", "CAT"], []], {"THE", "A", "CAT"})
    assert stats == OovStats(num_tokens=5, num_oov_tokens=2, num_types=4, num_oov_types=1)
    assert stats.rate == pytest.approx(0.4)
    assert oov_rate([], {"A"}).rate == 0.0


def test_speechocean762_with_gutenberg(speechocean762_dir, corpora_dir):
    freq = corpora_dir / "gutenberg_lm" / "word_counts.tsv"
    sentences = read_text_sentences(speechocean762_dir / "train" / "text")
    train, dev = sentences[::2], sentences[1::2]
    train_words = {w for s in train for w in s}
    small = select_vocabulary(train_words, freq, len(train_words))
    large = select_vocabulary(train_words, freq, 20000)
    assert len(large.words) == 20000 and set(small.words) == train_words
    assert train_words <= set(large.words)
    assert oov_rate(train, large.words).num_oov_tokens == 0
    # General English fills the gaps of the in-domain words: far fewer OOVs on the other half.
    assert oov_rate(dev, large.words).rate < oov_rate(dev, small.words).rate / 2


def test_cli_vocab(tmp_path, capsys, freq_list):
    train = tmp_path / "train_text"
    train.write_text("u1 CAT SAT\nu2 A CAT\n")
    dev = tmp_path / "dev_text"
    dev.write_text("d1 THE CAT SAT ON A MAT\n")
    out = tmp_path / "lang" / "words.list"
    args = ["lang", "vocab", "--train-text", str(train), "--freq-list", str(freq_list)]
    assert main([*args, "--size", "5", "--out", str(out), "--dev", str(dev)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert out.read_text() == "A\nCAT\nOF\nSAT\nTHE\n"
    assert read_vocabulary(out) == {"A", "CAT", "OF", "SAT", "THE"}
    assert report["size"] == 5 and report["from_train"] == 3
    assert report["dev"] == {
        "text": str(dev),
        "tokens": 6,
        "oov_tokens": 2,
        "oov_rate": pytest.approx(2 / 6, abs=1e-6),
        "types": 6,
        "oov_types": 2,
    }
    assert main([*args, "--size", "0", "--out", str(out)]) == 2
    assert "size must be >= 1" in capsys.readouterr().err
