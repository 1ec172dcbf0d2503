"""LM rescoring of word lattices: take the decoding LM's scores out, put a new LM's in.

``graph' = graph - old_lm(words) + new_lm(words)`` on every path (Kaldi's
``lmrescore.sh``: "subtract old G, compose new G"), done exactly and on the fly:

- the **old** LM is the decoding ``G.fst`` itself (back-off arcs carry the
  disambiguation symbol on their input, as ``arpa2fst --disambig-symbol`` writes them); a
  word sequence's old LM cost is its best path through G, as the decoding graph charged it
  (a cheaper back-off path wins over a listed n-gram, as in the search). G is
  determinized on the fly: each lattice state is paired with the set of G states it can
  be in and their residual costs, so the charge of every arc is exact;
- the **new** LM is an ARPA back-off model (:class:`asr.lang.arpa.NgramModel`) scored on
  the fly from its tables, with histories cut to their longest listed context, so no
  big ``G.fst`` is ever built (Kaldi's ``lmrescore_const_arpa.sh`` idea).

The lattice is expanded by (old G state set, new LM history) per state; it stays
deterministic (one path per word sequence). Costs are natural-log, as in G.fst.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import numpy as np

from asr.errors import DecodeError
from asr.lang.arpa import BOS, EOS, NgramModel
from asr.lattice.word import WordLattice

__all__ = ["GrammarFst", "NgramScorer", "rescore"]

_LN10 = math.log(10.0)


class GrammarFst:
    """A ``G.fst`` as an on-the-fly determinized acceptor of word ids."""

    def __init__(self, fst, *, backoff_label: int) -> None:
        """``fst``: a ``kaldifst.StdVectorFst`` or a binary G.fst path; ``backoff_label``:
        the input label of its back-off arcs (``#0``'s id in words.txt)."""
        from asr.graph.fst_arrays import FstArrays

        arrays = (
            FstArrays.read(fst) if isinstance(fst, (str, os.PathLike)) else FstArrays.from_fst(fst)
        )
        self.start = int(arrays.start)
        self.final = np.asarray(arrays.final, dtype=np.float64)
        self.backoff: dict[int, list[tuple[int, float]]] = {}
        self.arcs: dict[tuple[int, int], list[tuple[int, float]]] = {}
        for s, i, n, w in zip(
            arrays.src.tolist(), arrays.ilabel.tolist(), arrays.dst.tolist(),
            arrays.weight.tolist(), strict=True,
        ):  # fmt: skip
            if i == backoff_label or i == 0:
                self.backoff.setdefault(s, []).append((n, w))
            else:
                self.arcs.setdefault((s, i), []).append((n, w))

    def closure(self, states: Mapping[int, float]) -> dict[int, float]:
        """The states reachable through back-off arcs, with their best costs."""
        out = dict(states)
        stack = list(states)
        while stack:
            s = stack.pop()
            for n, w in self.backoff.get(s, ()):
                c = out[s] + w
                if c < out.get(n, math.inf) - 1e-12:
                    out[n] = c
                    stack.append(n)
        return out

    def step(self, states: Mapping[int, float], word: int) -> tuple[float, dict[int, float]]:
        """(cost of ``word`` from ``states``, the next states with residual costs)."""
        nxt: dict[int, float] = {}
        for s, c in self.closure(states).items():
            for n, w in self.arcs.get((s, word), ()):
                if c + w < nxt.get(n, math.inf):
                    nxt[n] = c + w
        if not nxt:
            return math.inf, {}
        best = min(nxt.values())
        return best, {n: c - best for n, c in nxt.items()}

    def final_cost(self, states: Mapping[int, float]) -> float:
        return min((c + self.final[s] for s, c in self.closure(states).items()), default=math.inf)


class NgramScorer:
    """Back-off probabilities of an :class:`NgramModel` for word histories, as costs."""

    def __init__(self, model: NgramModel) -> None:
        self.model = model
        self.vocab_size = len(model.vocab)
        self._rows: dict[tuple[int, ...], int] = {}

    def _row(self, ids: tuple[int, ...]) -> int:
        """Row of the n-gram ``ids`` in its order's table, -1 when not listed."""
        if not ids:
            return 0
        if len(ids) == 1:
            return ids[0]
        row = self._rows.get(ids)
        if row is None:
            prefix = self._row(ids[:-1])
            row = -1
            if prefix >= 0 and len(ids) <= self.model.order:
                found = self.model.tables[len(ids) - 1].lookup(
                    np.array([prefix]), np.array([ids[-1]]), self.vocab_size
                )
                row = int(found[0])
            self._rows[ids] = row
        return row

    def start(self) -> tuple[int, ...]:
        return (self.model.word_to_id[BOS],)

    def cost(self, history: tuple[int, ...], word: int) -> tuple[float, tuple[int, ...]]:
        """(-ln P(word | history), the next history cut to its longest listed context)."""
        backoff = 0.0
        for k in range(min(len(history), self.model.order - 1), -1, -1):
            context = history[len(history) - k :]
            row = self._row(context)
            if row < 0:
                continue
            if k == 0:
                logprob = float(self.model.tables[0].logprob[word])
                break
            found = self.model.tables[k].lookup(np.array([row]), np.array([word]), self.vocab_size)
            if found[0] >= 0:
                logprob = float(self.model.tables[k].logprob[found[0]])
                break
            backoff += float(self.model.tables[k - 1].backoff[row])
        nxt = (*history, word)[-(self.model.order - 1) :] if self.model.order > 1 else ()
        while nxt and self._row(nxt) < 0:
            nxt = nxt[1:]
        return -(logprob + backoff) * _LN10, nxt


def rescore(
    lat: WordLattice,
    *,
    old_g: GrammarFst,
    new_lm: NgramModel,
    word_symbols,
    lm_scale: float = 1.0,
) -> WordLattice:
    """``lat`` with the old LM's costs replaced by ``lm_scale`` x the new LM's (see the
    module docstring). ``word_symbols``: the lattice's word table (``.symbol(id)``).
    Raises :class:`DecodeError` when the new LM lacks a lattice word and has no ``<unk>``,
    or when G cannot produce a lattice path (a G other than the decoding graph's)."""
    scorer = NgramScorer(new_lm)
    to_lm: dict[int, int] = {}
    unk = new_lm.word_to_id.get(new_lm.unk) if new_lm.unk is not None else None
    for w in np.unique(lat.word).tolist():
        symbol = word_symbols.symbol(w)
        lm_id = new_lm.word_to_id.get(symbol, unk)
        if lm_id is None:
            raise DecodeError(
                f"the rescoring LM has no word {symbol!r} and no unknown-word symbol to score it"
            )
        to_lm[w] = lm_id
    eos = new_lm.word_to_id[EOS]
    starts = np.searchsorted(lat.src, np.arange(lat.num_states + 1))

    def key(g_states: Mapping[int, float]) -> tuple:
        return tuple(sorted((s, round(c, 5)) for s, c in g_states.items()))

    start = (0, key({old_g.start: 0.0}), scorer.start())
    g_sets = {start[1]: {old_g.start: 0.0}}
    index = {start: 0}
    queue = [start]
    arcs = []
    finals = {}
    k = 0
    while k < len(queue):
        state = queue[k]
        s, g_key, hist = state
        g_states = g_sets[g_key]
        if np.isfinite(lat.final_graph[s]):
            old = old_g.final_cost(g_states)
            new, _ = scorer.cost(hist, eos)
            if not math.isfinite(old):
                raise DecodeError("the old G cannot end a lattice path: is it the decoding G?")
            finals[k] = (
                float(lat.final_graph[s]) - old + lm_scale * new,
                float(lat.final_acoustic[s]),
                tuple(lat.final_tids_of(s).tolist()),
            )
        for i in range(starts[s], starts[s + 1]):
            w = int(lat.word[i])
            old, nxt_g = old_g.step(g_states, w)
            if not math.isfinite(old):
                raise DecodeError(f"the old G has no path for word id {w}: is it the decoding G?")
            new, nxt_hist = scorer.cost(hist, to_lm[w])
            nxt_key = key(nxt_g)
            g_sets.setdefault(nxt_key, nxt_g)
            nxt = (int(lat.dst[i]), nxt_key, nxt_hist)
            if nxt not in index:
                index[nxt] = len(queue)
                queue.append(nxt)
            arcs.append(
                (
                    k,
                    index[nxt],
                    w,
                    float(lat.graph_cost[i]) - old + lm_scale * new,
                    float(lat.acoustic_cost[i]),
                    tuple(lat.arc_tids(i).tolist()),
                )
            )
        k += 1
    out = WordLattice.from_parts(len(queue), arcs, finals, lat.num_frames, lat.acoustic_scale)
    return WordLattice(**{**out.__dict__, "reached_final": lat.reached_final})
