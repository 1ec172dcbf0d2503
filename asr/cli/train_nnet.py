"""``asr train dnn`` and ``asr train ctc``: neural acoustic models (registered by asr.cli.train).

Examples::

    asr train dnn data/an4/train data/an4/dev data/an4/lang exp/an4/tri2/ali exp/an4/dnn
    asr train ctc data/an4/train data/an4/dev data/an4/lang exp/an4/ctc --epochs 20
    torchrun --nproc_per_node 2 -m asr.cli.main train dnn ...   # DistributedDataParallel

Under ``torchrun`` the process group is joined from the launcher's environment
(the only place ``os.environ`` is read); an interrupted run resumes from
``OUT_DIR/checkpoint.pt``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from asr.cli.common import HelpFormatter, progress_enabled


def _pair(text: str) -> tuple[int, int]:
    try:
        left, right = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LEFT,RIGHT, got {text!r}") from None
    return left, right


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


_DNN_EPILOG = """examples:
  asr train dnn data/an4/train data/an4/dev data/an4/lang exp/an4/tri2 exp/an4/dnn
  asr train dnn data/an4/train data/an4/dev data/an4/lang exp/an4/tri3 exp/an4/dnn --fmllr \\
      @recipes/an4/conf/dnn.conf
  torchrun --nproc_per_node 2 -m asr.cli.main train dnn ...   # DistributedDataParallel
"""

_CTC_EPILOG = """examples:
  asr train ctc data/an4/train data/an4/dev data/an4/lang exp/an4/ctc --epochs 20
  asr train ctc data/an4/train data/an4/dev data/an4/lang exp/an4/ctc_stream --unidirectional
"""

_DIR_HELP = {
    "data_dir": "training data dir (with features)",
    "dev_dir": "dev data dir (with features): the validation loss, early stopping",
    "lang_dir": "lang directory",
    "ali_dir": "a GMM model's alignment dir (its ali/) of DATA_DIR",
    "out_dir": "model directory to write",
}


def _common(parser: argparse.ArgumentParser, *, epochs: int, lr: float, patience: int) -> None:
    parser.add_argument(
        "--epochs", type=int, default=epochs, metavar="N", help=f"epochs (default {epochs})"
    )
    parser.add_argument("--lr", type=float, default=lr, metavar="LR", help="initial Adam LR")
    parser.add_argument("--lr-schedule", choices=("newbob", "cosine", "constant"), default="newbob",
                        help="newbob: halve the LR when the dev loss stalls (default); "
                        "cosine; constant")  # fmt: skip
    parser.add_argument("--patience", type=int, default=patience, metavar="N",
                        help="early stopping after N epochs without dev improvement (0: off)")  # fmt: skip
    parser.add_argument("--batch-frames", type=int, default=20000, metavar="N",
                        help="padded frames per batch (per rank)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=64, metavar="N",
                        help="most utterances per batch (default 64)")  # fmt: skip
    parser.add_argument("--dropout", type=float, default=0.1, metavar="P",
                        help="dropout probability (default 0.1)")  # fmt: skip
    parser.add_argument("--cmvn", choices=("speaker", "utterance", "sliding", "none"),
                        default="speaker", help="CMVN of the data dir's features (default speaker)")  # fmt: skip
    parser.add_argument(
        "--deltas", type=int, default=0, metavar="N", help="delta order (default 0)"
    )
    parser.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda[:N]")
    parser.add_argument("--threads", type=int, default=0, metavar="N",
                        help="torch CPU threads per process (0: torch's default)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initial weights, batch order, dropout (default 0)")  # fmt: skip


def register_dnn(sub: argparse._SubParsersAction) -> None:
    dnn = sub.add_parser(
        "dnn",
        help="hybrid DNN-HMM: a TDNN over pdf-ids from GMM alignments",
        description="Train a TDNN frame classifier (cross-entropy) on the pdf-ids of ALI_DIR's "
        "alignments of DATA_DIR (the alignment model is ALI_DIR/ali_info.json's model_dir, else "
        "ALI_DIR's parent); the dev loss comes from DEV_DIR aligned with the same model (into "
        "OUT_DIR/ali_dev unless --dev-ali-dir). Priors from the alignment counts. OUT_DIR gets "
        "the HMM files (decode with the GMM's HCLG), final.pt, log_priors.npy, "
        "feature_pipeline.json, model.json, train_summary.json.",
        epilog=_DNN_EPILOG,
        formatter_class=HelpFormatter,
    )
    for name in ("data_dir", "dev_dir", "lang_dir", "ali_dir", "out_dir"):
        dnn.add_argument(name, type=Path, metavar=name.upper(), help=_DIR_HELP[name])
    dnn.add_argument("--dev-ali-dir", type=Path, default=None, metavar="DIR",
                     help="DEV_DIR's alignment (default: aligned into OUT_DIR/ali_dev)")  # fmt: skip
    dnn.add_argument("--hidden-dim", type=int, default=384, metavar="N",
                     help="units per TDNN layer (default 384)")  # fmt: skip
    dnn.add_argument("--num-layers", type=int, default=5, metavar="N",
                     help="TDNN layers (default 5)")  # fmt: skip
    dnn.add_argument("--context", type=_pair, default=(8, 8), metavar="L,R",
                     help="input context in frames (R = streaming latency; default 8,8)")  # fmt: skip
    dnn.add_argument(
        "--fmllr", action="store_true",
        help="input: the SAT alignment model's features mapped by each speaker's fMLLR "
        "transform (ALI_DIR/trans.npz; dev speakers' from their SAT alignment); the model "
        "keeps the SAT GMMs and adapts to each new speaker when decoding",
    )  # fmt: skip
    _common(dnn, epochs=10, lr=1e-3, patience=3)
    dnn.set_defaults(func=_train_dnn)


def register_ctc(sub: argparse._SubParsersAction) -> None:
    ctc = sub.add_parser(
        "ctc",
        help="RNN+CTC over phones (lexicon tokens; decode with asr graph mktlg)",
        description="Train a (conv front +) BiLSTM/LSTM with CTC over the lang's phones "
        "(<blk> = token 0; tokens = asr graph mktlg's default). Targets: each word's first "
        "pronunciation. OUT_DIR gets final.pt, tokens.txt, feature_pipeline.json, model.json, "
        "train_summary.json.",
        epilog=_CTC_EPILOG,
        formatter_class=HelpFormatter,
    )
    for name in ("data_dir", "dev_dir", "lang_dir", "out_dir"):
        ctc.add_argument(name, type=Path, metavar=name.upper(), help=_DIR_HELP[name])
    ctc.add_argument(
        "--hidden", type=int, default=256, metavar="N", help="LSTM cells per direction"
    )
    ctc.add_argument("--num-layers", type=int, default=3, metavar="N",
                     help="LSTM layers (default 3)")  # fmt: skip
    ctc.add_argument("--unidirectional", action="store_true",
                     help="streaming variant (LSTM, forward_chunk)")  # fmt: skip
    ctc.add_argument("--conv-channels", type=int, default=256, metavar="N", help="0: no conv front")
    ctc.add_argument("--conv-strides", type=_ints, default=(1, 2), metavar="S,S",
                     help="conv strides (subsampling = their product; default 1,2)")  # fmt: skip
    ctc.add_argument("--oov", choices=("map", "skip"), default="map",
                     help="OOV words: map to the lang's OOV word, or skip the utterance")  # fmt: skip
    ctc.add_argument("--spec-augment", action="store_true", help="SpecAugment-style masking")
    ctc.add_argument("--speed-factors", type=_floats, default=(), metavar="F,F",
                     help="feature-domain speed perturbation, e.g. 0.9,1.0,1.1")  # fmt: skip
    _common(ctc, epochs=20, lr=1e-3, patience=4)
    ctc.set_defaults(func=_train_ctc)


def _train_config(args: argparse.Namespace, **extra):
    from asr.nnet.trainer import TrainConfig

    return TrainConfig(
        lr=args.lr, epochs=args.epochs, batch_frames=args.batch_frames,
        batch_size=args.batch_size, lr_schedule=args.lr_schedule,
        early_stopping_patience=args.patience, seed=args.seed, device=args.device, **extra,
    )  # fmt: skip


def _setup(args: argparse.Namespace) -> int:
    """Threads and the process group (from torchrun's environment); returns the rank."""
    import torch

    from asr.nnet.trainer import init_distributed

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    return init_distributed(os.environ).rank


def _report(args: argparse.Namespace, summary: dict, rank: int) -> int:
    if rank != 0:
        return 0
    best = summary["history"][summary["best_epoch"] - 1] if summary.get("history") else {}
    print(
        f"{args.out_dir}: {summary['kind']} model, {summary['num_params']} parameters, "
        f"best epoch {summary['best_epoch']}/{summary['epochs_run']} dev loss "
        f"{summary['best_dev_loss']:.4f} (train {best.get('train_loss', float('nan')):.4f}); "
        f"{summary['train_frames']} frames, {summary['mean_frames_per_second']} frames/s, "
        f"{summary['train_seconds']} s"
    )
    return 0


def _train_dnn(args: argparse.Namespace) -> int:
    from asr.nnet.train_steps import DnnRecipeConfig, train_dnn

    rank = _setup(args)
    config = DnnRecipeConfig(
        hidden_dim=args.hidden_dim, num_layers=args.num_layers, context=args.context,
        dropout=args.dropout, cmvn=args.cmvn, deltas=args.deltas, fmllr=args.fmllr,
        train=_train_config(args),
    )  # fmt: skip
    summary = train_dnn(
        args.data_dir, args.dev_dir, args.lang_dir, args.ali_dir, args.out_dir,
        config=config, dev_ali_dir=args.dev_ali_dir, progress=progress_enabled(),
    )  # fmt: skip
    return _report(args, summary, rank)


def _train_ctc(args: argparse.Namespace) -> int:
    from asr.nnet.data import SpecAugmentConfig
    from asr.nnet.train_steps import CtcRecipeConfig, train_ctc

    rank = _setup(args)
    train_config = _train_config(
        args,
        spec_augment=SpecAugmentConfig() if args.spec_augment else None,
        speed_factors=args.speed_factors,
    )
    config = CtcRecipeConfig(
        hidden=args.hidden, num_layers=args.num_layers, bidirectional=not args.unidirectional,
        conv_channels=args.conv_channels, conv_strides=args.conv_strides, dropout=args.dropout,
        cmvn=args.cmvn, deltas=args.deltas, oov=args.oov, train=train_config,
    )  # fmt: skip
    summary = train_ctc(
        args.data_dir, args.dev_dir, args.lang_dir, args.out_dir, config=config,
        progress=progress_enabled(),
    )  # fmt: skip
    if rank == 0 and summary.get("skipped_utterances"):
        print("utterances without targets: " + json.dumps(summary["skipped_utterances"]))
    return _report(args, summary, rank)
