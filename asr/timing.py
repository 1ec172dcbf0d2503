"""What pipeline steps cost: wall time, CPU time and peak memory of recipe stages and of
training iterations, kept as JSON beside their outputs.

* :class:`ResourceUsage` -- one measurement: wall seconds, user and system CPU seconds,
  peak resident set size (MiB).
* :class:`StageTimer` -- measures a block of code in this process *and its descendants*:
  ``getrusage(RUSAGE_SELF)`` and ``getrusage(RUSAGE_CHILDREN)`` (children already waited for)
  plus, on Linux, the descendants still alive (``/proc``: the workers of a process pool, which
  are only waited for when the pool shuts down). Its peak memory is the largest high-water
  mark of those processes at the end (``ru_maxrss``, ``VmHWM``): a lifetime peak, so in a
  long-lived process it is the peak *so far*.
* :func:`run_timed` -- runs a command and measures exactly it and everything it starts: this
  process becomes a *child subreaper* (Linux ``prctl``), so a descendant orphaned on the way
  (the fork server of a process pool outlives the ``asr`` command that started it) is
  re-parented here, waited for, and counted; each process's usage comes from ``wait4``, so
  the peak is the largest process of that command, whatever ran before in this process.
* :class:`IterationTimes` -- a trainer's per-iteration (or per-epoch) usage in
  ``iteration_times.json`` in its model dir, rewritten atomically after each iteration; a
  resumed training keeps the entries of the iterations it does not repeat.
* :func:`record_stage` -- merges one stage's entry into a recipe's ``stage_times.json``
  (atomically, other stages kept): what ``asr time-stage`` writes for every stage a recipe runs.

CPU seconds add up over processes (two busy workers for 10 s: 20 CPU seconds); peak memory
is the maximum over processes, not their sum.

>>> timer = StageTimer.started()
>>> total = sum(i * i for i in range(10000))
>>> usage = timer.stop()
>>> usage.wall_seconds >= 0.0 and usage.cpu_seconds >= 0.0 and usage.peak_rss_mib > 0.0
True
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asr.errors import TimingError
from asr.fileio import atomic_write_text

__all__ = [
    "ITERATION_TIMES_FILE",
    "STAGE_TIMES_FILE",
    "STAGE_TIMES_FORMAT",
    "IterationTimes",
    "ResourceUsage",
    "StageTimer",
    "TimedRun",
    "TimingError",
    "read_iteration_times",
    "read_stage_times",
    "record_stage",
    "run_timed",
]

STAGE_TIMES_FILE = "stage_times.json"
ITERATION_TIMES_FILE = "iteration_times.json"
STAGE_TIMES_FORMAT = "asr-stage-times-1"
ITERATION_TIMES_FORMAT = "asr-iteration-times-1"

_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37
# ru_maxrss is in KiB on Linux, in bytes on macOS
_MAXRSS_UNIT_MIB = 1.0 / (1 << 20) if sys.platform == "darwin" else 1.0 / 1024


@dataclass(frozen=True)
class ResourceUsage:
    """What one step cost: ``wall_seconds`` elapsed, ``user_seconds`` + ``sys_seconds`` of
    CPU summed over its processes, ``peak_rss_mib`` the largest resident set of one of them."""

    wall_seconds: float
    user_seconds: float
    sys_seconds: float
    peak_rss_mib: float

    @property
    def cpu_seconds(self) -> float:
        """User plus system CPU seconds."""
        return self.user_seconds + self.sys_seconds

    def to_dict(self) -> dict[str, float]:
        """The JSON form (``cpu_seconds`` included; seconds to 1 ms, MiB to 0.1)."""
        return {
            "wall_seconds": round(self.wall_seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "user_seconds": round(self.user_seconds, 3),
            "sys_seconds": round(self.sys_seconds, 3),
            "peak_rss_mib": round(self.peak_rss_mib, 1),
        }


# ------------------------------------------------------------------------------ process tree
@dataclass(frozen=True)
class _TreeSample:
    user: float
    sys: float
    peak_mib: float


def _clock_ticks() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):
        return 100.0


def _parent_map() -> dict[int, list[int]]:
    """Parent pid -> child pids of every process in ``/proc`` ({} without /proc)."""
    children: dict[int, list[int]] = {}
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return children
    for entry in entries:
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                ppid = int(handle.read().rpartition(")")[2].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    return children


def _child_pids(pid: int) -> list[int]:
    """Children of ``pid`` (zombies included) from ``/proc``; [] without /proc."""
    return _parent_map().get(pid, [])


def _descendants(pid: int) -> list[int]:
    children = _parent_map()
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def _proc_usage(pid: int, ticks: float) -> tuple[float, float, float] | None:
    """``(user, sys, peak MiB)`` of a live process and its waited-for children, or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rpartition(")")[2].split()
        utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
        peak_kib = 0
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    peak_kib = int(line.split()[1])
                    break
    except (OSError, ValueError, IndexError):
        return None  # gone (or a kernel thread) while we looked
    return (utime + cutime) / ticks, (stime + cstime) / ticks, peak_kib / 1024.0


def _tree_sample() -> _TreeSample:
    """CPU seconds and peak memory of this process, its waited-for children and its live
    descendants (with the children those have waited for)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    user = own.ru_utime + children.ru_utime
    system = own.ru_stime + children.ru_stime
    peak = max(own.ru_maxrss, children.ru_maxrss) * _MAXRSS_UNIT_MIB
    ticks = _clock_ticks()
    for pid in _descendants(os.getpid()):
        usage = _proc_usage(pid, ticks)
        if usage is not None:
            user, system, peak = user + usage[0], system + usage[1], max(peak, usage[2])
    return _TreeSample(user=user, sys=system, peak_mib=peak)


class StageTimer:
    """Wall time, CPU time and peak memory of a block, in this process and its descendants.

    Use as a context manager (``with StageTimer() as timer: ...``; then ``timer.usage``) or
    with :meth:`started` and :meth:`stop`. CPU is the difference of two samples of the process
    tree (descendants that exit in between are still counted once their parent has waited
    for them); the peak is the tree's largest high-water mark at :meth:`stop` (see the module
    docstring: a lifetime peak of long-lived processes).
    """

    def __init__(self) -> None:
        self._start_wall: float | None = None
        self._start: _TreeSample | None = None
        self.usage: ResourceUsage | None = None

    @classmethod
    def started(cls) -> StageTimer:
        """A timer already running."""
        timer = cls()
        timer.start()
        return timer

    def start(self) -> None:
        """Start (or restart) measuring."""
        self._start = _tree_sample()
        self._start_wall = time.perf_counter()
        self.usage = None

    def stop(self) -> ResourceUsage:
        """Stop measuring; returns (and keeps in ``usage``) what the block cost."""
        if self._start is None or self._start_wall is None:
            raise TimingError("StageTimer.stop() before start()")
        wall = time.perf_counter() - self._start_wall
        end = _tree_sample()
        self.usage = ResourceUsage(
            wall_seconds=wall,
            user_seconds=max(0.0, end.user - self._start.user),
            sys_seconds=max(0.0, end.sys - self._start.sys),
            peak_rss_mib=end.peak_mib,
        )
        return self.usage

    def __enter__(self) -> StageTimer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# ------------------------------------------------------------------------------ commands
@dataclass(frozen=True)
class TimedRun:
    """A command run by :func:`run_timed`: its exit status (``128 + N`` when signal N ended
    it, as a shell reports it), what it cost, and how many of its descendants outlived their
    parents and were adopted (and counted) here."""

    returncode: int
    usage: ResourceUsage
    num_orphans: int


def _libc() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _get_subreaper(libc: Any) -> int:
    value = ctypes.c_int(0)
    if libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(value), 0, 0, 0) != 0:
        return 0
    return value.value


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


@contextlib.contextmanager
def _forwarded_signals(pid: int) -> Iterator[None]:
    """While the child runs: Ctrl-C/Ctrl-\\ reach it from the terminal (ignored here, as
    ``time`` and ``system()`` do), SIGTERM and SIGHUP sent to us are passed on to it."""
    if sys.platform == "win32" or not _is_main_thread():
        yield
        return

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    saved = {}
    for signum, handler in (
        (signal.SIGINT, signal.SIG_IGN),
        (signal.SIGQUIT, signal.SIG_IGN),
        (signal.SIGTERM, forward),
        (signal.SIGHUP, forward),
    ):
        saved[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def run_timed(
    command: Sequence[str],
    *,
    cwd: str | os.PathLike | None = None,
    orphan_wait_seconds: float = 60.0,
) -> TimedRun:
    """Run ``command`` (no shell) and measure it with every process it starts.

    On Linux this process is a child subreaper while the command runs: a descendant whose
    parent exits first is re-parented here instead of to init, and waited for (at most
    ``orphan_wait_seconds`` after the command itself exits; one still running then is left
    alone and not counted). Use it in a process without other children of its own (it waits
    for the orphans it adopts, and ``asr time-stage`` runs nothing else), and a small one:
    on Linux a child's peak resident size starts from its parent's at the fork. Raises
    :class:`TimingError` when the command cannot be started.
    """
    if not command:
        raise TimingError("no command to run")
    libc = _libc()
    previous_subreaper = 0
    if libc is not None:
        previous_subreaper = _get_subreaper(libc)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    existing = set(_child_pids(os.getpid()))
    start = time.perf_counter()
    try:
        try:
            proc = subprocess.Popen(list(command), cwd=cwd)
        except OSError as err:
            raise TimingError(f"cannot run {command[0]}: {err.strerror or err}") from None
        with _forwarded_signals(proc.pid):
            _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = _exit_code(status)
        end = time.perf_counter()
        user, system, peak_kib, orphans = usage.ru_utime, usage.ru_stime, usage.ru_maxrss, 0
        deadline = end + orphan_wait_seconds
        while True:  # the orphans it left (zombies, or still exiting)
            adopted = [p for p in _child_pids(os.getpid()) if p not in existing]
            if not adopted:
                break
            for pid in adopted:
                with contextlib.suppress(ChildProcessError):
                    done, _, usage = os.wait4(pid, os.WNOHANG)
                    if done:
                        user, system = user + usage.ru_utime, system + usage.ru_stime
                        peak_kib = max(peak_kib, usage.ru_maxrss)
                        orphans += 1
                        end = time.perf_counter()
            if time.perf_counter() > deadline:
                break
            time.sleep(0.02)
    finally:
        if libc is not None:
            libc.prctl(_PR_SET_CHILD_SUBREAPER, previous_subreaper, 0, 0, 0)
    return TimedRun(
        returncode=proc.returncode,
        usage=ResourceUsage(
            wall_seconds=end - start,
            user_seconds=user,
            sys_seconds=system,
            peak_rss_mib=peak_kib * _MAXRSS_UNIT_MIB,
        ),
        num_orphans=orphans,
    )


# ------------------------------------------------------------------------------ JSON files
def _read_json(path: Path, what: str) -> dict | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise TimingError(f"{path}: cannot read {what}: {err.strerror or err}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise TimingError(f"{path}: not a valid {what} ({err.msg}, line {err.lineno})") from None
    if not isinstance(obj, dict):
        raise TimingError(f"{path}: not a valid {what} (not a JSON object)")
    return obj


def _write_json(path: Path, obj: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1) + "\n")


def read_iteration_times(path: str | os.PathLike) -> dict | None:
    """A trainer's ``iteration_times.json`` (``{"format", "unit", "iterations": [...]}``), or
    None when there is none; :class:`TimingError` when it is not valid."""
    path = Path(path)
    obj = _read_json(path, "iteration times file")
    if obj is None:
        return None
    if not isinstance(obj.get("iterations"), list) or not isinstance(obj.get("unit"), str):
        raise TimingError(f"{path}: not a valid iteration times file (no unit or iterations)")
    return obj


class IterationTimes:
    """Per-iteration usage of one training run, kept in ``path`` (``iteration_times.json``).

    ``unit`` names the index (``"iteration"`` for GMM trainers, counted from 0; ``"epoch"``
    for neural ones, from 1). Entries of an earlier run whose index is below ``keep_before``
    are kept (the iterations a resumed run does not repeat); the rest are dropped. The file
    is rewritten atomically after each :meth:`record`, so a killed run leaves the last
    complete version. An unreadable old file is replaced.

    >>> import tempfile, pathlib
    >>> times = IterationTimes(pathlib.Path(tempfile.mkdtemp()) / "iteration_times.json")
    >>> times.record(0, ResourceUsage(1.5, 2.0, 0.25, 300.0))
    >>> [e["iteration"] for e in read_iteration_times(times.path)["iterations"]]
    [0]
    """

    def __init__(
        self, path: str | os.PathLike, *, unit: str = "iteration", keep_before: int = 0
    ) -> None:
        self.path = Path(path)
        self.unit = unit
        self.entries: dict[int, dict] = {}
        try:
            old = read_iteration_times(self.path)
        except TimingError:
            old = None
        if old is not None and old["unit"] == unit:
            for entry in old["iterations"]:
                index = entry.get(unit) if isinstance(entry, dict) else None
                if isinstance(index, int) and index < keep_before:
                    self.entries[index] = entry

    def record(self, index: int, usage: ResourceUsage) -> None:
        """Set the entry of iteration ``index`` and rewrite the file."""
        self.entries[index] = {self.unit: index, **usage.to_dict()}
        _write_json(
            self.path,
            {
                "format": ITERATION_TIMES_FORMAT,
                "unit": self.unit,
                "iterations": [self.entries[k] for k in sorted(self.entries)],
            },
        )

    @contextlib.contextmanager
    def measure(self, index: int) -> Iterator[StageTimer]:
        """Time the block as iteration ``index`` (recorded only when it completes)."""
        timer = StageTimer.started()
        yield timer
        self.record(index, timer.stop())


def read_stage_times(path: str | os.PathLike) -> dict:
    """A recipe's ``stage_times.json``; an empty one (``stages`` = {}) when there is none;
    :class:`TimingError` when it is not valid."""
    path = Path(path)
    obj = _read_json(path, "stage times file")
    if obj is None:
        return {"format": STAGE_TIMES_FORMAT, "stages": {}}
    if not isinstance(obj.get("stages"), dict):
        raise TimingError(f"{path}: not a valid stage times file (no 'stages' object)")
    return obj


def record_stage(
    path: str | os.PathLike,
    name: str,
    *,
    stage: int,
    usage: ResourceUsage,
    extra: Mapping[str, Any] | None = None,
    train_data: Mapping[str, Any] | None = None,
    trainings: Mapping[str, Any] | None = None,
) -> dict:
    """Merge stage ``name``'s entry (stage number, ``usage``, ``extra`` fields, the time it
    finished) into the stage times file at ``path`` and write it atomically: other stages'
    entries are kept, an earlier entry of this stage is replaced (its latest run counts).
    ``train_data`` (the training set's size) and ``trainings`` (model name -> its
    ``iteration_times.json``) replace the file's top-level entries of those names when given.
    Returns the new contents; :class:`TimingError` when the old file is not valid."""
    path = Path(path)
    times = read_stage_times(path)
    entry = {
        "stage": int(stage),
        **usage.to_dict(),
        **dict(extra or {}),
        "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    stages = dict(times["stages"])
    stages[name] = entry
    times["format"] = STAGE_TIMES_FORMAT
    times["stages"] = dict(sorted(stages.items(), key=lambda kv: _stage_number(kv[1])))
    if train_data is not None:
        times["train_data"] = dict(train_data)
    if trainings is not None:
        times["trainings"] = {k: trainings[k] for k in sorted(trainings)}
    _write_json(path, times)
    return times


def _stage_number(entry: object) -> float:
    if isinstance(entry, dict) and isinstance(entry.get("stage"), int | float):
        return float(entry["stage"])
    return float("inf")
