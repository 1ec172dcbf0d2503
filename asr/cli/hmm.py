"""``asr hmm``: HMM model structure (topology + tree + transition model).

Example::

    asr hmm init-mono data/an4/lang --out exp/an4/mono0
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asr.cli.common import HelpFormatter

_EPILOG = """examples:
  asr hmm init-mono data/an4/lang --out exp/an4/mono0
  asr hmm init-mono data/yesno/lang --out /tmp/mono0
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "hmm",
        help="HMM model structure: monophone init (tree + transition model)",
        description="Create and inspect HMM model directories.",
        epilog=_EPILOG,
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="hmm_command", metavar="SUBCOMMAND", required=True)
    init = sub.add_parser(
        "init-mono",
        help="lang dir -> monophone model dir (topo, tree.json, transitions.npz, hmm.json)",
        description="Build the monophone context-dependency tree and transition model of a "
        "lang dir (one pdf per phone and pdf-class), as Kaldi's gmm-init-mono does without "
        "the Gaussians, and save them as a model directory.",
        epilog=_EPILOG,
        formatter_class=HelpFormatter,
    )
    init.add_argument("lang_dir", type=Path, metavar="LANG_DIR", help="lang directory")
    init.add_argument(
        "--out", type=Path, required=True, metavar="MODEL_DIR", help="model directory to write"
    )
    init.set_defaults(func=_init_mono)


def _init_mono(args: argparse.Namespace) -> int:
    from asr.hmm import init_monophone
    from asr.lang import read_lang

    model = init_monophone(read_lang(args.lang_dir))
    model.save(args.out)
    tm = model.transition_model
    print(
        f"{args.out}: {model.num_pdfs} pdfs, {tm.num_transition_states} transition states, "
        f"{tm.num_transition_ids} transition-ids, {len(tm.phones)} phones"
    )
    return 0
