"""Per-utterance training graphs: H o C o L o transcript (Kaldi's ``compile-train-graphs``).

For a transcript ``w_1 .. w_n`` the graph accepts exactly the transition-id sequences of the
transcript's pronunciations with optional silence between words (as ``L.fst`` allows). Steps,
in Kaldi's ``TrainingGraphCompiler::CompileGraph`` order:

1. ``LW = L o W`` with ``W`` the linear word acceptor (``L.fst``: the lexicon with optional
   silence, no disambiguation symbols; nothing is determinized at this level);
2. context, ``H``, ``determinize_star``, removal of the disambiguation transition-ids,
   ``minimize_encoded`` and self-loops (``--reorder``): the shared builder
   :func:`asr.graph.mkgraph.build_hclg` run on ``LW``.

As in Kaldi, the graph is compiled *without* transition probabilities (both scales 0): they
change at every training iteration, so the aligner adds the current model's probabilities when
it searches (:meth:`TrainingGraph.decoding_graph`, Kaldi's ``AddTransitionProbs`` with
``--transition-scale=1.0 --self-loop-scale=0.1``). The only weights kept in the compiled graph
are the lexicon's (pronunciation and silence probabilities).

>>> import tempfile
>>> from asr.lang import Lexicon, prepare_lang
>>> from asr.hmm import init_monophone
>>> lang = prepare_lang(Lexicon.from_pairs([("YES", "Y"), ("NO", "N")]), tempfile.mkdtemp())
>>> model = init_monophone(lang)
>>> compiler = TrainingGraphCompiler(lang=lang, model=model)
>>> graph = compiler.compile("YES NO")
>>> graph.word_ids
(3, 2)
>>> dg = graph.decoding_graph(model.transition_model)
>>> dg.num_states == graph.fst.num_states
True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import kaldifst
import numpy as np

from asr.decode.search_graph import DecodingGraph
from asr.errors import AlignmentError, AsrError
from asr.graph.fst_arrays import FstArrays
from asr.graph.mkgraph import MkGraphConfig, build_hclg
from asr.hmm.model import HmmModel
from asr.hmm.transition_model import TransitionModel
from asr.lang import Lang

__all__ = [
    "TrainingGraph",
    "TrainingGraphCompiler",
    "TrainingGraphConfig",
    "scaled_transition_costs",
]


@dataclass(frozen=True)
class TrainingGraphConfig:
    """Options of :class:`TrainingGraphCompiler`.

    ``map_oov``: map transcript words missing from ``words.txt`` to the lang's OOV word
    (Kaldi's ``sym2int.pl --map-oov``); by default such an utterance is an
    :class:`~asr.errors.AlignmentError` (reported and skipped by the aligner).
    """

    map_oov: bool = False
    delta: float = 1.0 / 1024.0
    max_states: int = -1


def scaled_transition_costs(
    transition_model: TransitionModel,
    *,
    transition_scale: float = 1.0,
    self_loop_scale: float = 0.1,
) -> np.ndarray:
    """``(num_transition_ids + 1,) float64`` cost (minus scaled log-prob) added to an arc per
    input transition-id (Kaldi's ``GetScaledTransitionLogProb``); entry 0 is 0.

    Self-loops: ``self_loop_scale * log p``; other transitions:
    ``self_loop_scale * log(1 - p(loop)) + transition_scale * log(p / (1 - p(loop)))``.
    """
    tm = transition_model
    non_loop = tm.non_self_loop_log_prob()[tm.tid2tstate]
    forward = self_loop_scale * non_loop + transition_scale * (tm.log_probs - non_loop)
    log_prob = np.where(tm.is_self_loop, self_loop_scale * tm.log_probs, forward)
    log_prob[0] = 0.0
    return -log_prob


@dataclass(frozen=True, eq=False)
class TrainingGraph:
    """One utterance's compiled graph: ``fst`` (input transition-ids, output word ids, no
    transition probabilities) and the transcript's ``word_ids``."""

    fst: FstArrays
    word_ids: tuple[int, ...]

    @property
    def num_states(self) -> int:
        return self.fst.num_states

    def min_num_frames(self) -> int:
        """Fewest emitting arcs on any path from the start to a final state (a shorter
        utterance cannot be aligned)."""
        fst = self.fst
        dist = np.full(fst.num_states, np.iinfo(np.int64).max // 2, dtype=np.int64)
        dist[fst.start] = 0
        cost = (fst.ilabel != 0).astype(np.int64)
        for _ in range(fst.num_states):  # Bellman-Ford over all arcs at once (tiny graphs)
            relaxed = dist.copy()
            np.minimum.at(relaxed, fst.dst, dist[fst.src] + cost)
            if np.array_equal(relaxed, dist):
                break
            dist = relaxed
        finals = np.isfinite(fst.final)
        return int(dist[finals].min()) if finals.any() else -1

    def decoding_graph(
        self,
        transition_model: TransitionModel,
        *,
        transition_scale: float = 1.0,
        self_loop_scale: float = 0.1,
    ) -> DecodingGraph:
        """The searchable graph with the model's transition probabilities added (pdfs from
        ``transition_model.tid2pdf``). The CSR layout is kept from the previous call when the
        pdfs are the same (training re-aligns with new probabilities only)."""
        fst = self.fst
        costs = scaled_transition_costs(
            transition_model, transition_scale=transition_scale, self_loop_scale=self_loop_scale
        )
        if fst.ilabel.size and int(fst.ilabel.max()) > transition_model.num_transition_ids:
            raise AlignmentError("training graph has transition-ids the model does not have")
        weight = (fst.weight.astype(np.float64) + costs[fst.ilabel]).astype(np.float32)
        cached = self.__dict__.get("_search_layout")
        if cached is not None and np.array_equal(cached[0], transition_model.tid2pdf):
            # Same arcs and pdfs as last time (every iteration): only the weights change.
            if np.isnan(weight).any():
                raise AlignmentError("transition model gives NaN arc costs")
            graph, order = cached[1], cached[2]
            return dataclasses.replace(graph, weight=np.ascontiguousarray(weight[order]))
        ilabel_to_pdf = transition_model.tid2pdf.astype(np.int64).copy()
        ilabel_to_pdf[0] = -1
        graph = DecodingGraph.from_arrays(
            src=fst.src,
            ilabel=fst.ilabel,
            olabel=fst.olabel,
            weight=weight,
            nextstate=fst.dst,
            final_cost=fst.final,
            start_state=fst.start,
            ilabel_to_pdf=ilabel_to_pdf,
        )
        order = np.lexsort((fst.ilabel == 0, fst.src))  # DecodingGraph's arc order
        layout = (transition_model.tid2pdf.copy(), graph, order)
        object.__setattr__(self, "_search_layout", layout)  # a cache, not part of the value
        return graph


class TrainingGraphCompiler:
    """Compiles transcripts into :class:`TrainingGraph` objects for one lang dir and model.

    ``L.fst`` is read once (sorted on output labels); each :meth:`compile` call composes it
    with the transcript's linear acceptor and runs the shared HCLG builder.
    """

    def __init__(
        self, *, lang: Lang, model: HmmModel, config: TrainingGraphConfig | None = None
    ) -> None:
        self.lang = lang
        self.model = model
        self.config = config or TrainingGraphConfig()
        model.check_phones(lang.phones, what=f"lang dir {lang.path}")
        self._lexicon_fst = lang.load_l_fst(disambig=False)
        kaldifst.arcsort(self._lexicon_fst, sort_type="olabel")
        self._build_config = MkGraphConfig(
            self_loop_scale=0.0,
            transition_scale=0.0,
            delta=self.config.delta,
            max_states=self.config.max_states,
        )

    def word_ids(self, transcript: str | Sequence[str]) -> tuple[int, ...]:
        """Word ids of a transcript; :class:`AlignmentError` naming unknown words."""
        words = transcript.split() if isinstance(transcript, str) else list(transcript)
        table = self.lang.words
        ids, unknown = [], []
        for word in words:
            word_id = table.get(word)
            if word_id is None and self.config.map_oov:
                word_id = table.get(self.lang.oov_word)
            if word_id is None:
                unknown.append(word)
            else:
                ids.append(word_id)
        if unknown:
            raise AlignmentError(f"words not in words.txt: {' '.join(sorted(set(unknown)))}")
        if not ids:
            raise AlignmentError("empty transcript")
        return tuple(ids)

    def compile(self, transcript: str | Sequence[str]) -> TrainingGraph:
        """The training graph of one transcript (words as a string or a list)."""
        word_ids = self.word_ids(transcript)
        acceptor = kaldifst.make_linear_acceptor(list(word_ids))
        lw = kaldifst.compose(self._lexicon_fst, acceptor)
        if lw.num_states == 0:
            raise AlignmentError("L o transcript is empty (a word without pronunciation?)")
        try:
            fst = build_hclg(
                lw,
                model=self.model,
                disambig_phone_ids=self.lang.disambig_phone_ids,
                config=self._build_config,
            )
        except AsrError as err:
            raise AlignmentError(f"cannot compile the training graph: {err}") from None
        if fst.num_states == 0 or not np.isfinite(fst.final).any():
            raise AlignmentError("training graph is empty")
        return TrainingGraph(fst=fst, word_ids=word_ids)

    def compile_many(
        self, texts: Mapping[str, str]
    ) -> tuple[dict[str, TrainingGraph], dict[str, str]]:
        """``(graphs, failed)`` for ``utt_id -> transcript``; ``failed`` maps utt_id -> reason."""
        graphs: dict[str, TrainingGraph] = {}
        failed: dict[str, str] = {}
        by_text: dict[
            str, TrainingGraph | str
        ] = {}  # utterances sharing a transcript share a graph
        for utt_id, text in texts.items():
            key = " ".join(text.split())
            if key not in by_text:
                try:
                    by_text[key] = self.compile(key)
                except AlignmentError as err:
                    by_text[key] = str(err)
            result = by_text[key]
            if isinstance(result, str):
                failed[utt_id] = result
            else:
                graphs[utt_id] = result
        return graphs, failed
