"""``asr transcribe --model BUNDLE [FILES... | --wav-scp SCP | --dir DIR]``: batch transcription.

Each job is a process that loads the bundle once (:class:`asr.recognizer.Recognizer`)
and transcribes its share of the files; results come back in input order. A file
that cannot be transcribed is reported (stderr, and ``{"file", "error"}`` in JSON)
and skipped; the exit code is 1 when any file failed.

With ``--utt2spk`` (or ``--data-dir``), the files of one speaker go to one job
together and, for models with speaker CMVN, share the speaker's CMVN stats
(:meth:`asr.recognizer.Recognizer.transcribe_speaker`): the same features, so
the same hypotheses, as the recipe's ``asr decode`` stage on that data dir.
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
    p.add_argument("--format", choices=("text", "json", "ctm", "kaldi"), default="text")
    p.add_argument("--nj", type=int, default=1, metavar="N", help="parallel processes (1)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--output", metavar="FILE", help="write here (atomically) instead of stdout")
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


def speaker_groups(args: argparse.Namespace, items: list[tuple[str, str]]) -> list[list[int]]:
    """Indices of ``items`` grouped by speaker (--utt2spk / --data-dir's utt2spk, in order of
    first appearance); without a speaker map, or for an unlisted utterance, one file each."""
    from asr.errors import AudioError

    path = Path(args.utt2spk) if args.utt2spk else None
    if path is None and args.data_dir and (Path(args.data_dir) / "utt2spk").is_file():
        path = Path(args.data_dir) / "utt2spk"
    if path is None:
        return [[index] for index in range(len(items))]
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise AudioError(f"{path}: cannot read utt2spk: {err}") from None
    utt2spk = dict(_read_pairs(path, lines, "UTT_ID SPK_ID"))
    groups: dict[str, list[int]] = {}
    for index, (utt_id, _) in enumerate(items):
        groups.setdefault(utt2spk.get(utt_id, f"\0{index}"), []).append(index)
    return list(groups.values())


def _init_worker(bundle: str, device: str, single_thread: bool) -> None:
    global _RECOGNIZER
    from asr.recognizer import Recognizer

    if single_thread:
        import torch

        torch.set_num_threads(1)
    _RECOGNIZER = Recognizer.from_dir(bundle, device=device, verify=False)


def _error_record(utt_id: str, path: str, err: Exception) -> dict:
    message = str(err) if str(err).startswith(path) else f"{path}: {err}"
    return {"file": path, "utt_id": utt_id, "error": message}


def transcribe_one(item: tuple[str, str]) -> dict:
    """One ``(utt_id, path)`` with this process's recognizer -> its record."""
    return transcribe_group([(0, *item)])[0][1]


def transcribe_group(group: list[tuple[int, str, str]]) -> list[tuple[int, dict]]:
    """``[(index, utt_id, path)]`` of one speaker (or one file) with this process's
    recognizer -> ``[(index, record)]``: JSON-ready records or error records."""
    records: dict[int, dict] = {}
    todo = []
    for index, utt_id, path in group:
        if path.rstrip().endswith("|"):
            err = ValueError("piped wav.scp entries (commands) are not supported")
            records[index] = _error_record(utt_id, path, err)
        else:
            todo.append((index, utt_id, path))
    try:
        outcomes = _RECOGNIZER.transcribe_speaker([path for _, _, path in todo])
    except Exception as err:  # noqa: BLE001 -- a failure of the group fails its files only
        outcomes = [err] * len(todo)
    for (index, utt_id, path), outcome in zip(todo, outcomes, strict=True):
        if isinstance(outcome, Exception):
            records[index] = _error_record(utt_id, path, outcome)
        else:
            record = {"file": path, "utt_id": utt_id, **outcome.to_dict()}
            record["processing_s"] = outcome.rtf * outcome.duration_s
            records[index] = record
    return sorted(records.items())


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


def _results(args, items, groups, recognizer_bundle: str, device: str):
    """Yield records in input order (in-process for one job, a process pool otherwise);
    the files of a group (a speaker) are transcribed together by one job."""
    jobs = [[(index, *items[index]) for index in group] for group in groups]
    ready: dict[int, dict] = {}
    next_index = 0
    if args.nj <= 1 or len(jobs) <= 1:
        _init_worker(recognizer_bundle, device, False)
        outputs = map(transcribe_group, jobs)
        pool = None
    else:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        pool = cf.ProcessPoolExecutor(
            max_workers=args.nj, mp_context=context, initializer=_init_worker,
            initargs=(recognizer_bundle, device, True),
        )  # fmt: skip
        chunk = max(1, min(16, len(jobs) // (4 * args.nj)))
        outputs = pool.map(transcribe_group, jobs, chunksize=chunk)
    try:
        for output in outputs:
            ready.update(output)
            while next_index in ready:
                yield ready.pop(next_index)
                next_index += 1
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


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
        print(
            "asr transcribe: no input files (give FILES, --wav-scp, --data-dir or --dir)",
            file=sys.stderr,
        )
        return 2
    groups = speaker_groups(args, items)
    start = time.perf_counter()
    load_bundle(args.model)  # verify once here; the jobs skip the checksums
    device = resolve_device(args.device)
    many = len(items) > 1
    out_parts: list[str] = []
    failed = 0
    audio_s = processing_s = 0.0
    show = progress_enabled() and not args.no_progress
    with tqdm(total=len(items), unit="file", disable=not show, file=sys.stderr) as bar:
        for record in _results(args, items, groups, args.model, device):
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
