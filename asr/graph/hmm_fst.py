"""The HMM transducer H (Kaldi's ``make-h-transducer``) and HMM self-loops
(Kaldi's ``add-self-loops --reorder=true``), on FSTs as arrays (:class:`FstArrays`).

* :func:`make_h_transducer` — ``Ha``: input transition-ids, output context-window labels
  (indices into ``ilabel_info`` from :func:`asr.graph.context.compose_context`); no self-loops;
  arc weights ``-transition_scale * log p(tid ignoring self-loops)``; context-window labels that
  are disambiguation symbols (``[-phone]``) or the pseudo-epsilon ``[0]`` become new input
  symbols ``num_transition_ids + 1 ...`` (returned, to be removed after determinization).
* :func:`add_self_loops` — splits states so all arcs entering one state carry the same
  transition state, then adds that state's self-loop (weight ``-self_loop_scale * log p(loop)``)
  and multiplies its other exits by ``-self_loop_scale * log(1 - p(loop))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from asr.errors import GraphError
from asr.graph.fst_arrays import FstArrays, write_fst
from asr.hmm.transition_model import TransitionModel
from asr.hmm.tree import ContextDependency

__all__ = ["FstArrays", "add_self_loops", "make_h_transducer", "write_fst"]


def _is_special(window: Sequence[int]) -> bool:
    """Disambiguation symbol ``[-phone]`` or pseudo-epsilon ``[0]`` in ``ilabel_info``."""
    return len(window) == 1 and window[0] <= 0


def make_h_transducer(
    *,
    ilabel_info: Sequence[Sequence[int]],
    ctx_dep: ContextDependency,
    transition_model: TransitionModel,
    transition_scale: float = 1.0,
) -> tuple[FstArrays, tuple[int, ...]]:
    """``(Ha, disambig_tids)``: the HMM transducer without self-loops (see module docstring).

    State 0 is the start and only final state; each context-window label ``j`` owns a copy of
    its phone's HMM whose entry arcs leave state 0 with output ``j`` and whose exits return to 0.
    """
    width, centre = ctx_dep.context_width, ctx_dep.central_position
    num_tids = transition_model.num_transition_ids
    ignoring = transition_model.log_prob_ignoring_self_loops()
    special = [j for j in range(1, len(ilabel_info)) if _is_special(ilabel_info[j])]
    normal = [j for j in range(1, len(ilabel_info)) if not _is_special(ilabel_info[j])]
    bad = [j for j in normal if len(ilabel_info[j]) != width]
    if bad:
        raise GraphError(
            f"context label {bad[0]} has window {list(ilabel_info[bad[0]])}, "
            f"expected {width} phones (does the model's context width match?)"
        )
    disambig_tids = tuple(range(num_tids + 1, num_tids + 1 + len(special)))
    parts = [
        (
            np.zeros(len(special), np.int64),
            np.zeros(len(special), np.int64),
            np.array(disambig_tids, np.int64),
            np.array(special, np.int64),
            np.zeros(len(special)),
        )
    ]
    next_state = 1
    js = np.array(normal, dtype=np.int64)
    windows = np.array([ilabel_info[j] for j in normal], dtype=np.int64).reshape(-1, width)
    entries = {}
    for phone in np.unique(windows[:, centre]).tolist():
        try:
            entries[phone] = transition_model.topology.entry(phone)
        except Exception as err:  # LangError: phone not in the topology
            raise GraphError(f"context window phone {phone}: {err}") from None
    first_tids = _first_tids(windows, centre, entries, ctx_dep, transition_model)
    for phone, entry in entries.items():
        rows = np.flatnonzero(windows[:, centre] == phone)
        num_emitting = entry.num_states - 1
        reenters = any(
            dest == 0 for s in entry.states[1:-1] for dest, _ in s.transitions
        )  # then the entry state needs its own copy, reached by an epsilon arc
        own = list(range(0 if reenters else 1, num_emitting))
        state_id = np.zeros((len(rows), entry.num_states), dtype=np.int64)  # 0 = H's start
        state_id[:, own] = next_state + np.arange(len(rows) * len(own)).reshape(-1, len(own))
        next_state += len(rows) * len(own)
        if reenters:
            parts.append(
                (np.zeros(len(rows), np.int64), state_id[:, 0], np.zeros(len(rows), np.int64),
                 js[rows], np.zeros(len(rows)))
            )  # fmt: skip
        for hmm_state, state in enumerate(entry.states[:-1]):
            first_tid = first_tids[rows, hmm_state]
            olabel = js[rows] if hmm_state == 0 and not reenters else np.zeros(len(rows), np.int64)
            for index, (dest, _) in enumerate(state.transitions):
                if dest == hmm_state:
                    continue  # self-loops are added after determinization
                tids = first_tid + index
                parts.append(
                    (state_id[:, hmm_state], state_id[:, dest], tids, olabel,
                     -transition_scale * ignoring[tids])
                )  # fmt: skip
    src, dst, ilabel, olabel, weight = (np.concatenate(cols) for cols in zip(*parts, strict=True))
    final = np.full(next_state, np.inf, dtype=np.float32)
    final[0] = 0.0
    return (
        FstArrays(
            start=0,
            final=final,
            src=src.astype(np.int32),
            dst=dst.astype(np.int32),
            ilabel=ilabel.astype(np.int32),
            olabel=olabel.astype(np.int32),
            weight=weight.astype(np.float32),
        ),
        disambig_tids,
    )


def _first_tids(
    windows: np.ndarray,
    centre: int,
    entries: dict,
    ctx_dep: ContextDependency,
    transition_model: TransitionModel,
) -> np.ndarray:
    """``(num_windows, max_emitting_states) int64``: the first transition-id of every context
    window's HMM states. One tree query for all windows and states of a topology entry's phones
    at once (not per phone and state: this is the training-graph hot path)."""
    phones = windows[:, centre]
    groups: dict[int, list[int]] = {}
    for phone, entry in entries.items():
        groups.setdefault(id(entry), []).append(phone)
    max_states = max((e.num_states - 1 for e in entries.values()), default=0)
    out = np.zeros((len(windows), max_states), dtype=np.int64)
    for group in groups.values():
        entry = entries[group[0]]
        rows = np.flatnonzero(np.isin(phones, group))
        states = entry.states[:-1]
        num_rows, num_states = len(rows), len(states)
        contexts = np.tile(windows[rows], (num_states, 1))  # state-major: (state, row)
        fwd_class = np.repeat([s.forward_pdf_class for s in states], num_rows)
        loop_class = np.repeat([s.self_loop_pdf_class for s in states], num_rows)
        fwd = ctx_dep.compute_batch(contexts, fwd_class)
        same = np.array_equal(fwd_class, loop_class)
        loop = fwd if same else ctx_dep.compute_batch(contexts, loop_class)
        hmm_state = np.repeat(np.arange(num_states), num_rows)
        tstates = transition_model.transition_states(
            np.tile(phones[rows], num_states), hmm_state, fwd, loop
        )
        if np.any(tstates == 0):
            k = int(np.flatnonzero(tstates == 0)[0])
            raise GraphError(
                f"model has no transition state for phone {int(phones[rows][k % num_rows])}, "
                f"HMM state {k // num_rows}, pdfs ({int(fwd[k])}, {int(loop[k])}): tree and "
                "transition model disagree"
            )
        first = transition_model.tstate2first_tid[tstates].reshape(num_states, num_rows)
        out[rows, :num_states] = first.T
    return out


def add_self_loops(
    fst: FstArrays,
    *,
    transition_model: TransitionModel,
    self_loop_scale: float = 0.1,
    disambig_tids: Sequence[int] = (),
) -> FstArrays:
    """HCLG from HCLGa: Kaldi's ``add-self-loops --reorder=true`` (see module docstring).

    Input labels must be transition-ids (non-self-loop), ``0`` or one of ``disambig_tids``.
    """
    num_tids = transition_model.num_transition_ids
    ilabel = fst.ilabel.astype(np.int64)
    is_tid = (ilabel >= 1) & (ilabel <= num_tids)
    allowed = np.isin(ilabel[~is_tid], np.asarray(list(disambig_tids) + [0], dtype=np.int64))
    if not np.all(allowed):
        raise GraphError(
            f"add_self_loops: graph has invalid input label {ilabel[~is_tid][~allowed][0]}"
        )
    if np.any(transition_model.is_self_loop[ilabel[is_tid]]):
        raise GraphError("add_self_loops: graph already has self-loops")
    # Class of an arc = the transition state of its input label when that state has a self-loop.
    tstate = np.where(is_tid, transition_model.tid2tstate[np.where(is_tid, ilabel, 0)], 0)
    cls = np.where(transition_model.self_loop_tid[tstate] > 0, tstate, -1)
    num_states = fst.num_states
    # Every distinct (state, class of the arcs entering it); the start counts as entered by -1.
    pair_state = np.concatenate([fst.dst.astype(np.int64), [fst.start]])
    pair_cls = np.concatenate([cls, [-1]])
    key = pair_state * (transition_model.num_transition_states + 2) + (pair_cls + 1)
    uniq, inverse = np.unique(key, return_inverse=True)
    u_state = uniq // (transition_model.num_transition_states + 2)
    u_cls = uniq % (transition_model.num_transition_states + 2) - 1
    first_of_state = np.r_[True, u_state[1:] != u_state[:-1]]
    extra = np.flatnonzero(~first_of_state)  # (state, class) pairs that need a copy of the state
    new_id = u_state.copy()
    new_id[extra] = num_states + np.arange(len(extra))
    state_cls = np.full(num_states + len(extra), -1, dtype=np.int64)
    state_cls[new_id] = u_cls
    origin = np.concatenate([np.arange(num_states), u_state[extra]])  # state each copy clones
    dst = new_id[inverse[:-1]]
    start = int(new_id[inverse[-1]])
    # Arcs of every state (copies repeat the arcs of the state they clone).
    order = np.argsort(fst.src, kind="stable")
    counts = np.bincount(fst.src, minlength=num_states)
    first = np.cumsum(counts) - counts
    arc_counts = counts[origin]
    arc_index = np.repeat(
        first[origin] - np.cumsum(arc_counts) + arc_counts, arc_counts
    ) + np.arange(int(arc_counts.sum()))
    arcs = order[arc_index]
    src = np.repeat(np.arange(len(origin)), arc_counts)
    # Self-loops and the exit weight on states entered by a transition state with a self-loop.
    loop_log = transition_model.self_loop_log_prob()
    exit_log = transition_model.non_self_loop_log_prob()
    has_loop = state_cls >= 0
    safe_cls = np.maximum(state_cls, 0)
    exit_cost = np.where(has_loop, -self_loop_scale * exit_log[safe_cls], 0.0)
    loop_states = np.flatnonzero(has_loop)
    final = fst.final[origin].astype(np.float64)
    final = np.where(np.isfinite(final), final + exit_cost, np.inf)
    return FstArrays(
        start=start,
        final=final.astype(np.float32),
        src=np.concatenate([src, loop_states]).astype(np.int32),
        dst=np.concatenate([dst[arcs], loop_states]).astype(np.int32),
        ilabel=np.concatenate(
            [fst.ilabel[arcs], transition_model.self_loop_tid[state_cls[loop_states]]]
        ).astype(np.int32),
        olabel=np.concatenate([fst.olabel[arcs], np.zeros(len(loop_states))]).astype(np.int32),
        weight=np.concatenate(
            [
                fst.weight[arcs] + exit_cost[src],
                -self_loop_scale * loop_log[state_cls[loop_states]],
            ]
        ).astype(np.float32),
    )
