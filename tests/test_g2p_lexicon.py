"""complete_lexicon (asr/lang/g2p_lexicon.py): every word gets a pronunciation (lexicon first,
else G2P), in the phone set of the lexicon it joins (speechocean762's, with and without stress);
and ``asr lang complete-lexicon``."""

from __future__ import annotations

import json

import pytest

from asr.cli.main import main
from asr.errors import LangError
from asr.lang.g2p import G2PConfig, G2PModel
from asr.lang.g2p_lexicon import complete_lexicon, map_g2p_phones
from asr.lang.lexicon import Lexicon, read_lexicon


def small_model(cmudict_dir, *, keep_stress: bool) -> G2PModel:
    lexicon = read_lexicon(cmudict_dir / "cmudict.dict", strip_stress=not keep_stress)
    words = set(lexicon.words[::50])
    entries = [(e.word, e.pron) for e in lexicon.entries if e.word in words]
    return G2PModel.train(entries, G2PConfig(order=5))


@pytest.fixture(scope="module")
def model(cmudict_dir):
    return small_model(cmudict_dir, keep_stress=False)


@pytest.fixture(scope="module")
def stress_model(cmudict_dir):
    return small_model(cmudict_dir, keep_stress=True)


# Words of the speechocean762 training text that its lexicon has, and words it lacks.
KNOWN = ["A", "ABILITY", "WE", "CALL", "BEAR"]
UNKNOWN = ["BLICKETS", "SPEECHOCEAN", "ZORBLAX"]


def test_map_g2p_phones_rules():
    assert map_g2p_phones(["AH", "K"], ["AH", "K", "T"]) == {"AH": "AH", "K": "K"}
    assert map_g2p_phones(["AH0", "AH1", "K"], ["AH", "K"]) == {"AH0": "AH", "AH1": "AH", "K": "K"}
    # speechocean762 keeps stress but has no IY2 / UH2: the same vowel, unmarked or stressed.
    assert map_g2p_phones(["IY2", "UH2", "AA2"], ["IY0", "IY1", "UH", "UH1", "AA2"]) == {
        "IY2": "IY1",
        "UH2": "UH",
        "AA2": "AA2",
    }
    with pytest.raises(LangError, match="AH have no counterpart.*train it with stress kept"):
        map_g2p_phones(["AH", "K"], ["AH0", "AH1", "K"])
    with pytest.raises(LangError, match="ZH have no counterpart"):
        map_g2p_phones(["ZH"], ["AH"])


@pytest.mark.parametrize("keep_stress", [False, True])
def test_every_word_gets_a_pronunciation_in_the_lexicon_phone_set(
    speechocean762_dir, model, stress_model, keep_stress
):
    lexicon = read_lexicon(
        speechocean762_dir / "resource" / "lexicon.txt", strip_stress=not keep_stress
    )
    g2p = stress_model if keep_stress else model
    # Without stress both are CMUdict's 39 phones; with it, speechocean762 lacks some
    # (IY2, OW2, ...) and has unmarked IH and UH besides IH0, IH1, UH0, UH1.
    assert (set(g2p.phones) == set(lexicon.phones)) != keep_stress
    words = [*KNOWN, *UNKNOWN, "WE"]
    full, report = complete_lexicon(words, lexicon, g2p)
    assert full.words == tuple(sorted(set(words)))
    assert report.from_lexicon == tuple(KNOWN) and report.from_g2p == tuple(UNKNOWN)
    assert set(full.phones) <= set(lexicon.phones)
    for word in KNOWN:  # every lexicon variant kept as it was ("A": AH0 and EY0)
        assert full.prons(word) == lexicon.prons(word)
    for word in UNKNOWN:
        ((pron, prob),) = full.prons(word)
        predicted = g2p.predict(word)[0].phones
        assert prob == 1.0 and len(pron) == len(predicted)
        assert pron == tuple(report.phone_map.get(p, p) for p in predicted)
    if keep_stress:
        assert len(lexicon.prons("A")) == 2
    assert all(g != t for g, t in report.phone_map.items())


def test_nbest_variants_and_report(model):
    lexicon = Lexicon.from_pairs([("CAT", "K AE T"), ("CAT", "K AH T")])
    phone_set = model.phones
    full, report = complete_lexicon(
        ["CAT", "THINKING"], lexicon, model, nbest=3, phone_set=phone_set
    )
    assert len(full.prons("CAT")) == 2 and len(full.prons("THINKING")) == 3
    assert report.to_json() == {
        "num_words": 2,
        "num_from_lexicon": 1,
        "num_from_g2p": 1,
        "from_g2p": ["THINKING"],
        "phone_map": {},
    }
    # the lexicon's own phone set lacks the G2P's (TH, NG, ...): a clear error, not a drop
    with pytest.raises(LangError, match="no counterpart in the lexicon's phone set"):
        complete_lexicon(["CAT", "THINKING"], lexicon, model)


def test_words_no_one_can_pronounce_are_an_error(model):
    lexicon = Lexicon.from_pairs([("CAT", "K AE T")])
    with pytest.raises(LangError, match=r"2 word\(s\) .*alphabet.*: <UNK> C@T"):
        complete_lexicon(["CAT", "<UNK>", "C@T", "DOG"], lexicon, model)


def test_cli_complete_lexicon(tmp_path, capsys, model, cmudict_dir, speechocean762_dir):
    model_path = tmp_path / "g2p.npz"
    model.save(model_path)
    vocab = tmp_path / "words.list"
    vocab.write_text("\n".join([*KNOWN, *UNKNOWN, "ZYWICKI"]) + "\n")
    out = tmp_path / "dict" / "lexicon.txt"
    args = ["lang", "complete-lexicon", "--words", str(vocab), "--g2p", str(model_path)]
    args += ["--dict", str(speechocean762_dir / "resource" / "lexicon.txt")]
    args += ["--dict", str(cmudict_dir / "cmudict.dict"), "--uppercase", "--out", str(out)]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["from_g2p"] == sorted(UNKNOWN)  # ZYWICKI comes from CMUdict
    assert report["num_words"] == len(KNOWN) + len(UNKNOWN) + 1
    written = read_lexicon(out)
    assert set(written.words) == {*KNOWN, *UNKNOWN, "ZYWICKI"}
    assert written.prons("ZYWICKI") == [(("Z", "IH", "W", "IH", "K", "IY"), 1.0)]
    assert report["entries"] == len(written)
