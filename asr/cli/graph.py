"""``asr graph``: decoding graphs — HCLG for HMM models, TLG for CTC models.

Examples::

    asr graph mkgraph data/an4/lang exp/an4/mono exp/an4/mono/graph
    asr graph mktlg data/an4/lang exp/an4/ctc/graph --g data/an4/lang/G.fst
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from asr.cli.common import HelpFormatter

_EPILOG = """examples:
  asr graph mkgraph data/an4/lang exp/an4/mono exp/an4/mono/graph
  asr graph mkgraph data/yesno/lang exp/yesno/mono exp/yesno/mono/graph --skip-if-up-to-date
  asr graph mktlg data/an4/lang exp/an4/ctc/graph --g data/an4/lang/G.fst
  asr graph mktlg data/an4/lang exp/an4/ctc/graph --tokens exp/an4/ctc/tokens.txt
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "graph",
        help="build decoding graphs (HCLG.fst, TLG.fst)",
        description="Build WFST decoding graphs over kaldifst.",
        epilog=_EPILOG,
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="graph_command", metavar="SUBCOMMAND", required=True)
    hclg = sub.add_parser(
        "mkgraph",
        help="lang + HMM model + G -> OUT/HCLG.fst (Kaldi's mkgraph.sh)",
        description="Build HCLG = H o C o L o G with Kaldi's mkgraph.sh recipe: "
        "det/min LG, context composition, H without self-loops, det/min HCLGa, self-loops.",
        epilog=_EPILOG,
        formatter_class=HelpFormatter,
    )
    hclg.add_argument("lang_dir", type=Path, metavar="LANG", help="lang directory (L_disambig.fst)")
    hclg.add_argument("model_dir", type=Path, metavar="MODEL", help="HMM/GMM model directory")
    hclg.add_argument("out_dir", type=Path, metavar="OUT", help="graph directory to write")
    hclg.add_argument("--g", type=Path, default=None, metavar="G.fst", help="default: LANG/G.fst")
    hclg.add_argument(
        "--self-loop-scale", type=float, default=0.1, metavar="S",
        help="scale of the HMM self-loop log-probabilities (default 0.1, Kaldi's)",
    )  # fmt: skip
    hclg.add_argument(
        "--transition-scale", type=float, default=1.0, metavar="S",
        help="scale of the other transition log-probabilities (default 1.0)",
    )  # fmt: skip
    hclg.add_argument(
        "--skip-if-up-to-date",
        action="store_true",
        help="keep OUT when it is newer than its inputs and was built with the same scales",
    )
    hclg.set_defaults(func=_mkgraph)
    tlg = sub.add_parser(
        "mktlg",
        help="lang + G -> OUT/TLG.fst for CTC models (tokens = blank + phones)",
        description="Build TLG = T o det(min(L o G)) with the CTC token topology T.",
        epilog=_EPILOG,
        formatter_class=HelpFormatter,
    )
    tlg.add_argument("lang_dir", type=Path, metavar="LANG", help="lang directory (L_disambig.fst)")
    tlg.add_argument("out_dir", type=Path, metavar="OUT", help="graph directory to write")
    tlg.add_argument("--g", type=Path, default=None, metavar="G.fst", help="default: LANG/G.fst")
    tlg.add_argument(
        "--tokens",
        type=Path,
        default=None,
        metavar="FILE",
        help="token list (a phone per line, or a tokens.txt whose <blk> line is skipped); "
        "default: every phone of LANG",
    )
    tlg.add_argument(
        "--skip-if-up-to-date",
        action="store_true",
        help="keep OUT when it is newer than its inputs and was built from the same tokens",
    )
    tlg.set_defaults(func=_mktlg)


def _mkgraph(args: argparse.Namespace) -> int:
    from asr.graph.mkgraph import MkGraphConfig, mkgraph

    config = MkGraphConfig(
        self_loop_scale=args.self_loop_scale, transition_scale=args.transition_scale
    )
    start = time.perf_counter()
    info = mkgraph(
        args.lang_dir,
        args.model_dir,
        args.g or args.lang_dir / "G.fst",
        args.out_dir,
        config=config,
        force=not args.skip_if_up_to_date,
    )
    print(
        f"{args.out_dir}/HCLG.fst: {info.num_states} states, {info.num_arcs} arcs, "
        f"{info.num_pdfs} pdfs, {info.num_ilabels - 1} transition-ids "
        f"({time.perf_counter() - start:.2f} s)"
    )
    return 0


def _read_tokens(path: Path) -> list[str]:
    from asr.errors import GraphError

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise GraphError(f"{path}: token list not found") from None
    tokens = [line.split()[0] for line in lines if line.strip()]
    return [t for t in tokens if t != "<blk>"]


def _mktlg(args: argparse.Namespace) -> int:
    from asr.graph.ctc import mktlg

    tokens = _read_tokens(args.tokens) if args.tokens else None
    start = time.perf_counter()
    info = mktlg(
        args.lang_dir,
        tokens,
        args.g or args.lang_dir / "G.fst",
        args.out_dir,
        force=not args.skip_if_up_to_date,
    )
    print(
        f"{args.out_dir}/TLG.fst: {info.num_states} states, {info.num_arcs} arcs, "
        f"{info.num_pdfs} tokens incl. blank ({time.perf_counter() - start:.2f} s)"
    )
    return 0
