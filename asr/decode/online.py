"""Incremental (streaming) decoding: feed score chunks, read partial results.

This is THE online decoder: :class:`asr.recognizer.Stream` decodes through it (or through its
batched torch twin :class:`asr.decode.batched_online.TorchOnlineDecoder`, same interface,
when the recognizer's search runs on the model's CUDA device).

:class:`OnlineDecoder` runs the same compiled search as
:func:`asr.decode.viterbi.decode`, one chunk of frames at a time; after
``finalize()`` the result equals the offline one on the concatenated scores.
``partial()`` returns the current best hypothesis (the lowest-cost token,
final or not, without final costs), as a streaming client wants for interim
results.

>>> import numpy as np, kaldifst
>>> from asr.decode.search_graph import DecodingGraph
>>> fst = kaldifst.StdVectorFst()
>>> s0 = fst.add_state()
>>> fst.start = s0
>>> fst.add_arc(state=s0, arc=kaldifst.StdArc(1, 9, 0.0, s0))
>>> fst.set_final(state=s0, weight=0.0)
>>> dec = OnlineDecoder(DecodingGraph.from_fst(fst, ilabel_to_pdf=[-1, 0]))
>>> dec.init()
>>> dec.advance(np.zeros((2, 1), np.float32))
>>> dec.partial().word_ids
(9, 9)
>>> dec.advance(np.zeros((1, 1), np.float32))
>>> dec.finalize().word_ids, dec.num_frames_decoded
((9, 9, 9), 3)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from asr.decode.search_graph import DecodingGraph
from asr.decode.traceback import DecodeResult
from asr.decode.viterbi import DecoderConfig, SearchState, check_log_likes
from asr.endpoint import final_relative_cost
from asr.errors import DecodeError

__all__ = ["OnlineDecoder"]


class OnlineDecoder:
    """Chunk-by-chunk Viterbi beam search over one utterance at a time.

    ``init()`` starts an utterance; ``advance(log_likes_chunk)`` consumes a
    ``(num_frames, num_pdfs)`` chunk (0 frames is allowed); ``partial()`` and
    ``finalize()`` return :class:`~asr.decode.traceback.DecodeResult`. After
    ``finalize()``, call ``init()`` to decode the next utterance (the token
    tables are reused).
    """

    def __init__(
        self,
        graph: DecodingGraph,
        config: DecoderConfig | None = None,
        *,
        word_symbols: Mapping[int, str] | None = None,
        ilabel_to_phone: np.ndarray | None = None,
        silence_phones: frozenset[int] = frozenset(),
    ) -> None:
        self.graph = graph
        self.config = config if config is not None else DecoderConfig()
        self._search = SearchState(graph, self.config)
        self._result_kwargs = {
            "word_symbols": word_symbols,
            "ilabel_to_phone": ilabel_to_phone,
            "silence_phones": silence_phones,
        }
        self._finalized = False

    def init(self) -> None:
        """Start a new utterance."""
        self._search.init()
        self._finalized = False

    @property
    def num_frames_decoded(self) -> int:
        return self._search.num_frames_decoded

    def advance(self, log_likes_chunk: np.ndarray) -> None:
        """Decode the frames of ``log_likes_chunk: (num_frames, num_pdfs)``."""
        self._check_open()
        scores = check_log_likes(self.graph, log_likes_chunk, allow_empty=True)
        self._search.advance(scores)

    def partial(self) -> DecodeResult:
        """Current best hypothesis (not necessarily in a final state)."""
        self._check_open()
        return self._search.result(use_final=False, **self._result_kwargs)

    def final_relative_cost(self) -> float:
        """Kaldi's ``FinalRelativeCost`` of the current tokens (:mod:`asr.endpoint`): how much
        worse the best final token is than the best token (inf: none is final)."""
        self._check_open()
        search = self._search
        states = search.cur_list[: int(search.counters[0])]
        return final_relative_cost(search.cur_cost[states], self.graph.final_cost[states])

    def finalize(self) -> DecodeResult:
        """End the utterance: best path preferring final states (as offline decoding)."""
        self._check_open()
        if self.num_frames_decoded == 0:
            raise DecodeError("no frames were decoded before finalize()")
        self._finalized = True
        return self._search.result(use_final=True, **self._result_kwargs)

    def _check_open(self) -> None:
        if not self._search.initialized:
            raise DecodeError("OnlineDecoder: call init() before decoding")
        if self._finalized:
            raise DecodeError("OnlineDecoder: utterance already finalized; call init()")
