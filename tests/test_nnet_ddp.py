"""asr.nnet.trainer under ``torchrun --nproc_per_node 2`` (DistributedDataParallel, gloo, CPU).

The test launches this file as the torchrun script; each rank trains a TDNN (CE)
and a BiLSTM (CTC) on tiny synthetic sets and saves its final weights. Checks:
the ranks end with identical weights, the checkpoint records both ranks, and the
dev loss matches a single-process run with the same effective batch (twice the
per-rank ``batch_frames``) within the stated tolerance.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from asr.nnet.checkpoint import load_checkpoint
from asr.nnet.data import NnetDataset
from asr.nnet.models import CtcConfig, CtcModel, TdnnConfig, TdnnModel
from asr.nnet.trainer import TrainConfig, init_distributed, train

DIM = 8
PER_RANK_BATCH_FRAMES = 200
# Two ranks with batch_frames=B see the same data per step as one process with 2B,
# but batch composition differs, so the dev losses agree only up to training noise:
# |ddp - single| <= REL_TOL * single + ABS_TOL.
REL_TOL, ABS_TOL = 0.3, 0.03


def _data(num_utts: int, seed: int, target_type: str) -> NnetDataset:
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(7).normal(size=(5, DIM)) * 2.0
    feats, targets = {}, {}
    for i in range(num_utts):
        labels = np.concatenate(
            [[s] * rng.integers(3, 7) for s in rng.integers(1, 5, size=rng.integers(2, 5))]
        )
        if target_type == "tokens":  # blank (0) frames between tokens
            labels = np.concatenate([[0, 0, lab] for lab in labels] + [[0, 0]])
        feats[f"u{i}"] = (means[labels] + rng.normal(size=(len(labels), DIM))).astype(np.float32)
        targets[f"u{i}"] = (
            np.array([k for j, k in enumerate(labels) if k and (j == 0 or labels[j - 1] != k)])
            if target_type == "tokens"
            else labels
        )
    return NnetDataset.from_arrays(feats, targets, target_type=target_type)


def _run(loss: str, out_dir: Path, batch_frames: int) -> tuple[float, torch.nn.Module]:
    torch.manual_seed(0)
    if loss == "ce":
        model = TdnnModel(
            TdnnConfig(input_dim=DIM, num_pdfs=5, hidden_dim=32, num_layers=2, context=(2, 2))
        )
        train_set, dev_set = _data(48, 1, "frames"), _data(12, 2, "frames")
    else:
        model = CtcModel(CtcConfig(input_dim=DIM, num_tokens=5, hidden=16, num_layers=1))
        train_set, dev_set = _data(48, 1, "tokens"), _data(12, 2, "tokens")
    cfg = TrainConfig(
        lr=0.01, epochs=4, batch_frames=batch_frames, device="cpu", early_stopping_patience=0
    )
    result = train(
        model, train_set, dev_set, loss=loss, config=cfg, out_dir=out_dir, progress=False
    )
    return result.best_dev_loss, model


def _rank_main(out: Path) -> None:
    torch.set_num_threads(1)
    info = init_distributed(os.environ, backend="gloo")
    for loss in ("ce", "ctc"):
        dev_loss, model = _run(loss, out / loss, PER_RANK_BATCH_FRAMES)
        torch.save(
            {"dev_loss": dev_loss, "state": model.state_dict()},
            out / f"rank{info.rank}_{loss}.result",
        )
    torch.distributed.destroy_process_group()


def test_torchrun_two_ranks_matches_single_process(tmp_path):
    env = dict(
        os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parent.parent)
    )
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           __file__, str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for loss in ("ce", "ctc"):
            rank0 = torch.load(tmp_path / f"rank0_{loss}.result", weights_only=True)
            rank1 = torch.load(tmp_path / f"rank1_{loss}.result", weights_only=True)
            for name, tensor in rank0["state"].items():  # DDP kept the replicas in sync
                assert torch.equal(tensor, rank1["state"][name]), name
            assert rank0["dev_loss"] == rank1["dev_loss"]  # dev loss is all-reduced
            ckpt = load_checkpoint(tmp_path / loss / "checkpoint.pt")["trainer_state"]
            assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2 and ckpt["epoch"] == 4
            assert sorted(p.name for p in (tmp_path / loss).iterdir()) == [
                "best.pt",
                "checkpoint.pt",
                "history.json",
                "iteration_times.json",  # rank 0's per-epoch costs (asr.timing)
            ]
            single, _ = _run(loss, tmp_path / f"single_{loss}", 2 * PER_RANK_BATCH_FRAMES)
            print(f"{loss}: ddp dev loss {rank0['dev_loss']:.4f}, single-process {single:.4f}")
            assert abs(rank0["dev_loss"] - single) <= REL_TOL * single + ABS_TOL
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    _rank_main(Path(sys.argv[1]))
