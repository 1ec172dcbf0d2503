"""Monophone GMM-HMM training from a flat start (Kaldi's ``steps/train_mono.sh``).

1. Structure: :func:`asr.hmm.init_monophone` over the lang dir (pdfs shared as in
   ``phones/sets.int``); one Gaussian per pdf with the global feature mean/variance
   (``gmm-init-mono``); features: per-speaker CMVN (means) + deltas of order 2
   (:mod:`asr.features.pipeline`).
2. Training graphs per utterance (:class:`asr.align.TrainingGraphCompiler`), then an equal
   alignment of each utterance (``align-equal-compiled``).
3. Iteration ``x = 0 .. num_iters - 1``: on the ``realign_iters`` re-align with model ``x``
   (beam 6, retry beam 40, ``boost_silence``); accumulate GMM statistics and transition counts
   from the alignments (Viterbi training, ``gmm-acc-stats-ali``) — or, with ``baum_welch``,
   from forward-backward posteriors over the training graphs on every iteration ``x >= 1``
   (acoustic, transition and self-loop scales 1: plain EM); then ``gmm-est``: ML update
   (``min_gaussian_occupancy`` 3 on iteration 0), transition re-estimation, mixing up to
   ``numgauss``, which grows by ``(totgauss - num_pdfs) // max_iter_inc`` per iteration up to
   iteration ``max_iter_inc``.
4. Finally the training data is aligned with the final model (``ali/``).

The loop, jobs, checkpoints and outputs are the shared GMM training template
(:func:`asr.gmm.training.run_training`); :class:`MonoTraining` is its monophone strategy.
Jobs (utterances split by speaker) run on any ``concurrent.futures.Executor``; their
statistics merge in job order, so results do not depend on the executor. After every iteration
the state (GMM, transition probabilities, alignments, log) is checkpointed atomically in
``OUT_DIR/checkpoint.npz``; a rerun resumes after the last finished iteration and gives the same
model as an uninterrupted run.

Output ``OUT_DIR``: the HMM model files (:meth:`asr.hmm.HmmModel.save`, re-estimated
transitions), ``gmm.pt``, ``feature_pipeline.json``, ``ali/`` (final alignment, ``failed.txt``)
and ``train_log.json`` (config and per-iteration statistics; written last).

>>> from asr.gmm.train_mono import MonoConfig, train_mono
>>> summary = train_mono("data/yesno/train", "data/yesno/lang", "exp/yesno/mono")  # doctest: +SKIP
>>> summary.log_like_per_frame[-1] > summary.log_like_per_frame[0]  # doctest: +SKIP
True
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from asr.errors import AsrError, TrainingError
from asr.features.pipeline import FeaturePipelineConfig, load_features, read_feature_config
from asr.gmm.diag_gmm import DiagGmmSet
from asr.gmm.loop import GmmTrainer, IterationStats, LoopConfig, TrainingState
from asr.gmm.training import TrainingRun, TrainingStrategy, run_training
from asr.hmm.model import HmmModel, init_monophone
from asr.lang import Lang, read_lang

__all__ = ["IterationStats", "MonoConfig", "MonoSummary", "MonoTraining", "train_mono"]

KALDI_REALIGN_ITERS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20, 23, 26, 29, 32, 35, 38)


@dataclass(frozen=True)
class MonoConfig(LoopConfig):
    """Options of :func:`train_mono` (Kaldi's ``train_mono.sh`` defaults): the iteration
    loop's options (:class:`asr.gmm.loop.LoopConfig`, given by :meth:`loop_config`).
    ``beam``: the first re-alignment (iteration 1); ``later_beam``: later re-alignments and
    the final one (retry beams 4 times those)."""

    realign_iters: tuple[int, ...] = KALDI_REALIGN_ITERS

    def to_dict(self) -> dict:
        obj = dataclasses.asdict(self)
        obj["realign_iters"] = list(self.realign_iters)
        return obj

    def loop_config(self) -> LoopConfig:
        """The training loop's options: all of this config's fields."""
        return LoopConfig(**dataclasses.asdict(self))


@dataclass(frozen=True)
class MonoSummary:
    """Result of :func:`train_mono`."""

    out_dir: str
    num_pdfs: int
    num_gauss: int
    iterations: tuple[IterationStats, ...]
    num_aligned: int
    num_failed: int
    seconds: float
    resumed_from: int | None = None

    @property
    def log_like_per_frame(self) -> list[float]:
        return [it.log_like_per_frame for it in self.iterations]


def _shared_phones(lang: Lang) -> list[list[int]]:
    path = lang.path / "phones" / "sets.int"
    if not path.is_file():
        return []
    rows = [[int(v) for v in line.split()] for line in path.read_text().splitlines()]
    return [row for row in rows if len(row) > 1]


def _global_stats(feats: Mapping[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    total = sum(len(f) for f in feats.values())
    if total == 0:
        raise TrainingError("no feature frames to train on")
    x_sum = sum(f.astype(np.float64).sum(0) for f in feats.values())
    x2_sum = sum(np.square(f.astype(np.float64)).sum(0) for f in feats.values())
    mean = x_sum / total
    var = np.maximum(x2_sum / total - mean**2, 1e-10)
    return torch.from_numpy(mean), torch.from_numpy(var)


class MonoTraining(TrainingStrategy):
    """The monophone strategy: a flat start (one Gaussian per pdf with the global mean and
    variance, iteration 0 on an equal alignment) on CMVN + delta features."""

    log_format = "asr-train-mono"
    summary_type = MonoSummary

    def __init__(self, config: MonoConfig) -> None:
        self.config = config
        self.model: HmmModel | None = None
        self.pipeline: FeaturePipelineConfig | None = None

    def load_inputs(self, run: TrainingRun) -> Lang:
        try:
            lang = read_lang(run.lang_dir)
        except AsrError as err:
            raise TrainingError(f"cannot read lang dir {run.lang_dir}: {err}") from None
        self.model = init_monophone(lang, shared_phones=_shared_phones(lang) or None)
        self.pipeline = FeaturePipelineConfig(
            cmvn="speaker", deltas=2, base=read_feature_config(run.data_dir)
        )
        self.feats = load_features(run.data_dir, self.pipeline)
        return lang

    def prepare(self, run: TrainingRun, executor: concurrent.futures.Executor | None) -> HmmModel:
        return self.model

    def initial_state(self, trainer: GmmTrainer) -> TrainingState:
        feats_mean, feats_var = _global_stats(
            {u: f for u, f in trainer.feats.items() if u in trainer.graphs}
        )
        model = trainer.model
        return TrainingState(
            next_iter=0,
            gmm=DiagGmmSet.init_single(
                num_pdfs=model.num_pdfs, feats_mean=feats_mean, feats_var=feats_var
            ),
            log_probs=model.transition_model.log_probs.copy(),
            num_gauss=model.num_pdfs,
            alignments={},
            failed={},
            log=[],
        )

    def write_outputs(self, run, trainer, state, final_model, alignments) -> None:
        self.pipeline.save(run.out_dir)

    def summary(self, state: TrainingState, **common: Any) -> MonoSummary:
        return MonoSummary(**common)


def train_mono(
    data_dir: str | os.PathLike,
    lang_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    config: MonoConfig | None = None,
    num_jobs: int = 1,
    executor: concurrent.futures.Executor | None = None,
    progress: Callable[[IterationStats], None] | None = None,
    force: bool = False,
) -> MonoSummary:
    """Train a monophone GMM-HMM (see the module docstring); returns a :class:`MonoSummary`.

    An up-to-date finished model (``train_log.json`` newer than the inputs, same config) is
    kept unless ``force``. ``progress`` is called after each iteration's checkpoint.
    """
    return run_training(
        MonoTraining(config or MonoConfig()), data_dir, lang_dir, out_dir,
        num_jobs=num_jobs, executor=executor, progress=progress, force=force,
    )  # fmt: skip
