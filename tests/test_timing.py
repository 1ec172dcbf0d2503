"""asr.timing and ``asr time-stage``: CPU of busy (and orphaned, and still running) children,
peak memory of an allocating child, per-iteration files that survive a resume, stage files
merged and written atomically, and the recipes' stage_times.json (yesno, real stages)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import wave
from pathlib import Path

import pytest

from asr.cli.main import main
from asr.timing import (
    IterationTimes,
    ResourceUsage,
    StageTimer,
    TimingError,
    read_iteration_times,
    read_stage_times,
    record_stage,
    run_timed,
)

REPO = Path(__file__).resolve().parent.parent
LINUX = sys.platform.startswith("linux")
# CPU times from /proc are in clock ticks (1/100 s): a sum over a few processes may lose a
# tick each; getrusage/wait4 are exact to the microsecond.
TICK_SLACK = 0.05
BURN_SECONDS = 0.5


def burn_code(seconds: float) -> str:
    """Python code that spins until its own process has used ``seconds`` of CPU."""
    return (
        "import time\n"
        "t = time.process_time()\n"
        f"while time.process_time() - t < {seconds}:\n"
        "    pass\n"
    )


# ------------------------------------------------------------------------------ run_timed
def test_run_timed_counts_the_cpu_of_a_busy_child():
    run = run_timed([sys.executable, "-c", burn_code(BURN_SECONDS)])
    assert run.returncode == 0
    assert run.usage.cpu_seconds >= BURN_SECONDS
    assert run.usage.cpu_seconds == pytest.approx(run.usage.user_seconds + run.usage.sys_seconds)
    assert run.usage.wall_seconds > 0.0


@pytest.mark.skipif(not LINUX, reason="child subreapers are Linux's")
def test_run_timed_counts_a_grandchild_its_parent_left_behind():
    """The fork server of a process pool outlives the `asr` command that started it: an
    orphan is adopted, waited for and counted (without the subreaper it would go to init)."""
    code = textwrap.dedent(f"""
        import subprocess, sys
        subprocess.Popen([sys.executable, "-c", {burn_code(BURN_SECONDS)!r}])
    """)  # the child exits at once, its child burns on
    run = run_timed([sys.executable, "-c", code])
    assert run.returncode == 0
    assert run.num_orphans == 1
    assert run.usage.cpu_seconds >= BURN_SECONDS


def test_run_timed_reports_the_exit_status_and_a_signal_as_a_shell_does():
    assert run_timed([sys.executable, "-c", "raise SystemExit(3)"]).returncode == 3
    killed = run_timed([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), 9)"])
    assert killed.returncode == 128 + 9
    with pytest.raises(TimingError, match="cannot run"):
        run_timed(["/nonexistent/command"])


def test_peak_memory_of_a_child_that_allocates_200_mb_exceeds_one_that_does_not(tmp_path):
    """Through `asr time-stage` in a process of its own: a child's ru_maxrss starts from its
    parent's resident size at the fork (Linux), so the runner must be small -- as the
    recipes' is -- not this test process, which may hold torch."""
    out = tmp_path / "stage_times.json"
    for name, code in (("big", "b = b'x' * (200 << 20)"), ("small", "pass")):  # big first
        subprocess.run(
            [sys.executable, "-m", "asr.cli.main", "time-stage", "--stage", "1", "--name", name,
             "--out", str(out), "--", sys.executable, "-c", code],
            check=True, capture_output=True,
        )  # fmt: skip
    stages = json.loads(out.read_text())["stages"]
    big, small = stages["big"]["peak_rss_mib"], stages["small"]["peak_rss_mib"]
    assert small > 1.0
    assert big - small >= 150.0  # 200 MiB of written bytes (the floors are the same)


# ------------------------------------------------------------------------------ StageTimer
def test_stage_timer_counts_a_child_that_is_still_running():
    """A pool worker is only waited for when the pool shuts down: the timer must read it live."""
    proc = subprocess.Popen(
        [sys.executable, "-c", burn_code(BURN_SECONDS) + "print('done', flush=True)\n"
         "import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with StageTimer() as timer:
            assert proc.stdout.readline() == "done\n"
        assert timer.usage.cpu_seconds >= BURN_SECONDS - TICK_SLACK
        assert proc.poll() is None  # measured while alive, not after a wait
    finally:
        proc.stdin.close()
        proc.wait()


def test_stage_timer_counts_the_workers_of_a_process_pool():
    """The GMM trainers' case: work done in a live asr.parallel pool worker (one worker, so
    its own process_time before and after is the oracle)."""
    from asr.parallel import process_pool

    with process_pool(1) as pool:
        pool.submit(int).result()  # the worker is up
        with StageTimer() as timer:
            before = pool.submit(time.process_time).result()
            pool.submit(sum, range(20_000_000)).result()
            after = pool.submit(time.process_time).result()
    assert after - before > 0.05
    assert timer.usage.cpu_seconds >= (after - before) - TICK_SLACK


def test_stage_timer_measures_this_process_and_needs_a_start():
    timer = StageTimer.started()
    t = time.process_time()
    while time.process_time() - t < 0.2:
        pass
    usage = timer.stop()
    assert usage.cpu_seconds >= 0.2
    assert usage.peak_rss_mib > 1.0
    with pytest.raises(TimingError, match="before start"):
        StageTimer().stop()


# ------------------------------------------------------------------------------ files
def _usage(seconds: float) -> ResourceUsage:
    return ResourceUsage(
        wall_seconds=seconds, user_seconds=seconds / 2, sys_seconds=0.25, peak_rss_mib=100.0
    )


def test_iteration_times_keep_the_iterations_a_resumed_run_does_not_repeat(tmp_path):
    path = tmp_path / "mono" / "iteration_times.json"
    first = IterationTimes(path)
    for index in range(4):
        first.record(index, _usage(1.0 + index))
    # killed during iteration 4, the checkpoint says 2 (say): iterations 2, 3 are redone
    resumed = IterationTimes(path, keep_before=2)
    assert sorted(resumed.entries) == [0, 1]
    with resumed.measure(2):
        pass
    saved = read_iteration_times(path)
    assert saved["unit"] == "iteration"
    assert [e["iteration"] for e in saved["iterations"]] == [0, 1, 2]
    assert saved["iterations"][1]["wall_seconds"] == 2.0  # the earlier run's entry
    assert saved["iterations"][2]["wall_seconds"] < 1.0  # the new one
    assert set(saved["iterations"][0]) == {
        "iteration", "wall_seconds", "cpu_seconds", "user_seconds", "sys_seconds",
        "peak_rss_mib",
    }  # fmt: skip
    assert IterationTimes(path).entries == {}  # a fresh start drops them all
    assert IterationTimes(path, unit="epoch", keep_before=9).entries == {}  # another unit


def test_a_failed_iteration_is_not_recorded(tmp_path):
    times = IterationTimes(tmp_path / "iteration_times.json", unit="epoch")
    with pytest.raises(RuntimeError), times.measure(1):
        raise RuntimeError("killed")
    assert not (tmp_path / "iteration_times.json").exists()


def test_record_stage_merges_stages_and_replaces_a_rerun_one(tmp_path):
    path = tmp_path / "exp" / "stage_times.json"
    record_stage(path, "mono", stage=5, usage=_usage(10.0), train_data={"hours": 0.5})
    record_stage(path, "data", stage=0, usage=_usage(1.0))
    times = record_stage(
        path, "mono", stage=5, usage=_usage(3.0), extra={"models_trained": ["mono"]}
    )
    assert list(times["stages"]) == ["data", "mono"]  # in stage order
    assert times["stages"]["mono"]["wall_seconds"] == 3.0  # the latest run
    assert times["stages"]["mono"]["models_trained"] == ["mono"]
    assert times["stages"]["data"]["wall_seconds"] == 1.0
    assert times["train_data"] == {"hours": 0.5}  # kept when not given again
    assert read_stage_times(path) == times
    entry = times["stages"]["mono"]
    assert entry["cpu_seconds"] == pytest.approx(entry["user_seconds"] + entry["sys_seconds"])


def test_record_stage_writes_atomically_and_rejects_a_corrupt_file(tmp_path):
    path = tmp_path / "stage_times.json"
    record_stage(path, "data", stage=0, usage=_usage(1.0))
    before = path.read_bytes()
    with pytest.raises(TypeError):  # fails while writing: the old file stays whole
        record_stage(path, "lang", stage=2, usage=_usage(1.0), extra={"bad": object()})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["stage_times.json"]  # no temporary left
    path.write_bytes(before[: len(before) // 2])  # truncated by something else
    with pytest.raises(TimingError, match=r"stage_times\.json: not a valid stage times file"):
        record_stage(path, "lang", stage=2, usage=_usage(1.0))
    assert read_stage_times(tmp_path / "missing.json") == {
        "format": "asr-stage-times-1", "stages": {}
    }  # fmt: skip


# ------------------------------------------------------------------------------ the CLI
def _write_wav(path: Path, num_samples: int, rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(bytes(2 * num_samples))


def _time_stage(*argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["time-stage", *map(str, argv)])
    return rc, err.getvalue()


def test_time_stage_records_the_stage_the_data_size_and_the_trainings(tmp_path):
    from asr.data import DataDir, write_data_dir

    wavs = {f"s1-u{i}": tmp_path / f"u{i}.wav" for i in range(2)}
    for i, path in enumerate(wavs.values()):
        _write_wav(path, 8000 * (i + 1))  # 1 s and 2 s
    data = tmp_path / "data" / "train"
    write_data_dir(
        DataDir(wav_scp={u: str(p) for u, p in wavs.items()}, text=dict.fromkeys(wavs, "A"),
                utt2spk=dict.fromkeys(wavs, "s1")),
        data,
    )  # fmt: skip
    exp = tmp_path / "exp"
    IterationTimes(exp / "old" / "iteration_times.json").record(0, _usage(1.0))
    time.sleep(0.05)
    out = exp / "stage_times.json"
    code = (
        "from asr.timing import IterationTimes, ResourceUsage\n"
        f"IterationTimes({str(exp / 'mono' / 'iteration_times.json')!r}).record(0, "
        "ResourceUsage(1.0, 1.0, 0.0, 10.0))\n"
    )  # a "training" that writes its iteration times
    rc, err = _time_stage("--stage", 5, "--name", "mono", "--out", out, "--data-dir", data,
                          "--", sys.executable, "-c", code)  # fmt: skip
    assert rc == 0, err
    assert "stage 5 (mono):" in err and "s CPU" in err
    times = json.loads(out.read_text())
    assert times["train_data"]["num_utterances"] == 2
    assert times["train_data"]["seconds"] == 3.0  # exact: from the WAV headers
    assert times["train_data"]["hours"] == round(3.0 / 3600, 6)
    assert times["stages"]["mono"]["stage"] == 5
    assert times["stages"]["mono"]["models_trained"] == ["mono"]  # "old" was written before
    assert sorted(times["trainings"]) == ["mono", "old"]
    assert times["trainings"]["mono"]["unit"] == "iteration"

    rc, err = _time_stage("--stage", 6, "--out", out, "--", sys.executable, "-c",
                          "raise SystemExit(4)")  # fmt: skip
    assert rc == 4 and "not recorded" in err
    assert json.loads(out.read_text())["stages"].keys() == {"mono"}
    rc, err = _time_stage("--stage", 6, "--out", out)
    assert rc == 2 and "no COMMAND" in err


def _recipe_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    shutil.copytree(REPO / "recipes", root / "recipes")
    return root


def _run_recipe(root: Path, corpus: Path, *options) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("ASR_TIMED_STAGE", None)
    return subprocess.run(
        ["bash", str(root / "recipes/yesno/run.sh"), "--corpus-dir", str(corpus),
         *map(str, options)],
        cwd=root, env=env, capture_output=True, text=True,
    )  # fmt: skip


def test_recipe_stage_times_merge_across_runs_and_a_failed_stage_stops_the_recipe(
    yesno_dir, tmp_path
):
    """The cheap yesno stages (0: data, 2: lang), run as a resumed recipe would: separately,
    one of them twice; then a stage that fails (decoding without a model)."""
    root = _recipe_root(tmp_path)
    path = root / "exp/yesno/stage_times.json"
    first = _run_recipe(root, yesno_dir, "--stage", 0, "--stop-stage", 0)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("] done") == 1  # once, from the run that was started
    _run_recipe(root, yesno_dir, "--stage", 2, "--stop-stage", 2).check_returncode()
    times = json.loads(path.read_text())
    times["stages"]["lang"]["wall_seconds"] = -1.0  # marks: replaced by the rerun?
    times["stages"]["other"] = {"stage": 9, "wall_seconds": -2.0}  # kept by it?
    path.write_text(json.dumps(times))
    _run_recipe(root, yesno_dir, "--stage", 2, "--stop-stage", 2).check_returncode()
    times = json.loads(path.read_text())
    assert list(times["stages"]) == ["data", "lang", "other"]
    assert times["stages"]["lang"]["stage"] == 2 and times["stages"]["data"]["stage"] == 0
    assert times["stages"]["lang"]["wall_seconds"] > 0
    assert times["stages"]["other"] == {"stage": 9, "wall_seconds": -2.0}
    assert times["train_data"]["num_utterances"] == 30
    assert 0.04 < times["train_data"]["hours"] < 0.06  # 30 files of ~6 s

    failed = _run_recipe(root, yesno_dir, "--stage", 6, "--stop-stage", 7)
    assert failed.returncode != 0
    assert "stage 6 (mono_decode) failed" in failed.stderr
    assert "] done" not in failed.stderr
    assert json.loads(path.read_text())["stages"].keys() == {"data", "lang", "other"}


@pytest.mark.slow
def test_yesno_recipe_writes_stage_times_with_every_stage_and_the_iterations(yesno_dir, tmp_path):
    """recipes/yesno/run.sh stages 0-5 (a 4-iteration monophone model, 2 jobs: a process
    pool whose fork server outlives `asr train mono`)."""
    root = _recipe_root(tmp_path)
    conf = root / "recipes/yesno/conf/mono.conf"
    conf.write_text(conf.read_text() + "--num-iters=4\n--max-iter-inc=3\n")
    run = _run_recipe(root, yesno_dir, "--stop-stage", 5, "--nj", 2)
    assert run.returncode == 0, run.stderr[-3000:]
    times = json.loads((root / "exp/yesno/stage_times.json").read_text())
    assert times["format"] == "asr-stage-times-1"
    assert list(times["stages"]) == ["data", "features", "lang", "lm", "mono_graph", "mono"]
    for name, entry in times["stages"].items():
        assert entry["wall_seconds"] > 0 and entry["cpu_seconds"] > 0, name
        assert entry["peak_rss_mib"] > 10, name
        assert entry["cpu_seconds"] == pytest.approx(
            entry["user_seconds"] + entry["sys_seconds"], abs=2e-3
        )
    mono = times["stages"]["mono"]
    assert mono["stage"] == 5 and mono["models_trained"] == ["mono"]
    assert mono["orphans_adopted"] >= 1  # the pool's fork server
    iterations = times["trainings"]["mono"]["iterations"]
    assert [e["iteration"] for e in iterations] == [0, 1, 2, 3]
    assert sum(e["wall_seconds"] for e in iterations) < mono["wall_seconds"]
    assert sum(e["cpu_seconds"] for e in iterations) < mono["cpu_seconds"]
    assert max(e["peak_rss_mib"] for e in iterations) <= mono["peak_rss_mib"]
    assert times["train_data"]["num_utterances"] == 30
    saved = json.loads((root / "exp/yesno/mono/iteration_times.json").read_text())
    assert saved["iterations"] == iterations
