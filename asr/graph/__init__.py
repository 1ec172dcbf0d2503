"""Decoding graphs over kaldifst: G (ARPA -> G.fst via kaldilm), L, C, H, HCLG and TLG.

>>> from asr.graph import arpa_to_g
>>> arpa_to_g("lm.arpa", words_txt="lang/words.txt", out_path="lang/G.fst")  # doctest: +SKIP
PosixPath('lang/G.fst')
"""

from asr.graph.ctc import make_ctc_topo, mktlg
from asr.graph.grammar import arpa_to_g
from asr.graph.mkgraph import GraphInfo, MkGraphConfig, mkgraph

__all__ = ["GraphInfo", "MkGraphConfig", "arpa_to_g", "make_ctc_topo", "mkgraph", "mktlg"]
