"""Best path -> words, alignments, word boundaries and costs.

:func:`build_result` turns the arc ids of a best path (as found by the search)
into a :class:`DecodeResult`. Costs follow Kaldi's lattice convention:
``graph_cost`` is the sum of arc weights (+ the final cost when the path ends
in a final state), ``acoustic_cost`` is the *scaled* acoustic cost
``-acoustic_scale * sum(log_like)``, and ``total_cost = graph_cost +
acoustic_cost``.

Word boundaries (frames, end exclusive): a word's output label marks the frame
where it is emitted (the frame of the emitting arc that carries it, or of the
next emitting arc when it sits on an epsilon arc). Word ``k`` spans from its
emission frame to the emission frame of word ``k + 1`` (the last word ends at
``num_frames``). Graph builders can move output labels inside a word, so these
are approximate. When ``ilabel_to_phone`` (frame-level ilabel -> phone map) and
``silence_phones`` are given, silence frames are trimmed from both ends of each
span (a span that is silence only is left as is).

>>> import numpy as np, kaldifst
>>> from asr.decode.search_graph import DecodingGraph
>>> fst = kaldifst.StdVectorFst()
>>> s0, s1 = fst.add_state(), fst.add_state()
>>> fst.start = s0
>>> fst.add_arc(state=s0, arc=kaldifst.StdArc(1, 3, 0.5, s1))
>>> fst.set_final(state=s1, weight=0.25)
>>> g = DecodingGraph.from_fst(fst, ilabel_to_pdf=[-1, 0])
>>> r = build_result(graph=g, path_arcs=np.array([0]), token_cost=2.5, final_cost=0.25,
...                  reached_final=True, num_frames=1, word_symbols={3: "HI"})
>>> r.words, r.word_boundaries.tolist(), r.graph_cost, r.acoustic_cost, r.total_cost
(('HI',), [[0, 1]], 0.75, 2.0, 2.75)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from asr.decode.search_graph import DecodingGraph
from asr.errors import DecodeError

__all__ = ["DecodeResult", "build_result", "lookup_words"]


@dataclass(frozen=True, eq=False)
class DecodeResult:
    """The 1-best hypothesis of one utterance.

    ``alignment: (num_frames,) int32`` input label (transition-id for HCLG) per
    frame; ``pdf_alignment: (num_frames,) int32`` pdf per frame;
    ``word_boundaries: (num_words, 2) int32`` ``[start_frame, end_frame)`` per
    word; ``words`` is None when no symbol table was given.
    """

    word_ids: tuple[int, ...]
    words: tuple[str, ...] | None
    alignment: np.ndarray
    pdf_alignment: np.ndarray
    word_boundaries: np.ndarray
    total_cost: float
    acoustic_cost: float
    graph_cost: float
    reached_final: bool
    num_frames: int

    @property
    def text(self) -> str:
        """The words joined by spaces (word ids when no symbol table was given)."""
        if self.words is not None:
            return " ".join(self.words)
        return " ".join(str(w) for w in self.word_ids)


def lookup_words(word_ids: tuple[int, ...], word_symbols: object) -> tuple[str, ...]:
    """Map ids to symbols with a ``{id: word}`` mapping or an object with ``.symbol(id)``."""
    symbol = getattr(word_symbols, "symbol", None)
    out = []
    for w in word_ids:
        try:
            out.append(symbol(w) if symbol is not None else word_symbols[w])  # type: ignore[index]
        except (KeyError, IndexError):
            raise DecodeError(f"word id {w} is not in the word symbol table") from None
    return tuple(out)


def build_result(
    *,
    graph: DecodingGraph,
    path_arcs: np.ndarray,
    token_cost: float,
    final_cost: float,
    reached_final: bool,
    num_frames: int,
    word_symbols: Mapping[int, str] | None = None,
    ilabel_to_phone: np.ndarray | None = None,
    silence_phones: frozenset[int] = frozenset(),
) -> DecodeResult:
    """Assemble a :class:`DecodeResult` from the arc ids of a best path.

    ``token_cost`` is the search cost of the path's last token (graph +
    scaled acoustic, without the final cost); ``final_cost`` the final weight
    applied (0 when the path does not end in a final state).
    """
    arcs = np.asarray(path_arcs, dtype=np.int64)
    ilabels = graph.ilabel[arcs]
    emitting = ilabels != 0
    alignment = ilabels[emitting].astype(np.int32)
    if alignment.shape[0] != num_frames:
        raise DecodeError(
            f"internal error: best path has {alignment.shape[0]} emitting arcs for {num_frames} frames"
        )
    pdf_alignment = graph.pdf[arcs[emitting]].astype(np.int32)
    olabels = graph.olabel[arcs]
    has_word = olabels != 0
    word_ids = tuple(int(w) for w in olabels[has_word])
    # frame of each arc = number of emitting arcs before it on the path
    frame_of_arc = np.cumsum(emitting) - emitting
    starts = frame_of_arc[has_word].astype(np.int64)
    ends = np.append(starts[1:], num_frames).astype(np.int64)[: starts.shape[0]]
    if ilabel_to_phone is not None and silence_phones and word_ids:
        starts, ends = _trim_silence(alignment, ilabel_to_phone, silence_phones, starts, ends)
    boundaries = np.stack([starts, ends], axis=1).astype(np.int32).reshape(-1, 2)

    arc_graph_cost = float(np.sum(graph.weight[arcs].astype(np.float64)))
    acoustic_cost = float(token_cost) - arc_graph_cost
    graph_cost = arc_graph_cost + float(final_cost)
    words = lookup_words(word_ids, word_symbols) if word_symbols is not None else None
    return DecodeResult(
        word_ids=word_ids,
        words=words,
        alignment=alignment,
        pdf_alignment=pdf_alignment,
        word_boundaries=boundaries,
        total_cost=graph_cost + acoustic_cost,
        acoustic_cost=acoustic_cost,
        graph_cost=graph_cost,
        reached_final=bool(reached_final),
        num_frames=int(num_frames),
    )


def _trim_silence(
    alignment: np.ndarray,
    ilabel_to_phone: np.ndarray,
    silence_phones: frozenset[int],
    starts: np.ndarray,
    ends: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    table = np.asarray(ilabel_to_phone)
    if alignment.size and int(alignment.max()) >= table.shape[0]:
        raise DecodeError(
            f"ilabel {int(alignment.max())} is out of range of ilabel_to_phone ({table.shape[0]} entries)"
        )
    is_sil = np.isin(table[alignment], np.fromiter(silence_phones, dtype=np.int64))
    starts, ends = starts.copy(), ends.copy()
    # per word: first and last non-silence frame inside [start, end)
    nonsil = np.flatnonzero(~is_sil)
    for k in range(starts.shape[0]):  # per word, not per frame
        lo = np.searchsorted(nonsil, starts[k], side="left")
        hi = np.searchsorted(nonsil, ends[k], side="left")
        if hi > lo:
            starts[k] = nonsil[lo]
            ends[k] = nonsil[hi - 1] + 1
    return starts, ends
