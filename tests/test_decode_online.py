"""Online (chunked) decoding equals offline decoding; API misuse raises DecodeError."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asr.decode.online import OnlineDecoder
from asr.decode.search_graph import DecodingGraph
from asr.decode.viterbi import DecoderConfig, decode
from asr.errors import DecodeError
from tests.support.random_graphs import random_problem


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), data=st.data())
def test_chunked_equals_offline(seed, data):
    fst, table, _ = random_problem(seed, num_states=30, num_arcs=120, num_ilabels=8, num_pdfs=5)
    graph = DecodingGraph.from_fst(fst, table)
    rng = np.random.default_rng(seed)
    num_frames = data.draw(st.integers(1, 30))
    log_likes = rng.normal(-3, 2, (num_frames, 5)).astype(np.float32)
    config = DecoderConfig(beam=7.0, max_active=20, min_active=4)
    try:
        offline = decode(graph, log_likes, config)
    except DecodeError:
        return
    cuts = sorted(data.draw(st.lists(st.integers(0, num_frames), max_size=5)))
    dec = OnlineDecoder(graph, config)
    for _ in range(2):  # the decoder is reusable after init()
        dec.init()
        for lo, hi in zip([0, *cuts], [*cuts, num_frames], strict=True):
            dec.advance(log_likes[lo:hi])  # empty chunks are fine
            partial = dec.partial()
            assert partial.num_frames == hi
            assert len(partial.alignment) == hi
        final = dec.finalize()
        assert final.word_ids == offline.word_ids
        assert final.total_cost == pytest.approx(offline.total_cost, abs=1e-9)
        assert np.array_equal(final.alignment, offline.alignment)
        assert final.reached_final == offline.reached_final


def test_partial_is_the_best_current_token():
    # two branches: word 1 cheap now but non-final, word 2 final
    import kaldifst

    fst = kaldifst.StdVectorFst()
    for _ in range(3):
        fst.add_state()
    fst.start = 0
    fst.add_arc(state=0, arc=kaldifst.StdArc(1, 1, 0.0, 1))
    fst.add_arc(state=0, arc=kaldifst.StdArc(1, 2, 1.0, 2))
    fst.set_final(state=2, weight=0.0)
    graph = DecodingGraph.from_fst(fst, [-1, 0])
    dec = OnlineDecoder(graph, DecoderConfig())
    dec.init()
    dec.advance(np.zeros((1, 1), np.float32))
    assert dec.partial().word_ids == (1,)
    final = dec.finalize()
    assert final.word_ids == (2,) and final.reached_final


def test_online_misuse():
    fst, table, _ = random_problem(1)
    graph = DecodingGraph.from_fst(fst, table)
    dec = OnlineDecoder(graph)
    with pytest.raises(DecodeError, match="init"):
        dec.advance(np.zeros((1, 4), np.float32))
    dec.init()
    with pytest.raises(DecodeError, match="no frames"):
        dec.finalize()
    with pytest.raises(DecodeError, match="NaN"):
        dec.advance(np.full((1, 4), np.nan, np.float32))
