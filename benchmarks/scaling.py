"""Benchmark: how the recipes' costs grow with the amount of training data.

Every recipe writes ``exp/<corpus>/stage_times.json`` (``recipes/common.sh`` runs each stage
under ``asr time-stage``): per stage its wall seconds, CPU seconds (all its processes) and
peak memory, and the training set's hours (``train_data``). Given several exp dirs of runs on
different amounts of data, this prints, for every stage and every pair of consecutive dirs,
the cost ratio (wall and CPU) against the data ratio, and

    max_gmm_stage_cost_ratio_over_data_ratio = max over GMM stages 5-12 and pairs of
                                               (CPU-seconds ratio / training-hours ratio)

(``--cost wall`` uses wall seconds instead; CPU seconds do not depend on what else the
machine runs). 1.0 means the stage's cost grows in proportion to the data; decoding stages
(6, 8, 10, 12) decode the same dev set whatever the training data, so theirs stay below.

``--perturb 2`` makes the two runs itself: speechocean762's training half as it is, and a
speed-perturbed copy (factors 0.9 and 1.1, as Kaldi's ``perturb_data_dir_speed.sh``:
2.02 times the audio; ``--perturb 3`` adds the original for 3.02 times), each in a scratch
root under ``--work-dir`` (a copy of ``recipes/``; the checkout is not touched) where the
AN4 recipe runs its stages 1 and 3-12 on speechocean762 data dirs put in its place
(``data/an4/{train,dev}`` from ``asr prepare speechocean762``, the lang dir from the
corpus's own lexicon: stages 0 and 2 are done here). The AN4 recipe is the one with every
GMM stage; its hyperparameters (``recipes/an4/conf``) are the same in both runs.
``--max-speakers N`` keeps the first N speakers of train and of dev (a quick check); the
whole corpus (2.9 h, 5.8 h perturbed) takes hours on a laptop-class CPU.

Usage::

    .venv/bin/python benchmarks/scaling.py exp/an4_small exp/an4 --json
    .venv/bin/python benchmarks/scaling.py --perturb 2 --corpus-dir ../shared/data/speechocean762 \\
        --work-dir /tmp/scaling --json
    .venv/bin/python benchmarks/scaling.py --perturb 2 --corpus-dir ../shared/data/speechocean762 \\
        --work-dir /tmp/scaling --max-speakers 2 --stages 1,3-5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
GMM_STAGES = range(5, 13)  # mono .. tri3 decoding (recipes/common.sh)
TRAINING_STAGES = (5, 7, 9, 11, 13, 15, 17)  # mono, tri1, tri2, tri3, dnn, ctc, ctc_stream
PERTURB_FACTORS = {2: (0.9, 1.1), 3: (0.9, 1.0, 1.1)}
RECIPE = "an4"  # the recipe with every GMM stage (5-12)
RECIPE_STAGES = (1, *range(3, 13))  # 0 (data) and 2 (lang) are done by prepare_root


# ------------------------------------------------------------------------------ reading
def read_exp_dir(exp_dir: Path) -> dict[str, Any]:
    """``{"exp_dir", "hours", "stages": {name: entry}}`` from ``exp_dir/stage_times.json``."""
    path = Path(exp_dir) / "stage_times.json"
    try:
        times = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise SystemExit(f"{path}: cannot read stage times: {err}") from None
    hours = (times.get("train_data") or {}).get("hours")
    if not isinstance(hours, int | float) or hours <= 0:
        raise SystemExit(f"{path}: no training data size (train_data.hours); rerun a stage")
    return {"exp_dir": str(exp_dir), "hours": float(hours), "stages": times.get("stages", {})}


def _ratio(new: Any, old: Any) -> float | None:
    if not isinstance(new, int | float) or not isinstance(old, int | float) or old <= 0:
        return None
    return new / old


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def scaling_report(runs: Sequence[dict[str, Any]], *, cost: str = "cpu") -> dict[str, Any]:
    """Per stage and consecutive pair of ``runs`` (:func:`read_exp_dir` results, in the
    given order): the data ratio, the wall and CPU ratios and each over the data ratio; and
    the headline ``max_gmm_stage_cost_ratio_over_data_ratio`` (``cost`` ``"cpu"`` or
    ``"wall"``; None when no GMM stage is in two consecutive runs)."""
    if len(runs) < 2:
        raise ValueError("need at least two exp dirs to compare")
    if cost not in ("cpu", "wall"):
        raise ValueError(f"cost must be 'cpu' or 'wall', got {cost!r}")
    names: dict[str, int] = {}
    for run in runs:
        for name, entry in run["stages"].items():
            names.setdefault(name, int(entry.get("stage", 10**6)))
    pairs = list(zip(runs[:-1], runs[1:], strict=True))
    data_ratios = [b["hours"] / a["hours"] for a, b in pairs]
    stages: dict[str, Any] = {}
    best: tuple[float, str, int] | None = None
    for name in sorted(names, key=lambda n: (names[n], n)):
        entries = [run["stages"].get(name) or {} for run in runs]
        row: dict[str, Any] = {
            "stage": names[name],
            "wall_seconds": [e.get("wall_seconds") for e in entries],
            "cpu_seconds": [e.get("cpu_seconds") for e in entries],
            "peak_rss_mib": [e.get("peak_rss_mib") for e in entries],
            "pairs": [],
        }
        for index, ((a, b), data_ratio) in enumerate(zip(pairs, data_ratios, strict=True)):
            ea, eb = a["stages"].get(name) or {}, b["stages"].get(name) or {}
            wall = _ratio(eb.get("wall_seconds"), ea.get("wall_seconds"))
            cpu = _ratio(eb.get("cpu_seconds"), ea.get("cpu_seconds"))
            pair = {
                "data_ratio": _round(data_ratio),
                "wall_ratio": _round(wall),
                "cpu_ratio": _round(cpu),
                "wall_ratio_over_data_ratio": _round(None if wall is None else wall / data_ratio),
                "cpu_ratio_over_data_ratio": _round(None if cpu is None else cpu / data_ratio),
                "peak_rss_ratio": _round(_ratio(eb.get("peak_rss_mib"), ea.get("peak_rss_mib"))),
            }
            row["pairs"].append(pair)
            value = pair[f"{cost}_ratio_over_data_ratio"]
            gmm = names[name] in GMM_STAGES and value is not None
            if gmm and (best is None or value > best[0]):
                best = (value, name, index)
        stages[name] = row
    return {
        "exp_dirs": [run["exp_dir"] for run in runs],
        "warnings": skipped_trainings(runs),
        "train_hours": [run["hours"] for run in runs],
        "data_ratios": [_round(r) for r in data_ratios],
        "cost": cost,
        "max_gmm_stage_cost_ratio_over_data_ratio": None if best is None else best[0],
        "max_gmm_stage": None if best is None else best[1],
        "max_gmm_stage_pair": None if best is None else best[2],
        "stages": stages,
    }


def skipped_trainings(runs: Sequence[dict[str, Any]]) -> list[str]:
    """A training stage whose latest run trained nothing (its model was up to date): its
    cost is that of the check, not of the training."""
    warnings = []
    for run in runs:
        for name, entry in run["stages"].items():
            if entry.get("stage") in TRAINING_STAGES and entry.get("models_trained") == []:
                warnings.append(
                    f"{run['exp_dir']}: the latest run of stage {entry['stage']} ({name}) "
                    "trained nothing (up to date): its cost is not the training's"
                )
    return warnings


def format_report(report: dict[str, Any]) -> str:
    """The report as a plain-text table (one block per consecutive pair of exp dirs)."""
    lines = []
    dirs, hours = report["exp_dirs"], report["train_hours"]
    for index in range(len(dirs) - 1):
        lines.append(
            f"{dirs[index]} ({hours[index]:.4g} h) -> {dirs[index + 1]} ({hours[index + 1]:.4g} h):"
            f" data x{report['data_ratios'][index]:.3g}"
        )
        lines.append(
            f"  {'stage':>5} {'name':<18} {'wall s':>17} {'x wall':>7} {'CPU s':>17} "
            f"{'x CPU':>7} {'x CPU/x data':>12}"
        )
        for name, row in report["stages"].items():
            pair = row["pairs"][index]
            wall, cpu = row["wall_seconds"], row["cpu_seconds"]
            lines.append(
                f"  {row['stage']:>5} {name:<18} {_pair_text(wall, index):>17} "
                f"{_num(pair['wall_ratio']):>7} {_pair_text(cpu, index):>17} "
                f"{_num(pair['cpu_ratio']):>7} {_num(pair['cpu_ratio_over_data_ratio']):>12}"
            )
    lines.extend(f"warning: {w}" for w in report["warnings"])
    value = report["max_gmm_stage_cost_ratio_over_data_ratio"]
    lines.append(
        f"max over GMM stages 5-12 of ({report['cost']} ratio / data ratio): "
        + ("n/a" if value is None else f"{value:.3f} ({report['max_gmm_stage']})")
    )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _pair_text(values: list, index: int) -> str:
    a, b = values[index], values[index + 1]
    return f"{_num(a)} -> {_num(b)}"


# ------------------------------------------------------------------------------ --perturb
def slice_speakers(data_dir: Path, max_speakers: int) -> None:
    """Keep the first ``max_speakers`` speakers (sorted ids) of a data dir, in place."""
    from asr.data import read_data_dir, read_kaldi_map, write_data_dir, write_kaldi_map

    data = read_data_dir(data_dir)
    keep = set(data.speakers[:max_speakers])
    write_data_dir(data.subset(u for u in data.utt_ids if data.utt2spk[u] in keep), data_dir)
    for name in ("spk2gender", "spk2age"):
        path = data_dir / name
        if path.is_file():
            write_kaldi_map(path, {k: v for k, v in read_kaldi_map(path).items() if k in keep})


def prepare_root(
    root: Path, corpus_dir: Path, *, factors: tuple[float, ...] | None, max_speakers: int | None
) -> None:
    """A scratch root for the AN4 recipe on speechocean762: ``recipes/`` copied, its stage 0
    (data dirs; train speed-perturbed with ``factors`` when given) and 2 (lang) done here."""
    from asr.data import SpeedPerturbConfig, perturb_data_dir_speed

    root.mkdir(parents=True, exist_ok=True)
    if not (root / "recipes").exists():
        shutil.copytree(REPO / "recipes", root / "recipes")
    data = root / "data" / RECIPE
    if not (data / "train" / "wav.scp").is_file():
        asr(["prepare", "speechocean762", "--corpus-dir", corpus_dir, "--out", data], root)
        if max_speakers is not None:
            for name in ("train", "dev"):
                slice_speakers(data / name, max_speakers)
        if factors is not None:
            (data / "train").rename(data / "train_orig")
            perturb_data_dir_speed(
                data / "train_orig", data / "train", config=SpeedPerturbConfig(factors=factors)
            )
    asr(["lang", "prepare", "--dict", corpus_dir / "resource" / "lexicon.txt",
         "--out", data / "lang"], root)  # fmt: skip


def asr(argv: list, cwd: Path) -> None:
    command = [sys.executable, "-m", "asr.cli.main", *map(str, argv)]
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def run_recipe(root: Path, corpus_dir: Path, stages: Sequence[int], nj: int, log: Path) -> None:
    """The AN4 recipe's ``stages`` in ``root``, in consecutive runs (``--stage a --stop-stage
    b``); ``asr`` from this interpreter's environment."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("ASR_TIMED_STAGE", None)
    for first, last in _ranges(stages):
        command = [
            "bash", str(root / "recipes" / RECIPE / "run.sh"), "--corpus-dir", str(corpus_dir),
            "--stage", str(first), "--stop-stage", str(last), "--nj", str(nj),
        ]  # fmt: skip
        with log.open("ab") as out:
            proc = subprocess.run(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            raise SystemExit(
                f"{root}: stages {first}-{last} failed (rc {proc.returncode}); see {log}"
            )


def _ranges(stages: Sequence[int]) -> list[tuple[int, int]]:
    ranges: list[list[int]] = []
    for stage in sorted(set(stages)):
        if ranges and stage == ranges[-1][1] + 1:
            ranges[-1][1] = stage
        else:
            ranges.append([stage, stage])
    return [(a, b) for a, b in ranges]


def parse_stages(text: str) -> list[int]:
    """``"1,3-12"`` -> ``[1, 3, 4, ..., 12]``."""
    stages: list[int] = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        stages.extend(range(int(first), int(last or first) + 1))
    return sorted(set(stages))


def perturb_runs(args: argparse.Namespace) -> list[Path]:
    """Run the recipe on the original and the perturbed training data; their exp dirs."""
    factors = PERTURB_FACTORS[args.perturb]
    corpus_dir = args.corpus_dir.resolve()
    stages = [s for s in parse_stages(args.stages) if s in RECIPE_STAGES]
    exp_dirs = []
    for name, root_factors in (("base", None), (f"sp{args.perturb}", factors)):
        root = (args.work_dir / name).resolve()
        print(f"scaling: preparing {root}", file=sys.stderr)
        prepare_root(root, corpus_dir, factors=root_factors, max_speakers=args.max_speakers)
        print(f"scaling: recipe stages {stages} in {root}", file=sys.stderr)
        run_recipe(root, corpus_dir, stages, args.nj, args.work_dir / f"{name}.log")
        exp_dirs.append(root / "exp" / RECIPE)
    return exp_dirs


# ------------------------------------------------------------------------------ main
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("exp_dirs", type=Path, nargs="*", metavar="EXP_DIR",
                        help="exp dirs with stage_times.json, least data first")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--cost", choices=("cpu", "wall"), default="cpu",
                        help="the cost of the headline ratio (default: CPU seconds)")  # fmt: skip
    parser.add_argument("--perturb", type=int, choices=sorted(PERTURB_FACTORS), default=None,
                        help="run the recipe on speechocean762 train and an N-way speed-"
                        "perturbed copy (2: factors 0.9, 1.1), then compare them")  # fmt: skip
    parser.add_argument("--corpus-dir", type=Path, default=None,
                        help="speechocean762 (with --perturb)")  # fmt: skip
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where the two scratch roots go (with --perturb; reused)")  # fmt: skip
    parser.add_argument("--max-speakers", type=int, default=None,
                        help="keep the first N speakers of train and dev (a quick check)")  # fmt: skip
    parser.add_argument("--stages", default="1,3-12",
                        help="recipe stages to run with --perturb (default 1,3-12)")  # fmt: skip
    parser.add_argument("--nj", type=int, default=2, help="the recipe's --nj (with --perturb)")
    args = parser.parse_args(argv)
    exp_dirs = list(args.exp_dirs)
    if args.perturb is not None:
        if args.corpus_dir is None or args.work_dir is None:
            parser.error("--perturb needs --corpus-dir and --work-dir")
        exp_dirs += perturb_runs(args)
    if len(exp_dirs) < 2:
        parser.error("give at least two EXP_DIRs (or --perturb)")
    report = scaling_report([read_exp_dir(d) for d in exp_dirs], cost=args.cost)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
