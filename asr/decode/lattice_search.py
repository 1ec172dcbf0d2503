"""Lattice-generating Viterbi beam search (Kaldi's LatticeSimpleDecoder idea), numba.

The same token passing as :mod:`asr.decode.viterbi` (same pruning, so the best path
is the 1-best decoder's), but every token of every frame is kept with *all* its
forward links (``src token -ilabel:olabel/graph,acoustic-> dst token``) that were
inside the beam when they were made. At the end the links are pruned with
``lattice_beam``: a link survives when the best complete path through it costs at most
``best + lattice_beam`` (forward cost of its source + link + backward cost of its
destination). What remains is a state-level *raw* lattice
(:class:`asr.lattice.RawLattice`, Kaldi's ``Lattice``: transition-ids in, words out,
graph and acoustic costs), topologically sorted; :func:`asr.lattice.determinize`
turns it into a word lattice.

Costs: ``graph`` is the arc weight, ``acoustic`` the *unscaled* ``-log_like`` (Kaldi
writes lattices with unscaled acoustics); the search ranks paths by ``graph +
acoustic_scale * acoustic``.

End of utterance (Kaldi's ``GetRawLattice(use_final_probs=True)``): when some token of
the last frame is in a final state, final costs are the graph's final weights (and
non-final tokens get none); otherwise every last-frame token is final with cost 0.

>>> import numpy as np, kaldifst
>>> from asr.decode.search_graph import DecodingGraph
>>> fst = kaldifst.StdVectorFst()
>>> s0, s1 = fst.add_state(), fst.add_state()
>>> fst.start = s0
>>> fst.add_arc(state=s0, arc=kaldifst.StdArc(1, 7, 0.0, s1))
>>> fst.add_arc(state=s0, arc=kaldifst.StdArc(2, 8, 0.5, s1))
>>> fst.add_arc(state=s1, arc=kaldifst.StdArc(2, 0, 0.0, s1))
>>> fst.set_final(state=s1, weight=0.0)
>>> g = DecodingGraph.from_fst(fst, ilabel_to_pdf=[-1, 0, 1])
>>> lat = decode_lattice(g, np.log(np.full((2, 2), 0.5, np.float32)), LatticeConfig())
>>> lat.num_states, sorted(lat.olabel.tolist())
(3, [0, 7, 8])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from asr.decode.search_graph import DecodingGraph
from asr.decode.viterbi import DecoderConfig, check_log_likes, check_status_code, get_cutoff
from asr.errors import DecodeError
from asr.lattice.raw import RawLattice

__all__ = ["LatticeConfig", "LatticeSearch", "decode_lattice"]


@dataclass(frozen=True)
class LatticeConfig:
    """The beam search's options (:class:`DecoderConfig`) plus ``lattice_beam``.

    ``lattice_beam``: links whose best complete path costs more than ``best +
    lattice_beam`` are dropped (Kaldi's ``--lattice-beam``; 0 keeps only the best
    path's links).
    """

    decoder: DecoderConfig = DecoderConfig()
    lattice_beam: float = 8.0

    def __post_init__(self) -> None:
        if not (self.lattice_beam >= 0 and math.isfinite(self.lattice_beam)):
            raise DecodeError(f"lattice_beam must be >= 0 and finite, got {self.lattice_beam}")


class LatticeSearch:
    """Per-utterance lattice search: ``init()``, ``advance(scores)`` any number of times
    (frames in order), then ``lattice()``. One instance serves one utterance at a time."""

    def __init__(self, graph: DecodingGraph, config: LatticeConfig) -> None:
        n = graph.num_states
        self.graph = graph
        self.config = config
        self.state_tok = np.full(n, -1, dtype=np.int64)
        self.next_state_tok = np.full(n, -1, dtype=np.int64)
        self.frame_toks = np.zeros(n, dtype=np.int64)
        self.next_toks = np.zeros(n, dtype=np.int64)
        self.queue = np.zeros(n, dtype=np.int32)
        self.in_queue = np.zeros(n, dtype=np.bool_)
        self.tmp = np.zeros(n, dtype=np.float64)
        self.survivors = np.zeros(n, dtype=np.int64)
        # counters: [tokens in the current frame, num_tokens, num_links, frames decoded]
        self.counters = np.zeros(4, dtype=np.int64)
        self._alloc(1024, 4096)
        self.initialized = False

    def _alloc(self, num_tokens: int, num_links: int) -> None:
        self.tok_state = np.zeros(num_tokens, dtype=np.int32)
        self.tok_cost = np.zeros(num_tokens, dtype=np.float64)
        self.tok_head = np.zeros(num_tokens, dtype=np.int64)
        self.tok_frame = np.zeros(num_tokens, dtype=np.int32)
        self.link_dst = np.zeros(num_links, dtype=np.int64)
        self.link_next = np.zeros(num_links, dtype=np.int64)
        self.link_arc = np.zeros(num_links, dtype=np.int32)
        self.link_ac = np.zeros(num_links, dtype=np.float32)

    def _arrays(self) -> tuple:
        return (
            self.tok_state, self.tok_cost, self.tok_head, self.tok_frame,
            self.link_dst, self.link_next, self.link_arc, self.link_ac,
        )  # fmt: skip

    def _set_arrays(self, arrays: tuple) -> None:
        (
            self.tok_state, self.tok_cost, self.tok_head, self.tok_frame,
            self.link_dst, self.link_next, self.link_arc, self.link_ac,
        ) = arrays  # fmt: skip

    def _graph_args(self) -> tuple:
        g = self.graph
        return (g.arc_start, g.eps_start, g.weight, g.nextstate, g.pdf)

    def init(self) -> None:
        """Start a new utterance: one token in the start state, epsilon closure."""
        self.state_tok[:] = -1
        self.next_state_tok[:] = -1
        self.counters[:] = 0
        status, arrays = _lat_init(
            *self._graph_args(), *self._arrays(), self.state_tok, self.frame_toks,
            self.queue, self.in_queue, self.counters, self.graph.start_state,
        )  # fmt: skip
        self._set_arrays(arrays)
        check_status_code(status)
        self.initialized = True

    @property
    def num_frames_decoded(self) -> int:
        return int(self.counters[3])

    def advance(self, log_likes: np.ndarray) -> None:
        """Process every frame of validated ``log_likes: (num_frames, num_pdfs)``."""
        if not self.initialized:
            raise DecodeError("search not initialized: call init() first")
        if log_likes.shape[0] == 0:
            return
        beam, max_active, min_active, beam_delta, scale = self.config.decoder.kernel_args()
        status, arrays, self.state_tok, self.next_state_tok, self.frame_toks, self.next_toks = (
            _lat_advance(
                *self._graph_args(), *self._arrays(),
                self.state_tok, self.next_state_tok, self.frame_toks, self.next_toks,
                self.queue, self.in_queue, self.tmp, self.survivors, self.counters,
                log_likes, beam, max_active, min_active, beam_delta, scale,
            )
        )  # fmt: skip
        self._set_arrays(arrays)
        check_status_code(status)

    def lattice(self, *, use_final: bool = True) -> RawLattice:
        """The raw lattice of the frames so far, pruned with ``lattice_beam``."""
        if not self.initialized:
            raise DecodeError("search not initialized: call init() first")
        g = self.graph
        scale = self.config.decoder.kernel_args()[4]
        out = _lat_prune(
            g.weight, g.final_cost, *self._arrays(), self.frame_toks, self.counters,
            bool(use_final), float(self.config.lattice_beam),
        )  # fmt: skip
        status, state_tok, src, dst, arc, ac, final, reached = out
        if status == -2:
            raise DecodeError("no token survived the search (all paths pruned)")
        if status == -3:
            raise DecodeError(
                "the lattice has an epsilon cycle (the graph has a cycle of epsilon-input "
                "arcs); lattices need an acyclic epsilon subgraph"
            )
        check_status_code(status)
        arc64 = arc.astype(np.int64)
        return RawLattice(
            src=src.astype(np.int32),
            dst=dst.astype(np.int32),
            ilabel=g.ilabel[arc64].astype(np.int32),
            olabel=g.olabel[arc64].astype(np.int32),
            graph_cost=g.weight[arc64].astype(np.float32),
            acoustic_cost=(ac / np.float32(scale)).astype(np.float32),
            graph_arc=arc.astype(np.int32),
            final_cost=final.astype(np.float32),
            state_frame=self.tok_frame[state_tok].astype(np.int32),
            num_frames=self.num_frames_decoded,
            acoustic_scale=float(scale),
            reached_final=bool(reached),
            lattice_beam=float(self.config.lattice_beam),
        )


def decode_lattice(
    graph: DecodingGraph, log_likes: np.ndarray, config: LatticeConfig | None = None
) -> RawLattice:
    """Decode one utterance into a raw lattice (see the module docstring)."""
    config = config if config is not None else LatticeConfig()
    scores = check_log_likes(graph, log_likes)
    search = LatticeSearch(graph, config)
    search.init()
    search.advance(scores)
    return search.lattice()


# -- compiled kernels ------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _reserve(arrays, counters, num_links, num_tokens):
    """Arrays with room for ``num_links`` more links and ``num_tokens`` more tokens."""
    tok_state, tok_cost, tok_head, tok_frame, link_dst, link_next, link_arc, link_ac = arrays
    n = counters[1]
    if n + num_tokens > tok_state.shape[0]:
        size = max(2 * tok_state.shape[0], n + num_tokens)
        ts = np.empty(size, np.int32)
        tc = np.empty(size, np.float64)
        th = np.empty(size, np.int64)
        tf = np.empty(size, np.int32)
        ts[:n] = tok_state[:n]
        tc[:n] = tok_cost[:n]
        th[:n] = tok_head[:n]
        tf[:n] = tok_frame[:n]
        tok_state, tok_cost, tok_head, tok_frame = ts, tc, th, tf
    k = counters[2]
    if k + num_links > link_dst.shape[0]:
        size = max(2 * link_dst.shape[0], k + num_links)
        d = np.empty(size, np.int64)
        x = np.empty(size, np.int64)
        a = np.empty(size, np.int32)
        c = np.empty(size, np.float32)
        d[:k] = link_dst[:k]
        x[:k] = link_next[:k]
        a[:k] = link_arc[:k]
        c[:k] = link_ac[:k]
        link_dst, link_next, link_arc, link_ac = d, x, a, c
    return (tok_state, tok_cost, tok_head, tok_frame, link_dst, link_next, link_arc, link_ac)


@numba.njit(cache=True, nogil=True)
def _new_token(arrays, counters, state, frame):
    arrays = _reserve(arrays, counters, 0, 1)
    n = counters[1]
    arrays[0][n] = state
    arrays[1][n] = np.inf
    arrays[2][n] = -1
    arrays[3][n] = frame
    counters[1] = n + 1
    return n, arrays


@numba.njit(cache=True, nogil=True)
def _new_link(arrays, counters, src, dst, arc, ac):
    arrays = _reserve(arrays, counters, 1, 0)
    tok_state, tok_cost, tok_head, tok_frame, link_dst, link_next, link_arc, link_ac = arrays
    n = counters[2]
    link_dst[n] = dst
    link_next[n] = tok_head[src]
    link_arc[n] = arc
    link_ac[n] = ac
    tok_head[src] = n
    counters[2] = n + 1
    return arrays


@numba.njit(cache=True, nogil=True)
def _lat_closure(
    arc_start, eps_start, weight, nextstate, arrays, state_tok, frame_toks, queue, in_queue,
    counters, cutoff, frame,
):  # fmt: skip
    """Epsilon closure of the current frame's tokens; a re-expanded token's links are remade."""
    n_cur = counters[0]
    q = 0
    for i in range(n_cur):
        s = arrays[0][frame_toks[i]]
        queue[q] = s
        in_queue[s] = True
        q += 1
    pops = 0
    limit = 100 * state_tok.shape[0] + 1000000
    while q > 0:
        q -= 1
        s = queue[q]
        in_queue[s] = False
        pops += 1
        if pops > limit:
            for i in range(q):
                in_queue[queue[i]] = False
            counters[0] = n_cur
            return -1, arrays
        tk = state_tok[s]
        c = arrays[1][tk]
        if c > cutoff:
            continue
        arrays[2][tk] = -1  # regenerate this token's links (Kaldi: DeleteForwardLinks)
        for a in range(eps_start[s], arc_start[s + 1]):
            nc = c + np.float64(weight[a])
            if nc > cutoff:
                continue
            ns = nextstate[a]
            ntk = state_tok[ns]
            if ntk < 0:
                ntk, arrays = _new_token(arrays, counters, ns, frame)
                state_tok[ns] = ntk
                frame_toks[n_cur] = ntk
                n_cur += 1
            if nc < arrays[1][ntk]:
                arrays[1][ntk] = nc
                if not in_queue[ns]:
                    in_queue[ns] = True
                    queue[q] = ns
                    q += 1
            arrays = _new_link(arrays, counters, tk, ntk, a, np.float32(0.0))
    counters[0] = n_cur
    return 0, arrays


@numba.njit(cache=True, nogil=True)
def _lat_init(
    arc_start, eps_start, weight, nextstate, pdf,
    tok_state, tok_cost, tok_head, tok_frame, link_dst, link_next, link_arc, link_ac,
    state_tok, frame_toks, queue, in_queue, counters, start_state,
):  # fmt: skip
    arrays = (tok_state, tok_cost, tok_head, tok_frame, link_dst, link_next, link_arc, link_ac)
    tk, arrays = _new_token(arrays, counters, start_state, 0)
    arrays[1][tk] = 0.0
    state_tok[start_state] = tk
    frame_toks[0] = tk
    counters[0] = 1
    return _lat_closure(
        arc_start, eps_start, weight, nextstate, arrays, state_tok, frame_toks, queue,
        in_queue, counters, np.inf, 0,
    )  # fmt: skip


@numba.njit(cache=True, nogil=True)
def _lat_advance(
    arc_start, eps_start, weight, nextstate, pdf,
    tok_state, tok_cost, tok_head, tok_frame, link_dst, link_next, link_arc, link_ac,
    state_tok, next_state_tok, frame_toks, next_toks, queue, in_queue, tmp, survivors,
    counters, log_likes, beam, max_active, min_active, beam_delta, scale,
):  # fmt: skip
    arrays = (tok_state, tok_cost, tok_head, tok_frame, link_dst, link_next, link_arc, link_ac)
    scale32 = np.float32(scale)
    for t in range(log_likes.shape[0]):
        row = log_likes[t]
        frame = counters[3] + 1
        n_cur = counters[0]
        best = np.inf
        best_tok = -1
        for i in range(n_cur):
            c = arrays[1][frame_toks[i]]
            tmp[i] = c
            if c < best:
                best = c
                best_tok = frame_toks[i]
        weight_cutoff, adaptive_beam = get_cutoff(
            tmp, n_cur, best, beam, max_active, min_active, beam_delta
        )
        m = 0
        for i in range(n_cur):
            tk = frame_toks[i]
            if arrays[1][tk] < weight_cutoff:
                survivors[m] = tk
                m += 1
        next_cutoff = np.inf
        if best_tok >= 0:
            s = arrays[0][best_tok]
            for a in range(arc_start[s], eps_start[s]):
                ac = -(scale32 * row[pdf[a]])
                nw = (np.float64(weight[a]) + best) + np.float64(ac)
                if nw + adaptive_beam < next_cutoff:
                    next_cutoff = nw + adaptive_beam
        # room for every link and token this frame can make, so the loop below writes
        # straight into the arrays (no growth checks, no tuple passing per link)
        need_links = 0
        for j in range(m):
            s = arrays[0][survivors[j]]
            need_links += eps_start[s] - arc_start[s]
        arrays = _reserve(arrays, counters, need_links, state_tok.shape[0])
        tok_state, tok_cost, tok_head, tok_frame, link_dst, link_next, link_arc, link_ac = arrays
        n_tok = counters[1]
        n_link = counters[2]
        n_next = 0
        for j in range(m):
            tk = survivors[j]
            s = tok_state[tk]
            c = tok_cost[tk]
            for a in range(arc_start[s], eps_start[s]):
                ac = -(scale32 * row[pdf[a]])
                nw = (np.float64(weight[a]) + c) + np.float64(ac)
                if nw < next_cutoff:
                    ns = nextstate[a]
                    ntk = next_state_tok[ns]
                    if ntk < 0:
                        ntk = n_tok
                        n_tok += 1
                        tok_state[ntk] = ns
                        tok_cost[ntk] = np.inf
                        tok_head[ntk] = -1
                        tok_frame[ntk] = frame
                        next_state_tok[ns] = ntk
                        next_toks[n_next] = ntk
                        n_next += 1
                    if nw < tok_cost[ntk]:
                        tok_cost[ntk] = nw
                    link_dst[n_link] = ntk
                    link_next[n_link] = tok_head[tk]
                    link_arc[n_link] = a
                    link_ac[n_link] = ac
                    tok_head[tk] = n_link
                    n_link += 1
                    if nw + adaptive_beam < next_cutoff:
                        next_cutoff = nw + adaptive_beam
        counters[1] = n_tok
        counters[2] = n_link
        for i in range(n_cur):
            state_tok[arrays[0][frame_toks[i]]] = -1
        # order-free pruning, as the 1-best search: tokens not below the final cutoff die
        k = 0
        for i in range(n_next):
            tk = next_toks[i]
            if arrays[1][tk] < next_cutoff:
                next_toks[k] = tk
                k += 1
            else:
                arrays[1][tk] = np.inf
                next_state_tok[arrays[0][tk]] = -1
        state_tok, next_state_tok = next_state_tok, state_tok
        frame_toks, next_toks = next_toks, frame_toks
        counters[0] = k
        counters[3] = frame
        status, arrays = _lat_closure(
            arc_start, eps_start, weight, nextstate, arrays, state_tok, frame_toks, queue,
            in_queue, counters, next_cutoff, frame,
        )  # fmt: skip
        if status < 0:
            return status, arrays, state_tok, next_state_tok, frame_toks, next_toks
    return 0, arrays, state_tok, next_state_tok, frame_toks, next_toks


@numba.njit(cache=True, nogil=True)
def _lat_prune(
    weight, final_cost,
    tok_state, tok_cost, tok_head, tok_frame, link_dst, link_next, link_arc, link_ac,
    frame_toks, counters, use_final, lattice_beam,
):  # fmt: skip
    """Backward costs, lattice-beam pruning and a topological renumbering of what is kept.

    Returns (status, kept token per new state, src, dst, graph arc, scaled acoustic cost
    per arc, final cost per new state, reached_final). Status -2: nothing survived; -3:
    an epsilon cycle among the kept tokens.
    """
    num_tok = counters[1]
    n_last = counters[0]
    empty_i = np.zeros(0, np.int64)
    empty_f = np.zeros(0, np.float32)
    final = np.full(num_tok, np.inf)
    reached = False
    if use_final:
        for i in range(n_last):
            tk = frame_toks[i]
            if tok_cost[tk] < np.inf and final_cost[tok_state[tk]] < np.inf:
                reached = True
    for i in range(n_last):
        tk = frame_toks[i]
        if tok_cost[tk] < np.inf:
            if reached:
                final[tk] = final_cost[tok_state[tk]]
            else:
                final[tk] = 0.0
    # backward (beta) costs; links are forward in token order except epsilon links
    # that reach a token made earlier in the same frame: repeat until nothing changes
    beta = final.copy()
    changed = True
    while changed:
        changed = False
        for tk in range(num_tok - 1, -1, -1):
            if tok_cost[tk] == np.inf:
                continue
            b = beta[tk]
            li = tok_head[tk]
            while li >= 0:
                d = link_dst[li]
                if tok_cost[d] < np.inf and beta[d] < np.inf:
                    c = np.float64(weight[link_arc[li]]) + np.float64(link_ac[li]) + beta[d]
                    if c < b - 1e-9 * (1.0 + abs(b)) or (b == np.inf and c < np.inf):
                        b = c
                li = link_next[li]
            if b < beta[tk]:
                beta[tk] = b
                changed = True
    best = np.inf
    for tk in range(num_tok):
        if tok_cost[tk] < np.inf and beta[tk] < np.inf:
            tot = tok_cost[tk] + beta[tk]
            if tot < best:
                best = tot
    if best == np.inf:
        return -2, empty_i, empty_i, empty_i, empty_i, empty_f, empty_f, reached
    limit = best + lattice_beam + 1e-6 * (1.0 + abs(best))
    keep = np.zeros(num_tok, np.bool_)
    for tk in range(num_tok):
        if tok_cost[tk] < np.inf and beta[tk] < np.inf and tok_cost[tk] + beta[tk] <= limit:
            keep[tk] = True
    # kept links, and in-degrees for a topological order (Kahn)
    indeg = np.zeros(num_tok, np.int64)
    num_links = 0
    for tk in range(num_tok):
        if not keep[tk]:
            continue
        li = tok_head[tk]
        while li >= 0:
            d = link_dst[li]
            if keep[d]:
                c = tok_cost[tk] + np.float64(weight[link_arc[li]]) + np.float64(link_ac[li])
                if c + beta[d] <= limit:
                    indeg[d] += 1
                    num_links += 1
            li = link_next[li]
    order = np.empty(num_tok, np.int64)
    new_id = np.full(num_tok, -1, np.int64)
    head = 0
    tail = 0
    for tk in range(num_tok):
        if keep[tk] and indeg[tk] == 0:
            order[tail] = tk
            tail += 1
    while head < tail:
        tk = order[head]
        new_id[tk] = head
        head += 1
        li = tok_head[tk]
        while li >= 0:
            d = link_dst[li]
            if keep[d]:
                c = tok_cost[tk] + np.float64(weight[link_arc[li]]) + np.float64(link_ac[li])
                if c + beta[d] <= limit:
                    indeg[d] -= 1
                    if indeg[d] == 0:
                        order[tail] = d
                        tail += 1
            li = link_next[li]
    num_kept = 0
    for tk in range(num_tok):
        if keep[tk]:
            num_kept += 1
    if tail != num_kept:
        return -3, empty_i, empty_i, empty_i, empty_i, empty_f, empty_f, reached
    src = np.empty(num_links, np.int64)
    dst = np.empty(num_links, np.int64)
    arc = np.empty(num_links, np.int64)
    ac = np.empty(num_links, np.float32)
    k = 0
    for i in range(tail):
        tk = order[i]
        li = tok_head[tk]
        while li >= 0:
            d = link_dst[li]
            if keep[d]:
                c = tok_cost[tk] + np.float64(weight[link_arc[li]]) + np.float64(link_ac[li])
                if c + beta[d] <= limit:
                    src[k] = i
                    dst[k] = new_id[d]
                    arc[k] = link_arc[li]
                    ac[k] = link_ac[li]
                    k += 1
            li = link_next[li]
    state_tok = order[:tail].copy()
    final_out = np.empty(tail, np.float32)
    for i in range(tail):
        final_out[i] = np.float32(final[state_tok[i]])
    return 0, state_tok, src, dst, arc, ac, final_out, reached
