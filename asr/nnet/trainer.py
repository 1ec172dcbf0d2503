"""Training loop for the neural acoustic models: CE (frame pdf-ids) or CTC, single process or DDP.

:func:`train` runs epochs of length-bucketed batches with Adam, evaluates the
held-out dev loss after each epoch, adjusts the learning rate ("newbob": scale
it by ``newbob_factor`` whenever the dev loss stops improving; "cosine"; or
"constant"), stops early after ``early_stopping_patience`` epochs without
improvement, and writes ``out_dir/checkpoint.pt`` atomically after every epoch
(weights, optimizer, schedule, epoch, per-rank RNG states, best dev loss,
history) and ``out_dir/best.pt`` (a model file) when the dev loss improves; each
epoch's wall time, CPU time and peak memory (training and dev evaluation) go to
``out_dir/iteration_times.json`` (:class:`asr.timing.IterationTimes`).
Rerun with the same ``out_dir`` and it resumes from ``checkpoint.pt``; on CPU,
with fixed seeds, the result is bit-identical to an uninterrupted run.

Under ``torchrun`` the same call trains with DistributedDataParallel: the
launcher script calls :func:`init_distributed` with its environment, each rank
gets an equal share of the batches (:func:`asr.nnet.data.shard_batches`), dev and
train losses are all-reduced, and only rank 0 writes files.

>>> import numpy as np, tempfile
>>> from asr.nnet.data import NnetDataset
>>> from asr.nnet.models import TdnnConfig, TdnnModel
>>> rng = np.random.default_rng(0)
>>> feats = {f"u{i}": rng.normal(size=(20, 4)).astype(np.float32) for i in range(8)}
>>> targets = {u: (f[:, 0] > 0).astype(np.int64) for u, f in feats.items()}
>>> data = NnetDataset.from_arrays(feats, targets, target_type="frames")
>>> model = TdnnModel(TdnnConfig(input_dim=4, num_pdfs=2, hidden_dim=16, num_layers=2, context=(1, 1)))
>>> result = train(model, data, data, loss="ce", config=TrainConfig(lr=0.01, epochs=2),
...                out_dir=tempfile.mkdtemp(), progress=False)
>>> [h.epoch for h in result.history]
[1, 2]
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from asr.errors import TrainingError
from asr.fileio import atomic_write_text
from asr.nnet.checkpoint import load_checkpoint, load_model, save_checkpoint, save_model
from asr.nnet.ctc import ctc_loss_sum
from asr.nnet.data import (
    IGNORE_INDEX,
    Batch,
    NnetDataset,
    SpecAugmentConfig,
    collate,
    make_batches,
    shard_batches,
)
from asr.nnet.models import model_spec
from asr.timing import ITERATION_TIMES_FILE, IterationTimes, StageTimer

__all__ = ["DistInfo", "EpochStats", "TrainConfig", "TrainResult", "init_distributed", "train"]

_SCHEDULES = ("newbob", "cosine", "constant")
_LOSSES = {"ce": "frames", "ctc": "tokens"}
# TrainConfig fields that may change between a run and its resumption.
_RESUMABLE_CHANGES = ("epochs", "device")


@dataclass(frozen=True)
class TrainConfig:
    """Optimization settings. ``batch_frames`` bounds padded frames per batch (per rank).

    ``spec_augment`` and ``speed_factors`` (feature-domain time stretch, CTC only)
    augment the training batches; the dev set is never augmented.
    """

    lr: float = 1e-3
    epochs: int = 10
    batch_frames: int = 20000
    batch_size: int = 256
    lr_schedule: str = "newbob"
    newbob_factor: float = 0.5
    min_lr: float = 1e-6
    early_stopping_patience: int = 3
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    length_jitter: float = 0.1
    spec_augment: SpecAugmentConfig | None = None
    speed_factors: tuple[float, ...] = ()
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.spec_augment, Mapping):
            object.__setattr__(self, "spec_augment", SpecAugmentConfig(**self.spec_augment))
        if not (
            self.lr > 0 and self.epochs >= 1 and self.batch_frames >= 1 and self.batch_size >= 1
        ):
            raise TrainingError(f"invalid TrainConfig (lr, epochs, batch sizes): {self}")
        if self.lr_schedule not in _SCHEDULES:
            raise TrainingError(
                f"lr_schedule must be one of {_SCHEDULES}, got {self.lr_schedule!r}"
            )
        if not 0 < self.newbob_factor <= 1 or self.min_lr < 0 or self.early_stopping_patience < 0:
            raise TrainingError(f"invalid TrainConfig (newbob_factor, min_lr, patience): {self}")
        object.__setattr__(self, "speed_factors", tuple(float(f) for f in self.speed_factors))
        if any(f <= 0 for f in self.speed_factors):
            raise TrainingError(f"speed_factors must be > 0, got {self.speed_factors}")
        if self.device != "auto" and not self.device.startswith(("cpu", "cuda")):
            raise TrainingError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")


@dataclass(frozen=True)
class EpochStats:
    """One epoch: mean train/dev loss (per frame for CE, per token for CTC), LR, frames/s."""

    epoch: int
    train_loss: float
    dev_loss: float
    lr: float
    frames_per_second: float


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`; the model passed in holds the best epoch's weights."""

    best_dev_loss: float
    best_epoch: int
    history: tuple[EpochStats, ...]
    stopped_early: bool
    resumed_from_epoch: int


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a data-parallel job."""

    rank: int = 0
    world_size: int = 1


def init_distributed(env: Mapping[str, str], *, backend: str | None = None) -> DistInfo:
    """Join the process group described by a launcher's environment (``torchrun`` sets it).

    ``env`` is the environment mapping (the CLI passes the process environment). With no
    ``WORLD_SIZE`` or ``WORLD_SIZE=1`` nothing is initialized. The backend defaults to
    NCCL when CUDA is available, else gloo.
    """
    world_size = int(env.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    try:
        rank = int(env["RANK"])
        init_method = f"tcp://{env['MASTER_ADDR']}:{env['MASTER_PORT']}"
    except (KeyError, ValueError) as err:
        raise TrainingError(f"incomplete distributed environment: missing/bad {err}") from err
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size)
    return DistInfo(rank=rank, world_size=world_size)


def _dist_info() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size())
    return DistInfo()


def _resolve_device(name: str, rank: int) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device(f"cuda:{rank % torch.cuda.device_count()}")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


class _LrSchedule:
    """Per-epoch learning rate: newbob (scale on dev plateau), cosine or constant."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.lr = config.lr
        self.best = math.inf

    def lr_for_epoch(self, epoch: int) -> float:
        cfg = self.config
        if cfg.lr_schedule == "cosine":
            progress = (epoch - 1) / max(cfg.epochs, 1)
            return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.lr

    def step(self, dev_loss: float) -> None:
        if self.config.lr_schedule == "newbob" and dev_loss >= self.best:
            self.lr = max(self.lr * self.config.newbob_factor, self.config.min_lr)
        self.best = min(self.best, dev_loss)

    def state_dict(self) -> dict[str, float]:
        return {"lr": self.lr, "best": self.best}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.lr, self.best = float(state["lr"]), float(state["best"])


def _batch_loss(
    model: nn.Module, batch: Batch, loss: str
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Summed loss, its normalizer (frames for CE, tokens for CTC) and the input frames."""
    log_probs, out_lengths = model(batch.feats, batch.lengths)
    if loss == "ce":
        total = F.nll_loss(
            log_probs.reshape(-1, log_probs.shape[-1]),
            batch.targets.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        count = (batch.targets != IGNORE_INDEX).sum()
    else:
        total = ctc_loss_sum(log_probs, out_lengths, batch.targets, batch.target_lengths)
        count = batch.target_lengths.sum()
    return total, count, int(batch.lengths.sum())


def _all_reduce_sums(values: list[float], world_size: int) -> list[float]:
    if world_size == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


@torch.no_grad()
def _evaluate(
    model: nn.Module, data: NnetDataset, loss: str, config: TrainConfig, info: DistInfo, device
) -> float:
    model.eval()
    batches = make_batches(
        data.lengths,
        batch_frames=config.batch_frames,
        max_batch_size=config.batch_size,
        shuffle=False,
    )
    loss_sum, count = 0.0, 0.0
    for indices in shard_batches(batches, rank=info.rank, world_size=info.world_size, pad=False):
        total, num, _ = _batch_loss(model, collate(data, indices).to(device), loss)
        loss_sum += float(total)
        count += float(num)
    loss_sum, count = _all_reduce_sums([loss_sum, count], info.world_size)
    return loss_sum / max(count, 1.0)


def _rng_states(info: DistInfo) -> list[dict[str, Any]]:
    """Every rank's RNG states (gathered to all ranks)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    if info.world_size == 1:
        return [state]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, state)
    return gathered


def _restore_rng(
    states: list[dict[str, Any]], info: DistInfo, config: TrainConfig, epoch: int
) -> None:
    if len(states) == info.world_size:
        torch.set_rng_state(states[info.rank]["torch"])
        if "cuda" in states[info.rank] and torch.cuda.is_available():
            torch.cuda.set_rng_state(states[info.rank]["cuda"])
    else:  # resumed with another world size: continue from a derived seed
        torch.manual_seed(config.seed * 1_000_003 + epoch * 1009 + info.rank)


def _check_compatible(
    checkpoint: dict[str, Any], model: nn.Module, config: TrainConfig, path: Path
) -> None:
    if checkpoint["model"] != model_spec(model):
        raise TrainingError(
            f"{path}: written for model {checkpoint['model']}, not {model_spec(model)}; "
            "use a new out_dir"
        )
    stored = dict(checkpoint["trainer_state"]["train_config"])
    current = dataclasses.asdict(config)
    for key in _RESUMABLE_CHANGES:
        stored.pop(key, None)
        current.pop(key, None)
    if stored != current:
        raise TrainingError(
            f"{path}: written with TrainConfig {stored}, now {current}; use a new out_dir"
        )


def train(
    model: nn.Module,
    train_data: NnetDataset,
    dev_data: NnetDataset,
    *,
    loss: str,
    config: TrainConfig,
    out_dir: str | Path,
    progress: bool = True,
    on_step: Callable[..., None] | None = None,
) -> TrainResult:
    """Train ``model`` in place (ending with the best dev epoch's weights) and return the history.

    ``loss="ce"`` needs frame targets, ``loss="ctc"`` token targets (blank = 0).
    ``on_step(epoch=, step=, loss=)`` is called after every optimizer step (for
    monitoring; an exception raised there aborts training like a kill would).
    Reseeds torch's global RNG from ``config.seed`` on a fresh start.
    """
    if loss not in _LOSSES:
        raise TrainingError(f"loss must be 'ce' or 'ctc', got {loss!r}")
    for name, data in (("train_data", train_data), ("dev_data", dev_data)):
        if data.target_type != _LOSSES[loss]:
            raise TrainingError(
                f"{name} has {data.target_type} targets; loss {loss!r} needs {_LOSSES[loss]}"
            )
    info = _dist_info()
    device = _resolve_device(config.device, info.rank)
    out_dir = Path(out_dir)
    ckpt_path, best_path = out_dir / "checkpoint.pt", out_dir / "best.pt"
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = _LrSchedule(config)
    state: dict[str, Any] = {
        "epoch": 0, "best_dev_loss": math.inf, "best_epoch": 0, "bad_epochs": 0,
        "history": [], "finished": False,
    }  # fmt: skip
    if ckpt_path.exists():
        checkpoint = load_checkpoint(ckpt_path)
        _check_compatible(checkpoint, model, config, ckpt_path)
        model.load_state_dict(checkpoint["state_dict"])
        trainer_state = checkpoint["trainer_state"]
        optimizer.load_state_dict(trainer_state["optimizer"])
        schedule.load_state_dict(trainer_state["schedule"])
        state.update({k: trainer_state[k] for k in state})
        _restore_rng(trainer_state["rng"], info, config, state["epoch"])
    else:
        torch.manual_seed(config.seed + info.rank)
    resumed_from = state["epoch"]
    train_model: nn.Module = model
    if info.world_size > 1:
        device_ids = [device.index] if device.type == "cuda" else None
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    is_main = info.rank == 0
    times = IterationTimes(
        out_dir / ITERATION_TIMES_FILE, unit="epoch", keep_before=state["epoch"] + 1
    )  # a resumed run keeps the epochs it does not repeat (rank 0 writes it)

    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        if state["finished"]:
            break
        epoch_timer = StageTimer.started()
        lr = schedule.lr_for_epoch(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batches = make_batches(
            train_data.lengths, batch_frames=config.batch_frames, max_batch_size=config.batch_size,
            shuffle=True, seed=config.seed, epoch=epoch, length_jitter=config.length_jitter,
        )  # fmt: skip
        mine = shard_batches(batches, rank=info.rank, world_size=info.world_size)
        generator = torch.Generator().manual_seed(
            config.seed * 1_000_003 + epoch * 1009 + info.rank
        )
        model.train()
        loss_sum, count, frames, start = 0.0, 0.0, 0, time.perf_counter()
        bar = tqdm(
            mine,
            desc=f"epoch {epoch}",
            unit="batch",
            disable=not (progress and is_main),
            leave=False,
        )
        for step, indices in enumerate(bar):
            batch = collate(
                train_data,
                indices,
                spec_augment_config=config.spec_augment,
                speed_factors=config.speed_factors,
                generator=generator,
            ).to(device)
            total, num, batch_frames = _batch_loss(train_model, batch, loss)
            mean_loss = total / num.clamp(min=1)
            optimizer.zero_grad(set_to_none=True)
            mean_loss.backward()
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            step_loss = float(mean_loss.detach())
            loss_sum += float(total.detach())
            count += float(num)
            frames += batch_frames
            fps = frames * info.world_size / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(loss=f"{step_loss:.4f}", frames_per_s=f"{fps:.0f}")
            if on_step is not None:
                on_step(epoch=epoch, step=step, loss=step_loss)
        bar.close()
        elapsed = time.perf_counter() - start
        loss_sum, count, frames = _all_reduce_sums(
            [loss_sum, count, float(frames)], info.world_size
        )
        dev_loss = _evaluate(model, dev_data, loss, config, info, device)
        improved = dev_loss < state["best_dev_loss"]
        if improved:
            state.update(best_dev_loss=dev_loss, best_epoch=epoch, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        schedule.step(dev_loss)
        stats = EpochStats(
            epoch, loss_sum / max(count, 1.0), dev_loss, lr, frames / max(elapsed, 1e-9)
        )
        state["history"].append(dataclasses.asdict(stats))
        patience = config.early_stopping_patience
        state["finished"] = bool(patience and state["bad_epochs"] >= patience)
        state["epoch"] = epoch
        rng = _rng_states(info)
        if is_main:
            times.record(epoch, epoch_timer.stop())
            if improved:
                save_model(best_path, model, extra={"epoch": epoch, "dev_loss": dev_loss})
            trainer_state = dict(
                state, optimizer=optimizer.state_dict(), schedule=schedule.state_dict(), rng=rng,
                train_config=dataclasses.asdict(config), world_size=info.world_size,
            )  # fmt: skip
            save_checkpoint(ckpt_path, model=model, trainer_state=trainer_state)
            atomic_write_text(
                out_dir / "history.json", json.dumps(state["history"], indent=1) + "\n"
            )
            if progress:
                tqdm.write(
                    f"epoch {epoch}: train {stats.train_loss:.4f} dev {dev_loss:.4f} lr {lr:.2e} "
                    f"{stats.frames_per_second:.0f} frames/s{' *' if improved else ''}"
                )
        if info.world_size > 1:
            dist.barrier()

    if best_path.exists():
        model.load_state_dict(load_model(best_path).state_dict())
    return TrainResult(
        best_dev_loss=state["best_dev_loss"],
        best_epoch=state["best_epoch"],
        history=tuple(EpochStats(**h) for h in state["history"]),
        stopped_early=state["finished"],
        resumed_from_epoch=resumed_from,
    )
