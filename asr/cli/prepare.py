"""``asr prepare``: turn a corpus into Kaldi data directories (``data/<corpus>/<set>``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from asr.cli.common import default_corpora_dir

CORPORA: tuple[str, ...] = ("an4", "fsdd", "yesno", "speechocean762")
#: Default of --num-dev-speakers for the corpora that carve a dev set from training.
DEFAULT_DEV_SPEAKERS: dict[str, int] = {"an4": 10, "speechocean762": 12}

_EPILOG = """\
sets written:
  an4    train, dev (speaker-disjoint, carved from the official training speakers),
         test (only when the official test portion etc/an4_test.* is present)
  fsdd   train (takes 5-49), test (takes 0-4)
  yesno  train (first 30 sorted files), test (last 30)
  speechocean762
         train, dev (12 speakers carved from the official train/: children and adults
         of both genders, by a fixed hash rule), test (only when test/ is present);
         each set also keeps spk2gender and spk2age

Each set directory holds wav.scp, text, utt2spk and spk2utt; one summary line per set
(utterances, speakers, hours of audio; children and adults for speechocean762) is printed.

examples:
  asr prepare yesno
  asr prepare an4 --corpus-dir /data/an4 --out data/an4 --num-dev-speakers 10
  asr prepare speechocean762 --corpus-dir /data/speechocean762 --out data/speechocean762
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="prepare a corpus as Kaldi data directories",
        description="Prepare the AN4, FSDD, yesno or speechocean762 corpus as Kaldi data "
        "directories (wav.scp, text, utt2spk, spk2utt) under OUT/<set>.",
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
        default=None,
        metavar="N",
        help="an4 and speechocean762: about N training speakers held out as the dev set "
        "(an4: half of each gender, default 10; speechocean762: children and adults of "
        "both genders, default 12); 0 writes no dev set",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from asr.data import prepare_an4, prepare_fsdd, prepare_yesno, total_duration_seconds

    corpus_dir = args.corpus_dir or default_corpora_dir() / args.corpus
    out_dir = args.out or Path("data") / args.corpus
    num_dev = args.num_dev_speakers
    if num_dev is None:
        num_dev = DEFAULT_DEV_SPEAKERS.get(args.corpus, 0)
    if args.corpus == "speechocean762":
        return _run_speechocean762(corpus_dir, out_dir, num_dev)
    if args.corpus == "an4":
        sets = prepare_an4(corpus_dir, out_dir, num_dev_speakers=num_dev)
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


def _run_speechocean762(corpus_dir: Path, out_dir: Path, num_dev_speakers: int) -> int:
    from asr.data import prepare_speechocean762, total_duration_seconds

    sets = prepare_speechocean762(corpus_dir, out_dir, num_dev_speakers=num_dev_speakers)
    for name, prepared in sets.items():
        data = prepared.data
        genders = list(prepared.spk2gender.values())
        hours = total_duration_seconds(data) / 3600.0
        print(
            f"{out_dir / name}: {len(data)} utterances, {len(data.speakers)} speakers "
            f"({len(prepared.children)} children, {len(prepared.adults)} adults; "
            f"{genders.count('f')} female, {genders.count('m')} male), {hours:.3f} hours"
        )
    if "test" not in sets:
        print(f"{out_dir}: no official test set found in {corpus_dir} (test/)")
    return 0
