"""The context transducer C, composed on the fly with LG (Kaldi's ``fstcomposecontext``).

:func:`compose_context` returns ``CLG`` and its ``ilabel_info``: for every input label ``j`` of
CLG the phone window it stands for — ``[]`` for epsilon, ``[p_0 .. p_{N-1}]`` for a phone in
context (``0`` = no phone, at an utterance boundary), ``[-d]`` for the disambiguation phone
``d`` and ``[0]`` for the pseudo-epsilon that starts a context-dependent graph.
``ilabel_info`` is written/read as text, one window per line (``write_ilabel_info``).

>>> import kaldifst
>>> lg = kaldifst.compile("0 1 1 1\\n1 2 3 0\\n2\\n")   # phones 1 then #1 (id 3)
>>> clg, info = compose_context(lg, context_width=1, central_position=0, disambig_phone_ids=[3])
>>> info
[[], [1], [-3]]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import kaldifst

from asr.errors import GraphError
from asr.fileio import atomic_write_text


def compose_context(
    lg: kaldifst.StdVectorFst,
    *,
    context_width: int,
    central_position: int,
    disambig_phone_ids: Sequence[int],
) -> tuple[kaldifst.StdVectorFst, list[list[int]]]:
    """``(CLG, ilabel_info)`` for ``lg`` (phones on its input side); ``lg`` is not modified."""
    if context_width < 1 or not 0 <= central_position < context_width:
        raise GraphError(f"bad context width {context_width} / central position {central_position}")
    clg, ilabel_info = kaldifst.compose_context(
        disambig_syms=list(disambig_phone_ids),
        context_width=context_width,
        central_position=central_position,
        ifst=lg.copy(),
    )
    kaldifst.arcsort(clg, sort_type="ilabel")
    return clg, [list(window) for window in ilabel_info]


def write_ilabel_info(ilabel_info: Sequence[Sequence[int]], path: str | os.PathLike) -> None:
    """One window per line (space-separated ints; an empty line for epsilon)."""
    atomic_write_text(path, "".join(" ".join(map(str, w)) + "\n" for w in ilabel_info))


def read_ilabel_info(path: str | os.PathLike) -> list[list[int]]:
    """Inverse of :func:`write_ilabel_info`."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise GraphError(f"{path}: ilabel info not found") from None
    try:
        return [[int(v) for v in line.split()] for line in lines]
    except ValueError as err:
        raise GraphError(f"{path}: not an ilabel info file ({err})") from None
