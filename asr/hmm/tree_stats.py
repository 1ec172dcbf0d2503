"""Tree statistics (Kaldi's ``acc-tree-stats``): diagonal Gaussian stats per phone-in-context event.

An *event* is the phone window around a frame plus the frame's pdf-class: ``(left, centre,
right, pdf_class)`` for triphones (``context_width=3, central_position=1``); phone ``0`` stands
for "no phone" at utterance edges. For every event seen in the alignments :class:`TreeStats`
keeps the frame count, the feature sum and the sum of squares (float64), which is all the
decision-tree builder (:mod:`asr.hmm.build_tree`) and the phone clustering
(:mod:`asr.hmm.questions`) need. Context-independent phones (``TreeStatsConfig.ci_phones``,
usually the silence phones) keep only their own identity: their neighbours are recorded as 0,
as Kaldi leaves the context keys out of their events.

Frame alignments come as per-frame phone ids and pdf-classes plus phone-instance starts;
:func:`frame_events_from_alignment` derives all three from transition-ids. Accumulation is
``np.unique`` of integer event keys and one sparse indicator-matrix product over all frames of a
job (no per-frame loop);
:meth:`TreeStats.merge` adds jobs' statistics (data-parallel accumulation).

:func:`gaussian_log_likelihood` is the likelihood ``L = -0.5 * count * (dim * (1 + log 2 pi) +
sum log var)`` of data under the ML diagonal Gaussian fitted to it (variances floored), the
objective the tree builder and phone clustering maximise.

>>> import numpy as np
>>> feats = np.arange(10.0).reshape(5, 2)
>>> stats = accumulate_tree_stats(feats=[feats], frame_phones=[np.array([3, 3, 4, 4, 4])],
...                               frame_pdf_classes=[np.array([0, 1, 0, 0, 1])])
>>> stats.events.tolist()
[[0, 3, 4, 0], [0, 3, 4, 1], [3, 4, 0, 0], [3, 4, 0, 1]]
>>> stats.counts.tolist(), stats.sums[2].tolist()
([1.0, 1.0, 2.0, 1.0], [10.0, 12.0])
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse

from asr.errors import EstimationError, ModelError
from asr.fileio import atomic_write
from asr.hmm.transition_model import TransitionModel

__all__ = [
    "TreeStats",
    "TreeStatsConfig",
    "accumulate_tree_stats",
    "frame_events_from_alignment",
    "gaussian_log_likelihood",
    "group_sums",
    "tid_to_pdf_class",
    "tree_stats_from_alignments",
]

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_likelihood(
    counts: np.ndarray, sums: np.ndarray, sumsq: np.ndarray, *, var_floor: float = 0.01
) -> np.ndarray:
    """Log-likelihood of data under its own ML diagonal Gaussian, from sufficient statistics.

    ``counts: (...)``, ``sums, sumsq: (..., dim)`` -> ``(...)``:
    ``-0.5 * count * (dim * (1 + log 2 pi) + sum_d log max(var_d, var_floor))`` with
    ``var = sumsq / count - (sums / count)^2``; 0 where ``count <= 0`` (Kaldi's
    ``GaussClusterable::Objf``).
    """
    counts = np.asarray(counts, dtype=np.float64)
    sums = np.asarray(sums, dtype=np.float64)
    sumsq = np.asarray(sumsq, dtype=np.float64)
    dim = sums.shape[-1]
    positive = counts > 0
    safe = np.where(positive, counts, 1.0)[..., None]
    mean = sums / safe
    var = np.maximum(sumsq / safe - mean * mean, var_floor)
    objf = -0.5 * counts * (dim * (1.0 + _LOG_2PI) + np.log(var).sum(axis=-1))
    return np.where(positive, objf, 0.0)


def group_sums(labels: np.ndarray, num_groups: int, values: np.ndarray) -> np.ndarray:
    """Sums of the rows of ``values: (n, ...)`` per label: ``(num_groups, ...)``, labels in
    ``0 .. num_groups-1`` (one sparse indicator-matrix product, no sort)."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    values = np.asarray(values, dtype=np.float64)
    flat = values.reshape(len(labels), -1)
    indicator = scipy.sparse.csr_array(
        (np.ones(len(labels)), (labels, np.arange(len(labels)))), shape=(num_groups, len(labels))
    )
    return np.asarray(indicator @ flat).reshape((num_groups, *values.shape[1:]))


@dataclass(frozen=True)
class TreeStatsConfig:
    """Which events to collect: the phone window (``context_width`` phones, the aligned phone at
    ``central_position``) and the context-independent phones (their neighbours recorded as 0)."""

    context_width: int = 3
    central_position: int = 1
    ci_phones: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.context_width < 1 or not 0 <= self.central_position < self.context_width:
            raise EstimationError(
                f"bad context: width {self.context_width}, central position {self.central_position}"
            )
        object.__setattr__(self, "ci_phones", tuple(sorted({int(p) for p in self.ci_phones})))


@dataclass(frozen=True, eq=False)
class TreeStats:
    """Per-event statistics. ``events: (num_events, context_width + 1) int64`` rows ``(phone at
    position 0, ..., phone at position N-1, pdf_class)``, sorted and unique; ``counts:
    (num_events,)``, ``sums, sumsq: (num_events, dim)`` float64."""

    context_width: int
    central_position: int
    events: np.ndarray
    counts: np.ndarray
    sums: np.ndarray
    sumsq: np.ndarray
    dim: int = field(init=False)

    def __post_init__(self) -> None:
        events = np.asarray(self.events, dtype=np.int64)
        if events.ndim != 2 or events.shape[1] != self.context_width + 1:
            raise EstimationError(
                f"events must be (num_events, {self.context_width + 1}), got {events.shape}"
            )
        counts = np.asarray(self.counts, dtype=np.float64).reshape(-1)
        sums = np.asarray(self.sums, dtype=np.float64)
        sumsq = np.asarray(self.sumsq, dtype=np.float64)
        if sums.ndim != 2 or sums.shape != sumsq.shape or len(sums) != len(events):
            raise EstimationError(
                f"stats shapes disagree: events {events.shape}, sums {sums.shape}, "
                f"sumsq {sumsq.shape}"
            )
        if counts.shape != (len(events),):
            raise EstimationError(f"counts {counts.shape} for {len(events)} events")
        for name, value in (("events", events), ("counts", counts), ("sums", sums)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "sumsq", sumsq)
        object.__setattr__(self, "dim", int(sums.shape[1]))

    # --- sizes --------------------------------------------------------------------------------
    @property
    def num_events(self) -> int:
        return len(self.events)

    @property
    def total_count(self) -> float:
        return float(self.counts.sum())

    @property
    def pdf_classes(self) -> np.ndarray:
        """``(num_events,)`` the pdf-class column of :attr:`events`."""
        return self.events[:, -1]

    @property
    def central_phones(self) -> np.ndarray:
        """``(num_events,)`` the central phone of each event."""
        return self.events[:, self.central_position]

    # --- combination --------------------------------------------------------------------------
    @classmethod
    def empty(cls, *, context_width: int = 3, central_position: int = 1, dim: int) -> TreeStats:
        return cls(
            context_width,
            central_position,
            np.zeros((0, context_width + 1), dtype=np.int64),
            np.zeros(0),
            np.zeros((0, dim)),
            np.zeros((0, dim)),
        )

    def merge(self, other: TreeStats) -> TreeStats:
        """The statistics of both (events in either; shared events' stats added)."""
        return TreeStats.merge_all([self, other])

    @staticmethod
    def merge_all(parts: Sequence[TreeStats]) -> TreeStats:
        """Sum of several jobs' statistics in one reduction."""
        if not parts:
            raise EstimationError("no tree statistics to merge")
        first = parts[0]
        for part in parts[1:]:
            if (part.context_width, part.central_position, part.dim) != (
                first.context_width,
                first.central_position,
                first.dim,
            ):
                raise EstimationError(
                    "cannot merge tree stats with different context or feature dimension: "
                    f"({first.context_width}, {first.central_position}, dim {first.dim}) vs "
                    f"({part.context_width}, {part.central_position}, dim {part.dim})"
                )
        return _reduce(
            context_width=first.context_width,
            central_position=first.central_position,
            events=np.concatenate([p.events for p in parts]),
            packed=np.concatenate(
                [np.column_stack([p.counts, p.sums, p.sumsq]) for p in parts]
            ).reshape(-1, 1 + 2 * first.dim),
        )

    # --- serialisation ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write an ``.npz`` file atomically."""
        buffer = io.BytesIO()
        np.savez(
            buffer,
            context=np.array([self.context_width, self.central_position], dtype=np.int64),
            events=self.events,
            counts=self.counts,
            sums=self.sums,
            sumsq=self.sumsq,
        )
        with atomic_write(path, "wb") as handle:
            handle.write(buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> TreeStats:
        """Read what :meth:`save` wrote."""
        try:
            with np.load(path) as data:
                width, centre = (int(v) for v in data["context"])
                return cls(
                    width, centre, data["events"], data["counts"], data["sums"], data["sumsq"]
                )
        except (OSError, KeyError, ValueError) as err:
            raise EstimationError(f"{path}: not a tree-stats file: {err}") from err


def _reduce(
    *,
    context_width: int,
    central_position: int,
    events: np.ndarray,
    packed: np.ndarray,
) -> TreeStats:
    """Sum rows of ``packed: (n, 1 + 2 * dim)`` (count, sum, sum of squares) with equal
    events: integer event keys, then one indicator-matrix product."""
    dim = (packed.shape[1] - 1) // 2
    if len(events) == 0:
        return TreeStats(
            context_width, central_position, events, packed[:, 0], packed[:, 1 : 1 + dim],
            packed[:, 1 + dim :],
        )  # fmt: skip
    if events.min() < 0:
        raise EstimationError(f"negative phone id or pdf-class in events ({events.min()})")
    radix = events.max(axis=0).astype(np.int64) + 1
    if float(np.prod(radix.astype(np.float64))) >= 2.0**62:
        raise EstimationError("phone ids / pdf-classes too large to encode events")
    keys = np.zeros(len(events), dtype=np.int64)
    for column in range(events.shape[1]):
        keys = keys * radix[column] + events[:, column]
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    stacked = group_sums(inverse, len(uniq), packed)
    return TreeStats(
        context_width,
        central_position,
        events[first],
        stacked[:, 0],
        stacked[:, 1 : 1 + dim],
        stacked[:, 1 + dim :],
    )


def _frame_contexts(
    phones: np.ndarray, starts: np.ndarray, config: TreeStatsConfig
) -> tuple[np.ndarray, np.ndarray, int]:
    """Phone windows ``(num_instances, context_width)`` holding only the central phone, the
    instance of each frame ``(num_frames,)`` and the number of instances; ``starts`` marks the
    first frame of every phone instance (utterance starts included)."""
    instance = np.cumsum(starts) - 1  # phone instance of each frame
    first_frames = np.flatnonzero(starts)
    inst_phone = phones[first_frames]
    num_inst = len(first_frames)
    width, centre = config.context_width, config.central_position
    windows = np.zeros((num_inst, width), dtype=np.int64)
    windows[:, centre] = inst_phone
    return windows, instance, num_inst


def accumulate_tree_stats(
    *,
    feats: Sequence[np.ndarray],
    frame_phones: Sequence[np.ndarray],
    frame_pdf_classes: Sequence[np.ndarray],
    phone_starts: Sequence[np.ndarray] | None = None,
    config: TreeStatsConfig | None = None,
) -> TreeStats:
    """Tree statistics of a list of utterances (one job).

    Per utterance: ``feats: (num_frames, dim)``, ``frame_phones, frame_pdf_classes:
    (num_frames,) int`` and optionally ``phone_starts: (num_frames,) bool`` (True on the first
    frame of each phone instance; by default a new instance starts where the phone changes,
    which merges repeated phones such as two silences in a row — pass starts from
    :func:`frame_events_from_alignment` to keep them apart).
    """
    config = config or TreeStatsConfig()
    num_utts = len(feats)
    if len(frame_phones) != num_utts or len(frame_pdf_classes) != num_utts:
        raise EstimationError(
            f"{num_utts} feature matrices but {len(frame_phones)} phone and "
            f"{len(frame_pdf_classes)} pdf-class alignments"
        )
    if phone_starts is not None and len(phone_starts) != num_utts:
        raise EstimationError(f"{num_utts} utterances but {len(phone_starts)} phone-start arrays")
    mats, phone_cols, class_cols, start_cols = [], [], [], []
    dim = None
    for u in range(num_utts):
        mat = np.asarray(feats[u])
        phones = np.asarray(frame_phones[u], dtype=np.int64).reshape(-1)
        classes = np.asarray(frame_pdf_classes[u], dtype=np.int64).reshape(-1)
        if mat.ndim != 2 or (dim is not None and mat.shape[1] != dim):
            raise EstimationError(f"utterance {u}: features must be (num_frames, dim)")
        dim = mat.shape[1]
        if not len(mat) == len(phones) == len(classes):
            raise EstimationError(
                f"utterance {u}: {len(mat)} feature frames but {len(phones)} phones and "
                f"{len(classes)} pdf-classes"
            )
        if len(phones) == 0:
            continue
        if phones.min() < 1 or classes.min() < 0:
            raise EstimationError(f"utterance {u}: phone ids must be >= 1, pdf-classes >= 0")
        if phone_starts is None:
            starts = np.r_[True, phones[1:] != phones[:-1]]
        else:
            starts = np.asarray(phone_starts[u], dtype=bool).reshape(-1).copy()
            if len(starts) != len(phones):
                raise EstimationError(f"utterance {u}: phone_starts has the wrong length")
            starts[0] = True
            starts |= np.r_[True, phones[1:] != phones[:-1]]
        mats.append(mat)
        phone_cols.append(phones)
        class_cols.append(classes)
        start_cols.append(starts)
    if not mats:
        return TreeStats.empty(
            context_width=config.context_width,
            central_position=config.central_position,
            dim=dim if dim is not None else 0,
        )
    num_frames = sum(len(m) for m in mats)
    packed = np.empty((num_frames, 1 + 2 * dim))  # [1, x, x^2] per frame
    packed[:, 0] = 1.0
    np.concatenate(mats, out=packed[:, 1 : 1 + dim], casting="same_kind")
    np.square(packed[:, 1 : 1 + dim], out=packed[:, 1 + dim :])
    phones = np.concatenate(phone_cols)
    classes = np.concatenate(class_cols)
    starts = np.concatenate(start_cols)
    utt_of_frame = np.repeat(np.arange(len(mats)), [len(m) for m in mats])
    windows, instance, num_inst = _frame_contexts(phones, starts, config)
    inst_utt = utt_of_frame[np.flatnonzero(starts)]
    centre = config.central_position
    for position in range(config.context_width):
        offset = position - centre
        if offset == 0:
            continue
        other = np.arange(num_inst) + offset
        valid = (other >= 0) & (other < num_inst)
        valid[valid] &= inst_utt[other[valid]] == inst_utt[valid]
        windows[valid, position] = windows[other[valid], centre]
    if config.ci_phones:
        is_ci = np.isin(windows[:, centre], np.asarray(config.ci_phones, dtype=np.int64))
        keep = windows[is_ci, centre]
        windows[is_ci] = 0
        windows[is_ci, centre] = keep
    events = np.concatenate([windows[instance], classes[:, None]], axis=1)
    return _reduce(
        context_width=config.context_width,
        central_position=centre,
        events=events,
        packed=packed,
    )


def tid_to_pdf_class(transition_model: TransitionModel) -> np.ndarray:
    """``(num_transition_ids + 1,) int64``: the pdf-class of each transition-id (the state's
    self-loop pdf-class for self-loops, its forward pdf-class otherwise); -1 at index 0."""
    tm = transition_model
    out = np.full(tm.num_transition_ids + 1, -1, dtype=np.int64)
    classes = {}
    for tstate, (phone, hmm_state, _, _) in enumerate(tm.tuples.tolist(), start=1):
        state = tm.topology.entry(phone).states[hmm_state]
        classes[tstate] = (state.forward_pdf_class, state.self_loop_pdf_class)
    tids = np.arange(1, tm.num_transition_ids + 1)
    forward = np.array([classes[int(s)][0] for s in tm.tid2tstate[1:]], dtype=np.int64)
    loop = np.array([classes[int(s)][1] for s in tm.tid2tstate[1:]], dtype=np.int64)
    out[tids] = np.where(tm.is_self_loop[tids], loop, forward)
    return out


def frame_events_from_alignment(
    tids: np.ndarray,
    *,
    transition_model: TransitionModel,
    reordered: bool = True,
    pdf_class_table: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(frame_phones, frame_pdf_classes, phone_starts)`` of one utterance's transition-ids.

    Phone instances are split as Kaldi's ``SplitToPhones``: with ``reordered`` alignments (our
    HCLG and training graphs, Kaldi's default) a phone starts at a non-self-loop transition out
    of HMM state 0; otherwise a phone starts after a transition into the final state.
    ``pdf_class_table`` is :func:`tid_to_pdf_class` of the model (computed when omitted).
    """
    tm = transition_model
    tids = np.asarray(tids, dtype=np.int64).reshape(-1)
    if tids.size and (tids.min() < 1 or tids.max() > tm.num_transition_ids):
        bad = tids[(tids < 1) | (tids > tm.num_transition_ids)][0]
        raise ModelError(f"transition-id {int(bad)} outside 1..{tm.num_transition_ids}")
    table = tid_to_pdf_class(tm) if pdf_class_table is None else pdf_class_table
    phones = tm.tid2phone[tids].astype(np.int64)
    if reordered:
        starts = (~tm.is_self_loop[tids]) & (tm.tid2hmm_state[tids] == 0)
    else:
        final_of_phone = {p: tm.topology.entry(p).num_states - 1 for p in tm.phones}
        final_state = np.zeros(tm.num_transition_ids + 1, dtype=np.int64)
        final_state[1:] = [final_of_phone[int(p)] for p in tm.tid2phone[1:]]
        ends = tm.tid2dest_state[tids] == final_state[tids]
        starts = np.r_[True, ends[:-1]] if tids.size else np.zeros(0, dtype=bool)
    if tids.size:
        starts[0] = True
        starts |= np.r_[True, phones[1:] != phones[:-1]]
    return phones, table[tids], starts


def tree_stats_from_alignments(
    *,
    feats: Sequence[np.ndarray],
    alignments: Sequence[np.ndarray],
    transition_model: TransitionModel,
    config: TreeStatsConfig | None = None,
    reordered: bool = True,
) -> TreeStats:
    """:func:`accumulate_tree_stats` of utterances given as transition-id alignments
    ``(num_frames,)`` (Kaldi's ``acc-tree-stats``)."""
    table = tid_to_pdf_class(transition_model)
    parts = [
        frame_events_from_alignment(
            ali, transition_model=transition_model, reordered=reordered, pdf_class_table=table
        )
        for ali in alignments
    ]
    return accumulate_tree_stats(
        feats=feats,
        frame_phones=[p[0] for p in parts],
        frame_pdf_classes=[p[1] for p in parts],
        phone_starts=[p[2] for p in parts],
        config=config,
    )
