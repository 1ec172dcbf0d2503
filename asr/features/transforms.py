"""Frame splicing and affine feature transforms: the one implementation of each.

* :func:`splice_frames` — Kaldi's ``splice-feats`` (edge frames replicated), used by the
  feature pipeline and by LDA training;
* :func:`apply_transform` — Kaldi's ``transform-feats``: ``x -> M x`` / ``x -> A x + b``, used
  by the feature pipeline (LDA+MLLT ``final.mat``), by LDA/MLLT training and by fMLLR speaker
  adaptation.

A transform is a matrix ``(out_dim, dim)`` (linear) or ``(out_dim, dim + 1)`` (affine: the
last column is the offset ``b``).

>>> import numpy as np
>>> feats = np.ones((2, 3), dtype=np.float32)
>>> apply_transform(feats, np.hstack([2 * np.eye(3), np.ones((3, 1))]))
array([[3., 3., 3.],
       [3., 3., 3.]], dtype=float32)
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np

from asr.errors import FeatureError

if TYPE_CHECKING:
    import torch

__all__ = ["apply_transform", "check_transform", "splice_frames"]


def splice_frames(
    feats: torch.Tensor | np.ndarray, *, left: int = 3, right: int = 3
) -> torch.Tensor | np.ndarray:
    """``(num_frames, dim)`` -> ``(num_frames, (left + 1 + right) * dim)``: row ``t`` is
    ``[x[t-left], ..., x[t], ..., x[t+right]]`` with indices clamped to the utterance."""
    if left < 0 or right < 0:
        raise FeatureError(f"splice context must be >= 0, got left={left} right={right}")
    if feats.ndim != 2:
        raise FeatureError(f"features must be (num_frames, dim), got shape {tuple(feats.shape)}")
    num_frames = feats.shape[0]
    width = (left + 1 + right) * feats.shape[1]
    if num_frames == 0:
        return feats.reshape(0, width)
    if isinstance(feats, np.ndarray):
        index = np.arange(num_frames)[:, None] + np.arange(-left, right + 1)[None, :]
        return feats[np.clip(index, 0, num_frames - 1)].reshape(num_frames, width)
    import torch

    offsets = torch.arange(-left, right + 1, device=feats.device)
    index = (torch.arange(num_frames, device=feats.device)[:, None] + offsets).clamp(
        0, num_frames - 1
    )
    return feats[index].reshape(num_frames, width)


def check_transform(shape: tuple[int, ...], dim: int) -> bool:
    """Whether a transform of ``shape`` is affine (True: an offset column) or linear (False)
    for features of ``dim``; :class:`FeatureError` when it does not fit them."""
    if len(shape) != 2 or shape[1] not in (dim, dim + 1):
        raise FeatureError(f"transform {tuple(shape)} does not fit features of dim {dim}")
    return shape[1] == dim + 1


def apply_transform(feats, transform):
    """``feats (num_frames, dim)`` -> ``feats @ M^T`` (``+ b`` for an affine transform).

    NumPy features (or anything array-like) are computed in float64 and returned as
    contiguous float32 (as the feature pipeline stores them); a torch tensor keeps its dtype
    and device (the transform is converted to them).
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(feats, torch.Tensor):
        matrix = torch.as_tensor(transform).to(feats.device, feats.dtype)
        dim = feats.shape[1] if feats.ndim == 2 else -1
        affine = check_transform(tuple(matrix.shape), dim)
        out = feats @ matrix[:, :dim].T
        if affine:
            out = out + matrix[:, -1]
        return out
    feats, matrix = np.asarray(feats), np.asarray(transform)
    dim = feats.shape[1] if feats.ndim == 2 else -1
    affine = check_transform(matrix.shape, dim)
    out = feats.astype(np.float64) @ matrix[:, :dim].T
    if affine:
        out += matrix[:, dim]
    return np.ascontiguousarray(out, dtype=np.float32)
