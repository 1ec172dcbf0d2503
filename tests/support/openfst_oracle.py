"""OpenFst computations the decoder and lattice tests compare against (shared by
``tests/test_decode_viterbi.py``, ``tests/test_lattice.py``, ``tests/test_lattice_rescore.py``)."""

from __future__ import annotations

import math

import kaldifst
import numpy as np


def score_lattice(ilabel_to_pdf, log_likes: np.ndarray, acoustic_scale: float):
    """The frame acceptor of ``log_likes``: state t -ilabel/-scale*log_like[t, pdf]-> t + 1."""
    num_frames = log_likes.shape[0]
    lat = kaldifst.StdVectorFst()
    for _ in range(num_frames + 1):
        lat.add_state()
    lat.start = 0
    lat.set_final(state=num_frames, weight=0.0)
    scaled = np.float32(acoustic_scale) * log_likes
    for t in range(num_frames):
        for i in range(1, len(ilabel_to_pdf)):
            cost = -float(scaled[t, ilabel_to_pdf[i]])
            lat.add_arc(state=t, arc=kaldifst.StdArc(i, i, cost, t + 1))
    return lat


def best_cost_of_words(fst, words) -> float:
    """The best cost of ``fst``'s paths whose output is ``words`` (inf when none)."""
    linear = kaldifst.StdVectorFst()
    linear.add_state()
    linear.start = 0
    for k, w in enumerate(words):
        linear.add_state()
        linear.add_arc(state=k, arc=kaldifst.StdArc(w, w, 0.0, k + 1))
    linear.set_final(state=len(words), weight=0.0)
    kaldifst.arcsort(fst, sort_type="olabel")
    best = kaldifst.shortest_path(kaldifst.compose(fst, linear))
    if best.num_states == 0:
        return math.inf
    return float(kaldifst.get_linear_symbol_sequence(best)[3].value)
