"""``asr time-stage``: run one recipe stage and merge what it cost into ``stage_times.json``.

``recipes/common.sh`` runs every stage through it (``stage_ok N`` starts the recipe again for
stage N alone under this command): the stage's wall seconds, CPU seconds (user + system, all
its processes, process-pool workers and their fork server included) and peak memory (the
largest of its processes, MiB) become ``stages.<name>`` of ``--out``; other stages' entries
are kept, a rerun stage's entry replaced. The file also gets the training set's size
(``train_data``: utterances, speakers, hours of audio from the ``wav.scp`` headers, read again
only when ``wav.scp`` changed) and every model's per-iteration times (``trainings``: the
``EXP/<model>/iteration_times.json`` files of the GMM and neural trainers); a stage entry's
``models_trained`` names the models whose iteration times this run of the stage (re)wrote
(none when their training was up to date and skipped), ``orphans_adopted`` how many of its
processes outlived their parents. A failed stage is not recorded; the command exits with
its status.

Example::

    asr time-stage --stage 5 --name mono --out exp/yesno/stage_times.json \\
        --data-dir data/yesno/train -- bash recipes/yesno/run.sh --stage 5 --stop-stage 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from asr.cli.common import HelpFormatter

_EPILOG = """examples:
  asr time-stage --stage 5 --name mono --out exp/yesno/stage_times.json \\
      --data-dir data/yesno/train -- bash recipes/yesno/run.sh --stage 5 --stop-stage 5
  asr time-stage --stage 1 --name features --out /tmp/stage_times.json -- sleep 1
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "time-stage",
        help="run a recipe stage; record its wall/CPU time and peak memory in stage_times.json",
        description="Run COMMAND (a recipe stage) and merge its wall seconds, CPU seconds (user "
        "+ system over all its processes, orphaned ones included) and peak memory (the largest "
        "process, MiB) into the stage times file --out as stage --name; other stages' entries "
        "are kept. Also records the training set's size (--data-dir) and the per-iteration "
        "times of the models beside --out (<dir>/<model>/iteration_times.json). A failed "
        "COMMAND is not recorded; the exit status is COMMAND's.",
        epilog=_EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--stage", type=int, required=True, metavar="N", help="stage number")
    parser.add_argument(
        "--name", default=None, help="the stage's name, its key in the file (default: stageN)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="FILE",
        help="the stage times file (EXP/stage_times.json); models are looked for beside it",
    )  # fmt: skip
    parser.add_argument(
        "--data-dir", type=Path, default=None, metavar="DIR",
        help="the training data dir whose size (utterances, hours) the file records",
    )  # fmt: skip
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, metavar="-- COMMAND",
        help="the command to run and time (after --)",
    )  # fmt: skip
    parser.set_defaults(func=_time_stage)


def _time_stage(args: argparse.Namespace) -> int:
    from asr.errors import AsrError
    from asr.timing import read_stage_times, record_stage, run_timed

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("asr time-stage: error: no COMMAND given (after --)", file=sys.stderr)
        return 2
    name = args.name or f"stage{args.stage}"
    started = time.time()
    result = run_timed(command)
    usage = result.usage
    if result.returncode != 0:
        print(
            f"asr time-stage: stage {args.stage} ({name}) failed with status "
            f"{result.returncode} after {usage.wall_seconds:.1f} s; not recorded",
            file=sys.stderr,
        )
        return result.returncode
    try:
        old = read_stage_times(args.out)
        trainings, written = _trainings(args.out.parent, started)
        record_stage(
            args.out,
            name,
            stage=args.stage,
            usage=usage,
            extra={"orphans_adopted": result.num_orphans, "models_trained": written},
            train_data=_train_data(args.data_dir, old.get("train_data")),
            trainings=trainings,
        )
    except (AsrError, OSError) as err:  # the stage itself succeeded: warn, do not fail it
        print(f"asr time-stage: warning: stage times not recorded: {err}", file=sys.stderr)
        return 0
    print(
        f"stage {args.stage} ({name}): {usage.wall_seconds:.1f} s wall, "
        f"{usage.cpu_seconds:.1f} s CPU, peak {usage.peak_rss_mib:.0f} MiB",
        file=sys.stderr,
    )
    return 0


def _trainings(exp_dir: Path, since: float) -> tuple[dict[str, dict], list[str]]:
    """Every ``EXP/<model>/iteration_times.json`` (model -> contents), and the models whose
    file was written at or after ``since`` (by this stage)."""
    from asr.errors import AsrError
    from asr.timing import ITERATION_TIMES_FILE, read_iteration_times

    found: dict[str, dict] = {}
    written: list[str] = []
    if not exp_dir.is_dir():
        return found, written
    for path in sorted(exp_dir.glob(f"*/{ITERATION_TIMES_FILE}")):
        try:
            times = read_iteration_times(path)
            mtime = path.stat().st_mtime
        except (AsrError, OSError):
            continue  # one unreadable file does not stop the others
        if times is None:
            continue
        model = path.parent.name
        found[model] = {"unit": times["unit"], "iterations": times["iterations"]}
        if mtime >= since:
            written.append(model)
    return found, written


def _train_data(data_dir: Path | None, old: object) -> dict | None:
    """The training set's size (``hours`` from the audio headers), or None without one; the
    old entry when ``wav.scp`` has not changed since it was measured."""
    from asr.data import read_data_dir, total_duration_seconds
    from asr.errors import AsrError

    if data_dir is None:
        return old if isinstance(old, dict) else None
    wav_scp = data_dir / "wav.scp"
    try:
        stat = wav_scp.stat()
    except OSError:
        return old if isinstance(old, dict) else None
    signature = f"{stat.st_size}:{stat.st_mtime_ns}"
    if (
        isinstance(old, dict)
        and old.get("data_dir") == str(data_dir)
        and old.get("wav_scp_signature") == signature
    ):
        return old
    try:
        data = read_data_dir(data_dir, check_audio=False)
        seconds = total_duration_seconds(data)
    except AsrError as err:
        print(f"asr time-stage: warning: training data size unknown: {err}", file=sys.stderr)
        return old if isinstance(old, dict) else None
    return {
        "data_dir": str(data_dir),
        "num_utterances": len(data),
        "num_speakers": len(data.speakers),
        "seconds": round(seconds, 3),
        "hours": round(seconds / 3600.0, 6),
        "wav_scp_signature": signature,
    }
