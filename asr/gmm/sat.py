"""A speaker-adaptive (SAT, tri3) GMM-HMM model dir and its multi-pass decoding (Kaldi's
``steps/decode_fmllr.sh``).

The model dir (written by :mod:`asr.gmm.train_sat`) holds the HMM files, the SAT GMMs
``gmm.pt``, the speaker-independent alignment model ``gmm_si.pt``, the SI feature pipeline and
``model.json`` (family ``sat``, the silence phones). :func:`decode_speaker` decodes the
utterances of one speaker:

1. first pass with ``gmm_si.pt`` on the SI features;
2. an fMLLR transform from that best path (Gaussian posteriors of the SAT model within each
   frame's pdf, silence frames weighted ``silence_weight``), a second pass with the SAT model
   on the adapted features, and a second transform from it (starting from the first);
3. the final pass at every requested decoder config.

The amount of speech picks the transform (:class:`asr.gmm.fmllr.FmllrConfig`): a full one from
500 frames, a diagonal one from 100; a speaker with less gets none and is decoded with the SI
model.

Through the plain :class:`asr.acoustic_model.AcousticModel` interface (one utterance, no speaker:
streaming partials) the model scores with the SI GMMs; as a
:class:`asr.acoustic_model.SpeakerAdaptive` model it estimates a speaker's transform
(:meth:`SatAcousticModel.adapt_to_speaker`, :func:`transform_from_first_pass`) and scores
with it (:meth:`SatAcousticModel.adapted_scores`). (Training-time per-speaker transforms are
:mod:`asr.gmm.train_sat`'s.)

>>> from asr.gmm.sat import SatAcousticModel, decode_speaker  # doctest: +SKIP
>>> model = SatAcousticModel.load("exp/an4/tri3")  # doctest: +SKIP
>>> results = decode_speaker(model, graph, [feats_1, feats_2], [DecoderConfig()])  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from asr.acoustic_model import SpeakerAdaptive, read_model_info
from asr.errors import ModelError
from asr.features.pipeline import FeaturePipelineConfig, apply_pipeline
from asr.gmm.diag_gmm import DiagGmmSet
from asr.gmm.fmllr import FmllrConfig, FmllrStats, apply_fmllr, estimate_fmllr
from asr.gmm.gmm_acoustic import GmmAcousticModel, gmm_scores
from asr.hmm.model import HmmModel

__all__ = [
    "SI_GMM_FILE",
    "SatAcousticModel",
    "SatDecodeConfig",
    "decode_speaker",
    "transform_from_first_pass",
]

SI_GMM_FILE = "gmm_si.pt"


@dataclass(frozen=True)
class SatDecodeConfig:
    """Options of the adaptation passes (Kaldi's ``decode_fmllr.sh``: first-pass acoustic scale
    1/12, silence weight 0.01, two transforms)."""

    first_pass_acoustic_scale: float = 0.083
    silence_weight: float = 0.01
    num_adaptations: int = 2
    fmllr: FmllrConfig = dataclasses.field(default_factory=FmllrConfig)

    def __post_init__(self) -> None:
        if self.num_adaptations < 1 or not 0.0 <= self.silence_weight <= 1.0:
            raise ModelError("SAT decoding: num_adaptations >= 1 and silence_weight in [0, 1]")


@dataclass(frozen=True, eq=False)
class SatAcousticModel:
    """The SAT GMMs (``sat``), the SI alignment model (``si``: :attr:`gmm` for the plain
    interface) and what they share."""

    hmm: HmmModel
    gmm: DiagGmmSet
    sat: DiagGmmSet
    feature_pipeline: FeaturePipelineConfig
    silence_phone_ids: tuple[int, ...]
    transform: np.ndarray | None = None
    model_dir: Path | None = None
    family: ClassVar[str] = "sat"
    frame_independent: ClassVar[bool] = True
    subsampling: ClassVar[int] = 1

    @property
    def num_pdfs(self) -> int:
        return self.sat.num_pdfs

    @property
    def feature_dim(self) -> int:
        return self.sat.dim

    @classmethod
    def load(cls, model_dir: str | os.PathLike, *, device: str = "cpu") -> SatAcousticModel:
        """Read a SAT model dir; :class:`ModelError` names what is missing."""
        base = GmmAcousticModel.load(model_dir, device=device)  # HMM, SAT GMMs, pipeline
        model_dir = Path(model_dir)
        si_path = model_dir / SI_GMM_FILE
        if not si_path.is_file():
            raise ModelError(f"{si_path}: not found (the SAT model's alignment model)")
        si = DiagGmmSet.load(si_path, device=device)
        if si.num_pdfs != base.gmm.num_pdfs or si.dim != base.gmm.dim:
            raise ModelError(f"{si_path}: does not match {model_dir / 'gmm.pt'}")
        info = read_model_info(model_dir) or {}
        return cls(
            hmm=base.hmm,
            gmm=si,
            sat=base.gmm,
            feature_pipeline=base.feature_pipeline,
            silence_phone_ids=tuple(int(p) for p in info.get("silence_phone_ids", ())),
            transform=base.transform,
            model_dir=model_dir,
        )

    def features(
        self, raw_feats: np.ndarray, *, cmvn_stats: np.ndarray | None = None
    ) -> np.ndarray:
        """Raw front-end features -> SI model input (the pipeline of the model dir)."""
        return apply_pipeline(
            raw_feats, self.feature_pipeline, cmvn_stats=cmvn_stats, transform=self.transform
        )

    def log_likelihoods(self, feats: np.ndarray) -> np.ndarray:
        """SI scores ``(num_frames, num_pdfs)`` (first pass; no speaker transform)."""
        return gmm_scores(self.gmm, feats)

    def adapted_log_likelihoods(self, feats: np.ndarray, transform: np.ndarray) -> np.ndarray:
        """SAT scores of ``feats`` mapped by a speaker's ``transform (dim, dim + 1)``."""
        return gmm_scores(self.sat, apply_fmllr(feats, transform))

    def adapt_to_speaker(
        self,
        graph,
        feats: Sequence[np.ndarray],
        config,
        *,
        sat_config: SatDecodeConfig | None = None,
    ) -> np.ndarray | None:
        """The speaker's fMLLR transform (:func:`transform_from_first_pass`)."""
        return transform_from_first_pass(self, graph, feats, config, sat_config=sat_config)

    def adapted_scores(self, feats: np.ndarray, transform: np.ndarray | None) -> np.ndarray:
        """Adapted scores with a speaker's transform, SI scores without one."""
        if transform is None:
            return self.log_likelihoods(feats)
        return self.adapted_log_likelihoods(feats, transform)

    def silence_frames(self, alignment: np.ndarray) -> np.ndarray:
        """``(num_frames,) bool``: True where the transition-id's phone is silence."""
        phones = self.hmm.transition_model.tid2phone[np.asarray(alignment, dtype=np.int64)]
        return np.isin(phones, self.silence_phone_ids)


def transform_from_first_pass(
    model: SatAcousticModel,
    graph,
    feats: Sequence[np.ndarray],
    config,
    *,
    sat_config: SatDecodeConfig | None = None,
) -> np.ndarray | None:
    """One speaker's fMLLR transform from its utterances' SI features (passes 1-2 of the module
    docstring; ``config``: the :class:`asr.decode.DecoderConfig` whose beam the passes use).
    None when the speaker has too little speech for one (``sat_config.fmllr.min_count_diag``
    frames): decode with the SI model then."""
    from asr.decode.viterbi import decode

    sat_config = sat_config or SatDecodeConfig()
    first = dataclasses.replace(config, acoustic_scale=sat_config.first_pass_acoustic_scale)
    paths = [decode(graph, model.log_likelihoods(f), first) for f in feats]
    transform = None
    for adaptation in range(sat_config.num_adaptations):
        stats = FmllrStats.zeros(model.feature_dim)
        for utt_feats, path in zip(feats, paths, strict=True):
            if len(path.alignment) != len(utt_feats):
                continue  # no complete best path (nothing survived the beam)
            silence = model.silence_frames(path.alignment)
            stats.accumulate(
                model.sat, utt_feats, path.pdf_alignment,
                frame_weights=np.where(silence, sat_config.silence_weight, 1.0),
                posterior_feats=None if transform is None else apply_fmllr(utt_feats, transform),
            )  # fmt: skip
        result = estimate_fmllr(stats, init=transform, config=sat_config.fmllr)
        if not result.updated:
            return transform
        transform = result.transform
        if adaptation + 1 < sat_config.num_adaptations:
            paths = [
                decode(graph, model.adapted_log_likelihoods(f, transform), first) for f in feats
            ]
    return transform


def decode_speaker(
    model: SpeakerAdaptive,
    graph,
    feats: Sequence[np.ndarray],
    configs: Sequence,
    *,
    word_symbols=None,
    sat_config: SatDecodeConfig | None = None,
) -> tuple[list[list], np.ndarray | None]:
    """Decode one speaker's utterances (SI features, see the module docstring) with a
    :class:`asr.acoustic_model.SpeakerAdaptive` ``model`` (a :class:`SatAcousticModel`, an
    fMLLR DNN); returns ``results[utterance][config]`` (:class:`asr.decode.DecodeResult`)
    and the speaker's transform (None: too little speech, decoded with the SI model)."""
    from asr.decode.viterbi import decode

    transform = model.adapt_to_speaker(graph, feats, configs[0], sat_config=sat_config)
    results = []
    for utt_feats in feats:
        scores = model.adapted_scores(utt_feats, transform)
        results.append([decode(graph, scores, c, word_symbols=word_symbols) for c in configs])
    return results, transform
