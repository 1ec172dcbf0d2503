"""Lattice generation and word lattices vs independent oracles: OpenFst (exact n-best over
graph o scores) and Kaldi's LatticeSimpleDecoder (kaldi-decoder) at the same beams."""

from __future__ import annotations

import kaldi_decoder
import kaldifst
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asr.decode.lattice_search import LatticeConfig, LatticeSearch, decode_lattice
from asr.decode.search_graph import DecodingGraph
from asr.decode.viterbi import DecoderConfig, decode
from asr.errors import DecodeError
from asr.lattice import Scales, determinize
from tests.support.openfst_oracle import best_cost_of_words, score_lattice
from tests.support.random_graphs import random_problem

WIDE = DecoderConfig(beam=1e4, max_active=2**31 - 1, min_active=0, acoustic_scale=0.5)


def _word_nbest(
    fst: kaldifst.StdVectorFst, n: int, beam: float
) -> list[tuple[tuple[int, ...], float]]:
    """Distinct output sequences of ``fst`` within ``beam`` of the best, with their best
    costs, best first (OpenFst's pruned epsilon removal and determinization)."""
    acceptor = fst.copy()
    kaldifst.rmepsilon(acceptor, delta=1e-7, weight=str(beam))
    det = kaldifst.determinize(acceptor, delta=1e-7, weight=str(beam))
    paths = kaldifst.convert_nbest_to_vector(kaldifst.shortest_path(det, n=n))
    out = []
    for p in paths:
        _, isyms, _, weight = kaldifst.get_linear_symbol_sequence(p)
        out.append((tuple(isyms), float(weight.value)))
    return sorted(out, key=lambda x: x[1])


def _output_acceptor(fst) -> kaldifst.StdVectorFst:
    """Word acceptor (ilabel = olabel = word) of a transducer, weights kept."""
    out = kaldifst.StdVectorFst()
    for _ in range(fst.num_states):
        out.add_state()
    out.start = fst.start
    for state in kaldifst.StateIterator(fst):
        for arc in kaldifst.ArcIterator(fst, state):
            out.add_arc(
                state=state, arc=kaldifst.StdArc(arc.olabel, arc.olabel, arc.weight, arc.nextstate)
            )
        w = fst.final(state)
        if w.value != float("inf"):
            out.set_final(state=state, weight=w)
    return out


def composed_words(fst, ilabel_to_pdf, log_likes, acoustic_scale):
    """OpenFst: word acceptor of graph o (scaled) score lattice (all paths, exact costs)."""
    lat = score_lattice(ilabel_to_pdf, log_likes, acoustic_scale)
    graph = fst.copy()
    kaldifst.arcsort(graph, sort_type="ilabel")
    return _output_acceptor(kaldifst.compose(lat, graph))


def exact_nbest(fst, ilabel_to_pdf, log_likes, acoustic_scale, n, beam):
    """OpenFst: the n best word sequences within ``beam`` of the best, exact."""
    return _word_nbest(composed_words(fst, ilabel_to_pdf, log_likes, acoustic_scale), n, beam)


def kaldi_nbest(fst, ilabel_to_pdf, log_likes, beam, lattice_beam, acoustic_scale, n):
    """Kaldi's LatticeSimpleDecoder raw lattice -> n best word sequences (OpenFst)."""
    scaled = np.float32(acoustic_scale) * log_likes
    expanded = np.ascontiguousarray(scaled[:, ilabel_to_pdf[1:]], dtype=np.float32)
    config = kaldi_decoder.LatticeSimpleDecoderConfig()
    config.beam = beam
    config.lattice_beam = lattice_beam
    dec = kaldi_decoder.LatticeSimpleDecoder(fst, config)
    dec.decode(kaldi_decoder.DecodableCtc(expanded))
    ok, raw = dec.get_raw_lattice()
    assert ok
    return _word_nbest(lattice_text_to_acceptor(raw.to_str()), n, lattice_beam + 1e-3)


def lattice_text_to_acceptor(text: str) -> kaldifst.StdVectorFst:
    """A Kaldi ``Lattice`` in OpenFst text form -> word acceptor with cost graph + acoustic."""
    rows = [line.split() for line in text.strip().splitlines()]
    num_states = 1 + max(max(int(r[0]), int(r[1]) if len(r) >= 4 else 0) for r in rows)
    acceptor = kaldifst.StdVectorFst()
    for _ in range(num_states):
        acceptor.add_state()
    acceptor.start = int(rows[0][0])  # fstprint writes the start state's arcs first

    def cost(field: str) -> float:
        return sum(float(x) for x in field.split(","))

    for r in rows:
        if len(r) >= 4:
            w = cost(r[4]) if len(r) > 4 else 0.0
            acceptor.add_arc(
                state=int(r[0]), arc=kaldifst.StdArc(int(r[3]), int(r[3]), w, int(r[1]))
            )
        else:
            acceptor.set_final(state=int(r[0]), weight=cost(r[1]) if len(r) > 1 else 0.0)
    return acceptor


def ours_nbest(lattice, n):
    return [(p.word_ids, p.cost) for p in determinize(lattice).nbest(n)]


def ours_nbest_and_beam(lattice, n):
    """Our n-best and the beam the word lattice is complete within (the lattice beam, or
    less when determinization had to tighten it to stay within its size bounds)."""
    lat = determinize(lattice)
    return [(p.word_ids, p.cost) for p in lat.nbest(n)], min(lat.beam, lattice.lattice_beam)


def assert_same_nbest(ours, theirs, *, tol=1e-3, within=None):
    """Same word sequences and costs; sequences tied (within tol) at the cut may differ."""
    if within is not None:
        theirs = [x for x in theirs if x[1] <= within]
        ours = [x for x in ours if x[1] <= within]
    n = min(len(ours), len(theirs))
    assert abs(len(ours) - len(theirs)) <= 0 or n == 10, (ours, theirs)
    for (_w1, c1), (_w2, c2) in zip(ours[:n], theirs[:n], strict=True):
        assert c1 == pytest.approx(c2, abs=tol, rel=1e-5), (ours, theirs)
    cut = ours[n - 1][1] if n else np.inf
    clear_ours = {w for w, c in ours[:n] if c < cut - tol}
    clear_theirs = {w for w, c in theirs[:n] if c < cut - tol}
    assert clear_ours == clear_theirs, (ours, theirs)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    num_frames=st.integers(1, 9),
    lattice_beam=st.sampled_from([0.5, 3.0, 8.0]),
)
def test_wide_beam_lattice_holds_exactly_the_best_word_sequences(seed, num_frames, lattice_beam):
    fst, i2p, ll = random_problem(seed, num_frames=num_frames, acyclic_eps=True)
    graph = DecodingGraph.from_fst(fst, ilabel_to_pdf=i2p)
    exact = exact_nbest(fst, i2p, ll, WIDE.acoustic_scale, 10, lattice_beam + 1e-3)
    try:
        raw = decode_lattice(graph, ll, LatticeConfig(WIDE, lattice_beam))
    except DecodeError:  # no path of this length at all: the 1-best search says the same
        assert not exact
        with pytest.raises(DecodeError, match="no token survived"):
            decode(graph, ll, WIDE)
        return
    if not exact:  # no final state reachable: every last-frame token is final (as Kaldi)
        assert not raw.reached_final
        return
    assert raw.reached_final
    ours, beam = ours_nbest_and_beam(raw, 10)
    assert_same_nbest(ours, exact, within=exact[0][1] + beam - 1e-3)
    assert ours[0][0] == exact[0][0] or ours[0][1] == pytest.approx(exact[0][1], abs=1e-4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    lattice_beam=st.sampled_from([0.5, 2.0, 4.0]),
    num_frames=st.integers(1, 12),
)
def test_parity_with_kaldi_lattice_simple_decoder(seed, lattice_beam, num_frames):
    """Same n-best lists (top 10) as Kaldi's lattices at the same lattice beam.

    The search beam is wide here: with a narrow one Kaldi's link set depends on the
    order it visits tokens (its running cutoff), so the margins differ by design; the
    AN4 benchmark (benchmarks/lattices.py) measures the agreement at real beams.
    """
    fst, i2p, ll = random_problem(
        seed, num_frames=num_frames, num_states=8, num_arcs=30, acyclic_eps=True
    )
    graph = DecodingGraph.from_fst(fst, ilabel_to_pdf=i2p)
    try:
        raw = decode_lattice(graph, ll, LatticeConfig(WIDE, lattice_beam=lattice_beam))
    except DecodeError:
        return  # no path of this length (tested above)
    if not raw.reached_final:
        return  # Kaldi's raw lattice then keeps its own fallback; not comparable
    theirs = kaldi_nbest(fst, i2p, ll, 1e4, lattice_beam, 0.5, 10)
    ours, beam = ours_nbest_and_beam(raw, 10)
    assert_same_nbest(ours, theirs, within=theirs[0][1] + beam - 1e-3)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    beam=st.sampled_from([1.0, 3.0, 6.0]),
    num_frames=st.integers(1, 8),
)
def test_narrow_beam_best_path_is_the_one_best_decoders(seed, beam, num_frames):
    fst, i2p, ll = random_problem(
        seed, num_frames=num_frames, num_states=8, num_arcs=30, acyclic_eps=True
    )
    graph = DecodingGraph.from_fst(fst, ilabel_to_pdf=i2p)
    config = DecoderConfig(beam=beam, max_active=6, min_active=2, acoustic_scale=0.5)
    try:
        one = decode(graph, ll, config)
    except DecodeError:
        with pytest.raises(DecodeError):
            decode_lattice(graph, ll, LatticeConfig(config, lattice_beam=4.0))
        return
    raw = decode_lattice(graph, ll, LatticeConfig(config, lattice_beam=4.0))
    best = determinize(raw).best_path()
    assert best.cost == pytest.approx(one.total_cost, abs=1e-4)
    assert best.word_ids == one.word_ids or len(determinize(raw).nbest(2)) == 2
    if not raw.reached_final:
        return
    # every other path is a real one: never cheaper than the exact best for its words
    words_fst = composed_words(fst, i2p, ll, 0.5)
    for path in determinize(raw).nbest(10):
        assert path.cost >= best_cost_of_words(words_fst, path.word_ids) - 1e-3


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), num_frames=st.integers(1, 8))
def test_word_lattice_paths_are_real_paths_of_the_raw_lattice(seed, num_frames):
    """One path per word sequence; each carries the costs and alignment of a raw path."""
    fst, i2p, ll = random_problem(seed, num_frames=num_frames, acyclic_eps=True)
    graph = DecodingGraph.from_fst(fst, ilabel_to_pdf=i2p)
    try:
        raw = decode_lattice(graph, ll, LatticeConfig(WIDE, lattice_beam=3.0))
    except DecodeError:
        return
    lat = determinize(raw)
    assert lat.is_deterministic()
    seqs = lat.word_sequences(limit=10**6)
    assert len(seqs) == len(set(seqs))
    for path in lat.nbest(5):
        assert path.alignment.shape == (num_frames,)
        # re-score the alignment: acoustic cost = -sum log_like of its pdfs
        ac = -float(ll[np.arange(num_frames), i2p[path.alignment]].astype(np.float64).sum())
        assert path.acoustic_cost == pytest.approx(ac, abs=1e-3)
        assert path.cost == pytest.approx(path.graph_cost + 0.5 * path.acoustic_cost, abs=1e-4)


def test_posteriors_sum_to_one_and_match_path_enumeration():
    fst, i2p, ll = random_problem(11, num_frames=6, acyclic_eps=True)
    graph = DecodingGraph.from_fst(fst, ilabel_to_pdf=i2p)
    lat = determinize(decode_lattice(graph, ll, LatticeConfig(WIDE, lattice_beam=3.0)))
    post = lat.arc_posteriors()
    paths = lat.nbest(10**5)  # every path (the lattice is small)
    assert len(paths) == len(lat.word_sequences())
    weights = np.exp(-np.array([p.cost for p in paths]) + min(p.cost for p in paths))
    weights /= weights.sum()
    expected = np.zeros(lat.num_arcs)
    for p, w in zip(paths, weights, strict=True):
        expected[p.arcs] += w
    np.testing.assert_allclose(post, expected, atol=1e-9)
    conf = lat.word_confidences(lat.best_path())
    assert np.all((conf >= 0) & (conf <= 1))


def test_oracle_finds_the_reference_when_it_is_in_the_lattice():
    fst, i2p, ll = random_problem(2, num_frames=8, acyclic_eps=True)
    graph = DecodingGraph.from_fst(fst, ilabel_to_pdf=i2p)
    lat = determinize(decode_lattice(graph, ll, LatticeConfig(WIDE, lattice_beam=10.0)))
    paths = lat.nbest(20)
    target = paths[-1].word_ids
    errors, words = lat.oracle_errors(target)
    assert errors == 0 and words == target
    errors, _ = lat.oracle_errors((*target, 99))
    assert errors == 1


def test_online_lattice_equals_one_shot():
    fst, i2p, ll = random_problem(5, num_frames=12, acyclic_eps=True)
    graph = DecodingGraph.from_fst(fst, ilabel_to_pdf=i2p)
    whole = decode_lattice(graph, ll, LatticeConfig(WIDE, 5.0))
    search = LatticeSearch(graph, LatticeConfig(WIDE, 5.0))
    search.init()
    for chunk in np.array_split(ll, 4):
        search.advance(np.ascontiguousarray(chunk))
    parts = search.lattice()
    assert ours_nbest(parts, 10) == ours_nbest(whole, 10)


def test_epsilon_cycle_is_a_clear_error():
    fst = kaldifst.StdVectorFst()
    s0, s1 = fst.add_state(), fst.add_state()
    fst.start = s0
    fst.add_arc(state=s0, arc=kaldifst.StdArc(1, 1, 0.0, s1))
    fst.add_arc(state=s1, arc=kaldifst.StdArc(0, 2, 0.1, s0))
    fst.add_arc(state=s0, arc=kaldifst.StdArc(0, 0, 0.1, s1))
    fst.set_final(state=s1, weight=0.0)
    graph = DecodingGraph.from_fst(fst, ilabel_to_pdf=[-1, 0])
    with pytest.raises(DecodeError, match="epsilon cycle"):
        decode_lattice(graph, np.zeros((2, 1), np.float32), LatticeConfig(WIDE, 5.0))


def test_bad_config():
    with pytest.raises(DecodeError, match="lattice_beam"):
        LatticeConfig(lattice_beam=-1.0)
    fst, i2p, ll = random_problem(5, num_frames=4, acyclic_eps=True)
    lat = determinize(
        decode_lattice(DecodingGraph.from_fst(fst, ilabel_to_pdf=i2p), ll, LatticeConfig(WIDE, 5.0))
    )
    with pytest.raises(DecodeError, match="n must be"):
        lat.nbest(0)
    assert len(lat.nbest(10**6)) == len(lat.word_sequences())
    assert Scales().lm_scale == 1.0


def test_kaldi_text_round_trip_and_kaldifst_reads_the_raw_lattice(tmp_path):
    import io

    from asr.lattice.kaldi_io import read_word_lattices, write_raw_lattice, write_word_lattice

    fst, i2p, ll = random_problem(7, num_frames=8, acyclic_eps=True)
    graph = DecodingGraph.from_fst(fst, ilabel_to_pdf=i2p)
    raw = decode_lattice(graph, ll, LatticeConfig(WIDE, lattice_beam=3.0))
    lat = determinize(raw)
    buf = io.StringIO()
    write_word_lattice(buf, "utt-a", lat)
    write_word_lattice(buf, "utt-b", lat)
    read = list(read_word_lattices(io.StringIO(buf.getvalue()), acoustic_scale=0.5))
    assert [u for u, _ in read] == ["utt-a", "utt-b"]
    back = read[0][1]
    assert back.num_frames == lat.num_frames
    for p, q in zip(back.nbest(10), lat.nbest(10), strict=True):
        assert p.word_ids == q.word_ids
        assert p.cost == pytest.approx(q.cost, abs=1e-4)
        np.testing.assert_array_equal(p.alignment, q.alignment)
    # the raw lattice text is OpenFst's: kaldifst's own printing of it has the same arcs
    text = io.StringIO()
    write_raw_lattice(text, "utt-a", raw)
    ours = sorted(
        line.split()[:4] for line in text.getvalue().splitlines()[1:] if len(line.split()) == 5
    )
    theirs = sorted(
        line.split()[:4]
        for line in raw.to_kaldifst().to_str().splitlines()
        if len(line.split()) == 5
    )
    assert ours == theirs
    assert n_best_words(raw.to_kaldifst().to_str()) == [p.word_ids for p in lat.nbest(5)]


def n_best_words(lattice_text: str) -> list[tuple[int, ...]]:
    """Word n-best (5) of a Kaldi Lattice text via OpenFst, with the search's scale applied
    to the acoustic costs (they are written unscaled)."""
    rows = [line.split() for line in lattice_text.strip().splitlines()]
    scaled = []
    for r in rows:
        if len(r) == 5:
            g, a = (float(x) for x in r[4].split(","))
            r = [*r[:4], f"{g},{0.5 * a}"]
        scaled.append("\t".join(r))
    return [w for w, _ in _word_nbest(lattice_text_to_acceptor("\n".join(scaled)), 5, 1e4)]


def test_bad_lattice_text_is_a_clear_error():
    import io

    from asr.lattice.kaldi_io import read_word_lattices

    with pytest.raises(DecodeError, match="no final state"):
        list(read_word_lattices(io.StringIO("u\n0 1 3 1,2,4_4\n\n"), acoustic_scale=0.1))
    with pytest.raises(DecodeError, match="line 2"):
        list(read_word_lattices(io.StringIO("u\n0 1 3 1;2\n1 0,0,\n"), acoustic_scale=0.1))
