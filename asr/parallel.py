"""Data-parallel jobs: the one place that splits work by speaker and builds process pools.

Every data-parallel step (features, alignment, GMM statistics, decoding, transcription) is a
list of independent jobs, split by speaker as Kaldi's ``split_data.sh`` does, run by
:func:`map_jobs` on a :class:`concurrent.futures.Executor`. A caller may pass any executor
(a thread pool in tests, a distributed executor on a cluster); with none, :func:`job_executor`
builds the default one: a process pool whose workers run one torch/BLAS thread each (Kaldi's
jobs are single-threaded; ``--nj`` runs several), or no pool at all for one job.

>>> utt2spk = {"a1": "a", "a2": "a", "b1": "b", "c1": "c"}
>>> split_by_speaker(sorted(utt2spk), utt2spk, 2)
[('a1', 'a2'), ('b1', 'c1')]
>>> with job_executor(1) as executor:
...     map_jobs(len, [("x", "y"), ("z",)], executor)
[2, 1]
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from asr.errors import AsrError

__all__ = [
    "group_by_speaker",
    "job_executor",
    "map_jobs",
    "process_pool",
    "single_torch_thread",
    "split_by_speaker",
    "split_mapping",
]


def group_by_speaker(utt_ids: Sequence[str], utt2spk: Mapping[str, str]) -> list[list[str]]:
    """Utterances grouped by speaker, groups in order of first appearance; an utterance
    missing from ``utt2spk`` is its own speaker."""
    speakers: dict[str, list[str]] = {}
    for utt_id in utt_ids:
        speakers.setdefault(utt2spk.get(utt_id, utt_id), []).append(utt_id)
    return list(speakers.values())


def split_by_speaker(
    utt_ids: Sequence[str], utt2spk: Mapping[str, str], num_jobs: int
) -> list[tuple[str, ...]]:
    """Split utterances into at most ``num_jobs`` non-empty jobs, whole speakers per job where
    there are enough speakers (Kaldi's ``split_data.sh``), else contiguous utterance blocks;
    jobs are balanced by utterance count."""
    if num_jobs < 1:
        raise AsrError(f"num_jobs must be >= 1, got {num_jobs}")
    ordered = list(utt_ids)
    groups = group_by_speaker(ordered, utt2spk)
    if len(groups) < num_jobs:  # too few speakers: split by utterance
        groups = [[u] for u in ordered]
    num_jobs = min(num_jobs, len(groups)) or 1
    total = sum(len(g) for g in groups)
    jobs: list[list[str]] = [[] for _ in range(num_jobs)]
    done = 0
    for group in groups:  # contiguous, balanced by utterance count
        index = min(num_jobs - 1, done * num_jobs // max(total, 1))
        jobs[index].extend(group)
        done += len(group)
    return [tuple(j) for j in jobs if j]


def split_mapping(mapping: Mapping[str, Any], split: Sequence[Sequence[str]]) -> list[dict]:
    """``mapping`` restricted to each job's utterances (those it has)."""
    return [{u: mapping[u] for u in ids if u in mapping} for ids in split]


def map_jobs(fn: Callable, tasks: Sequence, executor: concurrent.futures.Executor | None) -> list:
    """``[fn(t) for t in tasks]``, on ``executor`` when given (results in task order)."""
    if executor is None or len(tasks) <= 1:
        return [fn(t) for t in tasks]
    return list(executor.map(fn, tasks))


_THREADS_LOCK = threading.Lock()
_threads_state = {"depth": 0, "saved": 1}


@contextlib.contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run the body with one torch intra-op thread, then restore the caller's setting
    (nested and concurrent uses share one save/restore).

    A job is the unit of parallelism: its torch calls are small, and with more intra-op
    threads than free cores the extra threads mostly spin (AN4 log-likelihoods on a busy
    2-core machine: 2 threads cost ~7x the CPU of 1)."""
    import torch

    with _THREADS_LOCK:
        if _threads_state["depth"] == 0:
            _threads_state["saved"] = torch.get_num_threads()
            torch.set_num_threads(1)
        _threads_state["depth"] += 1
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _threads_state["depth"] -= 1
            if _threads_state["depth"] == 0:
                torch.set_num_threads(_threads_state["saved"])


def _init_worker(initializer: Callable | None, initargs: tuple) -> None:
    """Every default worker: one torch thread (``num_jobs`` processes share the cores; with
    torch's default they oversubscribe them and small tensor ops wait on OpenMP barriers,
    ~20x slower GMM scoring measured), then the caller's initializer. NumPy's BLAS keeps its
    default: fMLLR estimation sums in BLAS, and a different thread count would change the
    last bits of its results (and so the recipes' outputs)."""
    import torch

    torch.set_num_threads(1)
    if initializer is not None:
        initializer(*initargs)


def process_pool(
    num_workers: int,
    *,
    initializer: Callable | None = None,
    initargs: tuple = (),
    preload: Sequence[str] = (),
) -> concurrent.futures.ProcessPoolExecutor:
    """The default executor: ``num_workers`` processes with one torch thread each.

    Workers fork from a fork server that has imported ``preload`` once (plain ``fork`` is
    unsafe once torch has run in this process; ``spawn``, used where there is no fork
    server, imports everything again in every worker)."""
    if num_workers < 1:
        raise AsrError(f"num_workers must be >= 1, got {num_workers}")
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        if preload:
            context.set_forkserver_preload(list(preload))
    else:
        context = multiprocessing.get_context("spawn")
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=num_workers,
        mp_context=context,
        initializer=_init_worker,
        initargs=(initializer, tuple(initargs)),
    )


@contextlib.contextmanager
def job_executor(
    num_jobs: int,
    executor: concurrent.futures.Executor | None = None,
    **pool_options: Any,
) -> Iterator[concurrent.futures.Executor | None]:
    """The executor for ``num_jobs`` jobs: the caller's ``executor`` when given (left
    running), else a :func:`process_pool` for two or more jobs (shut down on exit), else
    None (run in this process)."""
    if executor is not None:
        yield executor
        return
    if num_jobs <= 1:
        yield None
        return
    pool = process_pool(num_jobs, **pool_options)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def cpu_count() -> int:
    """Cores this process may use (the default number of jobs/workers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
