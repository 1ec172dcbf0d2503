"""Batch transcription of audio files with a model bundle (what ``asr transcribe`` runs).

The files are grouped by speaker (with a speaker map; else one file a group); each group is
one job: a process (or any :class:`concurrent.futures.Executor` worker) that has loaded the
bundle once (:func:`worker_recognizer`) transcribes the group's files together
(:meth:`asr.recognizer.Recognizer.transcribe_speaker`: pooled speaker CMVN stats, one fMLLR
transform per speaker for speaker-adaptive models: the same hypotheses as the recipe's
``asr decode`` stage on that data dir). :func:`transcribe_files` yields one record per file,
in input order, as soon as it and every file before it are done. A file that cannot be
transcribed gets an error record (``{"file", "utt_id", "error"}``); the others go on.

>>> from asr.batch.transcribe import transcribe_files  # doctest: +SKIP
>>> for record in transcribe_files("exp/yesno/mono/bundle", [("a", "a.wav")]):  # doctest: +SKIP
...     print(record["utt_id"], record["text"])
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from asr.parallel import group_by_speaker, job_executor

__all__ = [
    "TranscribeItem",
    "speaker_groups",
    "transcribe_files",
    "transcribe_group",
    "worker_recognizer",
]

_LOCK = threading.Lock()
_RECOGNIZERS: dict[tuple[str, str], object] = {}


@dataclass(frozen=True)
class TranscribeItem:
    """One input: its utterance id and audio file."""

    utt_id: str
    path: str


def worker_recognizer(bundle_dir: str | os.PathLike, device: str):
    """This process's :class:`asr.recognizer.Recognizer` for ``bundle_dir`` on ``device``
    (loaded once per process, checksums skipped: :func:`transcribe_files` verified them);
    pass it as a pool's initializer to load the bundle before the first job."""
    from asr.recognizer import Recognizer

    key = (str(bundle_dir), device)
    with _LOCK:
        if key not in _RECOGNIZERS:
            _RECOGNIZERS[key] = Recognizer.from_dir(bundle_dir, device=device, verify=False)
        return _RECOGNIZERS[key]


def speaker_groups(
    items: Sequence[TranscribeItem], utt2spk: Mapping[str, str] | None
) -> list[list[int]]:
    """Indices of ``items`` grouped by speaker (in order of first appearance); without a
    speaker map, or for an utterance it does not list, one file a group."""
    if utt2spk is None:
        return [[index] for index in range(len(items))]
    keys = [str(index) for index in range(len(items))]
    speakers = {str(i): utt2spk.get(item.utt_id, f"\0{i}") for i, item in enumerate(items)}
    return [[int(k) for k in group] for group in group_by_speaker(keys, speakers)]


def _error_record(item: TranscribeItem, err: BaseException) -> dict:
    message = str(err) if str(err).startswith(item.path) else f"{item.path}: {err}"
    return {"file": item.path, "utt_id": item.utt_id, "error": message}


def transcribe_group(
    bundle_dir: str, device: str, group: Sequence[tuple[int, TranscribeItem]]
) -> list[tuple[int, dict]]:
    """One job: ``[(index, item)]`` of one speaker (or one file) -> ``[(index, record)]``
    sorted by index: JSON-ready records (``file``, ``utt_id``, the fields of
    :meth:`asr.recognizer.Result.to_dict`, ``processing_s``) or error records."""
    records: dict[int, dict] = {}
    todo = []
    for index, item in group:
        if item.path.rstrip().endswith("|"):
            err = ValueError("piped wav.scp entries (commands) are not supported")
            records[index] = _error_record(item, err)
        else:
            todo.append((index, item))
    try:
        recognizer = worker_recognizer(bundle_dir, device)
        outcomes = recognizer.transcribe_speaker([item.path for _, item in todo])
    except Exception as err:  # noqa: BLE001 -- a failure of the group fails its files only
        outcomes = [err] * len(todo)
    for (index, item), outcome in zip(todo, outcomes, strict=True):
        if isinstance(outcome, Exception):
            records[index] = _error_record(item, outcome)
        else:
            record = {"file": item.path, "utt_id": item.utt_id, **outcome.to_dict()}
            record["processing_s"] = outcome.rtf * outcome.duration_s
            records[index] = record
    return sorted(records.items())


def transcribe_files(
    bundle_dir: str | os.PathLike,
    items: Sequence[TranscribeItem | tuple[str, str]],
    *,
    utt2spk: Mapping[str, str] | None = None,
    num_jobs: int = 1,
    device: str = "cpu",
    executor: cf.Executor | None = None,
    verify: bool = True,
) -> Iterator[dict]:
    """Transcribe ``items`` (``(utt_id, path)``) with the bundle; yield one record per item in
    input order (see :func:`transcribe_group`).

    ``utt2spk``: files of one speaker are transcribed together (pooled CMVN, one speaker
    transform); ``num_jobs``: processes of the default pool (:func:`asr.parallel.process_pool`,
    one torch thread each) when no ``executor`` is given; ``device``: where each worker loads
    the model (``"cpu"``, ``"cuda"``); ``verify``: check the bundle's checksums once here
    (:func:`asr.bundle.load_bundle`) before the workers load it without."""
    from asr.bundle import load_bundle

    bundle_dir = str(bundle_dir)
    if verify:
        load_bundle(bundle_dir)
    items = [it if isinstance(it, TranscribeItem) else TranscribeItem(*it) for it in items]
    groups = speaker_groups(items, utt2spk)
    jobs = [[(index, items[index]) for index in group] for group in groups]
    run = functools.partial(transcribe_group, bundle_dir, device)
    num_workers = num_jobs if len(jobs) > 1 else 1
    with job_executor(
        num_workers, executor, initializer=worker_recognizer, initargs=(bundle_dir, device)
    ) as pool:
        if pool is None:
            outputs = map(run, jobs)
        else:
            chunk = max(1, min(16, len(jobs) // (4 * max(num_jobs, 1))))
            outputs = pool.map(run, jobs, chunksize=chunk)
        ready: dict[int, dict] = {}
        next_index = 0
        for output in outputs:
            ready.update(output)
            while next_index in ready:
                yield ready.pop(next_index)
                next_index += 1
