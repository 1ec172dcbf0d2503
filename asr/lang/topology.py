"""HMM topologies in Kaldi's text ``topo`` format.

A :class:`Topology` is a list of :class:`TopologyEntry`; each entry names the
phones it is for and their HMM states. An emitting state has a pdf class (or,
in Kaldi's extended form, a forward and a self-loop pdf class) and
transitions ``(dest_state, prob)``; the last state is final and non-emitting.

:func:`make_default_topology` writes what Kaldi's ``utils/gen_topo.pl``
writes: a left-to-right ``num_nonsil_states``-state HMM (self-loop 0.75,
forward 0.25) for non-silence phones, and for silence phones the
``num_sil_states``-state model whose first state can jump to every state but
the last, whose middle states connect to each other and to the last state,
and whose last state loops (0.75) or leaves (0.25).

>>> topo = make_default_topology(nonsil_phone_ids=[3, 4], sil_phone_ids=[1, 2])
>>> topo.num_pdf_classes(3), topo.num_pdf_classes(1)
(3, 5)
>>> Topology.from_text(topo.to_text()) == topo
True
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asr.errors import LangError
from asr.fileio import atomic_write_text

__all__ = ["HmmState", "TopologyEntry", "Topology", "make_default_topology", "read_topology"]


@dataclass(frozen=True)
class HmmState:
    """One HMM state. ``forward_pdf_class``/``self_loop_pdf_class`` are None for a final state.

    In the usual form both equal the ``<PdfClass>``; Kaldi's chain topologies
    give them separately (``<ForwardPdfClass>``/``<SelfLoopPdfClass>``).
    ``transitions`` is a tuple of ``(dest_state, prob)``.
    """

    forward_pdf_class: int | None
    self_loop_pdf_class: int | None
    transitions: tuple[tuple[int, float], ...] = ()

    @property
    def is_emitting(self) -> bool:
        return self.forward_pdf_class is not None

    @property
    def pdf_class(self) -> int | None:
        return self.forward_pdf_class


@dataclass(frozen=True)
class TopologyEntry:
    """The HMM shared by ``phones`` (phone ids, sorted)."""

    phones: tuple[int, ...]
    states: tuple[HmmState, ...]

    @property
    def num_pdf_classes(self) -> int:
        classes = [
            c
            for s in self.states
            for c in (s.forward_pdf_class, s.self_loop_pdf_class)
            if c is not None
        ]
        return max(classes, default=-1) + 1

    @property
    def num_states(self) -> int:
        return len(self.states)


@dataclass(frozen=True)
class Topology:
    """All topology entries; each phone belongs to exactly one entry."""

    entries: tuple[TopologyEntry, ...]
    _entry_of: dict[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        entry_of: dict[int, int] = {}
        for index, entry in enumerate(self.entries):
            _validate_entry(entry)
            for phone in entry.phones:
                if phone in entry_of:
                    raise LangError(f"topology: phone {phone} is in more than one TopologyEntry")
                entry_of[phone] = index
        object.__setattr__(self, "_entry_of", entry_of)

    @property
    def phones(self) -> tuple[int, ...]:
        """All phone ids covered, sorted."""
        return tuple(sorted(self._entry_of))

    def entry(self, phone: int) -> TopologyEntry:
        """The entry of ``phone``; :class:`LangError` when no entry covers it."""
        try:
            return self.entries[self._entry_of[phone]]
        except KeyError:
            raise LangError(f"topology: phone {phone} is not in any TopologyEntry") from None

    def num_pdf_classes(self, phone: int) -> int:
        return self.entry(phone).num_pdf_classes

    def to_text(self) -> str:
        """Kaldi's text topology (what ``utils/gen_topo.pl`` prints)."""
        lines = ["<Topology>"]
        for entry in self.entries:
            lines += ["<TopologyEntry>", "<ForPhones>", " ".join(map(str, entry.phones))]
            lines.append("</ForPhones>")
            for index, state in enumerate(entry.states):
                lines.append(_state_text(index, state))
            lines.append("</TopologyEntry>")
        lines.append("</Topology>")
        return "\n".join(lines) + "\n"

    def write(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, self.to_text())

    @classmethod
    def from_text(cls, text: str, *, source: str = "<topo>") -> Topology:
        """Parse Kaldi's text topology; errors name ``source``."""
        return _parse(text.split(), source)


def _state_text(index: int, state: HmmState) -> str:
    parts = [f"<State> {index}"]
    if state.forward_pdf_class is not None:
        if state.forward_pdf_class == state.self_loop_pdf_class:
            parts.append(f"<PdfClass> {state.forward_pdf_class}")
        else:
            parts.append(f"<ForwardPdfClass> {state.forward_pdf_class}")
            parts.append(f"<SelfLoopPdfClass> {state.self_loop_pdf_class}")
    parts += [f"<Transition> {dest} {prob:g}" for dest, prob in state.transitions]
    parts.append("</State>")
    return " ".join(parts)


def _validate_entry(entry: TopologyEntry) -> None:
    name = f"topology entry for phones {list(entry.phones)[:5]}"
    if not entry.phones:
        raise LangError("topology: a TopologyEntry has no phones")
    if len(entry.states) < 2:
        raise LangError(f"{name}: needs at least one emitting and one final state")
    final = entry.states[-1]
    if final.is_emitting or final.transitions:
        raise LangError(f"{name}: the last state must be final (no pdf class, no transitions)")
    for index, state in enumerate(entry.states[:-1]):
        if not state.is_emitting:
            raise LangError(f"{name}: state {index} is not emitting but is not the last state")
        if not state.transitions:
            raise LangError(f"{name}: state {index} has no transitions")
        for dest, prob in state.transitions:
            if not 0 <= dest < len(entry.states):
                raise LangError(f"{name}: state {index} has a transition to missing state {dest}")
            if prob < 0.0:
                raise LangError(f"{name}: state {index} has negative transition prob {prob}")


class _Tokens:
    def __init__(self, tokens: list[str], source: str) -> None:
        self.tokens, self.pos, self.source = tokens, 0, source

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        if self.pos >= len(self.tokens):
            raise LangError(f"{self.source}: topology ends unexpectedly")
        self.pos += 1
        return self.tokens[self.pos - 1]

    def expect(self, token: str) -> None:
        got = self.take()
        if got != token:
            raise LangError(f"{self.source}: expected {token} in topology, got {got!r}")

    def number(self, kind: type) -> int | float:
        token = self.take()
        try:
            return kind(token)
        except ValueError:
            raise LangError(
                f"{self.source}: expected a number in topology, got {token!r}"
            ) from None


def _parse(tokens: list[str], source: str) -> Topology:
    tok = _Tokens(tokens, source)
    tok.expect("<Topology>")
    entries: list[TopologyEntry] = []
    while tok.peek() == "<TopologyEntry>":
        tok.take()
        tok.expect("<ForPhones>")
        phones: list[int] = []
        while tok.peek() != "</ForPhones>":
            phones.append(int(tok.number(int)))
        tok.take()
        states: list[HmmState] = []
        while tok.peek() == "<State>":
            tok.take()
            index = tok.number(int)
            if index != len(states):
                raise LangError(f"{source}: states must be numbered 0, 1, ...; got {index}")
            states.append(_parse_state(tok))
        tok.expect("</TopologyEntry>")
        try:
            entries.append(TopologyEntry(phones=tuple(sorted(phones)), states=tuple(states)))
        except LangError as err:
            raise LangError(f"{source}: {err}") from None
    tok.expect("</Topology>")
    if tok.peek() is not None:
        raise LangError(f"{source}: unexpected {tok.peek()!r} after </Topology>")
    try:
        return Topology(entries=tuple(entries))
    except LangError as err:
        raise LangError(f"{source}: {err}") from None


def _parse_state(tok: _Tokens) -> HmmState:
    forward: int | None = None
    self_loop: int | None = None
    transitions: list[tuple[int, float]] = []
    while True:
        token = tok.take()
        if token == "</State>":
            break
        if token == "<PdfClass>":
            forward = self_loop = int(tok.number(int))
        elif token == "<ForwardPdfClass>":
            forward = int(tok.number(int))
        elif token == "<SelfLoopPdfClass>":
            self_loop = int(tok.number(int))
        elif token == "<Transition>":
            dest = int(tok.number(int))
            transitions.append((dest, float(tok.number(float))))
        elif token == "<Final>":  # obsolete Kaldi token: a final probability
            tok.number(float)
        else:
            raise LangError(f"{tok.source}: unexpected {token!r} in a topology <State>")
    if (forward is None) != (self_loop is None):
        raise LangError(f"{tok.source}: a state gives only one of forward/self-loop pdf class")
    return HmmState(
        forward_pdf_class=forward, self_loop_pdf_class=self_loop, transitions=tuple(transitions)
    )


def read_topology(path: str | os.PathLike) -> Topology:
    """Read a Kaldi text ``topo`` file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LangError(f"{path}: topology file not found") from None
    return Topology.from_text(text, source=str(path))


def _state(pdf_class: int, transitions: Iterable[tuple[int, float]]) -> HmmState:
    return HmmState(
        forward_pdf_class=pdf_class, self_loop_pdf_class=pdf_class, transitions=tuple(transitions)
    )


def _left_to_right(num_states: int) -> tuple[HmmState, ...]:
    states = [_state(s, [(s, 0.75), (s + 1, 0.25)]) for s in range(num_states)]
    return (*states, HmmState(None, None))


def _silence(num_states: int) -> tuple[HmmState, ...]:
    if num_states == 1:
        return _left_to_right(1)
    prob = 1.0 / (num_states - 1)
    states = [_state(0, [(dest, prob) for dest in range(num_states - 1)])]
    for s in range(1, num_states - 1):
        states.append(_state(s, [(dest, prob) for dest in range(1, num_states)]))
    last = num_states - 1
    states.append(_state(last, [(last, 0.75), (num_states, 0.25)]))
    return (*states, HmmState(None, None))


def make_default_topology(
    *,
    nonsil_phone_ids: Sequence[int],
    sil_phone_ids: Sequence[int],
    num_nonsil_states: int = 3,
    num_sil_states: int = 5,
) -> Topology:
    """Kaldi's ``gen_topo.pl`` topology for the given phone ids (see module docstring)."""
    if num_nonsil_states < 1 or num_sil_states < 1:
        raise LangError(
            f"topology needs >= 1 state per phone, got num_nonsil_states={num_nonsil_states}, "
            f"num_sil_states={num_sil_states}"
        )
    entries = []
    if nonsil_phone_ids:
        entries.append(
            TopologyEntry(
                phones=tuple(sorted(nonsil_phone_ids)), states=_left_to_right(num_nonsil_states)
            )
        )
    if sil_phone_ids:
        entries.append(
            TopologyEntry(phones=tuple(sorted(sil_phone_ids)), states=_silence(num_sil_states))
        )
    return Topology(entries=tuple(entries))
