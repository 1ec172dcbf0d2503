"""Batch transcription throughput and robustness, as JSON.

Throughput (steady state: after the processes started, loaded the bundle and transcribed
one warm-up file each, as a long batch amortizes it): transcribe a wav.scp with a bundle at ``--nj 1`` and ``--nj 2`` (processes,
each loading the bundle once, one torch thread each, as ``asr transcribe``): audio
seconds, wall seconds, wall RTF, per-process RTF (processing time / audio), the
speed-up of nj=2 over nj=1, and the WER when ``--ref`` (a Kaldi text) is given.

Robustness (``--robustness N``): N files, mostly copies of the good inputs plus bad and
odd ones (empty, corrupt bytes, truncated WAV, too short, 16 kHz and 44.1 kHz, stereo,
one 10-minute recording) through ``asr transcribe --format json``; reports how many good
files were transcribed and bad ones reported with a reason (every one, or the run fails).

    .venv/bin/python benchmarks/transcribe.py --model exp/yesno/mono/bundle \\
        --wav-scp data/yesno/test/wav.scp --ref data/yesno/test/text --json
    .venv/bin/python benchmarks/transcribe.py --model exp/yesno/mono/bundle \\
        --wav-scp data/yesno/test/wav.scp --robustness 1000 --nj 2 --json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from asr.audio import read_audio
from asr.batch.transcribe import TranscribeItem, transcribe_files, transcribe_group
from asr.parallel import process_pool

ASR = str(Path(sys.executable).with_name("asr"))


def read_scp(path: str) -> list[tuple[str, str]]:
    lines = Path(path).read_text().splitlines()
    return [tuple(line.split(maxsplit=1)) for line in lines if line.strip()]


def _init_and_warm(bundle: str, warm_item) -> None:
    """Load the bundle and transcribe one file (numba compilation, caches) before timing."""
    transcribe_group(bundle, "cpu", [(0, TranscribeItem(*warm_item))])


def _noop(_: int) -> None:
    time.sleep(0.05)


def run_jobs(bundle: str, items, nj: int) -> tuple[list[dict], float, float]:
    """(records, steady-state wall seconds, start-up seconds: processes + bundle + warm-up)."""
    t0 = time.perf_counter()
    if nj == 1:
        _init_and_warm(bundle, items[0])
        start = time.perf_counter()
        records = list(transcribe_files(bundle, items, device="cpu", verify=False))
        return records, time.perf_counter() - start, start - t0
    with process_pool(nj, initializer=_init_and_warm, initargs=(bundle, items[0])) as pool:
        list(pool.map(_noop, range(4 * nj)))  # every worker started and warm
        start = time.perf_counter()
        records = list(
            transcribe_files(bundle, items, num_jobs=nj, device="cpu", executor=pool, verify=False)
        )
        return records, time.perf_counter() - start, start - t0


def throughput(args) -> dict:
    items = read_scp(args.wav_scp)
    out = {"model": args.model, "wav_scp": args.wav_scp, "num_files": len(items), "runs": {}}
    for nj in (1, args.nj):
        records, wall, startup = run_jobs(args.model, items, nj)
        ok = [r for r in records if "error" not in r]
        audio = sum(r["duration"] for r in ok)
        run = {
            "audio_s": round(audio, 2),
            "wall_s": round(wall, 2),
            "startup_s": round(startup, 2),
            "rtf_wall": round(wall / audio, 4),
            "rtf_per_process": round(sum(r["processing_s"] for r in ok) / audio, 4),
            "failed": len(records) - len(ok),
        }
        if args.ref:
            from asr.scoring import read_text_file, score

            hyps = {r["utt_id"]: r["text"] for r in ok}
            run["wer"] = round(score(read_text_file(args.ref), hyps).wer, 2)
        out["runs"][f"nj{nj}"] = run
    if args.nj > 1:
        out["speedup_nj"] = round(
            out["runs"]["nj1"]["wall_s"] / out["runs"][f"nj{args.nj}"]["wall_s"], 3
        )
    return out


def make_mixed_set(items, n: int, root: Path, rate: int) -> tuple[list[str], set[str]]:
    """n files (bad/odd ones first, then copies of the good ones); returns (paths, bad)."""
    rng = np.random.default_rng(0)
    waves = [read_audio(path, sampling_rate=rate)[0] for _, path in items[:20]]
    files, bad = [], set()

    def add(name, writer, is_bad=False):
        path = root / name
        writer(path)
        files.append(str(path))
        if is_bad:
            bad.add(str(path))

    long = np.tile(np.concatenate(waves), int(np.ceil(600 * rate / sum(map(len, waves)))))
    add("long_10min.wav", lambda p: sf.write(p, long[: 600 * rate], rate, subtype="PCM_16"))
    for k in range(max(1, n // 20)):
        w = waves[k % len(waves)]
        add(f"empty_{k}.wav", lambda p: p.write_bytes(b""), True)
        add(f"corrupt_{k}.wav", lambda p: p.write_bytes(rng.bytes(4000)), True)

        def truncated(p, w=w):
            sf.write(p, w, rate, subtype="PCM_16")
            p.write_bytes(p.read_bytes()[:2000])

        add(f"truncated_{k}.wav", truncated, True)
        add(f"short_{k}.wav", lambda p, w=w: sf.write(p, w[:40], rate, subtype="PCM_16"), True)
        add(f"r16k_{k}.wav", lambda p, w=w: sf.write(p, w, 16000 if rate != 16000 else 8000))
        add(f"r44k_{k}.wav", lambda p, w=w: sf.write(p, w, 44100))
        add(
            f"stereo_{k}.wav",
            lambda p, w=w: sf.write(p, np.stack([w, w], 1), rate, subtype="PCM_16"),
        )
    good_paths = [path for _, path in items]
    while len(files) < n:
        files.append(good_paths[len(files) % len(good_paths)])
    return files[:n], bad


def robustness(args) -> dict:
    items = read_scp(args.wav_scp)
    manifest = json.loads((Path(args.model) / "manifest.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        files, bad = make_mixed_set(items, args.robustness, Path(tmp), manifest["sampling_rate"])
        # the odd rates are written at their nominal rate but hold model-rate samples: they
        # test the resampling path, not the transcript
        list_file = Path(tmp) / "list.scp"
        list_file.write_text("".join(f"f{i:05d} {f}\n" for i, f in enumerate(files)))
        start = time.perf_counter()
        proc = subprocess.run(
            [ASR, "transcribe", "--model", args.model, "--wav-scp", str(list_file), "--format",
             "json", "--nj", str(args.nj), "--no-progress"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        wall = time.perf_counter() - start
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    errors = {r["file"]: r["error"] for r in records if "error" in r}
    good_ok = sum(1 for r in records if "error" not in r and r["file"] not in bad)
    return {
        "num_files": len(files),
        "num_bad": len(bad),
        "records": len(records),
        "good_transcribed": good_ok,
        "good_total": len(files) - len(bad),
        "bad_reported_with_reason": sum(1 for f in bad if f in errors and errors[f]),
        "unexpected_errors": sorted({e for f, e in errors.items() if f not in bad})[:5],
        "exit_code": proc.returncode,
        "wall_s": round(wall, 1),
        "summary": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "",
        "all_ok": good_ok == len(files) - len(bad) and set(errors) == bad and proc.returncode == 1,
    }


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, help="bundle dir")
    p.add_argument("--wav-scp", required=True)
    p.add_argument("--ref", help="Kaldi text for WER")
    p.add_argument("--nj", type=int, default=2)
    p.add_argument("--robustness", type=int, metavar="N", help="run the N-file mixed set instead")
    p.add_argument("--json", action="store_true", help="print JSON only")
    args = p.parse_args()
    result = robustness(args) if args.robustness else throughput(args)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
