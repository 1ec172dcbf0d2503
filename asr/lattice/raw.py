"""State-level ("raw") lattices: what the lattice search keeps (Kaldi's ``Lattice``).

A :class:`RawLattice` is an acyclic FST whose states are search tokens, topologically
sorted (state 0 is the start, every arc goes from a lower to a higher state), with
arcs ``src -ilabel:olabel/(graph_cost, acoustic_cost)-> dst``: ``ilabel`` the
transition-id (or token) of one frame, 0 on epsilon arcs; ``olabel`` the word, 0 for
none. ``acoustic_cost`` is unscaled (``-log_like``), as Kaldi writes lattices;
``acoustic_scale`` is the scale the search used, so a path's search cost is ``graph +
acoustic_scale * acoustic``. ``final_cost`` is inf for non-final states.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from asr.errors import DecodeError

__all__ = ["RawLattice", "dag_best_path", "forward_backward_best"]


@dataclass(frozen=True, eq=False)
class RawLattice:
    """A state-level lattice (see the module docstring); arcs are sorted by ``src``."""

    src: np.ndarray
    dst: np.ndarray
    ilabel: np.ndarray
    olabel: np.ndarray
    graph_cost: np.ndarray
    acoustic_cost: np.ndarray
    graph_arc: np.ndarray
    final_cost: np.ndarray
    state_frame: np.ndarray
    num_frames: int
    acoustic_scale: float
    reached_final: bool
    lattice_beam: float = float("inf")  # the beam it was pruned with (search costs)

    @property
    def num_states(self) -> int:
        return int(self.final_cost.shape[0])

    @property
    def num_arcs(self) -> int:
        return int(self.src.shape[0])

    def arc_costs(
        self, *, lm_scale: float = 1.0, acoustic_scale: float | None = None
    ) -> np.ndarray:
        """(num_arcs,) float64 ``lm_scale * graph + acoustic_scale * acoustic``."""
        ac_scale = self.acoustic_scale if acoustic_scale is None else acoustic_scale
        return lm_scale * self.graph_cost.astype(np.float64) + ac_scale * self.acoustic_cost.astype(
            np.float64
        )

    def best_path(
        self, *, lm_scale: float = 1.0, acoustic_scale: float | None = None
    ) -> tuple[np.ndarray, float]:
        """(arc indices of the best path, its cost incl. the final cost, scaled like the arcs)."""
        arcs, cost = dag_best_path(
            self.num_states,
            self.src,
            self.dst,
            self.arc_costs(lm_scale=lm_scale, acoustic_scale=acoustic_scale),
            lm_scale * self.final_cost.astype(np.float64),
        )
        if arcs is None:
            raise DecodeError("the lattice has no complete path")
        return arcs, cost

    def pruned(self, beam: float) -> RawLattice:
        """This lattice without the arcs whose best complete path costs more than the best
        path + ``beam`` (search costs), states renumbered (still topological)."""
        keep_arc, keep_state = _prune_masks(
            self.num_states,
            self.src.astype(np.int64),
            self.dst.astype(np.int64),
            self.arc_costs(),
            self.final_cost.astype(np.float64),
            float(beam),
        )
        new_id = np.cumsum(keep_state) - 1
        arcs = np.flatnonzero(keep_arc)
        return RawLattice(
            src=new_id[self.src[arcs]].astype(np.int32),
            dst=new_id[self.dst[arcs]].astype(np.int32),
            ilabel=self.ilabel[arcs],
            olabel=self.olabel[arcs],
            graph_cost=self.graph_cost[arcs],
            acoustic_cost=self.acoustic_cost[arcs],
            graph_arc=self.graph_arc[arcs],
            final_cost=self.final_cost[keep_state],
            state_frame=self.state_frame[keep_state],
            num_frames=self.num_frames,
            acoustic_scale=self.acoustic_scale,
            reached_final=self.reached_final,
            lattice_beam=min(self.lattice_beam, float(beam)),
        )

    def to_kaldifst(self):
        """This lattice as a ``kaldifst.Lattice`` (LatticeWeight = graph, acoustic)."""
        import kaldifst

        lat = kaldifst.Lattice()
        for _ in range(self.num_states):
            lat.add_state()
        lat.start = 0
        for i in range(self.num_arcs):
            weight = kaldifst.LatticeWeight(float(self.graph_cost[i]), float(self.acoustic_cost[i]))
            lat.add_arc(
                state=int(self.src[i]),
                arc=kaldifst.LatticeArc(
                    int(self.ilabel[i]), int(self.olabel[i]), weight, int(self.dst[i])
                ),
            )
        for s in np.flatnonzero(np.isfinite(self.final_cost)):
            lat.set_final(
                state=int(s), weight=kaldifst.LatticeWeight(float(self.final_cost[s]), 0.0)
            )
        return lat


def dag_best_path(
    num_states: int, src: np.ndarray, dst: np.ndarray, cost: np.ndarray, final: np.ndarray
) -> tuple[np.ndarray | None, float]:
    """Best path of a topologically sorted DAG (start 0): (arc indices, total cost)."""
    arcs, total = _dag_best(
        int(num_states),
        np.ascontiguousarray(src, dtype=np.int64),
        np.ascontiguousarray(dst, dtype=np.int64),
        np.ascontiguousarray(cost, dtype=np.float64),
        np.ascontiguousarray(final, dtype=np.float64),
    )
    if total == np.inf:
        return None, float("inf")
    return arcs, float(total)


@numba.njit(cache=True, nogil=True)
def _dag_best(num_states, src, dst, cost, final):
    alpha = np.full(num_states, np.inf)
    back = np.full(num_states, -1, np.int64)
    if num_states == 0:
        return np.zeros(0, np.int64), np.inf
    alpha[0] = 0.0
    order = np.argsort(src, kind="mergesort")
    for k in range(order.shape[0]):
        i = order[k]
        c = alpha[src[i]] + cost[i]
        if c < alpha[dst[i]]:
            alpha[dst[i]] = c
            back[dst[i]] = i
    best = np.inf
    end = -1
    for s in range(num_states):
        t = alpha[s] + final[s]
        if t < best:
            best = t
            end = s
    if end < 0:
        return np.zeros(0, np.int64), np.inf
    n = 0
    s = end
    while back[s] >= 0:
        n += 1
        s = src[back[s]]
    arcs = np.empty(n, np.int64)
    s = end
    k = n - 1
    while back[s] >= 0:
        arcs[k] = back[s]
        k -= 1
        s = src[back[s]]
    return arcs, best


@numba.njit(cache=True, nogil=True)
def forward_backward_best(num_states, src, dst, cost, final):
    """(alpha, beta): best cost from the start to each state and from it to the end, of a
    DAG whose arcs are sorted by topological ``src``."""
    alpha = np.full(num_states, np.inf)
    beta = final.copy()
    if num_states:
        alpha[0] = 0.0
    for i in range(src.shape[0]):
        c = alpha[src[i]] + cost[i]
        if c < alpha[dst[i]]:
            alpha[dst[i]] = c
    for i in range(src.shape[0] - 1, -1, -1):
        c = beta[dst[i]] + cost[i]
        if c < beta[src[i]]:
            beta[src[i]] = c
    return alpha, beta


@numba.njit(cache=True, nogil=True)
def _prune_masks(num_states, src, dst, cost, final, beam):
    alpha, beta = forward_backward_best(num_states, src, dst, cost, final)
    best = beta[0] if num_states else np.inf
    limit = best + beam + 1e-6 * (1.0 + abs(best))
    keep_arc = np.zeros(src.shape[0], np.bool_)
    keep_state = np.zeros(num_states, np.bool_)
    for i in range(src.shape[0]):
        if alpha[src[i]] + cost[i] + beta[dst[i]] <= limit:
            keep_arc[i] = True
            keep_state[src[i]] = True
            keep_state[dst[i]] = True
    for s in range(num_states):
        if alpha[s] + beta[s] <= limit:
            keep_state[s] = True
    return keep_arc, keep_state
