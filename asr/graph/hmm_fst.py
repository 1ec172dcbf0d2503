"""FSTs as numpy arrays, the HMM transducer H (Kaldi's ``make-h-transducer``) and HMM self-loops
(Kaldi's ``add-self-loops --reorder=true``).

:class:`FstArrays` holds a tropical FST as flat arrays (arcs sorted by source state) and
converts to and from OpenFst's binary ``vector`` format with compiled (numba) scans, so the
builders below work on whole arc arrays instead of per-arc Python calls.

* :func:`make_h_transducer` — ``Ha``: input transition-ids, output context-window labels
  (indices into ``ilabel_info`` from :func:`asr.graph.context.compose_context`); no self-loops;
  arc weights ``-transition_scale * log p(tid ignoring self-loops)``; context-window labels that
  are disambiguation symbols (``[-phone]``) or the pseudo-epsilon ``[0]`` become new input
  symbols ``num_transition_ids + 1 ...`` (returned, to be removed after determinization).
* :func:`add_self_loops` — splits states so all arcs entering one state carry the same
  transition state, then adds that state's self-loop (weight ``-self_loop_scale * log p(loop)``)
  and multiplies its other exits by ``-self_loop_scale * log(1 - p(loop))``.

>>> import kaldifst
>>> fst = kaldifst.compile("0 1 3 4 0.5\\n1 0.25\\n")
>>> arrays = FstArrays.from_fst(fst)
>>> arrays.ilabel.tolist(), arrays.final.tolist()
([3], [inf, 0.25])
>>> arrays.to_fst().num_states
2
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import kaldifst
import numba
import numpy as np

from asr.errors import GraphError
from asr.fileio import atomic_write
from asr.hmm.transition_model import TransitionModel
from asr.hmm.tree import ContextDependency

_MAGIC = 2125659606
_SYMBOL_TABLE_MAGIC = 2125658996
_VECTOR_VERSION = 2
_PROPS_EXPANDED_MUTABLE = 0x3  # every other property "unknown": OpenFst recomputes on demand


@numba.njit(cache=True)
def _get_i32(buf, pos):  # pragma: no cover - numba
    value = buf[pos] | (buf[pos + 1] << 8) | (buf[pos + 2] << 16) | (np.int64(buf[pos + 3]) << 24)
    return value - (np.int64(1) << 32) if value >= (np.int64(1) << 31) else value


@numba.njit(cache=True)
def _put_i32(buf, pos, value):  # pragma: no cover - numba
    value = value & 0xFFFFFFFF
    for k in range(4):
        buf[pos + k] = (value >> (8 * k)) & 0xFF


@numba.njit(cache=True)
def _count_arcs(buf, pos, num_states):  # pragma: no cover - numba
    """Total arcs of OpenFst's per-state records (final weight, int64 arc count, 16-byte arcs);
    -1 when the buffer is too short."""
    total = 0
    for _ in range(num_states):
        if pos + 12 > buf.shape[0]:
            return -1
        count = _get_i32(buf, pos + 4) + (_get_i32(buf, pos + 8) << 32)
        if count < 0:
            return -1
        total += count
        pos += 12 + 16 * count
    return total if pos <= buf.shape[0] else -1


@numba.njit(cache=True)
def _parse_body(buf, pos, final_bits, counts, ilabel, olabel, weight_bits, dst):  # pragma: no cover
    """Fill the arrays from the per-state records (after :func:`_count_arcs` checked them)."""
    arc = 0
    for s in range(final_bits.shape[0]):
        final_bits[s] = _get_i32(buf, pos)
        count = _get_i32(buf, pos + 4) + (_get_i32(buf, pos + 8) << 32)
        counts[s] = count
        pos += 12
        for _ in range(count):
            ilabel[arc] = _get_i32(buf, pos)
            olabel[arc] = _get_i32(buf, pos + 4)
            weight_bits[arc] = _get_i32(buf, pos + 8)
            dst[arc] = _get_i32(buf, pos + 12)
            pos += 16
            arc += 1


@numba.njit(cache=True)
def _write_body(buf, final_bits, counts, ilabel, olabel, weight_bits, dst):  # pragma: no cover
    """Inverse of :func:`_parse_body`; arcs must be grouped by source state."""
    pos = 0
    arc = 0
    for s in range(final_bits.shape[0]):
        _put_i32(buf, pos, final_bits[s])
        _put_i32(buf, pos + 4, counts[s])
        _put_i32(buf, pos + 8, counts[s] >> 32)
        pos += 12
        for _ in range(counts[s]):
            _put_i32(buf, pos, ilabel[arc])
            _put_i32(buf, pos + 4, olabel[arc])
            _put_i32(buf, pos + 8, weight_bits[arc])
            _put_i32(buf, pos + 12, dst[arc])
            pos += 16
            arc += 1


def _read_vector_fst(data: bytes, where: str) -> FstArrays:
    buf = np.frombuffer(data, dtype=np.uint8)

    def take(pos: int, dtype: str) -> tuple[int, int]:
        size = np.dtype(dtype).itemsize
        if pos + size > len(buf):
            raise GraphError(f"{where}: truncated FST header")
        return pos + size, buf[pos : pos + size].view(dtype)[0].item()

    pos, magic = take(0, "<i4")
    if magic != _MAGIC:
        raise GraphError(f"{where}: not an OpenFst binary file")
    names = []
    for _ in range(2):
        pos, length = take(pos, "<i4")
        names.append(bytes(buf[pos : pos + length]).decode(errors="replace"))
        pos += length
    if names != ["vector", "standard"]:
        raise GraphError(f"{where}: expected a standard-arc vector FST, got {names}")
    pos, _version = take(pos, "<i4")
    pos, flags = take(pos, "<i4")
    pos, _props = take(pos, "<u8")
    pos, start = take(pos, "<i8")
    pos, num_states = take(pos, "<i8")
    pos, _num_arcs = take(pos, "<i8")  # OpenFst leaves this 0 in vector files
    for flag in (0x1, 0x2):  # stored input / output symbol tables: skip them
        if flags & flag:
            pos, magic = take(pos, "<i4")
            if magic != _SYMBOL_TABLE_MAGIC:
                raise GraphError(f"{where}: malformed symbol table in the FST header")
            pos, length = take(pos, "<i4")
            pos, _available_key = take(pos + length, "<i8")
            pos, num_symbols = take(pos, "<i8")
            for _ in range(num_symbols):
                pos, length = take(pos, "<i4")
                pos, _key = take(pos + length, "<i8")
    if num_states < 0:
        raise GraphError(f"{where}: FST header lacks the number of states")
    num_arcs = _count_arcs(buf, pos, num_states)
    if num_arcs < 0:
        raise GraphError(f"{where}: truncated FST body")
    final_bits = np.empty(num_states, dtype=np.int32)
    counts = np.empty(num_states, dtype=np.int64)
    ilabel, olabel, weight_bits, dst = (np.empty(num_arcs, dtype=np.int32) for _ in range(4))
    _parse_body(buf, pos, final_bits, counts, ilabel, olabel, weight_bits, dst)
    return FstArrays(
        start=int(start),
        final=final_bits.view(np.float32),
        src=np.repeat(np.arange(num_states, dtype=np.int32), counts),
        dst=dst,
        ilabel=ilabel,
        olabel=olabel,
        weight=weight_bits.view(np.float32),
    )


@dataclass(frozen=True, eq=False)
class FstArrays:
    """A tropical FST as arrays: ``final: (num_states,) float32`` (``inf`` = not final) and
    per-arc ``src, dst, ilabel, olabel: (num_arcs,) int32``, ``weight: (num_arcs,) float32``."""

    start: int
    final: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    ilabel: np.ndarray
    olabel: np.ndarray
    weight: np.ndarray

    @property
    def num_states(self) -> int:
        return len(self.final)

    @property
    def num_arcs(self) -> int:
        return len(self.src)

    @classmethod
    def from_fst(cls, fst: kaldifst.StdFst) -> FstArrays:
        """Arrays of a kaldifst FST (through its OpenFst binary form)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "fst"
            if not fst.write(str(path)):
                raise GraphError("could not serialise an FST")
            return _read_vector_fst(path.read_bytes(), "<fst>")

    @classmethod
    def read(cls, path: str | os.PathLike) -> FstArrays:
        """Arrays of a binary OpenFst ``vector`` FST file."""
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise GraphError(f"{path}: FST not found") from None
        return _read_vector_fst(data, str(path))

    def to_bytes(self) -> bytes:
        """OpenFst binary ``vector`` format (arcs written grouped by source state)."""
        order = np.argsort(self.src, kind="stable")
        counts = np.bincount(self.src, minlength=self.num_states).astype(np.int64)
        body = np.empty(12 * self.num_states + 16 * self.num_arcs, dtype=np.uint8)
        _write_body(
            body,
            np.ascontiguousarray(self.final, dtype=np.float32).view(np.int32),
            counts,
            np.ascontiguousarray(self.ilabel[order], dtype=np.int32),
            np.ascontiguousarray(self.olabel[order], dtype=np.int32),
            np.ascontiguousarray(self.weight[order], dtype=np.float32).view(np.int32),
            np.ascontiguousarray(self.dst[order], dtype=np.int32),
        )
        header = bytearray()
        header += np.array([_MAGIC, 6], dtype="<i4").tobytes() + b"vector"
        header += np.array([8], dtype="<i4").tobytes() + b"standard"
        header += np.array([_VECTOR_VERSION, 0], dtype="<i4").tobytes()
        header += np.array([_PROPS_EXPANDED_MUTABLE], dtype="<u8").tobytes()
        header += np.array([self.start, self.num_states, self.num_arcs], dtype="<i8").tobytes()
        return bytes(header) + body.tobytes()

    def to_fst(self) -> kaldifst.StdVectorFst:
        """A kaldifst ``StdVectorFst`` with these states and arcs."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "fst"
            path.write_bytes(self.to_bytes())
            return kaldifst.StdVectorFst.read(str(path))

    def write(self, path: str | os.PathLike) -> None:
        """Write atomically in OpenFst's binary format (``fstinfo`` reads it)."""
        with atomic_write(path, "wb") as handle:
            handle.write(self.to_bytes())


def write_fst(fst: kaldifst.StdFst, path: str | os.PathLike) -> None:
    """Write a kaldifst FST atomically (OpenFst binary)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp) / "fst"
        if not fst.write(str(tmp_path)):
            raise GraphError(f"{path}: could not write FST")
        data = tmp_path.read_bytes()
    with atomic_write(path, "wb") as handle:
        handle.write(data)


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
    for phone in np.unique(windows[:, centre]).tolist():
        rows = np.flatnonzero(windows[:, centre] == phone)
        try:
            entry = transition_model.topology.entry(phone)
        except Exception as err:  # LangError: phone not in the topology
            raise GraphError(f"context window phone {phone}: {err}") from None
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
            fwd = ctx_dep.compute_batch(windows[rows], np.full(len(rows), state.forward_pdf_class))
            loop = ctx_dep.compute_batch(
                windows[rows], np.full(len(rows), state.self_loop_pdf_class)
            )
            tstates = transition_model.transition_states(phone, hmm_state, fwd, loop)
            if np.any(tstates == 0):
                k = int(np.flatnonzero(tstates == 0)[0])
                raise GraphError(
                    f"model has no transition state for phone {phone}, HMM state {hmm_state}, "
                    f"pdfs ({int(fwd[k])}, {int(loop[k])}): tree and transition model disagree"
                )
            first_tid = transition_model.tstate2first_tid[tstates]
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
