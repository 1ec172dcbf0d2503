"""``asr features``: compute features for a data directory (``compute``), inspect archives (``show``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from asr.cli.common import HelpFormatter, progress_enabled

FEATURE_TYPES: tuple[str, ...] = ("mfcc", "fbank", "lpc", "lpcc")

_COMPUTE_EPILOG = """\
outputs (in --out, default DATA_DIR/data):
  raw_<type>.<job>.ark/.scp, feats.scp, cmvn.ark/.scp (per-speaker CMVN stats),
  utt2num_frames, feature_config.json, failed.txt (utterances that failed, if any);
  feats.scp, cmvn.scp and utt2num_frames are also copied into DATA_DIR, as Kaldi does.
  Nothing is recomputed when the outputs are newer than DATA_DIR and its audio and
  the configuration is unchanged.

examples:
  asr features compute data/yesno/train --type mfcc --nj 2
  asr features compute data/an4/train --type fbank --num-mel-bins 40 --out feats/an4/train
  asr features compute data/an4/test --config exp/an4/mono/feature_config.json
"""

_GROUP_EPILOG = """examples:
  asr features compute data/yesno/train --type mfcc --nj 2
  asr features show data/yesno/train/feats.scp --utt global-0_0_0_0_1_1_1_1 --rows 3
"""

_SHOW_EPILOG = """examples:
  asr features show data/an4/train/feats.scp
  asr features show data/yesno/train/feats.scp --utt global-0_0_0_0_1_1_1_1 --rows 3
  asr features show data/yesno/train/data/cmvn.scp
"""

# option dest -> config field, for the options that exist only for some feature types
_FIELD_OPTIONS: dict[str, str] = {
    "num_ceps": "num_ceps",
    "num_mel_bins": "num_mel_bins",
    "lpc_order": "order",
    "use_energy": "use_energy",
    "frame_length_ms": "frame_length_ms",
    "frame_shift_ms": "frame_shift_ms",
    "snip_edges": "snip_edges",
    "dither": "dither",
}


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "features",
        help="compute features for a data directory, or show a feature archive",
        description="Feature extraction (MFCC, fbank, LPC, LPCC) for Kaldi data directories.",
        epilog=_GROUP_EPILOG,
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="features_command", metavar="ACTION", required=True)

    compute = sub.add_parser(
        "compute",
        help="compute features and CMVN stats for a data directory",
        description="Compute features for every utterance of DATA_DIR in --nj parallel jobs "
        "(split by speaker), with per-speaker CMVN stats.",
        epilog=_COMPUTE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compute.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="Kaldi data directory")
    compute.add_argument(
        "--type",
        choices=FEATURE_TYPES,
        default=None,
        help="feature type (default: mfcc, or the type in --config)",
    )
    compute.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="JSON",
        help="start from this feature_config.json (options below override it)",
    )
    compute.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="output folder (default: DATA_DIR/data)",
    )
    compute.add_argument(
        "--nj", type=int, default=1, metavar="N", help="number of parallel jobs (default: 1)"
    )
    compute.add_argument(
        "--sampling-rate",
        type=int,
        default=None,
        metavar="HZ",
        help="feature sampling rate; other audio is resampled "
        "(default: the rate of DATA_DIR's first readable audio file, or --config's)",
    )
    compute.add_argument(
        "--frame-length-ms", type=float, default=None, metavar="MS",
        help="analysis window length (default: 25, or --config's)",
    )  # fmt: skip
    compute.add_argument(
        "--frame-shift-ms", type=float, default=None, metavar="MS",
        help="hop between frames (default: 10, or --config's)",
    )  # fmt: skip
    compute.add_argument(
        "--snip-edges",
        type=_bool,
        default=None,
        metavar="BOOL",
        help="true: only frames that fit in the signal (Kaldi default); false: centred frames",
    )
    compute.add_argument("--num-ceps", type=int, default=None, metavar="N", help="mfcc, lpcc")
    compute.add_argument("--num-mel-bins", type=int, default=None, metavar="N", help="mfcc, fbank")
    compute.add_argument(
        "--lpc-order", type=int, default=None, metavar="N", help="lpc, lpcc: predictor order"
    )
    compute.add_argument(
        "--use-energy",
        type=_bool,
        default=None,
        metavar="BOOL",
        help="mfcc, fbank, lpcc: log energy as the first coefficient",
    )
    compute.add_argument(
        "--dither", type=float, default=None, metavar="X", help="dithering constant (default: 0)"
    )
    compute.set_defaults(func=run_compute)

    show = sub.add_parser(
        "show",
        help="print the shapes (and first rows) of the matrices in an scp or ark file",
        description="Print '<key> <num_frames>x<dim>' per matrix of FEATS (an .scp or .ark "
        "file); with --utt, also the first --rows rows of that matrix.",
        epilog=_SHOW_EPILOG,
        formatter_class=HelpFormatter,
    )
    show.add_argument("feats", type=Path, metavar="FEATS", help="feats.scp, cmvn.scp or an .ark")
    show.add_argument("--utt", default=None, metavar="ID", help="only this key, with its rows")
    show.add_argument(
        "--rows", type=int, default=5, metavar="N", help="rows to print with --utt (default: 5)"
    )
    show.set_defaults(func=run_show)


def _build_config(args: argparse.Namespace, data_dir: Path):
    from asr.audio import audio_info
    from asr.data import read_kaldi_map
    from asr.errors import AsrError, FeatureError
    from asr.features import config_from_dict, config_to_dict

    if args.config is not None:
        try:
            base = json.loads(args.config.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise FeatureError(f"{args.config}: cannot read feature config: {err}") from err
        if not isinstance(base, dict):
            raise FeatureError(f"{args.config}: expected a JSON object")
        if args.type is not None and base.get("type") != args.type:
            raise FeatureError(
                f"--type {args.type} disagrees with {args.config} (type {base.get('type')!r})"
            )
    else:
        base = {"type": args.type or "mfcc"}
    feature_type = base["type"]
    default_fields = config_to_dict(config_from_dict({"type": feature_type}))
    values = dict(base)
    for dest, field_name in _FIELD_OPTIONS.items():
        value = getattr(args, dest)
        if value is None:
            continue
        if field_name not in default_fields:
            option = "--" + dest.replace("_", "-")
            raise FeatureError(f"{option} does not apply to {feature_type} features")
        values[field_name] = value
    if args.sampling_rate is not None:
        values["sampling_rate"] = args.sampling_rate
    elif args.config is None:
        # The rate of the first readable audio file (a corrupt one fails later, per utterance).
        for audio_path in list(read_kaldi_map(data_dir / "wav.scp").values())[:20]:
            try:
                values["sampling_rate"] = audio_info(audio_path).sampling_rate
                break
            except AsrError:
                continue
    return config_from_dict(values)


def run_compute(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from asr.data import read_data_dir
    from asr.features.batch import compute_data_dir_features

    data_dir = args.data_dir
    config = _build_config(args, data_dir)
    out_dir = args.out or data_dir / "data"
    num_utts = len(read_data_dir(data_dir, check_audio=False))
    start = time.perf_counter()
    with tqdm(
        total=num_utts,
        unit="utt",
        desc=f"{config.__class__.__name__.removesuffix('Config').lower()} {data_dir}",
        file=sys.stderr,
        disable=not progress_enabled(),
        leave=False,
    ) as bar:
        summary = compute_data_dir_features(
            data_dir, out_dir, config=config, num_jobs=args.nj, progress=bar.update
        )
    elapsed = time.perf_counter() - start
    for utt_id, reason in summary.failed[:10]:
        print(f"asr features compute: warning: {utt_id}: {reason}", file=sys.stderr)
    if len(summary.failed) > 10:
        print(
            f"asr features compute: warning: ... {len(summary.failed) - 10} more in "
            f"{out_dir / 'failed.txt'}",
            file=sys.stderr,
        )
    status = "up to date, nothing computed" if summary.skipped else f"{elapsed:.1f} s"
    print(
        f"{data_dir}: {summary.feature_type} (dim {summary.dim}): "
        f"{summary.num_utterances} utterances, {summary.num_frames} frames, "
        f"{len(summary.failed)} failed, {summary.num_jobs} job"
        f"{'' if summary.num_jobs == 1 else 's'}, {status} -> {summary.feats_scp}"
    )
    return 0


def run_show(args: argparse.Namespace) -> int:
    from asr.errors import ArchiveError
    from asr.features.io import read_matrices_ark, read_matrices_scp

    reader = read_matrices_ark if args.feats.suffix == ".ark" else read_matrices_scp
    found = False
    for key, matrix in reader(args.feats):
        if args.utt is not None and key != args.utt:
            continue
        found = True
        print(f"{key} {matrix.shape[0]}x{matrix.shape[1]} {matrix.dtype}")
        if args.utt is not None:
            for row in matrix[: max(args.rows, 0)]:
                print("  " + " ".join(f"{value:.6g}" for value in row))
            break
    if args.utt is not None and not found:
        raise ArchiveError(f"{args.feats}: no key {args.utt!r}")
    return 0
