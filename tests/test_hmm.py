"""Tests for asr.hmm: context-dependency trees, the transition model and model directories.

Oracles: the topology itself (transition probabilities, pdf-classes, state graph), scalar tree
lookups vs. the batched walk, and exhaustive enumeration of contexts.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from asr.cli.main import main
from asr.errors import ModelError
from asr.hmm import (
    PDF_CLASS_KEY,
    ContextDependency,
    HmmModel,
    Leaf,
    Split,
    Table,
    TransitionModel,
    init_monophone,
    init_monophone_from,
)
from asr.lang import LangConfig, Lexicon, prepare_lang
from asr.lang.symbols import SymbolTable
from asr.lang.topology import HmmState, Topology, TopologyEntry, make_default_topology


@pytest.fixture(scope="module")
def yesno_lang(tmp_path_factory):
    lexicon = Lexicon.from_pairs([("YES", "Y"), ("NO", "N")])
    return prepare_lang(lexicon, tmp_path_factory.mktemp("lang") / "lang", LangConfig())


def toy_triphone_tree(topology: Topology, left_set: frozenset[int]) -> ContextDependency:
    """pdf = f(centre phone, pdf-class, is the left phone in ``left_set``)."""
    phones = topology.phones
    children: list = [None] * (max(phones) + 1)
    next_pdf = 0
    for phone in phones:
        kids = []
        for _ in range(topology.num_pdf_classes(phone)):
            kids.append(Split(0, left_set, Leaf(next_pdf), Leaf(next_pdf + 1)))
            next_pdf += 2
        children[phone] = Table(PDF_CLASS_KEY, tuple(kids))
    return ContextDependency(3, 1, Table(1, tuple(children)))


# --- tree ---------------------------------------------------------------------------------------
def test_monophone_tree_one_pdf_per_phone_and_class():
    tree = ContextDependency.monophone(phones=[1, 2, 3], num_pdf_classes={1: 5, 2: 3, 3: 3})
    assert tree.num_pdfs == 11
    pdfs = [tree.compute((p,), c) for p, n in ((1, 5), (2, 3), (3, 3)) for c in range(n)]
    assert pdfs == list(range(11))  # Kaldi's order: phones by id, then pdf-class
    assert tree.possible_pdfs(2, 1) == (6,)


def test_monophone_shared_phones():
    tree = ContextDependency.monophone(
        phones=[1, 2, 3], num_pdf_classes={1: 1, 2: 3, 3: 3}, shared_phones=[[2, 3]]
    )
    assert tree.num_pdfs == 4
    assert [tree.compute((2,), c) for c in range(3)] == [tree.compute((3,), c) for c in range(3)]
    with pytest.raises(ModelError, match="different numbers"):
        ContextDependency.monophone(
            phones=[1, 2], num_pdf_classes={1: 1, 2: 3}, shared_phones=[[1, 2]]
        )


def test_tree_batch_matches_scalar_and_json_round_trip():
    topo = make_default_topology(nonsil_phone_ids=[2, 3, 4], sil_phone_ids=[1])
    tree = toy_triphone_tree(topo, frozenset({1, 3}))
    contexts = np.array(list(itertools.product([0, 1, 2, 3, 4], [2, 3], [0, 4])))
    classes = np.arange(len(contexts)) % 3
    batch = tree.compute_batch(contexts, classes)
    assert batch.tolist() == [
        tree.compute(tuple(c), k) for c, k in zip(contexts, classes, strict=True)
    ]
    # the question on the left phone: left in {1, 3} -> first leaf of the pair
    assert tree.compute((1, 2, 0), 0) + 1 == tree.compute((2, 2, 0), 0)
    assert tree.compute((0, 2, 4), 0) == tree.compute((4, 2, 1), 0)
    again = ContextDependency.from_json(tree.to_json())
    assert again == tree and again.num_pdfs == tree.num_pdfs == 2 * (5 + 3 * 3)
    assert tree.possible_pdfs(3, 1) == (18, 19)  # after 10 pdfs of phone 1, 6 of phone 2


def test_tree_errors():
    tree = ContextDependency.monophone(phones=[1, 2], num_pdf_classes={1: 1, 2: 1})
    with pytest.raises(ModelError, match="no entry for key 0 = 5"):
        tree.compute((5,), 0)
    with pytest.raises(ModelError, match="key -1 = 3"):
        tree.compute((1,), 3)
    with pytest.raises(ModelError, match="malformed"):
        ContextDependency.from_json("{not json")
    with pytest.raises(ModelError, match="unknown tree node"):
        ContextDependency.from_json(
            json.dumps({"context_width": 1, "central_position": 0, "num_pdfs": 1, "tree": {}})
        )
    with pytest.raises(ModelError, match="central position"):
        ContextDependency(3, 3, Leaf(0))


# --- transition model ---------------------------------------------------------------------------
def check_transition_model(tm: TransitionModel, tree: ContextDependency) -> None:
    topo = tm.topology
    seen = set()
    for tid in range(1, tm.num_transition_ids + 1):
        tstate = int(tm.tid2tstate[tid])
        phone, hmm_state, fwd_pdf, loop_pdf = tm.tuples[tstate - 1].tolist()
        index = int(tm.tid2index[tid])
        assert tm.transition_id(tstate, index) == tid
        seen.add((tstate, index))
        state = topo.entry(phone).states[hmm_state]
        dest, prob = state.transitions[index]
        assert tm.tid2phone[tid] == phone and tm.tid2hmm_state[tid] == hmm_state
        assert tm.tid2dest_state[tid] == dest
        assert bool(tm.is_self_loop[tid]) == (dest == hmm_state)
        assert tm.tid2pdf[tid] == (loop_pdf if dest == hmm_state else fwd_pdf)
        assert np.isclose(np.exp(tm.log_probs[tid]), prob)
        # the pdfs are ones the tree can give this phone and pdf-class
        assert fwd_pdf in tree.possible_pdfs(phone, state.forward_pdf_class)
        assert loop_pdf in tree.possible_pdfs(phone, state.self_loop_pdf_class)
    assert len(seen) == tm.num_transition_ids
    # outgoing probabilities of each transition state sum to one, with and without self-loops
    sums = np.zeros(tm.num_transition_states + 1)
    np.add.at(sums, tm.tid2tstate[1:], np.exp(tm.log_probs[1:]))
    assert np.allclose(sums[1:], 1.0)
    ignoring = tm.log_prob_ignoring_self_loops()
    sums[:] = 0
    forward = ~tm.is_self_loop
    forward[0] = False
    np.add.at(sums, tm.tid2tstate[forward], np.exp(ignoring[forward]))
    assert np.allclose(sums[1:], 1.0)


def test_transition_model_monophone(yesno_lang):
    model = init_monophone(yesno_lang)
    tm, tree = model.transition_model, model.ctx_dep
    topo = yesno_lang.topology
    # monophone: one transition state per emitting HMM state of every phone
    assert tm.num_transition_states == sum(topo.entry(p).num_states - 1 for p in topo.phones)
    expected_tids = sum(len(s.transitions) for p in topo.phones for s in topo.entry(p).states)
    assert tm.num_transition_ids == expected_tids
    assert tm.num_pdfs == tree.num_pdfs == sum(topo.num_pdf_classes(p) for p in topo.phones)
    check_transition_model(tm, tree)
    assert tm.tid2pdf[0] == -1 and tm.tid2pdf.shape == (tm.num_transition_ids + 1,)
    # every pdf is reachable from some transition-id
    assert set(tm.tid2pdf[1:].tolist()) == set(range(tm.num_pdfs))


def test_transition_model_toy_triphone(yesno_lang):
    topo = yesno_lang.topology
    tree = toy_triphone_tree(topo, frozenset({1}))
    tm = TransitionModel.build(topology=topo, ctx_dep=tree)
    check_transition_model(tm, tree)
    assert tm.num_transition_states == 2 * sum(topo.entry(p).num_states - 1 for p in topo.phones)
    assert tm.transition_states(np.array([3]), 0, np.array([999]), 999).tolist() == [0]


def test_transition_model_chain_style_pdf_classes():
    """Different forward and self-loop pdf-classes: pairs come from enumerating contexts."""
    entry = TopologyEntry(
        phones=(1, 2),
        states=(HmmState(0, 1, ((0, 0.5), (1, 0.5))), HmmState(None, None)),
    )
    topo = Topology(entries=(entry,))
    mono = ContextDependency.monophone(phones=[1, 2], num_pdf_classes={1: 2, 2: 2})
    tm = TransitionModel.build(topology=topo, ctx_dep=mono)
    assert tm.tuples.tolist() == [[1, 0, 0, 1], [2, 0, 2, 3]]
    assert tm.tid2pdf.tolist() == [-1, 1, 0, 3, 2]  # self-loop uses the self-loop pdf
    tri = toy_triphone_tree(topo, frozenset({2}))
    tm3 = TransitionModel.build(topology=topo, ctx_dep=tri)
    # the forward and self-loop pdf follow the same left-context question
    assert tm3.tuples.tolist() == [[1, 0, 0, 2], [1, 0, 1, 3], [2, 0, 4, 6], [2, 0, 5, 7]]


def test_transition_model_rejects_bad_input():
    topo = make_default_topology(nonsil_phone_ids=[2], sil_phone_ids=[1], num_sil_states=1)
    with pytest.raises(ModelError, match="sorted"):
        TransitionModel(topology=topo, tuples=np.array([[2, 0, 1, 1], [1, 0, 0, 0]]),
                        log_probs=np.zeros(5), num_pdfs=2)  # fmt: skip
    with pytest.raises(ModelError, match="shape"):
        TransitionModel(topology=topo, tuples=np.array([[1, 0, 0, 0]]),
                        log_probs=np.zeros(5), num_pdfs=1)  # fmt: skip
    with pytest.raises(ModelError, match="no emitting HMM state 3"):
        TransitionModel(topology=topo, tuples=np.array([[2, 3, 0, 0]]),
                        log_probs=np.zeros(3), num_pdfs=1)  # fmt: skip


# --- model directory ----------------------------------------------------------------------------
def test_model_save_load_round_trip(yesno_lang, tmp_path):
    model = init_monophone(yesno_lang)
    model.save(tmp_path / "mono")
    names = sorted(p.name for p in (tmp_path / "mono").iterdir())
    assert names == ["hmm.json", "phones.txt", "topo", "transitions.npz", "tree.json"]
    again = HmmModel.load(tmp_path / "mono")
    assert again.ctx_dep == model.ctx_dep
    assert again.topology == model.topology
    assert again.phones == model.phones
    for name in ("tuples", "log_probs", "tid2pdf", "tid2phone", "is_self_loop", "self_loop_tid"):
        assert np.array_equal(getattr(again.transition_model, name),
                              getattr(model.transition_model, name)), name  # fmt: skip
    summary = json.loads((tmp_path / "mono" / "hmm.json").read_text())
    assert summary["num_pdfs"] == model.num_pdfs
    # re-estimated probabilities survive the round trip
    tm = model.transition_model
    new_probs = tm.log_probs.copy()
    new_probs[1:] = np.log(0.5)
    model2 = HmmModel(topology=model.topology, ctx_dep=model.ctx_dep,
                      transition_model=tm.with_log_probs(new_probs), phones=model.phones)  # fmt: skip
    model2.save(tmp_path / "m2")
    assert np.allclose(HmmModel.load(tmp_path / "m2").transition_model.log_probs[1:], np.log(0.5))


def test_model_load_errors(yesno_lang, tmp_path):
    with pytest.raises(ModelError, match="not found"):
        HmmModel.load(tmp_path / "missing")
    init_monophone(yesno_lang).save(tmp_path / "m")
    (tmp_path / "m" / "tree.json").write_text("{")
    with pytest.raises(ModelError, match="tree.json"):
        HmmModel.load(tmp_path / "m")
    (tmp_path / "m" / "hmm.json").write_text('{"format": "other"}')
    with pytest.raises(ModelError, match="unsupported"):
        HmmModel.load(tmp_path / "m")


def test_check_phones_detects_a_different_lang(yesno_lang):
    model = init_monophone(yesno_lang)
    model.check_phones(yesno_lang.phones)
    other = SymbolTable.from_symbols(["<eps>", "SIL", "Y", "N"])
    with pytest.raises(ModelError, match="differs"):
        model.check_phones(other)
    with pytest.raises(ModelError, match="not in the phone table"):
        init_monophone_from(phones=other, topology=yesno_lang.topology)


def test_cli_init_mono(yesno_lang, tmp_path, capsys):
    assert main(["hmm", "init-mono", str(yesno_lang.path), "--out", str(tmp_path / "mono")]) == 0
    out = capsys.readouterr().out
    model = HmmModel.load(tmp_path / "mono")
    assert f"{model.num_pdfs} pdfs" in out
    assert f"{model.transition_model.num_transition_ids} transition-ids" in out
    assert main(["hmm", "init-mono", str(tmp_path / "nolang"), "--out", str(tmp_path / "x")]) == 2
