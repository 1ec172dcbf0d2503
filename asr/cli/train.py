"""``asr train``: acoustic-model training, one subcommand per model type.

Examples::

    asr train mono data/yesno/train data/yesno/lang exp/yesno/mono --totgauss 400
    asr train mono data/an4/train data/an4/lang exp/an4/mono --nj 2

Other model types (``tri``, ``dnn``, ``ctc``) register here as further subcommands.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from asr.cli.common import progress_enabled


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train acoustic models (mono, ...)",
        description="Train acoustic models from a data dir and a lang dir.",
    )
    sub = parser.add_subparsers(dest="train_command", metavar="MODEL", required=True)
    _register_mono(sub)


def _register_mono(sub: argparse._SubParsersAction) -> None:
    mono = sub.add_parser(
        "mono",
        help="monophone GMM-HMM from a flat start (Kaldi's train_mono.sh)",
        description="Flat-start monophone GMM-HMM training: equal alignment, then Viterbi "
        "(or Baum-Welch) re-estimation with periodic re-alignment and mixing up. Writes the "
        "HMM files, gmm.pt, feature_pipeline.json, ali/ and train_log.json to OUT_DIR. An "
        "interrupted run resumes from its last finished iteration.",
    )
    mono.add_argument("data_dir", type=Path, metavar="DATA_DIR")
    mono.add_argument("lang_dir", type=Path, metavar="LANG_DIR")
    mono.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    mono.add_argument("--nj", type=int, default=1, metavar="N", help="parallel jobs (default 1)")
    mono.add_argument("--num-iters", type=int, default=40, metavar="N")
    mono.add_argument("--totgauss", type=int, default=1000, metavar="N", help="target Gaussians")
    mono.add_argument("--max-iter-inc", type=int, default=30, metavar="N")
    mono.add_argument("--boost-silence", type=float, default=1.0, metavar="F")
    mono.add_argument(
        "--baum-welch",
        action="store_true",
        help="accumulate from forward-backward posteriors instead of Viterbi alignments",
    )
    mono.add_argument("--seed", type=int, default=0)
    mono.add_argument(
        "--force", action="store_true", help="retrain even when OUT_DIR is up to date"
    )
    mono.set_defaults(func=_train_mono)


def _train_mono(args: argparse.Namespace) -> int:
    from asr.gmm.train_mono import MonoConfig, train_mono

    config = MonoConfig(
        num_iters=args.num_iters,
        totgauss=args.totgauss,
        max_iter_inc=args.max_iter_inc,
        boost_silence=args.boost_silence,
        baum_welch=args.baum_welch,
        seed=args.seed,
    )
    bar = None
    if progress_enabled():
        from tqdm import tqdm

        bar = tqdm(total=config.num_iters, desc="mono", unit="iter")

    def progress(stats) -> None:
        if bar is not None:
            bar.n = stats.iteration + 1
            bar.set_postfix(
                loglike=f"{stats.log_like_per_frame:.3f}", gauss=stats.num_gauss, mode=stats.mode
            )
            bar.refresh()

    try:
        summary = train_mono(
            args.data_dir,
            args.lang_dir,
            args.out_dir,
            config=config,
            num_jobs=args.nj,
            progress=progress,
            force=args.force,
        )
    finally:
        if bar is not None:
            bar.close()
    curve = summary.log_like_per_frame
    if summary.resumed_from is not None:
        print(f"resumed at iteration {summary.resumed_from}")
    first = curve[0] if curve else math.nan
    last = curve[-1] if curve else math.nan
    print(
        f"{args.out_dir}: {summary.num_pdfs} pdfs, {summary.num_gauss} Gaussians, "
        f"{len(curve)} iterations; log-likelihood per frame {first:.3f} -> {last:.3f}; "
        f"aligned {summary.num_aligned}, failed {summary.num_failed} "
        f"({summary.seconds:.1f} s)"
    )
    if summary.num_failed:
        print(f"failed utterances are listed in {args.out_dir / 'ali' / 'failed.txt'}")
    return 0
