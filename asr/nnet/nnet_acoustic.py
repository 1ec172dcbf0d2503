"""Neural acoustic-model directories as :class:`asr.acoustic_model.AcousticModel` (families "dnn", "ctc").

A **DNN-HMM** dir (``asr train dnn``) holds the HMM files of the GMM whose
alignments it was trained on (:class:`asr.hmm.HmmModel`: ``hmm.json``, ``topo``,
``tree.json``, ``transitions.npz``, ``phones.txt`` — so the GMM's HCLG decodes
it, or ``asr graph mkgraph LANG DNN_DIR`` rebuilds one), the network
``final.pt`` (:func:`asr.nnet.save_model`; a TDNN over pdf-ids), the log pdf
priors ``log_priors.npy`` (from alignment counts), the feature pipeline
``feature_pipeline.json`` and ``model.json``. Its scores are
``log_softmax(net(x)) - log_priors`` per frame: pseudo log-likelihoods, *unscaled*
(the decoder applies the acoustic scale).

A **CTC** dir (``asr train ctc``) holds ``final.pt`` (a :class:`asr.nnet.CtcModel`),
``tokens.txt`` (``<blk> 0`` then one phone per token, as ``asr graph mktlg``
writes it), ``feature_pipeline.json`` and ``model.json``. Its scores are the
log-posteriors over tokens, ``(num_frames_out, num_tokens)`` with the blank in
column 0, which is what the TLG's ``ilabel_to_pdf`` indexes; ``num_frames_out``
is ``num_frames`` divided by the model's subsampling.

Features: whatever front end the data dir holds (the recipes use the GMM's
MFCC-13 + energy), through the pipeline saved in the dir (per-speaker CMVN by
default; deltas and splicing are left to the network's own context).

A DNN trained on **fMLLR features** (``asr train dnn --fmllr`` on a SAT model's alignments)
also holds that SAT model's pipeline transform (``final.mat``) and GMMs: its SAT GMMs
``sat_gmm.pt`` (``gmm.pt`` in the SAT dir) and its speaker-independent GMMs ``gmm_si.pt``
(the same name as in the SAT dir; dirs written before that name have ``sat_gmm_si.pt``,
still read); ``model.json``: ``"fmllr": true`` and the silence phones. It loads as a
:class:`FmllrDnnAcousticModel`, an :class:`asr.acoustic_model.SpeakerAdaptive` model: its
:attr:`~FmllrDnnAcousticModel.sat_model` estimates each speaker's transform
(:func:`asr.gmm.sat.transform_from_first_pass`, over the DNN's own graph: the tree is the
SAT model's) and :meth:`~FmllrDnnAcousticModel.adapted_scores` runs the network on the
adapted features. Without a speaker (one utterance, streaming) the network sees the SI
features.

>>> from asr.acoustic_model import load_acoustic_model  # doctest: +SKIP
>>> model = load_acoustic_model("exp/yesno/dnn")  # doctest: +SKIP
>>> model.family, model.log_likelihoods(model.features(raw_mfcc)).shape  # doctest: +SKIP
('dnn', (613, 16))
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from torch import nn

from asr.acoustic_model import read_model_info, write_model_info
from asr.errors import AsrError, ModelError
from asr.features.pipeline import FeaturePipelineConfig, apply_pipeline, load_transform
from asr.hmm.model import HmmModel
from asr.nnet.checkpoint import load_model, save_model
from asr.nnet.models import CtcModel, TdnnModel

if TYPE_CHECKING:
    from asr.gmm.sat import SatAcousticModel

__all__ = [
    "LOG_PRIORS_FILE",
    "NNET_FILE",
    "TOKENS_FILE",
    "CtcAcousticModel",
    "DnnAcousticModel",
    "FmllrDnnAcousticModel",
    "read_tokens",
    "save_ctc_model_dir",
    "save_dnn_model_dir",
]

NNET_FILE = "final.pt"
LOG_PRIORS_FILE = "log_priors.npy"
#: an fMLLR DNN's copy of its SAT model's GMMs (``gmm.pt`` there); the SI GMMs keep their
#: SAT-dir name, :data:`asr.gmm.sat.SI_GMM_FILE`
SAT_GMM_FILE = "sat_gmm.pt"
#: the SI GMMs' name in fMLLR DNN dirs written before they were named as in the SAT dir
LEGACY_SI_GMM_FILE = "sat_gmm_si.pt"
TOKENS_FILE = "tokens.txt"


#: torch CPU threads for one utterance's forward pass: these models are small and
#: per-utterance inference is latency-bound; more threads only add synchronization
#: (on a loaded 2-core machine 2 threads made a BiLSTM forward ~200x slower).
INFERENCE_THREADS = 1


@contextlib.contextmanager
def _cpu_threads(device: torch.device):
    if device.type != "cpu" or torch.get_num_threads() == INFERENCE_THREADS:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(INFERENCE_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _load_network(model_dir: Path, cls: type[nn.Module], device: str) -> nn.Module:
    network = load_model(model_dir / NNET_FILE, device=device)
    if not isinstance(network, cls):
        raise ModelError(
            f"{model_dir / NNET_FILE}: holds a {type(network).__name__}, expected {cls.__name__}"
        )
    return network


def _load_pipeline(
    model_dir: Path, *, allow_transform: bool = False
) -> tuple[FeaturePipelineConfig, np.ndarray | None]:
    try:
        pipeline = FeaturePipelineConfig.load(model_dir)
        if pipeline.transform is not None and allow_transform:
            return pipeline, load_transform(model_dir / pipeline.transform)
    except AsrError as err:
        raise ModelError(f"{model_dir}: {err}") from None
    if pipeline.transform is not None:
        raise ModelError(f"{model_dir}: this model takes no feature transform")
    return pipeline, None


def _load_sat_model(model_dir: Path, hmm: HmmModel, pipeline, transform, device: str):
    """The SAT GMMs of an fMLLR-input DNN dir (see the module docstring), or None."""
    from asr.gmm.diag_gmm import DiagGmmSet
    from asr.gmm.sat import SI_GMM_FILE, SatAcousticModel

    info = read_model_info(model_dir) or {}
    if not info.get("fmllr"):
        return None
    si_path = model_dir / SI_GMM_FILE
    if not si_path.is_file() and (model_dir / LEGACY_SI_GMM_FILE).is_file():
        si_path = model_dir / LEGACY_SI_GMM_FILE
    paths = [model_dir / SAT_GMM_FILE, si_path]
    for path in paths:
        if not path.is_file():
            raise ModelError(f"{path}: not found (an fMLLR DNN needs its SAT model's GMMs)")
    sat, si = (DiagGmmSet.load(p, device=device) for p in paths)
    return SatAcousticModel(
        hmm=hmm, gmm=si, sat=sat, feature_pipeline=pipeline,
        silence_phone_ids=tuple(int(p) for p in info.get("silence_phone_ids", ())),
        transform=transform, model_dir=model_dir,
    )  # fmt: skip


def _as_input(feats: np.ndarray | torch.Tensor, input_dim: int, device) -> torch.Tensor:
    feats_t = (
        torch.as_tensor(np.asarray(feats, dtype=np.float32))
        if not torch.is_tensor(feats)
        else feats
    )
    if feats_t.dim() != 2 or feats_t.shape[1] != input_dim or feats_t.shape[0] == 0:
        raise ModelError(
            f"features have shape {tuple(feats_t.shape)}; the model expects "
            f"(num_frames > 0, {input_dim}) (check the feature pipeline)"
        )
    return feats_t.to(device=device, dtype=torch.float32).unsqueeze(0)


@dataclass(frozen=True, eq=False)
class DnnAcousticModel:
    """HMM structure + TDNN over pdf-ids + log priors + feature pipeline (the network's
    context comes with the frames: frame-independent, no subsampling)."""

    hmm: HmmModel
    network: TdnnModel
    log_priors: np.ndarray
    feature_pipeline: FeaturePipelineConfig
    model_dir: Path | None = None
    transform: np.ndarray | None = None
    family: ClassVar[str] = "dnn"
    frame_independent: ClassVar[bool] = True
    subsampling: ClassVar[int] = 1

    def __post_init__(self) -> None:
        num_out = self.network.config.num_pdfs
        if num_out != self.hmm.num_pdfs or self.log_priors.shape != (num_out,):
            raise ModelError(
                f"{self.model_dir or 'model'}: network has {num_out} outputs, the HMM "
                f"{self.hmm.num_pdfs} pdfs, the priors shape {self.log_priors.shape}"
            )

    @property
    def num_pdfs(self) -> int:
        return self.hmm.num_pdfs

    @property
    def feature_dim(self) -> int:
        return self.network.config.input_dim

    @classmethod
    def load(cls, model_dir: str | os.PathLike, *, device: str = "cpu") -> DnnAcousticModel:
        """Read a DNN model dir (see the module docstring)."""
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise ModelError(f"{model_dir}: model directory not found")
        priors_path = model_dir / LOG_PRIORS_FILE
        if not priors_path.is_file():
            raise ModelError(f"{priors_path}: not found; is {model_dir} a DNN model dir?")
        log_priors = np.load(priors_path, allow_pickle=False).astype(np.float32)
        hmm = HmmModel.load(model_dir)
        pipeline, transform = _load_pipeline(model_dir, allow_transform=True)
        parts = dict(
            hmm=hmm,
            network=_load_network(model_dir, TdnnModel, device),
            log_priors=log_priors,
            feature_pipeline=pipeline,
            model_dir=model_dir,
            transform=transform,
        )
        sat_model = _load_sat_model(model_dir, hmm, pipeline, transform, device)
        if sat_model is not None:
            return FmllrDnnAcousticModel(**parts, sat_model=sat_model)
        return cls(**parts)

    def features(
        self, raw_feats: np.ndarray, *, cmvn_stats: np.ndarray | None = None
    ) -> np.ndarray:
        """Raw front-end features ``(num_frames, raw_dim)`` -> network input (float32)."""
        return apply_pipeline(
            raw_feats, self.feature_pipeline, cmvn_stats=cmvn_stats, transform=self.transform
        )

    def log_likelihoods(self, feats: np.ndarray | torch.Tensor) -> np.ndarray:
        """``feats: (num_frames, dim)`` -> ``log p(pdf | x_t) - log p(pdf)``:
        ``(num_frames, num_pdfs)`` float32, unscaled."""
        device = next(self.network.parameters()).device
        x = _as_input(feats, self.feature_dim, device)
        priors = torch.as_tensor(self.log_priors, device=device)
        with torch.inference_mode(), _cpu_threads(device):
            log_post, _ = self.network(x, torch.tensor([x.shape[1]], device=device))
            out = log_post[0] - priors
        return out.cpu().numpy().astype(np.float32, copy=False)


@dataclass(frozen=True, eq=False)
class FmllrDnnAcousticModel(DnnAcousticModel):
    """A DNN over fMLLR-adapted features, with the SAT model that estimates each speaker's
    transform (an :class:`asr.acoustic_model.SpeakerAdaptive` model; see the module
    docstring). Its plain :meth:`log_likelihoods` see the speaker-independent features."""

    sat_model: SatAcousticModel | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sat_model is None:
            raise ModelError(f"{self.model_dir or 'model'}: an fMLLR DNN needs its SAT model")

    def adapt_to_speaker(self, graph, feats, config, *, sat_config=None) -> np.ndarray | None:
        """The speaker's fMLLR transform, estimated by the SAT model over ``graph``."""
        return self.sat_model.adapt_to_speaker(graph, feats, config, sat_config=sat_config)

    def adapted_scores(self, feats: np.ndarray, transform: np.ndarray | None) -> np.ndarray:
        """Scores of the features mapped by a speaker's fMLLR ``transform`` (None: as they are)."""
        if transform is None:
            return self.log_likelihoods(feats)
        from asr.gmm.fmllr import apply_fmllr

        return self.log_likelihoods(apply_fmllr(feats, transform))


@dataclass(frozen=True, eq=False)
class CtcAcousticModel:
    """(Conv +) (Bi)LSTM CTC network over tokens + token table + feature pipeline."""

    network: CtcModel
    tokens: tuple[str, ...]
    feature_pipeline: FeaturePipelineConfig
    model_dir: Path | None = None
    family: ClassVar[str] = "ctc"
    #: recurrent: a frame's scores depend on the whole utterance
    frame_independent: ClassVar[bool] = False
    #: the pipeline names no LDA/MLLT transform for a CTC model
    transform: ClassVar[None] = None

    def __post_init__(self) -> None:
        if self.network.config.num_tokens != len(self.tokens):
            raise ModelError(
                f"{self.model_dir or 'model'}: network has {self.network.config.num_tokens} "
                f"outputs, {TOKENS_FILE} {len(self.tokens)} tokens"
            )

    @property
    def num_pdfs(self) -> int:
        """Tokens including the blank (the TLG's ``num_pdfs``)."""
        return len(self.tokens)

    @property
    def feature_dim(self) -> int:
        return self.network.config.input_dim

    @property
    def subsampling(self) -> int:
        """Input frames per output frame."""
        return self.network.config.subsampling

    @classmethod
    def load(cls, model_dir: str | os.PathLike, *, device: str = "cpu") -> CtcAcousticModel:
        """Read a CTC model dir (see the module docstring)."""
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise ModelError(f"{model_dir}: model directory not found")
        return cls(
            network=_load_network(model_dir, CtcModel, device),
            tokens=tuple(read_tokens(model_dir / TOKENS_FILE)),
            feature_pipeline=_load_pipeline(model_dir)[0],
            model_dir=model_dir,
        )

    def features(
        self, raw_feats: np.ndarray, *, cmvn_stats: np.ndarray | None = None
    ) -> np.ndarray:
        """Raw front-end features ``(num_frames, raw_dim)`` -> network input (float32)."""
        return apply_pipeline(raw_feats, self.feature_pipeline, cmvn_stats=cmvn_stats)

    def log_likelihoods(self, feats: np.ndarray | torch.Tensor) -> np.ndarray:
        """``feats: (num_frames, dim)`` -> token log-posteriors ``(num_frames_out, num_tokens)``
        float32 (blank = column 0)."""
        device = next(self.network.parameters()).device
        x = _as_input(feats, self.feature_dim, device)
        with torch.inference_mode(), _cpu_threads(device):
            log_probs, out_lengths = self.network(x, torch.tensor([x.shape[1]], device=device))
            out = log_probs[0, : int(out_lengths[0])]
        return out.cpu().numpy().astype(np.float32, copy=False)


def read_tokens(path: str | os.PathLike) -> list[str]:
    """``tokens.txt`` (``symbol index`` lines, indices 0..N-1 in order, ``<blk>`` first)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ModelError(f"{path}: not found; is it a CTC model dir?") from None
    tokens = []
    for line_no, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] != str(len(tokens)):
            raise ModelError(f"{path}:{line_no}: expected '<symbol> {len(tokens)}', got {line!r}")
        tokens.append(fields[0])
    if len(tokens) < 2 or tokens[0] != "<blk>":
        raise ModelError(f"{path}: needs '<blk> 0' and at least one token")
    return tokens


def save_dnn_model_dir(
    model_dir: str | os.PathLike,
    *,
    hmm: HmmModel,
    network: TdnnModel,
    log_priors: np.ndarray,
    feature_pipeline: FeaturePipelineConfig,
    transform: np.ndarray | None = None,
    sat_gmms: tuple | None = None,
    silence_phone_ids: tuple[int, ...] = (),
    **info,
) -> DnnAcousticModel:
    """Write a complete DNN model dir (``info`` goes into ``model.json``); returns the model.
    An fMLLR-input DNN also gets its pipeline's ``transform`` and ``sat_gmms`` = (SAT GMMs,
    SI GMMs) of the SAT model it was trained from (see the module docstring)."""
    from asr.fileio import atomic_write

    model_dir = Path(model_dir)
    model = DnnAcousticModel(
        hmm=hmm,
        network=network,
        log_priors=np.asarray(log_priors, dtype=np.float32),
        feature_pipeline=feature_pipeline,
        model_dir=model_dir,
        transform=transform,
    )  # the plain model: an fMLLR DNN's SAT model is read back by DnnAcousticModel.load
    if transform is not None:
        from asr.features.io import write_kaldi_matrix

        write_kaldi_matrix(model_dir / feature_pipeline.transform, transform)
    if sat_gmms is not None:
        from asr.gmm.sat import SI_GMM_FILE

        sat_gmms[0].save(model_dir / SAT_GMM_FILE)
        sat_gmms[1].save(model_dir / SI_GMM_FILE)
        info = {**info, "fmllr": True, "silence_phone_ids": list(silence_phone_ids)}
    hmm.save(model_dir)
    save_model(model_dir / NNET_FILE, network)
    with atomic_write(model_dir / LOG_PRIORS_FILE, "wb") as handle:
        np.save(handle, model.log_priors, allow_pickle=False)
    feature_pipeline.save(model_dir)
    write_model_info(
        model_dir, family="dnn", num_pdfs=hmm.num_pdfs,
        left_context=network.left_context, right_context=network.right_context, **info,
    )  # fmt: skip
    return model


def save_ctc_model_dir(
    model_dir: str | os.PathLike,
    *,
    network: CtcModel,
    tokens: list[str] | tuple[str, ...],
    feature_pipeline: FeaturePipelineConfig,
    **info,
) -> CtcAcousticModel:
    """Write a complete CTC model dir (``info`` goes into ``model.json``); returns the model."""
    from asr.nnet.prepare import write_token_table

    model_dir = Path(model_dir)
    model = CtcAcousticModel(
        network=network, tokens=tuple(tokens), feature_pipeline=feature_pipeline,
        model_dir=model_dir,
    )  # fmt: skip
    model_dir.mkdir(parents=True, exist_ok=True)
    save_model(model_dir / NNET_FILE, network)
    write_token_table(list(tokens), model_dir / TOKENS_FILE)
    feature_pipeline.save(model_dir)
    write_model_info(
        model_dir, family="ctc", num_pdfs=len(tokens), blank=0,
        subsampling=network.config.subsampling, streaming=not network.config.bidirectional,
        **info,
    )  # fmt: skip
    return model
