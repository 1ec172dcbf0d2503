"""The GMM training loop's state and steps (used by :func:`asr.gmm.training.run_training`).

* :class:`LoopConfig` — the iteration options every GMM trainer's config gives;
* :class:`TrainingState` + :func:`save_checkpoint` / :func:`load_checkpoint` — what the loop
  carries between iterations, checkpointed after each one for an exact resume;
* :class:`GmmTrainer` — one iteration (alignment or given alignment or Baum-Welch posteriors
  in jobs, :mod:`asr.gmm.jobs`; ML update; transition update; mixing up) and the final
  alignment; :class:`IterationStats` — what an iteration logs.

>>> LoopConfig(num_iters=3).align_config(1).beam
6.0
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr.align.aligner import AlignConfig, AlignJob, silence_pdfs
from asr.align.training_graphs import TrainingGraph
from asr.errors import TrainingError
from asr.fileio import atomic_write
from asr.gmm.accumulate import GmmAccumulator, GmmUpdateConfig, mix_up, ml_update
from asr.gmm.diag_gmm import DiagGmmSet
from asr.gmm.jobs import GmmJob, GmmJobResult, run_gmm_job, scores_pdf_subsets
from asr.gmm.stats import TransitionUpdateConfig, mle_transition_update
from asr.hmm.model import HmmModel
from asr.lang import Lang
from asr.parallel import map_jobs

__all__ = [
    "GmmTrainer",
    "IterationStats",
    "LoopConfig",
    "TrainingState",
    "load_checkpoint",
    "save_checkpoint",
]


@dataclass(frozen=True)
class LoopConfig:
    """Options of the iteration loop (Kaldi's ``train_mono.sh`` defaults; each trainer's
    config gives its own, see ``loop_config()``).

    Iterations ``x`` run from the initial state's to ``num_iters - 1``; statistics come from
    an equal alignment at ``x = 0``, a re-alignment on ``realign_iters`` (beam ``beam`` at
    ``x <= 1``, ``later_beam`` after; retry beam 4 times that), the previous alignment
    otherwise, or Baum-Welch posteriors (``baum_welch``, ``x >= 1``). The number of Gaussians
    grows by ``(totgauss - num_pdfs) // max_iter_inc`` per iteration up to ``max_iter_inc``.
    """

    num_iters: int = 40
    max_iter_inc: int = 30
    totgauss: int = 1000
    realign_iters: tuple[int, ...] = ()
    boost_silence: float = 1.0
    power: float = 0.25
    beam: float = 6.0
    later_beam: float = 10.0
    acoustic_scale: float = 0.1
    transition_scale: float = 1.0
    self_loop_scale: float = 0.1
    min_variance: float = 1e-3  # relative to the global variance (GmmUpdateConfig)
    min_gaussian_occupancy: float = 10.0
    first_min_gaussian_occupancy: float = 3.0  # iteration 0, after the equal alignment
    min_gaussian_weight: float = 1e-5
    transition_floor: float = 0.01
    transition_min_count: float = 5.0
    perturb_factor: float = 0.01
    baum_welch: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_iters < 1 or self.max_iter_inc < 1 or self.totgauss < 1:
            raise TrainingError("num_iters, max_iter_inc and totgauss must be >= 1")
        object.__setattr__(self, "realign_iters", tuple(int(x) for x in self.realign_iters))

    def align_config(self, iteration: int) -> AlignConfig:
        """Alignment options at ``iteration`` (``num_iters``: the final alignment)."""
        if self.baum_welch and 1 <= iteration < self.num_iters:
            return AlignConfig(acoustic_scale=1.0, transition_scale=1.0, self_loop_scale=1.0)
        beam = self.beam if iteration <= 1 else self.later_beam
        return AlignConfig(
            beam=beam,
            retry_beam=4.0 * beam,
            acoustic_scale=self.acoustic_scale,
            transition_scale=self.transition_scale,
            self_loop_scale=self.self_loop_scale,
            boost_silence=self.boost_silence,
        )

    def update_config(self, iteration: int) -> GmmUpdateConfig:
        """The ML update's options at ``iteration``."""
        return GmmUpdateConfig(
            min_variance=self.min_variance,
            min_gaussian_weight=self.min_gaussian_weight,
            min_gaussian_occupancy=(
                self.first_min_gaussian_occupancy if iteration == 0 else self.min_gaussian_occupancy
            ),
        )


@dataclass(frozen=True)
class IterationStats:
    """One iteration: statistics gathered with model ``iteration`` (giving model
    ``iteration + 1``). ``log_like_per_frame`` is the GMM log-likelihood of the frames under
    their aligned pdfs (expected, for Baum-Welch)."""

    iteration: int
    mode: str
    num_gauss: int
    num_frames: int
    num_utts: int
    num_failed: int
    log_like_per_frame: float
    path_log_like_per_frame: float
    gmm_aux_improvement_per_frame: float
    transition_objf_improvement_per_frame: float
    num_retried: int
    seconds: float


# ------------------------------------------------------------------------------ state
@dataclass
class TrainingState:
    """What the loop carries between iterations (and the checkpoint holds): the next
    iteration, the GMMs, the transition log-probabilities, the target number of Gaussians,
    the current alignment (and its failures) and the per-iteration log."""

    next_iter: int
    gmm: DiagGmmSet
    log_probs: np.ndarray
    num_gauss: int
    alignments: dict[str, np.ndarray]
    failed: dict[str, str]
    log: list[dict]


def save_checkpoint(path: Path, state: TrainingState, config: Mapping[str, Any]) -> None:
    """Write ``state`` and the trainer's ``config`` (its ``to_dict()``) to ``path``
    atomically (``.npz``)."""
    utt_ids = sorted(state.alignments)
    lengths = np.array([len(state.alignments[u]) for u in utt_ids], dtype=np.int64)
    flat = (
        np.concatenate([state.alignments[u] for u in utt_ids]).astype(np.int32)
        if utt_ids
        else np.zeros(0, np.int32)
    )
    meta = {
        "next_iter": state.next_iter,
        "num_gauss": state.num_gauss,
        "utt_ids": utt_ids,
        "failed": state.failed,
        "log": state.log,
        "config": dict(config),
    }
    buffer = io.BytesIO()
    np.savez(
        buffer,
        meta=np.array(json.dumps(meta)),
        means=state.gmm.means.cpu().numpy(),
        inv_vars=state.gmm.inv_vars.cpu().numpy(),
        log_weights=state.gmm.log_weights.cpu().numpy(),
        pdf_offsets=state.gmm.pdf_offsets.cpu().numpy(),
        log_probs=state.log_probs,
        ali_lengths=lengths,
        ali_flat=flat,
    )
    with atomic_write(path, "wb") as handle:
        handle.write(buffer.getvalue())


def load_checkpoint(path: Path, config: Mapping[str, Any]) -> TrainingState | None:
    """The state saved in ``path`` (None when there is none); :class:`TrainingError` when it
    is unreadable or was written with another ``config``."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {k: torch.from_numpy(data[k].copy()) for k in ("means", "inv_vars",
                                                                    "log_weights", "pdf_offsets")}  # fmt: skip
            log_probs = data["log_probs"].copy()
            lengths, flat = data["ali_lengths"], data["ali_flat"]
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as err:
        raise TrainingError(
            f"{path}: unreadable checkpoint ({err}); delete it to restart"
        ) from None
    if meta["config"] != dict(config):
        raise TrainingError(
            f"{path}: checkpoint was written with another configuration; "
            "delete it (or the output dir) to train from scratch"
        )
    pieces = np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else []
    return TrainingState(
        next_iter=int(meta["next_iter"]),
        gmm=DiagGmmSet(**arrays),
        log_probs=log_probs,
        num_gauss=int(meta["num_gauss"]),
        alignments=dict(zip(meta["utt_ids"], pieces, strict=True)),
        failed=dict(meta["failed"]),
        log=list(meta["log"]),
    )


# ------------------------------------------------------------------------------ iterations
class GmmTrainer:
    """The per-iteration steps over fixed graphs and job split; ``feats`` may be replaced
    between iterations (a feature-space update)."""

    def __init__(
        self,
        *,
        config: LoopConfig,
        model: HmmModel,
        lang: Lang,
        feats: Mapping[str, np.ndarray],
        graphs: Mapping[str, TrainingGraph],
        split: list[tuple[str, ...]],
        executor: concurrent.futures.Executor | None,
    ) -> None:
        self.config = config
        self.model = model
        self.feats = feats
        self.graphs = graphs
        self.split = split
        self.executor = executor
        self.silence_pdf_ids = tuple(
            int(p) for p in silence_pdfs(model.transition_model, lang.silence_phone_ids)
        )
        self.inc_gauss = max(0, (config.totgauss - model.num_pdfs) // config.max_iter_inc)

    def model_with(self, log_probs: np.ndarray) -> HmmModel:
        """The HMM model with these transition log-probabilities."""
        return dataclasses.replace(
            self.model, transition_model=self.model.transition_model.with_log_probs(log_probs)
        )

    def jobs(
        self, state: TrainingState, mode: str, align_config: AlignConfig, *, accumulate: bool
    ) -> list[GmmJob]:
        """One :class:`GmmJob` per job of the split, with the state's model and alignment."""
        tm = self.model_with(state.log_probs).transition_model
        return [
            GmmJob(
                AlignJob(
                    utt_ids=ids,
                    feats={u: self.feats[u] for u in ids if u in self.feats},
                    graphs={u: self.graphs[u] for u in ids if u in self.graphs},
                    scorer=state.gmm,
                    transition_model=tm,
                    mode=mode,
                    align_config=align_config,
                    alignments={u: state.alignments[u] for u in ids if u in state.alignments},
                    silence_pdf_ids=self.silence_pdf_ids,
                    subset_scoring=scores_pdf_subsets(state.gmm),
                    seed=self.config.seed,
                ),
                accumulate=accumulate,
            )
            for ids in self.split
        ]

    def iteration(self, state: TrainingState) -> IterationStats:
        """Statistics with model ``state.next_iter``, then the update; mutates ``state``."""
        config, x = self.config, state.next_iter
        tick = time.perf_counter()
        if x == 0:
            mode = "equal"
        elif config.baum_welch:
            mode = "baum_welch"
        else:
            mode = "align" if x in config.realign_iters else "given"
        jobs = self.jobs(state, mode, config.align_config(x), accumulate=True)
        results: list[GmmJobResult] = map_jobs(run_gmm_job, jobs, self.executor)
        acc: GmmAccumulator = results[0].acc
        for res in results[1:]:
            acc.merge(res.acc)
        counts = sum(r.transition_counts for r in results)
        failed = {u: reason for r in results for u, reason in r.failed.items()}
        if mode in ("equal", "align"):
            state.alignments = {u: a for r in results for u, a in r.alignments.items()}
            state.failed = failed
        num_frames = sum(r.num_frames for r in results)
        if num_frames == 0:
            raise TrainingError(f"iteration {x}: no utterance could be aligned ({failed})")
        gmm, gmm_summary = ml_update(state.gmm, acc, config.update_config(x))
        if state.num_gauss > gmm.num_gauss:
            gmm = mix_up(
                gmm, acc.pdf_occupancies(), state.num_gauss, power=config.power,
                perturb_factor=config.perturb_factor, seed=config.seed * 1000 + x,
            )  # fmt: skip
        tm = self.model_with(state.log_probs).transition_model
        new_tm, trans_summary = mle_transition_update(
            tm,
            counts,
            TransitionUpdateConfig(
                floor=config.transition_floor, min_count=config.transition_min_count
            ),
        )
        stats = IterationStats(
            iteration=x,
            mode=mode,
            num_gauss=gmm.num_gauss,
            num_frames=num_frames,
            num_utts=sum(len(j.align.utt_ids) for j in jobs) - len(failed),
            num_failed=len(failed),
            log_like_per_frame=acc.tot_log_like / max(acc.tot_weight, 1e-300),
            path_log_like_per_frame=(
                sum(r.path_log_like for r in results) / num_frames
                if mode in ("align", "baum_welch")
                else math.nan
            ),
            gmm_aux_improvement_per_frame=gmm_summary.aux_improvement_per_frame,
            transition_objf_improvement_per_frame=trans_summary.objf_improvement / num_frames,
            num_retried=sum(r.num_retried for r in results),
            seconds=time.perf_counter() - tick,
        )
        state.gmm = gmm
        state.log_probs = new_tm.log_probs.copy()
        if x >= 1 and x <= config.max_iter_inc:
            state.num_gauss += self.inc_gauss
        state.next_iter = x + 1
        state.log.append(dataclasses.asdict(stats))
        return stats

    def final_alignment(
        self, gmm: DiagGmmSet, transition_model: object
    ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """Align every utterance with the final model (Viterbi, the last beams)."""
        state = TrainingState(
            next_iter=self.config.num_iters,
            gmm=gmm,
            log_probs=transition_model.log_probs,  # type: ignore[attr-defined]
            num_gauss=gmm.num_gauss,
            alignments={},
            failed={},
            log=[],
        )
        align_config = self.config.align_config(self.config.num_iters)
        jobs = self.jobs(state, "align", align_config, accumulate=False)
        results = map_jobs(run_gmm_job, jobs, self.executor)
        alignments = {u: a for r in results for u, a in r.alignments.items()}
        failed = {u: reason for r in results for u, reason in r.failed.items()}
        return alignments, failed
