"""Decision-tree state tying (Kaldi's ``build-tree`` and ``gmm-init-model``).

:func:`build_tree` grows a :class:`~asr.hmm.tree.ContextDependency` from
:class:`~asr.hmm.tree_stats.TreeStats`:

1. **Roots** (``phones/roots.int``): each line is a set of phones sharing one root. A
   ``shared`` root starts as one leaf for all pdf-classes of its phones (the tree may then ask
   about the pdf-class, key -1); a ``not-shared`` root starts with one leaf per pdf-class. A
   ``not-split`` root keeps these starting leaves. Roots of context-independent phones
   (``ci_phones``, usually the silence phones) are split on the pdf-class and the central phone
   only, never on their neighbours.
2. **Greedy splitting**: every leaf's best question (any key, any question of
   :class:`~asr.hmm.questions.Questions`) is the one with the largest likelihood gain
   ``L(yes) + L(no) - L(leaf)`` of single diagonal Gaussians
   (:func:`~asr.hmm.tree_stats.gaussian_log_likelihood`, variances floored), evaluated for all
   questions of a key at once (per-value statistics times a question/value matrix). The best
   leaf overall is split (best first) until the tree has ``num_leaves`` leaves or no split
   gains at least ``thresh``; both sides of a split need ``min_count`` frames.
3. **Leaf clustering**: within each starting leaf, leaves are merged bottom-up while the
   cheapest merge loses less than ``cluster_thresh`` (by default, as Kaldi does, the smallest
   gain of any split made). Merged leaves share a pdf id; pdf ids are ``0 .. num_pdfs-1`` in
   tree order.

:func:`init_gmm_from_tree_stats` gives each pdf's count, mean and variance from the statistics
(a pdf without data takes those of its nearest ancestor node with data), the single-Gaussian
start of a triphone GMM (Kaldi's ``gmm-init-model``).

>>> import numpy as np
>>> from asr.hmm.questions import Questions
>>> from asr.hmm.tree_stats import TreeStats
>>> events = np.array([[l, 3, 0, 0] for l in (1, 2, 4, 5)])
>>> means = np.array([0.0, 0.0, 4.0, 4.0])[:, None]
>>> stats = TreeStats(3, 1, events, np.full(4, 50.0), 50 * means, 50 * (means**2 + 1))
>>> questions = Questions(phone_questions=(frozenset({1, 2}), frozenset({1, 4})),
...                       pdf_class_questions=())
>>> result = build_tree(stats, roots=[TreeRoot(phones=(3,))], questions=questions,
...                     num_pdf_classes={3: 1}, config=TreeConfig(num_leaves=10, thresh=10.0))
>>> result.ctx_dep.num_pdfs, result.ctx_dep.compute((2, 3, 7), 0), result.ctx_dep.compute((5, 3, 1), 0)
(2, 0, 1)
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numba
import numpy as np

from asr.errors import EstimationError
from asr.hmm.questions import Questions
from asr.hmm.tree import PDF_CLASS_KEY, ContextDependency, Leaf, Node, Split, Table
from asr.hmm.tree_stats import TreeStats, gaussian_log_likelihood, group_sums

__all__ = [
    "LeafGaussians",
    "TreeBuildResult",
    "TreeConfig",
    "TreeRoot",
    "build_tree",
    "cluster_leaves",
    "init_gmm_from_tree_stats",
    "split_gain",
]


@dataclass(frozen=True)
class TreeConfig:
    """``num_leaves``: target number of leaves after splitting (Kaldi ``--max-leaves``; 0 = no
    limit); ``thresh``: least likelihood gain of a split; ``cluster_thresh``: merge leaves whose
    merge costs less (negative: the smallest split gain made, Kaldi's default; 0: no
    clustering); ``min_count``: least frames on each side of a split; ``var_floor``."""

    num_leaves: int = 2000
    thresh: float = 300.0
    cluster_thresh: float = -1.0
    min_count: float = 0.0
    var_floor: float = 0.01

    def __post_init__(self) -> None:
        if self.num_leaves < 0 or self.thresh < 0 or self.min_count < 0 or self.var_floor <= 0:
            raise EstimationError(
                "TreeConfig needs num_leaves >= 0, thresh >= 0, min_count >= 0, var_floor > 0"
            )


@dataclass(frozen=True)
class TreeRoot:
    """A line of ``roots.int``: phones sharing one root, ``shared`` across pdf-classes,
    ``split`` or not."""

    phones: tuple[int, ...]
    shared: bool = True
    split: bool = True

    def __post_init__(self) -> None:
        phones = tuple(sorted({int(p) for p in self.phones}))
        if not phones or phones[0] < 1:
            raise EstimationError(f"tree root needs phone ids >= 1, got {self.phones}")
        object.__setattr__(self, "phones", phones)


@dataclass(frozen=True)
class TreeBuildResult:
    """The tree and what building it did: leaves after splitting, pdfs after clustering, the
    log-likelihood of the statistics at the starting leaves, after splitting and at the end,
    and the clustering threshold used."""

    ctx_dep: ContextDependency
    num_leaves_split: int
    num_pdfs: int
    objf_initial: float
    objf_split: float
    objf_final: float
    cluster_thresh: float


def split_gain(
    counts: np.ndarray,
    sums: np.ndarray,
    sumsq: np.ndarray,
    yes: np.ndarray,
    *,
    var_floor: float = 0.01,
) -> float:
    """Likelihood gain of splitting rows of stats ``counts: (n,)``, ``sums, sumsq: (n, dim)``
    into ``yes: (n,) bool`` and the rest: ``L(yes) + L(no) - L(all)``."""
    yes = np.asarray(yes, dtype=bool)

    def like(mask: np.ndarray) -> float:
        return float(
            gaussian_log_likelihood(
                counts[mask].sum(), sums[mask].sum(0), sumsq[mask].sum(0), var_floor=var_floor
            )
        )

    return like(yes) + like(~yes) - like(np.ones_like(yes))


class _Leaf:
    """A leaf while the tree grows: its events, the stub (starting leaf) it descends from, and
    after a split its key, question and children."""

    __slots__ = ("rows", "stub", "keys", "split", "yes", "no", "label")

    def __init__(self, rows: np.ndarray, stub: int, keys: tuple[int, ...]) -> None:
        self.rows, self.stub, self.keys = rows, stub, keys
        self.split: tuple[int, frozenset[int]] | None = None
        self.yes: _Leaf | None = None
        self.no: _Leaf | None = None
        self.label = -1


class _Splitter:
    """Best-question search over the statistics (all questions of a key in one product)."""

    def __init__(self, stats: TreeStats, questions: Questions, config: TreeConfig) -> None:
        self.stats, self.config = stats, config
        self.packed = np.column_stack([stats.counts, stats.sums, stats.sumsq])
        self.matrices: dict[int, tuple[np.ndarray, tuple[frozenset[int], ...]]] = {}
        for key in [*range(stats.context_width), PDF_CLASS_KEY]:
            qs = tuple(q for q in questions.for_key(key) if q)
            if not qs:
                continue
            column = self.column(key)
            top = max(int(stats.events[:, column].max(initial=0)), max(max(q) for q in qs))
            matrix = np.zeros((len(qs), top + 1))
            for i, q in enumerate(qs):
                matrix[i, [v for v in q if v >= 0]] = 1.0
            self.matrices[key] = (matrix, qs)

    def column(self, key: int) -> int:
        return self.stats.context_width if key == PDF_CLASS_KEY else key

    def like(self, packed: np.ndarray) -> np.ndarray:
        """Log-likelihoods of stats packed as ``(..., 1 + 2 * dim)`` rows ``[count, sum,
        sum of squares]``."""
        dim = self.stats.dim
        return gaussian_log_likelihood(
            packed[..., 0], packed[..., 1 : 1 + dim], packed[..., 1 + dim :],
            var_floor=self.config.var_floor,
        )  # fmt: skip

    def best(self, leaf: _Leaf) -> tuple[float, int, frozenset[int]] | None:
        """(gain, key, question) of the leaf's best split, or None.

        A compiled pass over the leaf's events gives the stats of every value of every key; a
        question/value matrix product then gives every question's "yes" stats, and one
        likelihood call scores all questions that leave data on both sides."""
        rows = leaf.rows
        keys = [k for k in leaf.keys if k in self.matrices]
        if len(rows) < 2 or not keys:
            return None
        widths = [self.matrices[k][0].shape[1] for k in keys]
        offsets = np.cumsum([0, *widths])
        value_index = self.stats.events[rows[None, :], [[self.column(k)] for k in keys]]
        value_index += offsets[:-1, None]
        per_value = _value_stats(rows, value_index, self.packed, int(offsets[-1]))
        total = per_value[: widths[0]].sum(0)
        floor = max(self.config.min_count, 1e-10)
        yes_parts, questions = [], []
        for i, key in enumerate(keys):
            block = per_value[offsets[i] : offsets[i + 1]]
            if np.count_nonzero(block[:, 0]) < 2:
                continue
            matrix, qs = self.matrices[key]
            yes = matrix @ block
            keep = np.flatnonzero((yes[:, 0] >= floor) & (total[0] - yes[:, 0] >= floor))
            yes_parts.append(yes[keep])
            questions.extend((key, qs[q]) for q in keep.tolist())
        if not questions:
            return None
        yes = np.concatenate(yes_parts)
        both = self.like(np.concatenate([yes, total - yes]))
        gains = both[: len(yes)] + both[len(yes) :] - float(self.like(total))
        best = int(np.argmax(gains))
        return float(gains[best]), *questions[best]


@numba.njit(cache=True)
def _value_stats(rows, value_index, packed, num_values):  # pragma: no cover - compiled
    """``out[value_index[k, i]] += packed[rows[i]]`` for every key ``k`` and leaf row ``i``."""
    out = np.zeros((num_values, packed.shape[1]))
    for k in range(value_index.shape[0]):
        for i in range(rows.shape[0]):
            row, value = rows[i], value_index[k, i]
            for j in range(packed.shape[1]):
                out[value, j] += packed[row, j]
    return out


def cluster_leaves(
    counts: np.ndarray,
    sums: np.ndarray,
    sumsq: np.ndarray,
    *,
    thresh: float,
    var_floor: float = 0.01,
) -> np.ndarray:
    """Bottom-up clustering (Kaldi's ``ClusterBottomUp``): merge the cheapest pair while its
    cost ``L(a) + L(b) - L(a+b)`` is below ``thresh``. Returns ``(n,)`` cluster labels
    ``0 .. k-1`` numbered in order of first appearance."""
    counts = np.array(counts, dtype=np.float64)
    sums = np.array(sums, dtype=np.float64)
    sumsq = np.array(sumsq, dtype=np.float64)
    num = len(counts)
    parent = np.arange(num)
    if num > 1 and thresh > 0:

        def like(c, s, q):
            return gaussian_log_likelihood(c, s, q, var_floor=var_floor)

        own = like(counts, sums, sumsq)
        active = np.ones(num, dtype=bool)

        def costs(i: int) -> np.ndarray:
            row = own[i] + own - like(counts[i] + counts, sums[i] + sums, sumsq[i] + sumsq)
            row[~active] = np.inf
            row[i] = np.inf
            return row

        cost = np.stack([costs(i) for i in range(num)])
        while True:
            flat = int(np.argmin(cost))
            i, j = divmod(flat, num)
            if not cost[i, j] < thresh:
                break
            counts[i] += counts[j]
            sums[i] += sums[j]
            sumsq[i] += sumsq[j]
            own[i] = like(counts[i], sums[i], sumsq[i])
            active[j] = False
            parent[parent == j] = i
            cost[j, :] = np.inf
            cost[:, j] = np.inf
            cost[i, :] = costs(i)
            cost[:, i] = cost[i, :]
    _, first, labels = np.unique(parent, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[labels]


def build_tree(
    stats: TreeStats,
    *,
    roots: Sequence[TreeRoot | tuple[bool, bool, Sequence[int]]],
    questions: Questions,
    num_pdf_classes: Mapping[int, int],
    ci_phones: Sequence[int] = (),
    config: TreeConfig | None = None,
) -> TreeBuildResult:
    """Grow, cluster and number a tree (see the module docstring).

    ``roots``: :class:`TreeRoot` items or ``(shared, split, phone_ids)`` tuples as returned by
    :meth:`asr.lang.Lang.roots`; ``num_pdf_classes[phone]`` from the topology.
    """
    config = config or TreeConfig()
    width, centre = stats.context_width, stats.central_position
    roots = [r if isinstance(r, TreeRoot) else TreeRoot(tuple(r[2]), r[0], r[1]) for r in roots]
    phone_root: dict[int, int] = {}
    for index, root in enumerate(roots):
        for phone in root.phones:
            if phone in phone_root:
                raise EstimationError(f"phone {phone} is in more than one tree root")
            if phone not in num_pdf_classes:
                raise EstimationError(f"phone {phone} of the tree roots has no topology entry")
            phone_root[phone] = index
    if not roots:
        raise EstimationError("build_tree: no roots")
    centres = stats.central_phones
    lookup = np.full(max(int(centres.max(initial=0)), max(phone_root)) + 1, -1, dtype=np.int64)
    lookup[list(phone_root)] = list(phone_root.values())
    root_of_event = lookup[centres]
    if np.any(root_of_event < 0):
        raise EstimationError(
            f"tree stats have phone {int(centres[root_of_event < 0][0])}, which no root lists"
        )
    classes_of = np.zeros(max(len(lookup), max(num_pdf_classes) + 1), dtype=np.int64)
    classes_of[list(num_pdf_classes)] = list(num_pdf_classes.values())
    bad = stats.pdf_classes >= classes_of[centres]
    if np.any(bad):
        row = stats.events[np.flatnonzero(bad)[0]]
        raise EstimationError(f"tree stats event {row.tolist()} has a pdf-class the topology lacks")

    ci = {int(p) for p in ci_phones}
    splitter = _Splitter(stats, questions, config)
    stubs: list[_Leaf] = []
    root_stubs: list[list[_Leaf] | _Leaf] = []
    for index, root in enumerate(roots):
        in_root = root_of_event == index
        counts = {num_pdf_classes[p] for p in root.phones}
        context_keys = (
            () if set(root.phones) <= ci else tuple(k for k in range(width) if k != centre)
        )
        centre_keys = (centre,) if len(root.phones) > 1 else ()
        keys: tuple[int, ...] = ()
        if root.shared:
            if root.split:
                class_keys = (PDF_CLASS_KEY,) if max(counts) > 1 else ()
                keys = (*context_keys, *centre_keys, *class_keys)
            stub = _Leaf(np.flatnonzero(in_root), len(stubs), keys)
            stubs.append(stub)
            root_stubs.append(stub)
            continue
        if len(counts) != 1:
            raise EstimationError(
                f"not-shared root {root.phones} has phones with different numbers of pdf-classes"
            )
        if root.split:
            keys = (*context_keys, *centre_keys)
        per_class = []
        for pdf_class in range(counts.pop()):
            rows = np.flatnonzero(in_root & (stats.pdf_classes == pdf_class))
            per_class.append(_Leaf(rows, len(stubs), keys))
            stubs.append(per_class[-1])
        root_stubs.append(per_class)

    def leaf_stats(leaves: Sequence[_Leaf]) -> np.ndarray:
        """Packed stats ``(len(leaves), 1 + 2 * dim)`` of leaves (each event in one leaf)."""
        labels = np.full(stats.num_events, len(leaves), dtype=np.int64)
        for i, leaf in enumerate(leaves):
            labels[leaf.rows] = i
        return group_sums(labels, len(leaves) + 1, splitter.packed)[:-1]

    objf_initial = float(splitter.like(leaf_stats(stubs)).sum())
    heap: list[tuple[float, int, _Leaf, int, frozenset[int]]] = []
    tick = 0

    def push(leaf: _Leaf) -> None:
        nonlocal tick
        found = splitter.best(leaf) if leaf.keys else None
        if found is not None and found[0] >= config.thresh and found[0] > 0:
            heapq.heappush(heap, (-found[0], tick, leaf, found[1], found[2]))
            tick += 1

    for stub in stubs:
        push(stub)
    leaves = list(stubs)
    num_leaves = len(leaves)
    smallest = np.inf
    while heap and (config.num_leaves == 0 or num_leaves < config.num_leaves):
        neg_gain, _, leaf, key, question = heapq.heappop(heap)
        values = stats.events[leaf.rows, splitter.column(key)]
        yes = np.isin(values, np.fromiter(question, dtype=np.int64))
        leaf.split = (key, question)
        leaf.yes = _Leaf(leaf.rows[yes], leaf.stub, leaf.keys)
        leaf.no = _Leaf(leaf.rows[~yes], leaf.stub, leaf.keys)
        push(leaf.yes)
        push(leaf.no)
        num_leaves += 1
        smallest = min(smallest, -neg_gain)

    final_leaves: list[_Leaf] = []
    stack = list(reversed(stubs))
    while stack:
        node = stack.pop()
        if node.split is None:
            final_leaves.append(node)
        else:
            stack.extend((node.no, node.yes))
    packed = leaf_stats(final_leaves)
    objf_split = float(splitter.like(packed).sum())

    cluster_thresh = config.cluster_thresh
    if cluster_thresh < 0:
        cluster_thresh = smallest if np.isfinite(smallest) else config.thresh
    stub_of = np.array([x.stub for x in final_leaves])
    dim = stats.dim
    leaf_counts, leaf_sums, leaf_sumsq = packed[:, 0], packed[:, 1 : 1 + dim], packed[:, 1 + dim :]
    next_label = 0
    for stub_index in range(len(stubs)):
        members = np.flatnonzero(stub_of == stub_index)
        with_data = members[leaf_counts[members] > 0]
        labels = cluster_leaves(
            leaf_counts[with_data],
            leaf_sums[with_data],
            leaf_sumsq[with_data],
            thresh=cluster_thresh,
            var_floor=config.var_floor,
        )
        for m, label in zip(with_data.tolist(), labels.tolist(), strict=True):
            final_leaves[m].label = next_label + label
        next_label += int(labels.max()) + 1 if len(labels) else 0
        for m in members[leaf_counts[members] <= 0].tolist():
            final_leaves[m].label = next_label
            next_label += 1

    pdf_of_label: dict[int, int] = {}

    def to_node(top: _Leaf) -> Node:
        """Frozen nodes of a grown subtree (iterative; pdf ids in yes-first order)."""
        built: dict[int, Node] = {}
        stack: list[tuple[_Leaf, bool]] = [(top, False)]
        while stack:
            leaf, expanded = stack.pop()
            if leaf.split is None:
                built[id(leaf)] = Leaf(pdf_of_label.setdefault(leaf.label, len(pdf_of_label)))
            elif expanded:
                key, question = leaf.split
                built[id(leaf)] = Split(key, question, built[id(leaf.yes)], built[id(leaf.no)])
            else:
                stack.extend(((leaf, True), (leaf.no, False), (leaf.yes, False)))
        return built[id(top)]

    phone_children: list[Node | None] = [None] * (max(phone_root) + 1)
    for index, root in enumerate(roots):
        item = root_stubs[index]
        sub = (
            to_node(item)
            if isinstance(item, _Leaf)
            else Table(PDF_CLASS_KEY, tuple(to_node(x) for x in item))
        )
        for phone in root.phones:
            phone_children[phone] = sub
    ctx_dep = ContextDependency(width, centre, Table(centre, tuple(phone_children)))
    final_stats = group_sums(
        np.array([pdf_of_label[x.label] for x in final_leaves]), ctx_dep.num_pdfs, packed
    )
    return TreeBuildResult(
        ctx_dep=ctx_dep,
        num_leaves_split=len(final_leaves),
        num_pdfs=ctx_dep.num_pdfs,
        objf_initial=objf_initial,
        objf_split=objf_split,
        objf_final=float(splitter.like(final_stats).sum()),
        cluster_thresh=float(cluster_thresh),
    )


@dataclass(frozen=True, eq=False)
class LeafGaussians:
    """One diagonal Gaussian per pdf: ``counts: (num_pdfs,)`` frames of data, ``means,
    variances: (num_pdfs, dim)`` float64 (from an ancestor's data where ``counts`` is 0)."""

    counts: np.ndarray
    means: np.ndarray
    variances: np.ndarray

    @property
    def num_pdfs(self) -> int:
        return len(self.counts)


def init_gmm_from_tree_stats(
    stats: TreeStats, ctx_dep: ContextDependency, *, var_floor: float = 0.01
) -> LeafGaussians:
    """Count, mean and (floored) variance of every pdf of ``ctx_dep`` from ``stats``.

    A pdf that no event reaches takes the statistics of its nearest ancestor node with data
    (the global statistics when its whole root is unseen), as Kaldi's ``gmm-init-model``.
    """
    if (stats.context_width, stats.central_position) != (
        ctx_dep.context_width,
        ctx_dep.central_position,
    ):
        raise EstimationError(
            f"tree stats are for context ({stats.context_width}, {stats.central_position}), "
            f"the tree for ({ctx_dep.context_width}, {ctx_dep.central_position})"
        )
    if stats.num_events == 0:
        raise EstimationError("no tree statistics to initialise the GMM from")
    width = stats.context_width
    pdfs = ctx_dep.compute_batch(stats.events[:, :width], stats.events[:, width])
    num_pdfs = ctx_dep.num_pdfs
    counts = np.bincount(pdfs, stats.counts, minlength=num_pdfs)
    sums = group_sums(pdfs, num_pdfs, stats.sums)
    sumsq = group_sums(pdfs, num_pdfs, stats.sumsq)
    stat_counts = counts.copy()  # counts of the statistics the Gaussians come from
    missing = set(np.flatnonzero(counts <= 0).tolist())
    every = (stats.counts.sum(), stats.sums.sum(0), stats.sumsq.sum(0))
    stack: list[tuple[Node, np.ndarray, tuple]] = [
        (ctx_dep.root, np.arange(stats.num_events), every)
    ]
    while stack and missing:
        node, rows, backoff = stack.pop()
        if rows.size and stats.counts[rows].sum() > 0:
            backoff = tuple(a[rows].sum(0) for a in (stats.counts, stats.sums, stats.sumsq))
        if isinstance(node, Leaf):
            if node.pdf_id in missing:
                missing.discard(node.pdf_id)
                stat_counts[node.pdf_id], sums[node.pdf_id], sumsq[node.pdf_id] = backoff
            continue
        column = width if node.key == PDF_CLASS_KEY else node.key
        values = stats.events[rows, column]
        if isinstance(node, Split):
            yes = np.isin(values, np.fromiter(node.yes_values, dtype=np.int64))
            stack.append((node.yes_child, rows[yes], backoff))
            stack.append((node.no_child, rows[~yes], backoff))
            continue
        groups: dict[int, tuple[Node, list[int]]] = {}
        for value, child in enumerate(node.children):
            if child is not None:
                groups.setdefault(id(child), (child, []))[1].append(value)
        for child, child_values in groups.values():
            stack.append((child, rows[np.isin(values, child_values)], backoff))
    means = sums / stat_counts[:, None]
    variances = np.maximum(sumsq / stat_counts[:, None] - means * means, var_floor)
    return LeafGaussians(counts=counts, means=means, variances=variances)
