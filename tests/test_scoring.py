"""Tests for asr.scoring and `asr score`, with jiwer (and rapidfuzz, which it uses) as the oracle."""

from __future__ import annotations

import argparse
import math
import random
import re

import jiwer
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asr.cli import score as score_cli
from asr.errors import ScoringError
from asr.scoring import align, read_text_file, score, tokenize

# --- helpers -------------------------------------------------------------------------------


def _jiwer_pairs(ref: list[str], hyp: list[str], chunks) -> tuple:
    """jiwer's alignment chunks as (ref_token | None, hyp_token | None) pairs."""
    pairs = []
    for chunk in chunks:
        r = range(chunk.ref_start_idx, chunk.ref_end_idx)
        h = range(chunk.hyp_start_idx, chunk.hyp_end_idx)
        if chunk.type in ("equal", "substitute"):
            pairs.extend((ref[i], hyp[j]) for i, j in zip(r, h, strict=True))
        elif chunk.type == "delete":
            pairs.extend((ref[i], None) for i in r)
        elif chunk.type == "insert":
            pairs.extend((None, hyp[j]) for j in h)
        else:
            raise AssertionError(f"unexpected jiwer chunk type {chunk.type}")
    return tuple(pairs)


def _check_against_jiwer(refs: dict[str, str], hyps: dict[str, str]) -> None:
    result = score(refs, hyps)
    ref_list = [refs[k] for k in refs]
    hyp_list = [hyps.get(k, "") for k in refs]
    peer = jiwer.process_words(ref_list, hyp_list)
    assert (result.substitutions, result.deletions, result.insertions, result.correct) == (
        peer.substitutions,
        peer.deletions,
        peer.insertions,
        peer.hits,
    )
    assert math.isclose(result.wer, 100.0 * peer.wer, rel_tol=1e-12, abs_tol=1e-12)
    for utt, ref_words, hyp_words, chunks in zip(
        result.utterances, peer.references, peer.hypotheses, peer.alignments, strict=True
    ):
        assert utt.alignment.pairs == _jiwer_pairs(ref_words, hyp_words, chunks)


words = st.sampled_from(["A", "B", "C", "D", "E", "EIGHT", "YES", "NO"])
sentences = st.lists(words, min_size=0, max_size=15).map(" ".join)


# --- against jiwer -------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(pairs=st.lists(st.tuples(sentences, sentences), min_size=1, max_size=6))
def test_random_corpora_match_jiwer(pairs):
    refs = {f"utt{i}": ref for i, (ref, _) in enumerate(pairs)}
    hyps = {f"utt{i}": hyp for i, (_, hyp) in enumerate(pairs)}
    _check_against_jiwer(refs, hyps)


@settings(max_examples=200, deadline=None)
@given(ref=sentences, hyp=sentences)
def test_single_pair_counts_match_jiwer(ref, hyp):
    alignment = align(ref.split(), hyp.split())
    peer = jiwer.process_words(ref, hyp)
    assert (alignment.substitutions, alignment.deletions, alignment.insertions) == (
        peer.substitutions,
        peer.deletions,
        peer.insertions,
    )
    assert alignment.correct == peer.hits
    assert alignment.num_ref_tokens == len(ref.split())
    assert alignment.num_hyp_tokens == len(hyp.split())


def test_long_sequences_match_jiwer():
    rng = random.Random(5)
    for length in (300, 2000):
        ref = [rng.choice("ABCDE") for _ in range(length)]
        hyp = [w if rng.random() > 0.3 else rng.choice("ABCDE") for w in ref]
        hyp = [w for w in hyp if rng.random() > 0.1]
        _check_against_jiwer({"u": " ".join(ref)}, {"u": " ".join(hyp)})


def _corrupt(words: list[str], vocab: list[str], rng: random.Random) -> list[str]:
    out = []
    for word in words:
        roll = rng.random()
        if roll < 0.08:
            continue  # deletion
        out.append(rng.choice(vocab) if roll < 0.2 else word)
        if rng.random() < 0.05:
            out.append(rng.choice(vocab))  # insertion
    return out


def test_real_an4_transcripts_match_jiwer(an4_dir):
    refs = {}
    pattern = re.compile(r"^<s> (.*) </s> \((\S+)\)$")
    lines = (an4_dir / "etc" / "an4_train.transcription").read_text().splitlines()
    for line in lines[:400]:
        match = pattern.match(line.strip())
        assert match, line
        refs[match.group(2)] = match.group(1)
    vocab = sorted({w for text in refs.values() for w in text.split()})
    rng = random.Random(7)
    hyps = {utt_id: " ".join(_corrupt(text.split(), vocab, rng)) for utt_id, text in refs.items()}
    _check_against_jiwer(refs, hyps)
    result = score(refs, hyps)
    assert 5.0 < result.wer < 40.0  # the corruption above is not a no-op
    cer = score(refs, hyps, unit="char")
    ref_list, hyp_list = list(refs.values()), [hyps[k] for k in refs]
    assert math.isclose(cer.wer, 100.0 * jiwer.cer(ref_list, hyp_list), rel_tol=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(
            st.lists(st.text("abcé ", min_size=1, max_size=5), max_size=5).map(" ".join),
            st.lists(st.text("abcé ", min_size=1, max_size=5), max_size=5).map(" ".join),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_cer_matches_jiwer(pairs):
    # jiwer.cer keeps repeated inner spaces; our tokens join words with single spaces,
    # so compare on whitespace-normalised text.
    pairs = [(" ".join(r.split()), " ".join(h.split())) for r, h in pairs]
    refs = {f"u{i}": r for i, (r, _) in enumerate(pairs)}
    hyps = {f"u{i}": h for i, (_, h) in enumerate(pairs)}
    result = score(refs, hyps, unit="char")
    peer = jiwer.process_characters([r for r, _ in pairs], [h for _, h in pairs])
    assert (result.substitutions, result.deletions, result.insertions) == (
        peer.substitutions,
        peer.deletions,
        peer.insertions,
    )
    assert math.isclose(result.wer, 100.0 * peer.cer, rel_tol=1e-12, abs_tol=1e-12)


# --- edge cases ----------------------------------------------------------------------------


def test_empty_hypothesis_is_all_deletions():
    result = score({"u": "A B C"}, {"u": ""})
    assert (result.deletions, result.substitutions, result.insertions) == (3, 0, 0)
    assert result.wer == 100.0 == 100.0 * jiwer.wer("A B C", "")
    assert result.summary_line() == "%WER 100.00 [ 3 / 3, 0 ins, 3 del, 0 sub ]"


def test_empty_reference_counts_insertions_like_jiwer():
    result = score({"u": ""}, {"u": "X Y"})
    assert (result.insertions, result.num_ref_tokens) == (2, 0)
    # No reference tokens at all: 100 * errors (jiwer returns the insertion count).
    assert result.wer == 200.0 == 100.0 * jiwer.wer("", "X Y")
    assert result.ser == 100.0
    both_empty = score({"u": ""}, {"u": ""})
    assert both_empty.wer == 0.0 == jiwer.wer("", "")
    assert both_empty.sentence_errors == 0
    # Mixed with non-empty references, an empty one just contributes its insertions.
    mixed = score({"a": "A B", "b": ""}, {"a": "A B", "b": "Z"})
    assert (mixed.errors, mixed.num_ref_tokens, mixed.wer) == (1, 2, 50.0)


def test_identical_strings():
    refs = {"u1": "A B C", "u2": "YES  NO"}
    result = score(refs, {"u1": "A B C", "u2": " YES NO "})
    assert result.errors == 0 and result.wer == 0.0 and result.ser == 0.0
    assert result.correct == 5
    assert result.summary() == (
        "%WER 0.00 [ 0 / 5, 0 ins, 0 del, 0 sub ]\n"
        "%SER 0.00 [ 0 / 2 ]\n"
        "Scored 2 sentences, 0 not present in hyp."
    )


def test_missing_hypothesis_is_reported_and_scored_as_deletions():
    result = score({"u1": "A B", "u2": "C D E"}, {"u1": "A B"})
    assert result.missing_hyps == ("u2",)
    assert result.utterances[1].missing and result.deletions == 3
    assert result.summary_line() == "%WER 60.00 [ 3 / 5, 0 ins, 3 del, 0 sub ] [PARTIAL]"
    assert result.summary().endswith("Scored 2 sentences, 1 not present in hyp.")


def test_hypothesis_without_reference_raises():
    with pytest.raises(ScoringError, match="no reference: u9"):
        score({"u1": "A"}, {"u1": "A", "u9": "B"})


def test_nothing_to_score_and_bad_unit():
    with pytest.raises(ScoringError, match="no reference utterances"):
        score({}, {})
    with pytest.raises(ScoringError, match="unknown scoring unit"):
        score({"u": "A"}, {"u": "A"}, unit="phone")


def test_summary_format_rounds_to_two_decimals():
    result = score({"u1": "A B C", "u2": "D E F"}, {"u1": "A X C", "u2": "D E F"})
    assert result.summary_line() == "%WER 16.67 [ 1 / 6, 0 ins, 0 del, 1 sub ]"
    assert result.ser_line() == "%SER 50.00 [ 1 / 2 ]"
    cer = score({"u": "AB C"}, {"u": "AB"}, unit="char")
    assert tokenize("AB  C", unit="char") == ("A", "B", " ", "C")
    assert cer.summary_line() == "%CER 50.00 [ 2 / 4, 0 ins, 2 del, 0 sub ]"


# --- per-utterance report ------------------------------------------------------------------


def test_per_utt_report_matches_kaldi_layout(tmp_path):
    result = score({"u1": "A FOUR C D", "u2": "D"}, {"u1": "A C D EXTRA", "u2": "D"})
    # Columns are centred with the odd space on the left, as wer_per_utt_details.pl does.
    expected = (
        "u1 ref  A  FOUR  C  D   *** \n"
        "u1 hyp  A   ***  C  D  EXTRA\n"
        "u1 op   C    D   C  C    I  \n"
        "u1 #csid 3 0 1 1\n"
        "u2 ref  D\n"
        "u2 hyp  D\n"
        "u2 op   C\n"
        "u2 #csid 1 0 0 0\n"
    )
    assert result.per_utt_report() == expected
    out = tmp_path / "sub" / "per_utt"
    result.write_per_utt(out)
    assert out.read_text() == expected


def test_per_utt_report_char_shows_spaces():
    report = score({"u": "A B"}, {"u": "AB"}, unit="char").per_utt_report()
    assert report.splitlines()[:2] == ["u ref  A  <space>  B", "u hyp  A    ***    B"]


# --- text files and CLI --------------------------------------------------------------------


def test_read_text_file(tmp_path):
    path = tmp_path / "text"
    path.write_text("u2 HELLO   WORLD\nu1\nu3\tYES NO\n")
    assert read_text_file(path) == {"u2": "HELLO WORLD", "u1": "", "u3": "YES NO"}
    path.write_text("u1 A\nu1 B\n")
    with pytest.raises(ScoringError, match=r":2: duplicate"):
        read_text_file(path)
    with pytest.raises(ScoringError, match="not found"):
        read_text_file(tmp_path / "missing")


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    score_cli.register(parser.add_subparsers())
    args = parser.parse_args(["score", *argv])
    return args.func(args)


def test_cli_prints_summary_and_writes_per_utt(tmp_path, capsys):
    ref, hyp = tmp_path / "ref", tmp_path / "hyp"
    ref.write_text("u1 A B C D\nu2 E F\nu3 G\n")
    hyp.write_text("u1 A X C\nu2 E F G\n")
    per_utt = tmp_path / "per_utt"
    assert _run_cli([str(ref), str(hyp), "--per-utt", str(per_utt)]) == 0
    captured = capsys.readouterr()
    assert captured.out == (
        "%WER 57.14 [ 4 / 7, 1 ins, 2 del, 1 sub ] [PARTIAL]\n"
        "%SER 100.00 [ 3 / 3 ]\n"
        "Scored 3 sentences, 1 not present in hyp.\n"
    )
    assert "u3" in captured.err
    assert per_utt.read_text().splitlines()[3] == "u1 #csid 2 1 0 1"
    assert _run_cli([str(ref), str(hyp), "--cer"]) == 0
    assert capsys.readouterr().out.startswith("%CER 54.55 [ 6 / 11, 2 ins, 3 del, 1 sub ]")


def test_cli_extra_hypothesis_is_an_error(tmp_path):
    ref, hyp = tmp_path / "ref", tmp_path / "hyp"
    ref.write_text("u1 A\n")
    hyp.write_text("u1 A\nu2 B\n")
    with pytest.raises(ScoringError, match="u2"):
        _run_cli([str(ref), str(hyp)])
