"""``asr align``: align a data dir with a trained GMM model dir (Kaldi's ``align_si.sh``, and
``align_fmllr.sh`` for a speaker-adaptive model: :func:`asr.gmm.train_sat.align_fmllr`).

:func:`align_data_dir` writes ``ali.ark``/``ali.scp``/``ali.txt``, ``failed.txt`` and
``ali_info.json`` (and ``trans.npz``, the speakers' transforms, for a SAT model). The jobs
(utterances split by speaker) run on any executor (:mod:`asr.parallel`).

>>> from asr.gmm.alignment import align_data_dir  # doctest: +SKIP
>>> align_data_dir("data/an4/train", "data/an4/lang", "exp/an4/tri1", "exp/an4/tri1_ali")  # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.acoustic_model import read_model_info
from asr.align.aligner import (
    AlignConfig,
    AlignJob,
    AlignJobResult,
    run_alignment_job,
    silence_pdfs,
)
from asr.align.io import write_alignments, write_failed
from asr.align.training_graphs import TrainingGraphCompiler
from asr.errors import AlignmentError
from asr.fileio import atomic_write_text
from asr.gmm.diag_gmm import DiagGmmSet
from asr.gmm.gmm_acoustic import GMM_FILE
from asr.gmm.jobs import scores_pdf_subsets
from asr.gmm.train_sat import SAT_FAMILY, align_fmllr
from asr.hmm.model import HmmModel
from asr.parallel import job_executor, map_jobs, split_by_speaker

__all__ = ["ALI_INFO_FILE", "AlignSummary", "align_data_dir"]

ALI_INFO_FILE = "ali_info.json"


@dataclass(frozen=True)
class AlignSummary:
    """Result of :func:`align_data_dir`."""

    num_aligned: int
    num_failed: int
    num_frames: int
    log_like_per_frame: float
    num_retried: int
    out_dir: str


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
    model_info = read_model_info(model_dir)
    sat_info = model_info if model_info and model_info.get("family") == SAT_FAMILY else None

    with job_executor(len(split), executor) as pool:

        def run(job_gmm: DiagGmmSet, job_feats: Mapping[str, np.ndarray]) -> list[AlignJobResult]:
            jobs = [
                AlignJob(
                    utt_ids=ids,
                    feats={u: job_feats[u] for u in ids if u in job_feats},
                    graphs={u: graphs[u] for u in ids if u in graphs},
                    scorer=job_gmm,
                    transition_model=model.transition_model,
                    mode="align",
                    align_config=config,
                    silence_pdf_ids=silence,
                    subset_scoring=scores_pdf_subsets(job_gmm),
                )
                for ids in split
            ]
            return map_jobs(run_alignment_job, jobs, pool)

        if sat_info is None:
            results = run(gmm, feats)
        else:
            results = align_fmllr(
                run, model_dir=model_dir, gmm=gmm, transition_model=model.transition_model,
                feats=feats, utt2spk=utt2spk,
                silence_phone_ids=tuple(sat_info["silence_phone_ids"]), split=split,
                executor=pool, out_dir=out_dir,
            )  # fmt: skip
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
