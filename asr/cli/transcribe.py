"""``asr transcribe --model BUNDLE [FILES... | --wav-scp SCP | --dir DIR]``: batch transcription.

Each job is a process that loads the bundle once (:class:`asr.recognizer.Recognizer`)
and transcribes its share of the files; results come back in input order. A file
that cannot be transcribed is reported (stderr, and ``{"file", "error"}`` in JSON)
and skipped; the exit code is 1 when any file failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing
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

utt_id: the wav.scp key, else the file name without extension.
Confidences are an acoustic frame-posterior proxy (see asr/confidence.py), not
lattice word posteriors.

examples:
  asr transcribe --model exp/yesno/mono/bundle ../shared/data/yesno/waves_yesno/0_0_0_0_1_1_1_1.wav
  asr transcribe --model exp/an4/tri1/bundle --wav-scp data/an4/test/wav.scp \\
      --format kaldi --nj 2 --output hyp.txt && asr score data/an4/test/text hyp.txt
  asr transcribe --model exp/an4/tri1/bundle --dir recordings/ --format json --output out.jsonl
"""

_AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".sph")
_RECOGNIZER = None


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
    p.add_argument("--format", choices=("text", "json", "ctm", "kaldi"), default="text")
    p.add_argument("--nj", type=int, default=1, metavar="N", help="parallel processes (1)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--output", metavar="FILE", help="write here (atomically) instead of stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def collect_inputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """``[(utt_id, path)]`` from FILES, --wav-scp and --dir, in that order."""
    from asr.errors import AudioError

    items = [(Path(f).stem, f) for f in args.files]
    if args.wav_scp:
        scp = Path(args.wav_scp)
        try:
            lines = scp.read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise AudioError(f"{scp}: cannot read wav.scp: {err}") from None
        for line_no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            if len(parts) != 2:
                raise AudioError(f"{scp}:{line_no}: expected 'UTT_ID PATH', got {line!r}")
            items.append((parts[0], parts[1].strip()))
    if args.dir:
        root = Path(args.dir)
        if not root.is_dir():
            raise AudioError(f"{root}: not a directory")
        found = sorted(p for p in root.rglob("*") if p.suffix.lower() in _AUDIO_SUFFIXES)
        items.extend((p.stem, str(p)) for p in found)
    return items


def _init_worker(bundle: str, device: str, single_thread: bool) -> None:
    global _RECOGNIZER
    from asr.recognizer import Recognizer

    if single_thread:
        import torch

        torch.set_num_threads(1)
    _RECOGNIZER = Recognizer.from_dir(bundle, device=device, verify=False)


def transcribe_one(item: tuple[str, str]) -> dict:
    """One file with this process's recognizer -> a JSON-ready record (or an error record)."""
    utt_id, path = item
    start = time.perf_counter()
    try:
        if path.rstrip().endswith("|"):
            raise ValueError("piped wav.scp entries (commands) are not supported")
        result = _RECOGNIZER.transcribe(path)
    except Exception as err:  # noqa: BLE001 -- every per-file failure is reported, then skipped
        message = str(err) if str(err).startswith(path) else f"{path}: {err}"
        return {"file": path, "utt_id": utt_id, "error": message}
    record = {"file": path, "utt_id": utt_id, **result.to_dict()}
    record["processing_s"] = time.perf_counter() - start
    return record


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
    if fmt == "kaldi":
        return f"{record['utt_id']} {record['text']}".rstrip() + "\n"
    if fmt == "ctm":
        return "".join(
            f"{record['utt_id']} 1 {w['start']:.2f} {w['end'] - w['start']:.2f} {w['word']} "
            f"{w['confidence']:.4f}\n"
            for w in record["words"]
        )
    return f"{record['file']}\t{record['text']}\n" if many else f"{record['text']}\n"


def _results(args, items, recognizer_bundle: str, device: str):
    """Yield records in input order (in-process for one job, a process pool otherwise)."""
    if args.nj <= 1 or len(items) <= 1:
        _init_worker(recognizer_bundle, device, False)
        yield from map(transcribe_one, items)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    with cf.ProcessPoolExecutor(
        max_workers=args.nj, mp_context=context, initializer=_init_worker,
        initargs=(recognizer_bundle, device, True),
    ) as pool:  # fmt: skip
        chunk = max(1, min(16, len(items) // (4 * args.nj)))
        yield from pool.map(transcribe_one, items, chunksize=chunk)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from asr.bundle import load_bundle
    from asr.errors import AudioError
    from asr.fileio import atomic_write_text
    from asr.recognizer import resolve_device

    if args.nj < 1:
        raise AudioError(f"--nj must be >= 1, got {args.nj}")
    items = collect_inputs(args)
    if not items:
        print("asr transcribe: no input files (give FILES, --wav-scp or --dir)", file=sys.stderr)
        return 2
    start = time.perf_counter()
    load_bundle(args.model)  # verify once here; the jobs skip the checksums
    device = resolve_device(args.device)
    many = len(items) > 1
    out_parts: list[str] = []
    failed = 0
    audio_s = processing_s = 0.0
    show = progress_enabled() and not args.no_progress
    with tqdm(total=len(items), unit="file", disable=not show, file=sys.stderr) as bar:
        for record in _results(args, items, args.model, device):
            bar.update(1)
            if "error" in record:
                failed += 1
                tqdm.write(f"asr transcribe: {record['error']}", file=sys.stderr)
            else:
                audio_s += record["duration"]
                processing_s += record["processing_s"]
            text = _format(record, args.format, many=many)
            if args.output:
                out_parts.append(text)
            elif text:
                sys.stdout.write(text)
                sys.stdout.flush()
    if args.output:
        atomic_write_text(args.output, "".join(out_parts))
    wall = time.perf_counter() - start
    rtf = wall / audio_s if audio_s > 0 else float("nan")
    per_job = processing_s / audio_s if audio_s > 0 else float("nan")
    print(
        f"asr transcribe: {len(items) - failed} files transcribed, {failed} failed; "
        f"{audio_s / 3600:.4f} h of audio in {wall:.1f} s wall: RTF {rtf:.4f} "
        f"({per_job:.4f} per job, {args.nj} job{'s' if args.nj > 1 else ''})",
        file=sys.stderr,
    )
    return 1 if failed else 0
