"""benchmarks/peer_pocketsphinx.py: the dictionary it builds for PocketSphinx from CMUdict and our
lexicon, its audio conversion, its errors, and a whole run on 3 AN4 utterances (both LMs)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.data import DataDir, write_data_dir
from asr.lang import Lexicon, prepare_lang
from asr.lang.lexicon import LexiconEntry, read_lexicon
from asr.scoring import score

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import peer_pocketsphinx as peer  # noqa: E402

#: A word CMUdict does not have, pronounced with our lexicon's phones.
NEW_WORD = "ZORBLAX"


def _cmudict_like() -> Lexicon:
    return Lexicon(
        entries=(
            LexiconEntry("AND", ("AH", "N", "D")),
            LexiconEntry("AND", ("AE", "N", "D")),
            LexiconEntry("SIX", ("S", "IH", "K", "S")),
            LexiconEntry("ZEBRA", ("Z", "IY", "B", "R", "AH")),
            LexiconEntry("ZERO", ("Z", "IH", "R", "OW")),
        )
    )


def test_map_phone_strips_stress_and_position_and_maps_aliases():
    phones = frozenset(_cmudict_like().phones)
    assert peer.map_phone("ah0", phones) == "AH"
    assert peer.map_phone("IH1_B", phones) == "IH"
    assert peer.map_phone("AX_E", phones) == "AH"
    assert peer.map_phone("IX", phones) == "IH"
    for phone in ("SIL", "SPN", "+NOISE+", "SIL_S", "Q"):
        assert peer.map_phone(phone, phones) is None


def test_build_dictionary_takes_cmudict_first_then_mapped_lexicon_phones():
    lexicon = Lexicon.from_pairs(
        [
            ("SIX", "S_B IH_I K_I S_E"),  # in CMUdict: CMUdict's pronunciations win
            ("ZEBRA", "Z_B IY1_I B_I R_I AX_E"),  # not in CMUdict: mapped
            ("ZEBRAS", "Z_B IY1_I B_I R_I AX_I Z_E"),
            ("ZEBRAS", "Z_B IY1_I B_I R_I AX_I SPN_E"),  # a phone with no counterpart: dropped
            ("NOISE", "SPN_S"),  # nothing usable left
            ("<sil>", "SIL"),
            ("<UNK>", "SPN"),
        ]
    )
    words = ["<s>", "</s>", "<sil>", "<UNK>", "AND", "SIX", "ZEBRAS", "NOISE", "QWERTY"]
    built = peer.build_dictionary(words, cmudict=_cmudict_like(), lexicon=lexicon)
    assert built.prons["AND"] == (("AH", "N", "D"), ("AE", "N", "D"))
    assert built.prons["SIX"] == (("S", "IH", "K", "S"),)
    assert built.prons["ZEBRAS"] == (("Z", "IY", "B", "R", "AH", "Z"),)
    assert built.from_cmudict == ("AND", "SIX")
    assert built.from_lexicon == ("ZEBRAS",)
    assert built.missing == ("NOISE", "QWERTY")
    assert set(built.skipped) == {"<s>", "</s>", "<sil>", "<UNK>"}
    assert built.mapped_phones == {
        "AX_I": "AH", "B_I": "B", "IY1_I": "IY", "R_I": "R", "Z_B": "Z", "Z_E": "Z"
    }  # fmt: skip
    assert built.dropped_phones == {"SPN_E": 1, "SPN_S": 1}
    assert built.to_text() == ("AND AH N D\nAND(2) AE N D\nSIX S IH K S\nZEBRAS Z IY B R AH Z\n")
    summary = built.summary()
    assert summary["without_pronunciation"] == 2
    assert summary["words"] == 3


def test_read_pcm16_gives_back_the_stored_samples(tmp_path):
    rng = np.random.default_rng(0)
    pcm = rng.integers(-32768, 32768, size=8000, dtype=np.int16)
    sf.write(tmp_path / "a.flac", pcm, 16000, subtype="PCM_16")
    data, seconds = peer.read_pcm16(str(tmp_path / "a.flac"))
    assert data == pcm.astype("<i2").tobytes()
    assert seconds == 0.5
    sf.write(tmp_path / "b.wav", pcm, 8000, subtype="PCM_16")  # resampled to 16 kHz
    data, seconds = peer.read_pcm16(str(tmp_path / "b.wav"))
    assert len(data) == 2 * 16000 and seconds == 1.0


def _an4_utterances(an4_dir: Path, count: int) -> list[tuple[str, str, str]]:
    """(file id, speaker, transcript) of the first ``count`` training utterances of 3+ words."""
    lines = (an4_dir / "etc" / "an4_train.transcription").read_text().splitlines()
    fileids = (an4_dir / "etc" / "an4_train.fileids").read_text().split()
    out = []
    for line, fileid in zip(lines, fileids, strict=True):
        words = line.split()[1:-2]  # <s> ... </s> (id)
        if len(words) >= 3:
            out.append((fileid, fileid.split("/")[1], " ".join(words)))
        if len(out) == count:
            return out
    raise AssertionError("too few AN4 utterances")


@pytest.fixture(scope="module")
def tiny_recipe(an4_dir, tmp_path_factory) -> Path:
    """data/an4/{dev,train,lang} and exp/an4/mono/decode_dev/wer under one root."""
    root = tmp_path_factory.mktemp("peer_pocketsphinx")
    utts = _an4_utterances(an4_dir, 3)
    wav_scp, text, utt2spk = {}, {}, {}
    for fileid, spk, words in utts:
        utt_id = f"{spk}-{fileid.split('/')[-1]}"
        wav_scp[utt_id] = str(an4_dir / "wav" / f"{fileid}.wav")
        text[utt_id] = words
        utt2spk[utt_id] = spk
    dev = root / "data" / "an4" / "dev"
    write_data_dir(DataDir(wav_scp=wav_scp, text=text, utt2spk=utt2spk), dev)
    train = root / "data" / "an4" / "train"
    train.mkdir()
    sentences = [*text.values(), f"{NEW_WORD} {next(iter(text.values()))}"]
    (train / "text").write_text("".join(f"t{i} {s}\n" for i, s in enumerate(sentences)))
    vocab = {w for s in text.values() for w in s.split()}
    lexicon = read_lexicon(an4_dir / "etc" / "an4.dic", words=vocab)
    lexicon = lexicon.merge(Lexicon.from_pairs([(NEW_WORD, "Z AO1 R B L AE K S")]))
    prepare_lang(lexicon, root / "data" / "an4" / "lang")
    decode = root / "exp" / "an4" / "mono" / "decode_dev"
    decode.mkdir(parents=True)
    hyps = {u: " ".join(t.split()[:-1]) for u, t in text.items()}  # one deletion each
    (decode / "wer").write_text(score(text, hyps).summary() + "\n")
    return root


def test_benchmark_on_three_an4_utterances(tiny_recipe, tmp_path):
    inputs = peer.Inputs.from_data_dir(tiny_recipe / "data" / "an4" / "dev")
    assert inputs.exp_dir == tiny_recipe / "exp" / "an4"
    result = peer.run_benchmark(inputs, out_dir=tmp_path / "out", show_progress=False)
    json.loads(json.dumps(result))  # one JSON object
    for key in (
        "ours_best_wer", "ours_best_model", "pocketsphinx_wer_generic_lm",
        "pocketsphinx_wer_same_text_lm", "num_utterances", "pocketsphinx_version",
        "pocketsphinx_rtf_generic_lm", "pocketsphinx_rtf_same_text_lm",
    ):  # fmt: skip
        assert key in result, key
    assert result["num_utterances"] == 3
    assert result["ours_best_model"] == "mono"
    assert result["ours_same_words_as_data_dir"] is True
    num_words = result["num_ref_words"]
    assert result["ours_best_wer"] == pytest.approx(100 * 3 / num_words, abs=0.005)
    for name in ("generic_lm", "same_text_lm"):
        wer = result[f"pocketsphinx_wer_{name}"]
        assert isinstance(wer, float) and math.isfinite(wer) and wer >= 0.0
        assert result[f"pocketsphinx_score_{name}"]["jiwer_agrees"] is True
        assert result[f"pocketsphinx_rtf_{name}"] > 0.0
        hyp_lines = (tmp_path / "out" / f"hyp_{name}.txt").read_text().splitlines()
        assert len(hyp_lines) == 3
    dictionary = result["same_text_lm_dictionary"]
    assert dictionary["from_lexicon_words"] == [NEW_WORD]
    assert dictionary["without_pronunciation"] == 0
    assert f"{NEW_WORD} Z AO R B L AE K S" in (tmp_path / "out" / "same_text_lm.dict").read_text()
    assert result["same_text_lm"]["order"] == 3
    assert "ours: mono" in peer.format_table(result)


def test_clear_errors(tiny_recipe, tmp_path, capsys, monkeypatch):
    assert peer.main(["--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "data dir not found" in capsys.readouterr().err
    dev = tiny_recipe / "data" / "an4" / "dev"
    (tmp_path / "exp").mkdir()
    assert peer.main(["--data-dir", str(dev), "--exp-dir", str(tmp_path / "exp")]) == 2
    err = capsys.readouterr().err
    assert "no */decode_dev*/wer files" in err and "stage 6" in err
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # import raises ImportError
    assert peer.main(["--data-dir", str(dev), "--no-progress"]) == 2
    assert "pocketsphinx is not installed" in capsys.readouterr().err


def test_score_run_checks_against_jiwer_with_empty_references_and_hypotheses():
    refs = {"a": "A B C", "b": "", "c": "D E"}
    hyps = {"a": "A X C Y", "b": "Z", "c": ""}
    scored = peer.score_run(refs, hyps)
    assert (scored["errors"], scored["words"]) == (5, 5)  # 1 sub 1 ins; 1 ins; 2 del
    assert scored["wer"] == 100.0
    assert scored["jiwer_wer"] == pytest.approx(100.0 * 4 / 5)  # without the empty reference
    assert scored["jiwer_agrees"] is True
