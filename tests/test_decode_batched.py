"""Batched torch search == single-stream compiled search (CPU; the code is device-agnostic)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asr.decode.batched import BatchedDecoder, decode_batch
from asr.decode.search_graph import DecodingGraph
from asr.decode.viterbi import DecoderConfig, decode
from asr.errors import DecodeError
from tests.support.random_graphs import random_problem

CONFIGS = [
    DecoderConfig(beam=1e4, max_active=2**31 - 1, min_active=0, acoustic_scale=0.5),
    DecoderConfig(beam=6.0, max_active=2**31 - 1, min_active=0, acoustic_scale=0.3),
    DecoderConfig(beam=8.0, max_active=12, min_active=3, acoustic_scale=0.5),
    DecoderConfig(beam=2.0, max_active=50, min_active=10, acoustic_scale=1.0),
]


def _single_or_none(graph, log_likes, config):
    try:
        return decode(graph, log_likes, config)
    except DecodeError:
        return None


def _assert_same(batched, single):
    assert batched.word_ids == single.word_ids
    assert batched.reached_final == single.reached_final
    assert batched.total_cost == pytest.approx(single.total_cost, abs=1e-4)
    assert batched.graph_cost == pytest.approx(single.graph_cost, abs=1e-4)
    assert np.array_equal(batched.alignment, single.alignment)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), config_idx=st.integers(0, len(CONFIGS) - 1))
def test_batched_equals_single_on_random_graphs(seed, config_idx):
    config = CONFIGS[config_idx]
    rng = np.random.default_rng(seed)
    fst, table, _ = random_problem(seed, num_states=40, num_arcs=160, num_ilabels=10, num_pdfs=6)
    graph = DecodingGraph.from_fst(fst, table)
    lengths = rng.integers(1, 15, size=int(rng.integers(1, 6)))
    mats = [rng.normal(-3, 2, (int(n), 6)).astype(np.float32) for n in lengths]
    singles = [_single_or_none(graph, m, config) for m in mats]
    if any(r is None for r in singles):
        with pytest.raises(DecodeError, match="no token survived"):
            decode_batch(graph, mats, config, backend="torch")
        return
    batched = decode_batch(graph, mats, config, device="cpu", backend="torch")
    assert len(batched) == len(mats)
    for b, s in zip(batched, singles, strict=True):
        _assert_same(b, s)


def test_auto_backend_on_cpu_matches_and_threads():
    fst, table, _ = random_problem(3, num_states=30, num_arcs=120, num_ilabels=8, num_pdfs=5)
    graph = DecodingGraph.from_fst(fst, table)
    rng = np.random.default_rng(0)
    mats = [rng.normal(-3, 2, (n, 5)).astype(np.float32) for n in (5, 9, 2, 7)]
    config = DecoderConfig(beam=8.0)
    singles = [decode(graph, m, config) for m in mats]
    for kwargs in ({}, {"num_workers": 2}, {"backend": "torch"}):
        for b, s in zip(decode_batch(graph, mats, config, **kwargs), singles, strict=True):
            _assert_same(b, s)
    # torch tensors are accepted as input, and a resident decoder can be reused
    dec = BatchedDecoder(graph, config, device=torch.device("cpu"))
    for _ in range(2):
        for b, s in zip(dec.decode([torch.from_numpy(m) for m in mats]), singles, strict=True):
            _assert_same(b, s)


def test_batched_errors():
    fst, table, _ = random_problem(1)
    graph = DecodingGraph.from_fst(fst, table)
    good = np.zeros((3, 4), np.float32)
    bad = good.copy()
    bad[0, 0] = np.inf
    with pytest.raises(DecodeError):
        decode_batch(graph, [good, bad], backend="torch")
    with pytest.raises(DecodeError, match="pdf-count"):
        decode_batch(graph, [torch.zeros(3, 1)], backend="torch")
    with pytest.raises(DecodeError, match="backend"):
        decode_batch(graph, [good], backend="cuda-magic")
    assert decode_batch(graph, []) == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), config_idx=st.integers(0, len(CONFIGS) - 1))
def test_online_torch_decoders_equal_the_compiled_search_chunk_by_chunk(seed, config_idx):
    """Streams advanced together, in chunks of different sizes (some empty), joining at
    different times: each equals the single-stream compiled search, partials included."""
    from asr.decode.batched_online import BatchedSearch, TorchOnlineDecoder, advance_torch_decoders
    from asr.decode.online import OnlineDecoder

    config = CONFIGS[config_idx]
    rng = np.random.default_rng(seed)
    fst, table, _ = random_problem(seed, num_states=40, num_arcs=160, num_ilabels=10, num_pdfs=6)
    graph = DecodingGraph.from_fst(fst, table)
    mats = [rng.normal(-3, 2, (int(n), 6)).astype(np.float32) for n in rng.integers(1, 15, 4)]
    if any(_single_or_none(graph, m, config) is None for m in mats):
        return  # all paths pruned: covered by the offline test
    search = BatchedSearch(graph, config)
    torch_decs = [TorchOnlineDecoder(search) for _ in mats]
    numba_decs = [OnlineDecoder(graph, config) for _ in mats]
    for dec in (*torch_decs, *numba_decs):
        dec.init()
    pos = [0] * len(mats)
    while any(p < m.shape[0] for p, m in zip(pos, mats, strict=True)):
        chunks = []
        for b, m in enumerate(mats):
            size = int(rng.integers(0, 4))
            chunks.append(m[pos[b] : pos[b] + size])
            pos[b] = min(pos[b] + size, m.shape[0])
        advance_torch_decoders(torch_decs, chunks)
        for dec, chunk in zip(numba_decs, chunks, strict=True):
            dec.advance(chunk)
        for t_dec, n_dec in zip(torch_decs, numba_decs, strict=True):
            assert t_dec.num_frames_decoded == n_dec.num_frames_decoded
            if n_dec.num_frames_decoded:
                assert t_dec.partial().num_frames == n_dec.partial().num_frames
                assert t_dec.final_relative_cost() == pytest.approx(
                    n_dec.final_relative_cost(), abs=1e-4
                )
    for t_dec, n_dec, m in zip(torch_decs, numba_decs, mats, strict=True):
        final = t_dec.finalize()
        _assert_same(final, n_dec.finalize())
        _assert_same(final, decode(graph, m, config))
