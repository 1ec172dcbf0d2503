"""One data-parallel job of GMM training: align a set of utterances with a GMM (or take their
alignment) and accumulate GMM statistics and transition counts over it (Kaldi's
``gmm-align-compiled`` + ``gmm-acc-stats-ali``, or ``gmm-acc-stats`` over Baum-Welch
posteriors).

The alignment itself is :func:`asr.align.align_chunks` with the GMM as its frame scorer; the
statistics of each chunk of frames are added as it is aligned (float64, in chunk order, so a
job's statistics do not depend on where it runs).

>>> from asr.align import AlignJob  # doctest: +SKIP
>>> from asr.gmm.jobs import GmmJob, run_gmm_job  # doctest: +SKIP
>>> align = AlignJob(utt_ids=ids, feats=feats, graphs=graphs, scorer=gmm,
...                  transition_model=tm, mode="align")  # doctest: +SKIP
>>> result = run_gmm_job(GmmJob(align))  # doctest: +SKIP
>>> result.acc.tot_weight  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from asr.align.aligner import AlignJob, AlignJobResult, align_chunks
from asr.gmm.accumulate import GmmAccumulator
from asr.gmm.diag_gmm import DiagGmmSet
from asr.parallel import single_torch_thread

__all__ = ["SUBSET_MIN_GAUSS", "GmmJob", "GmmJobResult", "run_gmm_job", "scores_pdf_subsets"]

# From this many Gaussians on, a job scores each utterance's graph pdfs only (Kaldi scores
# on demand): measured crossover ~1-2k Gaussians; AN4 tri2 (15k): ~20x less CPU per frame.
SUBSET_MIN_GAUSS = 2000


def scores_pdf_subsets(gmm: DiagGmmSet) -> bool:
    """Whether an :class:`asr.align.AlignJob` scored by ``gmm`` should score each
    utterance's graph pdfs only (its ``subset_scoring``): from :data:`SUBSET_MIN_GAUSS`
    Gaussians on."""
    return gmm.num_gauss >= SUBSET_MIN_GAUSS


@dataclass(frozen=True, eq=False)
class GmmJob:
    """One job's inputs: ``align``, an :class:`asr.align.AlignJob` whose scorer is the GMM
    (see its ``mode``; ``subset_scoring`` normally :func:`scores_pdf_subsets`); with
    ``accumulate`` the job also returns GMM statistics for the GMM and transition counts."""

    align: AlignJob
    accumulate: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.align.scorer, DiagGmmSet):
            scorer = type(self.align.scorer).__name__
            raise TypeError(f"a GmmJob's scorer must be a DiagGmmSet, got a {scorer}")

    @property
    def gmm(self) -> DiagGmmSet:
        """The GMM that scores the alignment and receives the statistics."""
        return self.align.scorer  # type: ignore[return-value]


@dataclass(eq=False)
class GmmJobResult(AlignJobResult):
    """An :class:`asr.align.AlignJobResult` with the statistics (``acc`` is None unless
    accumulating) and transition counts ``(num_transition_ids + 1,)``."""

    acc: GmmAccumulator | None = None
    transition_counts: np.ndarray = field(default_factory=lambda: np.zeros(0))


def run_gmm_job(job: GmmJob) -> GmmJobResult:
    """Run one :class:`GmmJob` (module-level: process pools pickle it) on one torch thread."""
    tm = job.align.transition_model
    out = GmmJobResult(
        acc=GmmAccumulator.for_model(job.gmm) if job.accumulate else None,
        transition_counts=np.zeros(tm.num_transition_ids + 1),
    )
    with single_torch_thread():
        for chunk in align_chunks(job.align, out):
            if out.acc is None:
                continue
            if chunk.alignment is not None:
                ali_all = chunk.alignment
                frames = torch.from_numpy(chunk.frames)
                out.acc.accumulate_aligned(
                    job.gmm,
                    chunk.feats[frames].to(torch.float64),
                    torch.from_numpy(tm.tid2pdf[ali_all]),
                )
                out.transition_counts += np.bincount(ali_all, minlength=tm.num_transition_ids + 1)
            if chunk.posteriors is not None:
                frame_index, tids, weights = chunk.posteriors
                out.acc.accumulate_posteriors(
                    job.gmm,
                    chunk.feats.to(torch.float64),
                    (torch.from_numpy(frame_index),
                     torch.from_numpy(tm.tid2pdf[tids].astype(np.int64)),
                     torch.from_numpy(weights)),
                )  # fmt: skip
                out.transition_counts += np.bincount(
                    tids, weights=weights, minlength=tm.num_transition_ids + 1
                )
    return out
