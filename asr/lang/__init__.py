"""Lang directories: symbol tables, lexicons, disambiguation, HMM topology, L.fst.

>>> from asr.lang import Lexicon, prepare_lang
>>> import tempfile
>>> lang = prepare_lang(Lexicon.from_pairs([("YES", "Y"), ("NO", "N")]), tempfile.mkdtemp())
>>> lang.words.symbol(lang.word_disambig_id)
'#0'
"""

from asr.lang.lexicon import (
    Lexicon,
    LexiconEntry,
    add_disambig_symbols,
    read_lexicon,
    read_vocabulary,
)
from asr.lang.prepare import Lang, LangConfig, make_lexicon_fst, prepare_lang, read_lang
from asr.lang.symbols import SymbolTable, read_int_list, read_symbol_table
from asr.lang.topology import (
    HmmState,
    Topology,
    TopologyEntry,
    make_default_topology,
    read_topology,
)

__all__ = [
    "HmmState",
    "Lang",
    "LangConfig",
    "Lexicon",
    "LexiconEntry",
    "SymbolTable",
    "Topology",
    "TopologyEntry",
    "add_disambig_symbols",
    "make_default_topology",
    "make_lexicon_fst",
    "prepare_lang",
    "read_int_list",
    "read_lang",
    "read_lexicon",
    "read_symbol_table",
    "read_topology",
    "read_vocabulary",
]
