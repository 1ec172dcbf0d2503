"""Atomic, self-describing model and checkpoint files (``torch.save`` dicts).

A model file holds the model's kind and frozen config (so it can be rebuilt
without code changes) and its weights; a training checkpoint is a model file
plus the trainer's state (optimizer, LR schedule, epoch, RNG states, best dev
loss). Files are written through :func:`asr.fileio.atomic_write`, so a run killed
while saving leaves the previous file intact, and read with
``torch.load(weights_only=True)`` (no arbitrary pickles).

>>> import tempfile, pathlib
>>> from asr.nnet.models import TdnnConfig, TdnnModel
>>> path = pathlib.Path(tempfile.mkdtemp()) / "final.pt"
>>> save_model(path, TdnnModel(TdnnConfig(input_dim=4, num_pdfs=3, hidden_dim=8, num_layers=1)))
>>> load_model(path).config.num_pdfs
3
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asr.errors import ModelError
from asr.fileio import atomic_write
from asr.nnet.models import build_model, model_spec

__all__ = ["load_checkpoint", "load_model", "save_checkpoint", "save_model"]

MODEL_FORMAT = "asr.nnet.model"
CHECKPOINT_FORMAT = "asr.nnet.checkpoint"
FORMAT_VERSION = 1


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel / DataParallel wrapper."""
    return (
        model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model
    )


def _cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in _unwrap(model).state_dict().items()}


def _save(path: str | os.PathLike, payload: Mapping[str, Any]) -> None:
    with atomic_write(path, "wb") as handle:
        torch.save(dict(payload), handle)


def _load(path: str | os.PathLike, expected_format: str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model/checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt files
        raise ModelError(f"{path}: cannot read ({type(err).__name__}: {err})") from err
    if not isinstance(payload, dict) or payload.get("format") not in (
        MODEL_FORMAT,
        CHECKPOINT_FORMAT,
    ):
        raise ModelError(f"{path}: not an asr.nnet model or checkpoint file")
    if expected_format == CHECKPOINT_FORMAT and payload["format"] != CHECKPOINT_FORMAT:
        raise ModelError(f"{path}: a model file, not a training checkpoint")
    if payload.get("version") != FORMAT_VERSION:
        raise ModelError(f"{path}: unsupported format version {payload.get('version')!r}")
    return payload


def save_model(
    path: str | os.PathLike, model: nn.Module, *, extra: Mapping[str, Any] | None = None
) -> None:
    """Write ``model`` (kind, config, weights) and optional plain ``extra`` data atomically."""
    _save(
        path,
        {
            "format": MODEL_FORMAT,
            "version": FORMAT_VERSION,
            "model": model_spec(_unwrap(model)),
            "state_dict": _cpu_state_dict(model),
            "extra": dict(extra or {}),
        },
    )


def load_model(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model stored in a model file or checkpoint, in eval mode on ``device``."""
    payload = _load(path, MODEL_FORMAT)
    model = build_model(payload["model"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise ModelError(f"{path}: weights do not match the stored config: {err}") from err
    return model.to(device).eval()


def save_checkpoint(
    path: str | os.PathLike, *, model: nn.Module, trainer_state: Mapping[str, Any]
) -> None:
    """Write a training checkpoint: the model file fields plus ``trainer_state`` (atomically)."""
    _save(
        path,
        {
            "format": CHECKPOINT_FORMAT,
            "version": FORMAT_VERSION,
            "model": model_spec(_unwrap(model)),
            "state_dict": _cpu_state_dict(model),
            "trainer_state": dict(trainer_state),
        },
    )


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training checkpoint: ``{"model", "state_dict", "trainer_state", ...}``."""
    return _load(path, CHECKPOINT_FORMAT)
