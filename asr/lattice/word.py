"""Word lattices (Kaldi's ``CompactLattice``) and what is done with them.

A :class:`WordLattice` is an acyclic, deterministic word acceptor, topologically
sorted (state 0 is the start): arcs ``src -word/(graph, acoustic), tids-> dst`` and
final weights ``(graph, acoustic), tids``. ``tids`` is a string of transition-ids (one
per frame); along any complete path the strings concatenate to the path's frame
alignment and the costs add up to its graph and (unscaled) acoustic cost. Each word
sequence is at most one path (:func:`asr.lattice.determinize` makes them so).

Scores: a path's cost is ``lm_scale * graph + acoustic_scale * acoustic +
word_ins_penalty * num_words``; the defaults are the decoding's (``lm_scale`` 1, the
search's ``acoustic_scale``, no penalty). Kaldi's ``score.sh`` grid over LMWT is
``lm_scale = LMWT, acoustic_scale = 1`` (the same ranking as ``acoustic_scale =
1/LMWT``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from asr.errors import DecodeError

__all__ = ["WordLattice", "LatticePath", "Scales"]


@dataclass(frozen=True)
class Scales:
    """How lattice costs are combined: ``lm_scale * graph + acoustic_scale * acoustic +
    word_ins_penalty * words`` (``acoustic_scale`` None: the decoding's)."""

    lm_scale: float = 1.0
    acoustic_scale: float | None = None
    word_ins_penalty: float = 0.0


@dataclass(frozen=True, eq=False)
class LatticePath:
    """One path of a word lattice: words with frame spans, costs and the alignment."""

    word_ids: tuple[int, ...]
    word_spans: np.ndarray  # (num_words, 2) int32 [start, end) frames
    graph_cost: float
    acoustic_cost: float
    cost: float  # under the Scales it was found with
    alignment: np.ndarray  # (num_frames,) int32 transition-ids
    arcs: np.ndarray  # arc indices


@dataclass(frozen=True, eq=False)
class WordLattice:
    """See the module docstring. ``state_frame[s]``: frames consumed on reaching ``s``."""

    src: np.ndarray
    dst: np.ndarray
    word: np.ndarray
    graph_cost: np.ndarray
    acoustic_cost: np.ndarray
    tid_start: np.ndarray  # (num_arcs + 1,)
    tids: np.ndarray
    final_graph: np.ndarray  # (num_states,) inf where not final
    final_acoustic: np.ndarray
    final_tid_start: np.ndarray  # (num_states + 1,)
    final_tids: np.ndarray
    state_frame: np.ndarray
    num_frames: int
    acoustic_scale: float
    reached_final: bool = True  # False: the search ended in no final state (all were made final)
    beam: float = float("inf")  # every word sequence within this beam of the best is here

    # -- construction -------------------------------------------------------------
    @classmethod
    def from_parts(
        cls,
        num_states: int,
        arcs: Sequence[tuple[int, int, int, float, float, tuple[int, ...]]],
        finals: dict[int, tuple[float, float, tuple[int, ...]]],
        num_frames: int,
        acoustic_scale: float,
    ) -> WordLattice:
        """From ``(src, dst, word, graph, acoustic, tids)`` arcs and ``{state: (graph,
        acoustic, tids)}`` finals; states are renumbered topologically (start stays 0),
        unreachable/dead states dropped."""
        src = np.array([a[0] for a in arcs], dtype=np.int64)
        dst = np.array([a[1] for a in arcs], dtype=np.int64)
        # trim: keep states on a complete path
        fwd = np.zeros(num_states, bool)
        bwd = np.zeros(num_states, bool)
        order = _topological_order(num_states, src, dst)
        by_src = np.argsort(src, kind="stable")
        starts = np.searchsorted(src[by_src], np.arange(num_states + 1))
        if num_states:
            fwd[0] = True
        for s in order:
            if fwd[s]:
                fwd[dst[by_src[starts[s] : starts[s + 1]]]] = True
        for s in finals:
            bwd[s] = True
        for s in order[::-1]:
            if not bwd[s] and np.any(bwd[dst[by_src[starts[s] : starts[s + 1]]]]):
                bwd[s] = True
        alive = fwd & bwd
        new_id = np.full(num_states, -1, np.int64)
        kept = [s for s in order if alive[s]]
        new_id[kept] = np.arange(len(kept))
        keep_arc = alive[src] & alive[dst] if len(arcs) else np.zeros(0, bool)
        arc_idx = np.flatnonzero(keep_arc)
        words = np.array([a[2] for a in arcs], dtype=np.int64)
        arc_idx = arc_idx[np.lexsort((words[arc_idx], new_id[src[arc_idx]]))]  # by (src, word)
        strings = [arcs[i][5] for i in arc_idx]
        tid_start = np.zeros(len(strings) + 1, np.int64)
        tid_start[1:] = np.cumsum([len(s) for s in strings])
        n = len(kept)
        final_graph = np.full(n, np.inf)
        final_ac = np.full(n, np.inf)
        final_strings: list[tuple[int, ...]] = [()] * n
        for s, (g, a, t) in finals.items():
            if alive[s]:
                final_graph[new_id[s]] = g
                final_ac[new_id[s]] = a
                final_strings[new_id[s]] = t
        final_tid_start = np.zeros(n + 1, np.int64)
        final_tid_start[1:] = np.cumsum([len(s) for s in final_strings])
        lat_src = new_id[src[arc_idx]].astype(np.int32)
        lat_dst = new_id[dst[arc_idx]].astype(np.int32)
        lengths = np.diff(tid_start)
        state_frame = np.full(n, -1, np.int64)
        if n:
            state_frame[0] = 0
        for i in range(lat_src.shape[0]):  # arcs sorted by (topological) src
            f = state_frame[lat_src[i]] + lengths[i]
            if state_frame[lat_dst[i]] < 0:
                state_frame[lat_dst[i]] = f
        return cls(
            src=lat_src,
            dst=lat_dst,
            word=np.array([arcs[i][2] for i in arc_idx], dtype=np.int32),
            graph_cost=np.array([arcs[i][3] for i in arc_idx], dtype=np.float64),
            acoustic_cost=np.array([arcs[i][4] for i in arc_idx], dtype=np.float64),
            tid_start=tid_start,
            tids=np.array([t for s in strings for t in s], dtype=np.int32),
            final_graph=final_graph,
            final_acoustic=final_ac,
            final_tid_start=final_tid_start,
            final_tids=np.array([t for s in final_strings for t in s], dtype=np.int32),
            state_frame=state_frame.astype(np.int32),
            num_frames=int(num_frames),
            acoustic_scale=float(acoustic_scale),
        )

    # -- basic properties ------------------------------------------------------------
    @property
    def num_states(self) -> int:
        return int(self.final_graph.shape[0])

    @property
    def num_arcs(self) -> int:
        return int(self.src.shape[0])

    def arc_tids(self, i: int) -> np.ndarray:
        return self.tids[self.tid_start[i] : self.tid_start[i + 1]]

    def final_tids_of(self, s: int) -> np.ndarray:
        return self.final_tids[self.final_tid_start[s] : self.final_tid_start[s + 1]]

    def arc_spans(self) -> np.ndarray:
        """(num_arcs, 2) [start, end) frames of each arc's word (its tids' frames)."""
        start = self.state_frame[self.src].astype(np.int64)
        return np.stack([start, start + np.diff(self.tid_start)], axis=1)

    def costs(self, scales: Scales = Scales()) -> tuple[np.ndarray, np.ndarray]:
        """(arc costs, final costs) under ``scales`` (float64)."""
        ac = self.acoustic_scale if scales.acoustic_scale is None else scales.acoustic_scale
        arc = scales.lm_scale * self.graph_cost + ac * self.acoustic_cost + scales.word_ins_penalty
        with np.errstate(invalid="ignore"):
            final = scales.lm_scale * self.final_graph + ac * self.final_acoustic
        final[~np.isfinite(self.final_graph)] = np.inf
        return arc, final

    # -- paths -----------------------------------------------------------------------
    def path(self, arcs: np.ndarray, scales: Scales = Scales()) -> LatticePath:
        """The :class:`LatticePath` made of ``arcs`` (a complete path, start to a final state)."""
        arcs = np.asarray(arcs, dtype=np.int64)
        end = int(self.dst[arcs[-1]]) if arcs.size else 0
        if not np.isfinite(self.final_graph[end]):
            raise DecodeError("internal error: path does not end in a final state")
        pieces = [self.arc_tids(int(i)) for i in arcs] + [self.final_tids_of(end)]
        alignment = np.concatenate(pieces).astype(np.int32) if pieces else np.zeros(0, np.int32)
        spans = self.arc_spans()[arcs].astype(np.int32).reshape(-1, 2)
        graph = float(self.graph_cost[arcs].sum() + self.final_graph[end])
        acoustic = float(self.acoustic_cost[arcs].sum() + self.final_acoustic[end])
        arc_cost, final_cost = self.costs(scales)
        return LatticePath(
            word_ids=tuple(int(w) for w in self.word[arcs]),
            word_spans=spans,
            graph_cost=graph,
            acoustic_cost=acoustic,
            cost=float(arc_cost[arcs].sum() + final_cost[end]),
            alignment=alignment,
            arcs=arcs,
        )

    def best_path(self, scales: Scales = Scales()) -> LatticePath:
        from asr.lattice.raw import dag_best_path

        arc_cost, final_cost = self.costs(scales)
        arcs, _ = dag_best_path(self.num_states, self.src, self.dst, arc_cost, final_cost)
        if arcs is None:
            raise DecodeError("the lattice is empty (no complete path)")
        return self.path(arcs, scales)

    def nbest(self, n: int, scales: Scales = Scales()) -> list[LatticePath]:
        """The ``n`` best distinct word sequences (fewer when the lattice holds fewer),
        best first; OpenFst's n-shortest-paths over the lattice."""
        import kaldifst

        if n < 1:
            raise DecodeError(f"n must be >= 1, got {n}")
        if self.num_states == 0:
            raise DecodeError("the lattice is empty (no complete path)")
        arc_cost, final_cost = self.costs(scales)
        fst = kaldifst.StdVectorFst()
        for _ in range(self.num_states):
            fst.add_state()
        fst.start = 0
        for i in range(self.num_arcs):
            fst.add_arc(
                state=int(self.src[i]),
                arc=kaldifst.StdArc(i + 1, int(self.word[i]), float(arc_cost[i]), int(self.dst[i])),
            )
        for s in np.flatnonzero(np.isfinite(final_cost)):
            fst.set_final(state=int(s), weight=float(final_cost[s]))
        paths = kaldifst.convert_nbest_to_vector(kaldifst.shortest_path(fst, n=n))
        out = []
        for p in paths:
            _, ilabels, _, _ = kaldifst.get_linear_symbol_sequence(p)
            out.append(self.path(np.asarray(ilabels, dtype=np.int64) - 1, scales))
        out.sort(key=lambda p: p.cost)
        return out

    # -- posteriors ----------------------------------------------------------------------
    def arc_posteriors(self, scales: Scales = Scales()) -> np.ndarray:
        """(num_arcs,) posterior probability of each arc: forward-backward in the log
        semiring over ``-cost`` (Kaldi's ``lattice-to-post`` on a word lattice)."""
        arc_cost, final_cost = self.costs(scales)
        n = self.num_states
        alpha = np.full(n, -np.inf)
        beta = np.where(np.isfinite(final_cost), -final_cost, -np.inf)
        if n == 0:
            return np.zeros(0)
        alpha[0] = 0.0
        for i in range(self.num_arcs):  # sorted by topological src
            alpha[self.dst[i]] = np.logaddexp(alpha[self.dst[i]], alpha[self.src[i]] - arc_cost[i])
        for i in range(self.num_arcs - 1, -1, -1):
            beta[self.src[i]] = np.logaddexp(beta[self.src[i]], beta[self.dst[i]] - arc_cost[i])
        total = beta[0]
        if not np.isfinite(total):
            raise DecodeError("the lattice is empty (no complete path)")
        return np.exp(alpha[self.src] - arc_cost + beta[self.dst] - total)

    def word_confidences(self, path: LatticePath, scales: Scales = Scales()) -> np.ndarray:
        """Confidence of each word of ``path``: the posterior mass of lattice arcs with the
        same word whose span overlaps the word's middle frame (the time-overlap word
        posterior, an approximation of the sausage posteriors of Kaldi's MBR decoding)."""
        post = self.arc_posteriors(scales)
        spans = self.arc_spans()
        out = np.zeros(len(path.word_ids))
        for k, (w, (start, end)) in enumerate(zip(path.word_ids, path.word_spans, strict=True)):
            mid = (int(start) + int(end) - 1) // 2
            hit = (self.word == w) & (spans[:, 0] <= mid) & (spans[:, 1] > mid)
            out[k] = min(1.0, float(post[hit].sum()))
        return out

    def oracle_errors(self, reference: Sequence[int]) -> tuple[int, tuple[int, ...]]:
        """(fewest word errors of any path against ``reference``, that path's words)."""
        ref = list(reference)
        m = len(ref)
        n = self.num_states
        if n == 0:
            raise DecodeError("the lattice is empty (no complete path)")
        inf = 1 << 30
        cost = np.full((n, m + 1), inf, np.int64)
        back: dict[tuple[int, int], tuple[int, int, int]] = {}
        cost[0] = np.arange(m + 1)
        for i in range(self.num_arcs):
            s, d, w = int(self.src[i]), int(self.dst[i]), int(self.word[i])
            row = cost[s]
            for j in range(m + 1):
                if row[j] >= inf:
                    continue
                if row[j] + 1 < cost[d, j]:  # insertion of w
                    cost[d, j] = row[j] + 1
                    back[(d, j)] = (s, j, w)
                if j < m:
                    c = row[j] + (0 if ref[j] == w else 1)
                    if c < cost[d, j + 1]:
                        cost[d, j + 1] = c
                        back[(d, j + 1)] = (s, j, w)
            # deletions inside the destination row
            for j in range(1, m + 1):
                if cost[d, j - 1] + 1 < cost[d, j]:
                    cost[d, j] = cost[d, j - 1] + 1
                    back[(d, j)] = (d, j - 1, 0)
        finals = np.flatnonzero(np.isfinite(self.final_graph))
        if finals.size == 0:
            raise DecodeError("the lattice has no final state")
        end = int(finals[np.argmin(cost[finals, m])])
        best = int(cost[end, m])
        words: list[int] = []
        key = (end, m)
        while key in back:
            s, j, w = back[key]
            if w and s != key[0]:
                words.append(w)
            key = (s, j)
        return best, tuple(reversed(words))

    def is_deterministic(self) -> bool:
        """No state has two arcs with the same word, and no arc is epsilon: then every word
        sequence is at most one path."""
        if np.any(self.word == 0):
            return False
        pairs = self.src.astype(np.int64) * (int(self.word.max(initial=0)) + 1) + self.word
        return bool(np.unique(pairs).shape[0] == pairs.shape[0])

    def word_sequences(self, limit: int = 100000) -> list[tuple[int, ...]]:
        """Every word sequence of the lattice (for checks; raises above ``limit``)."""
        out: list[tuple[int, ...]] = []
        stack: list[tuple[int, tuple[int, ...]]] = [(0, ())] if self.num_states else []
        starts = np.searchsorted(self.src, np.arange(self.num_states + 1))
        while stack:
            s, words = stack.pop()
            if np.isfinite(self.final_graph[s]):
                out.append(words)
                if len(out) > limit:
                    raise DecodeError(f"more than {limit} paths")
            for i in range(starts[s], starts[s + 1]):
                stack.append((int(self.dst[i]), (*words, int(self.word[i]))))
        return out


def _topological_order(num_states: int, src: np.ndarray, dst: np.ndarray) -> list[int]:
    indeg = np.bincount(dst, minlength=num_states) if dst.size else np.zeros(num_states, int)
    out_arcs: list[list[int]] = [[] for _ in range(num_states)]
    for s, d in zip(src.tolist(), dst.tolist(), strict=True):
        out_arcs[s].append(d)
    order = [s for s in range(num_states) if indeg[s] == 0]
    k = 0
    while k < len(order):
        for d in out_arcs[order[k]]:
            indeg[d] -= 1
            if indeg[d] == 0:
                order.append(d)
        k += 1
    if len(order) != num_states:
        raise DecodeError("internal error: the word lattice has a cycle")
    return order
