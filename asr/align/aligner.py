"""Forced alignment over training graphs (Kaldi's ``gmm-align-compiled`` / ``align-equal-compiled``).

The aligner knows nothing of the acoustic model's kind: it reads frame scores from a
:class:`FrameScorer` (features -> log-likelihoods, optionally of a subset of pdfs), e.g.
:class:`asr.gmm.DiagGmmSet`; GMM statistics over alignments and ``asr align`` for GMM model
dirs are in :mod:`asr.gmm.jobs` and :mod:`asr.gmm.alignment`.

* :func:`align_utterance` — Viterbi alignment of one utterance: the model's transition
  probabilities are added to its :class:`~asr.align.training_graphs.TrainingGraph`
  (``--transition-scale=1.0 --self-loop-scale=0.1``), then our beam search
  (:func:`asr.decode.decode`) runs with ``beam``; if no path reaches a final state it is
  retried once with ``retry_beam``; failing that, :class:`~asr.errors.AlignmentError`.
* :func:`equal_alignment` — flat-start alignment: a random path through the graph whose
  frames are spread evenly over its self-loops (OpenFst/Kaldi ``EqualAlign`` via kaldifst).
* :func:`utterance_posteriors` — Baum-Welch state posteriors of one utterance.
* :func:`align_chunks` / :func:`run_alignment_job` — one data-parallel job (a set of
  utterances): scores for up to :data:`MAX_FRAMES_PER_CHUNK` frames at once, then align
  (equal-align, take the given alignment, or compute posteriors) each utterance; utterances
  that fail are returned with a reason. :func:`align_chunks` yields each chunk's frames with
  their alignment or posteriors, for statistics accumulated by the caller.

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

import dataclasses
import math
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import kaldifst
import numpy as np
import torch

from asr.align.training_graphs import TrainingGraph
from asr.decode.search_graph import DecodingGraph
from asr.decode.viterbi import DecoderConfig, decode
from asr.errors import AlignmentError, DecodeError
from asr.hmm.transition_model import TransitionModel
from asr.parallel import single_torch_thread

__all__ = [
    "ALIGN_MODES",
    "MAX_FRAMES_PER_CHUNK",
    "AlignConfig",
    "AlignJob",
    "AlignJobResult",
    "AlignedChunk",
    "FrameScorer",
    "UttAlignment",
    "align_chunks",
    "align_utterance",
    "equal_alignment",
    "frame_chunks",
    "graph_pdfs",
    "read_pdf_columns",
    "run_alignment_job",
    "silence_pdfs",
    "utterance_posteriors",
    "utterance_seed",
]

MAX_FRAMES_PER_CHUNK = 100_000  # frames scored at once within a job
ALIGN_MODES = ("equal", "align", "given", "baum_welch")


@runtime_checkable
class FrameScorer(Protocol):
    """What the aligner needs of an acoustic model: ``feats: (num_frames, dim)`` float32 ->
    ``log p(x_t | pdf)`` ``(num_frames, num_pdfs)`` float32, or with ``pdf_ids: (num_ids,)``
    only those pdfs' columns (:meth:`asr.gmm.DiagGmmSet.log_likelihoods`)."""

    def log_likelihoods(
        self, feats: torch.Tensor, pdf_ids: torch.Tensor | None = None
    ) -> torch.Tensor: ...


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


def _search_graph(
    graph: TrainingGraph,
    transition_model: TransitionModel,
    config: AlignConfig,
    pdf_ids: np.ndarray | None,
) -> DecodingGraph:
    """``graph`` with the model's scaled transition probabilities, reading the columns of
    ``pdf_ids`` (:func:`read_pdf_columns`) when given."""
    search_graph = graph.decoding_graph(
        transition_model,
        transition_scale=config.transition_scale,
        self_loop_scale=config.self_loop_scale,
    )
    if pdf_ids is not None:
        search_graph = read_pdf_columns(search_graph, pdf_ids, transition_model.num_pdfs)
    return search_graph


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
    search_graph = _search_graph(graph, transition_model, config, pdf_ids)
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


def read_pdf_columns(
    search_graph: DecodingGraph, pdf_ids: np.ndarray, num_pdfs: int
) -> DecodingGraph:
    """``search_graph`` reading column ``k`` of the scores for pdf ``pdf_ids[k]`` (scores of a
    subset of pdfs, e.g. :func:`graph_pdfs`)."""
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


def utterance_posteriors(
    graph: TrainingGraph,
    log_likes: np.ndarray,
    *,
    transition_model: TransitionModel,
    config: AlignConfig,
    pdf_ids: np.ndarray | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], float]:
    """Forward-backward over ``graph`` (transition and self-loop scales and the acoustic scale
    of ``config``): ``((frame, transition-id, posterior) triplets, total log-likelihood)``;
    ``pdf_ids`` as for :func:`align_utterance`."""
    from asr.align.forward_backward import forward_backward  # compiles its kernels on first use

    search_graph = _search_graph(graph, transition_model, config, pdf_ids)
    fb = forward_backward(search_graph, log_likes, acoustic_scale=config.acoustic_scale)
    p = fb.posteriors
    triplets = (p.frame_index, p.label.astype(np.int64), p.posterior.astype(np.float64))
    return triplets, fb.total_log_like


# ------------------------------------------------------------------------------------ jobs
@dataclass(frozen=True, eq=False)
class AlignJob:
    """One job's inputs. ``mode``: ``"equal"`` (flat start), ``"align"`` (Viterbi
    re-alignment), ``"given"`` (use ``alignments``) or ``"baum_welch"`` (forward-backward
    posteriors; ``align_config`` gives the acoustic scale). ``scorer`` scores the frames of
    ``"align"``/``"baum_welch"`` jobs; with ``subset_scoring`` each utterance is scored for
    its graph's pdfs only (cheaper for large models, as Kaldi scores on demand)."""

    utt_ids: tuple[str, ...]
    feats: Mapping[str, np.ndarray]
    graphs: Mapping[str, TrainingGraph]
    scorer: FrameScorer
    transition_model: TransitionModel
    mode: str = "align"
    align_config: AlignConfig = field(default_factory=AlignConfig)
    alignments: Mapping[str, np.ndarray] | None = None
    silence_pdf_ids: tuple[int, ...] = ()
    subset_scoring: bool = False
    seed: int = 0


@dataclass(eq=False)
class AlignJobResult:
    """What a job returns: new alignments (empty for ``"given"``/``"baum_welch"``), failures
    with reasons, counters (``path_log_like``: the Viterbi paths' acoustic log-likelihood, or
    the forward-backward total, summed)."""

    alignments: dict[str, np.ndarray] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    num_frames: int = 0
    path_log_like: float = 0.0
    num_retried: int = 0


@dataclass(frozen=True, eq=False)
class AlignedChunk:
    """One chunk of a job: ``feats: (num_frames, dim)`` float32, the chunk's frames; the rows
    ``frames`` of utterances with an alignment and their transition-ids ``alignment`` (both
    None when there are none), and Baum-Welch ``(row, transition-id, posterior)`` triplets
    ``posteriors`` (None when there are none)."""

    feats: torch.Tensor
    frames: np.ndarray | None
    alignment: np.ndarray | None
    posteriors: tuple[np.ndarray, np.ndarray, np.ndarray] | None


def frame_chunks(
    utt_ids: Sequence[str], feats: Mapping[str, np.ndarray], max_frames: int = MAX_FRAMES_PER_CHUNK
) -> Iterator[list[str]]:
    """Consecutive groups of ``utt_ids`` of at most ``max_frames`` frames (or one utterance)."""
    chunk: list[str] = []
    frames = 0
    for utt_id in utt_ids:
        if chunk and frames + len(feats[utt_id]) > max_frames:
            yield chunk
            chunk, frames = [], 0
        chunk.append(utt_id)
        frames += len(feats[utt_id])
    if chunk:
        yield chunk


def run_alignment_job(job: AlignJob) -> AlignJobResult:
    """Run one :class:`AlignJob` (a module-level function, so process pools can pickle it),
    on one torch thread (:func:`asr.parallel.single_torch_thread`)."""
    result = AlignJobResult()
    with single_torch_thread():
        for _ in align_chunks(job, result):
            pass
    return result


def align_chunks(job: AlignJob, result: AlignJobResult) -> Iterator[AlignedChunk]:
    """Align ``job``'s utterances chunk by chunk, filling ``result``; yields each chunk's
    frames with their alignments or posteriors (for statistics, :mod:`asr.gmm.jobs`)."""
    if job.mode not in ALIGN_MODES:
        raise AlignmentError(f"unknown alignment job mode {job.mode!r}")
    usable = []
    for utt_id in job.utt_ids:
        if utt_id not in job.feats:
            result.failed[utt_id] = "no features"
        elif utt_id not in job.graphs:
            result.failed[utt_id] = "no training graph"
        elif job.mode == "given" and (job.alignments is None or utt_id not in job.alignments):
            result.failed[utt_id] = "no alignment"
        else:
            usable.append(utt_id)
    boost = math.log(job.align_config.boost_silence)
    sil = torch.as_tensor(list(job.silence_pdf_ids), dtype=torch.int64)
    scored = job.mode in ("align", "baum_welch")
    subsets = scored and job.subset_scoring
    for chunk in frame_chunks(usable, job.feats):
        feats = torch.from_numpy(np.concatenate([job.feats[u] for u in chunk]).astype(np.float32))
        log_likes = None
        if scored and not subsets:
            log_likes = job.scorer.log_likelihoods(feats)
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
                pdf_ids = graph_pdfs(job.graphs[utt_id], job.transition_model)
                utt_likes = job.scorer.log_likelihoods(feats[rows], torch.from_numpy(pdf_ids))
                if boost != 0.0 and sil.numel():
                    utt_likes[:, torch.from_numpy(np.isin(pdf_ids, sil.numpy()))] += boost
                utt_likes = utt_likes.numpy()
            try:
                ali, post = _align_one(job, utt_id, num_frames, utt_likes, pdf_ids, result)
            except (AlignmentError, DecodeError) as err:
                result.failed[utt_id] = str(err)
                continue
            if job.mode in ("equal", "align"):
                result.alignments[utt_id] = ali
            result.num_frames += num_frames
            if post is not None:
                posts.append((post, rows.start))
            else:
                keep_rows.append(np.arange(rows.start, rows.stop))
                keep_ali.append(ali)
        posteriors = None
        if posts:
            posteriors = (
                np.concatenate([p[0].astype(np.int64) + off for p, off in posts]),
                np.concatenate([p[1] for p, _ in posts]),
                np.concatenate([p[2] for p, _ in posts]),
            )
        yield AlignedChunk(
            feats=feats,
            frames=np.concatenate(keep_rows) if keep_ali else None,
            alignment=np.concatenate(keep_ali) if keep_ali else None,
            posteriors=posteriors,
        )


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
    triplets, total = utterance_posteriors(
        graph,
        log_likes,
        transition_model=job.transition_model,
        config=job.align_config,
        pdf_ids=pdf_ids,
    )
    out.path_log_like += total
    return None, triplets
