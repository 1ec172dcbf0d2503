"""Incremental batched Viterbi search in torch: many streams advanced by one step each frame.

:class:`TorchOnlineDecoder` has the interface of :class:`asr.decode.online.OnlineDecoder`
(``init``, ``advance``, ``partial``, ``finalize``, ``final_relative_cost``), with its search
state (tokens and back-pointer arena, a :class:`asr.decode.batched.TorchSearchState`) in torch
tensors on the device of a shared :class:`asr.decode.batched.BatchedSearch` (the graph
resident there). :func:`advance_torch_decoders` advances several such decoders, each by its
own chunk of scores, in one batched search (:meth:`BatchedSearch.advance`, whose semantics
equal the compiled single-stream search up to ties between equal-cost paths). Streams join
and leave between calls: each decoder keeps its own state between them.

>>> import numpy as np, kaldifst
>>> from asr.decode.search_graph import DecodingGraph
>>> graph = DecodingGraph.from_fst(kaldifst.compile("0 0 1 9 0.0\\n0 0.0\\n"), [-1, 0])
>>> search = BatchedSearch(graph)
>>> a, b = TorchOnlineDecoder(search), TorchOnlineDecoder(search)
>>> a.init(); b.init()
>>> advance_torch_decoders([a, b], [np.zeros((2, 1), np.float32), np.zeros((1, 1), np.float32)])
>>> a.finalize().word_ids, b.finalize().word_ids
((9, 9), (9,))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from asr.decode.batched import BatchedSearch, TorchSearchState
from asr.decode.search_graph import DecodingGraph
from asr.decode.traceback import DecodeResult, build_result
from asr.decode.viterbi import DecoderConfig
from asr.endpoint import final_relative_cost
from asr.errors import DecodeError

__all__ = ["BatchedSearch", "TorchOnlineDecoder", "advance_torch_decoders"]


class TorchOnlineDecoder:
    """One utterance's search on a :class:`BatchedSearch`'s device (see the module
    docstring); not thread-safe."""

    def __init__(
        self,
        search: BatchedSearch,
        *,
        word_symbols: Mapping[int, str] | None = None,
        ilabel_to_phone: np.ndarray | None = None,
        silence_phones: frozenset[int] = frozenset(),
    ) -> None:
        self.search = search
        self.graph: DecodingGraph = search.graph
        self.config: DecoderConfig = search.config
        self._result_kwargs = {
            "word_symbols": word_symbols,
            "ilabel_to_phone": ilabel_to_phone,
            "silence_phones": silence_phones,
        }
        self._state: TorchSearchState | None = None
        self._finalized = False

    # ------------------------------------------------------------------ lifecycle
    def init(self) -> None:
        """Start a new utterance: the start token and its epsilon closure."""
        self._state = self.search.start()
        self._finalized = False

    @property
    def num_frames_decoded(self) -> int:
        return self._state.num_frames if self._state is not None else 0

    @property
    def search_state(self) -> TorchSearchState:
        """The open utterance's search state (what :func:`advance_torch_decoders` advances)."""
        self._check_open()
        return self._state

    def advance(self, log_likes_chunk: np.ndarray) -> None:
        """Decode the frames of ``log_likes_chunk: (num_frames, num_pdfs)``."""
        advance_torch_decoders([self], [log_likes_chunk])

    def partial(self) -> DecodeResult:
        """Current best hypothesis (not necessarily in a final state)."""
        self._check_open()
        return self._result(use_final=False)

    def finalize(self) -> DecodeResult:
        """End the utterance: best path preferring final states (as offline decoding)."""
        self._check_open()
        if self._state.num_frames == 0:
            raise DecodeError("no frames were decoded before finalize()")
        self._finalized = True
        return self._result(use_final=True)

    def final_relative_cost(self) -> float:
        """Kaldi's ``FinalRelativeCost`` of the current tokens (:mod:`asr.endpoint`)."""
        state, cost = (x.cpu().numpy() for x in self.search_state.tokens[:2])
        return final_relative_cost(cost, self.graph.final_cost[state])

    def _check_open(self) -> None:
        if self._state is None:
            raise DecodeError("TorchOnlineDecoder: call init() before decoding")
        if self._finalized:
            raise DecodeError("TorchOnlineDecoder: utterance already finalized; call init()")

    def _result(self, *, use_final: bool) -> DecodeResult:
        state = self._state
        arcs, token_cost, reached, end_state = self.search.best_path(state, use_final=use_final)
        return build_result(
            graph=self.graph,
            path_arcs=arcs,
            token_cost=token_cost,
            final_cost=float(self.graph.final_cost[end_state]) if (reached and use_final) else 0.0,
            reached_final=reached,
            num_frames=state.num_frames,
            **self._result_kwargs,
        )


def advance_torch_decoders(
    decoders: Sequence[TorchOnlineDecoder], chunks: Sequence[np.ndarray]
) -> None:
    """Advance each decoder by its chunk of scores ``(num_frames, num_pdfs)`` (0 frames
    allowed), all in one batched search; the decoders must share one :class:`BatchedSearch`."""
    if len(decoders) != len(chunks):
        raise DecodeError(f"{len(decoders)} decoders but {len(chunks)} score chunks")
    if not decoders:
        return
    search = decoders[0].search
    states, scores = [], []
    for decoder, chunk in zip(decoders, chunks, strict=True):
        states.append(decoder.search_state)
        if decoder.search is not search:
            raise DecodeError("decoders advanced together must share one BatchedSearch")
        scores.append(search.check_scores(chunk, allow_empty=True))
    search.advance(states, scores)
