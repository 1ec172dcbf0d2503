"""Single-stream Viterbi beam search (Kaldi's FasterDecoder), compiled with numba.

Token passing over a :class:`~asr.decode.search_graph.DecodingGraph`: per frame, the
surviving tokens cross their emitting arcs (cost += weight - acoustic_scale *
log_like[frame, pdf]), new tokens are pruned with the adaptive beam, then
epsilon arcs are followed to closure; tokens that reach the same state are
recombined (Viterbi: the lower cost wins). Pruning follows Kaldi's
``FasterDecoder::GetCutoff``: ``best + beam``, tightened to the
``max_active``-th best cost or loosened to the ``min_active``-th, with the
adaptive beam set to ``cutoff - best + beam_delta`` in those cases.

One deliberate difference with Kaldi: Kaldi keeps emitting tokens that happened
to be inserted before its running cutoff tightened (so the token set depends on
arc order); we discard every emitting token whose cost is not below the frame's
final cutoff ``best_new + adaptive_beam``. This makes the search order-free, so
the batched torch search (:mod:`asr.decode.batched`) gives identical results;
it only matters when ``max_active``/``min_active`` bind.

Back-pointers live in a growing arena of ``(prev_token, arc_id)`` pairs; a
frame's tokens are committed to it only when they survive the next frame's
pruning (or are traced back), so the arena grows by at most the number of
expanded tokens per frame.

End of utterance: tokens in final states win (cost + final cost). If none is
final, the best token regardless is used and ``reached_final`` is False
(Kaldi's ``GetBestPath`` does the same).

>>> import numpy as np, kaldifst
>>> fst = kaldifst.StdVectorFst()
>>> s0, s1 = fst.add_state(), fst.add_state()
>>> fst.start = s0
>>> fst.add_arc(state=s0, arc=kaldifst.StdArc(1, 7, 0.0, s1))
>>> fst.add_arc(state=s1, arc=kaldifst.StdArc(2, 0, 0.0, s1))
>>> fst.set_final(state=s1, weight=0.0)
>>> from asr.decode.search_graph import DecodingGraph
>>> g = DecodingGraph.from_fst(fst, ilabel_to_pdf=[-1, 0, 1])
>>> res = decode(g, np.log(np.full((3, 2), 0.5, np.float32)), DecoderConfig())
>>> res.word_ids, res.alignment.tolist(), res.reached_final
((7,), [1, 2, 2], True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numba
import numpy as np

from asr.decode.search_graph import DecodingGraph
from asr.decode.traceback import DecodeResult, build_result
from asr.errors import DecodeError

__all__ = ["DecoderConfig", "decode", "SearchState", "check_log_likes"]

_INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class DecoderConfig:
    """Options of the beam search, as Kaldi's ``FasterDecoderOptions``.

    ``beam``: costs worse than best + beam are pruned; ``max_active`` /
    ``min_active``: bounds on the number of tokens expanded per frame;
    ``beam_delta``: slack added to the adaptive beam when max/min_active bind;
    ``hash_ratio``: accepted for Kaldi compatibility (our per-state tables need
    no hash); ``acoustic_scale``: multiplies the log-likelihoods.
    """

    beam: float = 16.0
    max_active: int = 7000
    min_active: int = 200
    acoustic_scale: float = 0.1
    beam_delta: float = 0.5
    hash_ratio: float = 2.0

    def __post_init__(self) -> None:
        if not (self.beam > 0 and math.isfinite(self.beam)):
            raise DecodeError(f"beam must be positive and finite, got {self.beam}")
        if self.max_active < 1 or self.min_active < 0 or self.min_active > self.max_active:
            raise DecodeError(
                f"need 0 <= min_active <= max_active and max_active >= 1, got "
                f"min_active={self.min_active}, max_active={self.max_active}"
            )
        if not (self.acoustic_scale > 0 and math.isfinite(self.acoustic_scale)):
            raise DecodeError(f"acoustic_scale must be positive, got {self.acoustic_scale}")
        if not (self.beam_delta >= 0 and math.isfinite(self.beam_delta)):
            raise DecodeError(f"beam_delta must be >= 0, got {self.beam_delta}")

    def kernel_args(self) -> tuple[float, int, int, float, float]:
        """(beam, max_active, min_active, beam_delta, acoustic_scale), rounded to float32 like Kaldi."""
        return (
            float(np.float32(self.beam)),
            min(int(self.max_active), _INT32_MAX),
            int(self.min_active),
            float(np.float32(self.beam_delta)),
            float(np.float32(self.acoustic_scale)),
        )


def check_log_likes(
    graph: DecodingGraph, log_likes: np.ndarray, *, allow_empty: bool = False
) -> np.ndarray:
    """Validate ``log_likes: (num_frames, num_pdfs)``; return it as C-contiguous float32."""
    scores = np.asarray(log_likes)
    if scores.ndim != 2:
        raise DecodeError(f"log_likes must be 2-D (num_frames, num_pdfs), got shape {scores.shape}")
    if scores.shape[0] == 0 and not allow_empty:
        raise DecodeError("log_likes is empty (0 frames)")
    if scores.shape[1] < graph.num_pdfs_required:
        raise DecodeError(
            f"graph reads pdf {graph.num_pdfs_required - 1} but log_likes has only "
            f"{scores.shape[1]} columns (graph/model pdf-count mismatch)"
        )
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    if not np.isfinite(scores).all():
        bad = np.argwhere(~np.isfinite(scores))[0]
        raise DecodeError(f"log_likes has a NaN/inf value at frame {bad[0]}, pdf {bad[1]}")
    return scores


class SearchState:
    """Mutable per-utterance search state (token tables and back-pointer arena).

    Used by :func:`decode` and :class:`asr.decode.online.OnlineDecoder`; one
    instance serves one utterance at a time (``init`` starts a new one).
    """

    def __init__(self, graph: DecodingGraph, config: DecoderConfig) -> None:
        n = graph.num_states
        self.graph = graph
        self.config = config
        self.cur_cost = np.full(n, np.inf, dtype=np.float64)
        self.cur_prev = np.full(n, -1, dtype=np.int64)
        self.cur_arc = np.full(n, -1, dtype=np.int32)
        self.cur_list = np.zeros(n, dtype=np.int32)
        self.arena_idx = np.full(n, -1, dtype=np.int64)
        self.prev_state = np.zeros(n, dtype=np.int32)
        self.prev_cost = np.zeros(n, dtype=np.float64)
        self.prev_arena = np.zeros(n, dtype=np.int64)
        self.queue = np.zeros(n, dtype=np.int32)
        self.in_queue = np.zeros(n, dtype=np.bool_)
        self.tmp = np.zeros(n, dtype=np.float64)
        self.arena_prev = np.zeros(1024, dtype=np.int64)
        self.arena_arc = np.zeros(1024, dtype=np.int32)
        # counters: [num_tokens, arena_size, frames_decoded]
        self.counters = np.zeros(3, dtype=np.int64)
        self.initialized = False

    def _graph_args(self) -> tuple:
        g = self.graph
        return (g.arc_start, g.eps_start, g.ilabel, g.weight, g.nextstate, g.pdf)

    def _table_args(self) -> tuple:
        return (
            self.cur_cost,
            self.cur_prev,
            self.cur_arc,
            self.cur_list,
            self.arena_idx,
            self.prev_state,
            self.prev_cost,
            self.prev_arena,
            self.queue,
            self.in_queue,
            self.tmp,
            self.counters,
        )

    def init(self) -> None:
        """Start a new utterance: one token in the start state, epsilon closure."""
        status = _init_kernel(*self._graph_args(), *self._table_args(), self.graph.start_state)
        check_status_code(status)
        self.counters[1] = 0
        self.initialized = True

    @property
    def num_frames_decoded(self) -> int:
        return int(self.counters[2])

    def advance(self, log_likes: np.ndarray) -> None:
        """Process every frame of ``log_likes: (num_frames, num_pdfs)`` (validated)."""
        if not self.initialized:
            raise DecodeError("search not initialized: call init() first")
        if log_likes.shape[0] == 0:
            return
        beam, max_active, min_active, beam_delta, scale = self.config.kernel_args()
        status, self.arena_prev, self.arena_arc = _advance_kernel(
            *self._graph_args(),
            *self._table_args(),
            self.arena_prev,
            self.arena_arc,
            log_likes,
            beam,
            max_active,
            min_active,
            beam_delta,
            scale,
        )
        check_status_code(status)

    def best_path(self, *, use_final: bool) -> tuple[np.ndarray, float, bool, int]:
        """(arc ids along the best path, its token cost, reached_final, end state)."""
        if not self.initialized:
            raise DecodeError("search not initialized: call init() first")
        best_state, token_cost, reached_final = _select_best(
            self.cur_list, self.cur_cost, self.graph.final_cost, self.counters, use_final
        )
        if best_state < 0:
            raise DecodeError("no token survived the search (all paths pruned)")
        arcs, self.arena_prev, self.arena_arc = _traceback_kernel(
            self.graph.ilabel,
            self.cur_prev,
            self.cur_arc,
            self.arena_idx,
            self.queue,
            self.counters,
            self.arena_prev,
            self.arena_arc,
            best_state,
        )
        return arcs, float(token_cost), bool(reached_final), int(best_state)

    def result(
        self,
        *,
        use_final: bool,
        word_symbols: Mapping[int, str] | None = None,
        ilabel_to_phone: np.ndarray | None = None,
        silence_phones: frozenset[int] = frozenset(),
    ) -> DecodeResult:
        arcs, token_cost, reached_final, end_state = self.best_path(use_final=use_final)
        final = float(self.graph.final_cost[end_state])
        return build_result(
            graph=self.graph,
            path_arcs=arcs,
            token_cost=token_cost,
            final_cost=final if (reached_final and use_final) else 0.0,
            reached_final=reached_final,
            num_frames=self.num_frames_decoded,
            word_symbols=word_symbols,
            ilabel_to_phone=ilabel_to_phone,
            silence_phones=silence_phones,
        )


def decode(
    graph: DecodingGraph,
    log_likes: np.ndarray,
    config: DecoderConfig | None = None,
    *,
    word_symbols: Mapping[int, str] | None = None,
    ilabel_to_phone: np.ndarray | None = None,
    silence_phones: frozenset[int] = frozenset(),
) -> DecodeResult:
    """Decode one utterance: ``log_likes: (num_frames, num_pdfs)`` log-likelihoods."""
    config = config if config is not None else DecoderConfig()
    scores = check_log_likes(graph, log_likes)
    state = SearchState(graph, config)
    state.init()
    state.advance(scores)
    return state.result(
        use_final=True,
        word_symbols=word_symbols,
        ilabel_to_phone=ilabel_to_phone,
        silence_phones=silence_phones,
    )


def check_status_code(status: int) -> None:
    if status == -1:
        raise DecodeError(
            "epsilon closure did not converge: the graph has an epsilon cycle with negative cost"
        )
    if status < 0:
        raise DecodeError(f"internal search error (status {status})")


# -- compiled kernels ------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _nonemitting(
    arc_start, eps_start, weight, nextstate,
    cur_cost, cur_prev, cur_arc, cur_list, queue, in_queue, counters, cutoff,
):  # fmt: skip
    """Epsilon closure of the current tokens; tokens above ``cutoff`` are not expanded."""
    n_cur = counters[0]
    q = 0
    for i in range(n_cur):
        s = cur_list[i]
        queue[q] = s
        in_queue[s] = True
        q += 1
    pops = 0
    limit = 100 * cur_cost.shape[0] + 1000000
    while q > 0:
        q -= 1
        s = queue[q]
        in_queue[s] = False
        pops += 1
        if pops > limit:
            for i in range(q):
                in_queue[queue[i]] = False
            counters[0] = n_cur
            return -1
        c = cur_cost[s]
        if c > cutoff:
            continue
        for a in range(eps_start[s], arc_start[s + 1]):
            nc = c + np.float64(weight[a])
            if nc > cutoff:
                continue
            ns = nextstate[a]
            old = cur_cost[ns]
            if nc < old:
                if old == np.inf:
                    cur_list[n_cur] = ns
                    n_cur += 1
                cur_cost[ns] = nc
                cur_prev[ns] = s
                cur_arc[ns] = a
                if not in_queue[ns]:
                    in_queue[ns] = True
                    queue[q] = ns
                    q += 1
    counters[0] = n_cur
    return 0


@numba.njit(cache=True, nogil=True)
def _init_kernel(
    arc_start, eps_start, ilabel, weight, nextstate, pdf,
    cur_cost, cur_prev, cur_arc, cur_list, arena_idx, prev_state, prev_cost, prev_arena,
    queue, in_queue, tmp, counters, start_state,
):  # fmt: skip
    for i in range(counters[0]):
        s = cur_list[i]
        cur_cost[s] = np.inf
        arena_idx[s] = -1
    cur_cost[start_state] = 0.0
    cur_prev[start_state] = -1
    cur_arc[start_state] = -1
    cur_list[0] = start_state
    counters[0] = 1
    counters[2] = 0
    return _nonemitting(
        arc_start, eps_start, weight, nextstate,
        cur_cost, cur_prev, cur_arc, cur_list, queue, in_queue, counters, np.inf,
    )  # fmt: skip


@numba.njit(cache=True, nogil=True)
def _arena_push(arena_prev, arena_arc, counters, prev, arc):
    size = counters[1]
    if size == arena_prev.shape[0]:
        new_prev = np.empty(2 * size, dtype=np.int64)
        new_arc = np.empty(2 * size, dtype=np.int32)
        new_prev[:size] = arena_prev
        new_arc[:size] = arena_arc
        arena_prev = new_prev
        arena_arc = new_arc
    arena_prev[size] = prev
    arena_arc[size] = arc
    counters[1] = size + 1
    return size, arena_prev, arena_arc


@numba.njit(cache=True, nogil=True)
def _commit(ilabel, cur_prev, cur_arc, arena_idx, chain, counters, arena_prev, arena_arc, s):
    """Give state ``s``'s token (and its same-frame epsilon ancestors) arena slots."""
    if arena_idx[s] >= 0:
        return arena_idx[s], arena_prev, arena_arc
    k = 0
    x = s
    while arena_idx[x] < 0 and cur_arc[x] >= 0 and ilabel[cur_arc[x]] == 0:
        chain[k] = x
        k += 1
        x = cur_prev[x]
    if arena_idx[x] < 0:
        idx, arena_prev, arena_arc = _arena_push(
            arena_prev, arena_arc, counters, cur_prev[x], cur_arc[x]
        )
        arena_idx[x] = idx
    p = arena_idx[x]
    for i in range(k - 1, -1, -1):
        y = chain[i]
        p, arena_prev, arena_arc = _arena_push(arena_prev, arena_arc, counters, p, cur_arc[y])
        arena_idx[y] = p
    return arena_idx[s], arena_prev, arena_arc


@numba.njit(cache=True, nogil=True)
def get_cutoff(tmp, n, best, beam, max_active, min_active, beam_delta):
    """Kaldi's GetCutoff: returns (weight_cutoff, adaptive_beam)."""
    beam_cutoff = best + beam
    if max_active == 2147483647 and min_active == 0:
        return beam_cutoff, beam
    max_cut = np.inf
    min_cut = np.inf
    if n > max_active:
        max_cut = np.partition(tmp[:n], max_active)[max_active]
    if max_cut < beam_cutoff:
        return max_cut, np.float64(np.float32(max_cut - best + beam_delta))
    if n > min_active:
        min_cut = best if min_active == 0 else np.partition(tmp[:n], min_active)[min_active]
    if min_cut > beam_cutoff:
        return min_cut, np.float64(np.float32(min_cut - best + beam_delta))
    return beam_cutoff, beam


@numba.njit(cache=True, nogil=True)
def _advance_kernel(
    arc_start, eps_start, ilabel, weight, nextstate, pdf,
    cur_cost, cur_prev, cur_arc, cur_list, arena_idx, prev_state, prev_cost, prev_arena,
    queue, in_queue, tmp, counters, arena_prev, arena_arc,
    log_likes, beam, max_active, min_active, beam_delta, scale,
):  # fmt: skip
    scale32 = np.float32(scale)
    for t in range(log_likes.shape[0]):
        row = log_likes[t]
        n_cur = counters[0]
        # --- cutoff over the previous frame's tokens (Kaldi GetCutoff)
        best = np.inf
        best_state = -1
        for i in range(n_cur):
            c = cur_cost[cur_list[i]]
            tmp[i] = c
            if c < best:
                best = c
                best_state = cur_list[i]
        weight_cutoff, adaptive_beam = get_cutoff(
            tmp, n_cur, best, beam, max_active, min_active, beam_delta
        )
        # --- survivors move to the prev buffers and get arena slots
        m = 0
        for i in range(n_cur):
            s = cur_list[i]
            if cur_cost[s] < weight_cutoff:
                prev_state[m] = s
                prev_cost[m] = cur_cost[s]
                m += 1
        for j in range(m):
            idx, arena_prev, arena_arc = _commit(
                ilabel, cur_prev, cur_arc, arena_idx, queue, counters,
                arena_prev, arena_arc, prev_state[j],
            )  # fmt: skip
            prev_arena[j] = idx
        for i in range(n_cur):
            s = cur_list[i]
            cur_cost[s] = np.inf
            arena_idx[s] = -1
        n_cur = 0
        # --- a first bound on the next cutoff from the best token
        next_cutoff = np.inf
        if best_state >= 0:
            for a in range(arc_start[best_state], eps_start[best_state]):
                ac = -(scale32 * row[pdf[a]])
                nw = (np.float64(weight[a]) + best) + np.float64(ac)
                if nw + adaptive_beam < next_cutoff:
                    next_cutoff = nw + adaptive_beam
        # --- emitting arcs
        for j in range(m):
            s = prev_state[j]
            c = prev_cost[j]
            for a in range(arc_start[s], eps_start[s]):
                ac = -(scale32 * row[pdf[a]])
                nw = (np.float64(weight[a]) + c) + np.float64(ac)
                if nw < next_cutoff:
                    ns = nextstate[a]
                    old = cur_cost[ns]
                    if nw < old:
                        if old == np.inf:
                            cur_list[n_cur] = ns
                            n_cur += 1
                        cur_cost[ns] = nw
                        cur_prev[ns] = prev_arena[j]
                        cur_arc[ns] = a
                    if nw + adaptive_beam < next_cutoff:
                        next_cutoff = nw + adaptive_beam
        # --- order-free pruning: drop tokens not below the final cutoff
        k = 0
        for i in range(n_cur):
            s = cur_list[i]
            if cur_cost[s] < next_cutoff:
                cur_list[k] = s
                k += 1
            else:
                cur_cost[s] = np.inf
        counters[0] = k
        counters[2] += 1
        status = _nonemitting(
            arc_start, eps_start, weight, nextstate,
            cur_cost, cur_prev, cur_arc, cur_list, queue, in_queue, counters, next_cutoff,
        )  # fmt: skip
        if status < 0:
            return status, arena_prev, arena_arc
    return 0, arena_prev, arena_arc


@numba.njit(cache=True, nogil=True)
def _select_best(cur_list, cur_cost, final_cost, counters, use_final):
    """(state, token cost, reached_final) of the best token; final states first if use_final."""
    n_cur = counters[0]
    reached = False
    for i in range(n_cur):
        s = cur_list[i]
        if cur_cost[s] != np.inf and final_cost[s] != np.inf:
            reached = True
            break
    best = np.inf
    best_state = -1
    by_total = reached and use_final
    for i in range(n_cur):
        s = cur_list[i]
        c = cur_cost[s]
        if by_total:
            total = c + np.float64(final_cost[s])
            if total < best:
                best = total
                best_state = s
        elif c < best:
            best = c
            best_state = s
    if best_state < 0:
        return -1, np.inf, reached
    return best_state, cur_cost[best_state], reached


@numba.njit(cache=True, nogil=True)
def _traceback_kernel(
    ilabel, cur_prev, cur_arc, arena_idx, chain, counters, arena_prev, arena_arc, best_state
):
    idx, arena_prev, arena_arc = _commit(
        ilabel, cur_prev, cur_arc, arena_idx, chain, counters, arena_prev, arena_arc, best_state
    )
    return walk_arena(arena_prev, arena_arc, idx), arena_prev, arena_arc


@numba.njit(cache=True, nogil=True)
def walk_arena(arena_prev, arena_arc, idx):
    """Arc ids on the back-pointer chain ending at arena entry ``idx``, first arc first."""
    n = 0
    i = idx
    while i >= 0:
        if arena_arc[i] >= 0:
            n += 1
        i = arena_prev[i]
    arcs = np.empty(n, dtype=np.int32)
    i = idx
    k = n - 1
    while i >= 0:
        if arena_arc[i] >= 0:
            arcs[k] = arena_arc[i]
            k -= 1
        i = arena_prev[i]
    return arcs
