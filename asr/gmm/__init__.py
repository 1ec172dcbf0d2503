"""Diagonal-covariance GMM acoustic models: scoring, statistics, ML update, mixing up, LDA/MLLT.

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
    apply_transform,
    estimate_lda,
    estimate_mllt,
    mllt_objective,
    splice_frames,
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
    "apply_transform",
    "estimate_lda",
    "estimate_mllt",
    "mix_up",
    "ml_update",
    "mllt_objective",
    "splice_frames",
    "split_targets",
    "transform_means",
]
