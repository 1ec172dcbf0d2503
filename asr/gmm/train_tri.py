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
4. Iterations ``x = 1 .. num_iters - 1`` of the monophone trainer's loop
   (:mod:`asr.gmm.train_mono`: re-align on ``realign_iters``, Viterbi statistics, ML update,
   transition update, mixing up towards ``totgauss``); in ``"lda_mllt"`` mode, on
   ``mllt_iters`` first an MLLT update (``gmm-acc-mllt`` + ``est-mllt`` with silence weighted
   0): the features' transform becomes ``A @ M`` and the means ``A mu``
   (``gmm-transform-means``). The MLLT statistics use the alignment the iteration starts
   with; Kaldi re-aligns first when an iteration is in both lists (by default none is).
5. Final alignment ``ali/``.

Checkpoint/resume as in the monophone trainer: the starting model (tree, GMM, LDA) lives in
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
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asr.align.aligner import GMM_FILE, map_jobs, split_by_speaker
from asr.align.io import read_alignments, write_alignments, write_failed
from asr.align.training_graphs import TrainingGraph
from asr.errors import AsrError, EstimationError, FeatureError, TrainingError
from asr.features.pipeline import FeaturePipelineConfig, load_features, read_feature_config
from asr.fileio import atomic_write, atomic_write_text, is_up_to_date
from asr.gmm.diag_gmm import DiagGmmSet
from asr.gmm.lda_mllt import estimate_mllt, transform_means
from asr.gmm.train_mono import (
    CHECKPOINT_FILE,
    TRAIN_LOG_FILE,
    IterationStats,
    MonoConfig,
    _compile_job,
    _load_checkpoint,
    _save_checkpoint,
    _State,
    _Trainer,
)
from asr.gmm.triphone_start import (
    TriphoneStart,
    build_triphone_start,
    convert_alignments,
    mllt_stats_job,
    project_features,
    split_jobs,
    write_kaldi_matrix,
)
from asr.hmm.build_tree import TreeConfig
from asr.hmm.model import HmmModel
from asr.lang import read_lang

__all__ = [
    "FEATURE_MODES",
    "MlltUpdate",
    "TriConfig",
    "TriSummary",
    "convert_alignments",
    "train_tri",
]  # convert_alignments: re-exported from asr.gmm.triphone_start

FEATURE_MODES = ("deltas", "lda_mllt")
TRANSFORM_FILE = "final.mat"
INIT_DIR = "init"


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

    def mono_config(self) -> MonoConfig:
        """The shared iteration loop's options (iterations start at 1, as Kaldi's ``1.mdl``)."""
        return MonoConfig(
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


def _save_start(init_dir: Path, start: TriphoneStart, config: TriConfig) -> None:
    init_dir.mkdir(parents=True, exist_ok=True)
    start.gmm.save(init_dir / GMM_FILE)
    write_alignments(start.alignments, init_dir / "ali")
    if start.lda is not None:
        write_kaldi_matrix(init_dir / "lda.mat", start.lda)
    meta = {"config": config.to_dict(), "tree_objf_gain_per_frame": start.tree_objf_gain_per_frame}
    atomic_write_text(init_dir / "start.json", json.dumps(meta) + "\n")
    start.model.save(init_dir)  # hmm.json last: a complete start


def _load_start(init_dir: Path, config: TriConfig) -> TriphoneStart | None:
    from asr.features.io import read_matrix

    try:
        meta = json.loads((init_dir / "start.json").read_text(encoding="utf-8"))
        if meta["config"] != config.to_dict() or not (init_dir / "hmm.json").is_file():
            return None
        lda = read_matrix(init_dir / "lda.mat") if config.feature_mode == "lda_mllt" else None
        return TriphoneStart(
            model=HmmModel.load(init_dir),
            gmm=DiagGmmSet.load(init_dir / GMM_FILE),
            alignments=read_alignments(init_dir / "ali"),
            lda=None if lda is None else np.asarray(lda, dtype=np.float64),
            tree_objf_gain_per_frame=float(meta["tree_objf_gain_per_frame"]),
        )
    except (OSError, KeyError, ValueError, AsrError):
        return None


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


# ------------------------------------------------------------------------------ training
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
    config = config or TriConfig()
    start_time = time.perf_counter()
    data_dir, lang_dir = Path(data_dir), Path(lang_dir)
    ali_dir, out_dir = Path(ali_dir), Path(out_dir)
    inputs = [data_dir / n for n in ("feats.scp", "cmvn.scp", "text", "utt2spk")]
    inputs += [lang_dir / n for n in ("L.fst", "phones.txt", "words.txt", "topo")]
    inputs += [ali_dir / "ali" / "ali.scp", ali_dir / "hmm.json"]
    log_path = out_dir / TRAIN_LOG_FILE
    if not force and is_up_to_date([log_path, out_dir / GMM_FILE], inputs):
        done = _read_summary(log_path)
        if done is not None and done[0] == config.to_dict():
            return done[1]
    for path in (data_dir / "feats.scp", data_dir / "text", ali_dir / "ali" / "ali.scp"):
        if not path.is_file():
            raise TrainingError(f"{path}: not found")
    try:
        lang = read_lang(lang_dir)
        old_model = HmmModel.load(ali_dir)
        old_model.check_phones(lang.phones, what=f"{lang_dir}")
        old_alignments = read_alignments(ali_dir / "ali")
    except AsrError as err:
        raise TrainingError(f"cannot read the inputs: {err}") from None
    from asr.data import read_kaldi_map

    base = read_feature_config(data_dir)
    if config.feature_mode == "deltas":
        pipeline = FeaturePipelineConfig(cmvn="speaker", deltas=2, base=base)
    else:
        pipeline = FeaturePipelineConfig(
            cmvn="speaker", deltas=0, splice=config.splice, transform=TRANSFORM_FILE, base=base
        )
    try:
        raw = load_features(data_dir, dataclasses.replace(pipeline, transform=None))
    except FeatureError as err:
        raise TrainingError(f"cannot load features: {err}") from None
    texts = read_kaldi_map(data_dir / "text")
    utt2spk = read_kaldi_map(data_dir / "utt2spk") if (data_dir / "utt2spk").is_file() else {}
    utt_ids = sorted(texts)
    old_alignments = matching_alignments(old_alignments, raw, texts, ali_dir / "ali")
    split = split_by_speaker(utt_ids, utt2spk, num_jobs)
    checkpoint = out_dir / CHECKPOINT_FILE
    init_dir = out_dir / INIT_DIR
    mono_config = config.mono_config()
    own_pool = executor is None and num_jobs > 1 and len(split) > 1
    pool = _worker_pool(len(split)) if own_pool else executor
    try:
        start = _load_start(init_dir, config) if checkpoint.is_file() else None
        if start is None:
            checkpoint.unlink(missing_ok=True)
            shutil.rmtree(init_dir, ignore_errors=True)
            start, feats = build_triphone_start(
                feature_mode=config.feature_mode,
                tree_config=TreeConfig(
                    num_leaves=config.num_leaves,
                    thresh=config.tree_thresh,
                    cluster_thresh=config.cluster_thresh,
                ),
                lda_dim=config.lda_dim, lang=lang, lang_dir=lang_dir, old_model=old_model,
                old_alignments=old_alignments, feats=raw, split=split, pool=pool,
            )  # fmt: skip
            _save_start(init_dir, start, config)
            state = None
        else:
            feats = raw if start.lda is None else project_features(raw, start.lda)
            state = _load_checkpoint(checkpoint, config)
        model = start.model
        transform = start.lda
        mllt_updates: list[MlltUpdate] = []
        if state is not None:
            latest, mllt_updates = _load_mllt(init_dir, state.next_iter)
            if latest is not None:
                transform = latest
                feats = project_features(raw, transform)
        graphs, compile_failed = _compile_graphs(lang_dir, model, texts, len(split), pool)
        trainer = _Trainer(
            config=mono_config, model=model, lang=lang, feats=feats, graphs=graphs, split=split,
            executor=pool,
        )  # fmt: skip
        resumed_from = state.next_iter if state is not None else None
        state = state or start_state(start)
        silence = tuple(lang.silence_phone_ids)

        def before_iteration(x: int) -> None:
            nonlocal transform
            if config.feature_mode == "lda_mllt" and x in config.mllt_iters:
                transform, update = _mllt_update(
                    state, trainer, config, raw=raw, transform=transform, silence=silence,
                    split=split, pool=pool, init_dir=init_dir,
                )  # fmt: skip
                mllt_updates.append(update)

        run_iterations(
            trainer, state, config, num_iters=config.num_iters, checkpoint=checkpoint,
            before_iteration=before_iteration, progress=progress,
        )  # fmt: skip
        final_model = trainer.model_with(state.log_probs)
        alignments, failed = trainer.final_alignment(state.gmm, final_model.transition_model)
    finally:
        if own_pool and pool is not None:
            pool.shutdown()
    failed = {**compile_failed, **failed}
    if transform is not None:
        write_kaldi_matrix(out_dir / TRANSFORM_FILE, transform)
    final_model.save(out_dir)
    state.gmm.save(out_dir / GMM_FILE)
    pipeline.save(out_dir)
    write_alignments(alignments, out_dir / "ali")
    write_failed(failed, out_dir / "ali")
    summary = TriSummary(
        out_dir=str(out_dir),
        feature_mode=config.feature_mode,
        feature_dim=state.gmm.dim,
        num_pdfs=state.gmm.num_pdfs,
        num_gauss=state.gmm.num_gauss,
        num_converted=len(start.alignments),
        tree_objf_gain_per_frame=start.tree_objf_gain_per_frame,
        iterations=tuple(IterationStats(**entry) for entry in state.log),
        mllt=tuple(mllt_updates),
        num_aligned=len(alignments),
        num_failed=len(failed),
        seconds=time.perf_counter() - start_time,
        resumed_from=resumed_from,
    )
    log = {
        "format": "asr-train-tri",
        "family": "gmm",
        "config": config.to_dict(),
        "data_dir": str(data_dir),
        "lang_dir": str(lang_dir),
        "ali_dir": str(ali_dir),
        "num_jobs": num_jobs,
        **{k: v for k, v in dataclasses.asdict(summary).items() if k not in ("iterations", "mllt")},
        "mllt": [dataclasses.asdict(m) for m in mllt_updates],
        "iterations": state.log,
        "failed": failed,
    }
    atomic_write_text(log_path, json.dumps(log, indent=2) + "\n")
    checkpoint.unlink(missing_ok=True)
    shutil.rmtree(init_dir, ignore_errors=True)
    return summary


def matching_alignments(
    alignments: Mapping[str, np.ndarray],
    feats: Mapping[str, np.ndarray],
    texts: Mapping[str, str],
    ali_dir: Path,
) -> dict[str, np.ndarray]:
    """The alignments of utterances with features and a transcript; :class:`TrainingError`
    when one's length differs from its features' (another front end or frame shift)."""
    bad = [u for u, a in alignments.items() if u in feats and len(a) != len(feats[u])]
    if bad:
        raise TrainingError(
            f"{ali_dir}: alignment of {bad[0]} has {len(alignments[bad[0]])} frames, "
            f"the features {len(feats[bad[0]])} ({len(bad)} such utterances)"
        )
    return {u: a for u, a in alignments.items() if u in texts and u in feats}


def start_state(start: TriphoneStart) -> _State:
    """The training state before iteration 1: the start's GMMs, transitions and alignment."""
    return _State(
        next_iter=1,
        gmm=start.gmm,
        log_probs=start.model.transition_model.log_probs.copy(),
        num_gauss=start.gmm.num_gauss,
        alignments=dict(start.alignments),
        failed={},
        log=[],
    )


def run_iterations(
    trainer: _Trainer,
    state: _State,
    config,
    *,
    num_iters: int,
    checkpoint: Path,
    before_iteration: Callable[[int], None],
    progress: Callable[[IterationStats], None] | None,
) -> None:
    """Iterations ``state.next_iter .. num_iters - 1``: ``before_iteration(x)`` (a feature-space
    update: MLLT, fMLLR), the trainer's iteration, a checkpoint (``config.to_dict()``)."""
    while state.next_iter < num_iters:
        before_iteration(state.next_iter)
        stats = trainer.iteration(state)
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        _save_checkpoint(checkpoint, state, config)
        if progress is not None:
            progress(stats)


def _single_threaded_worker() -> None:
    torch.set_num_threads(1)


def _worker_pool(num_jobs: int) -> concurrent.futures.ProcessPoolExecutor:
    """The default executor for ``num_jobs > 1``: spawned processes with one torch thread
    each (as Kaldi's jobs are single-threaded). With torch's default, ``num_jobs`` workers
    oversubscribe the cores and every small tensor op waits on OpenMP barriers: scoring a
    mixed-up GMM measured ~20x slower."""
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=num_jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_single_threaded_worker,
    )


def _compile_graphs(
    lang_dir: Path,
    model: HmmModel,
    texts: Mapping[str, str],
    num_jobs: int,
    pool: concurrent.futures.Executor | None,
) -> tuple[dict[str, TrainingGraph], dict[str, str]]:
    """Training graphs per utterance, each distinct transcript compiled once (utterances with
    the same words share one graph), the transcripts spread over ``num_jobs`` jobs."""
    by_text: dict[str, list[str]] = {}
    for utt_id, text in texts.items():
        by_text.setdefault(" ".join(text.split()), []).append(utt_id)
    unique = sorted(by_text)
    jobs = [
        (str(lang_dir), model, {f"t{i}": unique[i] for i in range(k, len(unique), num_jobs)})
        for k in range(min(num_jobs, len(unique)))
    ]
    graphs: dict[str, TrainingGraph] = {}
    failed: dict[str, str] = {}
    for job_graphs, job_failed in map_jobs(_compile_job, jobs, pool):
        for key, graph in job_graphs.items():
            graphs.update(dict.fromkeys(by_text[unique[int(key[1:])]], graph))
        for key, reason in job_failed.items():
            failed.update(dict.fromkeys(by_text[unique[int(key[1:])]], reason))
    return graphs, failed


def _mllt_update(
    state: _State,
    trainer: _Trainer,
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
            split_jobs(trainer.feats, split), split_jobs(state.alignments, split), strict=True
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


def _read_summary(path: Path) -> tuple[dict, TriSummary] | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        fields = {f.name for f in dataclasses.fields(TriSummary)} - {"iterations", "mllt"}
        summary = TriSummary(
            **{k: obj[k] for k in fields},
            iterations=tuple(IterationStats(**e) for e in obj["iterations"]),
            mllt=tuple(MlltUpdate(**m) for m in obj["mllt"]),
        )
        return obj["config"], summary
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        return None
