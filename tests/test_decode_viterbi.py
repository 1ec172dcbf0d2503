"""Single-stream decoder vs independent oracles: OpenFst shortest path and Kaldi's FasterDecoder.

The random graphs come from ``tests/support/random_graphs.py`` (shared by the ``test_decode_*`` files).
"""

from __future__ import annotations

import math

import kaldifst
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asr.decode.search_graph import DecodingGraph
from asr.decode.viterbi import DecoderConfig, decode
from asr.errors import DecodeError, GraphError
from tests.support.openfst_oracle import score_lattice
from tests.support.random_graphs import random_fst, random_problem

WIDE = DecoderConfig(beam=1e4, max_active=2**31 - 1, min_active=0, acoustic_scale=0.5)


def openfst_best(fst, ilabel_to_pdf, log_likes, acoustic_scale):
    """Best (cost, word ids) of graph o score-lattice via OpenFst, or None if no path."""
    lat = score_lattice(ilabel_to_pdf, log_likes, acoustic_scale)
    graph = fst.copy()
    kaldifst.arcsort(graph, sort_type="ilabel")
    composed = kaldifst.compose(lat, graph)
    best = kaldifst.shortest_path(composed)
    if best.num_states == 0:
        return None
    ok, _, osyms, weight = kaldifst.get_linear_symbol_sequence(best)
    assert ok
    return float(weight.value), tuple(osyms)


def kaldi_best(fst, ilabel_to_pdf, log_likes, config: DecoderConfig):
    """Kaldi's FasterDecoder on the same problem: (words, graph_cost, ac_cost, reached_final)."""
    import kaldi_decoder

    scaled = np.float32(config.acoustic_scale) * log_likes
    expanded = np.ascontiguousarray(scaled[:, ilabel_to_pdf[1:]], dtype=np.float32)
    opts = kaldi_decoder.FasterDecoderOptions(
        beam=config.beam,
        max_active=config.max_active,
        min_active=config.min_active,
        beam_delta=config.beam_delta,
    )
    dec = kaldi_decoder.FasterDecoder(fst, opts)
    dec.decode(kaldi_decoder.DecodableCtc(expanded))
    reached = dec.reached_final()
    ok, lattice = dec.get_best_path()
    if not ok:
        return None
    _, _, osyms, weight = kaldifst.get_linear_symbol_sequence(lattice)
    return tuple(osyms), float(weight.value1), float(weight.value2), reached


# -- exactness vs OpenFst --------------------------------------------------------
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    num_states=st.integers(1, 7),
    num_arcs=st.integers(1, 24),
    num_frames=st.integers(1, 7),
)
def test_wide_beam_equals_openfst_shortest_path(seed, num_states, num_arcs, num_frames):
    fst, table, log_likes = random_problem(
        seed, num_states=num_states, num_arcs=num_arcs, num_frames=num_frames
    )
    graph = DecodingGraph.from_fst(fst, table)
    oracle = openfst_best(fst, table, log_likes, WIDE.acoustic_scale)
    try:
        res = decode(graph, log_likes, WIDE)
    except DecodeError:  # no token survives at all: no path of this length exists
        assert oracle is None
        return
    if oracle is None:
        assert not res.reached_final
        return
    assert res.reached_final
    cost, words = oracle
    assert res.total_cost == pytest.approx(cost, abs=1e-4, rel=1e-5)
    assert res.graph_cost + res.acoustic_cost == pytest.approx(res.total_cost, abs=1e-6)
    # words can differ only on exact cost ties; then the costs still agree
    if res.word_ids != words:
        pytest.skip("tie between equal-cost paths")
    # the path is consistent: its pdf alignment reproduces the acoustic cost
    ac = -float(
        np.sum(
            np.float32(WIDE.acoustic_scale) * log_likes[np.arange(num_frames), res.pdf_alignment]
        )
    )
    assert res.acoustic_cost == pytest.approx(ac, abs=1e-4)
    assert np.array_equal(table[res.alignment], res.pdf_alignment)


# -- parity with Kaldi's FasterDecoder -------------------------------------------
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    beam=st.sampled_from([4.0, 8.0, 16.0]),
    num_frames=st.integers(1, 12),
)
def test_parity_with_kaldi_faster_decoder(seed, beam, num_frames):
    fst, table, log_likes = random_problem(
        seed, num_states=12, num_arcs=40, num_ilabels=8, num_pdfs=5, num_frames=num_frames
    )
    config = DecoderConfig(beam=beam, max_active=2**31 - 1, min_active=0, acoustic_scale=0.3)
    graph = DecodingGraph.from_fst(fst, table)
    theirs = kaldi_best(fst, table, log_likes, config)
    try:
        ours = decode(graph, log_likes, config)
    except DecodeError:
        assert theirs is None
        return
    assert theirs is not None
    words, graph_cost, ac_cost, reached = theirs
    assert ours.reached_final == reached
    assert ours.total_cost == pytest.approx(graph_cost + ac_cost, abs=1e-3)
    if ours.word_ids != words:
        pytest.skip("tie between equal-cost paths")
    assert ours.graph_cost == pytest.approx(graph_cost, abs=1e-3)
    assert ours.acoustic_cost == pytest.approx(ac_cost, abs=1e-3)


@pytest.mark.parametrize("seed", range(6))
def test_parity_with_kaldi_when_max_active_binds(seed):
    """max/min_active binding: same words and costs as Kaldi.

    (With extreme settings, e.g. max_active=40, results can differ from Kaldi's
    order-dependent token set in a few % of cases; see asr.decode.viterbi.)
    """
    fst, table, log_likes = random_problem(
        seed, num_states=300, num_arcs=1500, num_ilabels=30, num_pdfs=12, num_frames=40
    )
    config = DecoderConfig(beam=10.0, max_active=100, min_active=20, acoustic_scale=0.5)
    graph = DecodingGraph.from_fst(fst, table)
    words, graph_cost, ac_cost, reached = kaldi_best(fst, table, log_likes, config)
    ours = decode(graph, log_likes, config)
    assert ours.reached_final == reached
    assert ours.word_ids == words
    assert ours.total_cost == pytest.approx(graph_cost + ac_cost, abs=1e-3)


# -- graph flattening --------------------------------------------------------------
def test_graph_arrays_match_kaldifst_iteration(tmp_path):
    rng = np.random.default_rng(0)
    fst = random_fst(rng, num_states=30, num_arcs=120, num_ilabels=9)
    isyms = kaldifst.SymbolTable()
    for i in range(9):
        isyms.add_symbol(f"s{i}")
    fst.input_symbols = isyms  # symbol tables in the header must be skipped
    fst.write(str(tmp_path / "g.fst"))
    table = np.arange(-1, 8, dtype=np.int32)
    graph = DecodingGraph.from_fst(tmp_path / "g.fst", table)
    expected = set()
    for s in kaldifst.StateIterator(fst):
        for arc in kaldifst.ArcIterator(fst, s):
            expected.add((s, arc.ilabel, arc.olabel, round(arc.weight.value, 5), arc.nextstate))
        assert math.isclose(graph.final_cost[s], fst.final(s).value) or (
            math.isinf(graph.final_cost[s]) and math.isinf(fst.final(s).value)
        )
    got = set()
    for s in range(graph.num_states):
        lo, mid, hi = graph.arc_start[s], graph.eps_start[s], graph.arc_start[s + 1]
        assert (graph.ilabel[lo:mid] != 0).all() and (graph.ilabel[mid:hi] == 0).all()
        for a in range(lo, hi):
            got.add(
                (
                    s,
                    int(graph.ilabel[a]),
                    int(graph.olabel[a]),
                    round(float(graph.weight[a]), 5),
                    int(graph.nextstate[a]),
                )
            )
    assert got == expected
    assert graph.num_arcs == sum(
        1 for s in range(fst.num_states) for _ in kaldifst.ArcIterator(fst, s)
    )
    assert np.array_equal(graph.pdf, np.where(graph.ilabel == 0, -1, graph.ilabel - 1))
    assert graph.start_state == fst.start


# -- errors ----------------------------------------------------------------------------
def _tiny_graph(num_pdfs=2):
    fst, _, _ = random_problem(1)
    return fst, DecodingGraph.from_fst(fst, np.concatenate([[-1], np.arange(5) % num_pdfs]))


def test_bad_scores_raise_decode_error():
    _, graph = _tiny_graph()
    with pytest.raises(DecodeError, match="empty"):
        decode(graph, np.zeros((0, 2), np.float32))
    bad = np.zeros((3, 2), np.float32)
    bad[1, 1] = np.nan
    with pytest.raises(DecodeError, match="frame 1, pdf 1"):
        decode(graph, bad)
    with pytest.raises(DecodeError, match="pdf-count mismatch"):
        decode(graph, np.zeros((3, 1), np.float32))
    with pytest.raises(DecodeError, match="2-D"):
        decode(graph, np.zeros(3, np.float32))


def test_bad_graphs_raise_graph_error(tmp_path):
    fst = kaldifst.StdVectorFst()
    with pytest.raises(GraphError):
        DecodingGraph.from_fst(fst, [-1, 0])
    fst.add_state()  # a state but no start
    with pytest.raises(GraphError, match="start"):
        DecodingGraph.from_fst(fst, [-1, 0])
    fst.start = 0
    fst.add_arc(state=0, arc=kaldifst.StdArc(3, 0, 0.0, 0))
    with pytest.raises(GraphError, match="out of range"):
        DecodingGraph.from_fst(fst, [-1, 0])
    (tmp_path / "junk.fst").write_bytes(b"not an fst")
    with pytest.raises(GraphError):
        DecodingGraph.from_fst(tmp_path / "junk.fst", [-1, 0])
    with pytest.raises(GraphError):
        DecodingGraph.from_fst(tmp_path / "missing.fst", [-1, 0])


def test_no_final_state_falls_back_to_best_token():
    fst = kaldifst.StdVectorFst()
    fst.add_state()
    fst.start = 0
    fst.add_arc(state=0, arc=kaldifst.StdArc(1, 4, 0.5, 0))
    graph = DecodingGraph.from_fst(fst, [-1, 0])
    res = decode(graph, np.zeros((3, 1), np.float32))
    assert not res.reached_final
    assert res.word_ids == (4, 4, 4)
    assert res.total_cost == pytest.approx(1.5)


def test_no_path_of_that_length_raises():
    fst = kaldifst.StdVectorFst()
    fst.add_state(), fst.add_state()
    fst.start = 0
    fst.add_arc(state=0, arc=kaldifst.StdArc(1, 0, 0.0, 1))  # only 1-frame paths
    fst.set_final(state=1, weight=0.0)
    graph = DecodingGraph.from_fst(fst, [-1, 0])
    assert decode(graph, np.zeros((1, 1), np.float32)).reached_final
    with pytest.raises(DecodeError, match="no token survived"):
        decode(graph, np.zeros((2, 1), np.float32))


def test_negative_epsilon_cycle_is_an_error_not_a_hang():
    fst = kaldifst.StdVectorFst()
    fst.add_state(), fst.add_state()
    fst.start = 0
    fst.add_arc(state=0, arc=kaldifst.StdArc(0, 0, -1.0, 1))
    fst.add_arc(state=1, arc=kaldifst.StdArc(0, 0, -1.0, 0))
    fst.set_final(state=1, weight=0.0)
    graph = DecodingGraph.from_fst(fst, [-1, 0])
    with pytest.raises(DecodeError, match="negative cost"):
        decode(graph, np.zeros((1, 1), np.float32))


def test_word_boundaries_and_silence_trimming():
    # 0 -sil-> 0 (self loop), 0 -a:WORD1-> 1, 1 -a-> 1, 1 -sil-> 2, 2 -b:WORD2-> 3, 3 final
    fst = kaldifst.StdVectorFst()
    for _ in range(4):
        fst.add_state()
    fst.start = 0
    fst.add_arc(state=0, arc=kaldifst.StdArc(1, 0, 0.0, 0))
    fst.add_arc(state=0, arc=kaldifst.StdArc(2, 7, 0.0, 1))
    fst.add_arc(state=1, arc=kaldifst.StdArc(2, 0, 0.0, 1))
    fst.add_arc(state=1, arc=kaldifst.StdArc(1, 0, 0.0, 2))
    fst.add_arc(state=2, arc=kaldifst.StdArc(3, 8, 0.0, 3))
    fst.set_final(state=3, weight=0.0)
    graph = DecodingGraph.from_fst(fst, [-1, 0, 1, 2])
    # frames: sil sil a a a sil b
    pdfs = [0, 0, 1, 1, 1, 0, 2]
    log_likes = np.full((7, 3), -10.0, np.float32)
    log_likes[np.arange(7), pdfs] = 0.0
    res = decode(graph, log_likes, DecoderConfig(acoustic_scale=1.0), word_symbols={7: "A", 8: "B"})
    assert res.words == ("A", "B")
    assert res.alignment.tolist() == [1, 1, 2, 2, 2, 1, 3]
    assert res.word_boundaries.tolist() == [[2, 6], [6, 7]]
    trimmed = decode(
        graph,
        log_likes,
        DecoderConfig(acoustic_scale=1.0),
        ilabel_to_phone=np.array([0, 1, 2, 3]),
        silence_phones=frozenset({1}),
    )
    assert trimmed.word_boundaries.tolist() == [[2, 5], [6, 7]]
    assert res.total_cost == pytest.approx(0.0)
