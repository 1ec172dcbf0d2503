"""Tests for asr.graph HCLG building (context.py, hmm_fst.py, mkgraph.py) and `asr graph mkgraph`.

Oracles: OpenFst (`fstinfo`, kaldifst compose/shortest path) on the written graph; the
lexicon (a best path restricted to a word sequence must spell its pronunciation, with optional
silence between words); the topology (each phone's transition-ids form a valid HMM path); the
tree (for the toy triphone model, every transition-id's pdf matches the tree evaluated on the
phone's real left/right neighbours); stochasticity of HCLG for a stochastic G.
"""

from __future__ import annotations

import shutil
import subprocess

import kaldifst
import numpy as np
import pytest

from asr.cli.main import main
from asr.errors import GraphError
from asr.graph.context import compose_context, read_ilabel_info, write_ilabel_info
from asr.graph.hmm_fst import FstArrays, add_self_loops, make_h_transducer
from asr.graph.mkgraph import GraphInfo, MkGraphConfig, compose_lg, mkgraph
from asr.hmm import (
    PDF_CLASS_KEY,
    ContextDependency,
    HmmModel,
    Leaf,
    Split,
    Table,
    TransitionModel,
    init_monophone,
)
from asr.lang import Lexicon, prepare_lang, read_lexicon
from tests.support.graphs import LEXICON, best_input, check_word_path, make_g, phones_of_tids


def toy_triphone_model(lang) -> HmmModel:
    """pdf = f(centre phone, pdf-class, is the left phone silence / boundary)."""
    topo = lang.topology
    left_set = frozenset({0, *lang.silence_phone_ids})
    children: list = [None] * (max(topo.phones) + 1)
    next_pdf = 0
    for phone in topo.phones:
        kids = []
        for _ in range(topo.num_pdf_classes(phone)):
            kids.append(Split(0, left_set, Leaf(next_pdf), Leaf(next_pdf + 1)))
            next_pdf += 2
        children[phone] = Table(PDF_CLASS_KEY, tuple(kids))
    tree = ContextDependency(3, 1, Table(1, tuple(children)))
    tm = TransitionModel.build(topology=topo, ctx_dep=tree)
    return HmmModel(topology=topo, ctx_dep=tree, transition_model=tm, phones=lang.phones)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("hclg")
    lang = prepare_lang(Lexicon.from_pairs(LEXICON), root / "lang")
    g = make_g(lang.words, {"YES": 0.3, "YEAH": 0.2, "NO": 0.3}, 0.2)
    g.write(str(root / "lang" / "G.fst"))
    init_monophone(lang).save(root / "mono")
    toy_triphone_model(lang).save(root / "tri")
    infos = {}
    for name in ("mono", "tri"):
        infos[name] = mkgraph(
            root / "lang", root / name, root / "lang" / "G.fst", root / name / "graph"
        )
        mkgraph(root / "lang", root / name, root / "lang" / "G.fst", root / name / "graph_sl1",
                config=MkGraphConfig(self_loop_scale=1.0))  # fmt: skip
    return root, lang, infos


def test_fst_arrays_round_trip(tmp_path):
    text = "0 1 3 4 0.5\n0 2 0 7 1.25\n1 2 5 0 -0.5\n1 0 2 2 0\n2 0.25\n1 1.5\n"
    fst = kaldifst.compile(text)
    arrays = FstArrays.from_fst(fst)
    assert arrays.num_states == 3 and arrays.num_arcs == 4 and arrays.start == 0
    assert arrays.src.tolist() == [0, 0, 1, 1] and arrays.dst.tolist() == [1, 2, 2, 0]
    assert arrays.ilabel.tolist() == [3, 0, 5, 2] and arrays.olabel.tolist() == [4, 7, 0, 2]
    assert np.allclose(arrays.weight, [0.5, 1.25, -0.5, 0.0])
    assert arrays.final.tolist() == [np.inf, 1.5, 0.25]
    assert arrays.to_fst().to_str() == fst.to_str()
    arrays.write(tmp_path / "x.fst")
    assert kaldifst.StdVectorFst.read(str(tmp_path / "x.fst")).to_str() == fst.to_str()
    symbols = kaldifst.SymbolTable()
    for index, name in enumerate(["<eps>", "a", "b"]):
        symbols.add_symbol(name, index)
    with_symbols = kaldifst.compile("0 1 a b 0.5\n1\n", isymbols=symbols, osymbols=symbols,
                                    keep_isymbols=True, keep_osymbols=True)  # fmt: skip
    arrays = FstArrays.from_fst(with_symbols)  # stored symbol tables are skipped
    assert (arrays.ilabel.tolist(), arrays.olabel.tolist()) == ([1], [2])
    (tmp_path / "bad.fst").write_bytes(b"not an fst at all")
    with pytest.raises(GraphError, match="not an OpenFst"):
        FstArrays.read(tmp_path / "bad.fst")
    (tmp_path / "short.fst").write_bytes((tmp_path / "x.fst").read_bytes()[:-10])
    with pytest.raises(GraphError, match="truncated"):
        FstArrays.read(tmp_path / "short.fst")


def test_ilabel_info_round_trip(tmp_path):
    info = [[], [0], [0, 1, 2], [-7]]
    write_ilabel_info(info, tmp_path / "ilabels")
    assert read_ilabel_info(tmp_path / "ilabels") == info


@pytest.mark.parametrize("name", ["mono", "tri"])
def test_graph_dir_files(setup, name):
    root, lang, infos = setup
    out = root / name / "graph"
    model = HmmModel.load(root / name)
    tm = model.transition_model
    info = infos[name]
    assert GraphInfo.read(out) == info
    assert info.graph_type == "hclg" and info.num_pdfs == model.num_pdfs
    assert info.num_ilabels == tm.num_transition_ids + 1
    assert (out / "words.txt").read_text() == (lang.path / "words.txt").read_text()
    assert (out / "phones.txt").read_text() == (lang.path / "phones.txt").read_text()
    pdfs = [int(v) for v in (out / "ilabel_to_pdf.int").read_text().split()]
    assert pdfs == [-1, *tm.tid2pdf[1:].tolist()]
    phones = [int(v) for v in (out / "ilabel_to_phone.int").read_text().split()]
    assert phones == [-1, *tm.tid2phone[1:].tolist()]
    arrays = FstArrays.read(out / "HCLG.fst")
    assert (arrays.num_states, arrays.num_arcs) == (info.num_states, info.num_arcs)
    # every input label is a transition-id of the model (no disambiguation symbols left)
    assert arrays.ilabel.min() >= 0 and arrays.ilabel.max() <= tm.num_transition_ids
    assert set(tm.tid2pdf[arrays.ilabel[arrays.ilabel > 0]].tolist()) <= set(range(info.num_pdfs))
    # self-loops were added: each self-loop arc is a real loop carrying a self-loop tid
    loops = tm.is_self_loop[arrays.ilabel]
    assert loops.any() and np.all(arrays.src[loops] == arrays.dst[loops])
    # Kaldi's reordered self-loops: a state's self-loop belongs to the transition state of
    # every (non-loop) arc entering it, so each HMM state's frames follow its forward arc
    loop_tstate = np.zeros(arrays.num_states, dtype=np.int64)
    loop_tstate[arrays.src[loops]] = tm.tid2tstate[arrays.ilabel[loops]]
    entering = ~loops & (loop_tstate[arrays.dst] > 0)
    assert entering.any()
    assert np.all(tm.tid2tstate[arrays.ilabel[entering]] == loop_tstate[arrays.dst[entering]])
    assert np.all(arrays.dst[~loops] != arrays.start) or loop_tstate[arrays.start] == 0


def test_fstinfo_reads_hclg(setup):
    root, _, infos = setup
    if shutil.which("fstinfo") is None:
        pytest.skip("OpenFst's fstinfo is not installed")
    result = subprocess.run(["fstinfo", str(root / "mono" / "graph" / "HCLG.fst")],
                            capture_output=True, text=True, check=True)  # fmt: skip
    fields = dict(line.rsplit(None, 1) for line in result.stdout.splitlines() if line.strip())
    assert int(fields["# of states"]) == infos["mono"].num_states
    assert int(fields["# of arcs"]) == infos["mono"].num_arcs


@pytest.mark.parametrize("name", ["mono", "tri"])
def test_hclg_is_stochastic_for_stochastic_g(setup, name):
    """G, L (silence probs) and the HMM transitions are all stochastic; with both scales 1
    (log-semiring determinization and encoded minimization keep it), so is HCLG."""
    root, _, _ = setup
    arrays = FstArrays.read(root / name / "graph_sl1" / "HCLG.fst")
    mass = np.exp(-arrays.final.astype(np.float64))
    np.add.at(mass, arrays.src, np.exp(-arrays.weight.astype(np.float64)))
    assert np.abs(np.log(mass)).max() < 2e-3


@pytest.mark.parametrize("name", ["mono", "tri"])
@pytest.mark.parametrize(
    "words", [["YES"], ["YEAH"], ["NO", "YES"], ["YEAH", "YES", "NO", "NO", "YEAH"]]
)
def test_best_path_spells_the_pronunciation(setup, name, words):
    root, lang, _ = setup
    model = HmmModel.load(root / name)
    tm = model.transition_model
    fst = kaldifst.StdVectorFst.read(str(root / name / "graph" / "HCLG.fst"))
    tids, olabels = best_input(fst, lang.words.ids(words))
    assert lang.words.symbols(olabels) == words
    phone_ids = phones_of_tids(tids, tm)
    prons = {w: [tuple(p.split())] for w, p in LEXICON}
    check_word_path(lang, phone_ids, words, prons)
    if name == "tri":  # every pdf agrees with the tree on the phone's real neighbours
        padded = [0, *phone_ids, 0]
        k = 0
        for pos, phone in enumerate(phone_ids, 1):
            window = (padded[pos - 1], phone, padded[pos + 1])
            while True:
                tid = tids[k]
                state = tm.topology.entry(phone).states[int(tm.tid2hmm_state[tid])]
                cls = state.self_loop_pdf_class if tm.is_self_loop[tid] else state.forward_pdf_class
                assert tm.tid2pdf[tid] == model.ctx_dep.compute(window, cls), (window, tid)
                k += 1
                if tm.tid2dest_state[tid] == tm.topology.entry(phone).num_states - 1:
                    break


def test_h_transducer_of_toy_triphone(setup):
    """H's input alphabet: the non-self-loop transition-ids the tree selects for each window,
    plus one new symbol per disambiguation/pseudo-epsilon window."""
    root, lang, _ = setup
    model = HmmModel.load(root / "tri")
    tm, tree = model.transition_model, model.ctx_dep
    lg = compose_lg(lang.load_l_fst(disambig=True),
                    kaldifst.StdVectorFst.read(str(lang.path / "G.fst")))  # fmt: skip
    _, ilabel_info = compose_context(lg, context_width=3, central_position=1,
                                     disambig_phone_ids=lang.disambig_phone_ids)  # fmt: skip
    ha, disambig_tids = make_h_transducer(ilabel_info=ilabel_info, ctx_dep=tree,
                                          transition_model=tm)  # fmt: skip
    special = [j for j, w in enumerate(ilabel_info) if len(w) == 1 and w[0] <= 0]
    assert [0] in ilabel_info and len(disambig_tids) == len(special)
    assert min(disambig_tids) == tm.num_transition_ids + 1
    expected = set(disambig_tids)
    for window in ilabel_info:
        if len(window) != 3:
            continue
        phone = window[1]
        for s, state in enumerate(tm.topology.entry(phone).states[:-1]):
            pdf = tree.compute(window, state.forward_pdf_class)
            tstate = tm.transition_states(phone, s, pdf, pdf)[0]
            for index, (dest, _) in enumerate(state.transitions):
                if dest != s:
                    expected.add(tm.transition_id(int(tstate), index))
    assert set(ha.ilabel.tolist()) == expected
    assert not tm.is_self_loop[ha.ilabel[ha.ilabel <= tm.num_transition_ids]].any()
    # each context label is output exactly on the arcs entering its HMM copy
    outputs = ha.olabel[ha.olabel > 0]
    assert set(outputs.tolist()) == set(range(1, len(ilabel_info)))
    entry_src = ha.src[ha.olabel > 0]
    assert np.all(entry_src == 0)


def test_add_self_loops_rejects_self_loops(setup):
    root, _, _ = setup
    tm = HmmModel.load(root / "mono").transition_model
    loop_tid = int(np.flatnonzero(tm.is_self_loop)[0])
    fst = FstArrays.from_fst(kaldifst.compile(f"0 1 {loop_tid} 0\n1\n"))
    with pytest.raises(GraphError, match="already has self-loops"):
        add_self_loops(fst, transition_model=tm)
    fst = FstArrays.from_fst(kaldifst.compile(f"0 1 {tm.num_transition_ids + 5} 0\n1\n"))
    with pytest.raises(GraphError, match="invalid input label"):
        add_self_loops(fst, transition_model=tm)


def test_mkgraph_errors(setup, tmp_path):
    root, _, _ = setup
    other = prepare_lang(Lexicon.from_pairs([("A", "AA"), ("B", "B")]), tmp_path / "other")
    with pytest.raises(GraphError, match="differs"):
        mkgraph(other.path, root / "mono", root / "lang" / "G.fst", tmp_path / "g")
    with pytest.raises(GraphError, match="G.fst not found"):
        mkgraph(root / "lang", root / "mono", tmp_path / "missing.fst", tmp_path / "g")
    with pytest.raises(GraphError, match="scale"):
        MkGraphConfig(self_loop_scale=-1.0)


def test_cli_mkgraph(setup, tmp_path, capsys):
    root, _, infos = setup
    args = ["graph", "mkgraph", str(root / "lang"), str(root / "mono"), str(tmp_path / "g")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"{infos['mono'].num_states} states, {infos['mono'].num_arcs} arcs" in out
    before = (tmp_path / "g" / "HCLG.fst").stat().st_mtime_ns
    assert main([*args, "--skip-if-up-to-date"]) == 0
    assert (tmp_path / "g" / "HCLG.fst").stat().st_mtime_ns == before
    assert main([*args, "--skip-if-up-to-date", "--self-loop-scale", "1.0"]) == 0  # rebuilt
    assert GraphInfo.read(tmp_path / "g").self_loop_scale == 1.0
    assert main(["graph", "mkgraph", str(root / "lang"), str(tmp_path / "nomodel"),
                 str(tmp_path / "g2")]) == 2  # fmt: skip


def _an4_g(lang, an4_dir, out_path) -> str:
    """A trigram G from the AN4 training transcripts (the LM helper's trainer) when available,
    else a uniform unigram loop over the words."""
    sentences = []
    for line in (an4_dir / "etc" / "an4_train.transcription").read_text().splitlines():
        words = line.rsplit("(", 1)[0].split()
        sentences.append([w for w in words if w not in ("<s>", "</s>")])
    try:
        from asr.graph.grammar import arpa_to_g
        from asr.lang.arpa import write_arpa
        from asr.lang.lm import NgramConfig, train_ngram
    except ImportError:
        vocab = [w for w, i in lang.words.pairs if i and not w.startswith(("#", "<s", "</s"))]
        make_g(lang.words, {w: 1.0 / (len(vocab) + 1) for w in vocab}, 1.0 / (len(vocab) + 1)
               ).write(str(out_path))  # fmt: skip
        return "unigram"
    vocab = [w for w, i in lang.words.pairs if i and w not in ("#0", "<s>", "</s>")]
    model = train_ngram(sentences, vocab=vocab, config=NgramConfig(order=3))
    write_arpa(model, out_path.with_suffix(".arpa"))
    arpa_to_g(out_path.with_suffix(".arpa"), words_txt=lang.path / "words.txt", out_path=out_path)
    return "trigram"


def test_an4_monophone_graph(an4_dir, tmp_path):
    lexicon = read_lexicon(an4_dir / "etc" / "an4.dic")
    lang = prepare_lang(lexicon, tmp_path / "lang")
    _an4_g(lang, an4_dir, tmp_path / "G.fst")
    init_monophone(lang).save(tmp_path / "mono")
    info = mkgraph(tmp_path / "lang", tmp_path / "mono", tmp_path / "G.fst", tmp_path / "graph")
    assert info.num_states > 1000
    tm = HmmModel.load(tmp_path / "mono").transition_model
    fst = kaldifst.StdVectorFst.read(str(tmp_path / "graph" / "HCLG.fst"))
    prons = {w: [p for p, _ in lexicon.prons(w)] for w in lexicon.words}
    lines = (an4_dir / "etc" / "an4_train.transcription").read_text().splitlines()
    for line in lines[:200:40]:
        words = [w for w in line.rsplit("(", 1)[0].split() if w not in ("<s>", "</s>")]
        tids, olabels = best_input(fst, lang.words.ids(words))
        assert lang.words.symbols(olabels) == words
        check_word_path(lang, phones_of_tids(tids, tm), words, prons)
