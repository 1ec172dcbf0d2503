"""Random decoding problems shared by the ``test_decode_*`` modules: a random graph with
epsilon arcs and self-loops, an ilabel -> pdf table and random log-likelihoods."""

from __future__ import annotations

import kaldifst
import numpy as np


def random_fst(
    rng: np.random.Generator,
    *,
    num_states: int,
    num_arcs: int,
    num_ilabels: int,
    num_words: int = 5,
    eps_prob: float = 0.25,
    final_prob: float = 0.4,
    self_loops: bool = True,
    acyclic_eps: bool = False,
) -> kaldifst.StdVectorFst:
    """A random graph with epsilon arcs (non-negative weights), several finals, start 0.

    ``acyclic_eps``: epsilon arcs only go from a lower to a higher state (no epsilon
    cycles, as in HCLG and TLG; lattices need it).
    """
    fst = kaldifst.StdVectorFst()
    for _ in range(num_states):
        fst.add_state()
    fst.start = 0
    for _ in range(num_arcs):
        src = int(rng.integers(num_states))
        dst = int(rng.integers(num_states))
        ilabel = 0 if rng.random() < eps_prob else int(rng.integers(1, num_ilabels))
        if ilabel == 0 and acyclic_eps and src >= dst:
            if src == dst:
                ilabel = int(rng.integers(1, num_ilabels))
            else:
                src, dst = dst, src
        olabel = int(rng.integers(0, num_words + 1)) if rng.random() < 0.5 else 0
        fst.add_arc(state=src, arc=kaldifst.StdArc(ilabel, olabel, float(rng.uniform(0, 3)), dst))
    if self_loops:  # HMM-like self-loops keep long utterances decodable
        for s in range(num_states):
            if rng.random() < 0.5:
                fst.add_arc(
                    state=s,
                    arc=kaldifst.StdArc(
                        int(rng.integers(1, num_ilabels)), 0, float(rng.uniform(0, 2)), s
                    ),
                )
    finals = rng.random(num_states) < final_prob
    finals[int(rng.integers(num_states))] = True
    for s in np.flatnonzero(finals):
        fst.set_final(state=int(s), weight=float(rng.uniform(0, 2)))
    return fst


def random_problem(
    seed: int,
    *,
    num_states=6,
    num_arcs=18,
    num_ilabels=6,
    num_pdfs=4,
    num_frames=6,
    acyclic_eps=False,
):
    rng = np.random.default_rng(seed)
    fst = random_fst(
        rng,
        num_states=num_states,
        num_arcs=num_arcs,
        num_ilabels=num_ilabels,
        acyclic_eps=acyclic_eps,
    )
    ilabel_to_pdf = np.concatenate([[-1], rng.integers(0, num_pdfs, num_ilabels - 1)]).astype(
        np.int32
    )
    log_likes = rng.normal(-3.0, 2.0, (num_frames, num_pdfs)).astype(np.float32)
    return fst, ilabel_to_pdf, log_likes
