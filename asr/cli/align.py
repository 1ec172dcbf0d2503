"""``asr align``: forced alignment of a data dir with a trained GMM model dir.

Example::

    asr align data/an4/train data/an4/lang exp/an4/mono exp/an4/mono_ali --nj 2

Writes OUT_DIR/ali.ark + ali.scp (Kaldi int vectors of transition-ids), ali.txt,
failed.txt (utterances that could not be aligned, with the reason) and ali_info.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asr.cli.common import HelpFormatter

_EPILOG = """examples:
  asr align data/yesno/train data/yesno/lang exp/yesno/mono exp/yesno/mono_ali
  asr align data/an4/train data/an4/lang exp/an4/mono exp/an4/mono_ali --nj 2 --beam 10
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "align",
        help="forced alignment with a GMM model (Kaldi's align_si.sh)",
        description="Align every utterance of DATA_DIR to its transcript with the model in "
        "MODEL_DIR (beam 10, retry beam 40, acoustic scale 0.1). Utterances that fail are "
        "listed in OUT_DIR/failed.txt and skipped.",
        epilog=_EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="data dir with features")
    parser.add_argument("lang_dir", type=Path, metavar="LANG_DIR", help="lang directory")
    parser.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="GMM model directory")
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="alignment dir to write")
    parser.add_argument("--nj", type=int, default=1, metavar="N", help="parallel jobs")
    parser.add_argument("--beam", type=float, help="default: AlignConfig.beam")
    parser.add_argument("--retry-beam", type=float, help="default: AlignConfig.retry_beam")
    parser.add_argument("--boost-silence", type=float, help="default: AlignConfig.boost_silence")
    parser.set_defaults(func=_align)


def _align(args: argparse.Namespace) -> int:
    from asr.align import AlignConfig
    from asr.gmm.alignment import align_data_dir

    options = ("beam", "retry_beam", "boost_silence")
    config = AlignConfig(
        **{name: getattr(args, name) for name in options if getattr(args, name) is not None}
    )
    summary = align_data_dir(
        args.data_dir, args.lang_dir, args.model_dir, args.out_dir, config=config,
        num_jobs=args.nj,
    )  # fmt: skip
    print(
        f"{args.out_dir}: aligned {summary.num_aligned} utterances ({summary.num_frames} frames, "
        f"log-likelihood per frame {summary.log_like_per_frame:.3f}), "
        f"retried {summary.num_retried}, failed {summary.num_failed}"
    )
    if summary.num_failed:
        print(f"failed utterances are listed in {args.out_dir / 'failed.txt'}")
    return 0
