"""``asr score REF HYP``: WER (or CER) of Kaldi ``text`` files, Kaldi ``compute-wer`` style.

Example::

    asr score data/an4/test/text exp/an4/mono/decode_test/hyp.txt --per-utt per_utt
    %WER 10.61 [ 82 / 773, 4 ins, 10 del, 68 sub ]
    %SER 50.00 [ 65 / 130 ]
    Scored 130 sentences, 0 not present in hyp.

Hypothesis ids that the reference lacks are an error; when they look like file stems (what
``asr transcribe FILES`` and ``--dir`` name utterances by) the message says how to keep the
data dir's utterance ids.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """examples:
  asr score data/an4/test/text exp/an4/mono/decode_test/hyp.txt
  asr score data/an4/test/text hyp.txt --cer --per-utt per_utt.txt
  asr transcribe --model exp/an4/tri1/bundle --data-dir data/an4/test --format kaldi \\
      --output hyp.txt && asr score data/an4/test/text hyp.txt
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="word (or character) error rate of hypotheses against references",
        description="Score a hypothesis text file against a reference text file (both Kaldi "
        "'text' format: utt_id followed by words). Prints %WER (or %CER), %SER and the "
        "number of scored sentences like Kaldi's compute-wer. References without a "
        "hypothesis count as all deletions (the %WER line then ends in [PARTIAL]); "
        "hypotheses without a reference are an error.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    check_hypothesis_ids(refs, hyps, args.ref)
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


def check_hypothesis_ids(refs: dict[str, str], hyps: dict[str, str], ref_path: Path) -> None:
    """Raise :class:`ScoringError` when hypothesis ids are missing from the reference, saying
    why when they look like file stems (``asr transcribe FILES`` or ``--dir``) and what to do."""
    from asr.errors import ScoringError

    extra = [utt_id for utt_id in hyps if utt_id not in refs]
    if not extra:
        return
    shown = ", ".join(extra[:5]) + (", ..." if len(extra) > 5 else "")
    message = f"{len(extra)} hypothesis utterance(s) have no reference in {ref_path}: {shown}"
    data_dir = ref_path.parent
    stems = _wav_stems(data_dir / "wav.scp")
    matched = {utt_id: stems[utt_id] for utt_id in extra if utt_id in stems}
    if matched:
        stem, utt_id = next(iter(matched.items()))
        message += (
            f". The hypothesis ids look like file stems ({len(matched)} of them name files of "
            f"{data_dir / 'wav.scp'}, e.g. {stem!r} is utterance {utt_id!r}): `asr transcribe "
            "FILES` and `--dir` name utterances by file stem; transcribe with "
            f"--data-dir {data_dir} (or --wav-scp {data_dir / 'wav.scp'}) to keep the data "
            "dir's utterance ids"
        )
    else:
        message += (
            ". The hypothesis file must use the reference's utterance ids (the first word of "
            "each line); `asr transcribe FILES` and `--dir` name utterances by file stem: "
            "transcribe with --data-dir DIR (or --wav-scp DIR/wav.scp) to keep a data dir's "
            "utterance ids"
        )
    raise ScoringError(message)


def _wav_stems(wav_scp: Path) -> dict[str, str]:
    """File stem -> utterance id of a ``wav.scp`` (empty when there is none or it is bad)."""
    from asr.data import read_kaldi_map
    from asr.errors import DataDirError

    if not wav_scp.is_file():
        return {}
    try:
        entries = read_kaldi_map(wav_scp)
    except DataDirError:
        return {}
    stems = {}
    for utt_id, value in entries.items():
        tokens = value.split()  # a path, or a command line ending in "|" (sph2pipe -f wav F |)
        files = [t for t in tokens if Path(t).suffix.lower() in _AUDIO_SUFFIXES] or tokens[:1]
        for token in files:
            stems[Path(token).stem] = utt_id
    return stems


_AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".sph", ".aiff", ".aif", ".raw", ".mp3")
