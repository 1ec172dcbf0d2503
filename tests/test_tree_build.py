"""Tests for asr.hmm.tree_stats and asr.hmm.build_tree (decision-tree state tying).

Oracles: a per-frame Python loop over phone instances (tree statistics); scipy's Gaussian
log-density of the raw frames with numpy-fitted means/variances (likelihood gains, the first
split against a brute-force search over every question, the pdf Gaussians); synthetic data whose
true pdf is a known function of (centre phone, pdf-class, is the left phone in S), which the
built tree must recover exactly on every context; the transition model and HCLG built from the
tree (the best path through HCLG spells the words and every pdf agrees with the tree).
"""

from __future__ import annotations

import itertools

import kaldifst
import numpy as np
import pytest
from scipy.stats import norm

from asr.errors import EstimationError
from asr.gmm import DiagGmmSet
from asr.graph.mkgraph import mkgraph
from asr.hmm import PDF_CLASS_KEY, HmmModel, Split, Table, TransitionModel, init_monophone
from asr.hmm.build_tree import (
    TreeConfig,
    TreeRoot,
    build_tree,
    cluster_leaves,
    init_gmm_from_tree_stats,
    split_gain,
)
from asr.hmm.questions import Questions, make_questions, pdf_class_questions
from asr.hmm.tree_stats import (
    TreeStats,
    TreeStatsConfig,
    accumulate_tree_stats,
    frame_events_from_alignment,
    gaussian_log_likelihood,
    tid_to_pdf_class,
    tree_stats_from_alignments,
)
from asr.lang import Lexicon, prepare_lang
from tests.support.graphs import LEXICON, best_input, check_word_path, make_g, phones_of_tids

# --------------------------------------------------------------------------- tree statistics


def random_utterances(rng, num_utts=4, dim=3, num_phones=5):
    feats, phones, classes, starts = [], [], [], []
    for _ in range(num_utts):
        seq_phones, seq_classes, seq_starts = [], [], []
        for _ in range(rng.integers(1, 7)):
            phone = int(rng.integers(1, num_phones + 1))
            length = int(rng.integers(1, 5))
            seq_phones += [phone] * length
            seq_classes += sorted(rng.integers(0, 3, size=length).tolist())
            seq_starts += [True] + [False] * (length - 1)
        feats.append(rng.normal(size=(len(seq_phones), dim)))
        phones.append(np.array(seq_phones))
        classes.append(np.array(seq_classes))
        starts.append(np.array(seq_starts))
    return feats, phones, classes, starts


def reference_stats(feats, phones, classes, starts, *, width, centre, ci_phones):
    """Per-frame loop: phone instances, their windows, a dict of (count, sum, sum of squares)."""
    acc: dict[tuple[int, ...], list] = {}
    for mat, ph, cl, st in zip(feats, phones, classes, starts, strict=True):
        inst_phone, inst_of_frame = [], []
        for t in range(len(ph)):
            if t == 0 or st[t] or ph[t] != ph[t - 1]:
                inst_phone.append(int(ph[t]))
            inst_of_frame.append(len(inst_phone) - 1)
        for t in range(len(ph)):
            i = inst_of_frame[t]
            window = []
            for pos in range(width):
                k = i + pos - centre
                window.append(inst_phone[k] if 0 <= k < len(inst_phone) else 0)
            if inst_phone[i] in ci_phones:
                window = [w if pos == centre else 0 for pos, w in enumerate(window)]
            entry = acc.setdefault((*window, int(cl[t])), [0.0, 0.0, 0.0])
            entry[0] += 1.0
            entry[1] = entry[1] + mat[t]
            entry[2] = entry[2] + mat[t] ** 2
    keys = sorted(acc)
    return (
        np.array(keys),
        np.array([acc[k][0] for k in keys]),
        np.array([acc[k][1] for k in keys]),
        np.array([acc[k][2] for k in keys]),
    )


def assert_stats_equal(stats: TreeStats, expected) -> None:
    events, counts, sums, sumsq = expected
    np.testing.assert_array_equal(stats.events, events)
    np.testing.assert_allclose(stats.counts, counts)
    np.testing.assert_allclose(stats.sums, sums, atol=1e-12)
    np.testing.assert_allclose(stats.sumsq, sumsq, atol=1e-12)


@pytest.mark.parametrize(
    "width,centre,ci_phones", [(3, 1, ()), (3, 1, (1, 2)), (2, 1, ()), (1, 0, ()), (5, 2, (3,))]
)
@pytest.mark.parametrize("use_starts", [True, False])
def test_stats_match_per_frame_loop(width, centre, ci_phones, use_starts):
    rng = np.random.default_rng(width * 10 + centre)
    feats, phones, classes, starts = random_utterances(rng)
    config = TreeStatsConfig(context_width=width, central_position=centre, ci_phones=ci_phones)
    stats = accumulate_tree_stats(
        feats=feats,
        frame_phones=phones,
        frame_pdf_classes=classes,
        phone_starts=starts if use_starts else None,
        config=config,
    )
    if not use_starts:  # without starts, repeated phones are one instance
        starts = [np.r_[True, p[1:] != p[:-1]] for p in phones]
    expected = reference_stats(
        feats, phones, classes, starts, width=width, centre=centre, ci_phones=set(ci_phones)
    )
    assert_stats_equal(stats, expected)
    assert stats.total_count == sum(len(p) for p in phones)


def test_merge_equals_one_pass(tmp_path):
    rng = np.random.default_rng(1)
    feats, phones, classes, starts = random_utterances(rng, num_utts=9)

    def job(sl):
        return accumulate_tree_stats(feats=feats[sl], frame_phones=phones[sl],
                                     frame_pdf_classes=classes[sl], phone_starts=starts[sl])  # fmt: skip

    whole = job(slice(None))
    parts = [job(slice(0, 2)), job(slice(2, 6)), job(slice(6, 9))]
    expected = (whole.events, whole.counts, whole.sums, whole.sumsq)
    assert_stats_equal(parts[0].merge(parts[1]).merge(parts[2]), expected)
    assert_stats_equal(TreeStats.merge_all(parts), expected)
    whole.save(tmp_path / "tree.stats")
    assert_stats_equal(TreeStats.load(tmp_path / "tree.stats"), expected)
    (tmp_path / "bad").write_text("not numpy")
    with pytest.raises(EstimationError, match="not a tree-stats file"):
        TreeStats.load(tmp_path / "bad")
    with pytest.raises(EstimationError, match="different context"):
        whole.merge(TreeStats.empty(dim=whole.dim + 1))


def test_stats_errors():
    with pytest.raises(EstimationError, match="feature frames"):
        accumulate_tree_stats(feats=[np.zeros((3, 2))], frame_phones=[np.ones(2, dtype=int)],
                              frame_pdf_classes=[np.zeros(3, dtype=int)])  # fmt: skip
    with pytest.raises(EstimationError, match="phone ids must be >= 1"):
        accumulate_tree_stats(feats=[np.zeros((2, 2))], frame_phones=[np.array([1, 0])],
                              frame_pdf_classes=[np.zeros(2, dtype=int)])  # fmt: skip
    with pytest.raises(EstimationError, match="bad context"):
        TreeStatsConfig(context_width=3, central_position=3)


@pytest.fixture(scope="module")
def tiny_lang(tmp_path_factory):
    root = tmp_path_factory.mktemp("tree")
    lang = prepare_lang(Lexicon.from_pairs(LEXICON), root / "lang")
    g = make_g(lang.words, {"YES": 0.3, "YEAH": 0.2, "NO": 0.3}, 0.2)
    g.write(str(root / "lang" / "G.fst"))
    return root, lang


def tids_of_phones(tm: TransitionModel, instances, *, reordered: bool) -> list[int]:
    """Transition-ids of phone instances ``(phone, [frames in HMM state 0, 1, ...])`` walking
    each left-to-right (self-loops after the forward transition when ``reordered``)."""
    out = []
    for phone, durations in instances:
        states = tm.topology.entry(phone).states
        for s, frames in enumerate(durations):
            row = np.flatnonzero((tm.tuples[:, 0] == phone) & (tm.tuples[:, 1] == s))[0]
            dests = [d for d, _ in states[s].transitions]
            loop = tm.transition_id(int(row) + 1, dests.index(s))
            forward = tm.transition_id(int(row) + 1, dests.index(s + 1))
            out += (
                [forward] + [loop] * (frames - 1)
                if reordered
                else [loop] * (frames - 1) + [forward]
            )
    return out


@pytest.mark.parametrize("reordered", [True, False])
def test_frame_events_from_transition_ids(tiny_lang, reordered):
    _, lang = tiny_lang
    tm = init_monophone(lang).transition_model
    sil, y, eh, s = lang.phones.ids(["SIL", "Y", "EH", "S"])
    instances = [(sil, [2, 1, 1, 1, 3]), (sil, [1, 1, 1, 1, 1]), (y, [1, 2, 3]),
                 (eh, [2, 2, 1]), (eh, [1, 1, 4]), (s, [3, 1, 1]), (sil, [1, 1, 2, 1, 1])]  # fmt: skip
    tids = tids_of_phones(tm, instances, reordered=reordered)
    phones, classes, starts = frame_events_from_alignment(
        np.array(tids), transition_model=tm, reordered=reordered
    )
    exp_phones = [p for p, d in instances for n in d for _ in range(n)]
    exp_classes = [c for p, d in instances for c, n in enumerate(d) for _ in range(n)]
    exp_starts = [i == 0 for p, d in instances for i in range(sum(d))]
    assert phones.tolist() == exp_phones
    assert classes.tolist() == exp_classes
    assert starts.tolist() == exp_starts
    table = tid_to_pdf_class(tm)
    for tid in range(1, tm.num_transition_ids + 1):  # the default topology: pdf-class = state
        assert table[tid] == tm.tid2hmm_state[tid]
    feats = [np.random.default_rng(0).normal(size=(len(tids), 2))]
    stats = tree_stats_from_alignments(
        feats=feats, alignments=[np.array(tids)], transition_model=tm, reordered=reordered
    )
    expected = reference_stats(feats, [phones], [classes], [np.array(exp_starts)],
                               width=3, centre=1, ci_phones=set())  # fmt: skip
    assert_stats_equal(stats, expected)
    windows = stats.events[:, :3].tolist()  # two silences in a row stay two instances
    assert [0, sil, sil] in windows and [sil, sil, y] in windows
    with pytest.raises(Exception, match="transition-id"):
        frame_events_from_alignment(np.array([0]), transition_model=tm)


# --------------------------------------------------------------------------- likelihood gains


def direct_loglike(frames: np.ndarray, var_floor: float = 0.01) -> float:
    if len(frames) == 0:
        return 0.0
    mean, var = frames.mean(0), np.maximum(frames.var(0), var_floor)
    return float(norm.logpdf(frames, loc=mean, scale=np.sqrt(var)).sum())


def frame_stats(frames_per_event):
    counts = np.array([len(f) for f in frames_per_event], dtype=float)
    sums = np.array([f.sum(0) for f in frames_per_event])
    sumsq = np.array([(f**2).sum(0) for f in frames_per_event])
    return counts, sums, sumsq


def test_gain_equals_direct_gaussian_loglik():
    rng = np.random.default_rng(2)
    frames = [rng.normal(loc=rng.normal(size=4) * 3, scale=rng.uniform(0.5, 2), size=(n, 4))
              for n in rng.integers(5, 40, size=8)]  # fmt: skip
    counts, sums, sumsq = frame_stats(frames)
    everything = np.concatenate(frames)
    assert gaussian_log_likelihood(counts.sum(), sums.sum(0), sumsq.sum(0)) == pytest.approx(
        direct_loglike(everything), rel=1e-10
    )
    yes = np.array([True, False, True, True, False, False, True, False])
    direct = (
        direct_loglike(np.concatenate([f for f, y in zip(frames, yes, strict=True) if y]))
        + direct_loglike(np.concatenate([f for f, y in zip(frames, yes, strict=True) if not y]))
        - direct_loglike(everything)
    )
    assert split_gain(counts, sums, sumsq, yes) == pytest.approx(direct, rel=1e-9)
    # a variance below the floor is floored (one repeated frame: variance 0)
    same = np.ones((5, 2))
    assert gaussian_log_likelihood(5.0, same.sum(0), (same**2).sum(0), var_floor=0.5) == (
        pytest.approx(-0.5 * 5 * (2 * (1 + np.log(2 * np.pi)) + 2 * np.log(0.5)))
    )
    assert gaussian_log_likelihood(0.0, np.zeros(2), np.zeros(2)) == 0.0


def test_first_split_is_the_best_question_by_brute_force():
    """One root, one pdf-class: the first split's gain equals the best direct gain over every
    (key, question) pair, and ``objf_split - objf_initial`` is that gain."""
    rng = np.random.default_rng(3)
    events, frames = [], []
    for left, right in itertools.product(range(0, 5), range(0, 5)):
        events.append([left, 6, right, 0])
        shift = 2.0 * (left in (1, 3)) + 1.0 * (right >= 3)
        frames.append(rng.normal(loc=shift, size=(int(rng.integers(3, 15)), 2)))
    events = np.array(events)
    stats = TreeStats(3, 1, events, *frame_stats(frames))
    questions = Questions(
        phone_questions=tuple(frozenset(q) for q in [{1}, {1, 2}, {1, 3}, {3, 4}, {2, 4}, {4}]),
        pdf_class_questions=(),
    )
    everything = np.concatenate(frames)
    best = -np.inf
    for key in (0, 2):
        for q in questions.phone_questions:
            yes = np.isin(events[:, key], list(q))
            if yes.all() or not yes.any():
                continue
            gain = (
                direct_loglike(np.concatenate([f for f, y in zip(frames, yes, strict=True) if y]))
                + direct_loglike(
                    np.concatenate([f for f, y in zip(frames, yes, strict=True) if not y])
                )
                - direct_loglike(everything)
            )
            if gain > best:
                best, best_split = gain, (key, q)
    result = build_tree(stats, roots=[TreeRoot((6,))], questions=questions,
                        num_pdf_classes={6: 1},
                        config=TreeConfig(num_leaves=2, thresh=0.0, cluster_thresh=0))  # fmt: skip
    assert result.num_leaves_split == 2 and result.num_pdfs == 2
    assert result.objf_split - result.objf_initial == pytest.approx(best, rel=1e-8)
    assert result.objf_initial == pytest.approx(direct_loglike(everything), rel=1e-10)
    split = result.ctx_dep.root.children[6]
    assert isinstance(split, Split) and (split.key, split.yes_values) == best_split


# --------------------------------------------------------------------------- synthetic recovery

S_NAMES = ("SIL", "Y", "N")  # the left contexts that change the pdf of a non-silence phone


def synthetic_truth(lang):
    """Exact sufficient statistics (variance 1) for every (left, centre, right, pdf-class) of the
    tiny lang; the true pdf is (centre, pdf-class, left in S) for non-silence phones and
    (centre, pdf-class) for silence phones (context-independent: neighbours recorded as 0)."""
    rng = np.random.default_rng(4)
    topo = lang.topology
    s_ids = set(lang.phones.ids(S_NAMES))
    contexts = [0, *topo.phones]
    events, labels = [], []
    for centre in topo.phones:
        for pdf_class in range(topo.num_pdf_classes(centre)):
            if centre in lang.silence_phone_ids:
                events.append([0, centre, 0, pdf_class])
                labels.append((centre, pdf_class, False))
                continue
            for left, right in itertools.product(contexts, contexts):
                events.append([left, centre, right, pdf_class])
                labels.append((centre, pdf_class, left in s_ids))
    label_ids = {lab: i for i, lab in enumerate(sorted(set(labels)))}
    means = rng.normal(scale=6.0, size=(len(label_ids), 3))
    truth = np.array([label_ids[lab] for lab in labels])
    counts = rng.integers(20, 60, size=len(events)).astype(float)
    mu = means[truth]
    stats = TreeStats(3, 1, np.array(events), counts, counts[:, None] * mu,
                      counts[:, None] * (mu**2 + 1.0))  # fmt: skip
    return stats, truth, s_ids


def lang_questions_for(lang, stats, s_ids):
    return make_questions(
        stats,
        phone_sets=[[p] for p in lang.topology.phones],
        max_pdf_classes=max(lang.topology.num_pdf_classes(p) for p in lang.topology.phones),
        extra_questions=[sorted(s_ids)],
    )


def all_windows(lang):
    topo = lang.topology
    values = [0, *topo.phones]
    rows = [(left, c, right, k) for c in topo.phones for k in range(topo.num_pdf_classes(c))
            for left in values for right in values]  # fmt: skip
    return np.array(rows)


@pytest.mark.parametrize("shared", [True, False])
def test_tree_recovers_the_true_partition(tiny_lang, shared):
    root, lang = tiny_lang
    stats, truth, s_ids = synthetic_truth(lang)
    questions = lang_questions_for(lang, stats, s_ids)
    roots = [(shared, split, ids) for _, split, ids in lang.roots()]
    result = build_tree(
        stats,
        roots=roots,
        questions=questions,
        num_pdf_classes={p: lang.topology.num_pdf_classes(p) for p in lang.topology.phones},
        ci_phones=lang.silence_phone_ids,
        config=TreeConfig(num_leaves=0, thresh=1.0, cluster_thresh=1.0),
    )
    tree = result.ctx_dep
    assert result.num_pdfs == tree.num_pdfs == len(set(truth.tolist()))
    pdfs = tree.compute_batch(stats.events[:, :3], stats.events[:, 3])
    pairs = set(zip(pdfs.tolist(), truth.tolist(), strict=True))
    assert len(pairs) == tree.num_pdfs  # a bijection between pdfs and true labels
    # every context (seen or not) reaches a valid pdf that follows the true rule
    windows = all_windows(lang)
    got = tree.compute_batch(windows[:, :3], windows[:, 3])
    assert got.min() >= 0 and got.max() < tree.num_pdfs
    pdf_of_label = {t: p for p, t in pairs}
    label_of_event = {
        tuple(e): t for e, t in zip(stats.events.tolist(), truth.tolist(), strict=True)
    }
    for (left, centre, right, k), pdf in zip(windows.tolist(), got.tolist(), strict=True):
        if centre in lang.silence_phone_ids:
            key = (0, centre, 0, k)
        else:  # any other left context in (or out of) S has the same true label
            key = (next(iter(s_ids)) if left in s_ids else 0, centre, right, k)
        assert pdf == pdf_of_label[label_of_event[key]], (left, centre, right, k)
    if not shared:  # not-shared roots: a table over pdf-classes under every phone
        assert all(isinstance(c, Table) and c.key == PDF_CLASS_KEY
                   for c in tree.root.children if c is not None)  # fmt: skip
    assert result.objf_final == pytest.approx(result.objf_split, abs=1e-6)
    assert result.objf_split > result.objf_initial


def test_tree_builds_transition_model_and_hclg(tiny_lang):
    root, lang = tiny_lang
    stats, _, s_ids = synthetic_truth(lang)
    result = build_tree(
        stats,
        roots=lang.roots(),
        questions=lang_questions_for(lang, stats, s_ids),
        num_pdf_classes={p: lang.topology.num_pdf_classes(p) for p in lang.topology.phones},
        ci_phones=lang.silence_phone_ids,
        config=TreeConfig(num_leaves=0, thresh=1.0),
    )
    tree = result.ctx_dep
    tm = TransitionModel.build(topology=lang.topology, ctx_dep=tree)
    assert set(tm.tid2pdf[1:].tolist()) == set(range(tree.num_pdfs))
    HmmModel(topology=lang.topology, ctx_dep=tree, transition_model=tm,
             phones=lang.phones).save(root / "tri")  # fmt: skip
    model = HmmModel.load(root / "tri")
    assert model.ctx_dep == tree
    info = mkgraph(lang.path, root / "tri", lang.path / "G.fst", root / "tri" / "graph")
    assert info.num_pdfs == tree.num_pdfs
    fst = kaldifst.StdVectorFst.read(str(root / "tri" / "graph" / "HCLG.fst"))
    prons = {w: [tuple(p.split())] for w, p in LEXICON}
    for words in (["YES"], ["NO", "YEAH", "YES"]):
        tids, olabels = best_input(fst, lang.words.ids(words))
        assert lang.words.symbols(olabels) == words
        phone_ids = phones_of_tids(tids, tm)
        check_word_path(lang, phone_ids, words, prons)
        frame_phones, classes, starts = frame_events_from_alignment(
            np.array(tids), transition_model=tm
        )
        padded = [0, *phone_ids, 0]
        instance = np.cumsum(starts) - 1
        assert frame_phones[starts].tolist() == phone_ids
        windows = np.array([padded[i : i + 3] for i in instance.tolist()])
        assert tm.tid2pdf[tids].tolist() == tree.compute_batch(windows, classes).tolist()


# --------------------------------------------------------------------------- stopping, clustering


def left_context_stats(means, counts=100.0):
    """One root (phone 9, one pdf-class), events by left phone 1..len(means), variance 1."""
    means = np.asarray(means, dtype=float)[:, None]
    events = np.array([[left, 9, 0, 0] for left in range(1, len(means) + 1)])
    n = np.full(len(means), counts)
    return TreeStats(3, 1, events, n, n[:, None] * means, n[:, None] * (means**2 + 1.0))


QS = Questions(
    phone_questions=tuple(frozenset(q) for q in [{1, 2}, {1}, {3}, {2}]), pdf_class_questions=()
)


def build_left(stats, **config):
    return build_tree(stats, roots=[TreeRoot((9,))], questions=QS, num_pdf_classes={9: 1},
                      config=TreeConfig(**config))  # fmt: skip


def test_greedy_stops_at_num_leaves_and_thresh():
    stats = left_context_stats([0.0, 0.0, 10.0, 10.5])
    small_gain = 0.5 * 200 * np.log(1.0 + 0.25**2)  # splitting {3} from {4}
    rows = np.arange(2, 4)
    assert split_gain(stats.counts[rows], stats.sums[rows], stats.sumsq[rows],
                      np.array([True, False])) == pytest.approx(small_gain)  # fmt: skip
    assert build_left(stats, num_leaves=2, thresh=0.0, cluster_thresh=0).num_leaves_split == 2
    assert build_left(stats, num_leaves=0, thresh=small_gain + 1, cluster_thresh=0).num_pdfs == 2
    tree3 = build_left(stats, num_leaves=0, thresh=small_gain - 1, cluster_thresh=0).ctx_dep
    assert tree3.num_pdfs == 3  # {1,2} | {3} | {4}: {1} vs {2} gains nothing
    pdfs = tree3.compute_batch(stats.events[:, :3], stats.events[:, 3]).tolist()
    assert pdfs[0] == pdfs[1] and len({pdfs[1], pdfs[2], pdfs[3]}) == 3
    assert build_left(stats, num_leaves=0, thresh=1e9).num_pdfs == 1
    with pytest.raises(EstimationError):
        TreeConfig(num_leaves=-1)


def test_leaf_clustering_merges_identical_leaves():
    # left 1 and 3 have the same data but no question groups them: greedy splitting makes
    # {1} | {3} | {2, 4}; clustering merges {1} and {3} into one pdf
    stats = left_context_stats([0.0, 5.0, 0.0, 5.0])
    kept = build_left(stats, num_leaves=0, thresh=1.0, cluster_thresh=0)
    assert kept.num_leaves_split == 3 and kept.num_pdfs == 3
    merged = build_left(stats, num_leaves=0, thresh=1.0)  # cluster_thresh -1: smallest gain
    assert merged.num_leaves_split == 3 and merged.num_pdfs == 2
    pdfs = merged.ctx_dep.compute_batch(stats.events[:, :3], stats.events[:, 3]).tolist()
    assert pdfs[0] == pdfs[2] and pdfs[1] == pdfs[3] and pdfs[0] != pdfs[1]
    c, s, q = stats.counts, stats.sums, stats.sumsq
    first = split_gain(c, s, q, np.array([True, False, False, False]))  # {1} | {2,3,4}
    second = split_gain(c[1:], s[1:], q[1:], np.array([False, True, False]))  # {3} | {2,4}
    assert merged.cluster_thresh == pytest.approx(min(first, second))
    assert merged.objf_final == pytest.approx(merged.objf_split)  # identical leaves: no loss
    # cluster_leaves directly: identical rows merge, distinct ones stay apart
    labels = cluster_leaves(c[[0, 1, 2]], s[[0, 1, 2]], q[[0, 1, 2]], thresh=1.0)
    assert labels.tolist() == [0, 1, 0]
    assert cluster_leaves(c, s, q, thresh=1e12).tolist() == [0, 0, 0, 0]


# --------------------------------------------------------------------------- GMM init, errors


def test_init_gmm_from_tree_stats_matches_numpy_fit():
    rng = np.random.default_rng(5)
    events = np.array([[left, 9, 0, 0] for left in range(1, 5)])
    frames = [rng.normal(loc=m, scale=s, size=(n, 2))
              for m, s, n in [(0, 1, 30), (0, 1, 40), (6, 2, 50), (6.5, 1, 20)]]  # fmt: skip
    stats = TreeStats(3, 1, events, *frame_stats(frames))
    result = build_tree(stats, roots=[TreeRoot((9,)), TreeRoot((8,), shared=False)],
                        questions=QS, num_pdf_classes={9: 1, 8: 2},
                        config=TreeConfig(num_leaves=3, thresh=0.0, cluster_thresh=0))  # fmt: skip
    tree = result.ctx_dep
    gauss = init_gmm_from_tree_stats(stats, tree)
    pdfs = tree.compute_batch(events[:, :3], events[:, 3])
    everything = np.concatenate(frames)
    for pdf in range(tree.num_pdfs):
        mine = [f for f, p in zip(frames, pdfs, strict=True) if p == pdf]
        data = np.concatenate(mine) if mine else everything  # unseen phone 8: global stats
        assert gauss.counts[pdf] == (len(data) if mine else 0)
        np.testing.assert_allclose(gauss.means[pdf], data.mean(0), rtol=1e-10)
        np.testing.assert_allclose(gauss.variances[pdf], data.var(0), rtol=1e-9)
    assert set(tree.possible_pdfs(8, 0)) != set(tree.possible_pdfs(8, 1))
    gmm = DiagGmmSet.from_gaussians(gauss.means, gauss.variances)
    x = everything[:3]
    expected = norm.logpdf(x[:, None, :], gauss.means[None], np.sqrt(gauss.variances)[None])
    np.testing.assert_allclose(gmm.log_likelihoods(x).numpy(), expected.sum(-1), rtol=1e-4)


def test_build_errors():
    stats = left_context_stats([0.0, 1.0])
    with pytest.raises(EstimationError, match="no root lists"):
        build_tree(stats, roots=[TreeRoot((8,))], questions=QS,
                   num_pdf_classes={8: 1, 9: 1, 50: 3})  # fmt: skip
    with pytest.raises(EstimationError, match="more than one tree root"):
        build_tree(stats, roots=[TreeRoot((9,)), TreeRoot((9, 8))], questions=QS,
                   num_pdf_classes={8: 1, 9: 1})  # fmt: skip
    with pytest.raises(EstimationError, match="pdf-class the topology lacks"):
        bad = TreeStats(3, 1, np.array([[1, 9, 0, 2]]), [1.0], [[0.0]], [[1.0]])
        build_tree(bad, roots=[TreeRoot((9,))], questions=QS, num_pdf_classes={9: 1})
    with pytest.raises(EstimationError, match="different numbers of pdf-classes"):
        build_tree(stats, roots=[TreeRoot((9, 8), shared=False)], questions=QS,
                   num_pdf_classes={8: 3, 9: 1})  # fmt: skip
    assert pdf_class_questions(1) == ()
