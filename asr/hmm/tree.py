"""Context dependency: which pdf a phone-in-context and pdf-class map to.

A :class:`ContextDependency` holds the context width ``N`` (1 = monophone, 3 =
triphone), the central position ``P`` (0 for monophone, 1 for triphone) and a
decision tree in the style of Kaldi's ``EventMap``: internal nodes ask about one
*key* of the event, leaves are pdf ids. Keys are ``0 .. N-1`` (the phone at that
position of the context window; ``0`` there means "no phone", the utterance
boundary) and :data:`PDF_CLASS_KEY` (``-1``, the HMM state's pdf-class).

Node kinds (frozen dataclasses, serialised as JSON):

* :class:`Leaf` ``{"leaf": pdf_id}``
* :class:`Table` ``{"key": k, "table": [child_or_null, ...]}`` — child chosen by
  the key's value (Kaldi's ``TableEventMap``);
* :class:`Split` ``{"key": k, "yes": [values], "yes_child": ..., "no_child": ...}``
  — a yes/no question "is the value of key k in this set" (``SplitEventMap``).

A monophone tree is ``Table(P) -> Table(pdf-class) -> Leaf``; a GMM trainer
later grows triphone trees from the same node kinds.

>>> ctx = ContextDependency.monophone(phones=[1, 2], num_pdf_classes={1: 3, 2: 1})
>>> ctx.num_pdfs, ctx.compute((2,), 0), ctx.compute((1,), 2)
(4, 3, 2)
>>> ContextDependency.from_json(ctx.to_json()) == ctx
True
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from asr.errors import ModelError

PDF_CLASS_KEY = -1
"""The event key of the pdf-class (Kaldi's ``kPdfClass``)."""


@dataclass(frozen=True)
class Leaf:
    """A leaf of the tree: the pdf id."""

    pdf_id: int


@dataclass(frozen=True)
class Table:
    """Branch on the value of ``key``: ``children[value]`` (``None`` = undefined)."""

    key: int
    children: tuple[Node | None, ...]


@dataclass(frozen=True)
class Split:
    """Yes/no question: is the value of ``key`` in ``yes_values``?"""

    key: int
    yes_values: frozenset[int]
    yes_child: Node
    no_child: Node


Node = Leaf | Table | Split


def node_to_json(node: Node) -> dict:
    """The JSON-able dict of a tree node (see the module docstring)."""
    if isinstance(node, Leaf):
        return {"leaf": int(node.pdf_id)}
    if isinstance(node, Table):
        return {
            "key": int(node.key),
            "table": [None if c is None else node_to_json(c) for c in node.children],
        }
    return {
        "key": int(node.key),
        "yes": sorted(int(v) for v in node.yes_values),
        "yes_child": node_to_json(node.yes_child),
        "no_child": node_to_json(node.no_child),
    }


def node_from_json(obj: object) -> Node:
    """Inverse of :func:`node_to_json`; raises :class:`ModelError` on bad input."""
    if not isinstance(obj, dict):
        raise ModelError(f"tree node must be a JSON object, got {obj!r:.80}")
    try:
        if "leaf" in obj:
            return Leaf(int(obj["leaf"]))
        if "table" in obj:
            return Table(
                int(obj["key"]),
                tuple(None if c is None else node_from_json(c) for c in obj["table"]),
            )
        if "yes" in obj:
            return Split(
                int(obj["key"]),
                frozenset(int(v) for v in obj["yes"]),
                node_from_json(obj["yes_child"]),
                node_from_json(obj["no_child"]),
            )
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"malformed tree node {obj!r:.80}: {err}") from err
    raise ModelError(f"unknown tree node kind {sorted(obj)!r}")


def _leaves(node: Node) -> Iterable[int]:
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, Leaf):
            yield cur.pdf_id
        elif isinstance(cur, Table):
            stack.extend(c for c in cur.children if c is not None)
        else:
            stack.extend((cur.yes_child, cur.no_child))


@dataclass(frozen=True)
class ContextDependency:
    """Context width ``N``, central position ``P`` and the tree (phone context, pdf-class) -> pdf.

    ``num_pdfs`` is one more than the largest leaf (pdf ids are ``0 .. num_pdfs-1``).
    """

    context_width: int
    central_position: int
    root: Node
    num_pdfs: int = field(default=-1)

    def __post_init__(self) -> None:
        if self.context_width < 1 or not 0 <= self.central_position < self.context_width:
            raise ModelError(
                f"bad context: width {self.context_width}, central position {self.central_position}"
            )
        leaves = list(_leaves(self.root))
        if not leaves:
            raise ModelError("context-dependency tree has no leaves")
        if min(leaves) < 0:
            raise ModelError(f"negative pdf id {min(leaves)} in tree")
        if self.num_pdfs == -1:
            object.__setattr__(self, "num_pdfs", max(leaves) + 1)
        elif self.num_pdfs <= max(leaves):
            raise ModelError(f"num_pdfs {self.num_pdfs} but the tree has leaf {max(leaves)}")

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def monophone(
        cls,
        *,
        phones: Sequence[int],
        num_pdf_classes: Mapping[int, int],
        shared_phones: Sequence[Sequence[int]] | None = None,
    ) -> ContextDependency:
        """Kaldi's monophone tree: one pdf per (phone set, pdf-class), phones in id order.

        ``num_pdf_classes[phone]`` comes from the topology; ``shared_phones`` (optional)
        lists sets of phones that share their pdfs (Kaldi's ``--shared-phones``, e.g. the
        word-position variants of one phone); by default every phone is its own set.
        """
        phone_sets = [tuple(sorted(s)) for s in shared_phones] if shared_phones else []
        covered = {p for s in phone_sets for p in s}
        phone_sets += [(p,) for p in sorted(set(phones)) if p not in covered]
        phone_sets.sort(key=lambda s: s[0])
        max_phone = max(p for s in phone_sets for p in s)
        children: list[Node | None] = [None] * (max_phone + 1)
        next_pdf = 0
        for phone_set in phone_sets:
            counts = {num_pdf_classes[p] for p in phone_set}
            if len(counts) != 1:
                raise ModelError(f"shared phones {phone_set} have different numbers of pdf-classes")
            count = counts.pop()
            sub = Table(PDF_CLASS_KEY, tuple(Leaf(next_pdf + c) for c in range(count)))
            next_pdf += count
            for p in phone_set:
                children[p] = sub
        return cls(1, 0, Table(0, tuple(children)), next_pdf)

    # --- queries ------------------------------------------------------------------------------
    def compute(self, context: Sequence[int], pdf_class: int) -> int:
        """The pdf id of one phone window (length ``N``) and pdf-class."""
        return int(
            self.compute_batch(np.asarray([context], dtype=np.int64), np.asarray([pdf_class]))[0]
        )

    def compute_batch(self, contexts: np.ndarray, pdf_classes: np.ndarray) -> np.ndarray:
        """pdf ids ``(M,)`` of phone windows ``contexts: (M, N)`` and ``pdf_classes: (M,)``.

        The tree is walked once per node for the whole batch (numpy masks, no per-row loop).
        Raises :class:`ModelError` when some event reaches an undefined table entry.
        """
        contexts = np.asarray(contexts, dtype=np.int64).reshape(-1, self.context_width)
        pdf_classes = np.broadcast_to(np.asarray(pdf_classes, dtype=np.int64), (len(contexts),))
        events = np.concatenate([contexts, pdf_classes[:, None]], axis=1)  # key -1 = last column
        out = np.full(len(contexts), -1, dtype=np.int64)
        stack: list[tuple[Node, np.ndarray]] = [(self.root, np.arange(len(contexts)))]
        while stack:
            node, rows = stack.pop()
            if rows.size == 0:
                continue
            if isinstance(node, Leaf):
                out[rows] = node.pdf_id
                continue
            column = self._column(node.key)
            values = events[rows, column]
            if isinstance(node, Split):
                yes = np.isin(values, np.fromiter(node.yes_values, dtype=np.int64))
                stack.append((node.yes_child, rows[yes]))
                stack.append((node.no_child, rows[~yes]))
                continue
            for value in np.unique(values):
                child = node.children[value] if 0 <= value < len(node.children) else None
                if child is None:
                    bad = int(rows[values == value][0])
                    raise ModelError(
                        f"tree has no entry for key {node.key} = {int(value)} "
                        f"(context {contexts[bad].tolist()}, pdf-class {int(pdf_classes[bad])})"
                    )
                stack.append((child, rows[values == value]))
        return out

    def possible_pdfs(self, phone: int, pdf_class: int) -> tuple[int, ...]:
        """Sorted pdf ids reachable for ``phone`` at the central position and ``pdf_class``,
        over every context (unknown keys follow all branches)."""
        known = {self.central_position: phone, PDF_CLASS_KEY: pdf_class}
        found: set[int] = set()
        stack: list[Node] = [self.root]
        while stack:
            node = stack.pop()
            if isinstance(node, Leaf):
                found.add(node.pdf_id)
            elif isinstance(node, Table):
                if node.key in known:
                    value = known[node.key]
                    child = node.children[value] if 0 <= value < len(node.children) else None
                    if child is None:
                        raise ModelError(
                            f"tree has no entry for key {node.key} = {value} "
                            f"(phone {phone}, pdf-class {pdf_class})"
                        )
                    stack.append(child)
                else:
                    stack.extend(c for c in node.children if c is not None)
            elif node.key in known:
                in_yes = known[node.key] in node.yes_values
                stack.append(node.yes_child if in_yes else node.no_child)
            else:
                stack.extend((node.yes_child, node.no_child))
        return tuple(sorted(found))

    def _column(self, key: int) -> int:
        if key == PDF_CLASS_KEY:
            return self.context_width
        if not 0 <= key < self.context_width:
            raise ModelError(
                f"tree asks about key {key} outside context width {self.context_width}"
            )
        return key

    # --- serialisation ------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(
            {
                "context_width": self.context_width,
                "central_position": self.central_position,
                "num_pdfs": self.num_pdfs,
                "tree": node_to_json(self.root),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ContextDependency:
        try:
            obj = json.loads(text)
            return cls(
                int(obj["context_width"]),
                int(obj["central_position"]),
                node_from_json(obj["tree"]),
                int(obj["num_pdfs"]),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ModelError(f"malformed context-dependency JSON: {err}") from err
