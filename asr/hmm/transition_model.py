"""Kaldi's transition model: transition-ids, their pdfs, phones and probabilities.

A *transition state* is a unique tuple ``(phone, hmm_state, forward_pdf,
self_loop_pdf)`` that can occur given the topology and the context-dependency
tree; tuples are sorted and numbered from 1. Each transition state has one
*transition-id* per transition out of its HMM state (in topology order), so
transition-ids are ``1 .. num_transition_ids`` and enumerate the pairs
(transition state, transition index). The pdf of a transition-id is the
self-loop pdf for a self-loop and the forward pdf otherwise.

Lookups are numpy arrays indexed by transition-id (index 0 unused, ``-1``/0 there),
so whole alignments map at once: ``tm.tid2pdf[alignment]``.

>>> from asr.lang.topology import make_default_topology
>>> from asr.hmm.tree import ContextDependency
>>> topo = make_default_topology(nonsil_phone_ids=[2], sil_phone_ids=[1], num_sil_states=1)
>>> tree = ContextDependency.monophone(phones=[1, 2], num_pdf_classes={1: 1, 2: 3})
>>> tm = TransitionModel.build(topology=topo, ctx_dep=tree)
>>> tm.num_transition_states, tm.num_transition_ids, tm.num_pdfs
(4, 8, 4)
>>> tm.tid2pdf.tolist(), tm.tid2phone.tolist()
([-1, 0, 0, 1, 1, 2, 2, 3, 3], [0, 1, 1, 2, 2, 2, 2, 2, 2])
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from asr.errors import ModelError
from asr.hmm.tree import ContextDependency
from asr.lang.topology import Topology

_MIN_PROB = 1.0e-20


_PHONE_BITS, _STATE_BITS, _PDF_BITS = 15, 8, 20  # 63 bits in all


def _tuple_keys(tuples: np.ndarray) -> np.ndarray:
    """Order-preserving int64 keys of ``(phone, hmm_state, forward_pdf, self_loop_pdf)`` rows
    (rows outside the bit budget get key -1, which matches nothing)."""
    t = tuples.astype(np.int64)
    limits = np.array([1 << _PHONE_BITS, 1 << _STATE_BITS, 1 << _PDF_BITS, 1 << _PDF_BITS])
    inside = np.all((t >= 0) & (t < limits), axis=1)
    keys = (t[:, 0] << _STATE_BITS) | t[:, 1]
    keys = (keys << _PDF_BITS) | t[:, 2]
    keys = (keys << _PDF_BITS) | t[:, 3]
    return np.where(inside, keys, -1)


@dataclass(frozen=True, eq=False)
class TransitionModel:
    """Transition states/ids of a topology + tree, and the transition log-probabilities.

    ``tuples: (num_transition_states, 4) int32`` rows ``(phone, hmm_state, forward_pdf,
    self_loop_pdf)`` sorted (transition state ``i+1`` is row ``i``);
    ``log_probs: (num_transition_ids + 1,) float64`` (index 0 unused). Build with
    :meth:`build`; everything else is derived.
    """

    topology: Topology
    tuples: np.ndarray
    log_probs: np.ndarray
    num_pdfs: int
    tstate2first_tid: np.ndarray = field(init=False, repr=False)
    tid2tstate: np.ndarray = field(init=False, repr=False)
    tid2index: np.ndarray = field(init=False, repr=False)
    tid2pdf: np.ndarray = field(init=False, repr=False)
    tid2phone: np.ndarray = field(init=False, repr=False)
    tid2hmm_state: np.ndarray = field(init=False, repr=False)
    tid2dest_state: np.ndarray = field(init=False, repr=False)
    is_self_loop: np.ndarray = field(init=False, repr=False)
    self_loop_tid: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        tuples = np.asarray(self.tuples, dtype=np.int32).reshape(-1, 4)
        keys = _tuple_keys(tuples)
        if np.any(keys < 0):
            raise ModelError(
                f"transition-state tuples need phones < 2^{_PHONE_BITS}, HMM states < "
                f"2^{_STATE_BITS} and pdfs < 2^{_PDF_BITS}"
            )
        if len(keys) > 1 and not np.all(keys[1:] > keys[:-1]):
            raise ModelError("transition-state tuples must be sorted and unique")
        if tuples.size and (tuples[:, 2:].max() >= self.num_pdfs or tuples[:, 2:].min() < 0):
            raise ModelError(f"transition-state pdfs outside 0..{self.num_pdfs - 1}")
        num_trans = np.empty(len(tuples), dtype=np.int64)
        dests: list[int] = []
        for row, (phone, hmm_state, _, _) in enumerate(tuples.tolist()):
            entry = self.topology.entry(phone)
            if not 0 <= hmm_state < entry.num_states - 1:
                raise ModelError(f"phone {phone} has no emitting HMM state {hmm_state}")
            transitions = entry.states[hmm_state].transitions
            num_trans[row] = len(transitions)
            dests.extend(dest for dest, _ in transitions)
        num_tids = int(num_trans.sum())
        first = np.zeros(len(tuples) + 2, dtype=np.int64)
        first[1:] = np.concatenate([[1], 1 + np.cumsum(num_trans)])  # first[0] unused
        tid2tstate = np.zeros(num_tids + 1, dtype=np.int32)
        tid2tstate[1:] = np.repeat(np.arange(1, len(tuples) + 1), num_trans)
        tid2index = np.zeros(num_tids + 1, dtype=np.int32)
        tid2index[1:] = np.arange(num_tids) - np.repeat(first[1:-1] - 1, num_trans)
        padded = np.vstack([np.full((1, 4), -1, dtype=np.int32), tuples])
        rows = padded[tid2tstate]
        dest = np.full(num_tids + 1, -1, dtype=np.int32)
        dest[1:] = dests
        is_loop = dest == rows[:, 1]
        is_loop[0] = False
        pdf = np.where(is_loop, rows[:, 3], rows[:, 2]).astype(np.int32)
        phone = np.where(tid2tstate > 0, rows[:, 0], 0).astype(np.int32)
        self_loop_tid = np.zeros(len(tuples) + 1, dtype=np.int32)
        loop_tids = np.flatnonzero(is_loop)
        self_loop_tid[tid2tstate[loop_tids]] = loop_tids
        log_probs = np.asarray(self.log_probs, dtype=np.float64)
        if log_probs.shape != (num_tids + 1,):
            raise ModelError(f"log_probs has shape {log_probs.shape}, expected ({num_tids + 1},)")
        values = {
            "tuples": tuples,
            "log_probs": log_probs,
            "tstate2first_tid": first,
            "tid2tstate": tid2tstate,
            "tid2index": tid2index,
            "tid2pdf": pdf,
            "tid2phone": phone,
            "tid2hmm_state": np.where(tid2tstate > 0, rows[:, 1], -1).astype(np.int32),
            "tid2dest_state": dest,
            "is_self_loop": is_loop,
            "self_loop_tid": self_loop_tid,
        }
        for name, value in values.items():
            value = np.array(value)  # own copy, then freeze it
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        *,
        topology: Topology,
        ctx_dep: ContextDependency,
        phones: Sequence[int] | None = None,
    ) -> TransitionModel:
        """All transition states the tree allows for ``phones`` (default: the topology's),
        with log-probabilities initialised from the topology (as Kaldi's ``gmm-init-mono``)."""
        phones = sorted(set(phones if phones is not None else topology.phones))
        rows: set[tuple[int, int, int, int]] = set()
        for phone in phones:
            entry = topology.entry(phone)
            for hmm_state, state in enumerate(entry.states[:-1]):
                fwd, loop = state.forward_pdf_class, state.self_loop_pdf_class
                if fwd == loop:
                    rows.update((phone, hmm_state, p, p) for p in ctx_dep.possible_pdfs(phone, fwd))
                else:
                    pairs = _pdf_pairs(ctx_dep, phone, fwd, loop, phones)
                    rows.update((phone, hmm_state, f, s) for f, s in pairs)
        tuples = np.array(sorted(rows), dtype=np.int32).reshape(-1, 4)
        log_probs = [0.0]
        for phone, hmm_state, _, _ in tuples.tolist():
            state = topology.entry(phone).states[hmm_state]
            log_probs.extend(float(np.log(max(p, _MIN_PROB))) for _, p in state.transitions)
        return cls(
            topology=topology,
            tuples=tuples,
            log_probs=np.array(log_probs),
            num_pdfs=ctx_dep.num_pdfs,
        )

    def with_log_probs(self, log_probs: np.ndarray) -> TransitionModel:
        """The same transition model with re-estimated ``log_probs: (num_transition_ids+1,)``."""
        return TransitionModel(
            topology=self.topology, tuples=self.tuples, log_probs=log_probs, num_pdfs=self.num_pdfs
        )

    # --- sizes and lookups --------------------------------------------------------------------
    @property
    def num_transition_states(self) -> int:
        return len(self.tuples)

    @property
    def num_transition_ids(self) -> int:
        return len(self.log_probs) - 1

    @property
    def phones(self) -> tuple[int, ...]:
        return tuple(int(p) for p in np.unique(self.tuples[:, 0]))

    def transition_states(
        self,
        phone: np.ndarray,
        hmm_state: np.ndarray,
        forward_pdf: np.ndarray,
        self_loop_pdf: np.ndarray,
    ) -> np.ndarray:
        """Transition states (1-based) of tuples given as broadcastable arrays (or scalars);
        0 where absent. Returns a 1-d array."""
        columns = np.broadcast_arrays(phone, hmm_state, forward_pdf, self_loop_pdf)
        query = np.stack([np.atleast_1d(c) for c in columns], axis=1)
        query_keys = _tuple_keys(query.reshape(-1, 4))
        keys = _tuple_keys(self.tuples)
        pos = np.searchsorted(keys, query_keys)
        pos_clipped = np.minimum(pos, max(len(keys) - 1, 0))
        found = (pos < len(keys)) & (keys[pos_clipped] == query_keys) if len(keys) else pos < 0
        return np.where(found, pos + 1, 0).astype(np.int32)

    def transition_id(self, tstate: int, transition_index: int) -> int:
        """The transition-id of (transition state, transition index)."""
        if not 1 <= tstate <= self.num_transition_states:
            raise ModelError(f"no transition state {tstate}")
        tid = int(self.tstate2first_tid[tstate]) + transition_index
        if transition_index < 0 or tid >= self.tstate2first_tid[tstate + 1]:
            raise ModelError(f"transition state {tstate} has no transition {transition_index}")
        return tid

    def self_loop_log_prob(self) -> np.ndarray:
        """``(num_transition_states+1,)``: log p(self-loop) per transition state; 0 where none."""
        out = np.zeros(self.num_transition_states + 1)
        has = self.self_loop_tid > 0
        out[has] = self.log_probs[self.self_loop_tid[has]]
        return out

    def non_self_loop_log_prob(self) -> np.ndarray:
        """``(num_transition_states+1,)``: log(1 - p(self-loop)) per transition state."""
        p_loop = np.where(self.self_loop_tid > 0, np.exp(self.self_loop_log_prob()), 0.0)
        return np.log(np.maximum(1.0 - p_loop, _MIN_PROB))

    def log_prob_ignoring_self_loops(self) -> np.ndarray:
        """``(num_transition_ids+1,)``: log p(tid) - log(1 - p(self-loop)) for non-self-loop
        transition-ids (the weights on H's arcs), 0 for self-loops and index 0."""
        out = self.log_probs - self.non_self_loop_log_prob()[self.tid2tstate]
        out[self.is_self_loop] = 0.0
        out[0] = 0.0
        return out

    # --- serialisation ------------------------------------------------------------------------
    def to_npz_bytes(self) -> bytes:
        """``tuples``, ``log_probs`` and ``num_pdfs`` as an in-memory ``.npz`` (the topology is
        stored separately)."""
        buffer = io.BytesIO()
        np.savez(
            buffer,
            tuples=self.tuples,
            log_probs=self.log_probs,
            num_pdfs=np.array(self.num_pdfs, dtype=np.int64),
        )
        return buffer.getvalue()

    @classmethod
    def from_npz(cls, source: object, *, topology: Topology) -> TransitionModel:
        """Load what :meth:`to_npz_bytes` wrote (a path or file object)."""
        try:
            with np.load(source) as data:
                return cls(
                    topology=topology,
                    tuples=data["tuples"],
                    log_probs=data["log_probs"],
                    num_pdfs=int(data["num_pdfs"]),
                )
        except (OSError, KeyError, ValueError) as err:
            raise ModelError(f"{source}: not a transition-model archive: {err}") from err


def _pdf_pairs(
    ctx_dep: ContextDependency,
    phone: int,
    forward_class: int,
    self_loop_class: int,
    phones: Sequence[int],
) -> set[tuple[int, int]]:
    """(forward_pdf, self_loop_pdf) pairs over every context of ``phone`` (chain-style topologies
    whose two pdf-classes differ): enumerate the windows, then look both classes up."""
    width, centre = ctx_dep.context_width, ctx_dep.central_position
    values = np.array([0, *phones], dtype=np.int64)
    grids = np.meshgrid(*[values] * (width - 1), indexing="ij") if width > 1 else []
    others = [g.ravel() for g in grids]
    num = others[0].size if others else 1
    columns = others[:centre] + [np.full(num, phone)] + others[centre:]
    contexts = np.stack(columns, axis=1)
    fwd = ctx_dep.compute_batch(contexts, np.full(num, forward_class))
    loop = ctx_dep.compute_batch(contexts, np.full(num, self_loop_class))
    return set(zip(fwd.tolist(), loop.tolist(), strict=True))
