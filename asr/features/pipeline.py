"""The model-level feature pipeline: raw features -> CMVN -> deltas -> splice -> transform.

An acoustic model says how its input features are made from the raw front-end
features of a data directory (``feats.scp``), as Kaldi's ``steps/decode.sh``
builds ``apply-cmvn | add-deltas`` or ``apply-cmvn | splice-feats |
transform-feats``. :class:`FeaturePipelineConfig` holds those steps and is saved
beside the model as ``MODEL_DIR/feature_pipeline.json``; its ``base`` is the raw
front-end config (``feature_config.json``), so a model can recompute its
features from audio.

* :func:`apply_pipeline` — one utterance, ``(num_frames, raw_dim)`` -> float32;
* :func:`iter_features` / :func:`load_features` — every utterance of a data dir,
  with per-speaker CMVN stats from ``cmvn.scp`` + ``utt2spk``;
* :func:`load_transform` / :func:`save_transform` — LDA/MLLT matrices in a model dir.

Steps, in order (each optional):

1. CMVN: ``"speaker"`` (``apply-cmvn --utt2spk`` with ``cmvn.scp``), ``"utterance"``
   (stats of the utterance itself), ``"sliding"`` (``apply-cmvn-sliding``) or ``"none"``;
2. deltas of order ``deltas`` (``add-deltas --delta-order``; 0 = none);
3. ``splice = (left, right)`` context frames (``splice-feats``, edges repeated);
4. ``transform``: a matrix ``(out_dim, dim)`` or ``(out_dim, dim + 1)`` (``transform-feats``).

>>> import numpy as np
>>> raw = np.random.default_rng(0).normal(size=(50, 13)).astype(np.float32)
>>> pipe = FeaturePipelineConfig(cmvn="utterance", deltas=2)
>>> apply_pipeline(raw, pipe).shape
(50, 39)
>>> FeaturePipelineConfig.from_dict(pipe.to_dict()) == pipe
True
>>> FeaturePipelineConfig(cmvn="none", deltas=0, splice=(3, 3)).output_dim(13)
91
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asr.data import read_kaldi_map
from asr.errors import AsrError, FeatureError
from asr.features.functional import apply_cmvn, compute_cmvn_stats, compute_deltas
from asr.features.io import read_matrix
from asr.features.online import SlidingCmvnConfig, sliding_cmvn
from asr.features.transforms import apply_transform
from asr.features.transforms import splice_frames as splice
from asr.fileio import atomic_write, atomic_write_text

__all__ = [
    "CMVN_MODES",
    "FEATURE_CONFIG_FILE",
    "PIPELINE_FILE",
    "FeaturePipelineConfig",
    "apply_pipeline",
    "iter_features",
    "load_features",
    "load_transform",
    "read_feature_config",
    "save_transform",
    "splice",
]

PIPELINE_FILE = "feature_pipeline.json"
FEATURE_CONFIG_FILE = "feature_config.json"
CMVN_MODES = ("none", "utterance", "speaker", "sliding")
_FORMAT_NAME = "asr-feature-pipeline"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class FeaturePipelineConfig:
    """How a model's input features are made from raw front-end features.

    ``cmvn``: one of :data:`CMVN_MODES`; ``norm_vars``: also normalize variances;
    ``cmn_window``/``cmn_center``: window (frames) and centring of ``"sliding"`` CMVN;
    ``deltas``: delta order (0 = none), ``delta_window``: Kaldi's ``--delta-window``;
    ``splice``: ``(left, right)`` context frames or None; ``transform``: file name of
    a matrix in the model dir (see :func:`load_transform`), applied last;
    ``base``: the raw front-end config as a dict (``config_to_dict``), or None.
    """

    cmvn: str = "speaker"
    norm_vars: bool = False
    deltas: int = 2
    delta_window: int = 2
    splice: tuple[int, int] | None = None
    transform: str | None = None
    base: Mapping[str, Any] | None = None
    cmn_window: int = 600
    cmn_center: bool = False

    def __post_init__(self) -> None:
        if self.cmvn not in CMVN_MODES:
            raise FeatureError(f"cmvn must be one of {CMVN_MODES}, got {self.cmvn!r}")
        if not isinstance(self.deltas, int) or self.deltas < 0:
            raise FeatureError(f"deltas (delta order) must be an int >= 0, got {self.deltas!r}")
        if self.delta_window < 1:
            raise FeatureError(f"delta_window must be >= 1, got {self.delta_window}")
        if self.cmn_window < 1:
            raise FeatureError(f"cmn_window must be >= 1, got {self.cmn_window}")
        if self.splice is not None:
            try:
                left, right = (int(v) for v in self.splice)
            except (TypeError, ValueError):
                raise FeatureError(
                    f"splice must be (left, right) or None, got {self.splice!r}"
                ) from None
            if left < 0 or right < 0:
                raise FeatureError(f"splice context must be >= 0, got {self.splice!r}")
            object.__setattr__(self, "splice", (left, right))
        if self.transform is not None and (
            not self.transform or Path(self.transform).name != self.transform
        ):
            raise FeatureError(
                f"transform must be a file name inside the model dir, got {self.transform!r}"
            )
        if self.base is not None:
            if not isinstance(self.base, Mapping) or "type" not in self.base:
                raise FeatureError("base must be a feature config dict with a 'type' key")
            object.__setattr__(self, "base", dict(self.base))

    # ------------------------------------------------------------------ dims
    def dim_before_transform(self, raw_dim: int) -> int:
        """Feature dim after CMVN, deltas and splicing of ``raw_dim``-dim raw features."""
        dim = raw_dim * (self.deltas + 1)
        if self.splice is not None:
            dim *= self.splice[0] + 1 + self.splice[1]
        return dim

    def output_dim(self, raw_dim: int, transform: np.ndarray | None = None) -> int:
        """Model input dim; with a transform, its number of rows."""
        if self.transform is not None:
            if transform is None:
                raise FeatureError(f"output_dim needs the transform matrix {self.transform!r}")
            return int(np.asarray(transform).shape[0])
        return self.dim_before_transform(raw_dim)

    def base_config(self):
        """The raw front-end config object (``MfccConfig``, ...) from ``base``, or None."""
        if self.base is None:
            return None
        from asr.features.extractors import config_from_dict

        return config_from_dict(dict(self.base))

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (with format name and version)."""
        obj = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        obj["splice"] = list(self.splice) if self.splice is not None else None
        obj["base"] = dict(self.base) if self.base is not None else None
        return {"format": _FORMAT_NAME, "version": _FORMAT_VERSION, **obj}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> FeaturePipelineConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`FeatureError`."""
        obj = dict(obj)
        fmt, version = obj.pop("format", _FORMAT_NAME), obj.pop("version", _FORMAT_VERSION)
        if fmt != _FORMAT_NAME or version != _FORMAT_VERSION:
            raise FeatureError(f"unsupported feature pipeline format {fmt!r} version {version!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(obj) - known)
        if unknown:
            raise FeatureError(f"unknown feature pipeline keys: {unknown}")
        if obj.get("splice") is not None:
            obj["splice"] = tuple(obj["splice"])
        try:
            return cls(**obj)
        except TypeError as err:
            raise FeatureError(f"bad feature pipeline: {err}") from None

    def save(self, model_dir: str | os.PathLike) -> Path:
        """Write ``MODEL_DIR/feature_pipeline.json`` atomically; returns its path."""
        path = Path(model_dir) / PIPELINE_FILE
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, model_dir: str | os.PathLike) -> FeaturePipelineConfig:
        """Read ``MODEL_DIR/feature_pipeline.json``; errors name the file."""
        path = Path(model_dir) / PIPELINE_FILE
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FeatureError(
                f"{path}: not found; the model dir has no feature pipeline"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise FeatureError(f"{path}: cannot read feature pipeline: {err}") from None
        if not isinstance(obj, dict):
            raise FeatureError(f"{path}: expected a JSON object")
        try:
            return cls.from_dict(obj)
        except FeatureError as err:
            raise FeatureError(f"{path}: {err}") from None


# --------------------------------------------------------------------------- transforms


def save_transform(path: str | os.PathLike, matrix: np.ndarray) -> None:
    """Write a transform ``(out_dim, dim[+1])`` as ``.npy`` (float64), atomically."""
    path = Path(path)
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2:
        raise FeatureError(f"{path}: a transform must be a matrix, got shape {matrix.shape}")
    if path.suffix != ".npy":
        raise FeatureError(f"{path}: transforms are saved as .npy")
    with atomic_write(path, "wb") as handle:
        np.save(handle, matrix, allow_pickle=False)


def load_transform(path: str | os.PathLike) -> np.ndarray:
    """Read a transform matrix as float64: ``.npy``, ``.pt`` (a tensor) or a Kaldi matrix
    (binary or text, e.g. ``final.mat``)."""
    path = Path(path)
    if not path.is_file():
        raise FeatureError(f"{path}: transform matrix not found")
    try:
        if path.suffix == ".npy":
            matrix = np.load(path, allow_pickle=False)
        elif path.suffix == ".pt":
            import torch

            matrix = torch.load(path, map_location="cpu", weights_only=True).numpy()
        else:
            matrix = read_matrix(path)
    except AsrError as err:
        raise FeatureError(f"{path}: cannot read transform: {err}") from None
    except (OSError, ValueError, RuntimeError, AttributeError) as err:
        raise FeatureError(f"{path}: cannot read transform: {err}") from None
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.size == 0:
        raise FeatureError(f"{path}: a transform must be a non-empty matrix, got {matrix.shape}")
    return matrix


# --------------------------------------------------------------------------- one utterance


def apply_pipeline(
    raw_feats: np.ndarray,
    pipeline: FeaturePipelineConfig,
    *,
    cmvn_stats: np.ndarray | None = None,
    transform: np.ndarray | None = None,
) -> np.ndarray:
    """One utterance: ``raw_feats: (num_frames, raw_dim)`` -> ``(num_frames, out_dim)`` float32.

    ``cmvn_stats: (2, raw_dim + 1)``: the speaker's Kaldi CMVN stats for
    ``cmvn="speaker"``; when None, the utterance's own stats stand in (the
    utterance is its own speaker, as for a single file given to a recognizer).
    They also override the utterance's stats for ``cmvn="utterance"``.
    ``transform``: the matrix named by ``pipeline.transform`` (required then).
    """
    feats = np.asarray(raw_feats)
    if feats.ndim != 2:
        raise FeatureError(f"raw features must be (num_frames, dim), got shape {feats.shape}")
    feats = feats.astype(np.float32, copy=False)
    if pipeline.cmvn in ("speaker", "utterance"):
        stats = compute_cmvn_stats(feats) if cmvn_stats is None else cmvn_stats
        if feats.shape[0] > 0 or cmvn_stats is not None:
            feats = apply_cmvn(feats, stats, norm_vars=pipeline.norm_vars)
    elif pipeline.cmvn == "sliding":
        feats = sliding_cmvn(
            feats,
            SlidingCmvnConfig(
                cmn_window=pipeline.cmn_window,
                min_window=min(100, pipeline.cmn_window),
                center=pipeline.cmn_center,
                norm_vars=pipeline.norm_vars,
            ),
        )
    if pipeline.deltas > 0:
        feats = compute_deltas(feats, window=pipeline.delta_window, order=pipeline.deltas)
    if pipeline.splice is not None:
        feats = splice(feats, left=pipeline.splice[0], right=pipeline.splice[1])
    if pipeline.transform is not None:
        if transform is None:
            raise FeatureError(
                f"the feature pipeline needs the transform {pipeline.transform!r}; "
                "load it with load_transform(MODEL_DIR / name)"
            )
        feats = apply_transform(feats, np.asarray(transform, dtype=np.float64))
    return np.ascontiguousarray(feats, dtype=np.float32)


# --------------------------------------------------------------------------- data dirs


def read_feature_config(data_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The raw front-end config of a data dir's features, or None when not found.

    Looks at ``DATA/feature_config.json``, ``DATA/data/feature_config.json`` and then
    beside the archive of the first ``feats.scp`` entry (where
    ``asr features compute --out`` puts it).
    """
    data_dir = Path(data_dir)
    candidates = [data_dir / FEATURE_CONFIG_FILE, data_dir / "data" / FEATURE_CONFIG_FILE]
    feats_scp = data_dir / "feats.scp"
    if feats_scp.is_file():
        with open(feats_scp, encoding="utf-8") as handle:
            first = handle.readline().split(maxsplit=1)
        if len(first) == 2:
            ark = first[1].strip().rsplit(":", 1)[0] if ":" in first[1] else first[1].strip()
            ark_path = Path(ark)
            if not ark_path.is_absolute():
                ark_path = Path.cwd() / ark_path
            candidates.append(ark_path.parent / FEATURE_CONFIG_FILE)
    for path in candidates:
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
                raise FeatureError(f"{path}: cannot read feature config: {err}") from None
    return None


def _check_base(data_dir: Path, pipeline: FeaturePipelineConfig) -> None:
    if pipeline.base is None:
        return
    found = read_feature_config(data_dir)
    if found is not None and dict(found) != dict(pipeline.base):
        diff = sorted(
            k for k in set(found) | set(pipeline.base) if found.get(k) != pipeline.base.get(k)
        )
        raise FeatureError(
            f"{data_dir}: features were computed with another config than the model's "
            f"(differs in {diff[:6]}); recompute them with the model's feature config"
        )


def iter_features(
    data_dir: str | os.PathLike,
    pipeline: FeaturePipelineConfig,
    *,
    model_dir: str | os.PathLike | None = None,
    utt_ids: Iterable[str] | None = None,
    transform: np.ndarray | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(utt_id, feats (num_frames, dim) float32)`` for the utterances of ``feats.scp``
    (in its order, or ``utt_ids``' order), through ``pipeline``.

    ``model_dir`` is where ``pipeline.transform`` is read from (or pass ``transform``).
    Raises :class:`FeatureError` when ``feats.scp``/``cmvn.scp``/``utt2spk`` are missing
    or an utterance or speaker has no entry.
    """
    data_dir = Path(data_dir)
    feats_scp = data_dir / "feats.scp"
    if not feats_scp.is_file():
        raise FeatureError(f"{feats_scp}: not found; run `asr features compute {data_dir}` first")
    feats_map = read_kaldi_map(feats_scp)
    _check_base(data_dir, pipeline)
    if pipeline.transform is not None and transform is None:
        if model_dir is None:
            raise FeatureError(
                f"the feature pipeline needs the transform {pipeline.transform!r}: give model_dir"
            )
        transform = load_transform(Path(model_dir) / pipeline.transform)
    spk_stats: dict[str, np.ndarray] = {}
    utt2spk: dict[str, str] = {}
    cmvn_map: dict[str, str] = {}
    if pipeline.cmvn == "speaker":
        cmvn_scp, utt2spk_path = data_dir / "cmvn.scp", data_dir / "utt2spk"
        if not cmvn_scp.is_file():
            raise FeatureError(
                f"{cmvn_scp}: not found; run `asr features compute {data_dir}` first "
                "(speaker CMVN needs its stats)"
            )
        if not utt2spk_path.is_file():
            raise FeatureError(f"{utt2spk_path}: not found (speaker CMVN needs it)")
        cmvn_map = read_kaldi_map(cmvn_scp)
        utt2spk = read_kaldi_map(utt2spk_path)
    wanted = list(feats_map) if utt_ids is None else list(utt_ids)
    for utt_id in wanted:
        rxfile = feats_map.get(utt_id)
        if rxfile is None:
            raise FeatureError(f"{feats_scp}: no features for utterance {utt_id!r}")
        raw = read_matrix(rxfile)
        stats = None
        if pipeline.cmvn == "speaker":
            spk_id = utt2spk.get(utt_id)
            if spk_id is None:
                raise FeatureError(f"{data_dir / 'utt2spk'}: no speaker for {utt_id!r}")
            stats = spk_stats.get(spk_id)
            if stats is None:
                if spk_id not in cmvn_map:
                    raise FeatureError(f"{data_dir / 'cmvn.scp'}: no stats for speaker {spk_id!r}")
                stats = spk_stats[spk_id] = read_matrix(cmvn_map[spk_id])
        try:
            yield utt_id, apply_pipeline(raw, pipeline, cmvn_stats=stats, transform=transform)
        except FeatureError as err:
            raise FeatureError(f"{data_dir}: utterance {utt_id}: {err}") from None


def load_features(
    data_dir: str | os.PathLike,
    pipeline: FeaturePipelineConfig,
    *,
    model_dir: str | os.PathLike | None = None,
    utt_ids: Iterable[str] | None = None,
) -> dict[str, np.ndarray]:
    """:func:`iter_features` collected into ``{utt_id: feats}`` (insertion = scp order)."""
    return dict(iter_features(data_dir, pipeline, model_dir=model_dir, utt_ids=utt_ids))
