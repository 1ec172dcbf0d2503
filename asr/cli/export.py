"""``asr export MODEL_DIR --graph GRAPH_DIR --out BUNDLE``: a self-contained model bundle."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EPILOG = """The bundle holds the model files, the graph (HCLG/TLG, words.txt, label maps) and
manifest.json (family, sampling rate, feature pipeline, decoder defaults, package
versions, sha256 of every file). `asr transcribe --model BUNDLE` loads it.

examples:
  asr export exp/yesno/mono --graph exp/yesno/mono/graph --out exp/yesno/mono/bundle
  asr export exp/an4/tri1 --graph exp/an4/tri1/graph --out exp/an4/tri1/bundle \\
      --lang data/an4/lang --decode-dir exp/an4/tri1/decode_dev
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
    p.add_argument("model_dir", metavar="MODEL_DIR", help="trained model directory")
    p.add_argument("--graph", required=True, metavar="GRAPH_DIR", help="graph directory")
    p.add_argument("--out", required=True, metavar="BUNDLE", help="bundle directory to write")
    p.add_argument(
        "--lang", metavar="LANG_DIR",
        help="lang dir for the silence phones (default: the one named in GRAPH_DIR/graph.json)",
    )  # fmt: skip
    p.add_argument(
        "--decode-dir", metavar="DECODE_DIR",
        help="take the decoder defaults (beam, best acoustic scale) from DECODE_DIR/decode.json",
    )  # fmt: skip
    p.add_argument("--beam", type=float, help="default beam (13)")
    p.add_argument("--max-active", type=int, help="default max active tokens (7000)")
    p.add_argument("--acoustic-scale", type=float, help="default acoustic scale (0.1)")
    p.set_defaults(func=run)


def _decode_options(path: Path) -> dict:
    from asr.errors import ModelError

    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        options = dict(record["decoder"])
        options["acoustic_scale"] = float(
            record.get("best_acoustic_scale", options["acoustic_scale"])
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelError(f"{path}: cannot read the decoder settings: {err}") from None
    return options


def run(args: argparse.Namespace) -> int:
    from asr.bundle import export_bundle
    from asr.decode.viterbi import DecoderConfig

    options = {"beam": 13.0, "max_active": 7000, "acoustic_scale": 0.1}
    if args.decode_dir:
        options.update(_decode_options(Path(args.decode_dir) / "decode.json"))
    for key in ("beam", "max_active", "acoustic_scale"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    config = DecoderConfig(**options)
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
