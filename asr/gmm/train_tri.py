"""Triphone GMM-HMM training: tri1 on MFCC+deltas (Kaldi's ``steps/train_deltas.sh``) and tri2
on LDA+MLLT features (``steps/train_lda_mllt.sh``), in one trainer (``feature_mode``).

Starting from a previous model dir ``ALI_DIR`` (its HMM files and its final alignment
``ALI_DIR/ali``):

1. Features: ``"deltas"``: per-speaker CMVN + deltas of order 2; ``"lda_mllt"``: per-speaker
   CMVN of the raw features spliced ``splice`` frames either side, projected to ``lda_dim``
   by an LDA estimated from the previous alignment's pdf labels (``acc-lda`` + ``est-lda``,
   silence frames weighted 0).
2. Tree (:mod:`asr.gmm.triphone_start`): context statistics of the previous alignment (``acc-tree-stats``, context 3, central
   1, silence context-independent), phone questions by clustering (``cluster-phones``, plus
   ``extra_questions.int``), the tree grown to ``num_leaves`` leaves (``build-tree``), one
   Gaussian per pdf from the statistics (``gmm-init-model``), transition probabilities from the
   topology.
3. The previous alignment is converted to the new model (``convert-ali``,
   :func:`convert_alignments`), training graphs are compiled for the triphone model.
4. Iterations ``x = 1 .. num_iters - 1`` of the shared GMM training loop
   (:mod:`asr.gmm.training`: re-align on ``realign_iters``, Viterbi statistics, ML update,
   transition update, mixing up towards ``totgauss``; :class:`TriTraining` is its strategy); in ``"lda_mllt"`` mode, on
   ``mllt_iters`` first an MLLT update (``gmm-acc-mllt`` + ``est-mllt`` with silence weighted
   0): the features' transform becomes ``A @ M`` and the means ``A mu``
   (``gmm-transform-means``). The MLLT statistics use the alignment the iteration starts
   with; Kaldi re-aligns first when an iteration is in both lists (by default none is).
5. Final alignment ``ali/``.

Checkpoint/resume as in every GMM trainer: the starting model (tree, GMM, LDA) lives in
``OUT_DIR/init/`` and each MLLT transform in ``OUT_DIR/init/mllt_<x>.npz`` until training
finishes. Output ``OUT_DIR``: HMM files, ``gmm.pt``, ``feature_pipeline.json`` (with
``transform: "final.mat"``, a Kaldi binary matrix, in ``"lda_mllt"`` mode), ``ali/`` and
``train_log.json`` (written last).

>>> from asr.gmm.train_tri import TriConfig, train_tri
>>> summary = train_tri("data/an4/train", "data/an4/lang", "exp/an4/mono", "exp/an4/tri1",
...                     config=TriConfig(num_leaves=2000, totgauss=11000))  # doctest: +SKIP
>>> summary.num_pdfs > 200  # doctest: +SKIP
True
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr.align.io import read_alignments
from asr.errors import AsrError, EstimationError, FeatureError, TrainingError
from asr.features.io import write_kaldi_matrix
from asr.features.pipeline import FeaturePipelineConfig, load_features, read_feature_config
from asr.fileio import atomic_write
from asr.gmm.lda_mllt import estimate_mllt, transform_means
from asr.gmm.loop import GmmTrainer, IterationStats, LoopConfig, TrainingState
from asr.gmm.training import FromAlignmentsStrategy, TrainingRun, run_training
from asr.gmm.triphone_start import (
    build_triphone_start,
    convert_alignments,
    load_start,
    mllt_stats_job,
    project_features,
    save_start,
    start_state,
)
from asr.hmm.build_tree import TreeConfig
from asr.hmm.model import HmmModel
from asr.lang import Lang, read_lang
from asr.parallel import map_jobs, split_mapping

__all__ = [
    "FEATURE_MODES",
    "MlltUpdate",
    "TriConfig",
    "TriSummary",
    "TriTraining",
    "convert_alignments",
    "train_tri",
]  # convert_alignments: re-exported from asr.gmm.triphone_start

FEATURE_MODES = ("deltas", "lda_mllt")
TRANSFORM_FILE = "final.mat"


@dataclass(frozen=True)
class TriConfig:
    """Options of :func:`train_tri` (Kaldi's ``train_deltas.sh``/``train_lda_mllt.sh``
    defaults; ``num_leaves``/``totgauss`` as Kaldi's an4 tri1)."""

    feature_mode: str = "deltas"
    num_leaves: int = 2000
    totgauss: int = 10000
    num_iters: int = 35
    max_iter_inc: int = 25
    realign_iters: tuple[int, ...] = (10, 20, 30)
    mllt_iters: tuple[int, ...] = (2, 4, 6, 12)
    lda_dim: int = 40
    splice: tuple[int, int] = (3, 3)
    mllt_num_iters: int = 200  # est-mllt's row-update sweeps
    tree_thresh: float = 300.0
    cluster_thresh: float = -1.0
    boost_silence: float = 1.0
    power: float = 0.25
    beam: float = 10.0
    retry_beam: float = 40.0
    min_gaussian_occupancy: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.feature_mode not in FEATURE_MODES:
            raise TrainingError(
                f"feature_mode must be one of {FEATURE_MODES}, got {self.feature_mode!r}"
            )
        if self.num_iters < 2 or self.max_iter_inc < 1 or self.totgauss < 1:
            raise TrainingError("num_iters must be >= 2, max_iter_inc and totgauss >= 1")
        if self.num_leaves < 1 or self.lda_dim < 1 or min(self.splice) < 0:
            raise TrainingError("num_leaves and lda_dim must be >= 1, splice context >= 0")
        for name in ("realign_iters", "mllt_iters", "splice"):
            object.__setattr__(self, name, tuple(int(x) for x in getattr(self, name)))

    def to_dict(self) -> dict:
        obj = dataclasses.asdict(self)
        for name in ("realign_iters", "mllt_iters", "splice"):
            obj[name] = list(obj[name])
        return obj

    def loop_config(self) -> LoopConfig:
        """The training loop's options (iterations start at 1, as Kaldi's ``1.mdl``; every
        re-alignment with ``beam``, retry beam 4 times that)."""
        return LoopConfig(
            num_iters=self.num_iters,
            max_iter_inc=self.max_iter_inc,
            totgauss=self.totgauss,
            realign_iters=self.realign_iters,
            boost_silence=self.boost_silence,
            power=self.power,
            beam=self.beam,
            later_beam=self.beam,
            min_gaussian_occupancy=self.min_gaussian_occupancy,
            seed=self.seed,
        )


@dataclass(frozen=True)
class MlltUpdate:
    """One MLLT update at ``iteration``: the auxiliary objective per frame before and after."""

    iteration: int
    objective_before: float
    objective_after: float


@dataclass(frozen=True)
class TriSummary:
    """Result of :func:`train_tri`."""

    out_dir: str
    feature_mode: str
    feature_dim: int
    num_pdfs: int
    num_gauss: int
    num_converted: int
    tree_objf_gain_per_frame: float
    iterations: tuple[IterationStats, ...]
    mllt: tuple[MlltUpdate, ...]
    num_aligned: int
    num_failed: int
    seconds: float
    resumed_from: int | None = None

    @property
    def log_like_per_frame(self) -> list[float]:
        return [it.log_like_per_frame for it in self.iterations]


def _load_mllt(init_dir: Path, before_iter: int) -> tuple[np.ndarray | None, list[MlltUpdate]]:
    """The latest MLLT-composed transform saved for an iteration ``< before_iter``, and the
    updates so far."""
    found = []
    for path in init_dir.glob("mllt_*.npz"):
        iteration = int(path.stem.split("_")[1])
        if iteration < before_iter:
            found.append((iteration, path))
    matrix, updates = None, []
    for iteration, path in sorted(found):
        with np.load(path) as data:
            matrix = data["transform"].copy()
            before, after = (float(v) for v in data["objectives"])
        updates.append(MlltUpdate(iteration, before, after))
    return matrix, updates


class TriTraining(FromAlignmentsStrategy):
    """The triphone strategy: the start from the previous model's alignment (tree, GMMs,
    LDA in ``"lda_mllt"`` mode), MLLT updates before the ``mllt_iters``, ``final.mat``."""

    log_format = "asr-train-tri"
    summary_type = TriSummary
    trailing_log_fields = ("mllt",)

    def __init__(self, config: TriConfig) -> None:
        self.config = config
        self.mllt_updates: list[MlltUpdate] = []
        self.transform: np.ndarray | None = None

    def load_inputs(self, run: TrainingRun) -> Lang:
        try:
            lang = read_lang(run.lang_dir)
            self.old_model = HmmModel.load(run.ali_dir)
            self.old_model.check_phones(lang.phones, what=f"{run.lang_dir}")
            self.old_alignments = read_alignments(run.ali_dir / "ali")
        except AsrError as err:
            raise TrainingError(f"cannot read the inputs: {err}") from None
        base = read_feature_config(run.data_dir)
        if self.config.feature_mode == "deltas":
            self.pipeline = FeaturePipelineConfig(cmvn="speaker", deltas=2, base=base)
        else:
            self.pipeline = FeaturePipelineConfig(
                cmvn="speaker", deltas=0, splice=self.config.splice, transform=TRANSFORM_FILE,
                base=base,
            )  # fmt: skip
        try:
            self.raw = load_features(
                run.data_dir, dataclasses.replace(self.pipeline, transform=None)
            )
        except FeatureError as err:
            raise TrainingError(f"cannot load features: {err}") from None
        self.feats = self.raw
        return lang

    def prepare(self, run: TrainingRun, executor: concurrent.futures.Executor | None) -> HmmModel:
        config = self.config
        start = (
            load_start(run.init_dir, config.to_dict(), with_lda=config.feature_mode == "lda_mllt")
            if run.checkpoint.is_file()
            else None
        )
        if start is None:
            run.checkpoint.unlink(missing_ok=True)
            shutil.rmtree(run.init_dir, ignore_errors=True)
            start, self.feats = build_triphone_start(
                feature_mode=config.feature_mode,
                tree_config=TreeConfig(
                    num_leaves=config.num_leaves,
                    thresh=config.tree_thresh,
                    cluster_thresh=config.cluster_thresh,
                ),
                lda_dim=config.lda_dim, lang=run.lang, lang_dir=run.lang_dir,
                old_model=self.old_model, old_alignments=self.old_alignments, feats=self.raw,
                split=run.split, pool=executor,
            )  # fmt: skip
            save_start(run.init_dir, start, config.to_dict())
        else:
            self.feats = self.raw if start.lda is None else project_features(self.raw, start.lda)
        self.start, self.transform = start, start.lda
        self.run, self.executor = run, executor
        return start.model

    def initial_state(self, trainer: GmmTrainer) -> TrainingState:
        return start_state(self.start)

    def resume(self, state: TrainingState, trainer: GmmTrainer) -> None:
        latest, self.mllt_updates = _load_mllt(self.run.init_dir, state.next_iter)
        if latest is not None:
            self.transform = latest
            trainer.feats = project_features(self.raw, latest)

    def before_iteration(self, state: TrainingState, trainer: GmmTrainer) -> None:
        if self.config.feature_mode == "lda_mllt" and state.next_iter in self.config.mllt_iters:
            self.transform, update = _mllt_update(
                state, trainer, self.config, raw=self.raw, transform=self.transform,
                silence=tuple(self.run.lang.silence_phone_ids), split=self.run.split,
                pool=self.executor, init_dir=self.run.init_dir,
            )  # fmt: skip
            self.mllt_updates.append(update)

    def write_outputs(self, run, trainer, state, final_model, alignments) -> None:
        if self.transform is not None:
            write_kaldi_matrix(run.out_dir / TRANSFORM_FILE, self.transform)
        self.pipeline.save(run.out_dir)

    def summary(self, state: TrainingState, **common: Any) -> TriSummary:
        return TriSummary(
            feature_mode=self.config.feature_mode,
            feature_dim=state.gmm.dim,
            num_converted=len(self.start.alignments),
            tree_objf_gain_per_frame=self.start.tree_objf_gain_per_frame,
            mllt=tuple(self.mllt_updates),
            **common,
        )

    @staticmethod
    def summary_fields_from_log(values: dict) -> dict:
        return {**values, "mllt": tuple(MlltUpdate(**m) for m in values["mllt"])}


def train_tri(
    data_dir: str | os.PathLike,
    lang_dir: str | os.PathLike,
    ali_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    config: TriConfig | None = None,
    num_jobs: int = 1,
    executor: concurrent.futures.Executor | None = None,
    progress: Callable[[IterationStats], None] | None = None,
    force: bool = False,
) -> TriSummary:
    """Train a triphone model from the model and alignment in ``ali_dir`` (see the module
    docstring); returns a :class:`TriSummary`. An up-to-date finished model (same config) is
    kept unless ``force``; an interrupted run resumes after its last finished iteration."""
    return run_training(
        TriTraining(config or TriConfig()), data_dir, lang_dir, out_dir, ali_dir=ali_dir,
        num_jobs=num_jobs, executor=executor, progress=progress, force=force,
    )  # fmt: skip


def _mllt_update(
    state: TrainingState,
    trainer: GmmTrainer,
    config: TriConfig,
    *,
    raw: Mapping[str, np.ndarray],
    transform: np.ndarray,
    silence: tuple[int, ...],
    split: list[tuple[str, ...]],
    pool: concurrent.futures.Executor | None,
    init_dir: Path,
) -> tuple[np.ndarray, MlltUpdate]:
    """MLLT at iteration ``state.next_iter``: statistics with the current model and alignment,
    ``A`` by ``est-mllt``, means ``A mu``, features re-projected with ``A @ transform``."""
    x = state.next_iter
    tm = trainer.model_with(state.log_probs).transition_model
    jobs = [
        (f, a, tm, state.gmm, silence)
        for f, a in zip(
            split_mapping(trainer.feats, split), split_mapping(state.alignments, split), strict=True
        )
    ]
    parts = map_jobs(mllt_stats_job, jobs, pool)
    acc = parts[0]
    for part in parts[1:]:
        acc.merge(part)
    # all parts come from state.gmm; its fingerprint (float sums) computed in a worker with
    # another torch thread count can differ in the last bits from this process's
    acc.model_fingerprint = None
    try:
        result = estimate_mllt(
            acc, state.gmm, current_transform=torch.from_numpy(transform),
            num_iters=config.mllt_num_iters,
        )  # fmt: skip
    except EstimationError as err:
        raise TrainingError(f"iteration {x}: MLLT estimation failed: {err}") from None
    new_transform = result.transform.numpy()
    update = MlltUpdate(x, result.objective_before, result.objective_after)
    buffer_path = init_dir / f"mllt_{x}.npz"
    with atomic_write(buffer_path, "wb") as handle:
        np.savez(
            handle,
            transform=new_transform,
            objectives=np.array([update.objective_before, update.objective_after]),
        )
    state.gmm = transform_means(state.gmm, result.delta)
    trainer.feats = project_features(raw, new_transform)
    return new_transform, update
