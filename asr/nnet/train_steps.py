"""The neural training steps behind ``asr train dnn`` and ``asr train ctc``.

:func:`train_dnn`: features of a data dir (through a :class:`FeaturePipelineConfig`)
+ the pdf-ids of GMM alignments (:func:`asr.nnet.prepare.frame_targets`) -> a TDNN
trained with cross-entropy (held-out dev loss from the dev dir, aligned with the
same GMM when no dev alignments are given), pdf priors from the training
alignment counts -> a DNN model dir (:func:`asr.nnet.nnet_acoustic.save_dnn_model_dir`).

:func:`train_ctc`: features + lexicon token sequences
(:func:`asr.nnet.prepare.token_targets`) -> an (optionally conv-fronted) (Bi)LSTM
trained with CTC -> a CTC model dir (:func:`asr.nnet.nnet_acoustic.save_ctc_model_dir`).

Both train through :func:`asr.nnet.train` (checkpoints in ``OUT/checkpoint.pt``:
a rerun resumes; DDP when the caller has initialized a process group, only rank 0
writes). ``OUT/train_summary.json`` records sizes, the epoch history, frames/s and
the wall time.

>>> cfg = DnnRecipeConfig(hidden_dim=256, num_layers=4, context=(6, 6))  # doctest: +SKIP
>>> train_dnn("data/yesno/train", "data/yesno/test", "data/yesno/lang",
...           "exp/yesno/mono/ali", "exp/yesno/dnn", config=cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from asr.errors import AsrError, TrainingError
from asr.features.pipeline import FeaturePipelineConfig, load_features, read_feature_config
from asr.fileio import atomic_write_text, is_up_to_date, touch
from asr.nnet.data import NnetDataset
from asr.nnet.models import CtcConfig, CtcModel, TdnnConfig, TdnnModel, estimate_log_priors
from asr.nnet.prepare import frame_targets, token_table, token_targets
from asr.nnet.trainer import TrainConfig, train

__all__ = [
    "CtcRecipeConfig",
    "DnnRecipeConfig",
    "alignment_model_dir",
    "train_ctc",
    "train_dnn",
]

SUMMARY_FILE = "train_summary.json"


@dataclass(frozen=True)
class DnnRecipeConfig:
    """TDNN size, input pipeline and prior smoothing for :func:`train_dnn`.

    ``context=(left, right)``: the network's input context in frames (its right
    context is the streaming latency). ``prior_smoothing``: added to every pdf's
    alignment count before the priors are taken (unseen pdfs get a finite prior).
    ``fmllr``: the input is the SAT alignment model's features mapped by each speaker's
    fMLLR transform (``ALI_DIR/trans.npz``; dev speakers' from their SAT alignment), and
    the model dir keeps the SAT GMMs to adapt to new speakers (Kaldi's DNNs on fMLLR
    features); ``cmvn``/``deltas`` are then the SAT model's.
    """

    hidden_dim: int = 384
    num_layers: int = 5
    context: tuple[int, int] = (8, 8)
    dropout: float = 0.1
    cmvn: str = "speaker"
    deltas: int = 0
    prior_smoothing: float = 1.0
    fmllr: bool = False
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-3, epochs=10))


@dataclass(frozen=True)
class CtcRecipeConfig:
    """CTC network size and input pipeline for :func:`train_ctc`.

    ``bidirectional=False`` gives the streaming variant; ``oov``: "map" OOV words to
    the lang's OOV word, or "skip" their utterances.
    """

    hidden: int = 256
    num_layers: int = 3
    bidirectional: bool = True
    conv_channels: int = 256
    conv_strides: tuple[int, ...] = (1, 2)
    dropout: float = 0.1
    cmvn: str = "speaker"
    deltas: int = 0
    oov: str = "map"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-3, epochs=20))


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _pipeline(data_dir: Path, cmvn: str, deltas: int) -> FeaturePipelineConfig:
    return FeaturePipelineConfig(cmvn=cmvn, deltas=deltas, base=read_feature_config(data_dir))


def _features(
    data_dir: Path, pipeline: FeaturePipelineConfig, *, model_dir: Path | None = None
) -> dict[str, np.ndarray]:
    try:
        return load_features(data_dir, pipeline, model_dir=model_dir)
    except AsrError as err:
        raise TrainingError(f"cannot load the features of {data_dir}: {err}") from None


def _fmllr_input(gmm_dir: Path):
    """The SAT alignment model of an fMLLR DNN (:class:`asr.gmm.sat.SatAcousticModel`)."""
    from asr.acoustic_model import read_model_info
    from asr.gmm.sat import SatAcousticModel

    info = read_model_info(gmm_dir) or {}
    if info.get("family") != "sat":
        raise TrainingError(
            f"fMLLR input needs a speaker-adaptive alignment model (asr train sat); "
            f"{gmm_dir} is a {info.get('family', 'gmm')!r} model"
        )
    try:
        return SatAcousticModel.load(gmm_dir)
    except AsrError as err:
        raise TrainingError(f"{gmm_dir}: {err}") from None


def _adapted(
    feats: dict[str, np.ndarray], data_dir: Path, trans_dir: Path
) -> dict[str, np.ndarray]:
    """``feats`` mapped by their speakers' transforms in ``trans_dir/trans.npz``."""
    from asr.data import read_kaldi_map
    from asr.gmm.train_sat import TRANS_FILE, adapt_features, load_transforms

    path = trans_dir / TRANS_FILE
    if not path.is_file():
        raise TrainingError(
            f"{path}: not found; fMLLR input needs the speakers' transforms (the SAT model's "
            "own ali/, or `asr align` with the SAT model)"
        )
    transforms = load_transforms(path)
    utt2spk = read_kaldi_map(data_dir / "utt2spk")
    missing = sorted({utt2spk.get(u, u) for u in feats} - set(transforms))
    if missing:
        raise TrainingError(f"{path}: no transform for speaker(s) {missing[:5]} of {data_dir}")
    return adapt_features(feats, transforms, utt2spk)


def alignment_model_dir(ali_dir: str | os.PathLike) -> Path:
    """The GMM model dir whose transition-ids an alignment dir holds: ``ali_info.json``'s
    ``model_dir`` (``asr align``), else the alignment dir's parent (``MODEL/ali``)."""
    ali_dir = Path(ali_dir)
    info_path = ali_dir / "ali_info.json"
    if info_path.is_file():
        try:
            model_dir = json.loads(info_path.read_text(encoding="utf-8")).get("model_dir")
        except (OSError, json.JSONDecodeError) as err:
            raise TrainingError(f"{info_path}: cannot read: {err}") from None
        if model_dir:
            return Path(model_dir)
    return ali_dir.parent


def _dev_alignments(
    dev_dir: Path, lang_dir: Path, gmm_dir: Path, out_dir: Path, dev_ali_dir: Path | None
) -> tuple[dict[str, np.ndarray], Path]:
    from asr.align import read_alignments
    from asr.gmm.alignment import align_data_dir

    if dev_ali_dir is None:
        dev_ali_dir = out_dir / "ali_dev"
        inputs = [dev_dir / "feats.scp", dev_dir / "text", gmm_dir / "gmm.pt"]
        if _rank() == 0 and not is_up_to_date([dev_ali_dir / "ali.scp"], inputs):
            align_data_dir(dev_dir, lang_dir, gmm_dir, dev_ali_dir)
            touch([dev_ali_dir / "ali.scp"])  # newer than the inputs, rewritten or not
        _barrier()
    return read_alignments(dev_ali_dir), dev_ali_dir


def _summary(
    out_dir: Path, kind: str, result, seconds: float, extra: dict[str, Any]
) -> dict[str, Any]:
    history = [dataclasses.asdict(h) for h in result.history]
    fps = [h["frames_per_second"] for h in history]
    if result.resumed_from_epoch > 0:  # count the time of the run(s) this one resumed
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            seconds += float(json.loads((out_dir / SUMMARY_FILE).read_text())["train_seconds"])
    summary = {
        "kind": kind,
        "best_epoch": result.best_epoch,
        "best_dev_loss": result.best_dev_loss,
        "epochs_run": len(history),
        "stopped_early": result.stopped_early,
        "resumed_from_epoch": result.resumed_from_epoch,
        "train_seconds": round(seconds, 1),
        "mean_frames_per_second": round(float(np.mean(fps)), 1) if fps else None,
        "history": history,
        **extra,
    }
    atomic_write_text(out_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return summary


def train_dnn(
    data_dir: str | os.PathLike,
    dev_dir: str | os.PathLike,
    lang_dir: str | os.PathLike,
    ali_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    config: DnnRecipeConfig | None = None,
    dev_ali_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a DNN-HMM on ``ali_dir``'s alignments of ``data_dir``; write ``out_dir``.

    Returns the training summary (also in ``OUT/train_summary.json``).
    """
    from asr.align import read_alignments
    from asr.hmm.model import HmmModel
    from asr.nnet.nnet_acoustic import save_dnn_model_dir

    config = config or DnnRecipeConfig()
    data_dir, dev_dir, lang_dir = Path(data_dir), Path(dev_dir), Path(lang_dir)
    ali_dir, out_dir = Path(ali_dir), Path(out_dir)
    start = time.perf_counter()
    gmm_dir = alignment_model_dir(ali_dir)
    try:
        hmm = HmmModel.load(gmm_dir)
    except AsrError as err:
        raise TrainingError(f"alignment model of {ali_dir}: {err}") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    sat = _fmllr_input(gmm_dir) if config.fmllr else None
    pipeline = sat.feature_pipeline if sat else _pipeline(data_dir, config.cmvn, config.deltas)
    tid2pdf = hmm.transition_model.tid2pdf
    datasets = []
    for name, data, alignments in (
        ("train", data_dir, read_alignments(ali_dir)),
        ("dev", dev_dir, None),
    ):
        trans_dir = ali_dir
        if alignments is None and dev_dir.resolve() == data_dir.resolve():
            alignments = datasets[0]  # no separate dev set: the dev loss is the training loss
        elif alignments is None:
            alignments, trans_dir = _dev_alignments(
                dev_dir, lang_dir, gmm_dir, out_dir, Path(dev_ali_dir) if dev_ali_dir else None
            )
        if isinstance(alignments, NnetDataset):
            datasets.append(alignments)
            continue
        feats = _features(data, pipeline, model_dir=gmm_dir)
        if sat is not None:
            feats = _adapted(feats, data, trans_dir)
        targets, stats = frame_targets(
            alignments, tid2pdf=tid2pdf, num_frames={u: len(f) for u, f in feats.items()}
        )
        if not targets:
            raise TrainingError(f"{data}: no utterance has alignments matching its features")
        datasets.append(NnetDataset.from_arrays(feats, targets, target_type="frames"))
        if name == "train" and len(stats.skipped) > 0.1 * max(len(alignments), 1):
            raise TrainingError(
                f"{data}: {len(stats.skipped)} of {len(alignments)} alignments do not match "
                f"the features (e.g. {next(iter(stats.skipped.items()))})"
            )
    train_data, dev_data = datasets
    input_dim = train_data.feat_dim
    torch.manual_seed(config.train.seed)  # the initial weights: two runs with one seed agree
    network = TdnnModel(
        TdnnConfig(
            input_dim=input_dim, num_pdfs=hmm.num_pdfs, hidden_dim=config.hidden_dim,
            num_layers=config.num_layers, context=config.context, dropout=config.dropout,
        )
    )  # fmt: skip
    counts = train_data.pdf_counts(hmm.num_pdfs).astype(np.float64) + config.prior_smoothing
    log_priors = estimate_log_priors(counts)
    result = train(
        network, train_data, dev_data, loss="ce", config=config.train, out_dir=out_dir,
        progress=progress,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    extra = {
        "num_pdfs": hmm.num_pdfs,
        "num_params": sum(p.numel() for p in network.parameters()),
        "train_utterances": len(train_data),
        "train_frames": train_data.num_frames,
        "dev_utterances": len(dev_data),
        "alignments": str(ali_dir),
        "alignment_model": str(gmm_dir),
        "config": _config_dict(config),
    }
    if _rank() == 0:
        network = network.cpu().eval()
        sat_files = {}
        if sat is not None:
            sat_files = {"transform": sat.transform, "sat_gmms": (sat.sat, sat.gmm),
                         "silence_phone_ids": sat.silence_phone_ids}  # fmt: skip
        save_dnn_model_dir(
            out_dir, hmm=hmm, network=network, log_priors=log_priors,
            feature_pipeline=pipeline, alignment_model=str(gmm_dir), **sat_files,
        )  # fmt: skip
        summary = _summary(out_dir, "dnn", result, seconds, extra)
    else:
        summary = {}
    _barrier()
    return summary


def train_ctc(
    data_dir: str | os.PathLike,
    dev_dir: str | os.PathLike,
    lang_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    config: CtcRecipeConfig | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a phone CTC model on ``data_dir`` (tokens of ``lang_dir``); write ``out_dir``."""
    from asr.data import read_kaldi_map
    from asr.nnet.nnet_acoustic import save_ctc_model_dir

    config = config or CtcRecipeConfig()
    data_dir, dev_dir, lang_dir, out_dir = map(Path, (data_dir, dev_dir, lang_dir, out_dir))
    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    tokens = token_table(lang_dir)
    pipeline = _pipeline(data_dir, config.cmvn, config.deltas)
    datasets, skipped = [], {}
    for data in (data_dir, dev_dir):
        text_path = data / "text"
        if not text_path.is_file():
            raise TrainingError(f"{text_path}: not found (CTC targets come from transcripts)")
        targets, stats = token_targets(read_kaldi_map(text_path), lang_dir=lang_dir, oov=config.oov)
        skipped[str(data)] = len(stats.skipped)
        datasets.append(
            NnetDataset.from_arrays(_features(data, pipeline), targets, target_type="tokens")
        )
    train_data, dev_data = datasets
    torch.manual_seed(config.train.seed)  # the initial weights: two runs with one seed agree
    network = CtcModel(
        CtcConfig(
            input_dim=train_data.feat_dim, num_tokens=len(tokens), hidden=config.hidden,
            num_layers=config.num_layers, bidirectional=config.bidirectional,
            conv_channels=config.conv_channels, conv_strides=config.conv_strides,
            dropout=config.dropout,
        )
    )  # fmt: skip
    result = train(
        network, train_data, dev_data, loss="ctc", config=config.train, out_dir=out_dir,
        progress=progress,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    extra = {
        "num_tokens": len(tokens),
        "num_params": sum(p.numel() for p in network.parameters()),
        "train_utterances": len(train_data),
        "train_frames": train_data.num_frames,
        "dev_utterances": len(dev_data),
        "skipped_utterances": skipped,
        "config": _config_dict(config),
    }
    if _rank() == 0:
        save_ctc_model_dir(
            out_dir, network=network.cpu().eval(), tokens=tokens, feature_pipeline=pipeline
        )
        summary = _summary(out_dir, "ctc", result, seconds, extra)
    else:
        summary = {}
    _barrier()
    return summary


def _config_dict(config) -> dict[str, Any]:
    obj = dataclasses.asdict(config)
    return json.loads(json.dumps(obj, default=str))
