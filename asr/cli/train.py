"""``asr train``: acoustic-model training, one subcommand per model type.

Examples::

    asr train mono data/yesno/train data/yesno/lang exp/yesno/mono --totgauss 400
    asr train mono data/an4/train data/an4/lang exp/an4/mono --nj 2
    asr train tri data/an4/train data/an4/lang exp/an4/mono exp/an4/tri1 --num-leaves 2000
    asr train tri data/an4/train data/an4/lang exp/an4/tri1 exp/an4/tri2 --mode lda-mllt
    asr train sat data/an4/train data/an4/lang exp/an4/tri2 exp/an4/tri3

Other model types (``dnn``, ``ctc``) register here as further subcommands.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

from asr.cli.common import HelpFormatter, progress_enabled


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train acoustic models (mono, ...)",
        description="Train acoustic models from a data dir and a lang dir.",
        epilog=_GROUP_EPILOG,
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="train_command", metavar="MODEL", required=True)
    _register_mono(sub)
    _register_tri(sub)
    _register_sat(sub)
    _register_nnet(sub)


_GROUP_EPILOG = """examples:
  asr train mono data/yesno/train data/yesno/lang exp/yesno/mono --totgauss 400
  asr train tri data/an4/train data/an4/lang exp/an4/mono exp/an4/tri1 --num-leaves 2000
  asr train sat data/an4/train data/an4/lang exp/an4/tri2 exp/an4/tri3
  asr train dnn data/an4/train data/an4/dev data/an4/lang exp/an4/tri3 exp/an4/dnn --fmllr
  asr train ctc data/an4/train data/an4/dev data/an4/lang exp/an4/ctc --epochs 20
"""

_MONO_EXAMPLES = """examples:
  asr train mono data/yesno/train data/yesno/lang exp/yesno/mono --totgauss 400
  asr train mono data/an4/train data/an4/lang exp/an4/mono --nj 2 @recipes/an4/conf/mono.conf
"""

_TRI_EXAMPLES = """examples:
  asr train tri data/an4/train data/an4/lang exp/an4/mono exp/an4/tri1 --num-leaves 2000 \\
      --totgauss 10000
  asr train tri data/an4/train data/an4/lang exp/an4/tri1 exp/an4/tri2 --mode lda-mllt
"""

_SAT_EXAMPLES = """examples:
  asr train sat data/an4/train data/an4/lang exp/an4/tri2 exp/an4/tri3 --nj 2
  asr train sat data/an4/train data/an4/lang exp/an4/tri2 exp/an4/tri3 --fmllr-iters 2,4,6,12
"""


def _register_nnet(sub: argparse._SubParsersAction) -> None:
    from asr.cli.train_nnet import register_ctc, register_dnn

    register_dnn(sub)
    register_ctc(sub)


def _register_mono(sub: argparse._SubParsersAction) -> None:
    mono = sub.add_parser(
        "mono",
        help="monophone GMM-HMM from a flat start (Kaldi's train_mono.sh)",
        description="Flat-start monophone GMM-HMM training: equal alignment, then Viterbi "
        "(or Baum-Welch) re-estimation with periodic re-alignment and mixing up. Writes the "
        "HMM files, gmm.pt, feature_pipeline.json, ali/ and train_log.json to OUT_DIR. An "
        "interrupted run resumes from its last finished iteration.",
        formatter_class=HelpFormatter,
    )
    mono.add_argument("data_dir", type=Path, metavar="DATA_DIR", help=_DATA_HELP)
    mono.add_argument("lang_dir", type=Path, metavar="LANG_DIR", help=_LANG_HELP)
    mono.add_argument("out_dir", type=Path, metavar="OUT_DIR", help=_OUT_HELP)
    mono.add_argument("--nj", type=int, default=1, metavar="N", help="parallel jobs (default 1)")
    mono.add_argument("--num-iters", type=int, metavar="N", help=_ITERS_HELP)
    mono.add_argument("--totgauss", type=int, metavar="N", help="target Gaussians")
    mono.add_argument("--max-iter-inc", type=int, metavar="N", help=_MAX_ITER_INC_HELP)
    mono.add_argument("--boost-silence", type=float, metavar="F", help=_BOOST_HELP)
    mono.add_argument(
        "--baum-welch",
        action="store_true",
        default=None,
        help="accumulate from forward-backward posteriors instead of Viterbi alignments",
    )
    mono.add_argument("--seed", type=int, help=_SEED_HELP)
    mono.epilog = _DEFAULTS_NOTE.format(config="asr.gmm.train_mono.MonoConfig") + _MONO_EXAMPLES
    mono.add_argument(
        "--force", action="store_true", help="retrain even when OUT_DIR is up to date"
    )
    mono.set_defaults(func=_train_mono)


def _train_mono(args: argparse.Namespace) -> int:
    from asr.gmm.train_mono import MonoConfig, train_mono

    config = MonoConfig(
        **_given(
            args, "num_iters", "totgauss", "max_iter_inc", "boost_silence", "baum_welch", "seed"
        )
    )
    summary = _run_with_progress(
        args.out_dir,
        lambda progress: train_mono(
            args.data_dir,
            args.lang_dir,
            args.out_dir,
            config=config,
            num_jobs=args.nj,
            progress=progress,
            force=args.force,
        ),
        total=config.num_iters,
        desc="mono",
        iteration_offset=1,
    )
    _print_summary(args.out_dir, summary, "")
    return 0


_DEFAULTS_NOTE = "Options not given take the defaults of {config}.\n\n"
_DATA_HELP = "training data dir (with features)"
_LANG_HELP = "lang directory"
_ALI_HELP = "the previous model's dir, holding its alignments (ali/)"
_OUT_HELP = "model directory to write"
_ITERS_HELP = "training iterations"
_MAX_ITER_INC_HELP = "the last iteration that adds Gaussians (mixing up)"
_BOOST_HELP = "factor on the likelihoods of silence phones when aligning"
_SEED_HELP = "random seed (Gaussian splits when mixing up)"
_REALIGN_HELP = "iterations that re-align the data, e.g. 10,20,30"


def _given(args: argparse.Namespace, *names: str) -> dict:
    """The options among ``names`` given on the command line (the others are None and keep
    the config dataclass's defaults)."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers like '10,20,30', got {text!r}"
        ) from None


def _register_tri(sub: argparse._SubParsersAction) -> None:
    tri = sub.add_parser(
        "tri",
        help="triphone GMM-HMM: tri1 (deltas) or tri2 (LDA+MLLT)",
        description="Tree-tied triphone GMM-HMM training from the model and alignment in ALI_DIR "
        "(a previous model dir holding ali/), as Kaldi's train_deltas.sh (--mode deltas) and "
        "train_lda_mllt.sh (--mode lda-mllt). Writes the HMM files, gmm.pt, "
        "feature_pipeline.json (and final.mat), ali/ and train_log.json to OUT_DIR. An "
        "interrupted run resumes from its last finished iteration.",
        formatter_class=HelpFormatter,
    )
    tri.add_argument("data_dir", type=Path, metavar="DATA_DIR", help=_DATA_HELP)
    tri.add_argument("lang_dir", type=Path, metavar="LANG_DIR", help=_LANG_HELP)
    tri.add_argument("ali_dir", type=Path, metavar="ALI_DIR", help=_ALI_HELP)
    tri.add_argument("out_dir", type=Path, metavar="OUT_DIR", help=_OUT_HELP)
    tri.add_argument("--mode", choices=("deltas", "lda-mllt"), help="default: deltas")
    tri.add_argument("--num-leaves", type=int, metavar="N", help="tree leaves")
    tri.add_argument("--totgauss", type=int, metavar="N", help="target Gaussians")
    tri.add_argument("--nj", type=int, default=1, metavar="N", help="parallel jobs (default 1)")
    tri.add_argument("--num-iters", type=int, metavar="N", help=_ITERS_HELP)
    tri.add_argument("--max-iter-inc", type=int, metavar="N", help=_MAX_ITER_INC_HELP)
    tri.add_argument("--realign-iters", type=_int_list, metavar="LIST", help=_REALIGN_HELP)
    tri.add_argument(
        "--mllt-iters", type=_int_list, metavar="LIST",
        help="--mode lda-mllt: iterations that re-estimate the MLLT transform",
    )  # fmt: skip
    tri.add_argument("--lda-dim", type=int, metavar="N", help="--mode lda-mllt: LDA output dim")
    tri.add_argument("--tree-thresh", type=float, metavar="F", help="least gain of a tree split")
    tri.add_argument("--boost-silence", type=float, metavar="F", help=_BOOST_HELP)
    tri.add_argument("--seed", type=int, help=_SEED_HELP)
    tri.epilog = _DEFAULTS_NOTE.format(config="asr.gmm.train_tri.TriConfig") + _TRI_EXAMPLES
    tri.add_argument("--force", action="store_true", help="retrain even when OUT_DIR is up to date")
    tri.set_defaults(func=_train_tri)


def _train_tri(args: argparse.Namespace) -> int:
    from asr.gmm.train_tri import TriConfig, train_tri

    given = _given(
        args, "num_leaves", "totgauss", "num_iters", "max_iter_inc", "realign_iters",
        "mllt_iters", "lda_dim", "tree_thresh", "boost_silence", "seed",
    )  # fmt: skip
    if args.mode is not None:
        given["feature_mode"] = args.mode.replace("-", "_")
    config = TriConfig(**given)
    summary = _run_with_progress(
        args.out_dir,
        lambda progress: train_tri(
            args.data_dir,
            args.lang_dir,
            args.ali_dir,
            args.out_dir,
            config=config,
            num_jobs=args.nj,
            progress=progress,
            force=args.force,
        ),
        total=config.num_iters - 1,
        desc=args.out_dir.name,
        iteration_offset=0,
    )
    _print_summary(args.out_dir, summary, f"{summary.feature_mode}, dim {summary.feature_dim}, ")
    return 0


def _register_sat(sub: argparse._SubParsersAction) -> None:
    sat = sub.add_parser(
        "sat",
        help="speaker-adaptive triphone GMM-HMM with fMLLR (tri3)",
        description="Speaker-adaptive training (Kaldi's train_sat.sh) from the model and "
        "alignment in ALI_DIR (normally tri2): one fMLLR transform per speaker on ALI_DIR's "
        "features, a new tree, and triphone iterations that re-estimate the transforms on "
        "--fmllr-iters. Writes the HMM files, gmm.pt (SAT), gmm_si.pt (speaker-independent "
        "first-pass model), feature_pipeline.json and its transform, trans.npz (training "
        "speakers' transforms), model.json, ali/ and train_log.json to OUT_DIR. `asr decode` "
        "decodes it in passes per speaker (SI pass, fMLLR, adapted passes). An interrupted "
        "run resumes from its last finished iteration.",
        formatter_class=HelpFormatter,
    )
    sat.add_argument("data_dir", type=Path, metavar="DATA_DIR", help=_DATA_HELP)
    sat.add_argument("lang_dir", type=Path, metavar="LANG_DIR", help=_LANG_HELP)
    sat.add_argument("ali_dir", type=Path, metavar="ALI_DIR", help=_ALI_HELP)
    sat.add_argument("out_dir", type=Path, metavar="OUT_DIR", help=_OUT_HELP)
    sat.add_argument("--num-leaves", type=int, metavar="N", help="tree leaves")
    sat.add_argument("--totgauss", type=int, metavar="N", help="target Gaussians")
    sat.add_argument("--nj", type=int, default=1, metavar="N", help="parallel jobs (default 1)")
    sat.add_argument("--num-iters", type=int, metavar="N", help=_ITERS_HELP)
    sat.add_argument("--max-iter-inc", type=int, metavar="N", help=_MAX_ITER_INC_HELP)
    sat.add_argument("--realign-iters", type=_int_list, metavar="LIST", help=_REALIGN_HELP)
    sat.add_argument(
        "--fmllr-iters", type=_int_list, metavar="LIST",
        help="iterations that re-estimate the speakers' fMLLR transforms",
    )  # fmt: skip
    sat.add_argument("--tree-thresh", type=float, metavar="F", help="least gain of a tree split")
    sat.add_argument("--seed", type=int, help=_SEED_HELP)
    sat.epilog = (
        _DEFAULTS_NOTE.format(config="asr.gmm.train_sat.SatConfig (its tri: TriConfig)")
        + _SAT_EXAMPLES
    )
    sat.add_argument("--force", action="store_true", help="retrain even when OUT_DIR is up to date")
    sat.set_defaults(func=_train_sat)


def _train_sat(args: argparse.Namespace) -> int:
    from asr.gmm.train_sat import SatConfig, train_sat

    defaults = SatConfig()
    tri = dataclasses.replace(
        defaults.tri,
        **_given(
            args, "num_leaves", "totgauss", "num_iters", "max_iter_inc", "realign_iters",
            "tree_thresh", "seed",
        ),
    )  # fmt: skip
    config = dataclasses.replace(defaults, tri=tri, **_given(args, "fmllr_iters"))
    summary = _run_with_progress(
        args.out_dir,
        lambda progress: train_sat(
            args.data_dir,
            args.lang_dir,
            args.ali_dir,
            args.out_dir,
            config=config,
            num_jobs=args.nj,
            progress=progress,
            force=args.force,
        ),
        total=config.tri.num_iters - 1,
        desc=args.out_dir.name,
        iteration_offset=0,
    )
    gains = ", ".join(f"{g:.3f}" for g in summary.fmllr_gain_per_frame.values())
    _print_summary(
        args.out_dir,
        summary,
        f"SAT, {summary.num_speakers} speakers (fMLLR gain per frame {gains}), ",
    )
    return 0


def _log_stamp(out_dir) -> tuple[int, int] | None:
    from asr.gmm.training import TRAIN_LOG_FILE

    try:
        stat = (Path(out_dir) / TRAIN_LOG_FILE).stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _run_with_progress(out_dir, train, *, total: int, desc: str, iteration_offset: int):
    """Run ``train(progress)`` (a GMM trainer writing ``out_dir``) with an iteration progress
    bar on a terminal; says so when the finished model was up to date and not retrained."""
    before = _log_stamp(out_dir)
    summary = _run_with_progress_bar(
        train, total=total, desc=desc, iteration_offset=iteration_offset
    )
    if before is not None and _log_stamp(out_dir) == before:
        print(f"skipping {out_dir} (up to date: same options, inputs older; --force retrains)")
    return summary


def _run_with_progress_bar(train, *, total: int, desc: str, iteration_offset: int):
    bar = None
    if progress_enabled():
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, unit="iter")

    def progress(stats) -> None:
        if bar is not None:
            bar.n = stats.iteration + iteration_offset
            bar.set_postfix(
                loglike=f"{stats.log_like_per_frame:.3f}", gauss=stats.num_gauss, mode=stats.mode
            )
            bar.refresh()

    try:
        return train(progress)
    finally:
        if bar is not None:
            bar.close()


def _print_summary(out_dir, summary, head: str) -> None:
    """One summary line of a GMM training run (and where failed utterances are listed)."""
    curve = summary.log_like_per_frame
    if summary.resumed_from is not None:
        print(f"resumed at iteration {summary.resumed_from}")
    first = curve[0] if curve else math.nan
    last = curve[-1] if curve else math.nan
    print(
        f"{out_dir}: {head}{summary.num_pdfs} pdfs, {summary.num_gauss} Gaussians, "
        f"{len(curve)} iterations; log-likelihood per frame {first:.3f} -> {last:.3f}; "
        f"aligned {summary.num_aligned}, failed {summary.num_failed} ({summary.seconds:.1f} s)"
    )
    if summary.num_failed:
        print(f"failed utterances are listed in {out_dir / 'ali' / 'failed.txt'}")
