"""Training data for neural acoustic models: (feats, targets) pairs, bucketed batches, SpecAugment.

An :class:`NnetDataset` holds utterances in memory, each ``feats: (num_frames,
input_dim)`` float32 with either per-frame pdf-ids (``target_type="frames"``, for
cross-entropy; ``len(targets) == num_frames``) or a token sequence
(``target_type="tokens"``, for CTC). Batches group utterances of similar length
(:func:`make_batches`, bounded by padded frames), are shuffled per epoch from a
seed (so a resumed run sees the same order), and are split across data-parallel
ranks by :func:`shard_batches` (every rank gets the same number of batches, as
``DistributedSampler`` does). :func:`collate` pads a batch and can apply
SpecAugment-style time/frequency masks.

>>> import numpy as np
>>> data = NnetDataset.from_arrays(
...     {"a": np.zeros((5, 3), np.float32), "b": np.ones((3, 3), np.float32)},
...     {"a": np.array([1, 2]), "b": np.array([4])},
...     target_type="tokens",
... )
>>> batch = collate(data, [0, 1])
>>> tuple(batch.feats.shape), batch.lengths.tolist(), batch.targets.tolist()
((2, 5, 3), [5, 3], [[1, 2], [4, 0]])
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F
from torch.nn.utils.rnn import pad_sequence

from asr.errors import TrainingError

__all__ = [
    "Batch",
    "NnetDataset",
    "SpecAugmentConfig",
    "collate",
    "make_batches",
    "shard_batches",
    "spec_augment",
    "time_stretch",
]

IGNORE_INDEX = -100
"""Padding value of per-frame targets (ignored by the cross-entropy loss)."""

_TARGET_TYPES = ("frames", "tokens")


class NnetDataset:
    """Utterances with targets, in memory; index ``i`` gives ``(utt_id, feats, targets)`` tensors."""

    def __init__(
        self,
        utt_ids: Sequence[str],
        feats: Sequence[np.ndarray],
        targets: Sequence[np.ndarray],
        *,
        target_type: str,
    ) -> None:
        if target_type not in _TARGET_TYPES:
            raise TrainingError(f"target_type must be one of {_TARGET_TYPES}, got {target_type!r}")
        if not len(utt_ids) == len(feats) == len(targets):
            raise TrainingError("utt_ids, feats and targets differ in length")
        if not utt_ids:
            raise TrainingError("dataset is empty")
        self.target_type = target_type
        self.utt_ids = list(utt_ids)
        self._feats: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []
        dims = set()
        for utt_id, mat, tgt in zip(utt_ids, feats, targets, strict=True):
            mat = np.asarray(mat, dtype=np.float32)
            tgt = np.asarray(tgt)
            if mat.ndim != 2 or mat.shape[0] == 0:
                raise TrainingError(
                    f"{utt_id}: feats must be (num_frames > 0, dim), got {mat.shape}"
                )
            if tgt.ndim != 1 or not np.issubdtype(tgt.dtype, np.integer) or (tgt < 0).any():
                raise TrainingError(f"{utt_id}: targets must be a vector of non-negative ints")
            if target_type == "frames" and len(tgt) != mat.shape[0]:
                raise TrainingError(
                    f"{utt_id}: {len(tgt)} frame targets for {mat.shape[0]} feature frames"
                )
            if target_type == "tokens" and len(tgt) == 0:
                raise TrainingError(f"{utt_id}: empty token sequence")
            dims.add(mat.shape[1])
            self._feats.append(torch.from_numpy(np.ascontiguousarray(mat)))
            self._targets.append(torch.from_numpy(tgt.astype(np.int64)))
        if len(dims) != 1:
            raise TrainingError(f"feature dimensions differ across utterances: {sorted(dims)}")
        self.feat_dim = dims.pop()
        self.lengths = np.array([f.shape[0] for f in self._feats], dtype=np.int64)

    @classmethod
    def from_arrays(
        cls,
        feats: Mapping[str, np.ndarray],
        targets: Mapping[str, np.ndarray],
        *,
        target_type: str,
    ) -> NnetDataset:
        """Pair ``feats[utt_id]`` with ``targets[utt_id]``; utterances without targets are left out."""
        utt_ids = [u for u in feats if u in targets]
        if not utt_ids:
            raise TrainingError("no utterance has both features and targets")
        return cls(
            utt_ids,
            [feats[u] for u in utt_ids],
            [targets[u] for u in utt_ids],
            target_type=target_type,
        )

    @classmethod
    def from_scp(
        cls,
        feats_scp: str | os.PathLike,
        targets: Mapping[str, np.ndarray],
        *,
        target_type: str,
    ) -> NnetDataset:
        """Load the features of ``feats_scp`` (Kaldi scp) into memory and pair them with ``targets``."""
        from asr.features.io import read_matrices_scp

        feats = dict(read_matrices_scp(feats_scp))
        if not feats:
            raise TrainingError(f"{feats_scp}: no features")
        return cls.from_arrays(feats, targets, target_type=target_type)

    def __len__(self) -> int:
        return len(self.utt_ids)

    def __getitem__(self, index: int) -> tuple[str, torch.Tensor, torch.Tensor]:
        return self.utt_ids[index], self._feats[index], self._targets[index]

    @property
    def num_frames(self) -> int:
        """Total feature frames."""
        return int(self.lengths.sum())

    def pdf_counts(self, num_pdfs: int) -> np.ndarray:
        """Frame counts per pdf-id ``(num_pdfs,)`` (frame targets only): the input of the priors."""
        if self.target_type != "frames":
            raise TrainingError("pdf_counts needs frame targets")
        all_targets = torch.cat(self._targets)
        if int(all_targets.max()) >= num_pdfs:
            raise TrainingError(f"pdf-id {int(all_targets.max())} >= num_pdfs={num_pdfs}")
        return torch.bincount(all_targets, minlength=num_pdfs).numpy()


@dataclass(frozen=True)
class Batch:
    """A padded batch: ``feats (B, T, D)``, ``lengths (B,)``, ``targets`` and ``target_lengths (B,)``.

    Frame targets are ``(B, T)`` padded with ``IGNORE_INDEX``; token targets
    ``(B, max_len)`` padded with 0.
    """

    utt_ids: tuple[str, ...]
    feats: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor
    target_lengths: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            utt_ids=self.utt_ids,
            feats=self.feats.to(device),
            lengths=self.lengths.to(device),
            targets=self.targets.to(device),
            target_lengths=self.target_lengths.to(device),
        )


@dataclass(frozen=True)
class SpecAugmentConfig:
    """SpecAugment-style masking (no time warping): masked values are set to ``fill_value``.

    Each time mask spans at most ``min(max_time_width, max_time_fraction * num_frames)``
    frames; each frequency mask at most ``max_freq_width`` bins.
    """

    num_freq_masks: int = 2
    max_freq_width: int = 8
    num_time_masks: int = 2
    max_time_width: int = 40
    max_time_fraction: float = 0.2
    fill_value: float = 0.0

    def __post_init__(self) -> None:
        counts = (
            self.num_freq_masks,
            self.max_freq_width,
            self.num_time_masks,
            self.max_time_width,
        )
        if min(counts) < 0 or not 0.0 <= self.max_time_fraction <= 1.0:
            raise TrainingError(f"invalid SpecAugmentConfig: {self}")


def spec_augment(
    feats: torch.Tensor,
    lengths: torch.Tensor,
    config: SpecAugmentConfig,
    *,
    generator: torch.Generator,
) -> torch.Tensor:
    """Masked copy of ``feats: (B, T, D)``; masks are drawn per utterance, vectorized over the batch."""
    batch, num_frames, dim = feats.shape
    mask = torch.zeros(batch, num_frames, dim, dtype=torch.bool)
    bins = torch.arange(dim).unsqueeze(0)
    frames = torch.arange(num_frames).unsqueeze(0)
    for _ in range(config.num_freq_masks):
        width = torch.randint(0, min(config.max_freq_width, dim) + 1, (batch,), generator=generator)
        start = (torch.rand(batch, generator=generator) * (dim - width + 1)).long()
        band = (bins >= start.unsqueeze(1)) & (bins < (start + width).unsqueeze(1))
        mask |= band.unsqueeze(1)
    limit = torch.minimum(
        torch.full((batch,), config.max_time_width),
        (lengths.cpu().double() * config.max_time_fraction).long(),
    )
    for _ in range(config.num_time_masks):
        width = (torch.rand(batch, generator=generator) * (limit + 1)).long()
        start = (torch.rand(batch, generator=generator) * (lengths.cpu() - width + 1)).long()
        span = (frames >= start.unsqueeze(1)) & (frames < (start + width).unsqueeze(1))
        mask |= span.unsqueeze(2)
    return feats.masked_fill(mask.to(feats.device), config.fill_value)


def time_stretch(feats: torch.Tensor, factor: float) -> torch.Tensor:
    """Feature-domain speed perturbation: ``(num_frames, D) -> (round(num_frames / factor), D)``.

    Linear interpolation along time (end frames kept). An approximation of
    waveform speed perturbation (the spectrum is not shifted); token targets only.
    """
    if factor <= 0:
        raise TrainingError(f"speed factor must be > 0, got {factor}")
    num_frames = feats.shape[0]
    new_frames = max(1, round(num_frames / factor))
    if new_frames == num_frames:
        return feats
    if num_frames == 1:
        return feats.expand(new_frames, -1).clone()
    stretched = F.interpolate(
        feats.T.unsqueeze(0), size=new_frames, mode="linear", align_corners=True
    )
    return stretched[0].T.contiguous()


def make_batches(
    lengths: np.ndarray,
    *,
    batch_frames: int,
    max_batch_size: int,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    length_jitter: float = 0.1,
) -> list[list[int]]:
    """Group utterance indices into batches of similar length.

    Utterances are sorted by length (times a random factor in ``[1, 1 + length_jitter)``
    when ``shuffle``, so batches differ between epochs) and cut greedily so that
    ``len(batch) * max_length <= batch_frames`` (a longer utterance gets a batch of
    its own) and ``len(batch) <= max_batch_size``; with ``shuffle`` the batch order is
    permuted. The result depends only on ``(lengths, seed, epoch)``.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if batch_frames < 1 or max_batch_size < 1:
        raise TrainingError(
            f"batch_frames={batch_frames}, max_batch_size={max_batch_size} must be >= 1"
        )
    rng = np.random.default_rng([seed, epoch])
    keys = lengths.astype(np.float64)
    if shuffle:
        keys = keys * (1.0 + length_jitter * rng.random(len(lengths)))
    order = np.argsort(keys, kind="stable")
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order.tolist():
        new_longest = max(longest, int(lengths[index]))
        if current and (
            (len(current) + 1) * new_longest > batch_frames or len(current) >= max_batch_size
        ):
            batches.append(current)
            current, new_longest = [], int(lengths[index])
        current.append(index)
        longest = new_longest
    if current:
        batches.append(current)
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches)).tolist()]
    return batches


def shard_batches(
    batches: list[list[int]], *, rank: int, world_size: int, pad: bool = True
) -> list[list[int]]:
    """This rank's share of ``batches`` (round-robin).

    With ``pad`` the list is first extended by repeating batches from its start so that
    every rank gets the same number (needed for DistributedDataParallel); without it
    (evaluation) each batch is seen exactly once across ranks.
    """
    if not 0 <= rank < world_size:
        raise TrainingError(f"rank {rank} out of range for world_size {world_size}")
    if pad and batches and len(batches) % world_size:
        extra = world_size - len(batches) % world_size
        batches = batches + [batches[i % len(batches)] for i in range(extra)]
    return batches[rank::world_size]


def collate(
    dataset: NnetDataset,
    indices: Sequence[int],
    *,
    spec_augment_config: SpecAugmentConfig | None = None,
    speed_factors: Sequence[float] = (),
    generator: torch.Generator | None = None,
) -> Batch:
    """Pad the utterances ``indices`` of ``dataset`` into a :class:`Batch`.

    Options (drawn from ``generator``): SpecAugment masks, and a speed factor per
    utterance from ``speed_factors`` applied by :func:`time_stretch` (token targets only).
    """
    items = [dataset[i] for i in indices]
    if speed_factors:
        if dataset.target_type != "tokens":
            raise TrainingError(
                "speed perturbation needs token targets (frame targets would misalign)"
            )
        if generator is None:
            raise TrainingError("speed perturbation needs a torch.Generator")
        choice = torch.randint(0, len(speed_factors), (len(items),), generator=generator).tolist()
        items = [
            (utt_id, time_stretch(feats, speed_factors[k]), targets)
            for (utt_id, feats, targets), k in zip(items, choice, strict=True)
        ]
    feats = pad_sequence([f for _, f, _ in items], batch_first=True)
    lengths = torch.tensor([f.shape[0] for _, f, _ in items], dtype=torch.int64)
    pad_value = IGNORE_INDEX if dataset.target_type == "frames" else 0
    targets = pad_sequence([t for _, _, t in items], batch_first=True, padding_value=pad_value)
    target_lengths = torch.tensor([t.shape[0] for _, _, t in items], dtype=torch.int64)
    if spec_augment_config is not None:
        if generator is None:
            raise TrainingError("spec_augment needs a torch.Generator")
        feats = spec_augment(feats, lengths, spec_augment_config, generator=generator)
    return Batch(
        utt_ids=tuple(u for u, _, _ in items),
        feats=feats,
        lengths=lengths,
        targets=targets,
        target_lengths=target_lengths,
    )
