"""Lattices in Kaldi's text formats (``ark,t``), so Kaldi tools read what we write.

- Raw lattices as Kaldi's ``Lattice`` text (what ``lattice-copy ark:... ark,t:-`` prints):
  ``src dst tid word graph,acoustic`` per arc, ``state graph,acoustic`` per final state.
- Word lattices as ``CompactLattice`` text: ``src dst word graph,acoustic,t1_t2_...`` per
  arc and ``state graph,acoustic,t1_t2_...`` per final state (an empty string after the
  last comma).

Each entry is ``utt_id`` on its own line, the lines above, and an empty line. Costs are
written with 7 significant digits (Kaldi writes floats the same way); acoustic costs are
unscaled, as Kaldi's lattice-generating decoders write them.

>>> import io, numpy as np
>>> from asr.lattice.word import WordLattice
>>> lat = WordLattice.from_parts(2, [(0, 1, 5, 1.5, 20.0, (3, 3, 4))], {1: (0.5, 0.0, ())}, 3, 0.1)
>>> buf = io.StringIO(); write_word_lattice(buf, "utt1", lat); print(buf.getvalue(), end="")
utt1
0 1 5 1.5,20,3_3_4
1 0.5,0,
<BLANKLINE>
>>> [(u, l.num_arcs) for u, l in read_word_lattices(io.StringIO(buf.getvalue()), acoustic_scale=0.1)]
[('utt1', 1)]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TextIO

import numpy as np

from asr.errors import DecodeError
from asr.lattice.raw import RawLattice
from asr.lattice.word import WordLattice

__all__ = ["write_raw_lattice", "write_word_lattice", "read_word_lattices"]


def _num(x: float) -> str:
    return f"{float(x):.7g}"


def write_raw_lattice(out: TextIO, utt_id: str, lat: RawLattice) -> None:
    """One raw lattice as a Kaldi ``Lattice`` text entry."""
    lines = [utt_id]
    for i in range(lat.num_arcs):
        lines.append(
            f"{lat.src[i]} {lat.dst[i]} {lat.ilabel[i]} {lat.olabel[i]} "
            f"{_num(lat.graph_cost[i])},{_num(lat.acoustic_cost[i])}"
        )
    for s in np.flatnonzero(np.isfinite(lat.final_cost)):
        lines.append(f"{s} {_num(lat.final_cost[s])},0")
    out.write("\n".join(lines) + "\n\n")


def write_word_lattice(out: TextIO, utt_id: str, lat: WordLattice) -> None:
    """One word lattice as a Kaldi ``CompactLattice`` text entry."""
    lines = [utt_id]
    for i in range(lat.num_arcs):
        tids = "_".join(str(t) for t in lat.arc_tids(i))
        lines.append(
            f"{lat.src[i]} {lat.dst[i]} {lat.word[i]} "
            f"{_num(lat.graph_cost[i])},{_num(lat.acoustic_cost[i])},{tids}"
        )
    for s in np.flatnonzero(np.isfinite(lat.final_graph)):
        tids = "_".join(str(t) for t in lat.final_tids_of(int(s)))
        lines.append(f"{s} {_num(lat.final_graph[s])},{_num(lat.final_acoustic[s])},{tids}")
    out.write("\n".join(lines) + "\n\n")


def read_word_lattices(
    source: TextIO, *, acoustic_scale: float, num_frames: int | None = None
) -> Iterator[tuple[str, WordLattice]]:
    """``(utt_id, WordLattice)`` for each ``CompactLattice`` text entry of ``source``."""
    utt: str | None = None
    rows: list[tuple[int, list[str]]] = []
    for line_no, line in enumerate(source, start=1):
        fields = line.split()
        if not fields:
            if utt is not None:
                yield utt, _parse_entry(utt, rows, acoustic_scale, num_frames)
            utt, rows = None, []
        elif utt is None:
            if len(fields) != 1:
                raise DecodeError(f"line {line_no}: expected an utterance id, got {line.strip()!r}")
            utt = fields[0]
        else:
            rows.append((line_no, fields))
    if utt is not None:
        yield utt, _parse_entry(utt, rows, acoustic_scale, num_frames)


def _parse_weight(field: str, line_no: int) -> tuple[float, float, tuple[int, ...]]:
    parts = field.split(",")
    if len(parts) != 3:
        raise DecodeError(f"line {line_no}: expected graph,acoustic,tids, got {field!r}")
    try:
        tids = tuple(int(t) for t in parts[2].split("_")) if parts[2] else ()
        return float(parts[0]), float(parts[1]), tids
    except ValueError:
        raise DecodeError(f"line {line_no}: bad lattice weight {field!r}") from None


def _parse_entry(utt, rows, acoustic_scale, num_frames) -> WordLattice:
    arcs = []
    finals = {}
    num_states = 1
    for line_no, fields in rows:
        if len(fields) == 4:
            try:
                src, dst, word = int(fields[0]), int(fields[1]), int(fields[2])
            except ValueError:
                raise DecodeError(f"line {line_no}: bad arc {' '.join(fields)!r}") from None
            arcs.append((src, dst, word, *_parse_weight(fields[3], line_no)))
            num_states = max(num_states, src + 1, dst + 1)
        elif len(fields) == 2:
            s = int(fields[0])
            finals[s] = _parse_weight(fields[1], line_no)
            num_states = max(num_states, s + 1)
        else:
            raise DecodeError(f"line {line_no}: not a CompactLattice line: {' '.join(fields)!r}")
    if not finals:
        raise DecodeError(f"lattice {utt!r} has no final state")
    frames = num_frames
    lat = WordLattice.from_parts(num_states, arcs, finals, frames or 0, acoustic_scale)
    if frames is None and lat.num_states:
        ends = lat.state_frame + np.diff(lat.final_tid_start)
        frames = int(ends[np.isfinite(lat.final_graph)].max())
        lat = WordLattice.from_parts(num_states, arcs, finals, frames, acoustic_scale)
    return lat
