"""``asr transcribe --model BUNDLE [FILES... | --wav-scp SCP | --dir DIR]``: batch transcription.

The work is :func:`asr.batch.transcribe.transcribe_files` (jobs of one speaker's files, each
process loading the bundle once, results in input order); this module parses the
arguments and prints the records. A file
that cannot be transcribed is reported (stderr, and ``{"file", "error"}`` in JSON)
and skipped; the exit code is 1 when any file failed.

With ``--utt2spk`` (or ``--data-dir``), the files of one speaker go to one job
together and, for models with speaker CMVN, share the speaker's CMVN stats
(:meth:`asr.recognizer.Recognizer.transcribe_speaker`): the same features, so
the same hypotheses, as the recipe's ``asr decode`` stage on that data dir.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from asr.cli.common import progress_enabled

EPILOG = """output formats (--format):
  text   the transcript; with several inputs "FILE<TAB>TEXT" per line
  json   one JSON object per line: {"file", "utt_id", "text", "words": [{"word", "start",
         "end", "confidence"}], "confidence", "duration"} (seconds), or {"file", "error"};
         schema: docs/transcribe_json_schema.json
  ctm    Kaldi CTM: "UTT_ID 1 START DURATION WORD CONFIDENCE" per word
  kaldi  "UTT_ID WORDS..." (a Kaldi text file: score it with `asr score REF_TEXT HYP`)
  srt    SubRip subtitles, vtt: WebVTT; cues split at pauses over 0.5 s and at 5 s or 42
         characters, times from the word boundaries; several inputs need --output-dir

utt_id: the wav.scp key, else the file name without extension (FILES and --dir); to
score against a data dir's text, transcribe with --data-dir DIR (or --wav-scp DIR/wav.scp)
so that the hypotheses keep its utterance ids.
Speaker CMVN: a model trained with per-speaker CMVN (the recipes' GMM and DNN models)
normalizes a lone file with its own statistics; give --utt2spk (or --data-dir) to pool
the statistics of each speaker's files, as the recipe's decode stage does. Speaker-
adaptive models (tri3, a DNN trained with --fmllr) also estimate one fMLLR transform per
speaker from those files (SI pass, transform, adapted pass); a speaker with less than
~5 s of speech, e.g. a lone short file, is decoded with the speaker-independent model.
Confidences are an acoustic frame-posterior proxy (see asr/confidence.py), not
lattice word posteriors.

examples:
  asr transcribe --model exp/yesno/mono/bundle ../shared/data/yesno/waves_yesno/0_0_0_0_1_1_1_1.wav
  asr transcribe --model exp/an4/tri1/bundle --wav-scp data/an4/test/wav.scp \\
      --format kaldi --nj 2 --output hyp.txt && asr score data/an4/test/text hyp.txt
  asr transcribe --model exp/an4/dnn/bundle --data-dir data/an4/dev --format kaldi \\
      --output hyp.txt && asr score data/an4/dev/text hyp.txt
  asr transcribe --model exp/an4/tri1/bundle --dir recordings/ --format json --output out.jsonl
  asr transcribe --model exp/an4/tri1/bundle talk.wav --format srt --output talk.srt
  asr transcribe --model exp/an4/tri1/bundle --dir recordings/ --format vtt --output-dir subs/
"""

FORMATS = ("text", "json", "ctm", "kaldi", "srt", "vtt")
SUBTITLE_FORMATS = ("srt", "vtt")
_AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".sph")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "transcribe",
        help="transcribe audio files with a model bundle",
        description="Transcribe audio files with a model bundle (asr export): text, JSON with "
        "word times and confidences, CTM, or Kaldi text; parallel jobs, progress bar, "
        "RTF summary; bad files are reported and skipped.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="audio files")
    p.add_argument("--model", required=True, metavar="BUNDLE", help="model bundle directory")
    p.add_argument("--wav-scp", metavar="SCP", help="Kaldi wav.scp (UTT_ID PATH per line)")
    p.add_argument("--dir", metavar="DIR", help="transcribe every audio file under DIR")
    p.add_argument(
        "--utt2spk",
        metavar="FILE",
        help="Kaldi utt2spk (UTT_ID SPK_ID): pool each speaker's CMVN stats (see below)",
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="a Kaldi data dir: its wav.scp, and its utt2spk when present",
    )
    p.add_argument(
        "--format", choices=FORMATS, default="text", help="output format (below; default text)"
    )
    p.add_argument("--nj", type=int, default=1, metavar="N", help="parallel processes (1)")
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where the model runs (auto: cuda when torch sees a GPU, else cpu)",
    )
    p.add_argument("--output", metavar="FILE", help="write here (atomically) instead of stdout")
    p.add_argument(
        "--output-dir",
        metavar="DIR",
        help="--format srt|vtt: write one subtitle file per input, DIR/UTT_ID.srt (or .vtt)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def collect_inputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """``[(utt_id, path)]`` from FILES, --wav-scp, --data-dir and --dir, in that order."""
    from asr.errors import AudioError

    items = [(Path(f).stem, f) for f in args.files]
    scps = [Path(args.wav_scp)] if args.wav_scp else []
    if args.data_dir:
        scps.append(Path(args.data_dir) / "wav.scp")
    for scp in scps:
        try:
            lines = scp.read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise AudioError(f"{scp}: cannot read wav.scp: {err}") from None
        items.extend(_read_pairs(scp, lines, "UTT_ID PATH"))
    if args.dir:
        root = Path(args.dir)
        if not root.is_dir():
            raise AudioError(f"{root}: not a directory")
        found = sorted(p for p in root.rglob("*") if p.suffix.lower() in _AUDIO_SUFFIXES)
        items.extend((p.stem, str(p)) for p in found)
    return items


def _read_pairs(path: Path, lines: list[str], what: str) -> list[tuple[str, str]]:
    from asr.errors import AudioError

    pairs = []
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise AudioError(f"{path}:{line_no}: expected '{what}', got {line!r}")
        pairs.append((parts[0], parts[1].strip()))
    return pairs


def read_utt2spk(args: argparse.Namespace) -> dict[str, str] | None:
    """The speaker map of --utt2spk, else of --data-dir (its utt2spk when present), else None."""
    from asr.errors import AudioError

    path = Path(args.utt2spk) if args.utt2spk else None
    if path is None and args.data_dir and (Path(args.data_dir) / "utt2spk").is_file():
        path = Path(args.data_dir) / "utt2spk"
    if path is None:
        return None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise AudioError(f"{path}: cannot read utt2spk: {err}") from None
    return dict(_read_pairs(path, lines, "UTT_ID SPK_ID"))


def _format(record: dict, fmt: str, *, many: bool) -> str:
    if "error" in record:
        return (
            json.dumps({"file": record["file"], "error": record["error"]}) + "\n"
            if (fmt == "json")
            else ""
        )
    if fmt == "json":
        keys = ("file", "utt_id", "text", "words", "confidence", "duration")
        return json.dumps({k: record[k] for k in keys}, ensure_ascii=False) + "\n"
    if fmt in SUBTITLE_FORMATS:
        return subtitles(record, fmt)
    if fmt == "kaldi":
        return f"{record['utt_id']} {record['text']}".rstrip() + "\n"
    if fmt == "ctm":
        return "".join(
            f"{record['utt_id']} 1 {w['start']:.2f} {w['end'] - w['start']:.2f} {w['word']} "
            f"{w['confidence']:.4f}\n"
            for w in record["words"]
        )
    return f"{record['file']}\t{record['text']}\n" if many else f"{record['text']}\n"


def subtitles(record: dict, fmt: str) -> str:
    """The SRT or VTT subtitles of one transcription record (its words and their times)."""
    from asr.recognizer.subtitles import make_cues, to_srt, to_vtt

    cues = make_cues((w["word"], w["start"], w["end"]) for w in record["words"])
    return to_srt(cues) if fmt == "srt" else to_vtt(cues)


def summary_line(
    *, num_ok: int, num_failed: int, audio_s: float, processing_s: float, wall_s: float,
    num_jobs: int,
) -> str:  # fmt: skip
    """The closing line: files, audio and wall time, and one real-time factor (decoding
    time / audio time) -- with several jobs, also the wall-clock RTF of all of them."""
    files = f"{num_ok} file{'' if num_ok == 1 else 's'} transcribed, {num_failed} failed"
    if num_ok == 0 or audio_s <= 0:
        return f"asr transcribe: {files}"
    audio = f"{audio_s:.1f} s of audio" if audio_s < 3600 else f"{audio_s / 3600:.2f} h of audio"
    rtf = processing_s / audio_s
    if num_jobs == 1:
        return (
            f"asr transcribe: {files}; {audio} decoded in {processing_s:.1f} s "
            f"({wall_s:.1f} s wall, model loading included): RTF {rtf:.4f}"
        )
    return (
        f"asr transcribe: {files}; {audio} in {wall_s:.1f} s wall with {num_jobs} jobs: "
        f"RTF {wall_s / audio_s:.4f} overall, {rtf:.4f} per job"
    )


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from asr.batch.transcribe import TranscribeItem, speaker_groups, transcribe_files
    from asr.errors import AudioError
    from asr.fileio import atomic_write_text
    from asr.recognizer import resolve_device

    if args.nj < 1:
        raise AudioError(f"--nj must be >= 1, got {args.nj}")
    items = collect_inputs(args)
    if not items:
        print(
            "asr transcribe: no input files (give FILES, --wav-scp, --data-dir or --dir)",
            file=sys.stderr,
        )
        return 2
    many = len(items) > 1
    subtitle_dir = _subtitle_dir(args, many=many)
    utt2spk = read_utt2spk(args)
    start = time.perf_counter()
    device = resolve_device(args.device)
    out_parts: list[str] = []
    failed = 0
    audio_s = processing_s = 0.0
    show = progress_enabled() and not args.no_progress
    with tqdm(total=len(items), unit="file", disable=not show, file=sys.stderr) as bar:
        records = transcribe_files(
            args.model, items, utt2spk=utt2spk, num_jobs=args.nj, device=device
        )
        for record in records:
            bar.update(1)
            if "error" in record:
                failed += 1
                tqdm.write(f"asr transcribe: {record['error']}", file=sys.stderr)
            else:
                audio_s += record["duration"]
                processing_s += record["processing_s"]
            text = _format(record, args.format, many=many)
            if subtitle_dir is not None:
                if "error" not in record:
                    path = subtitle_dir / f"{record['utt_id']}.{args.format}"
                    atomic_write_text(path, text)
            elif args.output:
                out_parts.append(text)
            elif text:
                sys.stdout.write(text)
                sys.stdout.flush()
    if args.output:
        atomic_write_text(args.output, "".join(out_parts))
    groups = speaker_groups([TranscribeItem(*item) for item in items], utt2spk)
    num_jobs = min(args.nj, len(groups))
    line = summary_line(
        num_ok=len(items) - failed, num_failed=failed, audio_s=audio_s,
        processing_s=processing_s, wall_s=time.perf_counter() - start, num_jobs=num_jobs,
    )  # fmt: skip
    print(line, file=sys.stderr)
    return 1 if failed else 0


def _subtitle_dir(args: argparse.Namespace, *, many: bool) -> Path | None:
    """--output-dir for subtitles (checked against --format and --output), or None."""
    from asr.errors import AudioError

    if args.output_dir is None:
        if args.format in SUBTITLE_FORMATS and many:
            raise AudioError(
                f"--format {args.format} with several inputs needs --output-dir DIR "
                f"(one DIR/UTT_ID.{args.format} per input)"
                + (" instead of --output" if args.output else "")
            )
        return None
    if args.format not in SUBTITLE_FORMATS:
        raise AudioError("--output-dir is for --format srt or vtt; use --output FILE")
    if args.output:
        raise AudioError("give --output (one input) or --output-dir, not both")
    return Path(args.output_dir)
