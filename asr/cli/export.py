"""``asr export MODEL_DIR --graph GRAPH_DIR --out BUNDLE``: a self-contained model bundle."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  asr export exp/yesno/mono --graph exp/yesno/mono/graph --out exp/yesno/mono/bundle
  asr export exp/an4/tri1 --graph exp/an4/tri1/graph --out exp/an4/tri1/bundle \\
      --lang data/an4/lang --acoustic-scale 0.083

The bundle holds the model files, the graph (HCLG/TLG, words.txt, label maps) and
manifest.json (family, sampling rate, feature pipeline, decoder defaults, package
versions, sha256 of every file). `asr transcribe --model BUNDLE` loads it.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a trained model + graph as a model bundle",
        description="Copy a model dir and its decoding graph into one bundle directory "
        "with a manifest.json (checksums, versions, decoder defaults); load it to check.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("--graph", required=True, metavar="GRAPH_DIR", help="graph directory")
    p.add_argument("--out", required=True, metavar="BUNDLE", help="bundle directory to write")
    p.add_argument(
        "--lang", metavar="LANG_DIR",
        help="lang dir for the silence phones (default: the one named in GRAPH_DIR/graph.json)",
    )  # fmt: skip
    p.add_argument("--beam", type=float, default=13.0, help="default beam (13)")
    p.add_argument("--max-active", type=int, default=7000)
    p.add_argument("--acoustic-scale", type=float, default=0.1, help="default acoustic scale")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from asr.bundle import export_bundle
    from asr.decode.viterbi import DecoderConfig

    config = DecoderConfig(
        beam=args.beam, max_active=args.max_active, acoustic_scale=args.acoustic_scale
    )
    bundle = export_bundle(
        args.model_dir, graph_dir=args.graph, out_dir=args.out, lang_dir=args.lang,
        decoder_config=config,
    )  # fmt: skip
    size = sum(e["size"] for e in bundle.manifest["files"].values())
    print(
        f"wrote {bundle.root}: {bundle.family} model, {bundle.sampling_rate} Hz, "
        f"{bundle.graph_type} graph, {len(bundle.manifest['files'])} files, {size / 1e6:.1f} MB"
    )
    return 0
