"""Speaker-adaptive training (tri3, Kaldi's ``steps/train_sat.sh``): a triphone GMM-HMM trained
on features mapped by one fMLLR transform per speaker (:mod:`asr.gmm.fmllr`).

From a previous model dir ``ALI_DIR`` (normally tri2: its feature pipeline, LDA+MLLT transform,
GMMs and final alignment ``ALI_DIR/ali``):

1. Speaker-independent (SI) features: ``ALI_DIR``'s pipeline (CMVN, splicing, LDA+MLLT), kept.
2. A first fMLLR per speaker with ``ALI_DIR``'s model and alignment (silence frames weighted
   ``silence_weight``); the tree, the first GMMs and the converted alignment are built on the
   adapted features (:func:`asr.gmm.triphone_start.build_triphone_start`).
3. The iterations of the shared GMM training loop (:mod:`asr.gmm.training`; re-alignment,
   Viterbi statistics, ML update, mixing up; :class:`SatTraining` is its strategy); on
   ``fmllr_iters`` every speaker's transform is re-estimated first with the current model and
   alignment (posteriors on the adapted features, statistics on the SI ones, starting from the
   current transform).
4. The final alignment, and the speaker-independent "alignment model" ``gmm_si.pt`` (same tree
   and Gaussians, re-estimated once on the SI features with posteriors from the adapted ones:
   Kaldi's ``final.alimdl``), which decodes the first pass before a test speaker has a
   transform (:mod:`asr.gmm.sat`).

Output ``OUT_DIR``: the HMM files, ``gmm.pt`` (SAT), ``gmm_si.pt``, ``feature_pipeline.json`` and
its transform (copied from ``ALI_DIR``), ``model.json`` (family ``sat``), ``trans.npz`` (the
training speakers' transforms), ``ali/`` and ``train_log.json`` (last). Interrupted runs resume
after the last finished iteration, as the other GMM trainers.

:func:`align_fmllr` aligns a data dir with a SAT model (Kaldi's ``align_fmllr.sh``: the SI
model, a transform per speaker, the SAT model on the adapted features);
:func:`asr.gmm.alignment.align_data_dir` (``asr align``) uses it for SAT model dirs.

>>> from asr.gmm.train_sat import SatConfig, train_sat
>>> summary = train_sat("data/an4/train", "data/an4/lang", "exp/an4/tri2", "exp/an4/tri3")  # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr.acoustic_model import write_model_info
from asr.align.aligner import AlignJobResult
from asr.align.io import read_alignments
from asr.errors import AsrError, EstimationError, FeatureError, TrainingError
from asr.features.io import write_kaldi_matrix
from asr.features.pipeline import load_features
from asr.fileio import atomic_write
from asr.gmm.accumulate import GmmAccumulator, GmmUpdateConfig, ml_update
from asr.gmm.diag_gmm import DiagGmmSet
from asr.gmm.fmllr import FmllrConfig, FmllrStats, apply_fmllr, estimate_fmllr
from asr.gmm.gmm_acoustic import GMM_FILE, GmmAcousticModel
from asr.gmm.loop import GmmTrainer, IterationStats, LoopConfig, TrainingState
from asr.gmm.sat import SI_GMM_FILE
from asr.gmm.train_tri import TriConfig
from asr.gmm.training import FromAlignmentsStrategy, TrainingRun, run_training
from asr.gmm.triphone_start import build_triphone_start, load_start, save_start, start_state
from asr.hmm.build_tree import TreeConfig
from asr.hmm.transition_model import TransitionModel
from asr.lang import Lang, read_lang
from asr.parallel import map_jobs, single_torch_thread, split_mapping

__all__ = [
    "SI_GMM_FILE",
    "TRANS_FILE",
    "SatConfig",
    "SatSummary",
    "SatTraining",
    "adapt_features",
    "align_fmllr",
    "estimate_speaker_transforms",
    "load_transforms",
    "save_transforms",
    "train_sat",
]

TRANS_FILE = "trans.npz"
SAT_FAMILY = "sat"


@dataclass(frozen=True)
class SatConfig:
    """Options of :func:`train_sat`: the triphone options (``tri``; Kaldi's an4 tri3 uses
    2500 leaves / 15000 Gaussians), when to re-estimate the transforms, the fMLLR options and
    the weight of silence frames in the fMLLR statistics (Kaldi: 0)."""

    tri: TriConfig = field(default_factory=lambda: TriConfig(num_leaves=2500, totgauss=15000))
    fmllr_iters: tuple[int, ...] = (2, 4, 6, 12)
    fmllr: FmllrConfig = field(default_factory=FmllrConfig)
    silence_weight: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "fmllr_iters", tuple(int(x) for x in self.fmllr_iters))
        if not 0.0 <= self.silence_weight <= 1.0:
            raise TrainingError("silence_weight must be in [0, 1]")

    @property
    def feature_mode(self) -> str:
        return SAT_FAMILY

    def loop_config(self) -> LoopConfig:
        """The training loop's options (those of the triphone options ``tri``)."""
        return self.tri.loop_config()

    def to_dict(self) -> dict:
        return {
            "tri": self.tri.to_dict(),
            "fmllr_iters": list(self.fmllr_iters),
            "fmllr": dataclasses.asdict(self.fmllr),
            "silence_weight": self.silence_weight,
        }


@dataclass(frozen=True)
class SatSummary:
    """Result of :func:`train_sat`; ``fmllr_gain_per_frame``: the mean auxiliary gain of the
    speakers' transforms at each re-estimation (iteration -> gain; 0 = the first one)."""

    out_dir: str
    feature_dim: int
    num_pdfs: int
    num_gauss: int
    num_speakers: int
    fmllr_gain_per_frame: dict[int, float]
    iterations: tuple[IterationStats, ...]
    num_aligned: int
    num_failed: int
    seconds: float
    resumed_from: int | None = None

    @property
    def log_like_per_frame(self) -> list[float]:
        return [it.log_like_per_frame for it in self.iterations]


# ------------------------------------------------------------------------------ transforms
def _speaker_fmllr_job(args: tuple) -> dict[str, tuple[np.ndarray, float, float]]:
    """One job's speakers: ``{spk_id: (transform, gain per frame, count)}``."""
    si_feats, cur_feats, alignments, utt2spk, tm, gmm, inits, sil_phones, weight, cfg = args
    stats: dict[str, FmllrStats] = {}
    with single_torch_thread():
        for utt_id, ali in alignments.items():
            if utt_id not in si_feats:
                continue
            spk_id = utt2spk.get(utt_id, utt_id)
            acc = stats.setdefault(spk_id, FmllrStats.zeros(gmm.dim))
            frame_weights = np.where(np.isin(tm.tid2phone[ali], sil_phones), weight, 1.0)
            acc.accumulate(
                gmm, si_feats[utt_id], tm.tid2pdf[ali], frame_weights=frame_weights,
                posterior_feats=cur_feats[utt_id],
            )  # fmt: skip
        out = {}
        for spk_id, acc in stats.items():
            try:
                result = estimate_fmllr(acc, init=inits.get(spk_id), config=cfg)
            except EstimationError as err:
                raise TrainingError(f"speaker {spk_id}: {err}") from None
            gain = result.objective_after - result.objective_before
            out[spk_id] = (result.transform, gain, result.count)
    return out


def estimate_speaker_transforms(
    *,
    gmm: DiagGmmSet,
    transition_model: TransitionModel,
    si_feats: Mapping[str, np.ndarray],
    cur_feats: Mapping[str, np.ndarray],
    alignments: Mapping[str, np.ndarray],
    utt2spk: Mapping[str, str],
    inits: Mapping[str, np.ndarray],
    silence_phone_ids: tuple[int, ...],
    silence_weight: float = 0.0,
    fmllr_config: FmllrConfig | None = None,
    split: list[tuple[str, ...]],
    executor: concurrent.futures.Executor | None,
) -> tuple[dict[str, np.ndarray], float]:
    """Every speaker's fMLLR transform from an alignment (statistics on ``si_feats``,
    posteriors on ``cur_feats``, silence frames weighted ``silence_weight``, starting from
    ``inits``), in jobs by ``split``; returns them and the count-weighted mean auxiliary gain
    per frame."""
    fmllr_config = fmllr_config or FmllrConfig()
    jobs = [
        (s, c, a, dict(utt2spk), transition_model, gmm, dict(inits), silence_phone_ids,
         silence_weight, fmllr_config)
        for s, c, a in zip(split_mapping(si_feats, split), split_mapping(cur_feats, split),
                           split_mapping(alignments, split), strict=True)
    ]  # fmt: skip
    transforms, gains, counts = {}, [], []
    for part in map_jobs(_speaker_fmllr_job, jobs, executor):
        for spk_id, (transform, gain, count) in part.items():
            transforms[spk_id] = transform
            gains.append(gain)
            counts.append(count)
    mean_gain = float(np.average(gains, weights=counts)) if sum(counts) > 0 else 0.0
    return transforms, mean_gain


def adapt_features(
    si_feats: Mapping[str, np.ndarray],
    transforms: Mapping[str, np.ndarray],
    utt2spk: Mapping[str, str],
) -> dict[str, np.ndarray]:
    """Each utterance mapped by its speaker's transform (unchanged when it has none)."""
    out = {}
    for utt_id, feats in si_feats.items():
        transform = transforms.get(utt2spk.get(utt_id, utt_id))
        out[utt_id] = feats if transform is None else apply_fmllr(feats, transform)
    return out


def save_transforms(path: Path, transforms: Mapping[str, np.ndarray]) -> None:
    """``{spk_id: (dim, dim + 1)}`` -> ``trans.npz`` (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    spk_ids = sorted(transforms)
    with atomic_write(path, "wb") as handle:
        np.savez(
            handle,
            spk_ids=np.array(spk_ids),
            transforms=np.stack([transforms[s] for s in spk_ids]) if spk_ids else np.zeros(0),
        )


def load_transforms(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{spk_id: (dim, dim + 1)}`` from a ``trans.npz``."""
    with np.load(path, allow_pickle=False) as data:
        return {str(s): t.copy() for s, t in zip(data["spk_ids"], data["transforms"], strict=True)}


def _latest_transforms(init_dir: Path, before_iter: int) -> dict[str, np.ndarray]:
    found = sorted(
        (int(p.stem.split("_")[1]), p)
        for p in init_dir.glob("trans_*.npz")
        if int(p.stem.split("_")[1]) < before_iter
    )
    if not found:
        raise TrainingError(f"{init_dir}: no saved speaker transforms to resume from")
    return load_transforms(found[-1][1])


def _si_model(
    gmm: DiagGmmSet,
    transition_model: TransitionModel,
    si_feats: Mapping[str, np.ndarray],
    adapted: Mapping[str, np.ndarray],
    alignments: Mapping[str, np.ndarray],
) -> DiagGmmSet:
    """The alignment model: the SAT GMMs re-estimated once on the SI features, with Gaussian
    posteriors from the adapted ones (Kaldi's ``gmm-acc-stats-twofeats`` + ``gmm-est`` keeping
    low-count Gaussians: the same structure as the SAT GMMs)."""
    acc = GmmAccumulator.for_model(gmm)
    for utt_id, ali in alignments.items():
        if utt_id not in si_feats:
            continue
        post = gmm.gaussian_posteriors(
            torch.from_numpy(adapted[utt_id]), torch.from_numpy(transition_model.tid2pdf[ali])
        )
        acc.add_gaussian_posteriors(torch.from_numpy(si_feats[utt_id]), post)
    si_gmm, _ = ml_update(gmm, acc, GmmUpdateConfig(remove_low_count_gaussians=False))
    return si_gmm


# ------------------------------------------------------------------------------ training
class SatTraining(FromAlignmentsStrategy):
    """The SAT strategy: SI features of ``ALI_DIR``'s pipeline, a first fMLLR per speaker,
    the triphone start on the adapted features, fMLLR re-estimation before the
    ``fmllr_iters``; the SI alignment model ``gmm_si.pt`` and the transforms as outputs."""

    log_format = "asr-train-sat"
    family = SAT_FAMILY
    summary_type = SatSummary

    def __init__(self, config: SatConfig) -> None:
        self.config = config
        self.transforms: dict[str, np.ndarray] | None = None
        self.gains: dict[int, float] = {}

    def input_files(self, run: TrainingRun) -> list[Path]:
        return super().input_files(run) + [run.ali_dir / GMM_FILE]

    def output_files(self, run: TrainingRun) -> list[Path]:
        return super().output_files(run) + [run.out_dir / SI_GMM_FILE]

    def load_inputs(self, run: TrainingRun) -> Lang:
        try:
            lang = read_lang(run.lang_dir)
            self.old = GmmAcousticModel.load(run.ali_dir)
            self.old.hmm.check_phones(lang.phones, what=f"{run.lang_dir}")
            self.old_alignments = read_alignments(run.ali_dir / "ali")
            self.si = load_features(run.data_dir, self.old.feature_pipeline, model_dir=run.ali_dir)
        except FeatureError as err:
            raise TrainingError(f"cannot load features: {err}") from None
        except AsrError as err:
            raise TrainingError(f"cannot read the inputs: {err}") from None
        self.feats = self.si
        return lang

    def _transforms(self, *, gmm, transition_model, cur_feats, alignments, inits):
        return estimate_speaker_transforms(
            gmm=gmm, transition_model=transition_model, si_feats=self.si, cur_feats=cur_feats,
            alignments=alignments, utt2spk=self.run.utt2spk, inits=inits,
            silence_phone_ids=tuple(self.run.lang.silence_phone_ids),
            silence_weight=self.config.silence_weight, fmllr_config=self.config.fmllr,
            split=self.run.split, executor=self.executor,
        )  # fmt: skip

    def prepare(self, run: TrainingRun, executor: concurrent.futures.Executor | None):
        self.run, self.executor = run, executor
        tri = self.config.tri
        start = (
            load_start(run.init_dir, self.config.to_dict(), with_lda=False)
            if run.checkpoint.is_file()
            else None
        )
        if start is None:
            run.checkpoint.unlink(missing_ok=True)
            shutil.rmtree(run.init_dir, ignore_errors=True)
            self.transforms, self.gains[0] = self._transforms(
                gmm=self.old.gmm, transition_model=self.old.hmm.transition_model,
                cur_feats=self.si, alignments=self.old_alignments, inits={},
            )  # fmt: skip
            run.init_dir.mkdir(parents=True, exist_ok=True)
            save_transforms(run.init_dir / "trans_0.npz", self.transforms)
            start, self.feats = build_triphone_start(
                feature_mode="deltas",  # the features are used as given
                tree_config=TreeConfig(
                    num_leaves=tri.num_leaves, thresh=tri.tree_thresh,
                    cluster_thresh=tri.cluster_thresh,
                ),
                lda_dim=tri.lda_dim, lang=run.lang, lang_dir=run.lang_dir,
                old_model=self.old.hmm, old_alignments=self.old_alignments,
                feats=adapt_features(self.si, self.transforms, run.utt2spk), split=run.split,
                pool=executor,
            )  # fmt: skip
            save_start(run.init_dir, start, self.config.to_dict())
        self.start = start
        return start.model

    def _restore_transforms(self, before_iter: int, trainer: GmmTrainer) -> None:
        self.transforms = _latest_transforms(self.run.init_dir, before_iter)
        trainer.feats = adapt_features(self.si, self.transforms, self.run.utt2spk)

    def initial_state(self, trainer: GmmTrainer) -> TrainingState:
        if self.transforms is None:  # a kept start without a checkpointed state
            self._restore_transforms(1, trainer)
        return start_state(self.start)

    def resume(self, state: TrainingState, trainer: GmmTrainer) -> None:
        self._restore_transforms(state.next_iter, trainer)

    def before_iteration(self, state: TrainingState, trainer: GmmTrainer) -> None:
        x = state.next_iter
        if x in self.config.fmllr_iters:
            tm = trainer.model_with(state.log_probs).transition_model
            self.transforms, self.gains[x] = self._transforms(
                gmm=state.gmm, transition_model=tm, cur_feats=trainer.feats,
                alignments=state.alignments, inits=self.transforms,
            )  # fmt: skip
            save_transforms(self.run.init_dir / f"trans_{x}.npz", self.transforms)
            trainer.feats = adapt_features(self.si, self.transforms, self.run.utt2spk)

    def write_outputs(self, run, trainer, state, final_model, alignments) -> None:
        si_gmm = _si_model(
            state.gmm, final_model.transition_model, self.si, trainer.feats, alignments
        )
        old = self.old
        if old.transform is not None:
            write_kaldi_matrix(run.out_dir / old.feature_pipeline.transform, old.transform)
        si_gmm.save(run.out_dir / SI_GMM_FILE)
        old.feature_pipeline.save(run.out_dir)
        save_transforms(run.out_dir / TRANS_FILE, self.transforms)
        write_model_info(
            run.out_dir, family=SAT_FAMILY, silence_phone_ids=list(run.lang.silence_phone_ids)
        )
        save_transforms(run.out_dir / "ali" / TRANS_FILE, self.transforms)  # as Kaldi

    def summary(self, state: TrainingState, **common: Any) -> SatSummary:
        return SatSummary(
            feature_dim=state.gmm.dim,
            num_speakers=len(self.transforms),
            fmllr_gain_per_frame=self.gains,
            **common,
        )

    @staticmethod
    def summary_fields_from_log(values: dict) -> dict:
        gains = {int(k): float(v) for k, v in values["fmllr_gain_per_frame"].items()}
        return {**values, "fmllr_gain_per_frame": gains}


def train_sat(
    data_dir: str | os.PathLike,
    lang_dir: str | os.PathLike,
    ali_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    config: SatConfig | None = None,
    num_jobs: int = 1,
    executor: concurrent.futures.Executor | None = None,
    progress: Callable[[IterationStats], None] | None = None,
    force: bool = False,
) -> SatSummary:
    """Train a SAT model from ``ali_dir``'s model and alignment (see the module docstring)."""
    return run_training(
        SatTraining(config or SatConfig()), data_dir, lang_dir, out_dir, ali_dir=ali_dir,
        num_jobs=num_jobs, executor=executor, progress=progress, force=force,
    )  # fmt: skip


# ------------------------------------------------------------------------------ alignment
def align_fmllr(
    align: Callable[[DiagGmmSet, Mapping[str, np.ndarray]], list[AlignJobResult]],
    *,
    model_dir: Path,
    gmm: DiagGmmSet,
    transition_model: TransitionModel,
    feats: Mapping[str, np.ndarray],
    utt2spk: Mapping[str, str],
    silence_phone_ids: tuple[int, ...],
    split: list[tuple[str, ...]],
    executor: concurrent.futures.Executor | None,
    out_dir: Path,
) -> list[AlignJobResult]:
    """Align with a SAT model dir (Kaldi's ``align_fmllr.sh``): ``align(gmm, feats)`` (jobs
    by ``split``) with its SI model ``gmm_si.pt``, every speaker's fMLLR transform from that
    alignment (default fMLLR options, silence weighted 0), then with the SAT ``gmm`` on the
    adapted features; the transforms go to ``out_dir/trans.npz``. Returns the last jobs'
    results."""
    results = align(DiagGmmSet.load(model_dir / SI_GMM_FILE), feats)
    first = {u: a for r in results for u, a in r.alignments.items()}
    transforms, _ = estimate_speaker_transforms(
        gmm=gmm, transition_model=transition_model, si_feats=feats, cur_feats=feats,
        alignments=first, utt2spk=utt2spk, inits={}, silence_phone_ids=silence_phone_ids,
        split=split, executor=executor,
    )  # fmt: skip
    results = align(gmm, adapt_features(feats, transforms, utt2spk))
    save_transforms(out_dir / TRANS_FILE, transforms)
    return results
