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
import io
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asr.align.aligner import (
    GMM_FILE,
    AlignConfig,
    AlignJob,
    map_jobs,
    process_pool,
    run_alignment_job,
    silence_pdfs,
    split_by_speaker,
)
from asr.align.io import write_alignments, write_failed
from asr.align.training_graphs import TrainingGraph, TrainingGraphCompiler
from asr.errors import AsrError, TrainingError
from asr.fileio import atomic_write, atomic_write_text, is_up_to_date
from asr.gmm.accumulate import GmmAccumulator, GmmUpdateConfig, mix_up, ml_update
from asr.gmm.diag_gmm import DiagGmmSet
from asr.gmm.stats import TransitionUpdateConfig, mle_transition_update
from asr.hmm.model import HmmModel, init_monophone
from asr.lang import Lang, read_lang

__all__ = ["IterationStats", "MonoConfig", "MonoSummary", "train_mono"]

KALDI_REALIGN_ITERS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20, 23, 26, 29, 32, 35, 38)
TRAIN_LOG_FILE = "train_log.json"
CHECKPOINT_FILE = "checkpoint.npz"


@dataclass(frozen=True)
class MonoConfig:
    """Options of :func:`train_mono` (Kaldi's ``train_mono.sh`` defaults)."""

    num_iters: int = 40
    max_iter_inc: int = 30
    totgauss: int = 1000
    realign_iters: tuple[int, ...] = KALDI_REALIGN_ITERS
    boost_silence: float = 1.0
    power: float = 0.25
    beam: float = 6.0  # first re-alignment (iteration 1); retry beam = 4 * beam
    later_beam: float = 10.0  # later re-alignments and the final one (retry beam 40)
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

    def to_dict(self) -> dict:
        obj = dataclasses.asdict(self)
        obj["realign_iters"] = list(self.realign_iters)
        return obj

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


# ------------------------------------------------------------------------------ set-up
def _shared_phones(lang: Lang) -> list[list[int]]:
    path = lang.path / "phones" / "sets.int"
    if not path.is_file():
        return []
    rows = [[int(v) for v in line.split()] for line in path.read_text().splitlines()]
    return [row for row in rows if len(row) > 1]


def _load_pipeline_and_feats(data_dir: Path) -> tuple[object, dict[str, np.ndarray]]:
    from asr.features.pipeline import FeaturePipelineConfig, load_features, read_feature_config

    pipeline = FeaturePipelineConfig(cmvn="speaker", deltas=2, base=read_feature_config(data_dir))
    return pipeline, load_features(data_dir, pipeline)


def _global_stats(feats: Mapping[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    total = sum(len(f) for f in feats.values())
    if total == 0:
        raise TrainingError("no feature frames to train on")
    x_sum = sum(f.astype(np.float64).sum(0) for f in feats.values())
    x2_sum = sum(np.square(f.astype(np.float64)).sum(0) for f in feats.values())
    mean = x_sum / total
    var = np.maximum(x2_sum / total - mean**2, 1e-10)
    return torch.from_numpy(mean), torch.from_numpy(var)


def _compile_job(args: tuple[str, HmmModel, dict[str, str]]) -> tuple[dict, dict]:
    lang_dir, model, texts = args
    compiler = TrainingGraphCompiler(lang=read_lang(lang_dir), model=model)
    return compiler.compile_many(texts)


# ------------------------------------------------------------------------------ checkpoint
@dataclass
class _State:
    next_iter: int
    gmm: DiagGmmSet
    log_probs: np.ndarray
    num_gauss: int
    alignments: dict[str, np.ndarray]
    failed: dict[str, str]
    log: list[dict]


def _save_checkpoint(path: Path, state: _State, config: MonoConfig) -> None:
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
        "config": config.to_dict(),
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


def _load_checkpoint(path: Path, config: MonoConfig) -> _State | None:
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
    if meta["config"] != config.to_dict():
        raise TrainingError(
            f"{path}: checkpoint was written with another configuration; "
            "delete it (or the output dir) to train from scratch"
        )
    pieces = np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else []
    return _State(
        next_iter=int(meta["next_iter"]),
        gmm=DiagGmmSet(**arrays),
        log_probs=log_probs,
        num_gauss=int(meta["num_gauss"]),
        alignments=dict(zip(meta["utt_ids"], pieces, strict=True)),
        failed=dict(meta["failed"]),
        log=list(meta["log"]),
    )


# ------------------------------------------------------------------------------ training
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
    config = config or MonoConfig()
    start_time = time.perf_counter()
    data_dir, lang_dir, out_dir = Path(data_dir), Path(lang_dir), Path(out_dir)
    inputs = [data_dir / n for n in ("feats.scp", "cmvn.scp", "text", "utt2spk")]
    inputs += [lang_dir / n for n in ("L.fst", "phones.txt", "words.txt", "topo")]
    log_path = out_dir / TRAIN_LOG_FILE
    if not force and is_up_to_date([log_path, out_dir / GMM_FILE], inputs):
        done = _read_summary(log_path)
        if done is not None and done[0] == config.to_dict():
            return done[1]
    for name in ("feats.scp", "text"):
        if not (data_dir / name).is_file():
            raise TrainingError(f"{data_dir / name}: not found")
    try:
        lang = read_lang(lang_dir)
    except AsrError as err:
        raise TrainingError(f"cannot read lang dir {lang_dir}: {err}") from None
    from asr.data import read_kaldi_map

    model = init_monophone(lang, shared_phones=_shared_phones(lang) or None)
    pipeline, feats = _load_pipeline_and_feats(data_dir)
    texts = read_kaldi_map(data_dir / "text")
    utt2spk = read_kaldi_map(data_dir / "utt2spk") if (data_dir / "utt2spk").is_file() else {}
    utt_ids = sorted(texts)
    split = split_by_speaker(utt_ids, utt2spk, num_jobs)
    own_pool = executor is None and num_jobs > 1 and len(split) > 1
    pool = process_pool(len(split)) if own_pool else executor
    try:
        compiled = map_jobs(
            _compile_job,
            [(str(lang_dir), model, {u: texts[u] for u in ids}) for ids in split],
            pool,
        )
        graphs: dict[str, TrainingGraph] = {}
        compile_failed: dict[str, str] = {}
        for job_graphs, job_failed in compiled:
            graphs.update(job_graphs)
            compile_failed.update(job_failed)
        trainer = _Trainer(
            config=config, model=model, lang=lang, feats=feats, graphs=graphs, split=split,
            executor=pool,
        )  # fmt: skip
        checkpoint = out_dir / CHECKPOINT_FILE
        state = _load_checkpoint(checkpoint, config)
        resumed_from = state.next_iter if state is not None else None
        if state is None:
            state = trainer.initial_state()
        while state.next_iter < config.num_iters:
            stats = trainer.iteration(state)
            out_dir.mkdir(parents=True, exist_ok=True)
            _save_checkpoint(checkpoint, state, config)
            if progress is not None:
                progress(stats)
        final_model = trainer.model_with(state.log_probs)
        final = trainer.final_alignment(state.gmm, final_model.transition_model)
    finally:
        if own_pool and pool is not None:
            pool.shutdown()
    alignments, failed = final
    failed = {**compile_failed, **failed}
    final_model.save(out_dir)
    state.gmm.save(out_dir / GMM_FILE)
    pipeline.save(out_dir)
    write_alignments(alignments, out_dir / "ali")
    write_failed(failed, out_dir / "ali")
    iterations = tuple(IterationStats(**entry) for entry in state.log)
    summary = MonoSummary(
        out_dir=str(out_dir),
        num_pdfs=state.gmm.num_pdfs,
        num_gauss=state.gmm.num_gauss,
        iterations=iterations,
        num_aligned=len(alignments),
        num_failed=len(failed),
        seconds=time.perf_counter() - start_time,
        resumed_from=resumed_from,
    )
    log = {
        "format": "asr-train-mono",
        "family": "gmm",
        "config": config.to_dict(),
        "data_dir": str(data_dir),
        "lang_dir": str(lang_dir),
        "num_jobs": num_jobs,
        **{k: v for k, v in dataclasses.asdict(summary).items() if k != "iterations"},
        "iterations": state.log,
        "failed": failed,
    }
    atomic_write_text(log_path, json.dumps(log, indent=2) + "\n")
    checkpoint.unlink(missing_ok=True)
    return summary


def _read_summary(path: Path) -> tuple[dict, MonoSummary] | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        fields = {f.name for f in dataclasses.fields(MonoSummary)} - {"iterations"}
        summary = MonoSummary(
            **{k: obj[k] for k in fields},
            iterations=tuple(IterationStats(**e) for e in obj["iterations"]),
        )
        return obj["config"], summary
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        return None


class _Trainer:
    """The per-iteration steps over fixed features, graphs and job split."""

    def __init__(
        self,
        *,
        config: MonoConfig,
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
        self.feats_mean, self.feats_var = _global_stats(
            {u: f for u, f in feats.items() if u in graphs}
        )
        self.inc_gauss = max(0, (config.totgauss - model.num_pdfs) // config.max_iter_inc)

    def model_with(self, log_probs: np.ndarray) -> HmmModel:
        return dataclasses.replace(
            self.model, transition_model=self.model.transition_model.with_log_probs(log_probs)
        )

    def initial_state(self) -> _State:
        gmm = DiagGmmSet.init_single(
            num_pdfs=self.model.num_pdfs, feats_mean=self.feats_mean, feats_var=self.feats_var
        )
        return _State(
            next_iter=0,
            gmm=gmm,
            log_probs=self.model.transition_model.log_probs.copy(),
            num_gauss=self.model.num_pdfs,
            alignments={},
            failed={},
            log=[],
        )

    def _jobs(self, state: _State, mode: str, align_config: AlignConfig, *, accumulate: bool):
        tm = self.model_with(state.log_probs).transition_model
        return [
            AlignJob(
                utt_ids=ids,
                feats={u: self.feats[u] for u in ids if u in self.feats},
                graphs={u: self.graphs[u] for u in ids if u in self.graphs},
                gmm=state.gmm,
                transition_model=tm,
                mode=mode,
                align_config=align_config,
                alignments={u: state.alignments[u] for u in ids if u in state.alignments},
                silence_pdf_ids=self.silence_pdf_ids,
                accumulate=accumulate,
                seed=self.config.seed,
            )
            for ids in self.split
        ]

    def iteration(self, state: _State) -> IterationStats:
        """Statistics with model ``state.next_iter``, then the update; mutates ``state``."""
        config, x = self.config, state.next_iter
        tick = time.perf_counter()
        if x == 0:
            mode = "equal"
        elif config.baum_welch:
            mode = "baum_welch"
        else:
            mode = "align" if x in config.realign_iters else "given"
        jobs = self._jobs(state, mode, config.align_config(x), accumulate=True)
        results = map_jobs(run_alignment_job, jobs, self.executor)
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
        update_config = GmmUpdateConfig(
            min_variance=config.min_variance,
            min_gaussian_weight=config.min_gaussian_weight,
            min_gaussian_occupancy=(
                config.first_min_gaussian_occupancy if x == 0 else config.min_gaussian_occupancy
            ),
        )
        gmm, gmm_summary = ml_update(state.gmm, acc, update_config)
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
            num_utts=sum(len(j.utt_ids) for j in jobs) - len(failed),
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
        state = _State(
            next_iter=self.config.num_iters,
            gmm=gmm,
            log_probs=transition_model.log_probs,  # type: ignore[attr-defined]
            num_gauss=gmm.num_gauss,
            alignments={},
            failed={},
            log=[],
        )
        align_config = self.config.align_config(self.config.num_iters)
        jobs = self._jobs(state, "align", align_config, accumulate=False)
        results = map_jobs(run_alignment_job, jobs, self.executor)
        alignments = {u: a for r in results for u, a in r.alignments.items()}
        failed = {u: reason for r in results for u, reason in r.failed.items()}
        return alignments, failed
