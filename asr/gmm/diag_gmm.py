"""All pdfs' diagonal-covariance GMMs in flat tensors, with vectorized log-likelihoods.

:class:`DiagGmmSet` holds every Gaussian of every pdf in one table:
``means, inv_vars: (num_gauss, dim)``, ``log_weights: (num_gauss,)`` and a CSR
``pdf_offsets: (num_pdfs + 1,)`` (the Gaussians of pdf ``p`` are rows
``pdf_offsets[p]:pdf_offsets[p+1]``). Parameters are kept in float64.

Decoding scores (:meth:`DiagGmmSet.log_likelihoods`) use Kaldi's trick: per
Gaussian ``loglike = gconst + x·(mu*iv) - 0.5 x²·iv``, i.e. one matrix product
of ``[x, x²]: (num_frames, 2*dim)`` with a precomputed ``(2*dim, num_gauss)``
matrix for all frames and Gaussians at once, then a per-pdf logsumexp over
Gaussians grouped by their count (no padding, no loop over pdfs). Features are
shifted by the mean of all means first, which keeps float32 accurate.

Training (:meth:`DiagGmmSet.gaussian_posteriors`) scores only the Gaussians of
the pdf a frame is aligned to (or of each ``(frame, pdf)`` entry of soft
occupancies), in float64.

>>> import torch
>>> gmm = DiagGmmSet.init_single(num_pdfs=3, feats_mean=torch.zeros(2), feats_var=torch.ones(2))
>>> gmm.num_pdfs, gmm.num_gauss, gmm.dim
(3, 3, 2)
>>> gmm.log_likelihoods(torch.zeros(4, 2)).shape
torch.Size([4, 3])
>>> post = gmm.gaussian_posteriors(torch.zeros(4, 2), torch.tensor([0, 0, 2, 1]))
>>> post.gauss_index.tolist(), post.posteriors.tolist()
([0, 0, 2, 1], [1.0, 1.0, 1.0, 1.0])
"""

from __future__ import annotations

import math
import os
import pickle
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from asr.errors import ModelError
from asr.fileio import atomic_write

FORMAT_NAME = "asr-diag-gmm"
FORMAT_VERSION = 1
_LOG_2PI = math.log(2.0 * math.pi)
_MAX_CHUNK_ELEMENTS = 1 << 20  # (frames x Gaussians) scores per chunk: stays in cache
_MAX_CHUNK_PAIRS = 1 << 16  # (entry, Gaussian) pairs per chunk in gaussian_posteriors
_ARRAYS = ("means", "inv_vars", "log_weights", "pdf_offsets")
_MIN_EXP_ARG = -80.0  # exp(-80) ~ 1.8e-35 is still a normal float32
_USE_GROUPED = True  # per-pdf matrix products for training posteriors on CPU (tests compare
# both paths)


class GaussianPosteriors(NamedTuple):
    """Sparse Gaussian posteriors for ``(frame, pdf)`` entries (see
    :meth:`DiagGmmSet.gaussian_posteriors`). One row per (entry, Gaussian of its pdf) pair."""

    entry_index: torch.Tensor  # (num_pairs,) int64: which entry the pair belongs to
    frame_index: torch.Tensor  # (num_pairs,) int64
    gauss_index: torch.Tensor  # (num_pairs,) int64
    posteriors: torch.Tensor  # (num_pairs,) float64, sums to 1 over each entry's pairs
    entry_log_likes: torch.Tensor  # (num_entries,) float64: log p(frame | pdf)


class DiagGmmSet:
    """Diagonal GMMs of all pdfs (see the module docstring).

    Build with keyword arguments ``means, inv_vars: (num_gauss, dim)``,
    ``log_weights: (num_gauss,)`` (normalized within each pdf) and
    ``pdf_offsets: (num_pdfs + 1,) int64`` (every pdf has at least one Gaussian).
    ``compute_dtype`` is the precision of :meth:`log_likelihoods` (float32 by default).
    Instances are immutable: updates return new objects.
    """

    def __init__(
        self,
        *,
        means: torch.Tensor,
        inv_vars: torch.Tensor,
        log_weights: torch.Tensor,
        pdf_offsets: torch.Tensor,
        compute_dtype: torch.dtype = torch.float32,
    ) -> None:
        means = torch.as_tensor(means)
        device = means.device
        self.means = means.to(dtype=torch.float64)
        self.inv_vars = torch.as_tensor(inv_vars).to(device=device, dtype=torch.float64)
        self.log_weights = torch.as_tensor(log_weights).to(device=device, dtype=torch.float64)
        self.pdf_offsets = torch.as_tensor(pdf_offsets).to(device=device, dtype=torch.int64)
        self.compute_dtype = compute_dtype
        self._validate()
        counts = self.pdf_offsets[1:] - self.pdf_offsets[:-1]
        self.gauss_to_pdf = torch.repeat_interleave(
            torch.arange(self.num_pdfs, device=device), counts
        )
        self._gauss_counts = counts
        self._max_gauss = int(counts.max())
        self._log_norm = -0.5 * (self.dim * _LOG_2PI - torch.log(self.inv_vars).sum(1))
        self._gconst = self._log_norm - 0.5 * (self.means.square() * self.inv_vars).sum(1)
        self._group_params: tuple[torch.Tensor, ...] | None = None  # built by pdf_groups
        self._prepare_scoring()

    # ------------------------------------------------------------------ construction
    def _validate(self) -> None:
        if self.means.ndim != 2 or self.means.shape[0] == 0 or self.means.shape[1] == 0:
            raise ModelError(f"means must be (num_gauss, dim), got {tuple(self.means.shape)}")
        if self.inv_vars.shape != self.means.shape:
            raise ModelError(
                f"inv_vars shape {tuple(self.inv_vars.shape)} != means {tuple(self.means.shape)}"
            )
        if self.log_weights.shape != (self.means.shape[0],):
            raise ModelError(
                f"log_weights shape {tuple(self.log_weights.shape)} != ({self.means.shape[0]},)"
            )
        offsets = self.pdf_offsets
        if offsets.ndim != 1 or offsets.numel() < 2:
            raise ModelError("pdf_offsets must be (num_pdfs + 1,) with num_pdfs >= 1")
        if int(offsets[0]) != 0 or int(offsets[-1]) != self.means.shape[0]:
            raise ModelError(
                f"pdf_offsets must run from 0 to num_gauss={self.means.shape[0]}, "
                f"got {int(offsets[0])}..{int(offsets[-1])}"
            )
        if bool((offsets[1:] <= offsets[:-1]).any()):
            raise ModelError("every pdf needs at least one Gaussian (pdf_offsets must increase)")
        for name in ("means", "inv_vars", "log_weights"):
            if not bool(torch.isfinite(getattr(self, name)).all()):
                raise ModelError(f"{name} has non-finite values")
        if not bool((self.inv_vars > 0).all()):
            raise ModelError("inv_vars must be positive")
        counts = offsets[1:] - offsets[:-1]
        gauss_to_pdf = torch.repeat_interleave(torch.arange(counts.numel()), counts.cpu())
        pdf_sums = torch.zeros(counts.numel(), dtype=torch.float64).index_add_(
            0, gauss_to_pdf, self.log_weights.exp().cpu()
        )
        bad = torch.nonzero((pdf_sums - 1.0).abs() > 1e-4).flatten()
        if bad.numel():
            p = int(bad[0])
            raise ModelError(f"weights of pdf {p} sum to {float(pdf_sums[p]):.6f}, not 1")

    @classmethod
    def from_gaussians(
        cls,
        means: torch.Tensor | np.ndarray,
        variances: torch.Tensor | np.ndarray,
        *,
        compute_dtype: torch.dtype = torch.float32,
    ) -> DiagGmmSet:
        """One Gaussian per pdf: ``means, variances: (num_pdfs, dim)`` (e.g. the leaves of a
        tree, :func:`asr.hmm.build_tree.init_gmm_from_tree_stats`: Kaldi's ``gmm-init-model``)."""
        means = torch.as_tensor(means)
        return cls(
            means=means,
            inv_vars=torch.as_tensor(1.0 / np.asarray(variances)),
            log_weights=torch.zeros(means.shape[0], dtype=torch.float64),
            pdf_offsets=torch.arange(means.shape[0] + 1),
            compute_dtype=compute_dtype,
        )

    @classmethod
    def init_single(
        cls,
        *,
        num_pdfs: int,
        feats_mean: torch.Tensor,
        feats_var: torch.Tensor,
        compute_dtype: torch.dtype = torch.float32,
    ) -> DiagGmmSet:
        """One Gaussian per pdf with the global ``feats_mean, feats_var: (dim,)`` (flat start,
        like Kaldi's ``gmm-init-mono``)."""
        if num_pdfs < 1:
            raise ModelError(f"num_pdfs must be >= 1, got {num_pdfs}")
        mean = torch.as_tensor(feats_mean, dtype=torch.float64).flatten()
        var = torch.as_tensor(feats_var, dtype=torch.float64).flatten()
        if mean.shape != var.shape:
            raise ModelError(f"feats_mean {tuple(mean.shape)} and feats_var {tuple(var.shape)}")
        if not bool((var > 0).all()):
            raise ModelError("feats_var must be positive")
        return cls(
            means=mean.expand(num_pdfs, -1).clone(),
            inv_vars=(1.0 / var).expand(num_pdfs, -1).clone(),
            log_weights=torch.zeros(num_pdfs, dtype=torch.float64),
            pdf_offsets=torch.arange(num_pdfs + 1),
            compute_dtype=compute_dtype,
        )

    def replace(self, **arrays: torch.Tensor) -> DiagGmmSet:
        """A new set with some of ``means, inv_vars, log_weights, pdf_offsets`` replaced."""
        unknown = set(arrays) - set(_ARRAYS)
        if unknown:
            raise TypeError(f"unknown DiagGmmSet fields {sorted(unknown)}")
        fields = {name: arrays.get(name, getattr(self, name)) for name in _ARRAYS}
        return DiagGmmSet(**fields, compute_dtype=self.compute_dtype)

    def to(
        self, device: torch.device | str | None = None, *, compute_dtype: torch.dtype | None = None
    ) -> DiagGmmSet:
        """A copy on ``device`` (and/or scoring in ``compute_dtype``)."""
        device = self.means.device if device is None else torch.device(device)
        return DiagGmmSet(
            **{name: getattr(self, name).to(device) for name in _ARRAYS},
            compute_dtype=self.compute_dtype if compute_dtype is None else compute_dtype,
        )

    # ------------------------------------------------------------------ sizes
    @property
    def num_pdfs(self) -> int:
        return self.pdf_offsets.numel() - 1

    @property
    def num_gauss(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def num_gauss_per_pdf(self) -> torch.Tensor:
        """``(num_pdfs,) int64``."""
        return self._gauss_counts

    @property
    def variances(self) -> torch.Tensor:
        return 1.0 / self.inv_vars

    @property
    def weights(self) -> torch.Tensor:
        return self.log_weights.exp()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_group_params"] = None  # a cache: rebuilt where it is used
        return state

    def __repr__(self) -> str:
        return f"DiagGmmSet(num_pdfs={self.num_pdfs}, num_gauss={self.num_gauss}, dim={self.dim})"

    # ------------------------------------------------------------------ decoding scores
    def _prepare_scoring(self) -> None:
        """Precompute the (2*dim, num_gauss) projection. Columns are re-ordered so that pdfs
        with the same Gaussian count ``c`` form one block, laid out rank-major: the block's
        scores view as ``(num_frames, c, num_pdfs_in_block)`` and reduce over ``c``."""
        dtype, dev = self.compute_dtype, self.device
        counts = self._gauss_counts
        pdf_order = torch.sort(counts, stable=True).indices  # pdfs grouped by count
        sorted_counts = counts[pdf_order]
        values, nums = torch.unique_consecutive(sorted_counts, return_counts=True)
        block_of_pdf = torch.repeat_interleave(torch.arange(values.numel(), device=dev), nums)
        pos_in_block = (
            torch.arange(self.num_pdfs, device=dev) - (torch.cumsum(nums, 0) - nums)[block_of_pdf]
        )
        block_first_col = torch.cumsum(values * nums, 0) - values * nums
        pdf_pos = torch.repeat_interleave(torch.arange(self.num_pdfs, device=dev), sorted_counts)
        rank = torch.arange(self.num_gauss, device=dev) - torch.repeat_interleave(
            torch.cumsum(sorted_counts, 0) - sorted_counts, sorted_counts
        )
        block = block_of_pdf[pdf_pos]
        col = block_first_col[block] + rank * nums[block] + pos_in_block[pdf_pos]
        gauss_order = torch.empty_like(rank)
        gauss_order[col] = self.pdf_offsets[:-1][pdf_order][pdf_pos] + rank
        self._col_of_gauss = torch.empty_like(col)
        self._col_of_gauss[gauss_order] = torch.arange(self.num_gauss, device=dev)
        center = self.means.mean(0)
        means_c = self.means[gauss_order] - center
        inv_vars = self.inv_vars[gauss_order]
        gconst = self.log_weights[gauss_order] - 0.5 * (
            self.dim * _LOG_2PI - torch.log(inv_vars).sum(1) + (means_c.square() * inv_vars).sum(1)
        )
        self._center = center.to(dtype)
        self._projection = torch.cat([means_c * inv_vars, -0.5 * inv_vars], 1).T.contiguous()
        self._projection = self._projection.to(dtype)
        self._projection_rows = self._projection.T.contiguous()  # row gathers for pdf subsets
        self._score_gconst = gconst.to(dtype)
        self._blocks = list(zip(values.tolist(), nums.tolist(), strict=True))
        identity = bool((pdf_order == torch.arange(self.num_pdfs, device=dev)).all())
        self._pdf_unsort = None if identity else torch.argsort(pdf_order)

    def log_likelihoods(
        self, feats: torch.Tensor, pdf_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``feats: (num_frames, dim)`` -> ``log_likes: (num_frames, num_pdfs) float32``,
        ``log p(x_t | pdf)`` for every frame and pdf; with ``pdf_ids: (num_ids,)`` only for
        those pdfs, ``(num_frames, num_ids)`` (e.g. the pdfs of one training graph)."""
        feats = self._check_feats(feats)
        if pdf_ids is not None:
            return self._subset_log_likelihoods(feats, self._check_pdf_ids(pdf_ids))
        num_frames = feats.shape[0]
        chunk = max(1, _MAX_CHUNK_ELEMENTS // self.num_gauss)
        out = torch.empty(num_frames, self.num_pdfs, dtype=torch.float32, device=self.device)
        for start in range(0, num_frames, chunk):
            out[start : start + chunk] = self._log_likelihoods_chunk(feats[start : start + chunk])
        return out

    def _subset_log_likelihoods(self, feats: torch.Tensor, pdf_ids: torch.Tensor) -> torch.Tensor:
        """Like :meth:`_log_likelihoods_chunk` for the columns of ``pdf_ids`` only. The pdfs
        are grouped by the power of two at or above their Gaussian count; within a group they
        are padded to its widest pdf with ``-inf`` biases, laid out rank-major, so each
        logsumexp is a few in-place passes (no masked_fill / torch.logsumexp) and padding
        at most doubles the work (one 1,000-Gaussian silence pdf among 15-Gaussian ones
        padded them all to 1,000 before)."""
        num_ids = pdf_ids.numel()
        out = torch.empty(feats.shape[0], num_ids, dtype=torch.float32, device=self.device)
        if num_ids == 0:
            return out
        x = feats.to(self.compute_dtype) - self._center
        stats = torch.cat([x, x * x], 1)
        counts = self._gauss_counts[pdf_ids]
        bucket = torch.ceil(torch.log2(counts.to(torch.float64))).to(torch.int64)
        for value in torch.unique(bucket).tolist():
            where = torch.nonzero(bucket == value).flatten()
            out[:, where] = self._padded_log_likelihoods(stats, pdf_ids[where], counts[where])
        return out

    def _padded_log_likelihoods(
        self, stats: torch.Tensor, pdf_ids: torch.Tensor, counts: torch.Tensor
    ) -> torch.Tensor:
        """``stats: (num_frames, 2 * dim)`` centred ``[x, x^2]`` -> ``(num_frames, num_ids)``."""
        num_ids = pdf_ids.numel()
        width = int(counts.max())
        rank = torch.arange(width, device=self.device)[:, None]  # (width, 1)
        valid = (rank < counts[None, :]).flatten()  # (width * num_ids,), rank-major
        gauss = (self.pdf_offsets[pdf_ids][None, :] + rank).clamp(max=self.num_gauss - 1)
        cols = self._col_of_gauss[gauss.flatten()]
        bias = self._score_gconst[cols].masked_fill(~valid, -math.inf)
        scores = torch.addmm(bias, stats, self._projection_rows[cols].T)
        scores = scores.view(-1, width, num_ids)
        if width == 1:
            return scores[:, 0].float()
        peak = scores.amax(1)  # rank 0 is a real Gaussian of every pdf: finite
        # padding: exp(max(-inf, -80)) adds < 1e-33 to sums >= 1, nothing in float32
        scores.sub_(peak[:, None]).clamp_(min=_MIN_EXP_ARG).exp_()
        return scores.sum(1).log_().add_(peak).float()

    def _log_likelihoods_chunk(self, feats: torch.Tensor) -> torch.Tensor:
        x = feats.to(self.compute_dtype) - self._center
        scores = torch.addmm(self._score_gconst, torch.cat([x, x * x], 1), self._projection)
        parts = []
        col = 0
        for count, num in self._blocks:
            block = scores[:, col : col + count * num].view(-1, count, num)
            if count == 1:
                parts.append(block[:, 0])
            else:  # logsumexp over the count axis, in place on the temporary scores;
                # the clamp keeps exp() out of float32 denormals (slow), changing sums < 1e-34
                peak = block.amax(1)
                block.sub_(peak[:, None]).clamp_(min=_MIN_EXP_ARG).exp_()
                parts.append(block.sum(1).log_().add_(peak))
            col += count * num
        out = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
        if self._pdf_unsort is not None:
            out = out[:, self._pdf_unsort]
        return out.float()

    def gaussian_log_likelihoods(self, feats: torch.Tensor) -> torch.Tensor:
        """``(num_frames, num_gauss) float64``: weighted per-Gaussian ``log w + log N(x)``
        (the direct formula, for checks and small inputs)."""
        feats = self._check_feats(feats).to(torch.float64)
        diff_sq = (feats.square() @ self.inv_vars.T) - 2.0 * feats @ (self.means * self.inv_vars).T
        return self.log_weights + self._gconst - 0.5 * diff_sq

    # ------------------------------------------------------------------ training posteriors
    def gaussian_posteriors(
        self,
        feats: torch.Tensor,
        pdf_ids: torch.Tensor,
        *,
        frame_index: torch.Tensor | None = None,
    ) -> GaussianPosteriors:
        """Posteriors over the Gaussians of a pdf, for ``(frame, pdf)`` entries.

        Hard alignment: ``pdf_ids: (num_frames,)`` and no ``frame_index`` (entry ``t`` is frame
        ``t``). Soft occupancies: entries ``(frame_index[e], pdf_ids[e])``. Only the Gaussians
        of each entry's pdf are scored (float64); ``entry_log_likes`` is ``log p(x | pdf)``.
        """
        feats = self._check_feats(feats)
        pdf_ids = self._check_pdf_ids(pdf_ids)
        if frame_index is None:
            if pdf_ids.numel() != feats.shape[0]:
                raise ModelError(
                    f"{pdf_ids.numel()} pdf ids for {feats.shape[0]} frames of features"
                )
            frame_index = torch.arange(feats.shape[0], device=self.device)
        else:
            frame_index = torch.as_tensor(frame_index, device=self.device).to(torch.int64)
            frame_index = frame_index.flatten()
            if frame_index.shape != pdf_ids.shape:
                raise ModelError(f"frame_index {frame_index.shape} != pdf_ids {pdf_ids.shape}")
            if frame_index.numel() and (
                int(frame_index.min()) < 0 or int(frame_index.max()) >= feats.shape[0]
            ):
                raise ModelError(f"frame_index out of range for {feats.shape[0]} frames")
        if _USE_GROUPED and self.device.type == "cpu":
            return self._posteriors_grouped(feats, frame_index, pdf_ids)
        step = max(1, _MAX_CHUNK_PAIRS // self._max_gauss)
        parts = [
            self._entry_posteriors(feats, frame_index[s : s + step], pdf_ids[s : s + step], s)
            for s in range(0, pdf_ids.numel(), step)
        ]
        if not parts:
            empty_i = torch.zeros(0, dtype=torch.int64, device=self.device)
            empty_f = torch.zeros(0, dtype=torch.float64, device=self.device)
            return GaussianPosteriors(empty_i, empty_i, empty_i, empty_f, empty_f)
        return GaussianPosteriors(*(torch.cat(cols) for cols in zip(*parts, strict=True)))

    def pdf_groups(
        self, feats: torch.Tensor, frame_index: torch.Tensor, pdf_ids: torch.Tensor
    ) -> Iterator[tuple[torch.Tensor, int, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The entries ``(frame_index[e], pdf_ids[e])`` grouped by pdf: per pdf ``p``, yields
        ``(rows, first_gauss, x, post, entry_ll)``: the entries' positions ``(n,)``, ``p``'s
        first Gaussian, their frames ``(n, dim)`` float64, posteriors over ``p``'s Gaussians
        ``(n, num_gauss_p)`` and ``log p(x | p)`` ``(n,)``; ``x`` is ``[x, x^2]``
        ``(n, 2 dim)``, ready for the statistics (``post.T @ x``). One matrix product per pdf
        (BLAS) where a loop over (frame, Gaussian) pairs cost ~3x more on AN4's 1,000-Gaussian
        silence pdfs; ``log N`` expanded as ``c + x.(mu/var) - x^2.(1/var)/2`` in float64."""
        x_all = feats.to(torch.float64)
        x_all = torch.cat([x_all, x_all * x_all], 1)
        order = torch.sort(pdf_ids, stable=True).indices
        pdfs, sizes = torch.unique_consecutive(pdf_ids[order], return_counts=True)
        if self._group_params is None:
            projection = torch.cat([self.means * self.inv_vars, -0.5 * self.inv_vars], 1)
            self._group_params = (projection.T.contiguous(), self.log_weights + self._gconst)
        projection, const = self._group_params
        start = 0
        for pdf, size in zip(pdfs.tolist(), sizes.tolist(), strict=True):
            rows = order[start : start + size]
            start += size
            g0, g1 = int(self.pdf_offsets[pdf]), int(self.pdf_offsets[pdf + 1])
            x = x_all[frame_index[rows]]
            scores = torch.addmm(const[g0:g1], x, projection[:, g0:g1])
            peak = scores.max(1, keepdim=True).values
            post = torch.exp(scores - peak)
            total = post.sum(1, keepdim=True)
            post /= total
            yield rows, g0, x, post, (peak + torch.log(total)).squeeze(1)

    def _posteriors_grouped(
        self, feats: torch.Tensor, frame_index: torch.Tensor, pdf_ids: torch.Tensor
    ) -> GaussianPosteriors:
        counts = self._gauss_counts[pdf_ids]
        ends = torch.cumsum(counts, 0)
        starts = ends - counts
        entry_index = torch.repeat_interleave(torch.arange(pdf_ids.numel()), counts)
        rank = torch.arange(entry_index.numel()) - starts[entry_index]
        gauss = self.pdf_offsets[pdf_ids][entry_index] + rank
        post = torch.empty(entry_index.numel(), dtype=torch.float64)
        entry_ll = torch.empty(pdf_ids.numel(), dtype=torch.float64)
        for rows, _, _, group_post, group_ll in self.pdf_groups(feats, frame_index, pdf_ids):
            slots = starts[rows][:, None] + torch.arange(group_post.shape[1])
            post[slots.flatten()] = group_post.flatten()
            entry_ll[rows] = group_ll
        return GaussianPosteriors(entry_index, frame_index[entry_index], gauss, post, entry_ll)

    def _entry_posteriors(
        self, feats: torch.Tensor, frame_index: torch.Tensor, pdf_ids: torch.Tensor, first: int
    ) -> tuple[torch.Tensor, ...]:
        num_entries = pdf_ids.numel()
        counts = self._gauss_counts[pdf_ids]
        local_entry = torch.repeat_interleave(torch.arange(num_entries, device=self.device), counts)
        rank = torch.arange(local_entry.numel(), device=self.device) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts
        )
        gauss = self.pdf_offsets[pdf_ids][local_entry] + rank
        frames = frame_index[local_entry]
        x = feats[frames].to(torch.float64)
        diff = x - self.means[gauss]
        loglike = (
            self.log_weights[gauss]
            + self._log_norm[gauss]
            - 0.5 * (diff.square() * self.inv_vars[gauss]).sum(1)
        )
        peak = torch.full((num_entries,), -math.inf, dtype=torch.float64, device=self.device)
        peak.scatter_reduce_(0, local_entry, loglike, reduce="amax")
        shifted = torch.exp(loglike - peak[local_entry])
        total = torch.zeros(num_entries, dtype=torch.float64, device=self.device)
        total.index_add_(0, local_entry, shifted)
        entry_ll = peak + torch.log(total)
        return local_entry + first, frames, gauss, shifted / total[local_entry], entry_ll

    def _check_pdf_ids(self, pdf_ids: torch.Tensor) -> torch.Tensor:
        pdf_ids = torch.as_tensor(pdf_ids, device=self.device).to(torch.int64).flatten()
        if pdf_ids.numel() and (int(pdf_ids.min()) < 0 or int(pdf_ids.max()) >= self.num_pdfs):
            bad = int(pdf_ids[(pdf_ids < 0) | (pdf_ids >= self.num_pdfs)][0])
            raise ModelError(f"pdf id {bad} out of range for a model with {self.num_pdfs} pdfs")
        return pdf_ids

    def _check_feats(self, feats: torch.Tensor) -> torch.Tensor:
        feats = torch.as_tensor(feats)
        if feats.ndim != 2 or feats.shape[1] != self.dim:
            raise ModelError(
                f"features have shape {tuple(feats.shape)}; the GMMs expect (num_frames, {self.dim})"
            )
        return feats.to(self.device)

    # ------------------------------------------------------------------ I/O
    def save(self, path: str | os.PathLike) -> None:
        """Write atomically to ``path`` (``.pt`` via torch.save or ``.npz``), with a format
        name and version."""
        path = Path(path)
        arrays = {name: getattr(self, name).cpu() for name in _ARRAYS}
        if path.suffix == ".pt":
            payload = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **arrays}
            with atomic_write(path, "wb") as handle:
                torch.save(payload, handle)
        elif path.suffix == ".npz":
            with atomic_write(path, "wb") as handle:
                np.savez(
                    handle,
                    format=np.array(FORMAT_NAME),
                    version=np.array(FORMAT_VERSION),
                    **{k: v.numpy() for k, v in arrays.items()},
                )
        else:
            raise ModelError(f"{path}: GMM files must end in .pt or .npz")

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        device: torch.device | str = "cpu",
        compute_dtype: torch.dtype = torch.float32,
    ) -> DiagGmmSet:
        """Read a file written by :meth:`save`; :class:`ModelError` if missing or corrupt."""
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: GMM file not found")
        try:
            if path.suffix == ".pt":
                payload = torch.load(path, map_location="cpu", weights_only=True)
            elif path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as npz:
                    payload = {key: npz[key] for key in npz.files}
                for key in ("format", "version"):
                    if key in payload:
                        payload[key] = payload[key].item()
            else:
                raise ModelError(f"{path}: GMM files must end in .pt or .npz")
        except ModelError:
            raise
        except (
            OSError,
            ValueError,
            EOFError,
            RuntimeError,
            pickle.UnpicklingError,
            zipfile.BadZipFile,
        ) as err:
            raise ModelError(f"{path}: not a readable GMM file ({err})") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
            raise ModelError(f"{path}: not an {FORMAT_NAME} file")
        if payload.get("version") != FORMAT_VERSION:
            raise ModelError(
                f"{path}: format version {payload.get('version')!r}, expected {FORMAT_VERSION}"
            )
        missing = [name for name in _ARRAYS if name not in payload]
        if missing:
            raise ModelError(f"{path}: missing arrays {missing}")
        try:
            arrays = {name: torch.as_tensor(payload[name]).to(device) for name in _ARRAYS}
            return cls(**arrays, compute_dtype=compute_dtype)
        except (ModelError, TypeError, RuntimeError) as err:
            raise ModelError(f"{path}: {err}") from None
