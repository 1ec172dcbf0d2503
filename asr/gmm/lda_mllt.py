"""LDA from class statistics, and MLLT (semi-tied covariance) estimation (frame splicing and
applying a transform: :mod:`asr.features.transforms`).

* :class:`LdaStats` + :func:`estimate_lda` are ``acc-lda`` + ``est-lda``: within-
  and between-class scatter, the generalized eigenproblem ``B v = l W v``, rows
  sorted by decreasing ``l`` and scaled so that the within-class covariance of
  the projected data is the identity.
* :class:`MlltAccumulator` + :func:`estimate_mllt` are ``gmm-acc-mllt`` +
  ``est-mllt``: the statistics ``G_i = sum_{t,j} g_tj / var_ji (x_t - mu_j)(x_t - mu_j)^T``
  and Gales' row-by-row update of the square transform ``A`` maximising
  ``beta log|det A| - 1/2 sum_i a_i G_i a_i^T``. The new feature transform is
  ``A @ current_transform``; the model's means become ``A mu`` (:func:`transform_means`).

>>> import torch
>>> feats = torch.randn(300, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
>>> stats = LdaStats(num_classes=3, dim=4)
>>> stats.accumulate(feats + torch.arange(300)[:, None] % 3, torch.arange(300) % 3)
>>> estimate_lda(stats, LdaConfig(dim=2)).shape
torch.Size([2, 4])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import scipy.linalg
import torch

from asr.errors import EstimationError, FeatureError, ModelError
from asr.gmm.accumulate import sparse_posteriors
from asr.gmm.diag_gmm import DiagGmmSet, GaussianPosteriors

_FRAME_CHUNK = 4096
_GAUSS_CHUNK = 1024


@numba.njit(cache=True)
def _mllt_pairs_kernel(
    feats, frames, gauss, weights, inv_vars, frame_weights, occupancy, x_sum
):  # pragma: no cover - compiled
    """``b_t += w / var_g``, per-Gaussian occupancy and first-order sums, over pairs."""
    for n in range(gauss.shape[0]):
        w = weights[n]
        if w == 0.0:
            continue
        g = gauss[n]
        f = frames[n]
        occupancy[g] += w
        for d in range(feats.shape[1]):
            frame_weights[f, d] += w * inv_vars[g, d]
            x_sum[g, d] += w * feats[f, d]


@numba.njit(cache=True)
def _packed_outer_kernel(x, out):  # pragma: no cover - compiled
    """``out[t]`` = upper triangle of ``x[t] x[t]^T``, row-major (``torch.triu_indices`` order)."""
    dim = x.shape[1]
    for t in range(x.shape[0]):
        k = 0
        for i in range(dim):
            xi = x[t, i]
            for j in range(i, dim):
                out[t, k] = xi * x[t, j]
                k += 1


# ---------------------------------------------------------------------- LDA
@dataclass(frozen=True)
class LdaConfig:
    """Options of :func:`estimate_lda` (Kaldi's ``est-lda``). ``within_class_factor < 1``
    shrinks the within-class variance of the output relative to the between-class one."""

    dim: int = 40
    within_class_factor: float = 1.0
    allow_large_dim: bool = False


class LdaStats:
    """Class counts ``(num_classes,)``, class sums ``(num_classes, dim)`` and the total
    scatter ``sum_t w_t x_t x_t^T: (dim, dim)``, in float64."""

    def __init__(self, *, num_classes: int, dim: int) -> None:
        self.counts = torch.zeros(num_classes, dtype=torch.float64)
        self.sums = torch.zeros(num_classes, dim, dtype=torch.float64)
        self.scatter = torch.zeros(dim, dim, dtype=torch.float64)

    @property
    def num_classes(self) -> int:
        return self.counts.numel()

    @property
    def dim(self) -> int:
        return self.sums.shape[1]

    def accumulate(
        self,
        feats: torch.Tensor,
        class_ids: torch.Tensor,
        *,
        weights: torch.Tensor | None = None,
    ) -> None:
        """Add ``feats: (num_frames, dim)`` labelled ``class_ids: (num_frames,)`` (pdf ids)
        with optional ``weights: (num_frames,)`` (e.g. 0 for silence)."""
        feats = torch.as_tensor(feats).to("cpu", torch.float64)
        class_ids = torch.as_tensor(class_ids).cpu().long().flatten()
        if feats.ndim != 2 or feats.shape[1] != self.dim:
            raise FeatureError(f"features {tuple(feats.shape)} do not have dim {self.dim}")
        if class_ids.numel() != feats.shape[0]:
            raise EstimationError(f"{class_ids.numel()} class ids for {feats.shape[0]} frames")
        if class_ids.numel() and (
            int(class_ids.min()) < 0 or int(class_ids.max()) >= self.num_classes
        ):
            raise EstimationError(f"class ids must be in [0, {self.num_classes})")
        if weights is None:
            w = torch.ones(feats.shape[0], dtype=torch.float64)
        else:
            w = torch.as_tensor(weights).to("cpu", torch.float64).flatten()
            if w.numel() != feats.shape[0]:
                raise EstimationError(f"{w.numel()} weights for {feats.shape[0]} frames")
        wx = feats * w[:, None]
        self.counts.index_add_(0, class_ids, w)
        self.sums.index_add_(0, class_ids, wx)
        self.scatter += wx.T @ feats

    def merge(self, other: LdaStats) -> LdaStats:
        """Add ``other`` into these statistics (in place); returns ``self``."""
        if other.counts.shape != self.counts.shape or other.dim != self.dim:
            raise EstimationError("cannot merge LDA statistics of different shapes")
        self.counts += other.counts
        self.sums += other.sums
        self.scatter += other.scatter
        return self

    def covariances(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(total_mean (dim,), within (dim, dim), between (dim, dim))`` covariances."""
        count = float(self.counts.sum())
        if count <= 0:
            raise EstimationError("LDA statistics are empty")
        mean = self.sums.sum(0) / count
        total = self.scatter / count - torch.outer(mean, mean)
        seen = self.counts > 0
        class_means = self.sums[seen] / self.counts[seen, None]
        between = (class_means.T * (self.counts[seen] / count)) @ class_means
        between = between - torch.outer(mean, mean)
        return mean, total - between, between


def estimate_lda(stats: LdaStats, config: LdaConfig | None = None) -> torch.Tensor:
    """LDA transform ``(config.dim, in_dim) float64`` from :class:`LdaStats`.

    Rows are the generalized eigenvectors of (between, within) covariances with the largest
    eigenvalues, normalized so that ``M W M^T = I`` (then scaled by ``within_class_factor``
    as in Kaldi); each row's largest-magnitude entry is made positive.
    """
    config = config or LdaConfig()
    _, within, between = stats.covariances()  # raises on empty statistics
    in_dim = stats.dim
    num_seen = int((stats.counts > 0).sum())
    if not 0 < config.dim <= in_dim:
        raise EstimationError(f"LDA dim {config.dim} must be in [1, {in_dim}]")
    if config.dim > num_seen - 1 and not config.allow_large_dim:
        raise EstimationError(
            f"LDA dim {config.dim} exceeds #classes-1 = {num_seen - 1} "
            "(set allow_large_dim to override)"
        )
    within = 0.5 * (within + within.T)
    between = 0.5 * (between + between.T)
    try:
        values, vectors = scipy.linalg.eigh(between.numpy(), within.numpy())
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError, ValueError) as err:
        raise EstimationError(
            f"within-class covariance is singular or not positive definite ({err}); "
            "more data or fewer spliced dimensions are needed"
        ) from None
    order = np.argsort(-values, kind="stable")[: config.dim]
    values = values[order]
    rows = torch.from_numpy(np.ascontiguousarray(vectors[:, order].T))
    peak = rows.abs().argmax(1)
    rows = rows * torch.sign(rows[torch.arange(rows.shape[0]), peak])[:, None]
    if config.within_class_factor != 1.0:
        scale = np.sqrt((config.within_class_factor + values) / (1.0 + values))
        rows = rows * torch.from_numpy(scale)[:, None]
    return rows


# ---------------------------------------------------------------------- MLLT
def _fingerprint(gmm: DiagGmmSet) -> tuple[int, int, float, float]:
    return (gmm.num_gauss, gmm.dim, float(gmm.inv_vars.sum()), float(gmm.means.sum()))


class MlltAccumulator:
    """Statistics for :func:`estimate_mllt`, tied to the model that computes the posteriors.

    Stores ``beta`` (total count), per-Gaussian ``occupancy: (num_gauss,)`` and
    ``x_sum: (num_gauss, dim)``, and ``scatter: (dim, dim, dim)`` with
    ``scatter[i] = sum_t b_ti x_t x_t^T`` where ``b_ti = sum_j g_tj / var_ji``; then
    ``G_i = scatter[i] - sum_j (1/var_ji)(s_j mu_j^T + mu_j s_j^T - g_j mu_j mu_j^T)``.
    This costs ``O(dim^3)`` per frame, not per (frame, Gaussian) pair.
    """

    def __init__(self, *, num_gauss: int, dim: int) -> None:
        self.beta = 0.0
        self.occupancy = torch.zeros(num_gauss, dtype=torch.float64)
        self.x_sum = torch.zeros(num_gauss, dim, dtype=torch.float64)
        self._rows, self._cols = torch.triu_indices(dim, dim)
        self.packed_scatter = torch.zeros(dim, self._rows.numel(), dtype=torch.float64)
        self.model_fingerprint: tuple[int, int, float, float] | None = None

    @classmethod
    def for_model(cls, gmm: DiagGmmSet) -> MlltAccumulator:
        acc = cls(num_gauss=gmm.num_gauss, dim=gmm.dim)
        acc.model_fingerprint = _fingerprint(gmm)
        return acc

    @property
    def dim(self) -> int:
        return self.x_sum.shape[1]

    def _check_model(self, gmm: DiagGmmSet) -> None:
        key = _fingerprint(gmm)
        if self.model_fingerprint is None:
            self.model_fingerprint = key
        elif key != self.model_fingerprint:
            raise ModelError("MLLT statistics belong to a different model than the one given")

    def add_gaussian_posteriors(
        self,
        gmm: DiagGmmSet,
        feats: torch.Tensor,
        post: GaussianPosteriors,
        *,
        entry_weights: torch.Tensor | None = None,
    ) -> None:
        """Add statistics from ``gmm.gaussian_posteriors(feats, ...)``."""
        self._check_model(gmm)
        feats = torch.as_tensor(feats).to("cpu", torch.float64)
        if feats.ndim != 2 or feats.shape[1] != self.dim:
            raise ModelError(f"features {tuple(feats.shape)} do not match dim {self.dim}")
        gauss, frames = post.gauss_index.cpu(), post.frame_index.cpu()
        w = post.posteriors.cpu().to(torch.float64)
        if entry_weights is not None:
            entry_w = torch.as_tensor(entry_weights).to("cpu", torch.float64).flatten()
            w = w * entry_w[post.entry_index.cpu()]
        if gauss.numel() and not (int(gauss.min()) >= 0 and int(gauss.max()) < gmm.num_gauss):
            raise ModelError(f"Gaussian indices out of range for {gmm.num_gauss} Gaussians")
        if frames.numel() and not (int(frames.min()) >= 0 and int(frames.max()) < feats.shape[0]):
            raise ModelError(f"frame indices out of range for {feats.shape[0]} frames")
        frame_weights = torch.zeros_like(feats)
        _mllt_pairs_kernel(
            feats.contiguous().numpy(),
            frames.contiguous().numpy(),
            gauss.contiguous().numpy(),
            w.contiguous().numpy(),
            gmm.inv_vars.cpu().contiguous().numpy(),
            frame_weights.numpy(),
            self.occupancy.numpy(),
            self.x_sum.numpy(),
        )
        self.beta += float(w.sum())
        outer = torch.empty(
            min(_FRAME_CHUNK, feats.shape[0]), self._rows.numel(), dtype=torch.float64
        )
        for start in range(0, feats.shape[0], _FRAME_CHUNK):
            x = feats[start : start + _FRAME_CHUNK]
            _packed_outer_kernel(x.numpy(), outer.numpy())
            block = outer[: x.shape[0]]
            self.packed_scatter.addmm_(frame_weights[start : start + _FRAME_CHUNK].T, block)

    def accumulate_aligned(
        self,
        gmm: DiagGmmSet,
        feats: torch.Tensor,
        pdf_ids: torch.Tensor,
        *,
        weights: torch.Tensor | None = None,
    ) -> None:
        """Statistics from a hard alignment ``pdf_ids: (num_frames,)``."""
        post = gmm.gaussian_posteriors(feats, pdf_ids)
        self.add_gaussian_posteriors(gmm, feats, post, entry_weights=weights)

    def accumulate_posteriors(
        self,
        gmm: DiagGmmSet,
        feats: torch.Tensor,
        posts: torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    ) -> None:
        """Statistics from pdf occupancies (dense, sparse COO, or triplets)."""
        frame_index, pdf_index, occ = sparse_posteriors(posts, feats=feats, num_pdfs=gmm.num_pdfs)
        post = gmm.gaussian_posteriors(feats, pdf_index, frame_index=frame_index)
        self.add_gaussian_posteriors(gmm, feats, post, entry_weights=occ)

    def merge(self, other: MlltAccumulator) -> MlltAccumulator:
        """Add ``other`` (same model) into this accumulator; returns ``self``."""
        if (
            other.occupancy.shape != self.occupancy.shape
            or other.dim != self.dim
            or (
                None not in (self.model_fingerprint, other.model_fingerprint)
                and self.model_fingerprint != other.model_fingerprint
            )
        ):
            raise ModelError("cannot merge MLLT statistics of different models")
        self.model_fingerprint = self.model_fingerprint or other.model_fingerprint
        self.beta += other.beta
        self.occupancy += other.occupancy
        self.x_sum += other.x_sum
        self.packed_scatter += other.packed_scatter
        return self

    def g_stats(self, gmm: DiagGmmSet) -> torch.Tensor:
        """``G: (dim, dim, dim) float64`` (``G[i]`` for row ``i`` of the transform)."""
        self._check_model(gmm)
        dim = self.dim
        full = torch.zeros(dim, dim, dim, dtype=torch.float64)
        full[:, self._rows, self._cols] = self.packed_scatter
        full[:, self._cols, self._rows] = self.packed_scatter
        cross = torch.zeros(dim, dim * dim, dtype=torch.float64)
        means, inv_vars = gmm.means.cpu(), gmm.inv_vars.cpu()
        for start in range(0, gmm.num_gauss, _GAUSS_CHUNK):
            part = slice(start, start + _GAUSS_CHUNK)
            mu, s, occ = means[part], self.x_sum[part], self.occupancy[part]
            # s mu^T + mu s^T - occ mu mu^T, as (block, dim*dim)
            terms = s[:, :, None] * mu[:, None, :]
            terms = (
                terms + terms.transpose(1, 2) - occ[:, None, None] * mu[:, :, None] * mu[:, None, :]
            )
            cross += inv_vars[part].T @ terms.reshape(-1, dim * dim)
        return full - cross.reshape(dim, dim, dim)


def mllt_objective(transform: torch.Tensor, g_stats: torch.Tensor, beta: float) -> float:
    """Gales' auxiliary ``beta log|det A| - 1/2 sum_i a_i G_i a_i^T`` for square ``A``."""
    transform = torch.as_tensor(transform, dtype=torch.float64)
    _, logabsdet = torch.linalg.slogdet(transform)
    quad = torch.einsum("ij,ijk,ik->", transform, g_stats, transform)
    return float(beta * logabsdet - 0.5 * quad)


@dataclass(frozen=True)
class MlltResult:
    """``transform = delta @ current_transform``; objectives are per frame (divided by beta),
    ``objectives[k]`` after iteration ``k``."""

    transform: torch.Tensor
    delta: torch.Tensor
    objective_before: float
    objective_after: float
    objectives: tuple[float, ...]


def _mllt_iterations(
    g_inv: np.ndarray, beta: float, num_iters: int
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Row-by-row updates from ``A = I``; ``A^{-1}`` is kept by Sherman-Morrison within an
    iteration (its column ``i`` is the cofactor row ``i`` up to the factor ``det A``) and
    recomputed exactly at the start of each. Returns ``A`` and ``A`` after each iteration."""
    dim = g_inv.shape[0]
    delta = np.eye(dim)
    after_iters = []
    for _ in range(num_iters):
        delta_inv = np.linalg.inv(delta)
        for i in range(dim):
            cofactor = delta_inv[:, i].copy()
            direction = g_inv[i] @ cofactor
            denom = float(direction @ cofactor)
            if not denom > 0:
                raise EstimationError("MLLT statistics are not positive definite")
            change = direction * math.sqrt(beta / denom) - delta[i]
            delta[i] += change
            delta_inv -= np.outer(cofactor, change @ delta_inv) / (1.0 + change @ cofactor)
        after_iters.append(torch.from_numpy(delta.copy()))
    return torch.from_numpy(delta), after_iters


def estimate_mllt(
    acc: MlltAccumulator,
    gmm: DiagGmmSet,
    *,
    current_transform: torch.Tensor | None = None,
    num_iters: int = 200,
) -> MlltResult:
    """Semi-tied covariance update (Kaldi ``est-mllt``), starting from ``A = I``.

    Each iteration updates every row ``a_i = c_i G_i^{-1} sqrt(beta / (c_i G_i^{-1} c_i^T))``,
    ``c_i`` the ``i``-th cofactor row of ``A``; each row update maximizes the objective in
    that row, so the objective never decreases. ``gmm`` is the model the statistics were
    computed with; apply ``delta`` to its means with :func:`transform_means`.
    """
    if acc.beta <= 0:
        raise EstimationError("MLLT statistics are empty")
    g_stats = acc.g_stats(gmm)
    dim = acc.dim
    try:
        g_inv = torch.linalg.inv(g_stats)
    except RuntimeError as err:
        raise EstimationError(f"MLLT statistics are singular ({err})") from None
    before = mllt_objective(torch.eye(dim, dtype=torch.float64), g_stats, acc.beta)
    delta, objectives = _mllt_iterations(g_inv.numpy(), acc.beta, num_iters)
    objectives = [mllt_objective(a, g_stats, acc.beta) / acc.beta for a in objectives]
    transform = delta.clone()
    if current_transform is not None:
        current = torch.as_tensor(current_transform, dtype=torch.float64).cpu()
        if current.ndim != 2 or current.shape[0] != dim:
            raise EstimationError(f"current transform {tuple(current.shape)} has not {dim} rows")
        transform = delta @ current
    return MlltResult(
        transform=transform,
        delta=delta,
        objective_before=before / acc.beta,
        objective_after=objectives[-1] if objectives else before / acc.beta,
        objectives=tuple(objectives),
    )


def transform_means(gmm: DiagGmmSet, transform: torch.Tensor) -> DiagGmmSet:
    """Kaldi's ``gmm-transform-means`` for a square ``transform: (dim, dim)``: ``mu <- A mu``
    (variances unchanged, as MLLT assumes)."""
    transform = torch.as_tensor(transform, dtype=torch.float64).to(gmm.device)
    if transform.shape != (gmm.dim, gmm.dim):
        raise ModelError(f"transform {tuple(transform.shape)} is not ({gmm.dim}, {gmm.dim})")
    return gmm.replace(means=gmm.means @ transform.T)
