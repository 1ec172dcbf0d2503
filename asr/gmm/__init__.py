"""Diagonal-covariance GMM acoustic models: scoring, statistics, ML update, mixing up, LDA/MLLT,
fMLLR, and their training and alignment.

* :mod:`asr.gmm.diag_gmm`, :mod:`asr.gmm.accumulate`, :mod:`asr.gmm.stats` — the GMMs, their
  statistics and ML update, transition re-estimation;
* :mod:`asr.gmm.lda_mllt`, :mod:`asr.gmm.fmllr` — feature-space transforms (estimation);
* :mod:`asr.gmm.training` — the one GMM training loop (template, checkpoints, summary) with
  :mod:`asr.gmm.loop` (state and iteration) and :mod:`asr.gmm.jobs` (alignment + statistics
  jobs); its strategies :mod:`asr.gmm.train_mono`, :mod:`asr.gmm.train_tri` (with
  :mod:`asr.gmm.triphone_start`) and :mod:`asr.gmm.train_sat` (and SAT alignment);
* :mod:`asr.gmm.alignment` — ``asr align`` with a GMM model dir;
* :mod:`asr.gmm.gmm_acoustic`, :mod:`asr.gmm.sat` — the models at recognition time.

>>> import torch
>>> from asr.gmm import DiagGmmSet, GmmAccumulator, ml_update
>>> feats = torch.randn(200, 3, dtype=torch.float64)
>>> gmm = DiagGmmSet.init_single(num_pdfs=2, feats_mean=torch.zeros(3), feats_var=torch.ones(3))
>>> acc = GmmAccumulator.for_model(gmm)
>>> _ = acc.accumulate_aligned(gmm, feats, torch.arange(200) % 2)
>>> new_gmm, summary = ml_update(gmm, acc)
>>> new_gmm.num_gauss, summary.num_removed
(2, 0)
"""

from asr.gmm.accumulate import (
    GmmAccumulator,
    GmmUpdateConfig,
    UpdateSummary,
    mix_up,
    ml_update,
    split_targets,
)
from asr.gmm.diag_gmm import DiagGmmSet, GaussianPosteriors
from asr.gmm.lda_mllt import (
    LdaConfig,
    LdaStats,
    MlltAccumulator,
    MlltResult,
    estimate_lda,
    estimate_mllt,
    mllt_objective,
    transform_means,
)

__all__ = [
    "DiagGmmSet",
    "GaussianPosteriors",
    "GmmAccumulator",
    "GmmUpdateConfig",
    "LdaConfig",
    "LdaStats",
    "MlltAccumulator",
    "MlltResult",
    "UpdateSummary",
    "estimate_lda",
    "estimate_mllt",
    "mix_up",
    "ml_update",
    "mllt_objective",
    "split_targets",
    "transform_means",
]
