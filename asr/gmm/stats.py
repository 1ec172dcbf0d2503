"""Transition statistics and Kaldi's maximum-likelihood transition-probability update.

Counts are per transition-id, ``(num_transition_ids + 1,) float64`` (index 0 unused): whole
alignments count at once with :func:`transition_counts_from_alignment` (Viterbi training) or
come as soft counts from forward-backward posteriors. :func:`mle_transition_update` is
``TransitionModel::MleUpdate``: for every transition state with more than one transition and at
least ``min_count`` counts, ``p = counts / total``, then three rounds of renormalising and
flooring at ``floor``; other states keep their probabilities.

>>> import numpy as np
>>> from asr.lang.topology import make_default_topology
>>> from asr.hmm import ContextDependency, TransitionModel
>>> topo = make_default_topology(nonsil_phone_ids=[2], sil_phone_ids=[1], num_sil_states=1)
>>> tm = TransitionModel.build(
...     topology=topo, ctx_dep=ContextDependency.monophone(phones=[1, 2], num_pdf_classes={1: 1, 2: 3}))
>>> counts = transition_counts_from_alignment(np.array([5] * 9 + [6]), num_transition_ids=8)
>>> new_tm, summary = mle_transition_update(tm, counts)
>>> np.exp(new_tm.log_probs[[5, 6]]).round(2).tolist(), summary.num_updated
([0.9, 0.1], 1)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asr.errors import ModelError
from asr.hmm.transition_model import TransitionModel

__all__ = [
    "TransitionUpdateConfig",
    "TransitionUpdateSummary",
    "mle_transition_update",
    "transition_counts_from_alignment",
]


@dataclass(frozen=True)
class TransitionUpdateConfig:
    """Kaldi's ``MleTransitionUpdateConfig``: probability ``floor`` and the ``min_count`` a
    transition state needs to be re-estimated."""

    floor: float = 0.01
    min_count: float = 5.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.floor < 1.0 or self.min_count < 0:
            raise ModelError(f"bad transition update config {self}")


@dataclass(frozen=True)
class TransitionUpdateSummary:
    """``objf_improvement`` (sum of ``count * (log p_new - log p_old)``), ``total_count``,
    transition states updated / skipped for too few counts, probabilities floored."""

    objf_improvement: float
    total_count: float
    num_updated: int
    num_skipped: int
    num_floored: int


def transition_counts_from_alignment(
    alignment: np.ndarray, *, num_transition_ids: int
) -> np.ndarray:
    """``(num_transition_ids + 1,) float64`` occurrence counts of the transition-ids of one
    or more concatenated alignments."""
    ali = np.asarray(alignment, dtype=np.int64).ravel()
    if ali.size and (ali.min() < 1 or ali.max() > num_transition_ids):
        raise ModelError(f"alignment has transition-ids outside 1..{num_transition_ids}")
    return np.bincount(ali, minlength=num_transition_ids + 1).astype(np.float64)


def mle_transition_update(
    transition_model: TransitionModel,
    counts: np.ndarray,
    config: TransitionUpdateConfig | None = None,
) -> tuple[TransitionModel, TransitionUpdateSummary]:
    """Re-estimated transition model and a summary (see the module docstring)."""
    config = config or TransitionUpdateConfig()
    tm = transition_model
    num_tids, num_tstates = tm.num_transition_ids, tm.num_transition_states
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape != (num_tids + 1,):
        raise ModelError(f"transition counts have shape {counts.shape}, expected ({num_tids + 1},)")
    if np.any(counts < 0) or not np.all(np.isfinite(counts)):
        raise ModelError("transition counts must be finite and >= 0")
    tstate = tm.tid2tstate.astype(np.int64)
    per_state = np.bincount(tstate[1:], weights=counts[1:], minlength=num_tstates + 1)
    num_trans = np.bincount(tstate[1:], minlength=num_tstates + 1)
    multi = num_trans > 1
    update = multi & (per_state >= config.min_count)
    update[0] = False
    upd_tid = update[tstate]
    upd_tid[0] = False
    probs = np.where(upd_tid, counts / np.where(upd_tid, per_state[tstate], 1.0), 1.0)
    for _ in range(3):  # renormalise then floor, three times (as Kaldi)
        sums = np.bincount(tstate, weights=np.where(upd_tid, probs, 0.0), minlength=num_tstates + 1)
        probs = np.where(upd_tid, probs / np.where(upd_tid, sums[tstate], 1.0), probs)
        probs = np.where(upd_tid, np.maximum(probs, config.floor), probs)
    old = tm.log_probs
    new = np.where(upd_tid, np.log(np.where(upd_tid, probs, 1.0)), old)
    new[0] = old[0]
    if not np.all(np.isfinite(new[1:])):
        raise ModelError("transition update produced a non-finite log-probability")
    summary = TransitionUpdateSummary(
        objf_improvement=float(np.sum(np.where(upd_tid, counts * (new - old), 0.0))),
        total_count=float(per_state[multi].sum()),
        num_updated=int(update.sum()),
        num_skipped=int((multi & ~update)[1:].sum()),
        num_floored=int(np.sum(upd_tid & (probs == config.floor))),
    )
    return tm.with_log_probs(new), summary
