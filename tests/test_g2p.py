"""Joint-sequence G2P (asr/lang/g2p.py) on CMUdict: training words come back exactly,
held-out words within a bounded phone error rate, the beam search finds the n-gram's best
segmentation (checked against enumeration scored by the n-gram's own scorer), file round trip,
errors, and the ``asr lang g2p-train`` / ``asr lang g2p`` commands."""

from __future__ import annotations

import itertools
import json
import math
import zipfile

import numpy as np
import pytest

from asr.cli.main import main
from asr.errors import LangError
from asr.lang.arpa import BOS, EOS
from asr.lang.g2p import G2PConfig, G2PModel, G2PScore, evaluate_g2p, heldout_split
from asr.lang.g2p_align import chunk_symbols
from asr.lang.lexicon import read_lexicon


@pytest.fixture(scope="module")
def cmudict(cmudict_dir):
    return read_lexicon(cmudict_dir / "cmudict.dict")


@pytest.fixture(scope="module")
def split(cmudict):
    """(training entries: every 40th non-held-out word, held-out references: a sample)."""
    heldout = heldout_split(cmudict.words, 0.05)
    train_words = set([w for w in cmudict.words if w not in heldout][::40])
    train = [(e.word, e.pron) for e in cmudict.entries if e.word in train_words]
    references: dict[str, list] = {}
    for entry in cmudict.entries:
        if entry.word in heldout:
            references.setdefault(entry.word, []).append(entry.pron)
    sample = sorted(references)[::20]
    return train, {w: references[w] for w in sample}


@pytest.fixture(scope="module")
def model(split):
    return G2PModel.train(split[0], G2PConfig(order=6))


def test_training_words_come_back(model, split):
    train, _ = split
    references: dict[str, list] = {}
    for word, pron in train:
        references.setdefault(word, []).append(tuple(pron))
    assert 2900 < len(references) < 3100
    score = evaluate_g2p(model, references)
    # A few words with several dictionary variants come back as a blend of them.
    assert score.wer <= 0.02 and score.per <= 0.004
    assert model.info["num_entries"] == len(train)
    assert model.info["num_aligned"] >= len(train) - 5


def test_heldout_words_have_bounded_phone_error_rate(model, split):
    _, references = split
    assert len(references) > 250
    score = evaluate_g2p(model, references)
    # ~3,000 training words: PER ~14 %, WER ~53 % (the full dictionary: ~6 % / ~25 %).
    assert score.per < 0.20 and score.wer < 0.65
    assert score.num_words == len(references)


def test_case_is_folded_and_nbest_is_ranked(model):
    assert model.predict("Thinking") == model.predict("thinking")
    hyps = model.predict("thinking", nbest=4)
    assert len(hyps) == 4
    assert hyps[0] == model.predict("thinking")[0]
    assert len({h.phones for h in hyps}) == 4
    scores = [h.log10_prob for h in hyps]
    assert scores == sorted(scores, reverse=True)
    assert hyps[0].phones == ("TH", "IH", "NG", "K", "IH", "NG")
    assert model.predict_many([]) == []


def brute_force_best(model, word):
    """The best graphone segmentation of ``word`` by enumeration, each scored with the
    n-gram's own back-off scorer (NgramModel.sentence_logprobs)."""
    num_letters, num_phones = len(model.alphabet), len(model.phones)
    by_letters: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for token in model.lm.vocab:
        if token in (BOS, EOS):
            continue
        letters, phones = chunk_symbols(
            int(model.graphone_keys[int(token)]), num_letters, num_phones
        )
        spelling = "".join(model.alphabet[c - 1] for c in letters)
        by_letters.setdefault(spelling, []).append(
            (token, tuple(model.phones[c - 1] for c in phones))
        )

    def paths(rest):
        if not rest:
            yield []
            return
        for size in (1, 2):
            for token, phones in by_letters.get(rest[:size], []) if size <= len(rest) else []:
                for tail in paths(rest[size:]):
                    yield [(token, phones), *tail]

    best = (-math.inf, None)
    for path in paths(word):
        logp = float(np.sum(model.lm.sentence_logprobs([t for t, _ in path])))
        best = max(best, (logp, tuple(p for _, ph in path for p in ph)))
    return best


@pytest.mark.parametrize("word", ["cat", "phone", "ax", "oxen", "quay", "zebra"])
def test_search_finds_the_best_segmentation(model, word):
    logp, phones = brute_force_best(model, word)
    hyp = model.predict(word, beam=1000)[0]
    assert hyp.log10_prob == pytest.approx(logp, abs=1e-9)
    assert hyp.phones == phones


def test_every_letter_has_a_path():
    # "q" occurs only as "qu" here: a fallback single-letter graphone keeps "q" pronounceable.
    entries = [("queen", "K W IY N"), ("quit", "K W IH T"), ("net", "N EH T"), ("tie", "T AY")]
    model = G2PModel.train(entries, G2PConfig(order=3))
    for word in ["q", "tq", "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"]:
        assert model.predict(word)  # a pronunciation (maybe poor), never none


def test_file_round_trip(model, tmp_path):
    path = tmp_path / "g2p.npz"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        assert "header.npy" in archive.namelist()
    loaded = G2PModel.load(path)
    assert loaded.config == model.config and loaded.info == model.info
    assert loaded.alphabet == model.alphabet and loaded.phones == model.phones
    words = ["speechocean", "pronunciation", "x-ray", "o'neill", "a."]
    assert loaded.predict_many(words, nbest=3) == model.predict_many(words, nbest=3)


def test_load_errors(tmp_path):
    with pytest.raises(LangError, match="not found"):
        G2PModel.load(tmp_path / "missing.npz")
    text = tmp_path / "text.npz"
    text.write_text("hello\n")
    with pytest.raises(LangError, match="cannot read G2P model"):
        G2PModel.load(text)
    other = tmp_path / "other.npz"
    np.savez(other, header=np.array(json.dumps({"format": "something-else"})))
    with pytest.raises(LangError, match="not an asr G2P model"):
        G2PModel.load(other)


def test_words_outside_the_alphabet_are_refused(model):
    with pytest.raises(LangError, match=r"'héllo'.*'é'.*alphabet"):
        model.predict("héllo")
    with pytest.raises(LangError, match="empty word"):
        model.predict("")
    with pytest.raises(LangError, match="nbest and beam"):
        model.predict("cat", nbest=0)


def test_training_errors():
    with pytest.raises(LangError, match="no G2P training entries"):
        G2PModel.train([])
    with pytest.raises(LangError, match="empty spelling or pronunciation"):
        G2PModel.train([("cat", "")])
    with pytest.raises(LangError, match="white space"):
        G2PModel.train([("a cat", "AH K AE T")])
    with pytest.raises(LangError, match="order"):
        G2PConfig(order=0)


def test_heldout_split_is_deterministic_and_order_free():
    words = [f"w{i}" for i in range(20000)]
    held = heldout_split(words, 0.05)
    assert held == heldout_split(reversed(words), 0.05)
    assert 0.04 < len(held) / len(words) < 0.06
    assert heldout_split(words[:100], 0.05) == held & set(words[:100])
    assert heldout_split(words, 0.0) == set()
    with pytest.raises(LangError, match="fraction"):
        heldout_split(words, 1.0)


def test_scores_by_hand(model):
    cat, dog = (model.predict(w)[0].phones for w in ("cat", "dog"))
    assert cat == ("K", "AE", "T") and len(dog) == 3
    # dog: one substitution against the first variant, one deletion against the 4-phone second
    # one (a tie: the longer reference counts); a word outside the alphabet is all wrong.
    refs = {"cat": [cat], "dog": [(dog[0], "ZH", dog[2]), (*dog, "Z")], "d@g": [("D", "AO", "G")]}
    assert evaluate_g2p(model, refs) == G2PScore(
        num_words=3, num_word_errors=2, num_phone_errors=4, num_ref_phones=10
    )


@pytest.mark.slow
def test_full_cmudict_heldout_figures(cmudict):
    """The figures ``asr lang g2p-train`` reports (95 % of CMUdict's words, order 8):
    WER 24.9 %, PER 5.97 % on the held-out 5 % (6,297 words)."""
    heldout = heldout_split(cmudict.words, 0.05)
    model = G2PModel.train([(e.word, e.pron) for e in cmudict.entries if e.word not in heldout])
    references: dict[str, list] = {}
    for entry in cmudict.entries:
        if entry.word in heldout:
            references.setdefault(entry.word, []).append(entry.pron)
    score = evaluate_g2p(model, references)
    assert score.wer < 0.27 and score.per < 0.065


def test_cli_train_and_predict(tmp_path, capsys, cmudict):
    words = cmudict.words[::60]
    lines = [f"{w} {' '.join(p)}" for w in words for p, _ in cmudict.prons(w)]
    dictionary = tmp_path / "small.dict"
    dictionary.write_text("\n".join(lines) + "\n")
    model_path = tmp_path / "g2p.npz"
    args = ["lang", "g2p-train", "--cmudict", str(dictionary), "--out", str(model_path)]
    assert main([*args, "--order", "5", "--heldout-fraction", "0.1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["heldout_words"] == len(heldout_split(words, 0.1))
    assert report["train_words"] + report["heldout_words"] == len(words)
    assert 0 < report["per"] < 0.3 and 0 < report["wer"] < 0.8
    assert report["ngrams"] == list(G2PModel.load(model_path).lm.num_ngrams)

    word_file = tmp_path / "words.txt"
    word_file.write_text("zebra\n\nthinking extra fields\n")
    assert main(["lang", "g2p", "--model", str(model_path), "cat", "--words", str(word_file)]) == 0
    out = capsys.readouterr().out.splitlines()
    model = G2PModel.load(model_path)
    expected = [
        f"{w}\t{' '.join(model.predict(w)[0].phones)}" for w in ("cat", "zebra", "thinking")
    ]
    assert out == expected
    assert main(["lang", "g2p", "--model", str(model_path), "--nbest", "3", "cat"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3

    assert main(["lang", "g2p", "--model", str(model_path), "caté"]) == 2
    assert "'é' not in the G2P model's alphabet" in capsys.readouterr().err
    assert main(["lang", "g2p", "--model", str(model_path)]) == 2
    assert "no words given" in capsys.readouterr().err


def test_pairs_of_orders_and_methods_train(split):
    train = split[0][:300]
    for order, method in itertools.product((1, 2), ("kneser_ney", "witten_bell")):
        model = G2PModel.train(train, G2PConfig(order=order, method=method))
        assert model.lm.order == order
        assert model.predict(train[0][0])
