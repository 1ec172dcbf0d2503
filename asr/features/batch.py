"""Features for a whole Kaldi data directory, in parallel jobs (Kaldi's ``make_mfcc.sh --nj``).

:func:`compute_data_dir_features` splits the utterances of a data directory
into ``num_jobs`` jobs (by speaker, like ``split_data.sh``:
:func:`asr.parallel.split_by_speaker`), runs them on any
:class:`concurrent.futures.Executor` (a local process pool by default), and
writes into ``out_dir``:

* ``raw_<type>.<job>.ark`` / ``.scp`` -- one binary archive per job (job = 1..N);
* ``feats.scp``        -- all utterances, sorted, pointing into the job archives;
* ``cmvn.ark``/``cmvn.scp`` -- per-speaker CMVN stats, ``(2, dim + 1)`` float64
  (``compute-cmvn-stats --spk2utt``);
* ``utt2num_frames``, ``feature_config.json`` (how to recompute the features),
  and ``failed.txt`` (``<utt_id> <reason>``) when some utterances failed.

As Kaldi does, ``feats.scp``, ``cmvn.scp`` and ``utt2num_frames`` are also
copied into the data directory (they hold absolute paths). The data
directory's other files are left alone: utterances that failed are missing
from ``feats.scp`` only. An ``out_dir`` belongs to one data directory. The
work is skipped when every output is newer than the data directory and its
audio files and ``feature_config.json`` equals the requested config.

>>> from asr.features import MfccConfig  # doctest: +SKIP
>>> summary = compute_data_dir_features(  # doctest: +SKIP
...     "data/yesno/train", "data/yesno/train/data", config=MfccConfig(sampling_rate=8000),
...     num_jobs=2)
>>> summary.num_utterances, summary.dim  # doctest: +SKIP
(30, 13)
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import os
import queue as queue_module
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asr.audio import read_audio
from asr.data import read_data_dir
from asr.errors import AsrError, FeatureError
from asr.features.extractors import compute_features, config_to_dict, feature_dim
from asr.features.functional import accumulate_cmvn_stats, compute_cmvn_stats
from asr.features.io import write_matrices
from asr.fileio import atomic_write_text, is_up_to_date, touch
from asr.parallel import process_pool, split_by_speaker

__all__ = [
    "FeatureJobSummary",
    "compute_data_dir_features",
]

#: Exceptions that mark one utterance as failed (reported and skipped) instead of the run.
_UTTERANCE_ERRORS = (AsrError, OSError, ValueError, RuntimeError)

# Set in worker processes of the default pool: (job_index, num_utterances_done) messages.
_PROGRESS_QUEUE = None


@dataclass(frozen=True)
class FeatureJobSummary:
    """What :func:`compute_data_dir_features` did.

    ``num_utterances``/``num_frames``: utterances with features and their
    total frames; ``failed``: ``(utt_id, reason)`` pairs; ``skipped``: the
    outputs were up to date and nothing was computed.
    """

    feature_type: str
    dim: int
    num_utterances: int
    num_frames: int
    num_jobs: int
    feats_scp: Path
    cmvn_scp: Path
    failed: tuple[tuple[str, str], ...] = ()
    skipped: bool = False


@dataclass(frozen=True)
class _JobResult:
    job_index: int
    scp_path: Path
    num_frames: dict[str, int] = field(default_factory=dict)
    cmvn_stats: dict[str, np.ndarray] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- one job


def _set_progress_queue(progress_queue) -> None:
    """Set up a worker of the default pool: report progress to ``progress_queue``."""
    global _PROGRESS_QUEUE
    _PROGRESS_QUEUE = progress_queue


def _one_line(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())


def run_feature_job(
    *,
    job_index: int,
    utterances: Sequence[tuple[str, str]],
    config,
    ark_path: Path,
    scp_path: Path,
    on_utterance: Callable[[int], None] | None = None,
) -> _JobResult:
    """Compute features of ``(utt_id, audio_path)`` pairs into one ark/scp pair.

    A failing utterance is recorded with its reason and skipped. Runs in a
    worker process; ``on_utterance(1)`` (in-process) or the worker's progress
    queue is told about every utterance done.
    """
    result = _JobResult(job_index=job_index, scp_path=Path(scp_path))

    def report() -> None:
        if on_utterance is not None:
            on_utterance(1)
        elif _PROGRESS_QUEUE is not None:
            _PROGRESS_QUEUE.put((job_index, 1))

    def items():
        for utt_id, audio_path in utterances:
            try:
                samples, rate = read_audio(audio_path, sampling_rate=config.sampling_rate)
                feats = compute_features(samples, rate, config)
                if feats.shape[0] == 0:
                    raise FeatureError(
                        f"{audio_path}: {samples.size} samples is shorter than one frame "
                        f"({config.frame_length} samples)"
                    )
            except _UTTERANCE_ERRORS as err:
                result.failed[utt_id] = _one_line(err)
                report()
                continue
            result.num_frames[utt_id] = int(feats.shape[0])
            result.cmvn_stats[utt_id] = compute_cmvn_stats(feats)
            report()
            yield utt_id, feats

    write_matrices(items(), ark_path=ark_path, scp_path=scp_path)
    return result


# --------------------------------------------------------------------------- running jobs


def _run_jobs(
    jobs: list[dict],
    *,
    executor: cf.Executor | None,
    progress: Callable[[int], None] | None,
) -> list[_JobResult]:
    if executor is None and len(jobs) == 1:
        return [run_feature_job(**jobs[0], on_utterance=progress)]
    own_executor = None
    progress_queue = None
    if executor is None:
        progress_queue = (
            multiprocessing.get_context("spawn").Queue() if progress is not None else None
        )
        # workers fork from a server that has imported the front-end once
        own_executor = executor = process_pool(
            len(jobs),
            initializer=_set_progress_queue,
            initargs=(progress_queue,),
            preload=[__name__],
        )
    sizes = {job["job_index"]: len(job["utterances"]) for job in jobs}
    reported = dict.fromkeys(sizes, 0)

    def tell(job_index: int, count: int) -> None:
        count = min(count, sizes[job_index] - reported[job_index])
        if count > 0 and progress is not None:
            reported[job_index] += count
            progress(count)

    def drain() -> None:
        while progress_queue is not None:
            try:
                job_index, count = progress_queue.get_nowait()
            except queue_module.Empty:
                return
            tell(job_index, count)

    results: dict[int, _JobResult] = {}
    futures: dict[cf.Future, int] = {}
    try:
        for job in jobs:
            futures[executor.submit(run_feature_job, **job)] = job["job_index"]
        pending = set(futures)
        while pending:
            done, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
            drain()
            for future in done:
                job_index = futures[future]
                results[job_index] = future.result()
                tell(job_index, sizes[job_index])
    except BaseException:
        for future in futures:
            future.cancel()
        raise
    finally:
        if own_executor is not None:
            own_executor.shutdown(wait=True, cancel_futures=True)
        if progress_queue is not None:
            progress_queue.close()
    return [results[job["job_index"]] for job in jobs]


# --------------------------------------------------------------------------- the step


def _feature_type(config) -> str:
    return str(config_to_dict(config)["type"])


def _config_json(config) -> str:
    return json.dumps(config_to_dict(config), indent=2, sort_keys=True) + "\n"


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            key, _, value = line.strip().partition(" ")
            pairs.append((key, value.strip()))
    return pairs


def _up_to_date(
    data_dir: Path, out_dir: Path, outputs: list[Path], inputs: list[Path], config
) -> bool:
    if not is_up_to_date(outputs, inputs):
        return False
    try:
        if (out_dir / "feature_config.json").read_text(encoding="utf-8") != _config_json(config):
            return False
        arks = {value.rsplit(":", 1)[0] for _, value in _read_pairs(out_dir / "feats.scp")}
        return all(os.path.exists(ark) for ark in arks) and (
            (data_dir / "feats.scp").read_bytes() == (out_dir / "feats.scp").read_bytes()
        )
    except OSError:
        return False


def _summary_from_disk(out_dir: Path, config) -> FeatureJobSummary:
    frames = _read_pairs(out_dir / "utt2num_frames")
    failed_path = out_dir / "failed.txt"
    failed = tuple(_read_pairs(failed_path)) if failed_path.exists() else ()
    num_jobs = len(list(out_dir.glob(f"raw_{_feature_type(config)}.*.ark")))
    return FeatureJobSummary(
        feature_type=_feature_type(config),
        dim=feature_dim(config),
        num_utterances=len(frames),
        num_frames=sum(int(n) for _, n in frames),
        num_jobs=num_jobs,
        feats_scp=out_dir / "feats.scp",
        cmvn_scp=out_dir / "cmvn.scp",
        failed=failed,
        skipped=True,
    )


def _remove_stale_job_files(out_dir: Path, feature_type: str, num_jobs: int) -> None:
    pattern = re.compile(rf"^raw_{re.escape(feature_type)}\.(\d+)\.(ark|scp)$")
    for path in out_dir.iterdir():
        match = pattern.match(path.name)
        if match and int(match.group(1)) > num_jobs:
            path.unlink()


def compute_data_dir_features(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    config,
    num_jobs: int = 1,
    executor: cf.Executor | None = None,
    progress: Callable[[int], None] | None = None,
) -> FeatureJobSummary:
    """Compute features and per-speaker CMVN stats for every utterance of ``data_dir``.

    ``config``: a front-end config (``MfccConfig``, ``FbankConfig``, ``LpcConfig``,
    ``LpccConfig``); audio at another rate is resampled to ``config.sampling_rate``.
    ``num_jobs``: Kaldi's ``--nj``. ``executor``: where jobs run (default: a local
    process pool when ``num_jobs > 1``, this process otherwise). ``progress``:
    called with the number of utterances just finished (e.g. ``tqdm.update``).
    Failing utterances are listed in ``out_dir/failed.txt`` and skipped;
    :class:`FeatureError` is raised when every utterance fails.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if num_jobs < 1:
        raise FeatureError(f"num_jobs must be >= 1, got {num_jobs}")
    if (data_dir / "segments").exists():
        raise FeatureError(f"{data_dir / 'segments'}: data dirs with segments are not supported")
    data = read_data_dir(data_dir, check_audio=False)
    feature_type = _feature_type(config)
    dim = feature_dim(config)

    outputs = [
        out_dir / name
        for name in ("feats.scp", "cmvn.ark", "cmvn.scp", "utt2num_frames", "feature_config.json")
    ]
    if out_dir.resolve() != data_dir.resolve():
        outputs += [data_dir / name for name in ("feats.scp", "cmvn.scp", "utt2num_frames")]
    inputs = [data_dir / name for name in ("wav.scp", "utt2spk", "spk2utt")]
    inputs += [Path(path) for path in data.wav_scp.values()]
    if _up_to_date(data_dir, out_dir, outputs, inputs, config):
        return _summary_from_disk(out_dir, config)

    out_dir.mkdir(parents=True, exist_ok=True)
    abs_out = out_dir.absolute()
    split = split_by_speaker(data.utt_ids, data.utt2spk, num_jobs)
    jobs = [
        {
            "job_index": index,
            "utterances": [(utt_id, data.wav_scp[utt_id]) for utt_id in utts],
            "config": config,
            "ark_path": abs_out / f"raw_{feature_type}.{index}.ark",
            "scp_path": abs_out / f"raw_{feature_type}.{index}.scp",
        }
        for index, utts in enumerate(split, start=1)
    ]
    results = _run_jobs(jobs, executor=executor, progress=progress)

    num_frames: dict[str, int] = {}
    stats: dict[str, np.ndarray] = {}
    failed: dict[str, str] = {}
    scp_entries: dict[str, str] = {}
    for result in results:
        num_frames.update(result.num_frames)
        stats.update(result.cmvn_stats)
        failed.update(result.failed)
        scp_entries.update(_read_pairs(result.scp_path))
    failed_lines = "".join(
        f"{utt_id} {failed[utt_id]}\n" for utt_id in data.utt_ids if utt_id in failed
    )
    if failed:
        atomic_write_text(out_dir / "failed.txt", failed_lines)
    elif (out_dir / "failed.txt").exists():
        (out_dir / "failed.txt").unlink()
    if not num_frames:
        first = next(iter(failed.items()))
        raise FeatureError(
            f"{data_dir}: features failed for all {len(failed)} utterances "
            f"(see {out_dir / 'failed.txt'}); first: {first[0]}: {first[1]}"
        )

    done = [utt_id for utt_id in data.utt_ids if utt_id in num_frames]
    feats_scp_text = "".join(f"{utt_id} {scp_entries[utt_id]}\n" for utt_id in done)
    frames_text = "".join(f"{utt_id} {num_frames[utt_id]}\n" for utt_id in done)
    speaker_stats = [
        (spk_id, accumulate_cmvn_stats(stats[u] for u in utts if u in stats))
        for spk_id, utts in data.spk2utt.items()
        if any(u in stats for u in utts)
    ]
    write_matrices(speaker_stats, ark_path=out_dir / "cmvn.ark", scp_path=out_dir / "cmvn.scp")
    cmvn_scp_text = (out_dir / "cmvn.scp").read_text(encoding="utf-8")
    atomic_write_text(out_dir / "utt2num_frames", frames_text)
    atomic_write_text(out_dir / "feats.scp", feats_scp_text)
    if out_dir.resolve() != data_dir.resolve():
        atomic_write_text(data_dir / "utt2num_frames", frames_text)
        atomic_write_text(data_dir / "cmvn.scp", cmvn_scp_text)
        atomic_write_text(data_dir / "feats.scp", feats_scp_text)
    _remove_stale_job_files(out_dir, feature_type, len(jobs))
    # Written last: its presence with this content marks a complete run for this config.
    atomic_write_text(out_dir / "feature_config.json", _config_json(config))
    touch(outputs)  # all newer than the inputs now, rewritten or not
    return FeatureJobSummary(
        feature_type=feature_type,
        dim=dim,
        num_utterances=len(done),
        num_frames=sum(num_frames.values()),
        num_jobs=len(jobs),
        feats_scp=out_dir / "feats.scp",
        cmvn_scp=out_dir / "cmvn.scp",
        failed=tuple((utt_id, failed[utt_id]) for utt_id in data.utt_ids if utt_id in failed),
        skipped=False,
    )
