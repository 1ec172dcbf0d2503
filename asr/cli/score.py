"""``asr score REF HYP``: WER (or CER) of Kaldi ``text`` files, Kaldi ``compute-wer`` style.

Example::

    asr score data/an4/test/text exp/an4/mono/decode_test/hyp.txt --per-utt per_utt
    %WER 10.61 [ 82 / 773, 4 ins, 10 del, 68 sub ]
    %SER 50.00 [ 65 / 130 ]
    Scored 130 sentences, 0 not present in hyp.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="word (or character) error rate of hypotheses against references",
        description="Score a hypothesis text file against a reference text file (both Kaldi "
        "'text' format: utt_id followed by words). Prints %WER (or %CER), %SER and the "
        "number of scored sentences like Kaldi's compute-wer. References without a "
        "hypothesis count as all deletions (the %WER line then ends in [PARTIAL]); "
        "hypotheses without a reference are an error.",
    )
    parser.add_argument("ref", type=Path, metavar="REF", help="reference text file")
    parser.add_argument("hyp", type=Path, metavar="HYP", help="hypothesis text file")
    parser.add_argument(
        "--cer",
        action="store_true",
        help="score characters (spaces between words included) instead of words",
    )
    parser.add_argument(
        "--per-utt",
        type=Path,
        metavar="FILE",
        help="write the per-utterance alignment report (ref/hyp/op/#csid lines) to FILE",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from asr.scoring import read_text_file, score

    refs = read_text_file(args.ref)
    hyps = read_text_file(args.hyp)
    result = score(refs, hyps, unit="char" if args.cer else "word")
    print(result.summary())
    if result.missing_hyps:
        shown = ", ".join(result.missing_hyps[:5])
        more = ", ..." if len(result.missing_hyps) > 5 else ""
        print(
            f"asr score: warning: {len(result.missing_hyps)} reference utterance(s) have no "
            f"hypothesis and were scored as all deletions: {shown}{more}",
            file=sys.stderr,
        )
    if args.per_utt is not None:
        result.write_per_utt(args.per_utt)
    return 0
