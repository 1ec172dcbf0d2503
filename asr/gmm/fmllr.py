"""Feature-space MLLR (fMLLR, "constrained MLLR") for diagonal GMMs: one affine transform
``x -> A x + b`` per speaker that maximizes the likelihood of the speaker's frames under the
model (Gales 1998; Kaldi's ``gmm-est-fmllr``). Speaker-adaptive training (tri3) and its
two-pass decoding are built on it (:mod:`asr.gmm.train_sat`, :mod:`asr.gmm.sat`).

Statistics, with ``xi = [x; 1]`` and Gaussian occupancies ``gamma_tm`` (posteriors within each
frame's aligned pdf, silence weighted by the caller)::

    beta = sum gamma_tm,   K[i] = sum gamma_tm mu_mi / var_mi xi_t,
    G[i] = sum gamma_tm / var_mi xi_t xi_t^T          (one (d+1)x(d+1) matrix per dimension)

The auxiliary function ``Q(W) = beta log|det A| + sum_i (w_i . K[i] - 1/2 w_i G[i] w_i)`` equals
the log-likelihood of the transformed frames (with the Jacobian) up to a constant. It is
maximized row by row: with ``c`` the cofactor row of ``A`` (extended by a 0),
``w_i = (alpha c + K[i]) G[i]^-1`` where ``alpha`` solves
``alpha^2 c G^-1 c + alpha c G^-1 K[i] - beta = 0`` (the root with the higher objective). Each
row update cannot decrease ``Q``.

>>> stats = FmllrStats.zeros(dim=40)  # doctest: +SKIP
>>> stats.accumulate(gmm, feats, pdf_ids)  # doctest: +SKIP
>>> result = estimate_fmllr(stats)  # doctest: +SKIP
>>> adapted = apply_fmllr(feats, result.transform)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from asr.errors import EstimationError
from asr.features.transforms import apply_transform
from asr.gmm.diag_gmm import DiagGmmSet

__all__ = [
    "FmllrConfig",
    "FmllrResult",
    "FmllrStats",
    "apply_fmllr",
    "estimate_fmllr",
    "identity_transform",
]

_CHUNK_FRAMES = 2048


@dataclass(frozen=True)
class FmllrConfig:
    """Options of :func:`estimate_fmllr`. With at least ``min_count`` (weighted) frames the
    whole ``[A b]`` is estimated (Kaldi's ``--fmllr-min-count``, 500); with at least
    ``min_count_diag`` only a diagonal ``A`` and ``b`` (2 parameters per dimension: enough
    for one short utterance); with fewer the transform stays the starting one."""

    num_iters: int = 10
    min_count: float = 500.0
    min_count_diag: float = 100.0

    def __post_init__(self) -> None:
        if self.num_iters < 1 or not 0 <= self.min_count_diag <= self.min_count:
            raise EstimationError(
                "fMLLR: num_iters must be >= 1 and 0 <= min_count_diag <= min_count"
            )


@dataclass(frozen=True)
class FmllrResult:
    """``transform``: ``(dim, dim + 1)`` = ``[A b]``; objectives are ``Q / beta`` per frame;
    ``update``: ``"full"``, ``"diag"`` or ``"none"`` (too few frames: the start, unchanged)."""

    transform: np.ndarray
    count: float
    objective_before: float
    objective_after: float
    update: str

    @property
    def updated(self) -> bool:
        return self.update != "none"


@dataclass
class FmllrStats:
    """The sufficient statistics of one speaker (see the module docstring), float64."""

    beta: float
    k: np.ndarray  # (dim, dim + 1)
    g: np.ndarray  # (dim, dim + 1, dim + 1)

    @classmethod
    def zeros(cls, dim: int) -> FmllrStats:
        return cls(0.0, np.zeros((dim, dim + 1)), np.zeros((dim, dim + 1, dim + 1)))

    @property
    def dim(self) -> int:
        return self.k.shape[0]

    def accumulate(
        self,
        gmm: DiagGmmSet,
        feats: np.ndarray,
        pdf_ids: np.ndarray,
        *,
        frame_weights: np.ndarray | None = None,
        posterior_feats: np.ndarray | None = None,
    ) -> None:
        """Add one utterance: ``feats (num_frames, dim)`` are the frames the transform will map
        (speaker-independent); the Gaussian posteriors within each frame's aligned pdf
        ``pdf_ids (num_frames,)`` are computed on ``posterior_feats`` (default ``feats``; pass
        the currently adapted frames to follow Kaldi). ``frame_weights`` (e.g. 0 for silence)
        scale each frame's occupancy."""
        feats = np.asarray(feats, dtype=np.float64)
        if feats.ndim != 2 or feats.shape[1] != self.dim or gmm.dim != self.dim:
            raise EstimationError(
                f"fMLLR: features {feats.shape}, statistics of dim {self.dim}, GMM dim {gmm.dim}"
            )
        pdf_ids = np.asarray(pdf_ids, dtype=np.int64)
        if pdf_ids.shape != (feats.shape[0],):
            raise EstimationError(f"fMLLR: {pdf_ids.shape[0]} pdf ids for {feats.shape[0]} frames")
        weights = np.ones(len(feats)) if frame_weights is None else np.asarray(frame_weights, float)
        keep = np.flatnonzero(weights > 0)
        if keep.size == 0:
            return
        feats, pdf_ids, weights = feats[keep], pdf_ids[keep], weights[keep]
        post_src = feats if posterior_feats is None else np.asarray(posterior_feats)[keep]
        num_frames = len(feats)
        # per frame, over the Gaussians m of its pdf: sum gamma/var and sum gamma mu/var,
        # one matrix product per pdf (DiagGmmSet.pdf_groups)
        inv_vars = gmm.inv_vars.double().cpu()
        mean_inv_vars = gmm.means.double().cpu() * inv_vars
        scaled_inv_var = torch.zeros(num_frames, self.dim, dtype=torch.float64)
        scaled_mean = torch.zeros(num_frames, self.dim, dtype=torch.float64)
        frame_w = torch.from_numpy(weights)
        groups = gmm.pdf_groups(
            torch.from_numpy(np.ascontiguousarray(post_src)).to(gmm.device),
            torch.arange(num_frames, device=gmm.device),
            gmm._check_pdf_ids(torch.from_numpy(pdf_ids)),
        )
        beta = 0.0
        for rows, g0, _, post, _ in groups:
            rows = rows.cpu()
            occ = post.cpu() * frame_w[rows][:, None]
            g1 = g0 + occ.shape[1]
            scaled_inv_var[rows] = occ @ inv_vars[g0:g1]
            scaled_mean[rows] = occ @ mean_inv_vars[g0:g1]
            beta += float(occ.sum())
        scaled_inv_var, scaled_mean = scaled_inv_var.numpy(), scaled_mean.numpy()
        xi = np.concatenate([feats, np.ones((num_frames, 1))], axis=1)
        self.beta += beta
        self.k += scaled_mean.T @ xi
        ext = self.dim + 1
        for start in range(0, num_frames, _CHUNK_FRAMES):
            part = xi[start : start + _CHUNK_FRAMES]
            outer = (part[:, :, None] * part[:, None, :]).reshape(len(part), ext * ext)
            self.g += (scaled_inv_var[start : start + _CHUNK_FRAMES].T @ outer).reshape(
                self.dim, ext, ext
            )

    def merge(self, other: FmllrStats) -> FmllrStats:
        self.beta += other.beta
        self.k += other.k
        self.g += other.g
        return self

    def objective(self, transform: np.ndarray) -> float:
        """``Q(W) / beta`` (see the module docstring); ``-inf`` for a singular ``A``."""
        transform = np.asarray(transform, dtype=np.float64)
        sign, logdet = np.linalg.slogdet(transform[:, : self.dim])
        if sign == 0:
            return -np.inf
        quad = np.einsum("ij,ijk,ik->", transform, self.g, transform)
        total = self.beta * logdet + float(np.sum(transform * self.k)) - 0.5 * quad
        return total / max(self.beta, 1e-300)


def identity_transform(dim: int) -> np.ndarray:
    """``[I 0]``: the transform that changes nothing."""
    return np.concatenate([np.eye(dim), np.zeros((dim, 1))], axis=1)


def estimate_fmllr(
    stats: FmllrStats, *, init: np.ndarray | None = None, config: FmllrConfig | None = None
) -> FmllrResult:
    """Row-by-row maximization of ``Q`` from ``init`` (default identity); see the module
    docstring. The amount of data picks the update (:class:`FmllrConfig`): the full matrix,
    a diagonal one (from the diagonal of ``init``), or none."""
    config = config or FmllrConfig()
    dim = stats.dim
    transform = identity_transform(dim) if init is None else np.array(init, dtype=np.float64)
    if transform.shape != (dim, dim + 1):
        raise EstimationError(f"fMLLR: initial transform {transform.shape}, need {(dim, dim + 1)}")
    before = stats.objective(transform)
    if stats.beta < config.min_count_diag:
        return FmllrResult(transform, stats.beta, before, before, update="none")
    update = "full" if stats.beta >= config.min_count else "diag"
    if update == "diag":  # a diagonal A: each row keeps only (a_ii, b_i)
        transform = np.concatenate([np.diag(np.diag(transform[:, :dim])), transform[:, dim:]], 1)
        before = stats.objective(transform)
    free = [np.arange(dim + 1) if update == "full" else np.array([i, dim]) for i in range(dim)]
    try:  # each row's statistics restricted to its free entries, inverted once
        g_inv = [np.linalg.inv(stats.g[i][np.ix_(free[i], free[i])]) for i in range(dim)]
    except np.linalg.LinAlgError:
        raise EstimationError("fMLLR: singular statistics (too few distinct frames)") from None
    for _ in range(config.num_iters):
        for i in range(dim):
            if update == "full":
                cofactor = np.append(np.linalg.inv(transform[:, :dim]).T[i], 0.0)
            else:  # the cofactor of a_ii in a diagonal A is prod_{j != i} a_jj: any scale does
                cofactor = np.array([1.0, 0.0])
            gc, gk = g_inv[i] @ cofactor, g_inv[i] @ stats.k[i][free[i]]
            a = float(cofactor @ gc)
            b = float(cofactor @ gk)
            disc = np.sqrt(b * b + 4.0 * a * stats.beta)
            roots = ((-b + disc) / (2 * a), (-b - disc) / (2 * a))
            alpha = max(roots, key=lambda r: stats.beta * np.log(abs(r * a + b)) - 0.5 * r * r * a)
            transform[i, free[i]] = alpha * gc + gk
    after = stats.objective(transform)
    if not np.isfinite(after) or after < before - 1e-6:
        raise EstimationError(
            f"fMLLR: the objective went from {before:.4f} to {after:.4f} per frame"
        )
    return FmllrResult(transform, stats.beta, before, after, update=update)


def apply_fmllr(feats: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """``feats (num_frames, dim)`` -> ``feats A^T + b`` float32 (for a ``(dim, dim + 1)``
    transform: :func:`asr.features.transforms.apply_transform`)."""
    return apply_transform(np.asarray(feats), transform)
