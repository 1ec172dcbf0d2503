"""Speaker-adaptive training (tri3, Kaldi's ``steps/train_sat.sh``): a triphone GMM-HMM trained
on features mapped by one fMLLR transform per speaker (:mod:`asr.gmm.fmllr`).

From a previous model dir ``ALI_DIR`` (normally tri2: its feature pipeline, LDA+MLLT transform,
GMMs and final alignment ``ALI_DIR/ali``):

1. Speaker-independent (SI) features: ``ALI_DIR``'s pipeline (CMVN, splicing, LDA+MLLT), kept.
2. A first fMLLR per speaker with ``ALI_DIR``'s model and alignment (silence frames weighted
   ``silence_weight``); the tree, the first GMMs and the converted alignment are built on the
   adapted features (:func:`asr.gmm.triphone_start.build_triphone_start`).
3. The iterations of :mod:`asr.gmm.train_tri` (re-alignment, Viterbi statistics, ML update,
   mixing up); on ``fmllr_iters`` every speaker's transform is re-estimated first with the
   current model and alignment (posteriors on the adapted features, statistics on the SI ones,
   starting from the current transform).
4. The final alignment, and the speaker-independent "alignment model" ``gmm_si.pt`` (same tree
   and Gaussians, re-estimated once on the SI features with posteriors from the adapted ones:
   Kaldi's ``final.alimdl``), which decodes the first pass before a test speaker has a
   transform (:mod:`asr.gmm.sat`).

Output ``OUT_DIR``: the HMM files, ``gmm.pt`` (SAT), ``gmm_si.pt``, ``feature_pipeline.json`` and
its transform (copied from ``ALI_DIR``), ``model.json`` (family ``sat``), ``trans.npz`` (the
training speakers' transforms), ``ali/`` and ``train_log.json`` (last). Interrupted runs resume
after the last finished iteration, as the other GMM trainers.

>>> from asr.gmm.train_sat import SatConfig, train_sat
>>> summary = train_sat("data/an4/train", "data/an4/lang", "exp/an4/tri2", "exp/an4/tri3")  # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from asr.acoustic import write_model_info
from asr.align.aligner import GMM_FILE, map_jobs, single_torch_thread, split_by_speaker
from asr.align.io import read_alignments, write_alignments, write_failed
from asr.data import read_kaldi_map
from asr.errors import AsrError, EstimationError, FeatureError, TrainingError
from asr.features.pipeline import load_features
from asr.fileio import atomic_write, atomic_write_text, is_up_to_date
from asr.gmm.accumulate import GmmAccumulator, GmmUpdateConfig, ml_update
from asr.gmm.acoustic import GmmAcousticModel
from asr.gmm.diag_gmm import DiagGmmSet
from asr.gmm.fmllr import FmllrConfig, FmllrStats, apply_fmllr, estimate_fmllr
from asr.gmm.sat import SI_GMM_FILE
from asr.gmm.train_mono import (
    CHECKPOINT_FILE,
    TRAIN_LOG_FILE,
    IterationStats,
    _load_checkpoint,
    _Trainer,
)
from asr.gmm.train_tri import (
    INIT_DIR,
    TriConfig,
    _compile_graphs,
    _load_start,
    _save_start,
    _worker_pool,
    matching_alignments,
    run_iterations,
    start_state,
)
from asr.gmm.triphone_start import build_triphone_start, split_jobs, write_kaldi_matrix
from asr.hmm.build_tree import TreeConfig
from asr.hmm.transition_model import TransitionModel
from asr.lang import read_lang

__all__ = [
    "SI_GMM_FILE",
    "TRANS_FILE",
    "SatConfig",
    "SatSummary",
    "adapt_features",
    "load_transforms",
    "save_transforms",
    "speaker_transforms",
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


def speaker_transforms(
    *,
    gmm: DiagGmmSet,
    transition_model: TransitionModel,
    si_feats: Mapping[str, np.ndarray],
    cur_feats: Mapping[str, np.ndarray],
    alignments: Mapping[str, np.ndarray],
    utt2spk: Mapping[str, str],
    inits: Mapping[str, np.ndarray],
    silence_phone_ids: tuple[int, ...],
    config: SatConfig,
    split: list[tuple[str, ...]],
    pool: concurrent.futures.Executor | None,
) -> tuple[dict[str, np.ndarray], float]:
    """Every speaker's fMLLR transform from an alignment; returns them and the count-weighted
    mean auxiliary gain per frame."""
    jobs = [
        (s, c, a, dict(utt2spk), transition_model, gmm, dict(inits), silence_phone_ids,
         config.silence_weight, config.fmllr)
        for s, c, a in zip(split_jobs(si_feats, split), split_jobs(cur_feats, split),
                           split_jobs(alignments, split), strict=True)
    ]  # fmt: skip
    transforms, gains, counts = {}, [], []
    for part in map_jobs(_speaker_fmllr_job, jobs, pool):
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
    config = config or SatConfig()
    start_time = time.perf_counter()
    data_dir, lang_dir = Path(data_dir), Path(lang_dir)
    ali_dir, out_dir = Path(ali_dir), Path(out_dir)
    inputs = [data_dir / n for n in ("feats.scp", "cmvn.scp", "text", "utt2spk")]
    inputs += [lang_dir / n for n in ("L.fst", "phones.txt", "words.txt", "topo")]
    inputs += [ali_dir / "ali" / "ali.scp", ali_dir / "hmm.json", ali_dir / GMM_FILE]
    log_path = out_dir / TRAIN_LOG_FILE
    if not force and is_up_to_date([log_path, out_dir / GMM_FILE, out_dir / SI_GMM_FILE], inputs):
        done = _read_summary(log_path)
        if done is not None and done[0] == config.to_dict():
            return done[1]
    for path in (data_dir / "feats.scp", data_dir / "text", ali_dir / "ali" / "ali.scp"):
        if not path.is_file():
            raise TrainingError(f"{path}: not found")
    try:
        lang = read_lang(lang_dir)
        old = GmmAcousticModel.load(ali_dir)
        old.hmm.check_phones(lang.phones, what=f"{lang_dir}")
        old_alignments = read_alignments(ali_dir / "ali")
        si = load_features(data_dir, old.feature_pipeline, model_dir=ali_dir)
    except FeatureError as err:
        raise TrainingError(f"cannot load features: {err}") from None
    except AsrError as err:
        raise TrainingError(f"cannot read the inputs: {err}") from None
    texts = read_kaldi_map(data_dir / "text")
    utt2spk = read_kaldi_map(data_dir / "utt2spk") if (data_dir / "utt2spk").is_file() else {}
    utt_ids = sorted(texts)
    old_alignments = matching_alignments(old_alignments, si, texts, ali_dir / "ali")
    split = split_by_speaker(utt_ids, utt2spk, num_jobs)
    checkpoint, init_dir = out_dir / CHECKPOINT_FILE, out_dir / INIT_DIR
    silence = tuple(lang.silence_phone_ids)
    own_pool = executor is None and num_jobs > 1 and len(split) > 1
    pool = _worker_pool(len(split)) if own_pool else executor
    fmllr_args = {"si_feats": si, "utt2spk": utt2spk, "silence_phone_ids": silence,
                  "config": config, "split": split, "pool": pool}  # fmt: skip
    gains: dict[int, float] = {}
    try:
        start = _load_start(init_dir, config) if checkpoint.is_file() else None
        state = None
        if start is None:
            checkpoint.unlink(missing_ok=True)
            shutil.rmtree(init_dir, ignore_errors=True)
            transforms, gains[0] = speaker_transforms(
                gmm=old.gmm, transition_model=old.hmm.transition_model, cur_feats=si,
                alignments=old_alignments, inits={}, **fmllr_args,
            )  # fmt: skip
            init_dir.mkdir(parents=True, exist_ok=True)
            save_transforms(init_dir / "trans_0.npz", transforms)
            start, feats = build_triphone_start(
                feature_mode="deltas",  # the features are used as given
                tree_config=TreeConfig(
                    num_leaves=config.tri.num_leaves,
                    thresh=config.tri.tree_thresh,
                    cluster_thresh=config.tri.cluster_thresh,
                ),
                lda_dim=config.tri.lda_dim, lang=lang, lang_dir=lang_dir,
                old_model=old.hmm, old_alignments=old_alignments,
                feats=adapt_features(si, transforms, utt2spk), split=split, pool=pool,
            )  # fmt: skip
            _save_start(init_dir, start, config)
        else:
            state = _load_checkpoint(checkpoint, config)
            transforms = _latest_transforms(init_dir, state.next_iter if state else 1)
            feats = adapt_features(si, transforms, utt2spk)
        model = start.model
        graphs, compile_failed = _compile_graphs(lang_dir, model, texts, len(split), pool)
        trainer = _Trainer(
            config=config.tri.mono_config(), model=model, lang=lang, feats=feats, graphs=graphs,
            split=split, executor=pool,
        )  # fmt: skip
        resumed_from = state.next_iter if state is not None else None
        state = state or start_state(start)

        def before_iteration(x: int) -> None:
            nonlocal transforms, gains
            if x in config.fmllr_iters:
                tm = trainer.model_with(state.log_probs).transition_model
                transforms, gains[x] = speaker_transforms(
                    gmm=state.gmm, transition_model=tm, cur_feats=trainer.feats,
                    alignments=state.alignments, inits=transforms, **fmllr_args,
                )  # fmt: skip
                save_transforms(init_dir / f"trans_{x}.npz", transforms)
                trainer.feats = adapt_features(si, transforms, utt2spk)

        run_iterations(
            trainer, state, config, num_iters=config.tri.num_iters, checkpoint=checkpoint,
            before_iteration=before_iteration, progress=progress,
        )  # fmt: skip
        final_model = trainer.model_with(state.log_probs)
        alignments, failed = trainer.final_alignment(state.gmm, final_model.transition_model)
    finally:
        if own_pool and pool is not None:
            pool.shutdown()
    si_gmm = _si_model(state.gmm, final_model.transition_model, si, trainer.feats, alignments)
    failed = {**compile_failed, **failed}
    if old.transform is not None:
        write_kaldi_matrix(out_dir / old.feature_pipeline.transform, old.transform)
    final_model.save(out_dir)
    state.gmm.save(out_dir / GMM_FILE)
    si_gmm.save(out_dir / SI_GMM_FILE)
    old.feature_pipeline.save(out_dir)
    save_transforms(out_dir / TRANS_FILE, transforms)
    write_model_info(out_dir, family=SAT_FAMILY, silence_phone_ids=list(silence))
    write_alignments(alignments, out_dir / "ali")
    write_failed(failed, out_dir / "ali")
    save_transforms(out_dir / "ali" / TRANS_FILE, transforms)  # with the alignment, as Kaldi
    summary = SatSummary(
        out_dir=str(out_dir),
        feature_dim=state.gmm.dim,
        num_pdfs=state.gmm.num_pdfs,
        num_gauss=state.gmm.num_gauss,
        num_speakers=len(transforms),
        fmllr_gain_per_frame=gains,
        iterations=tuple(IterationStats(**entry) for entry in state.log),
        num_aligned=len(alignments),
        num_failed=len(failed),
        seconds=time.perf_counter() - start_time,
        resumed_from=resumed_from,
    )
    log = {
        "format": "asr-train-sat",
        "family": SAT_FAMILY,
        "config": config.to_dict(),
        "data_dir": str(data_dir),
        "lang_dir": str(lang_dir),
        "ali_dir": str(ali_dir),
        "num_jobs": num_jobs,
        **{k: v for k, v in dataclasses.asdict(summary).items() if k != "iterations"},
        "iterations": state.log,
        "failed": failed,
    }
    atomic_write_text(log_path, json.dumps(log, indent=2) + "\n")
    checkpoint.unlink(missing_ok=True)
    shutil.rmtree(init_dir, ignore_errors=True)
    return summary


def _read_summary(path: Path) -> tuple[dict, SatSummary] | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        fields = {f.name for f in dataclasses.fields(SatSummary)} - {"iterations"}
        values = {k: obj[k] for k in fields}
        values["fmllr_gain_per_frame"] = {
            int(k): float(v) for k, v in values["fmllr_gain_per_frame"].items()
        }
        summary = SatSummary(
            **values, iterations=tuple(IterationStats(**e) for e in obj["iterations"])
        )
        return obj["config"], summary
    except (OSError, KeyError, TypeError, ValueError, json.JSONDecodeError):
        return None
