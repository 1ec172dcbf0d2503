"""Sufficient statistics, maximum-likelihood update, mixing up and low-count removal.

:class:`GmmAccumulator` gathers, per Gaussian and in float64, the occupancy
``sum_t g_t``, first-order ``sum_t g_t x_t`` and diagonal second-order
``sum_t g_t x_t^2`` statistics, from hard alignments (Viterbi training,
:meth:`~GmmAccumulator.accumulate_aligned`) or soft pdf occupancies
(Baum-Welch, :meth:`~GmmAccumulator.accumulate_posteriors`), with
``index_add_`` over (frame, Gaussian) pairs. Accumulators of data-parallel
jobs add with :meth:`~GmmAccumulator.merge` and pickle as numpy arrays.

:func:`ml_update` is Kaldi's ``MleDiagGmmUpdate`` for all pdfs at once;
:func:`mix_up` is ``AmDiagGmm::SplitByCount`` (targets by occupancy^power,
repeatedly splitting the heaviest Gaussian of a pdf).

>>> import torch
>>> from asr.gmm.diag_gmm import DiagGmmSet
>>> gen = torch.Generator().manual_seed(0)
>>> feats = torch.randn(400, 2, generator=gen, dtype=torch.float64)
>>> gmm = DiagGmmSet.init_single(num_pdfs=2, feats_mean=torch.zeros(2), feats_var=torch.ones(2))
>>> acc = GmmAccumulator.for_model(gmm)
>>> _ = acc.accumulate_aligned(gmm, feats, torch.arange(400) % 2)
>>> gmm2 = mix_up(gmm, acc, target_num_gauss=6)
>>> gmm2.num_gauss, gmm2.num_gauss_per_pdf.tolist()
(6, [3, 3])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import torch

from asr.errors import ModelError
from asr.gmm.diag_gmm import DiagGmmSet, GaussianPosteriors

_PAIR_CHUNK = 1 << 15  # (frame, Gaussian) pairs per accumulation step
_TINY = 1e-300
_USE_NUMBA = True  # compiled accumulation on CPU (tests compare both paths)


@numba.njit(cache=True)
def _accumulate_kernel(feats, frames, gauss, weights, occupancy, x_sum, x2_sum):  # pragma: no cover
    for n in range(gauss.shape[0]):
        w = weights[n]
        if w == 0.0:
            continue
        g = gauss[n]
        f = frames[n]
        occupancy[g] += w
        for d in range(feats.shape[1]):
            v = feats[f, d]
            x_sum[g, d] += w * v
            x2_sum[g, d] += w * v * v


@dataclass(frozen=True)
class GmmUpdateConfig:
    """Options of :func:`ml_update` (Kaldi's ``MleDiagGmmOptions``).

    ``min_variance`` is relative: the floor of dimension ``d`` is
    ``min_variance * global_var[d]``, the variance of all accumulated data.
    Gaussians with occupancy ``<= min_gaussian_occupancy`` or weight
    ``<= min_gaussian_weight`` are removed (``remove_low_count_gaussians``; a pdf
    always keeps at least one) or keep their old mean and variance.
    """

    min_variance: float = 1e-3
    min_gaussian_weight: float = 1e-5
    min_gaussian_occupancy: float = 10.0
    remove_low_count_gaussians: bool = True


@dataclass(frozen=True)
class UpdateSummary:
    """What :func:`ml_update` did. ``log_like_per_frame`` is the data log-likelihood under
    the model that produced the statistics; ``aux_improvement_per_frame`` is the gain of
    the EM auxiliary function over the Gaussians that were kept."""

    num_frames: float
    log_like_per_frame: float
    aux_improvement_per_frame: float
    num_gauss_before: int
    num_gauss_after: int
    num_low_count: int
    num_removed: int
    num_floored: int


class GmmAccumulator:
    """Per-Gaussian statistics for a model with ``pdf_offsets: (num_pdfs + 1,)`` and ``dim``.

    ``occupancy: (num_gauss,)``, ``x_sum, x2_sum: (num_gauss, dim)`` (float64), plus
    ``tot_log_like`` and ``tot_weight`` (sum of entry weights, i.e. frames) for reporting.
    """

    def __init__(
        self, *, pdf_offsets: torch.Tensor, dim: int, device: torch.device | str = "cpu"
    ) -> None:
        self.pdf_offsets = torch.as_tensor(pdf_offsets, dtype=torch.int64).cpu().clone()
        num_gauss = int(self.pdf_offsets[-1])
        self.device = torch.device(device)
        self.occupancy = torch.zeros(num_gauss, dtype=torch.float64, device=self.device)
        self.x_sum = torch.zeros(num_gauss, dim, dtype=torch.float64, device=self.device)
        self.x2_sum = torch.zeros(num_gauss, dim, dtype=torch.float64, device=self.device)
        self.tot_log_like = 0.0
        self.tot_weight = 0.0

    @classmethod
    def for_model(cls, gmm: DiagGmmSet) -> GmmAccumulator:
        """An empty accumulator shaped like ``gmm`` (on its device)."""
        return cls(pdf_offsets=gmm.pdf_offsets, dim=gmm.dim, device=gmm.device)

    @property
    def num_gauss(self) -> int:
        return self.occupancy.numel()

    @property
    def dim(self) -> int:
        return self.x_sum.shape[1]

    @property
    def num_pdfs(self) -> int:
        return self.pdf_offsets.numel() - 1

    def pdf_occupancies(self) -> torch.Tensor:
        """``(num_pdfs,) float64``: summed occupancy of each pdf's Gaussians."""
        counts = self.pdf_offsets[1:] - self.pdf_offsets[:-1]
        gauss_to_pdf = torch.repeat_interleave(torch.arange(self.num_pdfs), counts)
        return torch.zeros(self.num_pdfs, dtype=torch.float64).index_add_(
            0, gauss_to_pdf, self.occupancy.cpu()
        )

    # ------------------------------------------------------------------ accumulation
    def add_gaussian_posteriors(
        self,
        feats: torch.Tensor,
        post: GaussianPosteriors,
        *,
        entry_weights: torch.Tensor | None = None,
    ) -> float:
        """Add statistics from posteriors computed by ``DiagGmmSet.gaussian_posteriors``;
        ``entry_weights: (num_entries,)`` scale each (frame, pdf) entry (default 1).
        Returns the weighted sum of the entries' log-likelihoods."""
        feats = torch.as_tensor(feats).to(self.device)
        if feats.ndim != 2 or feats.shape[1] != self.dim:
            raise ModelError(f"features {tuple(feats.shape)} do not match dim {self.dim}")
        gauss = post.gauss_index.to(self.device)
        frames = post.frame_index.to(self.device)
        weights = post.posteriors.to(self.device, torch.float64)
        entry_ll = post.entry_log_likes.to(self.device)
        if entry_weights is None:
            entry_w = torch.ones_like(entry_ll)
        else:
            entry_w = torch.as_tensor(entry_weights).to(self.device, torch.float64).flatten()
            if entry_w.shape != entry_ll.shape:
                raise ModelError(f"{entry_w.numel()} entry weights for {entry_ll.numel()} entries")
            weights = weights * entry_w[post.entry_index.to(self.device)]
        if gauss.numel() and not (int(gauss.min()) >= 0 and int(gauss.max()) < self.num_gauss):
            raise ModelError(f"Gaussian indices out of range for {self.num_gauss} Gaussians")
        if frames.numel() and not (int(frames.min()) >= 0 and int(frames.max()) < feats.shape[0]):
            raise ModelError(f"frame indices out of range for {feats.shape[0]} frames")
        if _USE_NUMBA and self.device.type == "cpu":
            _accumulate_kernel(
                feats.to(torch.float64).contiguous().numpy(),
                frames.contiguous().numpy(),
                gauss.contiguous().numpy(),
                weights.contiguous().numpy(),
                self.occupancy.numpy(),
                self.x_sum.numpy(),
                self.x2_sum.numpy(),
            )
        else:
            for start in range(0, gauss.numel(), _PAIR_CHUNK):
                g = gauss[start : start + _PAIR_CHUNK]
                w = weights[start : start + _PAIR_CHUNK]
                x = feats[frames[start : start + _PAIR_CHUNK]].to(torch.float64)
                wx = x * w[:, None]
                self.occupancy.index_add_(0, g, w)
                self.x_sum.index_add_(0, g, wx)
                self.x2_sum.index_add_(0, g, wx * x)
        log_like = float((entry_w * entry_ll).sum())
        self.tot_log_like += log_like
        self.tot_weight += float(entry_w.sum())
        return log_like

    def accumulate_aligned(
        self,
        gmm: DiagGmmSet,
        feats: torch.Tensor,
        pdf_ids: torch.Tensor,
        *,
        weights: torch.Tensor | None = None,
    ) -> float:
        """Viterbi statistics: ``feats: (num_frames, dim)``, ``pdf_ids: (num_frames,)``,
        optional per-frame ``weights`` (e.g. 0 for silence). Returns the summed log-likelihood."""
        self._check_model(gmm)
        if _USE_NUMBA and self.device.type == "cpu" and gmm.device.type == "cpu":
            return self._accumulate_grouped(gmm, feats, pdf_ids, weights)
        post = gmm.gaussian_posteriors(feats, pdf_ids)
        return self.add_gaussian_posteriors(feats, post, entry_weights=weights)

    def _accumulate_grouped(
        self,
        gmm: DiagGmmSet,
        feats: torch.Tensor,
        pdf_ids: torch.Tensor,
        weights: torch.Tensor | None,
    ) -> float:
        """:meth:`accumulate_aligned` by pdf: each pdf's posteriors and statistics are matrix
        products over its frames (:meth:`DiagGmmSet.pdf_groups`), not a loop over pairs."""
        feats = gmm._check_feats(torch.as_tensor(feats))
        pdf_ids = gmm._check_pdf_ids(pdf_ids)
        if pdf_ids.numel() != feats.shape[0]:
            raise ModelError(f"{pdf_ids.numel()} pdf ids for {feats.shape[0]} frames of features")
        frame_w = None
        if weights is not None:
            frame_w = torch.as_tensor(weights).to(torch.float64).flatten()
            if frame_w.numel() != pdf_ids.numel():
                raise ModelError(f"{frame_w.numel()} entry weights for {pdf_ids.numel()} entries")
        frames = torch.arange(feats.shape[0])
        log_like = 0.0
        for rows, g0, x, post, entry_ll in gmm.pdf_groups(feats, frames, pdf_ids):
            if frame_w is not None:
                w = frame_w[rows]
                post = post * w[:, None]
                log_like += float((w * entry_ll).sum())
            else:
                log_like += float(entry_ll.sum())
            g1 = g0 + post.shape[1]
            self.occupancy[g0:g1] += post.sum(0)
            sums = post.T @ x  # (num_gauss_p, 2 dim): [x, x^2] sums
            self.x_sum[g0:g1] += sums[:, : self.dim]
            self.x2_sum[g0:g1] += sums[:, self.dim :]
        self.tot_log_like += log_like
        self.tot_weight += float(frame_w.sum()) if frame_w is not None else float(len(frames))
        return log_like

    def accumulate_posteriors(
        self,
        gmm: DiagGmmSet,
        feats: torch.Tensor,
        posts: torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    ) -> float:
        """Baum-Welch statistics from pdf occupancies: a dense ``(num_frames, num_pdfs)``
        tensor (zeros skipped), a sparse COO tensor of that shape, or triplets
        ``(frame_index, pdf_index, weights)``. Returns ``sum gamma * log p(x | pdf)``."""
        self._check_model(gmm)
        frame_index, pdf_index, occ = sparse_posteriors(posts, feats=feats, num_pdfs=gmm.num_pdfs)
        post = gmm.gaussian_posteriors(feats, pdf_index, frame_index=frame_index)
        return self.add_gaussian_posteriors(feats, post, entry_weights=occ)

    def merge(self, other: GmmAccumulator) -> GmmAccumulator:
        """Add ``other``'s statistics into this accumulator (in place); returns ``self``."""
        if not torch.equal(self.pdf_offsets, other.pdf_offsets) or self.dim != other.dim:
            raise ModelError("cannot merge accumulators of different models")
        self.occupancy += other.occupancy.to(self.device)
        self.x_sum += other.x_sum.to(self.device)
        self.x2_sum += other.x2_sum.to(self.device)
        self.tot_log_like += other.tot_log_like
        self.tot_weight += other.tot_weight
        return self

    def _check_model(self, gmm: DiagGmmSet) -> None:
        if gmm.dim != self.dim or not torch.equal(gmm.pdf_offsets.cpu(), self.pdf_offsets):
            raise ModelError(
                f"accumulator ({self.num_pdfs} pdfs, {self.num_gauss} Gaussians, dim {self.dim})"
                f" does not match {gmm}"
            )

    def __getstate__(self) -> dict:
        return {
            "pdf_offsets": self.pdf_offsets.numpy(),
            "occupancy": self.occupancy.cpu().numpy(),
            "x_sum": self.x_sum.cpu().numpy(),
            "x2_sum": self.x2_sum.cpu().numpy(),
            "tot_log_like": self.tot_log_like,
            "tot_weight": self.tot_weight,
        }

    def __setstate__(self, state: dict) -> None:
        self.device = torch.device("cpu")
        for key in ("pdf_offsets", "occupancy", "x_sum", "x2_sum"):
            setattr(self, key, torch.from_numpy(np.asarray(state[key])))
        self.tot_log_like = float(state["tot_log_like"])
        self.tot_weight = float(state["tot_weight"])


def sparse_posteriors(
    posts: torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    feats: torch.Tensor,
    num_pdfs: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalize pdf occupancies to ``(frame_index, pdf_index, weights)`` triplets."""
    if isinstance(posts, tuple | list):
        if len(posts) != 3:
            raise ModelError("posterior triplets must be (frame_index, pdf_index, weights)")
        frame_index, pdf_index, occ = (torch.as_tensor(p).flatten() for p in posts)
        if not frame_index.numel() == pdf_index.numel() == occ.numel():
            raise ModelError("frame_index, pdf_index and weights differ in length")
        return frame_index.long(), pdf_index.long(), occ.double()
    posts = torch.as_tensor(posts)
    if posts.ndim != 2 or posts.shape != (feats.shape[0], num_pdfs):
        raise ModelError(
            f"posteriors have shape {tuple(posts.shape)}, expected ({feats.shape[0]}, {num_pdfs})"
        )
    if posts.is_sparse:
        posts = posts.coalesce()
        frame_index, pdf_index = posts.indices()
        return frame_index, pdf_index, posts.values().double()
    frame_index, pdf_index = torch.nonzero(posts, as_tuple=True)
    return frame_index, pdf_index, posts[frame_index, pdf_index].double()


# ---------------------------------------------------------------------- ML update
def _aux(
    acc: GmmAccumulator, log_weights: torch.Tensor, means: torch.Tensor, inv_vars: torch.Tensor
) -> torch.Tensor:
    """EM auxiliary function per Gaussian: ``sum_t g_t log(w N(x_t; mu, var))``."""
    occ = acc.occupancy
    log_norm = -0.5 * (means.shape[1] * math.log(2 * math.pi) - torch.log(inv_vars).sum(1))
    quad = (inv_vars * (acc.x2_sum - 2.0 * means * acc.x_sum + occ[:, None] * means**2)).sum(1)
    return occ * (log_weights + log_norm) - 0.5 * quad


def _first_in_segment(mask: torch.Tensor, segment: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Index of the first True of each segment (``len(mask)`` where there is none)."""
    n = mask.numel()
    idx = torch.where(mask, torch.arange(n, device=mask.device), n)
    first = torch.full((num_segments,), n, dtype=torch.int64, device=mask.device)
    return first.scatter_reduce_(0, segment, idx, reduce="amin")


def _segment_argmax(values: torch.Tensor, segment: torch.Tensor, num_segments: int) -> torch.Tensor:
    peak = torch.full((num_segments,), -math.inf, dtype=values.dtype, device=values.device)
    peak.scatter_reduce_(0, segment, values, reduce="amax")
    return _first_in_segment(values == peak[segment], segment, num_segments)


def ml_update(
    gmm: DiagGmmSet,
    acc: GmmAccumulator,
    config: GmmUpdateConfig | None = None,
    *,
    variance_floor: torch.Tensor | None = None,
) -> tuple[DiagGmmSet, UpdateSummary]:
    """Maximum-likelihood re-estimation of all pdfs' weights, means and variances.

    ``variance_floor: (dim,)`` overrides the relative floor of ``config`` with absolute
    values. Low-count Gaussians are removed or kept as in :class:`GmmUpdateConfig`; kept
    low-count Gaussians keep their old parameters and get weight
    ``max(occupancy share, min_gaussian_weight)``; weights are renormalized per pdf.
    """
    config = config or GmmUpdateConfig()
    acc._check_model(gmm)
    dev = gmm.device
    occ = acc.occupancy.to(dev)
    x_sum, x2_sum = acc.x_sum.to(dev), acc.x2_sum.to(dev)
    g2p, num_pdfs = gmm.gauss_to_pdf, gmm.num_pdfs
    pdf_occ = torch.zeros(num_pdfs, dtype=torch.float64, device=dev).index_add_(0, g2p, occ)
    share = torch.where(
        pdf_occ[g2p] > 0,
        occ / pdf_occ[g2p].clamp_min(_TINY),
        1.0 / gmm.num_gauss_per_pdf[g2p].to(torch.float64),
    )
    ok = (occ > config.min_gaussian_occupancy) & (share > config.min_gaussian_weight)

    safe_occ = occ.clamp_min(_TINY)[:, None]
    mean = x_sum / safe_occ
    var = x2_sum / safe_occ - mean**2
    total = float(occ.sum())
    if variance_floor is not None:
        floor = torch.as_tensor(variance_floor, dtype=torch.float64, device=dev).flatten()
        if floor.shape != (gmm.dim,):
            raise ModelError(f"variance_floor must have shape ({gmm.dim},)")
    elif total > 0:
        global_mean = x_sum.sum(0) / total
        global_var = (x2_sum.sum(0) / total - global_mean**2).clamp_min(1e-10)
        floor = config.min_variance * global_var
    else:
        floor = torch.full((gmm.dim,), config.min_variance, dtype=torch.float64, device=dev)
    floor = floor.clamp_min(1e-10)
    floored = ok[:, None] & (var < floor)
    var = torch.maximum(var, floor)
    new_means = torch.where(ok[:, None], mean, gmm.means)
    new_inv_vars = torch.where(ok[:, None], 1.0 / var, gmm.inv_vars)
    new_weights = torch.where(ok, share, share.clamp_min(config.min_gaussian_weight))

    if config.remove_low_count_gaussians:
        keep = ok.clone()
        kept_per_pdf = torch.zeros(num_pdfs, dtype=torch.int64, device=dev)
        kept_per_pdf.index_add_(0, g2p, keep.long())
        # A pdf left without Gaussians keeps its best-occupied one (old parameters).
        best = _segment_argmax(occ, g2p, num_pdfs)
        rescue = best[kept_per_pdf == 0]
        keep[rescue] = True
    else:
        keep = torch.ones_like(ok)

    kept = torch.nonzero(keep).flatten()
    kept_pdf = g2p[kept]
    weights = new_weights[kept]
    pdf_sum = torch.zeros(num_pdfs, dtype=torch.float64, device=dev).index_add_(
        0, kept_pdf, weights
    )
    log_weights = torch.log(weights / pdf_sum[kept_pdf])
    counts = torch.bincount(kept_pdf, minlength=num_pdfs)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64, device=dev), torch.cumsum(counts, 0)])
    new_gmm = gmm.replace(
        means=new_means[kept],
        inv_vars=new_inv_vars[kept],
        log_weights=log_weights,
        pdf_offsets=offsets,
    )
    kept_acc = _Subset(acc, kept, dev)
    aux_old = _aux(kept_acc, gmm.log_weights[kept], gmm.means[kept], gmm.inv_vars[kept])
    aux_new = _aux(kept_acc, log_weights, new_means[kept], new_inv_vars[kept])
    frames = acc.tot_weight
    summary = UpdateSummary(
        num_frames=total,
        log_like_per_frame=acc.tot_log_like / frames if frames > 0 else math.nan,
        aux_improvement_per_frame=float((aux_new - aux_old).sum()) / total if total > 0 else 0.0,
        num_gauss_before=gmm.num_gauss,
        num_gauss_after=new_gmm.num_gauss,
        num_low_count=int((~ok).sum()),
        num_removed=gmm.num_gauss - new_gmm.num_gauss,
        num_floored=int(floored.sum()),
    )
    return new_gmm, summary


class _Subset:
    """Statistics of some Gaussians of an accumulator (duck-types what ``_aux`` reads)."""

    def __init__(self, acc: GmmAccumulator, index: torch.Tensor, device: torch.device) -> None:
        self.occupancy = acc.occupancy.to(device)[index]
        self.x_sum = acc.x_sum.to(device)[index]
        self.x2_sum = acc.x2_sum.to(device)[index]


# ---------------------------------------------------------------------- mixing up
def split_targets(
    pdf_occupancies: torch.Tensor,
    current_counts: torch.Tensor,
    target_num_gauss: int,
    *,
    power: float = 0.2,
    min_count: float = 20.0,
) -> torch.Tensor:
    """Gaussians per pdf after mixing up: ``(num_pdfs,) int64``.

    Kaldi's ``GetSplitTargets`` greedily gives the next Gaussian to the pdf with the
    largest ``occupancy**power / num_gauss``; here the greedy starts from the current
    counts (a pdf never loses Gaussians), which is the D'Hondt apportionment, found
    without a loop by bisection on the quotient threshold. A pdf is not split beyond
    ``n`` Gaussians unless ``n * min_count < occupancy``. The total is exactly
    ``max(target_num_gauss, current total)`` unless ``min_count`` (or zero occupancies)
    forbid it, then smaller.
    """
    occ = torch.as_tensor(pdf_occupancies, dtype=torch.float64).cpu().flatten()
    seats = torch.as_tensor(current_counts).cpu().flatten().to(torch.float64)
    if occ.shape != seats.shape:
        raise ModelError(f"{occ.numel()} occupancies for {seats.numel()} pdfs")
    wanted = int(target_num_gauss) - int(seats.sum())
    if wanted <= 0:
        return seats.long()
    quota = occ.clamp_min(0.0) ** power
    no_cap = torch.full_like(occ, math.inf)
    cap = torch.ceil(occ / min_count) - 1.0 if min_count > 0 else no_cap
    room = (torch.minimum(cap, seats + wanted) - seats).clamp_min(0.0)
    room[quota <= 0] = 0.0
    if float(room.sum()) <= wanted:
        return (seats + room).long()

    def extra(threshold: float) -> torch.Tensor:
        return torch.minimum((torch.floor(quota / threshold) - seats + 1.0).clamp_min(0.0), room)

    positive = quota[room > 0]
    lo = float(positive.min()) / (float(seats.max()) + wanted + 2.0)  # extra(lo) == room
    hi = 2.0 * float(quota.max())  # extra(hi) == 0
    for _ in range(200):  # geometric bisection: extra(lo).sum() >= wanted > extra(hi).sum()
        mid = math.sqrt(lo * hi)
        if not lo < mid < hi:
            break
        if float(extra(mid).sum()) >= wanted:
            lo = mid
        else:
            hi = mid
    base = extra(hi)
    missing = wanted - int(base.sum())
    next_quotient = torch.where(base < room, quota / (seats + base), -1.0)
    base[torch.topk(next_quotient, missing).indices] += 1.0
    return (seats + base).long()


def mix_up(
    gmm: DiagGmmSet,
    acc_or_occupancies: GmmAccumulator | torch.Tensor,
    target_num_gauss: int,
    *,
    power: float = 0.2,
    perturb_factor: float = 0.01,
    min_count: float = 20.0,
    seed: int = 0,
) -> DiagGmmSet:
    """Split Gaussians until the model has :func:`split_targets` Gaussians per pdf.

    ``acc_or_occupancies`` gives the pdf occupancies (an accumulator of any model with the
    same pdfs, or a ``(num_pdfs,)`` tensor). As Kaldi's ``DiagGmm::Split``, each split takes
    the heaviest Gaussian of the pdf, halves its weight and moves the two copies' means by
    ``±perturb_factor * r * stddev`` with ``r ~ N(0, I)`` (seeded by ``seed``). All pdfs
    that still need Gaussians split in the same round, so the loop runs over rounds only.
    """
    if isinstance(acc_or_occupancies, GmmAccumulator):
        occupancies = acc_or_occupancies.pdf_occupancies()
    else:
        occupancies = torch.as_tensor(acc_or_occupancies, dtype=torch.float64)
    if occupancies.numel() != gmm.num_pdfs:
        raise ModelError(f"{occupancies.numel()} pdf occupancies for {gmm.num_pdfs} pdfs")
    dev = gmm.device
    counts = gmm.num_gauss_per_pdf
    targets = split_targets(
        occupancies, counts, target_num_gauss, power=power, min_count=min_count
    ).to(dev)
    need = targets - counts
    if int(need.sum()) == 0:
        return gmm
    generator = torch.Generator().manual_seed(seed)
    means, inv_vars = gmm.means.clone(), gmm.inv_vars.clone()
    log_weights, g2p = gmm.log_weights.clone(), gmm.gauss_to_pdf.clone()
    for split_round in range(int(need.max())):
        pdfs = torch.nonzero(need > split_round).flatten()
        heaviest = _segment_argmax(log_weights, g2p, gmm.num_pdfs)[pdfs]
        noise = torch.randn(pdfs.numel(), gmm.dim, generator=generator, dtype=torch.float64)
        noise = perturb_factor * noise.to(dev) * inv_vars[heaviest].rsqrt()
        new_means = means[heaviest] + noise
        means[heaviest] -= noise
        log_weights[heaviest] -= math.log(2.0)
        means = torch.cat([means, new_means])
        inv_vars = torch.cat([inv_vars, inv_vars[heaviest]])
        log_weights = torch.cat([log_weights, log_weights[heaviest]])
        g2p = torch.cat([g2p, pdfs])
    order = torch.sort(g2p, stable=True).indices
    offsets = torch.cat(
        [
            torch.zeros(1, dtype=torch.int64, device=dev),
            torch.cumsum(torch.bincount(g2p, minlength=gmm.num_pdfs), 0),
        ]
    )
    return gmm.replace(
        means=means[order],
        inv_vars=inv_vars[order],
        log_weights=log_weights[order],
        pdf_offsets=offsets,
    )
