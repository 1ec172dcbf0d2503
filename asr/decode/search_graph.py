"""Decoding graphs as flat CSR arrays: what the Viterbi search walks.

:class:`DecodingGraph` holds any OpenFst ``StdVectorFst`` (HCLG, TLG, ...)
flattened into numpy arrays. Per state ``s`` the emitting arcs (ilabel != 0)
are ``arc_start[s] : eps_start[s]`` and the epsilon (non-emitting) arcs are
``eps_start[s] : arc_start[s + 1]``. Every arc has ``ilabel``, ``olabel``,
``weight`` (float32 cost, tropical) and ``nextstate``; emitting arcs also carry
``pdf``, the column of the score matrix they read, through the map
``ilabel_to_pdf: (num_ilabels,) int32`` (entry 0 is -1 for epsilon; for HCLG
ilabel = transition-id and the map is tid -> pdf; for TLG ilabel = token + 1).

Binary ``vector`` FST files (what kaldifst/OpenFst and our graph builders
write) are parsed directly by :class:`asr.graph.fst_arrays.FstArrays`, which is
much faster than iterating arcs through kaldifst; other FST types (e.g. ``const``)
must first be converted with ``fstconvert --fst_type=vector``.

>>> import kaldifst
>>> fst = kaldifst.StdVectorFst()
>>> s0, s1 = fst.add_state(), fst.add_state()
>>> fst.start = s0
>>> fst.add_arc(state=s0, arc=kaldifst.StdArc(1, 5, 0.5, s1))
>>> fst.set_final(state=s1, weight=0.0)
>>> g = DecodingGraph.from_fst(fst, ilabel_to_pdf=[-1, 0])
>>> g.num_states, g.num_arcs, int(g.pdf[0]), int(g.olabel[0])
(2, 1, 0, 5)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.errors import GraphError
from asr.graph.fst_arrays import FstArrays

__all__ = ["GRAPH_FILES", "DecodingGraph", "read_ilabel_map", "resolve_graph_dir"]

#: the graph file of a graph directory, in order of preference
GRAPH_FILES = ("HCLG.fst", "TLG.fst")

_FST_MAGIC = 2125659606
_ARC_DTYPE = np.dtype([("ilabel", "<i4"), ("olabel", "<i4"), ("weight", "<f4"), ("next", "<i4")])


@dataclass(frozen=True, eq=False)
class DecodingGraph:
    """A WFST in CSR form (see the module docstring for the layout).

    Arrays: ``arc_start: (num_states + 1,) int64``, ``eps_start: (num_states,)
    int64``, ``ilabel, olabel, nextstate, pdf: (num_arcs,) int32`` (``pdf`` is -1
    on epsilon arcs), ``weight: (num_arcs,) float32``, ``final_cost:
    (num_states,) float32`` (inf when not final). ``num_pdfs_required`` is
    1 + the largest pdf any emitting arc reads: a score matrix needs at least
    that many columns.
    """

    arc_start: np.ndarray
    eps_start: np.ndarray
    ilabel: np.ndarray
    olabel: np.ndarray
    weight: np.ndarray
    nextstate: np.ndarray
    pdf: np.ndarray
    final_cost: np.ndarray
    start_state: int
    num_pdfs_required: int

    @property
    def num_states(self) -> int:
        return int(self.final_cost.shape[0])

    @property
    def num_arcs(self) -> int:
        return int(self.ilabel.shape[0])

    @classmethod
    def from_arrays(
        cls,
        *,
        src: np.ndarray,
        ilabel: np.ndarray,
        olabel: np.ndarray,
        weight: np.ndarray,
        nextstate: np.ndarray,
        final_cost: np.ndarray,
        start_state: int,
        ilabel_to_pdf: Sequence[int] | np.ndarray | None,
    ) -> DecodingGraph:
        """Build from a flat arc list (``src[i] -ilabel[i]:olabel[i]/weight[i]-> nextstate[i]``).

        ``ilabel_to_pdf=None`` means ``pdf = ilabel - 1`` (the CTC/TLG convention).
        """
        final_cost = np.ascontiguousarray(final_cost, dtype=np.float32)
        num_states = final_cost.shape[0]
        src = np.asarray(src, dtype=np.int64)
        ilabel = np.asarray(ilabel, dtype=np.int32)
        nextstate = np.asarray(nextstate, dtype=np.int32)
        if num_states == 0 or start_state < 0 or start_state >= num_states:
            raise GraphError(
                f"graph has no valid start state (start={start_state}, {num_states} states)"
            )
        if src.size and (src.min() < 0 or src.max() >= num_states):
            raise GraphError("graph arc source state out of range")
        if nextstate.size and (nextstate.min() < 0 or nextstate.max() >= num_states):
            raise GraphError("graph arc nextstate out of range")
        if ilabel.size and ilabel.min() < 0:
            raise GraphError("graph has a negative input label")
        if np.isnan(final_cost).any():
            raise GraphError("graph has a NaN final weight")
        weight = np.asarray(weight, dtype=np.float32)
        if np.isnan(weight).any():
            raise GraphError("graph has a NaN arc weight")

        is_eps = ilabel == 0
        order = np.lexsort((is_eps, src))  # by state, emitting arcs first; stable
        src_sorted = src[order]
        counts = np.bincount(src_sorted, minlength=num_states)
        arc_start = np.zeros(num_states + 1, dtype=np.int64)
        np.cumsum(counts, out=arc_start[1:])
        num_emitting = np.bincount(src[~is_eps], minlength=num_states)
        eps_start = arc_start[:-1] + num_emitting

        ilabel = ilabel[order]
        if ilabel_to_pdf is None:
            pdf = ilabel - 1
        else:
            table = np.asarray(ilabel_to_pdf, dtype=np.int64)
            if ilabel.size and ilabel.max() >= table.shape[0]:
                raise GraphError(
                    f"graph input label {int(ilabel.max())} is out of range of the "
                    f"ilabel_to_pdf map ({table.shape[0]} entries)"
                )
            pdf = table[ilabel]
        pdf = np.where(ilabel == 0, -1, pdf).astype(np.int32)
        if (pdf[ilabel != 0] < 0).any():
            bad = int(ilabel[(ilabel != 0) & (pdf < 0)][0])
            raise GraphError(f"input label {bad} maps to a negative pdf in ilabel_to_pdf")
        num_pdfs_required = int(pdf.max()) + 1 if pdf.size else 0
        return cls(
            arc_start=arc_start,
            eps_start=np.ascontiguousarray(eps_start, dtype=np.int64),
            ilabel=np.ascontiguousarray(ilabel),
            olabel=np.ascontiguousarray(np.asarray(olabel, dtype=np.int32)[order]),
            weight=np.ascontiguousarray(weight[order]),
            nextstate=np.ascontiguousarray(nextstate[order]),
            pdf=np.ascontiguousarray(pdf),
            final_cost=final_cost,
            start_state=int(start_state),
            num_pdfs_required=max(num_pdfs_required, 0),
        )

    @classmethod
    def from_fst(
        cls,
        fst: object,
        ilabel_to_pdf: Sequence[int] | np.ndarray | str | os.PathLike | None,
    ) -> DecodingGraph:
        """Flatten a kaldifst FST object or a binary FST file.

        ``ilabel_to_pdf`` is an array, a path to an ``ilabel_to_pdf.int`` file,
        or None for ``pdf = ilabel - 1``.
        """
        if isinstance(ilabel_to_pdf, (str, os.PathLike)):
            ilabel_to_pdf = read_ilabel_map(ilabel_to_pdf)
        if isinstance(fst, (str, os.PathLike)):
            arrays = FstArrays.read(fst)
        elif hasattr(fst, "write"):
            arrays = FstArrays.from_fst(fst)
        else:
            raise GraphError(f"expected a kaldifst FST or a path, got {type(fst).__name__}")
        if arrays.num_states == 0:
            raise GraphError("graph is empty (no states)")
        return cls.from_arrays(
            src=arrays.src,
            ilabel=arrays.ilabel,
            olabel=arrays.olabel,
            weight=arrays.weight,
            nextstate=arrays.dst,
            final_cost=arrays.final,
            start_state=arrays.start,
            ilabel_to_pdf=ilabel_to_pdf,
        )


def read_ilabel_map(path: str | os.PathLike) -> np.ndarray:
    """Read ``ilabel_to_pdf.int`` (one int per line, line i for ilabel i) as int32."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except OSError as err:
        raise GraphError(f"{path}: cannot read ilabel map: {err}") from None
    values = []
    for line_no, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        try:
            values.append(int(text.split()[-1]))
        except ValueError:
            raise GraphError(f"{path}:{line_no}: expected an integer, got {text!r}") from None
    if not values:
        raise GraphError(f"{path}: ilabel map is empty")
    return np.asarray(values, dtype=np.int32)


def resolve_graph_dir(graph_dir: str | os.PathLike) -> tuple[Path, Path, Path | None]:
    """``(graph .fst, ilabel_to_pdf.int, words.txt or None)`` of a graph directory."""
    graph_dir = Path(graph_dir)
    if not graph_dir.is_dir():
        raise GraphError(f"{graph_dir}: graph directory not found")
    fst = next((graph_dir / n for n in GRAPH_FILES if (graph_dir / n).is_file()), None)
    if fst is None:
        raise GraphError(f"{graph_dir}: no {' or '.join(GRAPH_FILES)} in the graph directory")
    ilabel_map = graph_dir / "ilabel_to_pdf.int"
    if not ilabel_map.is_file():
        raise GraphError(f"{ilabel_map}: not found")
    words = graph_dir / "words.txt"
    return fst, ilabel_map, words if words.is_file() else None
