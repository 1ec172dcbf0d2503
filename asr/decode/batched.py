"""Batched Viterbi beam search in torch: many utterances per step, CPU or CUDA.

All streams' tokens live in one set of flat tensors keyed by ``stream *
num_states + state``; per frame the search gathers the emitting arcs of the
surviving tokens through the CSR arrays (``repeat_interleave``), prunes with
each stream's adaptive beam (Kaldi's GetCutoff, vectorized with a padded
per-stream sort), recombines tokens reaching the same key (a stable sort by
cost then key keeps the minimum), then runs the epsilon closure in
Bellman-Ford rounds until nothing improves. It has exactly the semantics of
the single-stream search (:mod:`asr.decode.viterbi`), so results agree up to
ties between equal-cost paths.

On a CPU device, ``backend="auto"`` runs the compiled single-stream kernel
per utterance instead (optionally on ``num_workers`` threads; the kernels
release the GIL), which is faster there than torch ops; the torch search is
for accelerators (or ``backend="torch"``).

>>> import numpy as np, kaldifst
>>> from asr.decode.graph import DecodingGraph
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

import numpy as np
import torch

from asr.decode.graph import DecodingGraph
from asr.decode.traceback import DecodeResult, build_result
from asr.decode.viterbi import DecoderConfig, check_log_likes, decode, walk_arena
from asr.errors import DecodeError

__all__ = ["BatchedDecoder", "decode_batch"]

_INF = float("inf")


class BatchedDecoder:
    """A graph resident on ``device``, decoding lists of utterances in one batch.

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

    # -- public --------------------------------------------------------------------
    def decode(
        self,
        log_likes_list: Sequence[np.ndarray | torch.Tensor],
        *,
        word_symbols: Mapping[int, str] | None = None,
    ) -> list[DecodeResult]:
        """Decode each ``(num_frames, num_pdfs)`` matrix; results in input order."""
        if len(log_likes_list) == 0:
            return []
        mats = [self._check(m) for m in log_likes_list]
        lengths = [m.shape[0] for m in mats]
        scores = torch.zeros(
            (len(mats), max(lengths), mats[0].shape[1]), dtype=torch.float32, device=self.device
        )
        for b, m in enumerate(mats):
            scores[b, : m.shape[0]] = m
        finals, arena_prev, arena_arc = self._search(scores, lengths)
        arena_prev_np = arena_prev.cpu().numpy()
        arena_arc_np = arena_arc.cpu().numpy()
        results = []
        for b, (arena_idx, token_cost, reached, end_state) in enumerate(finals):
            arcs = walk_arena(arena_prev_np, arena_arc_np, arena_idx)
            final = float(self.graph.final_cost[end_state]) if reached else 0.0
            results.append(
                build_result(
                    graph=self.graph,
                    path_arcs=arcs,
                    token_cost=token_cost,
                    final_cost=final,
                    reached_final=reached,
                    num_frames=lengths[b],
                    word_symbols=word_symbols,
                )
            )
        return results

    # -- internals -------------------------------------------------------------------
    def _check(self, mat: np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(mat, torch.Tensor):
            if mat.ndim != 2 or mat.shape[0] == 0:
                raise DecodeError(
                    f"log_likes must be a non-empty 2-D matrix, got {tuple(mat.shape)}"
                )
            if mat.shape[1] < self.graph.num_pdfs_required:
                raise DecodeError(
                    f"graph reads pdf {self.graph.num_pdfs_required - 1} but log_likes has only "
                    f"{mat.shape[1]} columns (graph/model pdf-count mismatch)"
                )
            if not bool(torch.isfinite(mat).all()):
                raise DecodeError("log_likes has a NaN/inf value")
            return mat.to(device=self.device, dtype=torch.float32)
        return torch.as_tensor(check_log_likes(self.graph, mat), device=self.device)

    def _search(self, scores: torch.Tensor, lengths: list[int]):
        cfg = self.config
        beam, max_active, min_active, beam_delta, scale = cfg.kernel_args()
        dev = self.device
        num_streams, num_states = scores.shape[0], self.num_states
        ac_costs = -(torch.tensor(scale, dtype=torch.float32, device=dev) * scores)  # float32
        lengths_t = torch.as_tensor(lengths, device=dev)

        self._arena_prev: list[torch.Tensor] = []
        self._arena_arc: list[torch.Tensor] = []
        self._arena_size = 0
        # start tokens, committed as arena roots (prev -1, arc -1)
        key = torch.arange(num_streams, device=dev) * num_states + self.graph.start_state
        cost = torch.zeros(num_streams, dtype=torch.float64, device=dev)
        prev = self._append_arena(
            torch.full((num_streams,), -1, dtype=torch.long, device=dev),
            torch.full((num_streams,), -1, dtype=torch.long, device=dev),
        )
        arc = torch.full((num_streams,), -1, dtype=torch.long, device=dev)
        cutoff = torch.full((num_streams,), _INF, dtype=torch.float64, device=dev)
        key, cost, prev, arc = self._closure(key, cost, prev, arc, cutoff)

        finals: list = [None] * num_streams
        max_len = max(lengths)
        for t in range(max_len + 1):
            stream = key // num_states
            ending = lengths_t[stream] == t
            if bool(ending.any()):
                self._finish(
                    finals, key[ending], cost[ending], prev[ending], arc[ending], key, prev, arc
                )
                keep = ~ending
                key, cost, prev, arc, stream = (
                    key[keep],
                    cost[keep],
                    prev[keep],
                    arc[keep],
                    stream[keep],
                )
            if t == max_len or key.numel() == 0:
                break
            weight_cutoff, adaptive_beam = self._get_cutoff(
                stream, cost, num_streams, beam, max_active, min_active, beam_delta
            )
            survive = cost < weight_cutoff[stream]
            arena = self._commit(survive, key, prev, arc)
            s_key, s_cost, s_arena = key[survive], cost[survive], arena[survive]
            # emitting arcs of survivors
            s_state = s_key % num_states
            tok, a = _expand(self.arc_start[s_state], self.eps_start[s_state])
            c_stream = s_key[tok] // num_states
            nw = (self.weight[a] + s_cost[tok]) + ac_costs[:, t][c_stream, self.pdf[a]].double()
            best_new = torch.full((num_streams,), _INF, dtype=torch.float64, device=dev)
            best_new.scatter_reduce_(0, c_stream, nw, reduce="amin", include_self=True)
            next_cutoff = best_new + adaptive_beam
            ok = nw < next_cutoff[c_stream]
            c_key = c_stream[ok] * num_states + self.nextstate[a[ok]]
            sel = _recombine(c_key, nw[ok])
            key = c_key[sel]
            cost = nw[ok][sel]
            prev = s_arena[tok[ok][sel]]
            arc = a[ok][sel]
            key, cost, prev, arc = self._closure(key, cost, prev, arc, next_cutoff)
        self._arena_prev_all = torch.cat(self._arena_prev)
        self._arena_arc_all = torch.cat(self._arena_arc)
        for b in range(num_streams):
            if finals[b] is None:
                raise DecodeError(
                    f"no token survived the search in utterance {b} (all paths pruned)"
                )
        return finals, self._arena_prev_all, self._arena_arc_all

    def _append_arena(self, prev: torch.Tensor, arc: torch.Tensor) -> torch.Tensor:
        idx = torch.arange(prev.numel(), device=prev.device) + self._arena_size
        self._arena_prev.append(prev)
        self._arena_arc.append(arc)
        self._arena_size += prev.numel()
        return idx

    def _commit(self, mask: torch.Tensor, key, prev, arc) -> torch.Tensor:
        """Arena indices for the tokens in ``mask`` and their same-frame epsilon ancestors."""
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
        arena = torch.full_like(key, -1)
        num = int(mask.sum())
        arena[mask] = torch.arange(num, device=key.device) + self._arena_size
        arena_prev = torch.where(is_eps, arena[src_pos], prev)[mask]
        self._append_arena(arena_prev, arc[mask])
        return arena

    def _finish(self, finals, e_key, e_cost, e_prev, e_arc, key, prev, arc) -> None:
        """Pick each ending stream's best token (final states first) and commit its chain."""
        num_states = self.num_states
        e_stream = e_key // num_states
        fin = self.final_cost[e_key % num_states]
        total = torch.where(torch.isfinite(fin), e_cost + fin, torch.full_like(e_cost, _INF))
        num_streams = len(finals)
        reached = torch.zeros(num_streams, dtype=torch.bool, device=key.device)
        reached[e_stream[torch.isfinite(fin)]] = True
        score = torch.where(reached[e_stream], total, e_cost)
        best = torch.full((num_streams,), _INF, dtype=torch.float64, device=key.device)
        best.scatter_reduce_(0, e_stream, score, reduce="amin", include_self=True)
        is_best = score == best[e_stream]
        # first best token per stream (tokens are grouped by stream)
        idx = torch.nonzero(is_best).squeeze(1)
        first = torch.ones_like(idx, dtype=torch.bool)
        first[1:] = e_stream[idx[1:]] != e_stream[idx[:-1]]
        chosen = idx[first]
        chosen_key = e_key[chosen]
        arena = self._commit(torch.isin(key, chosen_key), key, prev, arc)
        pos = torch.searchsorted(key, chosen_key)
        rows = zip(chosen_key.tolist(), arena[pos].tolist(), e_cost[chosen].tolist(), strict=True)
        for k, arena_idx, token_cost in rows:
            b, s = divmod(k, num_states)
            finals[b] = (arena_idx, token_cost, bool(reached[b]), s)

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
            tok, a = _expand(self.eps_start[f_state], self.arc_start[f_state + 1])
            if a.numel() == 0:
                break
            c_stream = f_key[tok] // num_states
            nc = cost[frontier][tok] + self.weight[a]
            ok = nc <= cutoff[c_stream]
            c_key = c_stream[ok] * num_states + self.nextstate[a[ok]]
            nc, a, src = nc[ok], a[ok], f_key[tok[ok]]
            sel = _recombine(c_key, nc)
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
        return BatchedDecoder(graph, config, device=dev).decode(
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
def _expand(starts: torch.Tensor, ends: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR gather: for ranges [starts[i], ends[i]) -> (owner index i, position) per element."""
    counts = ends - starts
    owner = torch.repeat_interleave(torch.arange(starts.numel(), device=starts.device), counts)
    offsets = torch.cumsum(counts, 0) - counts
    pos = starts[owner] + (torch.arange(owner.numel(), device=starts.device) - offsets[owner])
    return owner, pos


def _recombine(key: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
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
