"""Viterbi beam-search decoding over WFSTs (HCLG/TLG).

>>> from asr.decode import DecodingGraph, DecoderConfig, decode  # doctest: +SKIP
>>> graph = DecodingGraph.from_fst("graph/HCLG.fst", "graph/ilabel_to_pdf.int")  # doctest: +SKIP
>>> decode(graph, log_likes, DecoderConfig(beam=13.0)).word_ids  # doctest: +SKIP
"""

from asr.decode.search_graph import DecodingGraph, read_ilabel_map, resolve_graph_dir
from asr.decode.traceback import DecodeResult
from asr.decode.viterbi import DecoderConfig, decode

__all__ = [
    "DecodingGraph",
    "DecodeResult",
    "DecoderConfig",
    "decode",
    "decode_batch",
    "OnlineDecoder",
    "TorchOnlineDecoder",
    "read_ilabel_map",
    "resolve_graph_dir",
]


def __getattr__(name: str):  # lazy: torch is only imported for the batched search
    if name == "decode_batch":
        from asr.decode.batched import decode_batch

        return decode_batch
    if name == "OnlineDecoder":
        from asr.decode.online import OnlineDecoder

        return OnlineDecoder
    if name == "TorchOnlineDecoder":
        from asr.decode.batched_online import TorchOnlineDecoder

        return TorchOnlineDecoder
    raise AttributeError(name)
