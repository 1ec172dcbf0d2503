"""Batched Viterbi beam search in torch: many utterances per step, CPU or CUDA.

:class:`BatchedSearch` holds a graph on a device and advances many streams at once, each by
its own number of frames, keeping each stream's tokens and back-pointer arena in a
:class:`TorchSearchState` between calls (so streams can join and leave between calls, as
:mod:`asr.decode.batched_online` does for streaming). All streams' tokens live in one set of
flat tensors keyed by ``stream * num_states + state``; per frame the search prunes with each
stream's adaptive beam (Kaldi's GetCutoff, vectorized with a padded per-stream sort), commits
the survivors to the arena, gathers their emitting arcs through the CSR arrays
(``repeat_interleave``), recombines tokens reaching the same key (a stable sort by cost then
key keeps the minimum), then runs the epsilon closure in Bellman-Ford rounds until nothing
improves. It has exactly the semantics of the single-stream search
(:mod:`asr.decode.viterbi`), so results agree up to ties between equal-cost paths. Offline
decoding (:meth:`BatchedSearch.decode`) is that search run over each whole utterance as one
chunk, then finalized.

On a CPU device, ``backend="auto"`` runs the compiled single-stream kernel
per utterance instead (optionally on ``num_workers`` threads; the kernels
release the GIL), which is faster there than torch ops; the torch search is
for accelerators (or ``backend="torch"``).

>>> import numpy as np, kaldifst
>>> from asr.decode.search_graph import DecodingGraph
>>> fst = kaldifst.StdVectorFst()
>>> s0 = fst.add_state()
>>> fst.start = s0
>>> fst.add_arc(state=s0, arc=kaldifst.StdArc(1, 4, 0.0, s0))
>>> fst.add_arc(state=s0, arc=kaldifst.StdArc(2, 5, 0.0, s0))
>>> fst.set_final(state=s0, weight=0.0)
>>> g = DecodingGraph.from_fst(fst, ilabel_to_pdf=[-1, 0, 1])
>>> lls = [np.log(np.array([[0.9, 0.1]], np.float32)), np.log(np.array([[0.2, 0.8]] * 2, np.float32))]
>>> [r.word_ids for r in decode_batch(g, lls, backend="torch")]
[(4,), (5, 5)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from asr.decode.search_graph import DecodingGraph
from asr.decode.traceback import DecodeResult, build_result
from asr.decode.viterbi import DecoderConfig, check_log_likes, decode, walk_arena
from asr.errors import DecodeError

__all__ = [
    "BatchedDecoder",
    "BatchedSearch",
    "TorchSearchState",
    "decode_batch",
    "expand_ranges",
    "recombine",
]

#: in a batched step, arena index ``b * _STRIDE + i`` is entry ``i`` of stream ``b``'s arena
_STRIDE = 1 << 40
_INF = float("inf")

Tokens = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
Scores = np.ndarray | torch.Tensor


@dataclass(eq=False)
class TorchSearchState:
    """One stream's search state between calls to :meth:`BatchedSearch.advance` (the torch
    counterpart of :class:`asr.decode.viterbi.SearchState`).

    ``tokens`` is ``(state, cost, prev, arc)``, sorted by state: ``prev`` is the token's arena
    entry, or, for a token reached in the current frame by an epsilon arc (``arc``), the state
    of its source token. The back-pointer arena (``arena_size`` entries, entry 0 the root) is
    kept in chunks; the tensors are never modified in place, so states may share them.
    """

    tokens: Tokens
    arena_prev: list[torch.Tensor]
    arena_arc: list[torch.Tensor]
    arena_size: int
    num_frames: int = 0

    def append_arena(self, prev: torch.Tensor, arc: torch.Tensor) -> None:
        """Append arena entries (``prev`` as indices into this arena)."""
        if prev.numel():
            self.arena_prev.append(prev)
            self.arena_arc.append(arc)
            self.arena_size += int(prev.numel())

    def arena_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole arena as ``(prev, arc)`` arrays on the CPU."""
        return torch.cat(self.arena_prev).cpu().numpy(), torch.cat(self.arena_arc).cpu().numpy()


class BatchedSearch:
    """A graph resident on ``device`` and the search options: advances many streams' search
    states in one batch (:meth:`advance`), or decodes lists of utterances (:meth:`decode`).

    Keep one instance per (graph, device) to avoid re-uploading the graph.
    """

    def __init__(
        self,
        graph: DecodingGraph,
        config: DecoderConfig | None = None,
        *,
        device: str | torch.device = "cpu",
    ) -> None:
        self.graph = graph
        self.config = config if config is not None else DecoderConfig()
        self.device = torch.device(device)
        dev = self.device
        self.num_states = graph.num_states
        self.arc_start = torch.as_tensor(graph.arc_start, device=dev)
        self.eps_start = torch.as_tensor(graph.eps_start, device=dev)
        self.weight = torch.as_tensor(graph.weight, device=dev).double()
        self.nextstate = torch.as_tensor(graph.nextstate, device=dev).long()
        self.pdf = torch.as_tensor(graph.pdf, device=dev).long()
        self.is_eps_arc = torch.as_tensor(graph.ilabel == 0, device=dev)
        self.final_cost = torch.as_tensor(graph.final_cost, device=dev).double()
        self._start: Tokens | None = None  # the start token's epsilon closure, made on first use
        self._root = torch.full((1,), -1, dtype=torch.long, device=dev)

    # -- offline -------------------------------------------------------------------------
    def decode(
        self,
        log_likes_list: Sequence[Scores],
        *,
        word_symbols: Mapping[int, str] | None = None,
    ) -> list[DecodeResult]:
        """Decode each ``(num_frames, num_pdfs)`` matrix; results in input order."""
        if len(log_likes_list) == 0:
            return []
        scores = [self.check_scores(m) for m in log_likes_list]
        states = [self.start() for _ in scores]
        self.advance(states, scores)
        for b, state in enumerate(states):
            if state.tokens[0].numel() == 0:
                raise DecodeError(
                    f"no token survived the search in utterance {b} (all paths pruned)"
                )
        results = []
        for state in states:
            arcs, token_cost, reached, end_state = self.best_path(state, use_final=True)
            results.append(
                build_result(
                    graph=self.graph,
                    path_arcs=arcs,
                    token_cost=token_cost,
                    final_cost=float(self.graph.final_cost[end_state]) if reached else 0.0,
                    reached_final=reached,
                    num_frames=state.num_frames,
                    word_symbols=word_symbols,
                )
            )
        return results

    # -- incremental ---------------------------------------------------------------------
    def check_scores(self, mat: Scores, *, allow_empty: bool = False) -> Scores:
        """Validate ``(num_frames, num_pdfs)`` scores: an array comes back as a float32 array,
        a tensor as a float32 tensor on the device."""
        if not isinstance(mat, torch.Tensor):
            return check_log_likes(self.graph, mat, allow_empty=allow_empty)
        if mat.ndim != 2 or (mat.shape[0] == 0 and not allow_empty):
            raise DecodeError(f"log_likes must be a non-empty 2-D matrix, got {tuple(mat.shape)}")
        if mat.shape[1] < self.graph.num_pdfs_required:
            raise DecodeError(
                f"graph reads pdf {self.graph.num_pdfs_required - 1} but log_likes has only "
                f"{mat.shape[1]} columns (graph/model pdf-count mismatch)"
            )
        if not bool(torch.isfinite(mat).all()):
            raise DecodeError("log_likes has a NaN/inf value")
        return mat.to(device=self.device, dtype=torch.float32)

    def start(self) -> TorchSearchState:
        """A new stream's state: the start token's epsilon closure, 0 frames decoded."""
        if self._start is None:
            dev = self.device
            key = torch.full((1,), self.graph.start_state, dtype=torch.long, device=dev)
            cost = torch.zeros(1, dtype=torch.float64, device=dev)
            prev = torch.zeros(1, dtype=torch.long, device=dev)  # the arena root
            cutoff = torch.full((1,), _INF, dtype=torch.float64, device=dev)
            self._start = self._closure(key, cost, prev, self._root, cutoff)
        return TorchSearchState(self._start, [self._root], [self._root], 1)

    def advance(self, states: Sequence[TorchSearchState], scores: Sequence[Scores]) -> None:
        """Advance each stream by its scores (from :meth:`check_scores`; 0 frames allowed), all
        in one batched search. A stream whose tokens are all pruned is left with none."""
        work = [(s, m) for s, m in zip(states, scores, strict=True) if m.shape[0]]
        if not work:
            return
        beam, max_active, min_active, beam_delta, scale = self.config.kernel_args()
        dev, num_states, num_streams = self.device, self.num_states, len(work)
        lengths = [m.shape[0] for _, m in work]
        scale_t = torch.tensor(scale, dtype=torch.float32, device=dev)
        ac_costs = -(scale_t * self._pad([m for _, m in work]))  # float32
        lengths_t = torch.as_tensor(lengths, device=dev)
        arena_sizes = torch.as_tensor([s.arena_size for s, _ in work], device=dev)
        key, cost, prev, arc = self._join([s.tokens for s, _ in work])
        new_entries = []
        parked = [False] * num_streams
        for t in range(max(lengths) + 1):
            stream = key // num_states
            ending = lengths_t[stream] == t
            if bool(ending.any()):
                self._park(work, parked, key[ending], cost[ending], prev[ending], arc[ending])
                keep = ~ending
                key, cost, prev, arc, stream = (
                    key[keep],
                    cost[keep],
                    prev[keep],
                    arc[keep],
                    stream[keep],
                )
            if key.numel() == 0:
                break
            weight_cutoff, adaptive_beam = self._get_cutoff(
                stream, cost, num_streams, beam, max_active, min_active, beam_delta
            )
            survive = cost < weight_cutoff[stream]
            arena, entries, counts = self._commit(survive, key, prev, arc, arena_sizes)
            new_entries.append(entries)
            arena_sizes = arena_sizes + counts
            key, cost, prev, arc, next_cutoff = self._expand(
                key[survive], cost[survive], arena[survive], ac_costs[:, t], adaptive_beam
            )
            key, cost, prev, arc = self._closure(key, cost, prev, arc, next_cutoff)
        self._distribute(work, parked, new_entries, arena_sizes.tolist())

    def best_path(
        self, state: TorchSearchState, *, use_final: bool
    ) -> tuple[np.ndarray, float, bool, int]:
        """``(arc ids, token cost, reached_final, end state)`` of the best token (with
        ``use_final``, the best final token by cost plus final cost, if any is final)."""
        states, cost, prev, arc = state.tokens
        if states.numel() == 0:
            raise DecodeError("no token survived the search (all paths pruned)")
        final = self.final_cost[states]
        is_final = torch.isfinite(final)
        reached = bool(is_final.any())
        score = torch.where(is_final, cost + final, torch.full_like(cost, _INF))
        score = score if (reached and use_final) else cost
        best = int(torch.argmin(score))  # the first minimum, in state order
        mask = torch.arange(states.numel(), device=states.device) == best
        sizes = torch.tensor([state.arena_size], device=states.device)
        arena, (entry_prev, entry_arc, _), _ = self._commit(mask, states, prev, arc, sizes)
        state.append_arena(entry_prev, entry_arc)
        arena_prev, arena_arc = state.arena_arrays()
        arcs = walk_arena(arena_prev, arena_arc, int(arena[best]))
        return arcs, float(cost[best]), reached, int(states[best])

    # -- the batched step ----------------------------------------------------------------
    def _pad(self, mats: list[Scores]) -> torch.Tensor:
        """The streams' scores in one ``(num_streams, max_frames, num_pdfs)`` float32 tensor."""
        shape = (len(mats), max(m.shape[0] for m in mats), max(m.shape[1] for m in mats))
        if all(isinstance(m, np.ndarray) for m in mats):  # one upload
            padded = np.zeros(shape, dtype=np.float32)
            for b, m in enumerate(mats):
                padded[b, : m.shape[0], : m.shape[1]] = m
            return torch.as_tensor(padded, device=self.device)
        out = torch.zeros(shape, dtype=torch.float32, device=self.device)
        for b, m in enumerate(mats):
            out[b, : m.shape[0], : m.shape[1]] = torch.as_tensor(m, device=self.device)
        return out

    def _join(self, tokens: list[Tokens]) -> Tokens:
        """The streams' tokens in one set: key ``b * num_states + state``, arena entries
        ``b * _STRIDE + i`` (sorted by key, hence grouped by stream)."""
        num_states = self.num_states
        counts = torch.tensor([t[0].numel() for t in tokens], device=self.device)
        state, cost, prev, arc = (torch.cat(t) for t in zip(*tokens, strict=True))
        stream = torch.repeat_interleave(torch.arange(len(tokens), device=self.device), counts)
        is_eps = (arc >= 0) & self.is_eps_arc[arc.clamp(min=0)]
        prev = torch.where(is_eps, prev + stream * num_states, prev + stream * _STRIDE)
        return state + stream * num_states, cost, prev, arc

    def _park(self, work, parked: list[bool], key, cost, prev, arc) -> None:
        """Hand the tokens of streams whose frames are done back to their states (local form)."""
        num_states = self.num_states
        stream = key // num_states
        is_eps = (arc >= 0) & self.is_eps_arc[arc.clamp(min=0)]
        local_prev = torch.where(is_eps, prev - stream * num_states, prev - stream * _STRIDE)
        counts = torch.bincount(stream, minlength=len(work)).tolist()
        pieces = [
            torch.split(x, counts) for x in (key - stream * num_states, cost, local_prev, arc)
        ]
        for b, count in enumerate(counts):
            if count:
                parked[b] = True
                work[b][0].tokens = tuple(p[b] for p in pieces)

    def _distribute(self, work, parked: list[bool], new_entries, arena_sizes: list[int]) -> None:
        """Append each stream's new arena entries to its state; count the frames."""
        num_streams = len(work)
        if new_entries:
            e_prev, e_arc, e_stream = (torch.cat(x) for x in zip(*new_entries, strict=True))
            order = torch.argsort(e_stream, stable=True)  # by stream, in arena order
            counts = torch.bincount(e_stream, minlength=num_streams).tolist()
            prev_parts = torch.split(e_prev[order], counts)
            arc_parts = torch.split(e_arc[order], counts)
        for b, (state, scores) in enumerate(work):
            if not parked[b]:  # every token pruned: nothing to trace back
                empty = torch.zeros(0, dtype=torch.long, device=self.device)
                state.tokens = (empty, empty.double(), empty, empty)
            if new_entries:
                state.append_arena(prev_parts[b], arc_parts[b])
            state.num_frames += scores.shape[0]
            if state.arena_size != arena_sizes[b]:
                raise DecodeError("internal search error (arena bookkeeping)")

    def _commit(self, mask, key, prev, arc, arena_sizes):
        """Arena indices ``b * _STRIDE + i`` for the masked tokens (sorted by key) and their
        same-frame epsilon ancestors; the new entries ``(prev, arc, stream)`` with ``prev``
        local to the stream's arena; the number of new entries per stream."""
        num_states = self.num_states
        is_eps = (arc >= 0) & self.is_eps_arc[arc.clamp(min=0)]
        # a same-frame (epsilon) token's prev is the key of its source token
        src_pos = torch.searchsorted(key, torch.where(is_eps, prev, key))
        mask = mask.clone()
        while True:
            need = mask & is_eps
            anc = src_pos[need]
            new = anc[~mask[anc]]
            if new.numel() == 0:
                break
            mask[new] = True
        idx = torch.nonzero(mask).squeeze(1)
        stream = key[idx] // num_states
        counts = torch.bincount(stream, minlength=arena_sizes.numel())
        offsets = torch.cumsum(counts, 0) - counts
        rank = torch.arange(idx.numel(), device=key.device) - offsets[stream]
        arena = torch.full_like(key, -1)
        arena[idx] = stream * _STRIDE + arena_sizes[stream] + rank
        entry_prev = torch.where(is_eps, arena[src_pos], prev)[mask]
        entry_prev = torch.where(entry_prev >= 0, entry_prev - stream * _STRIDE, entry_prev)
        return arena, (entry_prev, arc[mask], stream), counts

    def _expand(self, key, cost, arena, ac_costs, adaptive_beam):
        """The emitting arcs out of the surviving tokens (arena entries ``arena``), scored with
        the frame's ``ac_costs: (num_streams, num_pdfs)``, pruned with the next frame's cutoff
        and recombined: ``(key, cost, prev, arc, next_cutoff)``."""
        num_states, num_streams = self.num_states, adaptive_beam.numel()
        state = key % num_states
        tok, a = expand_ranges(self.arc_start[state], self.eps_start[state])
        c_stream = key[tok] // num_states
        nw = (self.weight[a] + cost[tok]) + ac_costs[c_stream, self.pdf[a]].double()
        best_new = torch.full((num_streams,), _INF, dtype=torch.float64, device=key.device)
        best_new.scatter_reduce_(0, c_stream, nw, reduce="amin", include_self=True)
        next_cutoff = best_new + adaptive_beam
        ok = nw < next_cutoff[c_stream]
        c_key = c_stream[ok] * num_states + self.nextstate[a[ok]]
        sel = recombine(c_key, nw[ok])
        return c_key[sel], nw[ok][sel], arena[tok[ok][sel]], a[ok][sel], next_cutoff

    def _get_cutoff(self, stream, cost, num_streams, beam, max_active, min_active, beam_delta):
        """Kaldi's GetCutoff for every stream at once: (weight_cutoff, adaptive_beam) per stream."""
        dev = cost.device
        best = torch.full((num_streams,), _INF, dtype=torch.float64, device=dev)
        best.scatter_reduce_(0, stream, cost, reduce="amin", include_self=True)
        counts = torch.bincount(stream, minlength=num_streams)
        beam_cut = best + beam
        max_cut = torch.full_like(best, _INF)
        min_cut = torch.full_like(best, _INF)
        if min_active == 0:
            min_cut = torch.where(counts > 0, best, min_cut)
        width = int(counts.max()) if counts.numel() else 0
        if width > max_active or (0 < min_active < width):
            # tokens are sorted by key, hence grouped by stream: pad to (num_streams, width)
            offsets = torch.cumsum(counts, 0) - counts
            pos = torch.arange(cost.numel(), device=dev) - offsets[stream]
            padded = torch.full((num_streams, width), _INF, dtype=torch.float64, device=dev)
            padded[stream, pos] = cost
            ranked = torch.sort(padded, dim=1).values
            if width > max_active:
                max_cut = torch.where(counts > max_active, ranked[:, max_active], max_cut)
            if 0 < min_active < width:
                min_cut = torch.where(counts > min_active, ranked[:, min_active], min_cut)
        use_max = max_cut < beam_cut
        use_min = ~use_max & (min_cut > beam_cut)
        cutoff = torch.where(use_max, max_cut, torch.where(use_min, min_cut, beam_cut))
        loose = (torch.where(use_max, max_cut, min_cut) - best + beam_delta).float().double()
        adaptive = torch.where(use_max | use_min, loose, torch.full_like(best, beam))
        return cutoff, adaptive

    def _closure(self, key, cost, prev, arc, cutoff):
        """Epsilon closure of one frame's tokens (sorted by key on return)."""
        num_states = self.num_states
        order = torch.argsort(key)
        key, cost, prev, arc = key[order], cost[order], prev[order], arc[order]
        frontier = torch.nonzero(cost <= cutoff[key // num_states]).squeeze(1)
        guard = 0
        while frontier.numel() > 0:
            guard += 1
            if guard > 100000:
                raise DecodeError(
                    "epsilon closure did not converge: the graph has an epsilon cycle with negative cost"
                )
            f_key = key[frontier]
            f_state = f_key % num_states
            tok, a = expand_ranges(self.eps_start[f_state], self.arc_start[f_state + 1])
            if a.numel() == 0:
                break
            c_stream = f_key[tok] // num_states
            nc = cost[frontier][tok] + self.weight[a]
            ok = nc <= cutoff[c_stream]
            c_key = c_stream[ok] * num_states + self.nextstate[a[ok]]
            nc, a, src = nc[ok], a[ok], f_key[tok[ok]]
            sel = recombine(c_key, nc)
            c_key, nc, a, src = c_key[sel], nc[sel], a[sel], src[sel]
            pos = torch.searchsorted(key, c_key).clamp(max=max(key.numel() - 1, 0))
            exists = key[pos] == c_key if key.numel() else torch.zeros_like(c_key, dtype=torch.bool)
            better = exists & (nc < cost[pos])
            upd = pos[better]
            cost[upd] = nc[better]
            prev[upd] = src[better]
            arc[upd] = a[better]
            fresh = ~exists
            changed_keys = torch.cat([key[upd], c_key[fresh]])
            if bool(fresh.any()):
                key = torch.cat([key, c_key[fresh]])
                cost = torch.cat([cost, nc[fresh]])
                prev = torch.cat([prev, src[fresh]])
                arc = torch.cat([arc, a[fresh]])
                order = torch.argsort(key)
                key, cost, prev, arc = key[order], cost[order], prev[order], arc[order]
            frontier = torch.searchsorted(key, changed_keys)
        return key, cost, prev, arc


#: the offline name of :class:`BatchedSearch` (:meth:`BatchedSearch.decode`)
BatchedDecoder = BatchedSearch


def decode_batch(
    graph: DecodingGraph,
    log_likes_list: Sequence[np.ndarray | torch.Tensor],
    config: DecoderConfig | None = None,
    *,
    device: str | torch.device = "cpu",
    backend: str = "auto",
    num_workers: int = 1,
    word_symbols: Mapping[int, str] | None = None,
) -> list[DecodeResult]:
    """Decode many utterances; ``backend`` is "auto", "torch" or "numba" (CPU only).

    "auto" uses the torch search on accelerators and the compiled per-utterance
    kernel on CPU (on ``num_workers`` threads).
    """
    config = config if config is not None else DecoderConfig()
    dev = torch.device(device)
    if backend not in ("auto", "torch", "numba"):
        raise DecodeError(f"backend must be 'auto', 'torch' or 'numba', got {backend!r}")
    if backend == "numba" and dev.type != "cpu":
        raise DecodeError("backend 'numba' runs on the CPU only")
    if backend == "torch" or (backend == "auto" and dev.type != "cpu"):
        return BatchedSearch(graph, config, device=dev).decode(
            log_likes_list, word_symbols=word_symbols
        )
    mats = [m.cpu().numpy() if isinstance(m, torch.Tensor) else m for m in log_likes_list]

    def one(m: np.ndarray) -> DecodeResult:
        return decode(graph, m, config, word_symbols=word_symbols)

    if num_workers <= 1 or len(mats) <= 1:
        return [one(m) for m in mats]
    with ThreadPoolExecutor(max_workers=num_workers) as pool:
        return list(pool.map(one, mats))


# -- helpers ----------------------------------------------------------------------------
def expand_ranges(starts: torch.Tensor, ends: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR gather: for ranges [starts[i], ends[i]) -> (owner index i, position) per element."""
    counts = ends - starts
    owner = torch.repeat_interleave(torch.arange(starts.numel(), device=starts.device), counts)
    offsets = torch.cumsum(counts, 0) - counts
    pos = starts[owner] + (torch.arange(owner.numel(), device=starts.device) - offsets[owner])
    return owner, pos


def recombine(key: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
    """Indices of the lowest-cost element per key (first on ties), sorted by key."""
    if key.numel() == 0:
        return key
    by_cost = torch.argsort(cost, stable=True)
    by_key = torch.argsort(key[by_cost], stable=True)
    order = by_cost[by_key]
    sorted_key = key[order]
    first = torch.ones_like(sorted_key, dtype=torch.bool)
    first[1:] = sorted_key[1:] != sorted_key[:-1]
    return order[first]
