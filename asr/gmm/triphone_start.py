"""The starting point of triphone training (Kaldi's ``acc-lda``/``est-lda``,
``acc-tree-stats``, ``cluster-phones``, ``build-tree``, ``gmm-init-model``, ``convert-ali``).

:func:`build_triphone_start` turns a previous model's alignment into a new triphone model:
optionally an LDA from the alignment's pdf labels (silence weighted 0), tree statistics
(context 3, central 1, silence context-independent) on the new features, automatic phone
questions, the tree, one Gaussian per pdf, transition probabilities from the topology, and the
alignment converted to the new model (:func:`convert_alignments`). Statistics are accumulated
in jobs (utterances split by speaker) on any executor. :func:`save_start` / :func:`load_start`
keep the starting point in ``OUT_DIR/init/`` while training runs (for resuming), and
:func:`start_state` is the training loop's state before iteration 1. Used by
:mod:`asr.gmm.train_tri` and :mod:`asr.gmm.train_sat`.

>>> from asr.gmm.triphone_start import convert_alignments  # doctest: +SKIP
>>> new_ali = convert_alignments(old_ali, old_transition_model=mono.transition_model,
...                              ctx_dep=tri.ctx_dep, transition_model=tri.transition_model)  # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asr.align.io import read_alignments, write_alignments
from asr.errors import AsrError, EstimationError, TrainingError
from asr.features.io import read_matrix, write_kaldi_matrix
from asr.features.transforms import apply_transform
from asr.fileio import atomic_write_text
from asr.gmm.diag_gmm import DiagGmmSet
from asr.gmm.gmm_acoustic import GMM_FILE
from asr.gmm.lda_mllt import LdaConfig, LdaStats, MlltAccumulator, estimate_lda
from asr.gmm.loop import TrainingState
from asr.hmm.build_tree import TreeConfig, build_tree, init_gmm_from_tree_stats
from asr.hmm.model import HmmModel
from asr.hmm.questions import lang_questions
from asr.hmm.transition_model import TransitionModel
from asr.hmm.tree import ContextDependency
from asr.hmm.tree_stats import (
    TreeStats,
    TreeStatsConfig,
    frame_events_from_alignment,
    tree_stats_from_alignments,
)
from asr.lang import Lang
from asr.parallel import map_jobs, split_mapping

__all__ = [
    "TriphoneStart",
    "build_triphone_start",
    "convert_alignments",
    "load_start",
    "mllt_stats_job",
    "project_features",
    "save_start",
    "start_state",
]


# ------------------------------------------------------------------------------ convert-ali
def _state_pdf_classes(tm: TransitionModel) -> tuple[np.ndarray, np.ndarray]:
    """``(num_transition_states + 1,)`` forward and self-loop pdf-class per transition state."""
    fwd = np.full(tm.num_transition_states + 1, -1, dtype=np.int64)
    loop = fwd.copy()
    for tstate, (phone, hmm_state, _, _) in enumerate(tm.tuples.tolist(), start=1):
        state = tm.topology.entry(phone).states[hmm_state]
        fwd[tstate], loop[tstate] = state.forward_pdf_class, state.self_loop_pdf_class
    return fwd, loop


def convert_alignments(
    alignments: Mapping[str, np.ndarray],
    *,
    old_transition_model: TransitionModel,
    ctx_dep: ContextDependency,
    transition_model: TransitionModel,
) -> dict[str, np.ndarray]:
    """Kaldi's ``convert-ali``: the same phones, HMM states and transitions per frame, with the
    pdfs the new tree gives each frame's phone window; returns new transition-id alignments.

    Phone instances are split as Kaldi's ``SplitToPhones`` on reordered alignments; the
    window of an instance holds its neighbours within the utterance (0 at the edges).
    Raises :class:`TrainingError` when a frame has no transition state in the new model.
    """
    old = old_transition_model
    utt_ids = list(alignments)
    if not utt_ids:
        return {}
    lengths = np.array([len(alignments[u]) for u in utt_ids], dtype=np.int64)
    tids = np.concatenate([np.asarray(alignments[u], dtype=np.int64) for u in utt_ids])
    starts = np.concatenate(
        [frame_events_from_alignment(alignments[u], transition_model=old)[2] for u in utt_ids]
    )
    first_frames = np.flatnonzero(starts)
    instance = np.cumsum(starts) - 1
    inst_phone = old.tid2phone[tids[first_frames]].astype(np.int64)
    inst_utt = np.repeat(np.arange(len(utt_ids)), lengths)[first_frames]
    num_inst = len(first_frames)
    width, centre = ctx_dep.context_width, ctx_dep.central_position
    windows = np.zeros((num_inst, width), dtype=np.int64)
    for position in range(width):
        other = np.arange(num_inst) + position - centre
        valid = (other >= 0) & (other < num_inst)
        valid[valid] &= inst_utt[other[valid]] == inst_utt[valid]
        windows[valid, position] = inst_phone[other[valid]]
    fwd_class, loop_class = _state_pdf_classes(old)
    tstates = old.tid2tstate[tids]
    # pdfs per distinct (instance window, pdf-class): one tree walk over unique events
    events = np.concatenate(
        [
            np.concatenate([windows[instance], fwd_class[tstates][:, None]], axis=1),
            np.concatenate([windows[instance], loop_class[tstates][:, None]], axis=1),
        ]
    )
    unique, inverse = np.unique(events, axis=0, return_inverse=True)
    pdfs = ctx_dep.compute_batch(unique[:, :width], unique[:, width])[inverse.reshape(-1)]
    num_frames = len(tids)
    new_tstates = transition_model.transition_states(
        old.tid2phone[tids], old.tid2hmm_state[tids], pdfs[:num_frames], pdfs[num_frames:]
    )
    if np.any(new_tstates == 0):
        bad = int(np.flatnonzero(new_tstates == 0)[0])
        utt = utt_ids[int(np.searchsorted(np.cumsum(lengths), bad, side="right"))]
        raise TrainingError(
            f"convert-ali: utterance {utt}: phone {int(old.tid2phone[tids[bad]])} in context "
            f"{windows[instance[bad]].tolist()} has no transition state in the new model"
        )
    new_tids = transition_model.tstate2first_tid[new_tstates] + old.tid2index[tids]
    pieces = np.split(new_tids.astype(np.int32), np.cumsum(lengths)[:-1])
    return dict(zip(utt_ids, pieces, strict=True))


# ------------------------------------------------------------------------------ jobs
def _silence_weights(tm: TransitionModel, ali: np.ndarray, silence: Sequence[int]) -> np.ndarray:
    return np.where(np.isin(tm.tid2phone[ali], np.asarray(silence, dtype=np.int64)), 0.0, 1.0)


def _tree_stats_job(args: tuple) -> TreeStats:
    feats, alignments, tm, ci_phones = args
    utt_ids = [u for u in alignments if u in feats]
    return tree_stats_from_alignments(
        feats=[feats[u] for u in utt_ids],
        alignments=[alignments[u] for u in utt_ids],
        transition_model=tm,
        config=TreeStatsConfig(ci_phones=tuple(ci_phones)),
    )


def _lda_job(args: tuple) -> LdaStats:
    feats, alignments, tm, silence, dim = args
    stats = LdaStats(num_classes=tm.num_pdfs, dim=dim)
    utt_ids = [u for u in alignments if u in feats]
    if utt_ids:
        ali = np.concatenate([alignments[u] for u in utt_ids])
        stats.accumulate(
            torch.from_numpy(np.concatenate([feats[u] for u in utt_ids])),
            torch.from_numpy(tm.tid2pdf[ali].astype(np.int64)),
            weights=torch.from_numpy(_silence_weights(tm, ali, silence)),
        )
    return stats


def mllt_stats_job(args: tuple) -> MlltAccumulator:
    feats, alignments, tm, gmm, silence = args
    acc = MlltAccumulator.for_model(gmm)
    utt_ids = [u for u in alignments if u in feats]
    if utt_ids:
        ali = np.concatenate([alignments[u] for u in utt_ids])
        acc.accumulate_aligned(
            gmm,
            torch.from_numpy(np.concatenate([feats[u] for u in utt_ids]).astype(np.float64)),
            torch.from_numpy(tm.tid2pdf[ali].astype(np.int64)),
            weights=torch.from_numpy(_silence_weights(tm, ali, silence)),
        )
    return acc


def project_features(
    spliced: Mapping[str, np.ndarray], matrix: np.ndarray
) -> dict[str, np.ndarray]:
    """Each utterance's features mapped by ``matrix`` (float32, as the feature pipeline
    stores them; :func:`asr.features.transforms.apply_transform`)."""
    return {u: apply_transform(f, matrix) for u, f in spliced.items()}


# ------------------------------------------------------------------------------ set-up
@dataclass
class TriphoneStart:
    """The starting point: model, GMM, converted alignments, LDA (None in deltas mode)."""

    model: HmmModel
    gmm: DiagGmmSet
    alignments: dict[str, np.ndarray]
    lda: np.ndarray | None
    tree_objf_gain_per_frame: float


def build_triphone_start(
    *,
    feature_mode: str,
    tree_config: TreeConfig,
    lda_dim: int,
    lang: Lang,
    lang_dir: Path,
    old_model: HmmModel,
    old_alignments: dict[str, np.ndarray],
    feats: dict[str, np.ndarray],
    split: list[tuple[str, ...]],
    pool: concurrent.futures.Executor | None,
) -> tuple[TriphoneStart, dict[str, np.ndarray]]:
    """The starting point (see the module docstring) from the previous model's alignments and
    features ``(num_frames, dim)`` (spliced in ``"lda_mllt"`` mode, where the LDA of
    ``lda_dim`` rows is estimated first); jobs by ``split`` on ``pool``. Returns the start and
    the new model's training features."""
    old_tm = old_model.transition_model
    silence = tuple(lang.silence_phone_ids)
    ali_jobs = split_mapping(old_alignments, split)
    feat_jobs = split_mapping(feats, split)
    lda = None
    if feature_mode == "lda_mllt":
        dim = next(iter(feats.values())).shape[1]
        parts = map_jobs(
            _lda_job,
            [(f, a, old_tm, silence, dim) for f, a in zip(feat_jobs, ali_jobs, strict=True)],
            pool,
        )
        stats = parts[0]
        for part in parts[1:]:
            stats.merge(part)
        try:
            lda = estimate_lda(stats, LdaConfig(dim=lda_dim)).numpy()
        except EstimationError as err:
            raise TrainingError(f"LDA estimation failed: {err}") from None
        feats = project_features(feats, lda)
        feat_jobs = split_mapping(feats, split)
    parts = map_jobs(
        _tree_stats_job,
        [(f, a, old_tm, lang.context_indep_ids) for f, a in zip(feat_jobs, ali_jobs, strict=True)],
        pool,
    )
    tree_stats = TreeStats.merge_all(parts)
    if tree_stats.num_events == 0:
        raise TrainingError("no aligned frames to build the tree from")
    topo = lang.topology
    num_pdf_classes = {p: topo.num_pdf_classes(p) for p in topo.phones}
    questions = lang_questions(tree_stats, lang_dir, max_pdf_classes=max(num_pdf_classes.values()))
    built = build_tree(
        tree_stats,
        roots=lang.roots(),
        questions=questions,
        num_pdf_classes=num_pdf_classes,
        ci_phones=lang.context_indep_ids,
        config=tree_config,
    )
    ctx_dep = built.ctx_dep
    tm = TransitionModel.build(topology=topo, ctx_dep=ctx_dep)
    model = HmmModel(topology=topo, ctx_dep=ctx_dep, transition_model=tm, phones=lang.phones)
    leaves = init_gmm_from_tree_stats(tree_stats, ctx_dep)
    gmm = DiagGmmSet.from_gaussians(leaves.means, leaves.variances)
    converted = convert_alignments(
        old_alignments, old_transition_model=old_tm, ctx_dep=ctx_dep, transition_model=tm
    )
    start = TriphoneStart(
        model=model,
        gmm=gmm,
        alignments=converted,
        lda=lda,
        tree_objf_gain_per_frame=(built.objf_final - built.objf_initial) / tree_stats.total_count,
    )
    return start, feats


def save_start(init_dir: Path, start: TriphoneStart, config: Mapping) -> None:
    """Keep ``start`` in ``init_dir`` (with the trainer's ``config``, its ``to_dict()``)."""
    init_dir.mkdir(parents=True, exist_ok=True)
    start.gmm.save(init_dir / GMM_FILE)
    write_alignments(start.alignments, init_dir / "ali")
    if start.lda is not None:
        write_kaldi_matrix(init_dir / "lda.mat", start.lda)
    meta = {"config": dict(config), "tree_objf_gain_per_frame": start.tree_objf_gain_per_frame}
    atomic_write_text(init_dir / "start.json", json.dumps(meta) + "\n")
    start.model.save(init_dir)  # hmm.json last: a complete start


def load_start(init_dir: Path, config: Mapping, *, with_lda: bool) -> TriphoneStart | None:
    """The start kept in ``init_dir`` for the same ``config`` (None when there is none)."""
    try:
        meta = json.loads((init_dir / "start.json").read_text(encoding="utf-8"))
        if meta["config"] != dict(config) or not (init_dir / "hmm.json").is_file():
            return None
        lda = read_matrix(init_dir / "lda.mat") if with_lda else None
        return TriphoneStart(
            model=HmmModel.load(init_dir),
            gmm=DiagGmmSet.load(init_dir / GMM_FILE),
            alignments=read_alignments(init_dir / "ali"),
            lda=None if lda is None else np.asarray(lda, dtype=np.float64),
            tree_objf_gain_per_frame=float(meta["tree_objf_gain_per_frame"]),
        )
    except (OSError, KeyError, ValueError, AsrError):
        return None


def start_state(start: TriphoneStart) -> TrainingState:
    """The training state before iteration 1: the start's GMMs, transitions and alignment."""
    return TrainingState(
        next_iter=1,
        gmm=start.gmm,
        log_probs=start.model.transition_model.log_probs.copy(),
        num_gauss=start.gmm.num_gauss,
        alignments=dict(start.alignments),
        failed={},
        log=[],
    )
