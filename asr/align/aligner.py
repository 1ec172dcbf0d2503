"""Forced alignment over training graphs (Kaldi's ``gmm-align-compiled`` / ``align-equal-compiled``).

* :func:`align_utterance` — Viterbi alignment of one utterance: the model's transition
  probabilities are added to its :class:`~asr.align.training_graphs.TrainingGraph`
  (``--transition-scale=1.0 --self-loop-scale=0.1``), then our beam search
  (:func:`asr.decode.decode`) runs with ``beam``; if no path reaches a final state it is
  retried once with ``retry_beam``; failing that, :class:`~asr.errors.AlignmentError`.
* :func:`equal_alignment` — flat-start alignment: a random path through the graph whose
  frames are spread evenly over its self-loops (OpenFst/Kaldi ``EqualAlign`` via kaldifst).
* :func:`run_alignment_job` — one data-parallel job (a set of utterances): log-likelihoods
  for all its frames at once, then align (or equal-align) each utterance and optionally
  accumulate GMM and transition statistics; utterances that fail are returned with a reason.
* :func:`align_data_dir` — ``asr align``: align a data dir with a trained model dir, writing
  ``ali.ark``/``ali.scp``/``ali.txt``, ``failed.txt`` and ``ali_info.json``.

>>> import numpy as np, tempfile
>>> from asr.lang import Lexicon, prepare_lang
>>> from asr.hmm import init_monophone
>>> from asr.align.training_graphs import TrainingGraphCompiler
>>> lang = prepare_lang(Lexicon.from_pairs([("YES", "Y"), ("NO", "N")]), tempfile.mkdtemp())
>>> model = init_monophone(lang)
>>> graph = TrainingGraphCompiler(lang=lang, model=model).compile("YES")
>>> ali = equal_alignment(graph, 9, seed=0)
>>> phones = model.transition_model.tid2phone[ali]          # optional SIL (1) around Y (4)
>>> len(ali), sorted(set(phones.tolist()) - {1})
(9, [4])
>>> log_likes = np.zeros((9, model.num_pdfs), dtype=np.float32)
>>> res = align_utterance(graph, log_likes, transition_model=model.transition_model)
>>> len(res.alignment)
9
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import math
import multiprocessing
import os
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import kaldifst
import numpy as np
import torch

from asr.align.io import write_alignments, write_failed
from asr.align.training_graphs import TrainingGraph, TrainingGraphCompiler
from asr.decode.graph import DecodingGraph
from asr.decode.viterbi import DecoderConfig, decode
from asr.errors import AlignmentError, DecodeError
from asr.fileio import atomic_write_text
from asr.gmm.accumulate import GmmAccumulator
from asr.gmm.diag_gmm import DiagGmmSet
from asr.hmm.model import HmmModel
from asr.hmm.transition_model import TransitionModel

__all__ = [
    "AlignConfig",
    "AlignJob",
    "AlignJobResult",
    "AlignSummary",
    "UttAlignment",
    "align_data_dir",
    "align_utterance",
    "equal_alignment",
    "graph_pdfs",
    "map_jobs",
    "run_alignment_job",
    "silence_pdfs",
    "split_by_speaker",
]

GMM_FILE = "gmm.pt"
ALI_INFO_FILE = "ali_info.json"
_MAX_FRAMES_PER_CHUNK = 100_000  # frames scored at once within a job
# From this many Gaussians on, a job scores each utterance's graph pdfs only (Kaldi scores
# on demand): measured crossover ~1-2k Gaussians; AN4 tri2 (15k): ~20x less CPU per frame.
_SUBSET_MIN_GAUSS = 2000


@dataclass(frozen=True)
class AlignConfig:
    """Kaldi's ``gmm-align-compiled`` options (``align_si.sh`` defaults: beam 10, retry 40).

    ``boost_silence`` multiplies the likelihoods of silence pdfs (``gmm-boost-silence``).
    """

    beam: float = 10.0
    retry_beam: float = 40.0
    acoustic_scale: float = 0.1
    transition_scale: float = 1.0
    self_loop_scale: float = 0.1
    max_active: int = 2**31 - 1
    min_active: int = 20
    boost_silence: float = 1.0

    def __post_init__(self) -> None:
        if not (self.beam > 0 and self.retry_beam >= 0 and self.acoustic_scale > 0):
            raise AlignmentError(f"bad alignment config {self}")
        if not self.boost_silence > 0:
            raise AlignmentError(f"boost_silence must be > 0, got {self.boost_silence}")


@dataclass(frozen=True, eq=False)
class UttAlignment:
    """``alignment: (num_frames,) int32`` transition-ids; ``log_like``: sum of the path's
    (unscaled) acoustic log-likelihoods; ``graph_cost``; ``retried``: the retry beam was used."""

    alignment: np.ndarray
    log_like: float
    graph_cost: float
    retried: bool


def _failure_reason(graph: TrainingGraph, num_frames: int, beam: float) -> str:
    needed = graph.min_num_frames()
    if 0 <= num_frames < needed:
        return f"too short: {num_frames} frames, the transcript needs at least {needed}"
    return f"no path reached a final state within beam {beam:g}"


def align_utterance(
    graph: TrainingGraph,
    log_likes: np.ndarray,
    *,
    transition_model: TransitionModel,
    config: AlignConfig | None = None,
    pdf_ids: np.ndarray | None = None,
) -> UttAlignment:
    """Viterbi-align ``log_likes: (num_frames, num_pdfs)`` to ``graph`` (see module docstring);
    with ``pdf_ids: (num_ids,)`` (sorted, every pdf of the graph) ``log_likes`` holds only
    those pdfs' columns, ``(num_frames, num_ids)``."""
    config = config or AlignConfig()
    num_frames = int(np.shape(log_likes)[0])
    if num_frames == 0:
        raise AlignmentError("zero-length utterance")
    search_graph = graph.decoding_graph(
        transition_model,
        transition_scale=config.transition_scale,
        self_loop_scale=config.self_loop_scale,
    )
    if pdf_ids is not None:
        search_graph = _read_pdf_columns(search_graph, pdf_ids, transition_model.num_pdfs)
    beams = [config.beam]
    if config.retry_beam > config.beam:
        beams.append(config.retry_beam)
    for attempt, beam in enumerate(beams):
        decoder_config = DecoderConfig(
            beam=beam,
            max_active=config.max_active,
            min_active=config.min_active,
            acoustic_scale=config.acoustic_scale,
        )
        try:
            result = decode(search_graph, log_likes, decoder_config)
        except DecodeError:
            continue
        if not result.reached_final:
            continue
        ali = result.alignment.astype(np.int32)
        like = float(np.asarray(log_likes)[np.arange(num_frames), result.pdf_alignment].sum())
        return UttAlignment(
            alignment=ali, log_like=like, graph_cost=result.graph_cost, retried=attempt > 0
        )
    raise AlignmentError(_failure_reason(graph, num_frames, beams[-1]))


def graph_pdfs(graph: TrainingGraph, transition_model: TransitionModel) -> np.ndarray:
    """Sorted pdf ids ``(num_ids,) int64`` read by ``graph``'s transition-ids."""
    tids = graph.fst.ilabel[graph.fst.ilabel > 0]
    return np.unique(transition_model.tid2pdf[tids]).astype(np.int64)


def _read_pdf_columns(
    search_graph: DecodingGraph, pdf_ids: np.ndarray, num_pdfs: int
) -> DecodingGraph:
    """``search_graph`` reading column ``k`` of the scores for pdf ``pdf_ids[k]``."""
    column = np.full(num_pdfs, -1, dtype=np.int64)
    column[pdf_ids] = np.arange(len(pdf_ids))
    emitting = search_graph.pdf >= 0
    pdf = np.where(emitting, column[np.where(emitting, search_graph.pdf, 0)], -1)
    if np.any(pdf[emitting] < 0):
        raise AlignmentError("pdf_ids lacks some pdf of the training graph")
    return dataclasses.replace(
        search_graph, pdf=pdf.astype(np.int32), num_pdfs_required=len(pdf_ids)
    )


def equal_alignment(graph: TrainingGraph, num_frames: int, *, seed: int = 0) -> np.ndarray:
    """``(num_frames,) int32`` flat-start alignment (see module docstring); AlignmentError
    when the graph cannot be spread over ``num_frames`` frames."""
    if num_frames <= 0:
        raise AlignmentError("zero-length utterance")
    ok, path = kaldifst.equal_align(graph.fst.to_fst(), num_frames, seed & 0x7FFFFFFF)
    if ok:
        linear, tids, _, _ = kaldifst.get_linear_symbol_sequence(path)
        if linear and len(tids) == num_frames:
            return np.asarray(tids, dtype=np.int32)
    needed = graph.min_num_frames()
    if num_frames < needed:
        raise AlignmentError(
            f"too short: {num_frames} frames, the transcript needs at least {needed}"
        )
    raise AlignmentError(f"equal alignment found no path of {num_frames} frames")


def silence_pdfs(transition_model: TransitionModel, silence_phone_ids: Iterable[int]) -> np.ndarray:
    """Sorted pdf ids used by the transition-ids of ``silence_phone_ids``."""
    tm = transition_model
    is_sil = np.isin(tm.tid2phone, np.asarray(list(silence_phone_ids), dtype=np.int64))
    is_sil[0] = False
    return np.unique(tm.tid2pdf[is_sil]).astype(np.int64)


def utterance_seed(utt_id: str, seed: int) -> int:
    """A per-utterance seed independent of how utterances are split into jobs."""
    return (zlib.crc32(utt_id.encode()) + 7919 * seed) & 0x7FFFFFFF


# ------------------------------------------------------------------------------------ jobs
@dataclass(frozen=True, eq=False)
class AlignJob:
    """One job's inputs. ``mode``: ``"equal"`` (flat start), ``"align"`` (Viterbi
    re-alignment), ``"given"`` (use ``alignments``) or ``"baum_welch"`` (forward-backward
    posteriors; ``align_config`` gives the acoustic scale). With ``accumulate`` the job
    returns GMM statistics for ``gmm`` and transition counts."""

    utt_ids: tuple[str, ...]
    feats: Mapping[str, np.ndarray]
    graphs: Mapping[str, TrainingGraph]
    gmm: DiagGmmSet
    transition_model: TransitionModel
    mode: str = "align"
    align_config: AlignConfig = field(default_factory=AlignConfig)
    alignments: Mapping[str, np.ndarray] | None = None
    silence_pdf_ids: tuple[int, ...] = ()
    accumulate: bool = True
    seed: int = 0


@dataclass(eq=False)
class AlignJobResult:
    """What a job returns: new alignments (empty for ``"given"``/``"baum_welch"``), failures
    with reasons, statistics (``acc`` is None unless accumulating), counters."""

    alignments: dict[str, np.ndarray]
    failed: dict[str, str]
    acc: GmmAccumulator | None
    transition_counts: np.ndarray
    num_frames: int = 0
    path_log_like: float = 0.0
    num_retried: int = 0


def _chunks(utt_ids: Sequence[str], feats: Mapping[str, np.ndarray]) -> Iterable[list[str]]:
    chunk: list[str] = []
    frames = 0
    for utt_id in utt_ids:
        if chunk and frames + len(feats[utt_id]) > _MAX_FRAMES_PER_CHUNK:
            yield chunk
            chunk, frames = [], 0
        chunk.append(utt_id)
        frames += len(feats[utt_id])
    if chunk:
        yield chunk


_THREADS_LOCK = threading.Lock()
_threads_state = {"depth": 0, "saved": 1}


@contextlib.contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run the body with one torch intra-op thread, then restore the caller's setting
    (nested and concurrent uses share one save/restore).

    A job is the unit of parallelism (Kaldi's jobs are single-threaded; ``--nj`` runs several):
    its torch calls are small, and with more intra-op threads than free cores the extra threads
    mostly spin (AN4 log-likelihoods on a busy 2-core machine: 2 threads cost ~7x the CPU of 1)."""
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


def run_alignment_job(job: AlignJob) -> AlignJobResult:
    """Run one :class:`AlignJob` (a module-level function, so process pools can pickle it),
    on one torch thread (:func:`single_torch_thread`)."""
    if job.mode not in ("equal", "align", "given", "baum_welch"):
        raise AlignmentError(f"unknown alignment job mode {job.mode!r}")
    with single_torch_thread():
        return _run_alignment_job(job)


def _run_alignment_job(job: AlignJob) -> AlignJobResult:
    tm = job.transition_model
    out = AlignJobResult(
        alignments={},
        failed={},
        acc=GmmAccumulator.for_model(job.gmm) if job.accumulate else None,
        transition_counts=np.zeros(tm.num_transition_ids + 1),
    )
    usable = []
    for utt_id in job.utt_ids:
        if utt_id not in job.feats:
            out.failed[utt_id] = "no features"
        elif utt_id not in job.graphs:
            out.failed[utt_id] = "no training graph"
        elif job.mode == "given" and (job.alignments is None or utt_id not in job.alignments):
            out.failed[utt_id] = "no alignment"
        else:
            usable.append(utt_id)
    boost = math.log(job.align_config.boost_silence)
    sil = torch.as_tensor(list(job.silence_pdf_ids), dtype=torch.int64)
    for chunk in _chunks(usable, job.feats):
        feats = torch.from_numpy(np.concatenate([job.feats[u] for u in chunk]).astype(np.float32))
        log_likes = None
        scored = job.mode in ("align", "baum_welch")
        subsets = scored and job.gmm.num_gauss >= _SUBSET_MIN_GAUSS
        if scored and not subsets:
            log_likes = job.gmm.log_likelihoods(feats)
            if boost != 0.0 and sil.numel():
                log_likes[:, sil] += boost
            log_likes = log_likes.numpy()
        start = 0
        keep_rows, keep_ali, posts = [], [], []
        for utt_id in chunk:
            num_frames = len(job.feats[utt_id])
            rows = slice(start, start + num_frames)
            start += num_frames
            utt_likes, pdf_ids = None if log_likes is None else log_likes[rows], None
            if subsets:  # only the pdfs of this utterance's graph
                pdf_ids = graph_pdfs(job.graphs[utt_id], tm)
                utt_likes = job.gmm.log_likelihoods(feats[rows], torch.from_numpy(pdf_ids))
                if boost != 0.0 and sil.numel():
                    utt_likes[:, torch.from_numpy(np.isin(pdf_ids, sil.numpy()))] += boost
                utt_likes = utt_likes.numpy()
            try:
                ali, post = _align_one(job, utt_id, num_frames, utt_likes, pdf_ids, out)
            except (AlignmentError, DecodeError) as err:
                out.failed[utt_id] = str(err)
                continue
            if job.mode in ("equal", "align"):
                out.alignments[utt_id] = ali
            out.num_frames += num_frames
            if post is not None:
                posts.append((post, rows.start))
            else:
                keep_rows.append(np.arange(rows.start, rows.stop))
                keep_ali.append(ali)
        if out.acc is None:
            continue
        if keep_ali:
            ali_all = np.concatenate(keep_ali)
            frames = torch.from_numpy(np.concatenate(keep_rows))
            out.acc.accumulate_aligned(
                job.gmm, feats[frames].to(torch.float64), torch.from_numpy(tm.tid2pdf[ali_all])
            )
            out.transition_counts += np.bincount(ali_all, minlength=tm.num_transition_ids + 1)
        if posts:
            frame_index = np.concatenate([p[0].astype(np.int64) + off for p, off in posts])
            tids = np.concatenate([p[1] for p, _ in posts])
            weights = np.concatenate([p[2] for p, _ in posts])
            out.acc.accumulate_posteriors(
                job.gmm,
                feats.to(torch.float64),
                (torch.from_numpy(frame_index), torch.from_numpy(tm.tid2pdf[tids].astype(np.int64)),
                 torch.from_numpy(weights)),
            )  # fmt: skip
            out.transition_counts += np.bincount(
                tids, weights=weights, minlength=tm.num_transition_ids + 1
            )
    return out


def _align_one(
    job: AlignJob,
    utt_id: str,
    num_frames: int,
    log_likes: np.ndarray | None,
    pdf_ids: np.ndarray | None,
    out: AlignJobResult,
) -> tuple[np.ndarray | None, tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
    """(alignment, None) or (None, (frame, tid, posterior) triplets) for one utterance."""
    graph = job.graphs[utt_id]
    if job.mode == "equal":
        return equal_alignment(graph, num_frames, seed=utterance_seed(utt_id, job.seed)), None
    if job.mode == "given":
        ali = np.asarray(job.alignments[utt_id], dtype=np.int32)  # type: ignore[index]
        if len(ali) != num_frames:
            raise AlignmentError(f"alignment has {len(ali)} frames, features {num_frames}")
        return ali, None
    if job.mode == "align":
        res = align_utterance(
            graph,
            log_likes,
            transition_model=job.transition_model,
            config=job.align_config,
            pdf_ids=pdf_ids,
        )
        out.path_log_like += res.log_like
        out.num_retried += int(res.retried)
        return res.alignment, None
    from asr.align.forward_backward import forward_backward  # the Baum-Welch helper's module

    cfg = job.align_config
    search_graph = graph.decoding_graph(
        job.transition_model,
        transition_scale=cfg.transition_scale,
        self_loop_scale=cfg.self_loop_scale,
    )
    if pdf_ids is not None:
        search_graph = _read_pdf_columns(search_graph, pdf_ids, job.transition_model.num_pdfs)
    fb = forward_backward(search_graph, log_likes, acoustic_scale=cfg.acoustic_scale)
    out.path_log_like += fb.total_log_like
    p = fb.posteriors
    return None, (p.frame_index, p.label.astype(np.int64), p.posterior.astype(np.float64))


def split_by_speaker(
    utt_ids: Sequence[str], utt2spk: Mapping[str, str], num_jobs: int
) -> list[tuple[str, ...]]:
    """Split utterances into at most ``num_jobs`` non-empty jobs, whole speakers per job where
    there are enough speakers (Kaldi's ``split_data.sh``), else contiguous utterance blocks."""
    if num_jobs < 1:
        raise AlignmentError(f"num_jobs must be >= 1, got {num_jobs}")
    ordered = list(utt_ids)
    speakers: dict[str, list[str]] = {}
    for utt_id in ordered:
        speakers.setdefault(utt2spk.get(utt_id, utt_id), []).append(utt_id)
    groups = list(speakers.values())
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


def map_jobs(fn: Callable, tasks: Sequence, executor: concurrent.futures.Executor | None) -> list:
    """``[fn(t) for t in tasks]``, on ``executor`` when given (results in task order)."""
    if executor is None or len(tasks) <= 1:
        return [fn(t) for t in tasks]
    return list(executor.map(fn, tasks))


def process_pool(num_jobs: int) -> concurrent.futures.ProcessPoolExecutor:
    """The default executor for ``num_jobs > 1``: a spawn-context process pool."""
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=num_jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
    )


def _init_worker() -> None:
    """Pool workers use one torch thread each: ``num_jobs`` processes share the cores."""
    torch.set_num_threads(1)


# ------------------------------------------------------------------------------ data dirs
@dataclass(frozen=True)
class AlignSummary:
    """Result of :func:`align_data_dir`."""

    num_aligned: int
    num_failed: int
    num_frames: int
    log_like_per_frame: float
    num_retried: int
    out_dir: str


def _sat_model_info(model_dir: Path) -> dict | None:
    """``model.json`` of a speaker-adaptive (SAT) model dir, else None."""
    from asr.acoustic import read_model_info

    info = read_model_info(model_dir)
    return info if info is not None and info.get("family") == "sat" else None


def align_data_dir(
    data_dir: str | os.PathLike,
    lang_dir: str | os.PathLike,
    model_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    config: AlignConfig | None = None,
    num_jobs: int = 1,
    executor: concurrent.futures.Executor | None = None,
) -> AlignSummary:
    """Align every utterance of ``data_dir`` (``feats.scp``, ``cmvn.scp``, ``text``) with the
    GMM model in ``model_dir`` (HMM files, ``gmm.pt``, ``feature_pipeline.json``); write
    ``out_dir/{ali.ark,ali.scp,ali.txt,failed.txt,ali_info.json}``. Failed utterances are
    listed in ``failed.txt`` and skipped. A SAT model (:mod:`asr.gmm.train_sat`) aligns in
    two passes: its SI model, then per-speaker fMLLR and the SAT model on the adapted
    features; the transforms go to ``out_dir/trans.npz``."""
    from asr.data import read_kaldi_map
    from asr.features.pipeline import FeaturePipelineConfig, load_features
    from asr.lang import read_lang

    config = config or AlignConfig()
    data_dir, model_dir, out_dir = Path(data_dir), Path(model_dir), Path(out_dir)
    lang = read_lang(lang_dir)
    model = HmmModel.load(model_dir)
    gmm = DiagGmmSet.load(model_dir / GMM_FILE)
    if gmm.num_pdfs != model.num_pdfs:
        raise AlignmentError(f"{model_dir}: gmm has {gmm.num_pdfs} pdfs, the tree {model.num_pdfs}")
    pipeline = FeaturePipelineConfig.load(model_dir)
    texts = read_kaldi_map(data_dir / "text")
    utt2spk = read_kaldi_map(data_dir / "utt2spk")
    feats = load_features(data_dir, pipeline, model_dir=model_dir)
    compiler = TrainingGraphCompiler(lang=lang, model=model)
    graphs, failed = compiler.compile_many(texts)
    utt_ids = sorted(texts)
    split = split_by_speaker(utt_ids, utt2spk, num_jobs)
    silence = tuple(silence_pdfs(model.transition_model, lang.silence_phone_ids))

    def run(job_gmm: DiagGmmSet, job_feats: dict[str, np.ndarray]) -> list[AlignJobResult]:
        jobs = [
            AlignJob(
                utt_ids=ids,
                feats={u: job_feats[u] for u in ids if u in job_feats},
                graphs={u: graphs[u] for u in ids if u in graphs},
                gmm=job_gmm,
                transition_model=model.transition_model,
                mode="align",
                align_config=config,
                silence_pdf_ids=silence,
                accumulate=False,
            )
            for ids in split
        ]
        return map_jobs(run_alignment_job, jobs, pool)

    sat_info = _sat_model_info(model_dir)
    own_pool = executor is None and num_jobs > 1 and len(split) > 1
    pool = process_pool(len(split)) if own_pool else executor
    try:
        if sat_info is None:
            results = run(gmm, feats)
        else:  # SAT (Kaldi's align_fmllr.sh): SI pass, fMLLR per speaker, adapted pass
            from asr.gmm.sat import SI_GMM_FILE
            from asr.gmm.train_sat import (
                TRANS_FILE,
                SatConfig,
                adapt_features,
                save_transforms,
                speaker_transforms,
            )

            results = run(DiagGmmSet.load(model_dir / SI_GMM_FILE), feats)
            first = {u: a for r in results for u, a in r.alignments.items()}
            transforms, _ = speaker_transforms(
                gmm=gmm, transition_model=model.transition_model, si_feats=feats,
                cur_feats=feats, alignments=first, utt2spk=utt2spk, inits={},
                silence_phone_ids=tuple(sat_info["silence_phone_ids"]), config=SatConfig(),
                split=split, pool=pool,
            )  # fmt: skip
            results = run(gmm, adapt_features(feats, transforms, utt2spk))
            save_transforms(out_dir / TRANS_FILE, transforms)
    finally:
        if own_pool and pool is not None:
            pool.shutdown()
    alignments: dict[str, np.ndarray] = {}
    for res in results:
        alignments.update(res.alignments)
        for utt_id, reason in res.failed.items():
            failed.setdefault(utt_id, reason)
    num_frames = sum(r.num_frames for r in results)
    like = sum(r.path_log_like for r in results)
    summary = AlignSummary(
        num_aligned=len(alignments),
        num_failed=len(failed),
        num_frames=num_frames,
        log_like_per_frame=like / num_frames if num_frames else math.nan,
        num_retried=sum(r.num_retried for r in results),
        out_dir=str(out_dir),
    )
    write_alignments(alignments, out_dir)
    write_failed(failed, out_dir)
    info = {"model_dir": str(model_dir), "data_dir": str(data_dir), "lang_dir": str(lang_dir)}
    info.update({k: v for k, v in summary.__dict__.items() if k != "out_dir"})
    info["config"] = config.__dict__
    atomic_write_text(out_dir / ALI_INFO_FILE, json.dumps(info, indent=2) + "\n")
    if not alignments:
        raise AlignmentError(
            f"no utterance of {data_dir} could be aligned (see {out_dir}/failed.txt)"
        )
    return summary
