"""Lattices: raw state-level lattices from the search, word lattices, and their uses.

>>> from asr.lattice import determinize, Scales  # doctest: +SKIP
>>> word_lat = determinize(raw)  # doctest: +SKIP
>>> [p.word_ids for p in word_lat.nbest(10, Scales(lm_scale=12, acoustic_scale=1))]  # doctest: +SKIP
"""

from asr.lattice.determinize import determinize
from asr.lattice.raw import RawLattice
from asr.lattice.word import LatticePath, Scales, WordLattice

__all__ = ["RawLattice", "WordLattice", "LatticePath", "Scales", "determinize"]
