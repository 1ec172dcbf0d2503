"""Baum-Welch forward-backward over per-utterance training graphs (log semiring).

:func:`forward_backward` sums over every path of a
:class:`~asr.decode.search_graph.DecodingGraph` that consumes exactly ``num_frames``
frames and ends in a final state. A path's log-weight is the sum of its arcs'
``-weight`` (graph log-probabilities), ``acoustic_scale * log_likes[t, pdf]``
for the emitting arc of each frame, and ``-final_cost`` of its last state. The
result holds ``total_log_like`` (log of the summed path weight) and the sparse
posteriors ``gamma[t, ilabel]``: the probability that frame ``t`` is consumed
by an arc with that input label (for training graphs ilabel = transition-id).
Per frame they sum to 1.

Both passes are compiled with numba and touch only active states: the forward
pass keeps, per frame, the states reached after that frame (plus their
epsilon closure, computed in topological order of the epsilon subgraph with a
heap keyed by topological rank); the backward pass visits only those states, so
mass sits on states reachable forward and co-reachable backward. With a finite
``beam``, states whose forward score after a frame's emitting step is more than
``beam`` below that frame's best are dropped before the epsilon closure (as
lattice pruning does before Kaldi's ``gmm-acc-stats``); the sums are then exact
over the surviving sub-graph and ``beam=inf`` (the default) is exact.

Helpers: :func:`pdf_posteriors` merges the posteriors per (frame, pdf) into the
triplets :meth:`asr.gmm.GmmAccumulator.accumulate_posteriors` takes, and
:func:`transition_counts` gives the soft transition-id counts for the
transition-model update.

>>> import numpy as np
>>> from asr.decode.search_graph import DecodingGraph
>>> g = DecodingGraph.from_arrays(  # 0 -1-> 1, 1 -2-> 1 (self-loop), 1 final
...     src=[0, 1], ilabel=[1, 2], olabel=[0, 0], weight=[0.0, 0.0], nextstate=[1, 1],
...     final_cost=[np.inf, 0.0], start_state=0, ilabel_to_pdf=[-1, 0, 1])
>>> res = forward_backward(g, np.log(np.full((3, 2), 0.5, np.float32)))
>>> bool(abs(res.total_log_like - 3 * np.log(0.5)) < 1e-5)
True
>>> res.posteriors.label.tolist(), res.posteriors.posterior.tolist()
([1, 2, 2], [1.0, 1.0, 1.0])
>>> transition_counts(res, num_transition_ids=2).tolist()
[0.0, 1.0, 2.0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numba
import numpy as np

from asr.decode.search_graph import DecodingGraph
from asr.decode.viterbi import check_log_likes
from asr.errors import DecodeError

__all__ = ["ForwardBackwardConfig", "FbResult", "SparsePosteriors", "forward_backward",
           "pdf_posteriors", "transition_counts"]  # fmt: skip

# Per-frame posterior sums and forward/backward totals must agree this closely.
_SUM_TOLERANCE = 1e-3

# kernel status codes
_OK = 0
_DEAD_FRAME = 1  # no state survives some frame
_NO_FINAL = 2  # no final state active after the last frame
_BAD_SCORE = 3  # NaN appeared in a score


@dataclass(frozen=True)
class ForwardBackwardConfig:
    """``acoustic_scale`` multiplies the log-likelihoods; ``beam`` (log units) prunes
    forward scores more than ``beam`` below the frame's best (``inf``: exact)."""

    acoustic_scale: float = 1.0
    beam: float = math.inf

    def __post_init__(self) -> None:
        if not (self.acoustic_scale > 0 and math.isfinite(self.acoustic_scale)):
            raise DecodeError(
                f"acoustic_scale must be positive and finite, got {self.acoustic_scale}"
            )
        if not self.beam > 0:  # also rejects NaN
            raise DecodeError(f"beam must be positive (inf for exact), got {self.beam}")


class SparsePosteriors(NamedTuple):
    """Aligned arrays ``frame_index: (n,) int32``, ``label: (n,) int32`` (ilabel or pdf),
    ``posterior: (n,) float32``; sorted by frame then label, one entry per pair."""

    frame_index: np.ndarray
    label: np.ndarray
    posterior: np.ndarray


@dataclass(frozen=True, eq=False)
class FbResult:
    """Forward-backward output for one utterance.

    ``posteriors``: transition-id (ilabel) occupancies per frame;
    ``total_log_like``: log of the summed weight of all (surviving) paths;
    ``frame_post_sums: (num_frames,) float64``: per-frame sum of the posteriors
    (checked to be 1 within 1e-3); ``num_active``: state-frame pairs visited.
    """

    posteriors: SparsePosteriors
    total_log_like: float
    frame_post_sums: np.ndarray
    num_frames: int
    num_active: int


# ---------------------------------------------------------------------------- kernels
@numba.njit(cache=True, nogil=True, inline="always")
def _log_add(a, b):  # pragma: no cover - compiled
    if a < b:
        a, b = b, a
    if b == -np.inf:
        return a
    return a + math.log1p(math.exp(b - a))


@numba.njit(cache=True, nogil=True)
def _eps_topo_rank(arc_start, eps_start, nextstate):  # pragma: no cover - compiled
    """Topological rank of every state in the epsilon subgraph (Kahn); -1 on a cycle.

    Returns ``(rank: (num_states,) int32, num_eps_arcs)``; ``rank[0] == -1`` when the
    epsilon arcs contain a cycle.
    """
    num_states = eps_start.shape[0]
    indeg = np.zeros(num_states, np.int32)
    num_eps = 0
    for s in range(num_states):
        for a in range(eps_start[s], arc_start[s + 1]):
            indeg[nextstate[a]] += 1
            num_eps += 1
    rank = np.full(num_states, -1, np.int32)
    queue = np.empty(num_states, np.int32)
    head, tail = 0, 0
    for s in range(num_states):
        if indeg[s] == 0:
            queue[tail] = s
            tail += 1
    while head < tail:
        s = queue[head]
        rank[s] = head
        head += 1
        for a in range(eps_start[s], arc_start[s + 1]):
            n = nextstate[a]
            indeg[n] -= 1
            if indeg[n] == 0:
                queue[tail] = n
                tail += 1
    if head < num_states:
        rank[:] = -1
    return rank, num_eps


@numba.njit(cache=True, nogil=True, inline="always")
def _heap_push(heap, size, key):  # pragma: no cover - compiled
    i = size
    heap[i] = key
    while i > 0:
        parent = (i - 1) // 2
        if heap[parent] <= heap[i]:
            break
        heap[parent], heap[i] = heap[i], heap[parent]
        i = parent
    return size + 1


@numba.njit(cache=True, nogil=True, inline="always")
def _heap_pop(heap, size):  # pragma: no cover - compiled
    top = heap[0]
    size -= 1
    heap[0] = heap[size]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        child = left
        if left + 1 < size and heap[left + 1] < heap[left]:
            child = left + 1
        if heap[i] <= heap[child]:
            break
        heap[i], heap[child] = heap[child], heap[i]
        i = child
    return top, size


# fmt: off
@numba.njit(cache=True, nogil=True)
def _close_forward(arc_start, eps_start, weight, nextstate, rank, state_of_rank,
                   score, active, banned, lst, count, heap, in_heap):  # pragma: no cover
    """Forward epsilon closure of ``lst[:count]`` (scores in ``score``): states with
    epsilon arcs are expanded in increasing topological rank (a min-heap), so each
    is expanded once with its complete score. Appends newly reached states and
    returns the new count. ``banned`` states (pruned after this frame's emitting
    step) stay out: letting them back in with only their epsilon mass would break
    the forward/backward symmetry."""
    size = 0
    for i in range(count):
        s = lst[i]
        if eps_start[s] < arc_start[s + 1]:
            size = _heap_push(heap, size, rank[s])
            in_heap[s] = True
    while size > 0:
        r, size = _heap_pop(heap, size)
        s = state_of_rank[r]
        in_heap[s] = False
        for a in range(eps_start[s], arc_start[s + 1]):
            n = nextstate[a]
            if banned[n]:
                continue
            v = score[s] - weight[a]
            if active[n]:
                score[n] = _log_add(score[n], v)
            else:
                active[n] = True
                score[n] = v
                lst[count] = n
                count += 1
            if not in_heap[n] and eps_start[n] < arc_start[n + 1]:
                size = _heap_push(heap, size, rank[n])
                in_heap[n] = True
    return count


@numba.njit(cache=True, nogil=True)
def _close_backward(arc_start, eps_start, weight, nextstate, rank, state_of_rank,
                    beta, states, lo, hi, heap):  # pragma: no cover
    """Backward epsilon closure of one frame's states ``states[lo:hi]``, whose
    ``beta`` holds their emitting/final part: states with epsilon arcs are
    finished in decreasing topological rank (a min-heap on ``last - rank``)."""
    last = rank.shape[0] - 1
    size = 0
    for i in range(lo, hi):
        s = states[i]
        if eps_start[s] < arc_start[s + 1]:
            size = _heap_push(heap, size, last - rank[s])
    while size > 0:
        r, size = _heap_pop(heap, size)
        s = state_of_rank[last - r]
        b = beta[s]
        for a in range(eps_start[s], arc_start[s + 1]):
            b = _log_add(b, beta[nextstate[a]] - weight[a])
        beta[s] = b


@numba.njit(cache=True, nogil=True)
def _forward_kernel(arc_start, eps_start, weight, nextstate, pdf, final_cost, start,
                    rank, state_of_rank, has_eps, log_likes, scale, beam):  # pragma: no cover
    """Forward pass. Returns ``(status, frame, offsets, states, alphas, total)``:
    the states active after ``t`` frames are ``states[offsets[t]:offsets[t + 1]]``
    with forward scores ``alphas[...]``."""
    num_states = final_cost.shape[0]
    num_frames = log_likes.shape[0]
    score = np.full(num_states, -np.inf)
    active = np.zeros(num_states, np.bool_)
    in_heap = np.zeros(num_states, np.bool_)
    banned = np.zeros(num_states, np.bool_)
    pruned = np.empty(num_states, np.int32)
    heap = np.empty(num_states, np.int32)
    lst = np.empty(num_states, np.int32)
    states = np.empty(max(1024, 4 * num_states), np.int32)
    alphas = np.empty(states.shape[0], np.float64)
    offsets = np.zeros(num_frames + 2, np.int64)
    num_pruned = 0
    count = 1
    lst[0] = start
    active[start] = True
    score[start] = 0.0
    for t in range(num_frames + 1):
        if has_eps:
            count = _close_forward(arc_start, eps_start, weight, nextstate, rank, state_of_rank,
                                   score, active, banned, lst, count, heap, in_heap)
            for i in range(num_pruned):
                banned[pruned[i]] = False
        base = offsets[t]
        if base + count > states.shape[0]:
            cap = max(2 * states.shape[0], base + count)
            states = _grow(states, base, cap)
            alphas = _grow(alphas, base, cap)
        for i in range(count):
            s = lst[i]
            states[base + i] = s
            alphas[base + i] = score[s]
            active[s] = False
            score[s] = -np.inf
        offsets[t + 1] = base + count
        if t == num_frames:
            break
        count = 0  # emitting step into frame t + 1
        for i in range(base, offsets[t + 1]):
            s = states[i]
            alpha = alphas[i]
            for a in range(arc_start[s], eps_start[s]):
                n = nextstate[a]
                v = alpha - weight[a] + scale * log_likes[t, pdf[a]]
                if active[n]:
                    score[n] = _log_add(score[n], v)
                else:
                    active[n] = True
                    score[n] = v
                    lst[count] = n
                    count += 1
        best = -np.inf
        for i in range(count):
            v = score[lst[i]]
            if v != v:
                return _BAD_SCORE, t, offsets, states, alphas, np.nan
            best = max(best, v)
        num_pruned = 0
        if beam < np.inf:
            kept = 0
            for i in range(count):
                s = lst[i]
                if score[s] >= best - beam:
                    lst[kept] = s
                    kept += 1
                else:
                    active[s] = False
                    score[s] = -np.inf
                    banned[s] = True
                    pruned[num_pruned] = s
                    num_pruned += 1
            count = kept
        if count == 0:
            return _DEAD_FRAME, t, offsets, states, alphas, -np.inf
    total = -np.inf
    for i in range(offsets[num_frames], offsets[num_frames + 1]):
        if final_cost[states[i]] < np.inf:
            total = _log_add(total, alphas[i] - final_cost[states[i]])
    if total != total:
        return _BAD_SCORE, num_frames, offsets, states, alphas, total
    status = _NO_FINAL if total == -np.inf else _OK
    return status, num_frames, offsets, states, alphas, total


@numba.njit(cache=True, nogil=True)
def _grow(arr, used, cap):  # pragma: no cover - compiled
    out = np.empty(cap, arr.dtype)
    out[:used] = arr[:used]
    return out


@numba.njit(cache=True, nogil=True)
def _backward_kernel(arc_start, eps_start, ilabel, weight, nextstate, pdf, final_cost, rank,
                     state_of_rank, has_eps, log_likes, scale, offsets, states, alphas, total,
                     graph_labels):  # pragma: no cover
    """Backward pass and arc posteriors. Returns ``(frames, labels, posts,
    frame_sums, beta)`` with ``beta: (num_states,)`` the backward scores after 0
    frames; entries come in decreasing frame order, decreasing label within a frame.
    ``graph_labels``: the graph's distinct non-epsilon ilabels, increasing."""
    num_states = final_cost.shape[0]
    num_frames = log_likes.shape[0]
    num_ilabels = graph_labels[-1] + 1 if graph_labels.shape[0] else 1
    beta_cur = np.full(num_states, -np.inf)
    beta_next = np.full(num_states, -np.inf)
    heap = np.empty(num_states, np.int32)
    slot = np.full(num_ilabels, -1, np.int64)
    tmp_label = np.empty(graph_labels.shape[0], np.int32)
    tmp_post = np.empty(graph_labels.shape[0], np.float64)
    out_frame = np.empty(1024, np.int32)
    out_label = np.empty(1024, np.int32)
    out_post = np.empty(1024, np.float64)
    num_out = 0
    frame_sums = np.zeros(num_frames)
    lo, hi = offsets[num_frames], offsets[num_frames + 1]
    for i in range(lo, hi):
        s = states[i]
        beta_cur[s] = -np.float64(final_cost[s]) if final_cost[s] < np.inf else -np.inf
    if has_eps:
        _close_backward(arc_start, eps_start, weight, nextstate, rank, state_of_rank,
                        beta_cur, states, lo, hi, heap)
    for t in range(num_frames - 1, -1, -1):
        if t + 2 <= num_frames:  # beta_next held frame t + 2: clear it, then swap
            for i in range(offsets[t + 2], offsets[t + 3]):
                beta_next[states[i]] = -np.inf
        beta_cur, beta_next = beta_next, beta_cur
        frame_start = num_out
        lo, hi = offsets[t], offsets[t + 1]
        for i in range(lo, hi):
            s = states[i]
            top = -np.inf  # best arc score: one exp per arc, one log per state
            for a in range(arc_start[s], eps_start[s]):
                bn = beta_next[nextstate[a]]
                if bn > -np.inf:
                    top = max(top, scale * log_likes[t, pdf[a]] - weight[a] + bn)
            if top == -np.inf:
                beta_cur[s] = -np.inf
                continue
            total_e = 0.0
            post_scale = math.exp(alphas[i] + top - total)
            for a in range(arc_start[s], eps_start[s]):
                bn = beta_next[nextstate[a]]
                if bn == -np.inf:
                    continue
                e = math.exp(scale * log_likes[t, pdf[a]] - weight[a] + bn - top)
                total_e += e
                post = post_scale * e
                if post == 0.0:
                    continue
                k = slot[ilabel[a]]
                if k < 0:
                    if num_out == out_post.shape[0]:
                        out_frame = _grow(out_frame, num_out, 2 * num_out)
                        out_label = _grow(out_label, num_out, 2 * num_out)
                        out_post = _grow(out_post, num_out, 2 * num_out)
                    k = num_out
                    slot[ilabel[a]] = k
                    out_frame[k] = t
                    out_label[k] = ilabel[a]
                    out_post[k] = 0.0
                    num_out += 1
                out_post[k] += post
            beta_cur[s] = top + math.log(total_e)
        if has_eps:
            _close_backward(arc_start, eps_start, weight, nextstate, rank, state_of_rank,
                            beta_cur, states, lo, hi, heap)
        # this frame's entries in decreasing label order (argsort when few, else a
        # scan of the graph's sorted labels), reset the slots, sum
        count = num_out - frame_start
        if 16 * count < graph_labels.shape[0]:
            order = np.argsort(out_label[frame_start:num_out])
            for j in range(count):
                k = frame_start + order[count - 1 - j]
                tmp_label[j] = out_label[k]
                tmp_post[j] = out_post[k]
        else:
            j = 0
            for m in range(graph_labels.shape[0] - 1, -1, -1):
                k = slot[graph_labels[m]]
                if k >= 0:
                    tmp_label[j] = graph_labels[m]
                    tmp_post[j] = out_post[k]
                    j += 1
        acc = 0.0
        for j in range(count):
            out_label[frame_start + j] = tmp_label[j]
            out_post[frame_start + j] = tmp_post[j]
            slot[tmp_label[j]] = -1
            acc += tmp_post[j]
        frame_sums[t] = acc
    return out_frame[:num_out], out_label[:num_out], out_post[:num_out], frame_sums, beta_cur
# fmt: on


@numba.njit(cache=True, nogil=True)
def _min_frames_to_final(arc_start, eps_start, nextstate, final_cost, start):  # pragma: no cover
    """Fewest emitting arcs on any path from ``start`` to a final state (0-1 BFS); -1 if none."""
    num_states = final_cost.shape[0]
    dist = np.full(num_states, np.iinfo(np.int64).max, np.int64)
    deque = np.empty(4 * (arc_start[num_states] + num_states) + 4, np.int64)
    mid = deque.shape[0] // 2
    head = mid
    tail = mid
    dist[start] = 0
    deque[tail] = start
    tail += 1
    while head < tail:
        s = deque[head]
        head += 1
        d = dist[s]
        for a in range(arc_start[s], arc_start[s + 1]):
            cost = 1 if a < eps_start[s] else 0
            n = nextstate[a]
            if d + cost < dist[n]:
                dist[n] = d + cost
                if cost == 0:
                    head -= 1
                    deque[head] = n
                else:
                    deque[tail] = n
                    tail += 1
    best = -1
    for s in range(num_states):
        reached = final_cost[s] < np.inf and dist[s] < np.iinfo(np.int64).max
        if reached and (best < 0 or dist[s] < best):
            best = dist[s]
    return best


# ---------------------------------------------------------------------------- API
def forward_backward(
    graph: DecodingGraph,
    log_likes: np.ndarray,
    *,
    acoustic_scale: float = 1.0,
    beam: float = math.inf,
) -> FbResult:
    """Posteriors over ilabels (transition-ids) and the total log-likelihood of one utterance.

    ``graph``: a per-utterance training graph (acyclic apart from emitting
    self-loops; epsilon arcs allowed, epsilon cycles are not);
    ``log_likes: (num_frames, num_pdfs)`` log-likelihoods. Raises
    :class:`~asr.errors.DecodeError` on NaN/inf scores, an epsilon cycle, or when
    no path consumes exactly ``num_frames`` frames and ends in a final state.
    """
    config = ForwardBackwardConfig(acoustic_scale=acoustic_scale, beam=beam)
    scores = check_log_likes(graph, log_likes)
    num_frames = scores.shape[0]
    rank, num_eps = _eps_topo_rank(graph.arc_start, graph.eps_start, graph.nextstate)
    if rank[0] < 0:
        raise DecodeError(
            "graph has a cycle of epsilon arcs: forward-backward needs an acyclic epsilon subgraph"
        )
    state_of_rank = np.empty_like(rank)
    state_of_rank[rank] = np.arange(rank.shape[0], dtype=rank.dtype)
    g = graph
    scale = float(config.acoustic_scale)
    status, frame, offsets, states, alphas, total = _forward_kernel(
        g.arc_start, g.eps_start, g.weight, g.nextstate, g.pdf, g.final_cost, g.start_state,
        rank, state_of_rank, num_eps > 0, scores, scale, float(config.beam),
    )  # fmt: skip
    if status != _OK:
        _raise_status(graph, status, frame, num_frames, config.beam)
    frames, labels, posts, frame_sums, beta = _backward_kernel(
        g.arc_start, g.eps_start, g.ilabel, g.weight, g.nextstate, g.pdf, g.final_cost,
        rank, state_of_rank, num_eps > 0, scores, scale, offsets, states, alphas, float(total),
        np.unique(g.ilabel[g.ilabel > 0]),
    )  # fmt: skip
    backward_total = float(beta[graph.start_state])
    if not abs(backward_total - total) <= _SUM_TOLERANCE * max(1.0, abs(total)):
        raise DecodeError(
            f"forward ({total:.6f}) and backward ({backward_total:.6f}) total log-likelihoods differ"
        )
    bad = np.flatnonzero(~(np.abs(frame_sums - 1.0) <= _SUM_TOLERANCE))
    if bad.size:
        t = int(bad[0])
        raise DecodeError(f"posteriors of frame {t} sum to {frame_sums[t]:.6f}, not 1")
    posteriors = SparsePosteriors(  # kernel order is (frame, label) decreasing: reverse it
        frame_index=frames[::-1].copy(),
        label=labels[::-1].copy(),
        posterior=posts[::-1].astype(np.float32),
    )
    return FbResult(
        posteriors=posteriors,
        total_log_like=float(total),
        frame_post_sums=frame_sums,
        num_frames=num_frames,
        num_active=int(offsets[num_frames + 1]),
    )


def _raise_status(
    graph: DecodingGraph, status: int, frame: int, num_frames: int, beam: float
) -> None:
    if status == _BAD_SCORE:
        raise DecodeError(f"forward-backward produced a NaN score at frame {frame}")
    pruned = f" within beam {beam}" if math.isfinite(beam) else ""
    min_frames = int(
        _min_frames_to_final(
            graph.arc_start, graph.eps_start, graph.nextstate, graph.final_cost, graph.start_state
        )
    )
    if min_frames < 0:
        raise DecodeError("graph has no path from the start state to a final state")
    if min_frames > num_frames:
        raise DecodeError(
            f"utterance too short for its graph: {num_frames} frames, but every path to a "
            f"final state needs at least {min_frames}"
        )
    if status == _DEAD_FRAME:
        raise DecodeError(
            f"no path of the graph consumes frame {frame} of {num_frames}{pruned} "
            "(utterance too long for a graph without self-loops, or pruned away)"
        )
    raise DecodeError(f"no path reaches a final state after exactly {num_frames} frames{pruned}")


def pdf_posteriors(result: FbResult, ilabel_to_pdf: np.ndarray) -> SparsePosteriors:
    """Merge ilabel posteriors into pdf occupancies: ``SparsePosteriors`` with
    ``label`` = pdf, one entry per (frame, pdf), summed. ``ilabel_to_pdf:
    (num_ilabels,)`` (for transition-ids: ``TransitionModel.tid2pdf``). The
    result is the triplet ``GmmAccumulator.accumulate_posteriors`` takes."""
    table = np.asarray(ilabel_to_pdf, dtype=np.int64)
    post = result.posteriors
    if post.label.size and int(post.label.max()) >= table.shape[0]:
        raise DecodeError(
            f"ilabel {int(post.label.max())} is out of range of ilabel_to_pdf ({table.shape[0]} entries)"
        )
    pdfs = table[post.label]
    if pdfs.size and int(pdfs.min()) < 0:
        raise DecodeError("ilabel_to_pdf maps a posterior's ilabel to a negative pdf")
    num_pdfs = int(pdfs.max()) + 1 if pdfs.size else 1
    keys = post.frame_index.astype(np.int64) * num_pdfs + pdfs
    uniq, inverse = np.unique(keys, return_inverse=True)
    sums = np.bincount(inverse, weights=post.posterior.astype(np.float64), minlength=uniq.size)
    return SparsePosteriors(
        frame_index=(uniq // num_pdfs).astype(np.int32),
        label=(uniq % num_pdfs).astype(np.int32),
        posterior=sums.astype(np.float32),
    )


def transition_counts(result: FbResult, *, num_transition_ids: int) -> np.ndarray:
    """Soft transition-id counts ``(num_transition_ids + 1,) float64`` (index 0 unused),
    the expected number of times each transition was taken in the utterance."""
    post = result.posteriors
    if post.label.size and int(post.label.max()) > num_transition_ids:
        raise DecodeError(
            f"posterior ilabel {int(post.label.max())} exceeds num_transition_ids={num_transition_ids}"
        )
    return np.bincount(
        post.label, weights=post.posterior.astype(np.float64), minlength=num_transition_ids + 1
    )
