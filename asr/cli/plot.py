"""``asr plot alignment|results``: PNG plots of an utterance's alignment and of a recipe's WERs."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  asr plot alignment --model exp/yesno/mono/bundle ../shared/data/yesno/waves_yesno/0_0_1_0_1_0_1_1.wav \\
      --out exp/yesno/mono/alignment.png
  asr plot results recipes/an4/RESULTS.md --out recipes/an4/results.png
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plot", help="alignment and results plots (PNG)", epilog=EPILOG,
        description="Plots: the decoded alignment of one utterance (waveform, spectrogram, "
        "phone and word segments) or a WER-per-system chart from a RESULTS.md table.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    sub = p.add_subparsers(dest="plot_kind", metavar="KIND", required=True)
    a = sub.add_parser("alignment", help="waveform, spectrogram, phones and words of one file")
    a.add_argument("audio", metavar="AUDIO")
    a.add_argument("--model", required=True, metavar="BUNDLE")
    a.add_argument("--out", required=True, metavar="PNG")
    a.add_argument("--device", default="cpu")
    a.set_defaults(func=run_alignment)
    r = sub.add_parser("results", help="bar chart of %%WER per system from RESULTS.md")
    r.add_argument("results_md", metavar="RESULTS.md")
    r.add_argument("--out", required=True, metavar="PNG")
    r.set_defaults(func=run_results)


def run_alignment(args: argparse.Namespace) -> int:
    from asr.plot import plot_alignment
    from asr.recognizer import Recognizer

    rec = Recognizer.from_dir(args.model, device=args.device)
    print(f"wrote {plot_alignment(rec, args.audio, args.out)}")
    return 0


def run_results(args: argparse.Namespace) -> int:
    from asr.plot import plot_results

    print(f"wrote {plot_results(args.results_md, args.out)}")
    return 0
