"""``asr plot alignment|results``: PNG plots of an utterance's alignment and of a recipe's WERs."""

from __future__ import annotations

import argparse

ALIGNMENT_EPILOG = """examples:
  asr plot alignment --model exp/yesno/mono/bundle \\
      ../shared/data/yesno/waves_yesno/0_0_1_0_1_0_1_1.wav --out alignment.png
"""

RESULTS_EPILOG = """examples:
  asr plot results recipes/an4/RESULTS.md --out recipes/an4/results.png
"""

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
    a = sub.add_parser(
        "alignment", help="waveform, spectrogram, phones and words of one file",
        description="Decode AUDIO with the bundle and plot its waveform, spectrogram and the "
        "decoded phone and word segments (PNG).",
        epilog=ALIGNMENT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    a.add_argument("audio", metavar="AUDIO", help="audio file (any rate: resampled)")
    a.add_argument(
        "--model", required=True, metavar="BUNDLE", help="model bundle directory (asr export)"
    )
    a.add_argument("--out", required=True, metavar="PNG", help="the PNG file to write")
    a.add_argument(
        "--device", default="cpu", help="where the model runs: cpu, cuda[:N] or auto (default cpu)"
    )
    a.set_defaults(func=run_alignment)
    r = sub.add_parser(
        "results", help="bar chart of %%WER per system from RESULTS.md",
        description="A bar chart of the %%WER of every system and set of a RESULTS.md table "
        "(asr results).",
        epilog=RESULTS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    r.add_argument("results_md", metavar="RESULTS.md", help="a table written by asr results")
    r.add_argument("--out", required=True, metavar="PNG", help="the PNG file to write")
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
