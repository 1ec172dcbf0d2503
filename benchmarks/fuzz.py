"""Fuzz every input reader with >= 10,000 generated inputs each; report crashes and hangs.

Targets (see :mod:`tests.support.fuzz_inputs`): ``audio`` (read_audio/audio_info),
``kaldi_map`` (read_kaldi_map), ``datadir`` (validate_data_dir/read_data_dir over
packed wav.scp/text/utt2spk/spk2utt/segments), ``lexicon`` (read_lexicon in the
dict/lexiconp/filler formats, read_vocabulary), ``arpa`` (read_arpa,
read_arpa_vocab, a write/read round trip), ``ark`` (read_matrices_ark), ``scp``
(read_matrices_scp), ``recognize`` / ``streaming`` (bytes parsed as
RecognizeRequest / StreamingRecognizeRequest and handed to the servicer).

Inputs are mutations of real files (a yesno and an AN4 WAV, a FLAC excerpt, the
AN4 dictionary/filler/LM, a CMUdict excerpt, an ark our writer wrote, valid proto
messages) or random bytes; input ``i`` of a run is generated from
``random.Random(seed * 10**9 + i)``, so every crash is reproducible (the same
integer drives ``tests/test_fuzz.py``). Each target runs in a worker process;
the parent waits at most ``--timeout-s`` for each input and kills the worker on
a hang (a new worker takes the next input). A crash is any exception other than
the reader's documented error types, a malformed result, or a dead worker.

Usage::

    .venv/bin/python benchmarks/fuzz.py --json                    # 10,000 inputs per target
    .venv/bin/python benchmarks/fuzz.py --json --n 500 --targets ark scp --seed 3
    .venv/bin/python benchmarks/fuzz.py --atheris arpa --runs 20000   # coverage-guided (atheris)

Prints ``{target: {inputs, ok, typed_errors: {type: count}, crashes: [...], num_crashes,
num_hangs, max_input_ms, mean_input_ms, wall_s}}``; exits 1 when anything crashed or hung.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

MAX_CRASHES_SHOWN = 5
# Modules atheris 2.3.0 cannot instrument on Python 3.11: its bytecode rewrite of
# ``_read_key``'s ``while True`` loop segfaults (or loads the wrong local) on the first
# call. They still run in --atheris mode, without coverage feedback.
ATHERIS_EXCLUDE = ("asr.features.io",)


def _default_corpora() -> Path:
    env = os.environ.get("ASR_CORPORA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def input_seed(seed: int, index: int) -> int:
    """The integer that generates input ``index`` of a run with ``seed``."""
    return seed * 10**9 + index


def _describe(error: BaseException, data: bytes, seed_int: int) -> dict:
    frames = traceback.extract_tb(error.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return {
        "input_seed": seed_int,
        "error": f"{type(error).__name__}: {str(error)[:300]}",
        "where": where,
        "input_len": len(data),
        "input": repr(data[:160]),
    }


def _worker(conn, name: str, corpora_dir: str, scratch_dir: str, stall_s: float) -> None:
    """Run inputs sent as integers; answer (label, ms, crash description or None) for each."""
    from tests.support.fuzz_inputs import build_targets, run_one

    scratch = Path(scratch_dir)
    target = build_targets(corpora_dir=corpora_dir, scratch_dir=scratch / "seeds", names=[name])
    target = target[name]
    work = scratch / "work"
    work.mkdir(parents=True, exist_ok=True)
    conn.send("ready")
    while True:
        seed_int = conn.recv()
        if seed_int is None:
            return
        data = target.generate(random.Random(seed_int))
        start = time.perf_counter()
        time.sleep(stall_s)
        try:
            label, crash = run_one(target, data, work), None
        except BaseException as err:  # noqa: BLE001 - anything undocumented is what we look for
            label, crash = "crash", _describe(err, data, seed_int)
        conn.send((label, (time.perf_counter() - start) * 1e3, crash))


class _Worker:
    def __init__(
        self, ctx, name: str, corpora_dir: Path, scratch_dir: Path, stall_s: float
    ) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_worker,
            args=(child, name, str(corpora_dir), str(scratch_dir), stall_s),
            daemon=True,
        )
        self.process.start()
        child.close()
        try:
            ready = self.conn.poll(300) and self.conn.recv() == "ready"
        except EOFError:
            ready = False
        if not ready:
            self.process.kill()
            raise RuntimeError(f"the fuzz worker for {name} did not start (see its traceback)")

    def stop(self, *, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            with contextlib.suppress(OSError):
                self.conn.send(None)
        self.process.join(10)
        self.conn.close()


def fuzz_target(
    name: str,
    *,
    n: int,
    seed: int,
    timeout_s: float,
    corpora_dir: Path,
    scratch_dir: Path,
    stall_s: float = 0.0,
) -> dict:
    """Run ``n`` inputs of target ``name``; return its report (``stall_s``: a sleep before
    each input, to test the watchdog)."""
    from tests.support.fuzz_inputs import build_targets

    ctx = multiprocessing.get_context("spawn")
    local = None  # the parent's copy of the target, only to describe hangs and dead workers
    counts: Counter = Counter()
    crashes: list[dict] = []
    num_crashes = num_hangs = 0
    times_ms: list[float] = []
    start = time.perf_counter()
    worker = _Worker(ctx, name, corpora_dir, scratch_dir / name, stall_s)
    try:
        for index in range(n):
            seed_int = input_seed(seed, index)
            worker.conn.send(seed_int)
            answered = worker.conn.poll(timeout_s)
            try:
                label, ms, crash = (
                    worker.conn.recv() if answered else ("hang", timeout_s * 1e3, None)
                )
            except EOFError:
                label, ms, crash = "died", 0.0, None
            if label in ("hang", "died"):
                exit_code = worker.process.exitcode
                worker.stop(kill=True)
                if local is None:
                    local = build_targets(
                        corpora_dir=corpora_dir, scratch_dir=scratch_dir / "parent", names=[name]
                    )[name]
                data = local.generate(random.Random(seed_int))
                what = f"no answer within {timeout_s:g} s" if label == "hang" else "worker died"
                crash = {
                    "input_seed": seed_int,
                    "error": f"{what} (exit code {exit_code})",
                    "where": label,
                    "input_len": len(data),
                    "input": repr(data[:160]),
                }
                num_hangs += label == "hang"
                worker = _Worker(ctx, name, corpora_dir, scratch_dir / name, stall_s)
            times_ms.append(ms)
            counts[label] += 1
            if crash is not None:
                num_crashes += 1
                if len(crashes) < MAX_CRASHES_SHOWN:
                    crashes.append(crash)
    finally:
        worker.stop()
    typed = {k: v for k, v in sorted(counts.items()) if k not in ("ok", "crash", "hang", "died")}
    return {
        "inputs": n,
        "ok": counts["ok"],
        "typed_errors": typed,
        "crashes": crashes,
        "num_crashes": num_crashes,
        "num_hangs": num_hangs,
        "max_input_ms": round(max(times_ms, default=0.0), 2),
        "mean_input_ms": round(sum(times_ms) / max(len(times_ms), 1), 3),
        "wall_s": round(time.perf_counter() - start, 1),
    }


def run_atheris(name: str, *, runs: int, corpora_dir: Path, scratch_dir: Path, timeout_s: float):
    """Coverage-guided fuzzing of one target with atheris (libFuzzer), seeded with its seeds.

    An undocumented exception propagates to atheris, which prints it, saves the input as
    ``crash-<sha1>`` in the working directory and exits non-zero.
    """
    import atheris

    # Third-party modules first, uninstrumented; then the readers, instrumented.
    import google.protobuf  # noqa: F401
    import grpc  # noqa: F401
    import numpy  # noqa: F401
    import soundfile  # noqa: F401
    import soxr  # noqa: F401

    # numba kernels (used to compute the ark seeds) break when atheris rewrites their bytecode.
    import asr.features  # noqa: F401

    with atheris.instrument_imports(include=["asr", "server"], exclude=list(ATHERIS_EXCLUDE)):
        import asr.audio  # noqa: F401
        import asr.data.datadir  # noqa: F401
        import asr.features.io  # noqa: F401
        import asr.lang.arpa  # noqa: F401
        import asr.lang.lexicon  # noqa: F401
        import server.servicer  # noqa: F401
        from tests.support.fuzz_inputs import build_targets, run_one

    target = build_targets(corpora_dir=corpora_dir, scratch_dir=scratch_dir / "seeds", names=[name])
    target = target[name]
    corpus = scratch_dir / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(target.seeds):
        (corpus / f"seed{index}").write_bytes(seed)
    work = scratch_dir / "work"
    work.mkdir(exist_ok=True)
    counts: Counter = Counter()
    started = time.perf_counter()

    def test_one_input(data: bytes) -> None:
        counts[run_one(target, data, work)] += 1
        if sum(counts.values()) == runs:  # libFuzzer ends with _exit: report before it does
            report()

    def report() -> None:
        total = sum(counts.values())
        summary = {
            name: {
                "mode": "atheris",
                "inputs": total,
                "ok": counts["ok"],
                "typed_errors": {k: v for k, v in sorted(counts.items()) if k != "ok"},
                "wall_s": round(time.perf_counter() - started, 1),
            }
        }
        print(json.dumps(summary, indent=2), flush=True)

    max_len = max(4096, max(len(s) for s in target.seeds) * 2)
    argv = [
        sys.argv[0],
        f"-runs={runs}",
        f"-max_len={max_len}",
        f"-timeout={max(1, int(timeout_s))}",
        "-rss_limit_mb=4096",
        str(corpus),
    ]
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    from tests.support.fuzz_inputs import TARGETS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--n", type=int, default=10_000, help="inputs per target (10000)")
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout-s", type=float, default=10.0, help="per-input hang limit")
    parser.add_argument("--corpora", type=Path, default=_default_corpora())
    parser.add_argument("--atheris", choices=TARGETS, help="coverage-guided mode for one target")
    parser.add_argument("--runs", type=int, default=10_000, help="atheris runs (-runs=N)")
    parser.add_argument("--stall-s", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="asr-fuzz-") as scratch:
        scratch_dir = Path(scratch)
        if args.atheris:
            run_atheris(
                args.atheris,
                runs=args.runs,
                corpora_dir=args.corpora,
                scratch_dir=scratch_dir,
                timeout_s=args.timeout_s,
            )
            return 0  # not reached: atheris exits the process
        report = {}
        for name in args.targets:
            report[name] = fuzz_target(
                name,
                n=args.n,
                seed=args.seed,
                timeout_s=args.timeout_s,
                corpora_dir=args.corpora,
                scratch_dir=scratch_dir,
                stall_s=args.stall_s,
            )
            if not args.json:
                r = report[name]
                print(
                    f"{name:10s} inputs={r['inputs']} ok={r['ok']} typed={r['typed_errors']} "
                    f"crashes={r['num_crashes']} hangs={r['num_hangs']} "
                    f"max={r['max_input_ms']:.1f}ms wall={r['wall_s']}s",
                    flush=True,
                )
                for crash in r["crashes"]:
                    print(f"    {crash}", flush=True)
    if args.json:
        print(json.dumps(report, indent=2))
    return 1 if any(r["num_crashes"] or r["num_hangs"] for r in report.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
