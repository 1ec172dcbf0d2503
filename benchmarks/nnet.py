"""Training speed (frames/s) of the asr.nnet trainer, side by side with a bare torch loop.

Models (AN4-sized realistic settings):

* ``tdnn``: 40-dim fbank, 7-frame context (3, 3), 6 layers of 1024, 2000 pdfs, CE.
* ``bilstm_ctc``: 40-dim fbank, 3 x 320 BiLSTM, 50 tokens, CTC.
* ``bilstm_ctc_sub2``: the same behind a 2-layer conv front subsampling by 2.

Data: synthetic utterances of 100-500 frames (AN4-like lengths), ``--frames``
frames per epoch. Ours is :func:`asr.nnet.trainer.train` (bucketed batching,
collation, Adam, grad clipping, dev pass and checkpoint per epoch; frames/s is
measured over the training batches only, as its progress bar shows it). The
peer is a bare loop (pre-padded batches, forward, loss, backward, Adam) over
the same batches: the ratio ``trainer / bare`` is the trainer's overhead. Each
runs ``--repeats`` epochs; the best epoch is reported (robust to other load on
the machine). Threads: torch's default unless ``--threads``. With CUDA, the
same runs on the GPU are added and the GPU speed-up reported.

Usage::

    .venv/bin/python benchmarks/nnet.py --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from asr.nnet.ctc import ctc_loss_sum  # noqa: E402
from asr.nnet.data import NnetDataset, collate, make_batches  # noqa: E402
from asr.nnet.models import CtcConfig, CtcModel, TdnnConfig, TdnnModel  # noqa: E402
from asr.nnet.trainer import TrainConfig, train  # noqa: E402

FEAT_DIM = 40
BATCH_FRAMES = 8000


def _dataset(total_frames: int, target_type: str, num_out: int, seed: int) -> NnetDataset:
    rng = np.random.default_rng(seed)
    lengths = []
    while sum(lengths) < total_frames:
        lengths.append(int(rng.integers(100, 501)))
    feats, targets = {}, {}
    for i, n in enumerate(lengths):
        feats[f"u{i}"] = rng.normal(size=(n, FEAT_DIM)).astype(np.float32)
        if target_type == "frames":
            targets[f"u{i}"] = rng.integers(0, num_out, size=n)
        else:
            targets[f"u{i}"] = rng.integers(1, num_out, size=max(1, n // 12))
    return NnetDataset.from_arrays(feats, targets, target_type=target_type)


def _model(name: str) -> tuple[torch.nn.Module, str, int]:
    torch.manual_seed(0)
    if name == "tdnn":
        cfg = TdnnConfig(
            input_dim=FEAT_DIM, num_pdfs=2000, hidden_dim=1024, num_layers=6, context=(3, 3)
        )
        return TdnnModel(cfg), "ce", 2000
    conv = {"conv_channels": 256, "conv_strides": (1, 2)} if name.endswith("sub2") else {}
    cfg = CtcConfig(input_dim=FEAT_DIM, num_tokens=50, hidden=320, num_layers=3, **conv)
    return CtcModel(cfg), "ctc", 50


def _bare_loop(
    model: torch.nn.Module, data: NnetDataset, loss: str, device: torch.device, repeats: int
) -> float:
    """Best frames/s of a minimal loop over the same bucketed batches."""
    batches = make_batches(
        data.lengths, batch_frames=BATCH_FRAMES, max_batch_size=256, shuffle=False
    )
    padded = [collate(data, b).to(device) for b in batches]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.to(device).train()
    best = 0.0
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        for batch in padded:
            log_probs, out_lengths = model(batch.feats, batch.lengths)
            if loss == "ce":
                total = F.nll_loss(
                    log_probs.flatten(0, 1), batch.targets.flatten(), reduction="sum"
                )
                value = total / (batch.targets >= 0).sum()
            else:
                total = ctc_loss_sum(log_probs, out_lengths, batch.targets, batch.target_lengths)
                value = total / batch.target_lengths.sum()
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
        _sync(device)
        best = max(best, data.num_frames / (time.perf_counter() - start))
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _measure(name: str, frames: int, repeats: int, device: str) -> dict:
    model, loss, num_out = _model(name)
    target_type = "frames" if loss == "ce" else "tokens"
    train_set = _dataset(frames, target_type, num_out, seed=1)
    dev_set = _dataset(BATCH_FRAMES // 4, target_type, num_out, seed=2)
    cfg = TrainConfig(
        lr=1e-4, epochs=repeats, batch_frames=BATCH_FRAMES, early_stopping_patience=0, device=device
    )
    with tempfile.TemporaryDirectory() as out_dir:
        start = time.perf_counter()
        result = train(
            model, train_set, dev_set, loss=loss, config=cfg, out_dir=out_dir, progress=False
        )
        wall = time.perf_counter() - start
    ours = max(h.frames_per_second for h in result.history)
    torch_device = next(model.parameters()).device
    bare_model, _, _ = _model(name)
    bare = _bare_loop(bare_model, train_set, loss, torch_device, repeats)
    return {
        "device": str(torch_device),
        "params_millions": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "train_frames_per_epoch": train_set.num_frames,
        "trainer_frames_per_s": round(ours, 1),
        "bare_loop_frames_per_s": round(bare, 1),
        "trainer_over_bare": round(ours / bare, 3),
        "trainer_wall_s_incl_dev_and_checkpoints": round(wall, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--frames", type=int, default=8000, help="training frames per epoch")
    parser.add_argument("--repeats", type=int, default=2, help="epochs; the best is reported")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--models", default="tdnn,bilstm_ctc,bilstm_ctc_sub2")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result: dict = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "frames_per_epoch": args.frames,
        "batch_frames": BATCH_FRAMES,
        "models": {},
    }
    for name in args.models.split(","):
        entry = {"cpu": _measure(name, args.frames, args.repeats, "cpu")}
        if torch.cuda.is_available():
            entry["cuda"] = _measure(name, args.frames * 8, args.repeats, "cuda")
            entry["gpu_speedup"] = round(
                entry["cuda"]["trainer_frames_per_s"] / entry["cpu"]["trainer_frames_per_s"], 2
            )
        result["models"][name] = entry
        if not args.json:
            print(name, json.dumps(entry), flush=True)
    if args.json:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
