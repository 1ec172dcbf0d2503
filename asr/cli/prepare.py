"""``asr prepare``: turn a corpus into Kaldi data directories (``data/<corpus>/<set>``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from asr.cli.common import default_corpora_dir

CORPORA: tuple[str, ...] = ("an4", "fsdd", "yesno")

_EPILOG = """\
sets written:
  an4    train, dev (speaker-disjoint, carved from the official training speakers),
         test (only when the official test portion etc/an4_test.* is present)
  fsdd   train (takes 5-49), test (takes 0-4)
  yesno  train (first 30 sorted files), test (last 30)

examples:
  asr prepare yesno
  asr prepare an4 --corpus-dir /data/an4 --out data/an4 --num-dev-speakers 10

Each set directory holds wav.scp, text, utt2spk and spk2utt; one summary line per set
(utterances, speakers, hours of audio) is printed.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="prepare a corpus as Kaldi data directories",
        description="Prepare the AN4, FSDD or yesno corpus as Kaldi data directories "
        "(wav.scp, text, utt2spk, spk2utt) under OUT/<set>.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("corpus", choices=CORPORA, help="which corpus to prepare")
    parser.add_argument(
        "--corpus-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="the corpus in its official layout "
        "(default: $ASR_CORPORA/<corpus>, else ../shared/data/<corpus>)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="output folder; sets go to DIR/<set> (default: data/<corpus>)",
    )
    parser.add_argument(
        "--num-dev-speakers",
        type=int,
        default=10,
        metavar="N",
        help="an4 only: about N training speakers held out as the dev set, half of each "
        "gender (default: 10; 0 writes no dev set)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from asr.data import prepare_an4, prepare_fsdd, prepare_yesno, total_duration_seconds

    corpus_dir = args.corpus_dir or default_corpora_dir() / args.corpus
    out_dir = args.out or Path("data") / args.corpus
    if args.corpus == "an4":
        sets = prepare_an4(corpus_dir, out_dir, num_dev_speakers=args.num_dev_speakers)
    elif args.corpus == "fsdd":
        sets = prepare_fsdd(corpus_dir, out_dir)
    else:
        sets = prepare_yesno(corpus_dir, out_dir)
    for name, data in sets.items():
        hours = total_duration_seconds(data) / 3600.0
        num_speakers = len(data.speakers)
        print(
            f"{out_dir / name}: {len(data)} utterances, {num_speakers} "
            f"speaker{'' if num_speakers == 1 else 's'}, {hours:.3f} hours"
        )
    if args.corpus == "an4" and "test" not in sets:
        print(f"{out_dir}: no official test set found in {corpus_dir} (etc/an4_test.fileids)")
    return 0
