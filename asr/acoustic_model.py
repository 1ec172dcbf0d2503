"""The acoustic-model contract (:class:`AcousticModel`, :class:`SpeakerAdaptive`) and the
family registry (:func:`load_acoustic_model`).

Whatever its family, an acoustic model maps the features of one utterance to a
``(num_frames, num_pdfs)`` float32 matrix of scores for the decoder
(log-likelihoods for GMMs, scaled log-posteriors minus log-priors for DNNs,
log-posteriors over tokens for CTC). :class:`AcousticModel` is that contract: every
member a caller may use is declared there (no family is probed for optional
attributes); a model that adapts to a speaker (fMLLR: SAT GMMs, an fMLLR DNN) also
implements :class:`SpeakerAdaptive`, checked with ``isinstance(model, SpeakerAdaptive)``.
:func:`load_acoustic_model` reads a model directory and dispatches on its
family:

* ``MODEL_DIR/model.json`` ``{"family": "gmm" | "dnn" | "ctc", ...}`` when present
  (:func:`write_model_info` writes it);
* otherwise the family is inferred from the parameter files (``gmm.pt`` /
  ``gmm.npz`` -> ``"gmm"``).

Families register a loader (``"module:Class.method"``) in :data:`FAMILY_LOADERS`
(``"gmm"`` here; the neural models add ``"dnn"`` and ``"ctc"``).

>>> from asr.acoustic_model import load_acoustic_model  # doctest: +SKIP
>>> model = load_acoustic_model("exp/yesno/mono")  # doctest: +SKIP
>>> model.family, model.num_pdfs  # doctest: +SKIP
('gmm', 16)
>>> model.log_likelihoods(model.features(raw_mfcc)).shape  # doctest: +SKIP
(613, 16)
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from asr.errors import ModelError
from asr.features.pipeline import FeaturePipelineConfig
from asr.fileio import atomic_write_text

__all__ = [
    "FAMILY_LOADERS",
    "MODEL_INFO_FILE",
    "AcousticModel",
    "SpeakerAdaptive",
    "detect_family",
    "load_acoustic_model",
    "read_model_info",
    "write_model_info",
]

MODEL_INFO_FILE = "model.json"

#: family -> "module:attribute.path" of a callable ``(model_dir, *, device) -> AcousticModel``.
FAMILY_LOADERS: dict[str, str] = {
    "gmm": "asr.gmm.gmm_acoustic:GmmAcousticModel.load",
    "dnn": "asr.nnet.nnet_acoustic:DnnAcousticModel.load",
    "ctc": "asr.nnet.nnet_acoustic:CtcAcousticModel.load",
    "sat": "asr.gmm.sat:SatAcousticModel.load",
}

# parameter files that identify a family when model.json is absent
_FAMILY_FILES: tuple[tuple[str, str], ...] = (("gmm.pt", "gmm"), ("gmm.npz", "gmm"))


@runtime_checkable
class AcousticModel(Protocol):
    """What the decoder, the recognizer, batch decoding and the server use of an acoustic
    model; every family (:data:`FAMILY_LOADERS`) implements all of it.

    ``family``: the registry key; ``feature_pipeline``: raw features -> model input;
    ``transform``: the pipeline's LDA/MLLT matrix (None when it names none);
    ``model_dir``: where it was loaded from (None when built in memory), for per-speaker
    CMVN stats of a data dir; ``frame_independent``: the scores of a frame depend only on
    that frame and the bounded context the feature pipeline adds, so chunks of frames (of
    one or many streams) may be scored separately or together (False for recurrent CTC
    models: they score whole utterances); ``subsampling``: input frames per output frame.
    """

    family: str
    feature_pipeline: FeaturePipelineConfig
    transform: np.ndarray | None
    model_dir: Path | None

    @property
    def num_pdfs(self) -> int: ...

    @property
    def feature_dim(self) -> int:
        """Dimension of the model input (after the whole feature pipeline)."""
        ...

    @property
    def frame_independent(self) -> bool: ...

    @property
    def subsampling(self) -> int: ...

    def features(
        self, raw_feats: np.ndarray, *, cmvn_stats: np.ndarray | None = None
    ) -> np.ndarray:
        """Raw front-end features ``(num_frames, raw_dim)`` -> model input (float32)."""
        ...

    def log_likelihoods(self, feats: np.ndarray) -> np.ndarray:
        """Model input ``(num_frames, dim)`` -> scores ``(num_frames, num_pdfs)`` float32
        (speaker-independent for a :class:`SpeakerAdaptive` model)."""
        ...


@runtime_checkable
class SpeakerAdaptive(Protocol):
    """An acoustic model that adapts to a speaker with a feature transform (fMLLR), as
    Kaldi's ``decode_fmllr.sh``: the transform is estimated from first-pass decodes of the
    speaker's utterances, then the utterances are rescored with it."""

    def adapt_to_speaker(
        self, graph: Any, feats: Sequence[np.ndarray], config: Any, *, sat_config: Any = None
    ) -> np.ndarray | None:
        """One speaker's transform from its utterances' (SI) model input ``feats``, decoded
        over ``graph`` (an :class:`asr.decode.DecodingGraph`) with the beam of ``config``
        (an :class:`asr.decode.DecoderConfig`; ``sat_config``: the adaptation passes'
        options, default :class:`asr.gmm.sat.SatDecodeConfig`); None when there is too
        little speech."""
        ...

    def adapted_scores(self, feats: np.ndarray, transform: np.ndarray | None) -> np.ndarray:
        """Scores ``(num_frames, num_pdfs)`` of ``feats`` with a speaker's ``transform``
        (None: the speaker-independent scores, :meth:`AcousticModel.log_likelihoods`)."""
        ...


def write_model_info(model_dir: str | os.PathLike, *, family: str, **extra: Any) -> Path:
    """Write ``MODEL_DIR/model.json`` (``{"family": family, **extra}``) atomically."""
    if family not in FAMILY_LOADERS:
        raise ModelError(f"unknown model family {family!r}; known: {sorted(FAMILY_LOADERS)}")
    path = Path(model_dir) / MODEL_INFO_FILE
    atomic_write_text(
        path, json.dumps({"family": family, **extra}, indent=2, sort_keys=True) + "\n"
    )
    return path


def read_model_info(model_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``MODEL_DIR/model.json`` as a dict, or None when absent; errors name the file."""
    path = Path(model_dir) / MODEL_INFO_FILE
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{path}: cannot read model info: {err}") from None
    if not isinstance(info, dict) or not isinstance(info.get("family"), str):
        raise ModelError(f"{path}: expected a JSON object with a 'family' string")
    return info


def detect_family(model_dir: str | os.PathLike) -> str:
    """The family of a model dir (see the module docstring); :class:`ModelError` if unknown."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: model directory not found")
    info = read_model_info(model_dir)
    if info is not None:
        return info["family"]
    for name, family in _FAMILY_FILES:
        if (model_dir / name).is_file():
            return family
    raise ModelError(
        f"{model_dir}: cannot tell the model family (no {MODEL_INFO_FILE} and no "
        f"{' / '.join(n for n, _ in _FAMILY_FILES)}); is it a trained model dir?"
    )


def _resolve(target: str):
    module_name, _, attr_path = target.partition(":")
    obj = importlib.import_module(module_name)
    for attr in attr_path.split("."):
        obj = getattr(obj, attr)
    return obj


def load_acoustic_model(model_dir: str | os.PathLike, device: str = "cpu") -> AcousticModel:
    """Load the acoustic model in ``model_dir`` (any registered family) on ``device``."""
    family = detect_family(model_dir)
    target = FAMILY_LOADERS.get(family)
    if target is None:
        raise ModelError(
            f"{model_dir}: model family {family!r} is not supported; known: {sorted(FAMILY_LOADERS)}"
        )
    return _resolve(target)(model_dir, device=device)
