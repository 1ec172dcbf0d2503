"""Raw lattice -> word lattice with one path per word sequence (Kaldi's lattice determinization).

Two steps:

1. **Word segments** (compiled): the states where a word arc starts (and the start
   state) become nodes; from each node, for each word it can start with (or none), the
   best sub-path through non-word arcs to the next node (or to the end, final cost
   included) becomes one segment: ``node -word/(graph, acoustic), tids-> node``. Keeping
   only the best sub-path between two nodes for a word loses nothing: the best path of
   every word sequence is made of such best segments.
2. **Determinization** of the segment graph in the semiring of (cost pair, tid string)
   under "min" (the pair with the lower ``graph + acoustic_scale * acoustic`` wins), as
   Kaldi's ``DeterminizeLattice``: subsets of (node, residual cost pair, residual tid
   string); an output arc carries the best element's cost pair and the longest common
   prefix of the strings, the rest stays as residuals; the final weight carries the
   remainder. Every word sequence of the raw lattice is one path of the result, with the
   cost and alignment of its best raw path.
"""

from __future__ import annotations

import dataclasses
import heapq

import numba
import numpy as np

from asr.lattice.raw import RawLattice, dag_best_path, forward_backward_best
from asr.lattice.word import WordLattice

__all__ = ["determinize"]


#: the default bound on word-lattice states before the beam is tightened
MAX_STATES = 20000
#: the bound on what the subsets hold in all (elements + residual string lengths), Kaldi's
#: ``--max-mem`` in our units
MAX_SUBSET_SIZE = 300_000


def determinize(
    raw: RawLattice, *, beam: float | None = None, max_states: int = MAX_STATES
) -> WordLattice:
    """The word lattice of ``raw`` (see the module docstring).

    ``beam``: first prune ``raw`` to paths within ``beam`` of its best (None: the beam
    ``raw`` was pruned with). Word sequences whose best path is outside the beam are
    left out, as Kaldi's pruned determinization does.
    When the word lattice would exceed ``max_states`` states or its subsets
    ``MAX_SUBSET_SIZE`` elements and residual tids in all (a very bushy lattice: the
    number of word sequences grows exponentially with the beam), the raw lattice is
    pruned with a beam half as wide and determinized again, as Kaldi's
    ``lattice-determinize-pruned`` does when it reaches ``--max-mem``; the result's
    ``beam`` says within what beam of the best its word sequences are complete.
    """
    if beam is not None:
        raw = raw.pruned(beam)
    while True:
        lat = _determinize_once(raw, max_states, raw.lattice_beam)
        if lat is not None:
            return dataclasses.replace(lat, reached_final=raw.reached_final, beam=raw.lattice_beam)
        current = raw.lattice_beam if np.isfinite(raw.lattice_beam) else _widest_beam(raw)
        raw = raw.pruned(0.5 * current)


def _widest_beam(raw: RawLattice) -> float:
    """The beam that keeps every path of ``raw``: its worst path's cost - its best's."""
    _, best = raw.best_path()
    final = raw.final_cost.astype(np.float64)
    _, neg_worst = dag_best_path(
        raw.num_states,
        raw.src,
        raw.dst,
        -raw.arc_costs(),
        np.where(np.isfinite(final), -final, np.inf),
    )
    return max(0.0, -neg_worst - best)


def _determinize_once(raw: RawLattice, max_states: int, beam: float) -> WordLattice | None:
    scale = raw.acoustic_scale
    src = np.ascontiguousarray(raw.src, np.int64)
    dst = np.ascontiguousarray(raw.dst, np.int64)
    final = raw.final_cost.astype(np.float64)
    alpha, beta = forward_backward_best(raw.num_states, src, dst, raw.arc_costs(), final)
    best = float(beta[0]) if raw.num_states else np.inf
    seg = _segments(
        raw.num_states,
        src,
        dst,
        np.ascontiguousarray(raw.ilabel, np.int64),
        np.ascontiguousarray(raw.olabel, np.int64),
        raw.graph_cost.astype(np.float64),
        raw.acoustic_cost.astype(np.float64),
        final,
        float(scale),
        alpha,
        beta,
        best + beam + 1e-6 * (1.0 + abs(best)),
    )
    node_state, s_src, s_dst, s_word, s_g, s_a, s_tid_start, tids = seg
    num_nodes = node_state.shape[0] + 1  # + the super-final node
    final_node = num_nodes - 1
    out_arcs: list[list[tuple[int, int, float, float, tuple[int, ...]]]] = [
        [] for _ in range(num_nodes)
    ]
    for i in range(s_src.shape[0]):
        string = tuple(tids[s_tid_start[i] : s_tid_start[i + 1]].tolist())
        out_arcs[int(s_src[i])].append(
            (int(s_word[i]), int(s_dst[i]), float(s_g[i]), float(s_a[i]), string)
        )
    return _subset_construction(out_arcs, final_node, scale, raw.num_frames, max_states)


def _closure(elements: dict, out_arcs, scale: float) -> dict:
    """Follow segments without a word from every element; "min" keeps one per node."""
    heap = list(elements)
    heapq.heapify(heap)
    seen = set(heap)
    while heap:
        node = heapq.heappop(heap)
        g, a, s = elements[node]
        for word, dst, sg, sa, string in out_arcs[node]:
            if word != 0:
                continue
            cand = (g + sg, a + sa, s + string)
            old = elements.get(dst)
            if old is None or _better(cand, old, scale):
                elements[dst] = cand
            if dst not in seen:
                seen.add(dst)
                heapq.heappush(heap, dst)
    return elements


def _better(x, y, scale: float) -> bool:
    cx = x[0] + scale * x[1]
    cy = y[0] + scale * y[1]
    if cx != cy:
        return cx < cy
    return (x[2], x[0]) < (y[2], y[0])


def _common_prefix(strings: list[tuple[int, ...]]) -> int:
    first = min(strings)
    last = max(strings)
    n = 0
    for x, y in zip(first, last, strict=False):
        if x != y:
            break
        n += 1
    return n


def _key(elements: dict) -> tuple:
    return tuple(
        sorted((node, round(g, 4), round(a, 3), s) for node, (g, a, s) in elements.items())
    )


def _subset_construction(
    out_arcs, final_node: int, scale: float, num_frames: int, max_states: int
) -> WordLattice | None:
    start = _closure({0: (0.0, 0.0, ())}, out_arcs, scale)
    subsets = [start]
    index = {_key(start): 0}
    arcs: list[tuple[int, int, int, float, float, tuple[int, ...]]] = []
    finals: dict[int, tuple[float, float, tuple[int, ...]]] = {}
    size = 0
    k = 0
    while k < len(subsets):
        subset = subsets[k]
        if final_node in subset:
            finals[k] = subset[final_node]
        by_word: dict[int, dict] = {}
        for node, (g, a, s) in subset.items():
            for word, dst, sg, sa, string in out_arcs[node]:
                if word == 0:
                    continue
                cand = (g + sg, a + sa, s + string)
                group = by_word.setdefault(word, {})
                old = group.get(dst)
                if old is None or _better(cand, old, scale):
                    group[dst] = cand
        for word in sorted(by_word):
            elements = _closure(by_word[word], out_arcs, scale)
            best = min(elements.values(), key=lambda e: (e[0] + scale * e[1], e[2], e[0]))
            n = _common_prefix([e[2] for e in elements.values()])
            prefix = best[2][:n]
            residual = {
                node: (g - best[0], a - best[1], s[n:]) for node, (g, a, s) in elements.items()
            }
            key = _key(residual)
            dst = index.get(key)
            if dst is None:
                size += len(residual) + sum(len(e[2]) for e in residual.values())
                if len(subsets) >= max_states or size > MAX_SUBSET_SIZE:
                    return None
                dst = len(subsets)
                index[key] = dst
                subsets.append(residual)
            arcs.append((k, dst, word, best[0], best[1], prefix))
        k += 1
    return WordLattice.from_parts(len(subsets), arcs, finals, num_frames, scale)


@numba.njit(cache=True, nogil=True)
def _segments(num_states, src, dst, ilabel, olabel, graph, ac, final, scale, alpha, beta, limit):
    """Word segments of a topologically sorted raw lattice (step 1 of the module docstring);
    segments on no path cheaper than ``limit`` (``alpha[node] + segment + beta[end]``) are
    left out.

    Returns (node -> raw state, seg src node, seg dst node (num_nodes = the super-final),
    word, graph cost, acoustic cost, tid offsets (num_segs + 1), tids).
    """
    num_arcs = src.shape[0]
    arc_start = np.zeros(num_states + 1, np.int64)
    for i in range(num_arcs):
        arc_start[src[i] + 1] += 1
    for s in range(num_states):
        arc_start[s + 1] += arc_start[s]
    is_node = np.zeros(num_states, np.bool_)
    is_node[0] = True
    for i in range(num_arcs):
        if olabel[i] != 0:
            is_node[src[i]] = True
    node_of = np.full(num_states, -1, np.int64)
    num_nodes = 0
    for s in range(num_states):
        if is_node[s]:
            node_of[s] = num_nodes
            num_nodes += 1
    node_state = np.empty(num_nodes, np.int64)
    for s in range(num_states):
        if is_node[s]:
            node_state[node_of[s]] = s
    super_final = num_nodes
    seg_i = np.empty((64, 3), np.int64)  # per segment: src node, dst node, word
    seg_f = np.empty((64, 2), np.float64)  # graph, acoustic cost
    seg_tid = np.zeros(65, np.int64)  # tid offsets
    tids = np.empty(256, np.int64)
    num_segs = 0
    cost_g = np.full(num_states, np.inf)
    cost_a = np.full(num_states, np.inf)
    back = np.full(num_states, -1, np.int64)
    touched = np.empty(num_states, np.int64)
    words = np.empty(num_arcs + 1, np.int64)
    path = np.empty(num_states + 1, np.int64)
    for b in range(num_states):
        if not is_node[b]:
            continue
        # the node's own end-of-utterance segment
        n_words = 0
        if final[b] < np.inf:
            n_words = 1
            words[0] = -1  # marker: final segment
        for i in range(arc_start[b], arc_start[b + 1]):
            w = olabel[i]
            dup = False
            for j in range(n_words):
                if words[j] == w:
                    dup = True
            if not dup:
                words[n_words] = w
                n_words += 1
        for wi in range(n_words):
            w = words[wi]
            # ends found by this sweep: (end node or super_final, g, a, last raw state)
            n_touched = 0
            heap = [np.int64(0)]
            heap.pop()
            if w == -1:
                # final segment straight from the node: no tids
                if alpha[b] + final[b] > limit:
                    continue
                seg_i, seg_f, seg_tid, tids, num_segs = _add_segment(
                    seg_i, seg_f, seg_tid, tids, num_segs, node_of[b], super_final, 0,
                    final[b], 0.0, path, 0, ilabel,
                )  # fmt: skip
                continue
            for i in range(arc_start[b], arc_start[b + 1]):
                if olabel[i] == w:
                    n_touched = _relax(
                        i, dst[i], graph[i], ac[i], scale, cost_g, cost_a, back, touched,
                        n_touched, heap,
                    )  # fmt: skip
            while len(heap) > 0:
                s = heapq.heappop(heap)
                ends_here = is_node[s]
                if not ends_here:
                    for i in range(arc_start[s], arc_start[s + 1]):
                        n_touched = _relax(
                            i, dst[i], cost_g[s] + graph[i], cost_a[s] + ac[i], scale, cost_g,
                            cost_a, back, touched, n_touched, heap,
                        )  # fmt: skip
                if ends_here or final[s] < np.inf:
                    end = node_of[s] if ends_here else super_final
                    extra = 0.0 if ends_here else final[s]
                    rest = beta[s] if ends_here else final[s]
                    if alpha[b] + cost_g[s] + scale * cost_a[s] + rest > limit:
                        continue
                    # the tids of the best sub-path b -> s
                    n_path = 0
                    x = s
                    while x != b:
                        path[n_path] = back[x]
                        n_path += 1
                        x = src[back[x]]
                    seg_i, seg_f, seg_tid, tids, num_segs = _add_segment(
                        seg_i, seg_f, seg_tid, tids, num_segs, node_of[b], end, w,
                        cost_g[s] + extra, cost_a[s], path, n_path, ilabel,
                    )  # fmt: skip
            for k in range(n_touched):
                cost_g[touched[k]] = np.inf
                cost_a[touched[k]] = np.inf
                back[touched[k]] = -1
    return (
        node_state,
        seg_i[:num_segs, 0].copy(),
        seg_i[:num_segs, 1].copy(),
        seg_i[:num_segs, 2].copy(),
        seg_f[:num_segs, 0].copy(),
        seg_f[:num_segs, 1].copy(),
        seg_tid[: num_segs + 1].copy(),
        tids[: seg_tid[num_segs]].copy(),
    )


@numba.njit(cache=True, nogil=True)
def _relax(arc, d, cg, ca, scale, cost_g, cost_a, back, touched, n_touched, heap):
    """Reach state ``d`` through ``arc`` at (cg, ca); returns the new touched count."""
    if cost_g[d] == np.inf:
        touched[n_touched] = d
        n_touched += 1
        heapq.heappush(heap, d)
    elif not cg + scale * ca < cost_g[d] + scale * cost_a[d]:
        return n_touched
    cost_g[d] = cg
    cost_a[d] = ca
    back[d] = arc
    return n_touched


@numba.njit(cache=True, nogil=True)
def _add_segment(seg_i, seg_f, seg_tid, tids, n, src, dst, word, g, a, path, n_path, ilabel):
    """Append a segment whose tids are the non-epsilon ilabels of ``path[n_path-1::-1]``
    (arrays doubled when full); returns the arrays and the new count."""
    if n == seg_i.shape[0]:
        grown_i = np.empty((2 * n, 3), np.int64)
        grown_f = np.empty((2 * n, 2), np.float64)
        grown_t = np.zeros(2 * n + 1, np.int64)
        grown_i[:n] = seg_i
        grown_f[:n] = seg_f
        grown_t[: n + 1] = seg_tid
        seg_i, seg_f, seg_tid = grown_i, grown_f, grown_t
    num_tids = seg_tid[n]
    if num_tids + n_path > tids.shape[0]:
        grown = np.empty(max(2 * tids.shape[0], num_tids + n_path), np.int64)
        grown[:num_tids] = tids[:num_tids]
        tids = grown
    for k in range(n_path - 1, -1, -1):
        label = ilabel[path[k]]
        if label != 0:
            tids[num_tids] = label
            num_tids += 1
    seg_i[n, 0] = src
    seg_i[n, 1] = dst
    seg_i[n, 2] = word
    seg_f[n, 0] = g
    seg_f[n, 1] = a
    seg_tid[n + 1] = num_tids
    return seg_i, seg_f, seg_tid, tids, n + 1
