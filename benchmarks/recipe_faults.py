"""Benchmark: kill -9 at random points of every recipe stage, rerun, compare with a clean run.

The recipe runs in scratch copies of the repository's ``recipes/`` (a temporary root with its
own ``data/`` and ``exp/``; ``asr`` comes from this interpreter's environment), so the checkout
is never touched:

1. **reference**: every stage once, uninterrupted (``--stage s --stop-stage s`` in turn),
   noting which files each stage writes and how long it takes. With ``--reference-runs 2`` a
   second uninterrupted run is compared file by file with the first (determinism).
2. **faulted**: stage by stage in a second root: start the stage in its own process group,
   SIGKILL the group at a uniformly random time within the stage's reference duration
   (``--kills-per-stage`` times, each run starting from what the previous kill left; a run
   that ends before its kill time is undone from a copy of the root and retried, twice at
   most, with a time drawn within that run's own duration), then run the stage to completion and compare each of its outputs with the reference. The next
   stage then starts (with its own kills) from there, so the faulted root has run the whole
   recipe from each killed stage to the end.

After every kill, each file written during the killed run is checked: equal to the
reference's final file, or loadable in full (a complete intermediate, such as ``best.pt``
of an earlier epoch); a file that is a truncated prefix of the reference or cannot be parsed
is a **partial file in place of a final one**. Leftover temporaries of atomic writes
(``.NAME.*.tmp`` files, ``.NAME.*`` bundle directories) are listed separately: they never
stand in for an output and are not compared.

Outputs are equal **bytes**, or equal after a named normalization (``COMPARISONS`` says
which files need which and why): Kaldi scp files hold absolute paths of their archives;
JSON summaries and torch checkpoints hold wall-clock timings and whether the run resumed;
RESULTS.md has a training-time column.

Usage::

    .venv/bin/python benchmarks/recipe_faults.py --corpus-dir ../shared/data/yesno --json
    .venv/bin/python benchmarks/recipe_faults.py --corpus-dir ../shared/data/yesno \\
        --kills-per-stage 2 --stages 0-6 --reference-runs 2 --json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

# Keys of JSON records (train logs, decode.json, train_summary.json, nnet histories and
# checkpoints' trainer state) that hold wall-clock measurements or say whether a run resumed.
VOLATILE_KEYS = frozenset({
    "seconds", "wall_seconds", "likelihood_seconds", "search_seconds", "graph_seconds",
    "feature_seconds", "rtf", "frames_per_second", "mean_frames_per_second", "train_seconds",
    "resumed_from", "resumed_from_epoch", "elapsed", "elapsed_seconds",
    # asr.timing: iteration_times.json of every trainer, stage_times.json of the recipe
    "cpu_seconds", "user_seconds", "sys_seconds", "peak_rss_mib", "finished_at", "models_trained",
})  # fmt: skip

COMPARISONS = {
    "bytes": "byte-identical",
    "paths": "equal after replacing the scratch root: Kaldi scp files hold absolute ark paths",
    "json-timings": "equal JSON after dropping wall-clock timings and resume markers "
    f"({', '.join(sorted(VOLATILE_KEYS))}) and replacing the scratch root",
    "torch-timings": "equal torch.load() contents (tensors bit-exact) after dropping the "
    "same keys from the trainer state's epoch history",
    "table-timings": "equal markdown after dropping the 'nnet training' (minutes) column",
}


# ------------------------------------------------------------------------------ scratch roots
def make_root(parent: Path, name: str) -> Path:
    root = parent / name
    root.mkdir()
    shutil.copytree(REPO / "recipes", root / "recipes")
    return root


def recipe_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("ASR_PROGRESS", None)
    return env


def stage_command(root: Path, recipe: str, corpus_dir: Path, stage: int) -> list[str]:
    return [
        "bash", str(root / "recipes" / recipe / "run.sh"), "--corpus-dir", str(corpus_dir),
        "--stage", str(stage), "--stop-stage", str(stage),
    ]  # fmt: skip


def recipe_stages(recipe: str) -> list[int]:
    text = (REPO / "recipes" / recipe / "run.sh").read_text(encoding="utf-8")
    return sorted({int(n) for n in re.findall(r"\bstage_ok (\d+)", text)})


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """``relpath -> (mtime_ns, size)`` of every file under the root (recipes/ copy included)."""
    files = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            files[str(path.relative_to(root))] = (st.st_mtime_ns, st.st_size)
    return files


def is_temporary(rel: str) -> bool:
    """A leftover of an atomic write (``.NAME.xxxx.tmp``) or of a bundle build (``.NAME.xxxx/``)."""
    return any(part.startswith(".") for part in Path(rel).parts)


def changed(before: dict, after: dict) -> list[str]:
    return sorted(rel for rel, sig in after.items() if before.get(rel) != sig)


def run_stage(root: Path, recipe: str, corpus_dir: Path, stage: int, log: Path) -> dict:
    start = time.perf_counter()
    with log.open("ab") as out:
        proc = subprocess.run(
            stage_command(root, recipe, corpus_dir, stage), cwd=root, env=recipe_env(),
            stdout=out, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    return {"rc": proc.returncode, "seconds": time.perf_counter() - start}


def killed_run(
    root: Path, recipe: str, corpus_dir: Path, stage: int, after_s: float, log: Path
) -> dict:
    """Start the stage in a new process group; SIGKILL the whole group after ``after_s``."""
    start = time.perf_counter()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            stage_command(root, recipe, corpus_dir, stage), cwd=root, env=recipe_env(),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            rc = proc.wait(timeout=after_s)
            return {"killed": False, "rc": rc, "seconds": time.perf_counter() - start}
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # the group may hold workers that outlive bash: make sure none is left
    for _ in range(50):
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    return {"killed": True, "at_seconds": round(after_s, 2)}


# ------------------------------------------------------------------------------ comparisons
def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, (list, tuple)):
        return [_strip(v) for v in value]
    return value


def _torch_equal(a: Any, b: Any) -> bool:
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(torch.equal(a, b))
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_torch_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_torch_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _drop_table_column(text: str, header: str) -> str:
    lines, column = [], None
    for line in text.splitlines():
        cells = line.split("|")
        if column is None and header in [c.strip() for c in cells]:
            column = [c.strip() for c in cells].index(header)
        if column is not None and line.startswith("|") and len(cells) > column:
            del cells[column]
            line = "|".join(cells)
        lines.append(line)
    return "\n".join(lines)


def compare_file(ref: Path, got: Path, ref_root: Path, got_root: Path) -> str | None:
    """The comparison under which the two files agree (a key of COMPARISONS), or None."""
    a, b = ref.read_bytes(), got.read_bytes()
    if a == b:
        return "bytes"
    name = ref.name
    if name.endswith(".pt"):
        import torch

        try:
            x = torch.load(ref, map_location="cpu", weights_only=True)
            y = torch.load(got, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - an unreadable file is simply "different"
            return None
        return "torch-timings" if _torch_equal(_strip(x), _strip(y)) else None
    try:
        ta = a.decode("utf-8").replace(str(ref_root), "<ROOT>")
        tb = b.decode("utf-8").replace(str(got_root), "<ROOT>")
    except UnicodeDecodeError:
        return None
    if ta == tb:
        return "paths"
    if name.endswith(".json") or name == "history.json":
        try:
            ja, jb = json.loads(ta), json.loads(tb)
        except json.JSONDecodeError:
            return None
        return "json-timings" if _strip(ja) == _strip(jb) else None
    if name.endswith(".md"):
        column = "nnet training"
        if _drop_table_column(ta, column) == _drop_table_column(tb, column):
            return "table-timings"
    return None


def is_loadable(path: Path) -> bool:
    """Parse the whole file by its kind; False for a truncated or garbled file."""
    name = path.name
    try:
        if name.endswith(".json"):
            json.loads(path.read_text(encoding="utf-8"))
        elif name.endswith(".pt"):
            import torch

            torch.load(path, map_location="cpu", weights_only=True)
        elif name.endswith(".npz"):
            import numpy as np

            with np.load(path, allow_pickle=False) as data:
                for key in data.files:
                    data[key]  # noqa: B018 - reads (and CRC-checks) every member
        elif name.endswith(".fst"):
            import kaldifst

            kaldifst.StdVectorFst.read(str(path))
        elif name.endswith(".png"):
            return path.read_bytes()[-8:-4] == b"IEND"
        elif name.endswith(".ark"):
            import kaldi_io

            reader = kaldi_io.read_mat_ark if "ali" not in name else kaldi_io.read_vec_int_ark
            for _ in reader(str(path)):
                pass
        else:
            data = path.read_bytes()
            return not data or data.endswith(b"\n")
    except Exception:  # noqa: BLE001 - any failure to parse means partial
        return False
    return True


def check_after_kill(
    written: list[str], got_root: Path, ref_root: Path, ref_files: dict
) -> dict[str, list[str]]:
    """Classify the files a killed run wrote (see the module docstring)."""
    result: dict[str, list[str]] = {"final": [], "intermediate": [], "partial": [], "temp": []}
    for rel in written:
        if is_temporary(rel):
            result["temp"].append(rel)
            continue
        got = got_root / rel
        if rel in ref_files and compare_file(ref_root / rel, got, ref_root, got_root):
            result["final"].append(rel)
            continue
        if rel in ref_files:
            ref_bytes = (ref_root / rel).read_bytes()
            got_bytes = got.read_bytes()
            if len(got_bytes) < len(ref_bytes) and ref_bytes.startswith(got_bytes):
                result["partial"].append(rel)
                continue
        result["intermediate" if is_loadable(got) else "partial"].append(rel)
    return result


def compare_outputs(outputs: list[str], ref_root: Path, got_root: Path) -> dict[str, Any]:
    record: dict[str, Any] = {"identical": {}, "different": [], "missing": []}
    for rel in outputs:
        if not (got_root / rel).is_file():
            record["missing"].append(rel)
            continue
        how = compare_file(ref_root / rel, got_root / rel, ref_root, got_root)
        if how is None:
            record["different"].append(rel)
        else:
            record["identical"][rel] = how
    return record


# ------------------------------------------------------------------------------ the runs
def reference_run(root: Path, args, stages: list[int], log: Path) -> dict[int, dict]:
    info = {}
    before = snapshot(root)
    for stage in stages:
        result = run_stage(root, args.recipe, args.corpus_dir, stage, log)
        after = snapshot(root)
        if result["rc"] != 0:
            raise SystemExit(f"reference run: stage {stage} failed (rc {result['rc']}); see {log}")
        outputs = [rel for rel in changed(before, after) if not is_temporary(rel)]
        info[stage] = {"seconds": result["seconds"], "outputs": outputs}
        before = after
        print(f"reference {root.name}: stage {stage} {result['seconds']:.1f} s", file=sys.stderr)
    return info


def faulted_run(root: Path, ref_root: Path, args, stages, ref: dict, log: Path) -> dict:
    rng = random.Random(args.seed)
    ref_files = snapshot(ref_root)
    report = {}
    for stage in stages:
        duration = ref[stage]["seconds"]
        kills = []
        for _ in range(args.kills_per_stage):
            limit = duration
            backup = root.with_name(root.name + ".before_kill")
            shutil.copytree(root, backup, symlinks=True)  # copy2 keeps the mtimes
            for attempt in range(1, 4):
                before = snapshot(root)
                after_s = rng.uniform(0.03, 0.97) * limit
                kill = killed_run(root, args.recipe, args.corpus_dir, stage, after_s, log)
                written = changed(before, snapshot(root))
                kill.update(check_after_kill(written, root, ref_root, ref_files), attempt=attempt)
                if kill["killed"]:
                    break
                # The run ended before its kill time (this machine ran faster than during the
                # reference): start again from the same state, with a time inside that run.
                limit = kill["seconds"]
                shutil.rmtree(root)
                shutil.copytree(backup, root, symlinks=True)
            shutil.rmtree(backup)
            kills.append(kill)
        rerun = run_stage(root, args.recipe, args.corpus_dir, stage, log)
        record = compare_outputs(ref[stage]["outputs"], ref_root, root)
        record.update(
            reference_seconds=round(duration, 1),
            kills=kills,
            rerun_rc=rerun["rc"],
            rerun_seconds=round(rerun["seconds"], 1),
        )
        report[stage] = record
        print(
            f"faulted: stage {stage}: {sum(k['killed'] for k in kills)} kills, rerun rc "
            f"{rerun['rc']}, {len(record['identical'])} identical, "
            f"{len(record['different'])} different, {len(record['missing'])} missing",
            file=sys.stderr,
        )
    return report


def _parse_stages(text: str | None, available: list[int]) -> list[int]:
    if not text:
        return available
    chosen = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        chosen |= {s for s in available if int(lo) <= s <= int(hi or lo)}
    return sorted(chosen)


def summarize(faulted: dict, determinism: dict | None) -> dict[str, Any]:
    kills = [k for rec in faulted.values() for k in rec["kills"]]
    methods: dict[str, list[str]] = {}
    for rec in faulted.values():
        for rel, how in rec["identical"].items():
            if how != "bytes":
                methods.setdefault(how, []).append(rel)
    return {
        "stages": len(faulted),
        "kills": sum(k["killed"] for k in kills),
        "runs_finished_before_the_kill": sum(not k["killed"] for k in kills),
        "outputs_compared": sum(
            len(r["identical"]) + len(r["different"]) + len(r["missing"]) for r in faulted.values()
        ),
        "outputs_byte_identical": sum(
            sum(h == "bytes" for h in r["identical"].values()) for r in faulted.values()
        ),
        "outputs_identical_after_normalization": {k: sorted(v) for k, v in methods.items()},
        "outputs_different": sorted(d for r in faulted.values() for d in r["different"]),
        "outputs_missing": sorted(d for r in faulted.values() for d in r["missing"]),
        "partial_files_after_kill": sorted({p for k in kills for p in k.get("partial", [])}),
        "temporaries_left_by_kills": sum(len(k.get("temp", [])) for k in kills),
        "failed_reruns": sorted(s for s, r in faulted.items() if r["rerun_rc"] != 0),
        "determinism_different": (
            sorted(d for r in determinism.values() for d in r["different"])
            if determinism is not None
            else None
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus-dir", type=Path, required=True)
    parser.add_argument("--recipe", default="yesno")
    parser.add_argument("--kills-per-stage", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill times")
    parser.add_argument(
        "--stages", default=None,
        help="e.g. 0-6 or 0-6,11 (default: all); earlier stages run first, unkilled",
    )  # fmt: skip
    parser.add_argument(
        "--reference-runs", type=int, choices=(1, 2), default=1,
        help="2: a second uninterrupted run, compared with the first (determinism)",
    )  # fmt: skip
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a temporary dir")
    parser.add_argument("--keep", action="store_true", help="keep the scratch roots")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    args.corpus_dir = args.corpus_dir.resolve()
    stages = _parse_stages(args.stages, recipe_stages(args.recipe))
    # the stages before the first chosen one run uninterrupted in every root, uncompared
    setup = [s for s in recipe_stages(args.recipe) if s < stages[0]]
    work = Path(tempfile.mkdtemp(prefix="recipe_faults.", dir=args.work_dir))
    start = time.perf_counter()

    def new_root(name: str) -> Path:
        root = make_root(work, name)
        if setup:
            reference_run(root, args, setup, work / f"{name}.setup.log")
        return root

    try:
        ref_root = new_root("reference")
        ref = reference_run(ref_root, args, stages, work / "reference.log")
        determinism = None
        if args.reference_runs == 2:
            ref2_root = new_root("reference2")
            reference_run(ref2_root, args, stages, work / "reference2.log")
            determinism = {
                s: compare_outputs(ref[s]["outputs"], ref_root, ref2_root) for s in stages
            }
        got_root = new_root("faulted")
        faulted = faulted_run(got_root, ref_root, args, stages, ref, work / "faulted.log")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report = {
        "benchmark": "recipe_faults",
        "recipe": args.recipe,
        "corpus_dir": str(args.corpus_dir),
        "stages": stages,
        "kills_per_stage": args.kills_per_stage,
        "seed": args.seed,
        "comparisons": COMPARISONS,
        "summary": summarize(faulted, determinism),
        "per_stage": {str(s): r for s, r in faulted.items()},
        "determinism": (
            {str(s): r for s, r in determinism.items()} if determinism is not None else None
        ),
        "work_dir": str(work) if args.keep else None,
        "total_seconds": round(time.perf_counter() - start, 1),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(json.dumps(report["summary"], indent=2))


if __name__ == "__main__":
    main()
