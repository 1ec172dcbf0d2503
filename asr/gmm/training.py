"""The GMM training loop shared by the monophone, triphone and SAT trainers.

:func:`run_training` is the one template every GMM trainer runs (Kaldi's ``train_mono.sh``,
``train_deltas.sh``, ``train_lda_mllt.sh`` and ``train_sat.sh`` share it too):

1. an up-to-date finished model (``train_log.json`` newer than the inputs, same config) is
   kept; else the inputs are checked and read;
2. the utterances are split into jobs by speaker (:func:`asr.parallel.split_by_speaker`), run
   on the caller's executor or a default process pool (:func:`asr.parallel.job_executor`);
3. the strategy builds (or reloads) its starting model, training graphs are compiled, and the
   loop starts from the strategy's initial state or resumes from ``checkpoint.npz``;
4. iterations (:class:`asr.gmm.loop.GmmTrainer`): the strategy's feature-space update (MLLT,
   fMLLR), then (re-)alignment or the given alignment, statistics, ML update, transition
   update, mixing up; the state (:class:`asr.gmm.loop.TrainingState`) is checkpointed after
   every iteration, so a rerun resumes exactly; each iteration's wall time, CPU time (this
   process and the job workers) and peak memory go to ``iteration_times.json``
   (:class:`asr.timing.IterationTimes`);
5. the final alignment, the outputs (HMM files, ``gmm.pt``, ``ali/``, the strategy's extra
   files) and ``train_log.json`` last.

A :class:`TrainingStrategy` fills in what differs: its config, inputs, starting model and
initial state, what happens before an iteration and its extra outputs and summary
(:class:`asr.gmm.train_mono.MonoTraining`, :class:`asr.gmm.train_tri.TriTraining`,
:class:`asr.gmm.train_sat.SatTraining`). Jobs' statistics merge in job order, so results do
not depend on the executor.

>>> from asr.gmm.train_mono import MonoConfig, MonoTraining  # doctest: +SKIP
>>> run_training(MonoTraining(MonoConfig()), "data/train", "data/lang", "exp/mono")  # doctest: +SKIP
"""

from __future__ import annotations

import abc
import concurrent.futures
import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from asr.align.io import write_alignments, write_failed
from asr.align.training_graphs import TrainingGraph, TrainingGraphCompiler
from asr.errors import TrainingError
from asr.fileio import atomic_write_text, is_up_to_date, touch
from asr.gmm.gmm_acoustic import GMM_FILE
from asr.gmm.loop import (
    GmmTrainer,
    IterationStats,
    LoopConfig,
    TrainingState,
    load_checkpoint,
    save_checkpoint,
)
from asr.hmm.model import HmmModel
from asr.lang import Lang, read_lang
from asr.parallel import job_executor, map_jobs, split_by_speaker
from asr.timing import ITERATION_TIMES_FILE, IterationTimes

__all__ = [
    "CHECKPOINT_FILE",
    "INIT_DIR",
    "TRAIN_LOG_FILE",
    "FromAlignmentsStrategy",
    "TrainingConfig",
    "TrainingRun",
    "TrainingStrategy",
    "compile_graphs",
    "matching_alignments",
    "read_summary",
    "run_training",
]

TRAIN_LOG_FILE = "train_log.json"
CHECKPOINT_FILE = "checkpoint.npz"
INIT_DIR = "init"  # a strategy's starting point while training runs (triphone, SAT)


# ------------------------------------------------------------------------------ inputs
def read_summary(
    path: Path, summary_type: type, convert: Callable[[dict], dict] | None = None
) -> tuple[dict, Any] | None:
    """``(config dict, summary)`` from a finished run's ``train_log.json`` (None when it is
    missing or unreadable): the fields of ``summary_type`` (a dataclass with an
    ``iterations`` field of :class:`IterationStats`), others converted by ``convert``."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        names = {f.name for f in dataclasses.fields(summary_type)} - {"iterations"}
        values = {k: obj[k] for k in names}
        if convert is not None:
            values = convert(values)
        summary = summary_type(
            **values, iterations=tuple(IterationStats(**e) for e in obj["iterations"])
        )
        return obj["config"], summary
    except (OSError, KeyError, TypeError, ValueError):
        return None


def _compile_job(args: tuple[str, HmmModel, dict[str, str]]) -> tuple[dict, dict]:
    lang_dir, model, texts = args
    compiler = TrainingGraphCompiler(lang=read_lang(lang_dir), model=model)
    return compiler.compile_many(texts)


def compile_graphs(
    lang_dir: Path,
    model: HmmModel,
    texts: Mapping[str, str],
    num_jobs: int,
    executor: concurrent.futures.Executor | None,
) -> tuple[dict[str, TrainingGraph], dict[str, str]]:
    """Training graphs per utterance, each distinct transcript compiled once (utterances with
    the same words share one graph), the transcripts spread over ``num_jobs`` jobs; and the
    utterances that could not be compiled (sorted) with the reason."""
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
    for job_graphs, job_failed in map_jobs(_compile_job, jobs, executor):
        for key, graph in job_graphs.items():
            graphs.update(dict.fromkeys(by_text[unique[int(key[1:])]], graph))
        for key, reason in job_failed.items():
            failed.update(dict.fromkeys(by_text[unique[int(key[1:])]], reason))
    return graphs, dict(sorted(failed.items()))


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


# ------------------------------------------------------------------------------ template
@dataclass
class TrainingRun:
    """One run's directories and what the template has read (for the strategy's hooks)."""

    data_dir: Path
    lang_dir: Path
    out_dir: Path
    ali_dir: Path | None
    num_jobs: int
    lang: Lang | None = None
    texts: dict[str, str] = dataclasses.field(default_factory=dict)
    utt2spk: dict[str, str] = dataclasses.field(default_factory=dict)
    split: list[tuple[str, ...]] = dataclasses.field(default_factory=list)

    @property
    def checkpoint(self) -> Path:
        return self.out_dir / CHECKPOINT_FILE

    @property
    def init_dir(self) -> Path:
        return self.out_dir / INIT_DIR

    @property
    def log_path(self) -> Path:
        return self.out_dir / TRAIN_LOG_FILE


class TrainingConfig(Protocol):
    """What the template needs of a strategy's config."""

    def to_dict(self) -> dict:
        """The config as saved in checkpoints and ``train_log.json`` (JSON types)."""
        ...

    def loop_config(self) -> LoopConfig:
        """The iteration loop's options."""
        ...


class TrainingStrategy(abc.ABC):
    """What one kind of GMM training adds to :func:`run_training` (see the module docstring).

    ``config`` is the strategy's own config; ``feats`` holds the training features once
    :meth:`load_inputs` has run (a strategy that changes them between iterations sets
    ``trainer.feats``)."""

    log_format: ClassVar[str]
    family: ClassVar[str] = "gmm"
    summary_type: ClassVar[type]
    trailing_log_fields: ClassVar[tuple[str, ...]] = ()  # summary fields logged last
    uses_init_dir: ClassVar[bool] = False

    config: TrainingConfig
    feats: Mapping[str, np.ndarray]

    def config_dict(self) -> dict:
        """The config as saved in checkpoints and ``train_log.json``."""
        return self.config.to_dict()

    def loop_config(self) -> LoopConfig:
        """The iteration loop's options."""
        return self.config.loop_config()

    def input_files(self, run: TrainingRun) -> list[Path]:
        """Files whose change makes a finished model out of date."""
        inputs = [run.data_dir / n for n in ("feats.scp", "cmvn.scp", "text", "utt2spk")]
        return inputs + [run.lang_dir / n for n in ("L.fst", "phones.txt", "words.txt", "topo")]

    def output_files(self, run: TrainingRun) -> list[Path]:
        """Files a finished model has."""
        return [run.log_path, run.out_dir / GMM_FILE]

    def required_files(self, run: TrainingRun) -> list[Path]:
        """Files that must exist to start."""
        return [run.data_dir / "feats.scp", run.data_dir / "text"]

    @abc.abstractmethod
    def load_inputs(self, run: TrainingRun) -> Lang:
        """Read the lang dir (returned) and the strategy's inputs; set ``self.feats``."""

    def select_alignments(self, run: TrainingRun) -> None:  # noqa: B027 - optional hook
        """Restrict the strategy's input alignments to usable utterances (``run.texts``)."""

    @abc.abstractmethod
    def prepare(self, run: TrainingRun, executor: concurrent.futures.Executor | None) -> HmmModel:
        """Build (or reload from ``run.init_dir``) the starting point; returns the model
        whose training graphs the loop uses."""

    @abc.abstractmethod
    def initial_state(self, trainer: GmmTrainer) -> TrainingState:
        """The state before the first iteration."""

    def resume(self, state: TrainingState, trainer: GmmTrainer) -> None:  # noqa: B027
        """Restore what the checkpoint does not hold (feature transforms) for ``state``."""

    def before_iteration(self, state: TrainingState, trainer: GmmTrainer) -> None:  # noqa: B027
        """A feature-space update before iteration ``state.next_iter`` (MLLT, fMLLR)."""

    @abc.abstractmethod
    def write_outputs(
        self,
        run: TrainingRun,
        trainer: GmmTrainer,
        state: TrainingState,
        final_model: HmmModel,
        alignments: Mapping[str, np.ndarray],
    ) -> None:
        """The strategy's outputs besides the HMM files, ``gmm.pt`` and ``ali/`` (at least
        ``feature_pipeline.json``)."""

    @abc.abstractmethod
    def summary(self, state: TrainingState, **common: Any) -> Any:
        """The run's summary (``common``: the fields every summary has)."""

    @staticmethod
    def summary_fields_from_log(values: dict) -> dict:
        """Convert fields read back from ``train_log.json`` (JSON types) for the summary."""
        return values


class FromAlignmentsStrategy(TrainingStrategy):
    """A strategy that starts from a previous model dir ``run.ali_dir`` and its final
    alignment ``ali_dir/ali`` (triphone, SAT): those are inputs, and its :meth:`load_inputs`
    sets ``old_alignments`` (restricted here to the usable utterances of ``feats``)."""

    uses_init_dir = True

    old_alignments: dict[str, np.ndarray]

    def input_files(self, run: TrainingRun) -> list[Path]:
        return super().input_files(run) + [
            run.ali_dir / "ali" / "ali.scp",
            run.ali_dir / "hmm.json",
        ]

    def required_files(self, run: TrainingRun) -> list[Path]:
        return super().required_files(run) + [run.ali_dir / "ali" / "ali.scp"]

    def select_alignments(self, run: TrainingRun) -> None:
        self.old_alignments = matching_alignments(
            self.old_alignments, self.feats, run.texts, run.ali_dir / "ali"
        )


def run_training(
    strategy: TrainingStrategy,
    data_dir: str | os.PathLike,
    lang_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    ali_dir: str | os.PathLike | None = None,
    num_jobs: int = 1,
    executor: concurrent.futures.Executor | None = None,
    progress: Callable[[IterationStats], None] | None = None,
    force: bool = False,
) -> Any:
    """Run ``strategy``'s training (see the module docstring); returns its summary."""
    from asr.data import read_kaldi_map

    start_time = time.perf_counter()
    run = TrainingRun(
        data_dir=Path(data_dir),
        lang_dir=Path(lang_dir),
        out_dir=Path(out_dir),
        ali_dir=None if ali_dir is None else Path(ali_dir),
        num_jobs=num_jobs,
    )
    config = strategy.config_dict()
    if not force and is_up_to_date(strategy.output_files(run), strategy.input_files(run)):
        done = read_summary(run.log_path, strategy.summary_type, strategy.summary_fields_from_log)
        if done is not None and done[0] == config:
            return done[1]
    for path in strategy.required_files(run):
        if not path.is_file():
            raise TrainingError(f"{path}: not found")
    run.lang = strategy.load_inputs(run)
    run.texts = read_kaldi_map(run.data_dir / "text")
    utt2spk_path = run.data_dir / "utt2spk"
    run.utt2spk = read_kaldi_map(utt2spk_path) if utt2spk_path.is_file() else {}
    strategy.select_alignments(run)
    run.split = split_by_speaker(sorted(run.texts), run.utt2spk, num_jobs)
    loop = strategy.loop_config()
    with job_executor(len(run.split), executor) as pool:
        model = strategy.prepare(run, pool)
        graphs, compile_failed = compile_graphs(
            run.lang_dir, model, run.texts, len(run.split), pool
        )
        trainer = GmmTrainer(
            config=loop, model=model, lang=run.lang, feats=strategy.feats, graphs=graphs,
            split=run.split, executor=pool,
        )  # fmt: skip
        state = load_checkpoint(run.checkpoint, config)
        resumed_from = state.next_iter if state is not None else None
        if state is None:
            state = strategy.initial_state(trainer)
        else:
            strategy.resume(state, trainer)
        times = IterationTimes(
            run.out_dir / ITERATION_TIMES_FILE, unit="iteration", keep_before=state.next_iter
        )  # a resumed run keeps the entries of the iterations it does not repeat
        while state.next_iter < loop.num_iters:
            with times.measure(state.next_iter):
                strategy.before_iteration(state, trainer)
                stats = trainer.iteration(state)
            run.out_dir.mkdir(parents=True, exist_ok=True)
            save_checkpoint(run.checkpoint, state, config)
            if progress is not None:
                progress(stats)
        final_model = trainer.model_with(state.log_probs)
        alignments, failed = trainer.final_alignment(state.gmm, final_model.transition_model)
    failed = {**compile_failed, **failed}
    strategy.write_outputs(run, trainer, state, final_model, alignments)
    final_model.save(run.out_dir)
    state.gmm.save(run.out_dir / GMM_FILE)
    write_alignments(alignments, run.out_dir / "ali")
    write_failed(failed, run.out_dir / "ali")
    summary = strategy.summary(
        state,
        out_dir=str(run.out_dir),
        num_pdfs=state.gmm.num_pdfs,
        num_gauss=state.gmm.num_gauss,
        iterations=tuple(IterationStats(**entry) for entry in state.log),
        num_aligned=len(alignments),
        num_failed=len(failed),
        seconds=time.perf_counter() - start_time,
        resumed_from=resumed_from,
    )
    fields = dataclasses.asdict(summary)
    late = strategy.trailing_log_fields
    log = {
        "format": strategy.log_format,
        "family": strategy.family,
        "config": config,
        "data_dir": str(run.data_dir),
        "lang_dir": str(run.lang_dir),
        **({} if run.ali_dir is None else {"ali_dir": str(run.ali_dir)}),
        "num_jobs": num_jobs,
        **{k: v for k, v in fields.items() if k not in ("iterations", *late)},
        **{k: fields[k] for k in late},
        "iterations": state.log,
        "failed": failed,
    }
    atomic_write_text(run.log_path, json.dumps(log, indent=2) + "\n")
    touch(strategy.output_files(run))  # newer than the inputs now, rewritten or not
    run.checkpoint.unlink(missing_ok=True)
    if strategy.uses_init_dir:
        shutil.rmtree(run.init_dir, ignore_errors=True)
    return summary
