"""Forced alignment: per-utterance training graphs, Viterbi and equal alignment, alignment I/O.

* :mod:`asr.align.training_graphs` — H o C o L o transcript per utterance (``compile-train-graphs``);
* :mod:`asr.align.aligner` — Viterbi alignment with our beam search, flat-start equal alignment,
  data-parallel alignment jobs over any :class:`FrameScorer` (``asr align`` for GMM model dirs
  and GMM statistics over alignments: :mod:`asr.gmm.alignment`, :mod:`asr.gmm.jobs`);
* :mod:`asr.align.forward_backward` — Baum-Welch state posteriors over training graphs;
* :mod:`asr.align.io` — ``ali.ark``/``ali.scp``/``ali.txt``/``failed.txt``.

>>> from asr.align import TrainingGraphCompiler, align_utterance  # doctest: +SKIP
>>> graph = TrainingGraphCompiler(lang=lang, model=model).compile("YES NO")  # doctest: +SKIP
>>> align_utterance(graph, log_likes, transition_model=model.transition_model)  # doctest: +SKIP
"""

from asr.align.aligner import (
    AlignConfig,
    AlignedChunk,
    AlignJob,
    AlignJobResult,
    FrameScorer,
    UttAlignment,
    align_chunks,
    align_utterance,
    equal_alignment,
    graph_pdfs,
    run_alignment_job,
    silence_pdfs,
    utterance_posteriors,
)
from asr.align.io import (
    read_alignments,
    read_alignments_ark,
    read_alignments_scp,
    read_alignments_text,
    read_failed,
    write_alignments,
    write_failed,
)
from asr.align.training_graphs import (
    TrainingGraph,
    TrainingGraphCompiler,
    TrainingGraphConfig,
    scaled_transition_costs,
)

__all__ = [
    "AlignConfig",
    "AlignJob",
    "AlignJobResult",
    "AlignedChunk",
    "FrameScorer",
    "TrainingGraph",
    "TrainingGraphCompiler",
    "TrainingGraphConfig",
    "UttAlignment",
    "align_chunks",
    "align_utterance",
    "equal_alignment",
    "graph_pdfs",
    "read_alignments",
    "read_alignments_ark",
    "read_alignments_scp",
    "read_alignments_text",
    "read_failed",
    "run_alignment_job",
    "scaled_transition_costs",
    "silence_pdfs",
    "utterance_posteriors",
    "write_alignments",
    "write_failed",
]


def __getattr__(name: str):  # lazy: the forward-backward kernels compile on first use
    if name in ("forward_backward", "pdf_posteriors", "transition_counts", "FbResult"):
        from asr.align import forward_backward as module

        return getattr(module, name)
    raise AttributeError(name)
