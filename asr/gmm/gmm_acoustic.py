"""A GMM-HMM acoustic model directory as an :class:`asr.acoustic_model.AcousticModel`
(family ``"gmm"``; frame-independent, no subsampling).

A GMM model dir holds the HMM files of :class:`asr.hmm.HmmModel` (``hmm.json``,
``topo``, ``tree.json``, ``transitions.npz``, ``phones.txt``), the GMMs of all
pdfs (``gmm.pt``, written by :meth:`DiagGmmSet.save`; ``gmm.npz`` is accepted
too), the feature pipeline (``feature_pipeline.json``) and, when the pipeline
names one, its LDA/MLLT transform.

>>> from asr.gmm.gmm_acoustic import GmmAcousticModel  # doctest: +SKIP
>>> model = GmmAcousticModel.load("exp/yesno/mono")  # doctest: +SKIP
>>> feats = model.features(raw_mfcc)  # CMVN + deltas: (num_frames, 39)  # doctest: +SKIP
>>> model.log_likelihoods(feats).shape  # doctest: +SKIP
(613, 16)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from asr.errors import AsrError, ModelError
from asr.features.pipeline import FeaturePipelineConfig, apply_pipeline, load_transform
from asr.gmm.diag_gmm import DiagGmmSet
from asr.hmm.model import HmmModel

__all__ = ["GMM_FILE", "GmmAcousticModel", "gmm_scores"]

GMM_FILE = "gmm.pt"
_GMM_FILES = (GMM_FILE, "gmm.npz")


@dataclass(frozen=True, eq=False)
class GmmAcousticModel:
    """HMM structure + per-pdf diagonal GMMs + the feature pipeline they were trained on.

    ``transform``: the pipeline's LDA/MLLT matrix ``(out_dim, dim[+1])`` when it names one.
    """

    hmm: HmmModel
    gmm: DiagGmmSet
    feature_pipeline: FeaturePipelineConfig
    transform: np.ndarray | None = None
    model_dir: Path | None = None
    family: ClassVar[str] = "gmm"
    #: a frame's scores depend on that frame only (see :class:`asr.acoustic_model.AcousticModel`)
    frame_independent: ClassVar[bool] = True
    #: one score row per input frame
    subsampling: ClassVar[int] = 1

    def __post_init__(self) -> None:
        if self.gmm.num_pdfs != self.hmm.num_pdfs:
            raise ModelError(
                f"{self.model_dir or 'model'}: the GMMs have {self.gmm.num_pdfs} pdfs, "
                f"the HMM (tree) has {self.hmm.num_pdfs}"
            )
        if (self.feature_pipeline.transform is None) != (self.transform is None):
            raise ModelError(
                "the transform matrix must be given exactly when the feature pipeline names one"
            )
        if self.transform is not None and self.transform.shape[0] != self.gmm.dim:
            raise ModelError(
                f"the transform gives {self.transform.shape[0]}-dim features, "
                f"the GMMs expect {self.gmm.dim}"
            )

    @property
    def num_pdfs(self) -> int:
        return self.gmm.num_pdfs

    @property
    def feature_dim(self) -> int:
        """Dimension of the model input (after the whole pipeline)."""
        return self.gmm.dim

    @classmethod
    def load(cls, model_dir: str | os.PathLike, *, device: str = "cpu") -> GmmAcousticModel:
        """Read a GMM model dir (see the module docstring); :class:`ModelError` names what is
        missing or inconsistent."""
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise ModelError(f"{model_dir}: model directory not found")
        hmm = HmmModel.load(model_dir)
        gmm_path = next((model_dir / n for n in _GMM_FILES if (model_dir / n).is_file()), None)
        if gmm_path is None:
            raise ModelError(
                f"{model_dir}: no {GMM_FILE}; is it a trained GMM model dir (not just mono0)?"
            )
        gmm = DiagGmmSet.load(gmm_path, device=device)
        try:
            pipeline = FeaturePipelineConfig.load(model_dir)
            transform = (
                load_transform(model_dir / pipeline.transform)
                if pipeline.transform is not None
                else None
            )
        except AsrError as err:
            raise ModelError(f"{model_dir}: {err}") from None
        return cls(
            hmm=hmm,
            gmm=gmm,
            feature_pipeline=pipeline,
            transform=transform,
            model_dir=model_dir,
        )

    def features(
        self, raw_feats: np.ndarray, *, cmvn_stats: np.ndarray | None = None
    ) -> np.ndarray:
        """Raw front-end features ``(num_frames, raw_dim)`` -> model input ``(num_frames, dim)``
        float32 (see :func:`asr.features.pipeline.apply_pipeline`)."""
        return apply_pipeline(
            raw_feats, self.feature_pipeline, cmvn_stats=cmvn_stats, transform=self.transform
        )

    def log_likelihoods(self, feats: np.ndarray | torch.Tensor) -> np.ndarray:
        """``feats: (num_frames, dim)`` -> ``log p(x_t | pdf): (num_frames, num_pdfs)`` float32."""
        return gmm_scores(self.gmm, feats)


def gmm_scores(gmm: DiagGmmSet, feats: np.ndarray | torch.Tensor) -> np.ndarray:
    """``log p(x_t | pdf)`` of every pdf of ``gmm``: ``(num_frames, num_pdfs)`` float32;
    :class:`ModelError` when ``feats`` is not ``(num_frames, gmm.dim)``."""
    feats = torch.as_tensor(np.asarray(feats) if not torch.is_tensor(feats) else feats)
    if feats.ndim != 2 or feats.shape[1] != gmm.dim:
        raise ModelError(
            f"features have shape {tuple(feats.shape)}; the model expects "
            f"(num_frames, {gmm.dim}) (check the feature pipeline)"
        )
    with torch.inference_mode():
        out = gmm.log_likelihoods(feats)
    return out.cpu().numpy().astype(np.float32, copy=False)
