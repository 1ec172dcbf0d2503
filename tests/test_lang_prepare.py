"""Tests for asr.lang.prepare (lang dirs, L.fst, L_disambig.fst), asr.lang.topology
and the ``asr lang prepare`` CLI.

Oracles: OpenFst's ``fstinfo`` must read the FSTs; OpenFst composition and
shortest path (through kaldifst) of each pronunciation with L must give the
word with the cost Kaldi's make_lexicon_fst.py assigns (computed here from
``sil_prob`` by hand); Kaldi's DeterminizeStar must succeed on L_disambig o G
(and fail on L o G when homophones exist); gen_topo.pl's published output.
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess

import kaldifst
import pytest

from asr.cli import lang as cli_lang
from asr.errors import LangError
from asr.lang import (
    LangConfig,
    Lexicon,
    Topology,
    make_default_topology,
    prepare_lang,
    read_lang,
    read_lexicon,
    read_topology,
)

DIGITS = ["ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"]

# utils/gen_topo.pl 3 5 1:2 3 (Kaldi), as printed by Kaldi.
GEN_TOPO_3_5 = """<Topology>
<TopologyEntry>
<ForPhones>
3
</ForPhones>
<State> 0 <PdfClass> 0 <Transition> 0 0.75 <Transition> 1 0.25 </State>
<State> 1 <PdfClass> 1 <Transition> 1 0.75 <Transition> 2 0.25 </State>
<State> 2 <PdfClass> 2 <Transition> 2 0.75 <Transition> 3 0.25 </State>
<State> 3 </State>
</TopologyEntry>
<TopologyEntry>
<ForPhones>
1 2
</ForPhones>
<State> 0 <PdfClass> 0 <Transition> 0 0.25 <Transition> 1 0.25 <Transition> 2 0.25 <Transition> 3 0.25 </State>
<State> 1 <PdfClass> 1 <Transition> 1 0.25 <Transition> 2 0.25 <Transition> 3 0.25 <Transition> 4 0.25 </State>
<State> 2 <PdfClass> 2 <Transition> 1 0.25 <Transition> 2 0.25 <Transition> 3 0.25 <Transition> 4 0.25 </State>
<State> 3 <PdfClass> 3 <Transition> 1 0.25 <Transition> 2 0.25 <Transition> 3 0.25 <Transition> 4 0.25 </State>
<State> 4 <PdfClass> 4 <Transition> 4 0.75 <Transition> 5 0.25 </State>
<State> 5 </State>
</TopologyEntry>
</Topology>
"""  # noqa: E501


@pytest.fixture(scope="module")
def an4_lexicon(an4_dir):
    return read_lexicon(an4_dir / "etc" / "an4.dic")


@pytest.fixture(scope="module")
def an4_lang(an4_lexicon, tmp_path_factory):
    """AN4 words only (no <sil> filler word, which competes with optional silence)."""
    out = tmp_path_factory.mktemp("an4") / "lang"
    return prepare_lang(an4_lexicon, out, LangConfig(sil_prob=0.3))


@pytest.fixture(scope="module")
def an4_filler_lang(an4_lexicon, an4_dir, tmp_path_factory):
    """AN4 words plus the filler <sil> word (pronounced like the optional silence)."""
    out = tmp_path_factory.mktemp("an4_filler") / "lang"
    filler = read_lexicon(an4_dir / "etc" / "an4.filler")
    return prepare_lang(an4_lexicon.merge(filler), out)


def _paths(fst):
    """All (ilabels, olabels, cost) of an acyclic FST, epsilons removed."""
    found = []

    def walk(state, ilabels, olabels, cost):
        final = fst.final(state).value
        if math.isfinite(final):
            found.append((tuple(ilabels), tuple(olabels), cost + final))
        for arc in kaldifst.ArcIterator(fst, state):
            walk(
                arc.nextstate,
                ilabels + ([arc.ilabel] if arc.ilabel else []),
                olabels + ([arc.olabel] if arc.olabel else []),
                cost + arc.weight.value,
            )

    if fst.num_states:
        walk(fst.start, [], [], 0.0)
    return found


def _transduce(l_fst, phone_ids):
    """Paths of (linear phone acceptor) o L."""
    return _paths(kaldifst.compose(kaldifst.make_linear_acceptor(phone_ids), l_fst))


def _fstinfo(path):
    if shutil.which("fstinfo") is None:
        pytest.skip("OpenFst's fstinfo is not installed")
    out = subprocess.run(["fstinfo", str(path)], capture_output=True, text=True, check=True)
    info = {}
    for line in out.stdout.splitlines():
        key, _, value = line.rpartition("  ")
        info[key.strip()] = value.strip()
    return info


def _word_loop(lang):
    skip = {0, lang.words["<s>"], lang.words["</s>"]}
    lines = [f"0 0 {i} {i}" for _, i in lang.words.pairs if i not in skip]
    return kaldifst.compile("\n".join(lines) + "\n0\n")


def test_yesno_layout(tmp_path):
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("YES Y\nNO N\n")
    lang = prepare_lang(read_lexicon(lexicon), tmp_path / "lang")
    assert (tmp_path / "lang" / "phones.txt").read_text() == (
        "<eps> 0\nSIL 1\nSPN 2\nN 3\nY 4\n#0 5\n#1 6\n"
    )
    assert (tmp_path / "lang" / "words.txt").read_text() == (
        "<eps> 0\n<UNK> 1\nNO 2\nYES 3\n#0 4\n<s> 5\n</s> 6\n"
    )
    assert (tmp_path / "lang" / "oov.int").read_text() == "1\n"
    phones_dir = tmp_path / "lang" / "phones"
    assert (phones_dir / "silence.txt").read_text() == "SIL\nSPN\n"
    assert (phones_dir / "nonsilence.int").read_text() == "3\n4\n"
    assert (phones_dir / "optional_silence.txt").read_text() == "SIL\n"
    assert (phones_dir / "disambig.csl").read_text() == "5:6\n"
    assert (phones_dir / "context_indep.int").read_text() == "1\n2\n"
    assert not (phones_dir / "word_boundary.int").exists()
    assert lang.disambig_phone_ids == (5, 6) and lang.word_disambig_id == 4
    assert lang.silence_phones == ("SIL", "SPN") and lang.nonsilence_phones == ("N", "Y")
    assert lang.roots() == (
        (True, True, (1,)),
        (True, True, (2,)),
        (True, True, (3,)),
        (True, True, (4,)),
    )
    assert read_lang(lang.path) == lang
    assert LangConfig.from_json((lang.path / "lang_config.json").read_text()) == LangConfig()
    for name in ("L.fst", "L_disambig.fst"):
        info = _fstinfo(lang.path / name)
        assert info["fst type"] == "vector" and info["arc type"] == "standard"
        assert info["output label sorted"] == "y"
        assert info["# of final states"] == "1"
    # yes/no: silence optional around each word, cost -log(0.5) per decision.
    l_fst = lang.load_l_fst()
    half = -math.log(0.5)
    for phones, words, cost in [
        ([4], [3], 2 * half),
        ([1, 4, 3, 1], [3, 2], 3 * half),
        ([1, 1], [], None),
    ]:
        found = _transduce(l_fst, phones)
        if cost is None:
            assert found == []
        else:
            assert [(o, pytest.approx(c)) for _, o, c in found] == [(tuple(words), cost)]


def test_an4_l_fst_costs_for_every_pronunciation(an4_lang, an4_lexicon):
    sil_prob = 0.3
    sil, no_sil = -math.log(sil_prob), -math.log(1 - sil_prob)
    l_fst = an4_lang.load_l_fst()
    sil_id = an4_lang.optional_silence_id
    words_of: dict[tuple[str, ...], set[str]] = {}
    for entry in an4_lexicon.entries:
        words_of.setdefault(entry.pron, set()).add(entry.word)
    for pron, words in words_of.items():
        ids = an4_lang.phones.ids(pron)
        for prefix, suffix, cost in [
            ([], [], no_sil + no_sil),
            ([sil_id], [], sil + no_sil),
            ([], [sil_id], no_sil + sil),
            ([sil_id], [sil_id], sil + sil),
        ]:
            paths = _transduce(l_fst, prefix + ids + suffix)
            outputs = [an4_lang.words.symbols(o) for _, o, _ in paths]
            # single-word readings are exactly the homophones; other readings split the
            # phones into several words (e.g. A + ...) and cost more
            assert sorted(o[0] for o in outputs if len(o) == 1) == sorted(words)
            single = min(c for _, o, c in paths if len(o) == 1)
            assert single == pytest.approx(cost, abs=1e-5)
            assert all(c > single for _, o, c in paths if len(o) > 1)
            best = kaldifst.shortest_path(
                kaldifst.compose(kaldifst.make_linear_acceptor(prefix + ids + suffix), l_fst)
            )
            ok, _, olabels, weight = kaldifst.get_linear_symbol_sequence(best)
            assert ok
            assert an4_lang.words.symbols(olabels) in [[w] for w in words]
            assert weight.value == pytest.approx(cost, abs=1e-5)


def test_an4_disambig_unique_and_determinizable(an4_filler_lang):
    lang = an4_filler_lang
    l_disambig = lang.load_l_fst(disambig=True)
    plain: dict[tuple[str, ...], list[str]] = {}
    for line in (lang.path / "lexicon.txt").read_text().splitlines():
        word, *pron = line.split()
        plain.setdefault(tuple(pron), []).append(word)
    # AN4 has homophones (O/OH) and prefixes (EY = A(2) is a prefix of EIGHT).
    assert ["O", "OH"] in plain.values()
    marked: dict[tuple[str, ...], list[str]] = {}
    for line in (lang.path / "lexiconp_disambig.txt").read_text().splitlines():
        word, _, *pron = line.split()
        marked.setdefault(tuple(pron), []).append(word)
    assert all(len(words) == 1 for words in marked.values())  # homophones now differ
    assert marked[("EY", "#1")] == ["A"] and marked[("EY", "T", "#1")] == ["EIGHT"]
    assert marked[("OW", "#1")] != marked[("OW", "#2")]
    for pron, (word,) in marked.items():
        found = _transduce(l_disambig, lang.phones.ids(pron))
        # exactly one path (no optional silence around) -> the word, no ambiguity
        assert [lang.words.symbols(o) for _, o, _ in found] == [[word]]
    g = _word_loop(lang)
    det = kaldifst.compose(l_disambig, g)
    assert kaldifst.determinize_star(det, max_states=200000) is False  # completed
    assert det.num_states > 0
    with pytest.raises(RuntimeError, match="not functional"):
        kaldifst.determinize_star(kaldifst.compose(lang.load_l_fst(), g), max_states=200000)


def test_disambig_self_loop_and_sil_disambig(an4_filler_lang):
    lang = an4_filler_lang
    l_disambig = lang.load_l_fst(disambig=True)
    phone0, word0 = lang.phone_disambig_id, lang.word_disambig_id
    loops = [
        s
        for s in range(l_disambig.num_states)
        for a in kaldifst.ArcIterator(l_disambig, s)
        if a.ilabel == phone0 and a.olabel == word0 and a.nextstate == s
    ]
    assert len(loops) == 1
    assert math.isfinite(l_disambig.final(loops[0]).value)
    # optional silence is followed by the last #n: SIL #N gives no word
    last = lang.disambig_phone_ids[-1]
    found = _transduce(l_disambig, [lang.optional_silence_id, last])
    assert [o for _, o, _ in found] == [()]


def test_position_dependent_cmudict_digits(cmudict_dir, tmp_path):
    lexicon = read_lexicon(cmudict_dir / "cmudict.dict", words=DIGITS, uppercase=True)
    config = LangConfig(position_dependent_phones=True, sil_prob=0.5)
    lang = prepare_lang(lexicon, tmp_path / "lang", config)
    assert lang.silence_phones[:5] == ("SIL", "SIL_B", "SIL_E", "SIL_I", "SIL_S")
    assert "Z_B" in lang.phones and "OW_E" in lang.phones and "Z" not in lang.phones
    boundary = lang.word_boundary()
    assert boundary[lang.phones["SIL"]] == "nonword"
    assert boundary[lang.phones["Z_B"]] == "begin" and boundary[lang.phones["N_S"]] == "singleton"
    assert set(boundary) == set(lang.silence_phone_ids) | set(lang.nonsilence_phone_ids)
    l_fst = lang.load_l_fst()
    half = -math.log(0.5)
    for pron, word in [(["Z_B", "IH_I", "R_I", "OW_E"], "ZERO"), (["T_B", "UW_E"], "TWO")]:
        found = _transduce(l_fst, lang.phones.ids(pron))
        assert [(lang.words.symbols(o), pytest.approx(c)) for _, o, c in found] == [
            ([word], 2 * half)
        ]
    assert _fstinfo(lang.path / "L_disambig.fst")["output label sorted"] == "y"
    roots = lang.roots()
    assert roots[0][2] == tuple(lang.phones.ids(["SIL", "SIL_B", "SIL_E", "SIL_I", "SIL_S"]))


def test_pron_probs_and_no_silence(tmp_path):
    lexiconp = tmp_path / "lexiconp.txt"
    lexiconp.write_text("YES 1.0 Y EH S\nYES 0.25 Y AA\nNO 1.0 N OW\n")
    lang = prepare_lang(read_lexicon(lexiconp), tmp_path / "lang", LangConfig(sil_prob=0.0))
    l_fst = lang.load_l_fst()
    found = _transduce(l_fst, lang.phones.ids(["Y", "AA", "N", "OW"]))
    assert [(lang.words.symbols(o), pytest.approx(c)) for _, o, c in found] == [
        (["YES", "NO"], -math.log(0.25))
    ]
    assert _transduce(l_fst, lang.phones.ids(["SIL", "N", "OW"])) == []
    assert "YES 0.25 Y AA" in (lang.path / "lexiconp.txt").read_text()


def test_topology_matches_gen_topo():
    topo = make_default_topology(nonsil_phone_ids=[3], sil_phone_ids=[1, 2])
    assert topo.to_text() == GEN_TOPO_3_5
    parsed = Topology.from_text(GEN_TOPO_3_5)
    assert parsed == topo
    assert parsed.num_pdf_classes(3) == 3 and parsed.num_pdf_classes(2) == 5
    for entry in parsed.entries:
        for state in entry.states[:-1]:
            assert sum(p for _, p in state.transitions) == pytest.approx(1.0)
    two = make_default_topology(
        nonsil_phone_ids=[5], sil_phone_ids=[1], num_nonsil_states=1, num_sil_states=3
    )
    assert two.num_pdf_classes(5) == 1 and two.entry(1).num_states == 4


def test_topology_chain_style_and_errors(tmp_path):
    text = (
        "<Topology> <TopologyEntry> <ForPhones> 1 2 </ForPhones> "
        "<State> 0 <ForwardPdfClass> 0 <SelfLoopPdfClass> 1 <Transition> 0 0.5 "
        "<Transition> 1 0.5 </State> <State> 1 </State> </TopologyEntry> </Topology>"
    )
    topo = Topology.from_text(text)
    assert topo.num_pdf_classes(2) == 2
    assert Topology.from_text(topo.to_text()) == topo
    bad = tmp_path / "topo"
    bad.write_text(text.replace("<Transition> 1 0.5", "<Transition> 7 0.5"))
    with pytest.raises(LangError, match=r"topo: .*missing state 7"):
        read_topology(bad)
    with pytest.raises(LangError, match="not in any TopologyEntry"):
        topo.entry(9)
    with pytest.raises(LangError, match="more than one"):
        Topology.from_text(
            text.replace("</TopologyEntry> </Topology>", "</TopologyEntry>" + text[10:])
        )


def test_lang_errors(tmp_path):
    with pytest.raises(LangError, match="not found"):
        read_lang(tmp_path / "nowhere")
    with pytest.raises(LangError, match="sil_prob"):
        LangConfig(sil_prob=1.0)
    lang = prepare_lang(Lexicon.from_pairs([("YES", "Y")]), tmp_path / "lang")
    (lang.path / "oov.txt").write_text("<GARBAGE>\n")
    with pytest.raises(LangError, match="oov.txt"):
        read_lang(lang.path)


def test_lang_dir_files_honour_the_umask(tmp_path):
    """L.fst and L_disambig.fst are readable like every other file of the lang dir (-rw-r--r--
    under umask 022), not the 0600 of a temporary file renamed into place."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        lang = prepare_lang(Lexicon.from_pairs([("YES", "Y"), ("NO", "N")]), tmp_path / "lang")
    finally:
        os.umask(old)
    modes = {
        str(p.relative_to(lang.path)): stat.S_IMODE(p.stat().st_mode)
        for p in lang.path.rglob("*")
        if p.is_file()
    }
    assert {"L.fst", "L_disambig.fst"} <= set(modes)
    assert {name: oct(mode) for name, mode in modes.items() if mode != 0o644} == {}


def _cli(argv):
    parser = argparse.ArgumentParser(prog="asr")
    cli_lang.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_fsdd_from_cmudict(cmudict_dir, tmp_path, capsys):
    text = tmp_path / "text"
    text.write_text("".join(f"utt{i} {w}\n" for i, w in enumerate(DIGITS)))
    out = tmp_path / "lang"
    code = _cli(
        [
            "lang",
            "prepare",
            "--dict",
            str(cmudict_dir / "cmudict.dict"),
            "--uppercase",
            "--words",
            str(text),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert "11 words" in capsys.readouterr().out
    lang = read_lang(out)
    assert set(lang.words) == {"<eps>", "<UNK>", "#0", "<s>", "</s>", *DIGITS}
    text.write_text("utt1 ZERO QWXZ\n")
    with pytest.raises(LangError, match="QWXZ"):
        _cli(
            [
                "lang",
                "prepare",
                "--dict",
                str(cmudict_dir / "cmudict.dict"),
                "--uppercase",
                "--words",
                str(text),
                "--out",
                str(tmp_path / "bad"),
            ]
        )


def test_cli_an4_with_filler(an4_dir, tmp_path, capsys):
    etc = an4_dir / "etc"
    out = tmp_path / "lang"
    assert (
        _cli(
            [
                "lang",
                "prepare",
                "--dict",
                str(etc / "an4.dic"),
                "--filler",
                str(etc / "an4.filler"),
                "--position-dependent",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    lang = read_lang(out)
    assert "<sil>" in lang.words and "<s>" in lang.words
    assert lang.config.position_dependent_phones
    assert "SIL_S" in (out / "lexicon.txt").read_text()
