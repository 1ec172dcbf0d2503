"""Tests for asr.align.forward_backward against independent oracles: brute-force path
enumeration, a plain dense-matrix forward, OpenFst's log-semiring shortest distance
(fstcompose + fstshortestdistance --arc_type=log) and the Viterbi decoder."""

from __future__ import annotations

import math
import shutil
import subprocess
from collections import defaultdict

import numpy as np
import pytest
import torch

from asr.align.forward_backward import (
    ForwardBackwardConfig,
    forward_backward,
    pdf_posteriors,
    transition_counts,
)
from asr.decode import DecoderConfig, DecodingGraph, decode
from asr.errors import DecodeError
from asr.gmm import DiagGmmSet, GmmAccumulator


# ------------------------------------------------------------------ graph helpers
def random_graph(
    rng: np.random.Generator,
    *,
    num_states: int,
    num_ilabels: int,
    num_pdfs: int,
    eps_prob: float = 0.3,
    fanout: int = 2,
    ilabel_to_pdf: np.ndarray | None = None,
    permute: bool = False,
) -> tuple[DecodingGraph, dict]:
    """States 0..S-1 in topological order: emitting self-loops, forward emitting and
    epsilon arcs (i -> j > i), random final states; the last state is final.
    ``permute`` renumbers the states at random (the start state is then not 0)."""
    src, ilab, wt, nxt = [], [], [], []
    for s in range(num_states):
        if rng.random() < 0.7:
            src.append(s), ilab.append(int(rng.integers(1, num_ilabels + 1)))
            wt.append(rng.uniform(0.0, 2.0)), nxt.append(s)
        for _ in range(int(rng.integers(1, fanout + 1)) if s < num_states - 1 else 0):
            n = int(rng.integers(s + 1, num_states))
            label = 0 if rng.random() < eps_prob else int(rng.integers(1, num_ilabels + 1))
            src.append(s), ilab.append(label), wt.append(rng.uniform(-0.5, 2.0)), nxt.append(n)
    final = np.where(rng.random(num_states) < 0.3, rng.uniform(0.0, 1.0, num_states), np.inf)
    final[-1] = rng.uniform(0.0, 1.0)
    if ilabel_to_pdf is None:
        ilabel_to_pdf = np.concatenate([[-1], rng.integers(0, num_pdfs, num_ilabels)])
    perm = rng.permutation(num_states) if permute else np.arange(num_states)
    final_perm = np.empty_like(final)
    final_perm[perm] = final
    arrays = {
        "src": perm[np.array(src)],
        "ilabel": np.array(ilab, dtype=np.int32),
        "olabel": np.zeros(len(src), dtype=np.int32),
        "weight": np.array(wt, dtype=np.float32),
        "nextstate": perm[np.array(nxt)].astype(np.int32),
        "final_cost": final_perm.astype(np.float32),
        "start_state": int(perm[0]),
        "ilabel_to_pdf": ilabel_to_pdf,
    }
    return DecodingGraph.from_arrays(**arrays), arrays


def brute_force(arrays: dict, log_likes: np.ndarray, scale: float):
    """All paths consuming every frame: (log total, {(frame, ilabel): posterior})."""
    num_frames = log_likes.shape[0]
    out = defaultdict(list)
    for a, s in enumerate(arrays["src"]):
        out[int(s)].append(a)
    table = arrays["ilabel_to_pdf"]
    paths = []  # (log weight, [(frame, ilabel), ...])

    def walk(state, t, logw, steps):
        fc = float(arrays["final_cost"][state])
        if t == num_frames and math.isfinite(fc):
            paths.append((logw - fc, list(steps)))
        for a in out[state]:
            label = int(arrays["ilabel"][a])
            w = -float(arrays["weight"][a])
            n = int(arrays["nextstate"][a])
            if label == 0:
                walk(n, t, logw + w, steps)
            elif t < num_frames:
                ll = scale * float(log_likes[t, table[label]])
                steps.append((t, label))
                walk(n, t + 1, logw + w + ll, steps)
                steps.pop()

    walk(int(arrays["start_state"]), 0, 0.0, [])
    if not paths:
        return -math.inf, {}
    logws = np.array([p[0] for p in paths])
    total = float(np.logaddexp.reduce(logws))
    post = defaultdict(float)
    for logw, steps in paths:
        for key in steps:
            post[key] += math.exp(logw - total)
    return total, dict(post)


def dense_forward(arrays: dict, log_likes: np.ndarray, scale: float) -> float:
    """Plain matrix forward in the probability domain with per-frame rescaling."""
    n = arrays["final_cost"].shape[0]
    table = arrays["ilabel_to_pdf"]
    eps = np.zeros((n, n))
    for s, label, w, d in zip(
        arrays["src"], arrays["ilabel"], arrays["weight"], arrays["nextstate"], strict=True
    ):
        if label == 0:
            eps[s, d] += math.exp(-float(w))
    closure = np.linalg.inv(np.eye(n) - eps)  # sum_k eps^k (nilpotent: acyclic)
    alpha = np.zeros(n)
    alpha[arrays["start_state"]] = 1.0
    alpha = alpha @ closure
    log_norm = 0.0
    for t in range(log_likes.shape[0]):
        emit = np.zeros((n, n))
        for s, label, w, d in zip(
            arrays["src"], arrays["ilabel"], arrays["weight"], arrays["nextstate"], strict=True
        ):
            if label != 0:
                emit[s, d] += math.exp(-float(w) + scale * float(log_likes[t, table[label]]))
        alpha = alpha @ emit @ closure
        norm = alpha.sum()
        alpha /= norm
        log_norm += math.log(norm)
    return log_norm + math.log(float(alpha @ np.exp(-arrays["final_cost"].astype(np.float64))))


def openfst_log_total(arrays: dict, log_likes: np.ndarray, scale: float, tmp_path) -> float:
    """-shortest distance (log semiring) of score lattice o graph, via the OpenFst CLI."""
    table = arrays["ilabel_to_pdf"]
    lines = [
        f"{s} {d} {label} {label} {float(w)!r}"
        for s, label, w, d in zip(
            arrays["src"], arrays["ilabel"], arrays["weight"], arrays["nextstate"], strict=True
        )
    ]
    lines += [f"{s} {float(c)!r}" for s, c in enumerate(arrays["final_cost"]) if math.isfinite(c)]
    # OpenFst takes the first listed state as the start state: start_state is 0 here.
    (tmp_path / "g.txt").write_text("\n".join(lines) + "\n")
    lat = []
    for t in range(log_likes.shape[0]):
        for label in range(1, table.shape[0]):
            cost = -scale * float(log_likes[t, table[label]])
            lat.append(f"{t} {t + 1} {label} {label} {cost!r}")
    lat.append(f"{log_likes.shape[0]} 0")
    (tmp_path / "l.txt").write_text("\n".join(lat) + "\n")

    def run(*cmd):
        return subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=tmp_path).stdout

    run("fstcompile", "--arc_type=log", "g.txt", "g.fst")
    run("fstcompile", "--arc_type=log", "l.txt", "l.fst")
    run("fstarcsort", "--sort_type=ilabel", "g.fst", "gs.fst")
    run("fstcompose", "l.fst", "gs.fst", "c.fst")
    dist = run("fstshortestdistance", "--reverse", "c.fst").split("\n")[0].split()
    return -float(dist[1])


def dense_posts(result, num_frames: int, num_labels: int, post=None) -> np.ndarray:
    post = result.posteriors if post is None else post
    out = np.zeros((num_frames, num_labels))
    np.add.at(out, (post.frame_index, post.label), post.posterior)
    return out


CASES = [(seed, scale) for seed in range(8) for scale in (1.0, 0.3)]


# ------------------------------------------------------------------ exactness
@pytest.mark.parametrize(("seed", "scale"), CASES)
def test_matches_brute_force_paths(seed, scale):
    rng = np.random.default_rng(seed)
    graph, arrays = random_graph(
        rng, num_states=6, num_ilabels=5, num_pdfs=3, permute=seed % 2 == 1
    )
    num_frames = 5
    log_likes = rng.normal(0.0, 2.0, (num_frames, 3)).astype(np.float32)
    total, posts = brute_force(arrays, log_likes, scale)
    if not math.isfinite(total):
        with pytest.raises(DecodeError):
            forward_backward(graph, log_likes, acoustic_scale=scale)
        return
    res = forward_backward(graph, log_likes, acoustic_scale=scale)
    assert res.total_log_like == pytest.approx(total, abs=1e-5)
    expected = np.zeros((num_frames, 6))
    for (t, label), p in posts.items():
        expected[t, label] = p
    np.testing.assert_allclose(dense_posts(res, num_frames, 6), expected, atol=1e-5)
    np.testing.assert_allclose(res.frame_post_sums, 1.0, atol=1e-9)
    # sparse entries are unique per (frame, ilabel), sorted, never epsilon
    keys = res.posteriors.frame_index.astype(np.int64) * 100 + res.posteriors.label
    assert np.all(np.diff(keys) > 0) and res.posteriors.label.min() > 0
    # transition counts: expected number of uses of each ilabel
    counts = transition_counts(res, num_transition_ids=5)
    np.testing.assert_allclose(counts, expected.sum(0), atol=1e-5)


def test_brute_force_cases_are_not_vacuous():
    feasible = 0
    for seed, _ in CASES[::2]:
        rng = np.random.default_rng(seed)
        _, arrays = random_graph(rng, num_states=6, num_ilabels=5, num_pdfs=3)
        total, posts = brute_force(arrays, rng.normal(0.0, 2.0, (5, 3)).astype(np.float32), 1.0)
        feasible += math.isfinite(total) and len(posts) > 5
    assert feasible >= 5


@pytest.mark.parametrize("seed", range(4))
def test_matches_openfst_and_dense_forward(seed, tmp_path):
    if shutil.which("fstshortestdistance") is None:
        pytest.skip("OpenFst command-line tools are not installed")
    rng = np.random.default_rng(100 + seed)
    for _ in range(20):  # draw until the graph can consume the frames
        graph, arrays = random_graph(rng, num_states=30, num_ilabels=12, num_pdfs=7, fanout=3)
        log_likes = rng.normal(-3.0, 2.0, (40, 7)).astype(np.float32)
        dense = dense_forward(arrays, log_likes, 0.5)
        if math.isfinite(dense):
            break
    res = forward_backward(graph, log_likes, acoustic_scale=0.5)
    assert res.total_log_like == pytest.approx(dense, abs=1e-6 * abs(dense) + 1e-6)
    # the same graph with states renumbered at random (epsilon order no longer by id)
    perm = np.random.default_rng(seed).permutation(30)
    final = np.empty_like(arrays["final_cost"])
    final[perm] = arrays["final_cost"]
    shuffled = DecodingGraph.from_arrays(
        **{**arrays, "src": perm[arrays["src"]], "nextstate": perm[arrays["nextstate"]],
           "final_cost": final, "start_state": int(perm[0])}
    )  # fmt: skip
    assert forward_backward(shuffled, log_likes, acoustic_scale=0.5).total_log_like == (
        pytest.approx(res.total_log_like, abs=1e-9)
    )
    fst_total = openfst_log_total(arrays, log_likes, 0.5, tmp_path)
    assert res.total_log_like == pytest.approx(fst_total, rel=1e-5, abs=1e-3)
    assert res.num_active <= 41 * 30


def test_single_path_and_docstring_graph():
    # 0 -1-> 1 -eps-> 2 -2-> 3, self-loop 3 on state 3: alignment 1 2 3 3 is forced
    arrays = {
        "src": np.array([0, 1, 2, 3]),
        "ilabel": np.array([1, 0, 2, 3], dtype=np.int32),
        "olabel": np.zeros(4, dtype=np.int32),
        "weight": np.array([0.5, 0.25, 0.0, 1.0], dtype=np.float32),
        "nextstate": np.array([1, 2, 3, 3], dtype=np.int32),
        "final_cost": np.array([np.inf, np.inf, np.inf, 0.125], dtype=np.float32),
        "start_state": 0,
        "ilabel_to_pdf": np.array([-1, 0, 1, 1]),
    }
    graph = DecodingGraph.from_arrays(**arrays)
    log_likes = np.array([[-1.0, -2.0], [-3.0, -4.0], [-5.0, -6.0], [-7.0, -8.0]], np.float32)
    res = forward_backward(graph, log_likes, acoustic_scale=0.5)
    assert res.posteriors.frame_index.tolist() == [0, 1, 2, 3]
    assert res.posteriors.label.tolist() == [1, 2, 3, 3]
    np.testing.assert_allclose(res.posteriors.posterior, 1.0)
    expected = -(0.5 + 0.25 + 0.0 + 2 * 1.0 + 0.125) + 0.5 * (-1.0 - 4.0 - 6.0 - 8.0)
    assert res.total_log_like == pytest.approx(expected, abs=1e-5)


# ------------------------------------------------------------------ Viterbi limit
@pytest.mark.parametrize("seed", range(3))
def test_large_acoustic_scale_concentrates_on_viterbi_path(seed):
    rng = np.random.default_rng(200 + seed)
    num_ilabels = 10
    for _ in range(20):
        graph, _ = random_graph(
            rng, num_states=25, num_ilabels=num_ilabels, num_pdfs=num_ilabels, fanout=3,
            ilabel_to_pdf=np.arange(-1, num_ilabels),  # injective: distinct labels, distinct scores
        )  # fmt: skip
        log_likes = rng.normal(0.0, 1.0, (30, num_ilabels)).astype(np.float32)
        try:
            res = forward_backward(graph, log_likes, acoustic_scale=100.0)
            break
        except DecodeError:
            continue
    best = decode(graph, log_likes, DecoderConfig(beam=1e4, max_active=10**6, acoustic_scale=100.0))
    assert best.reached_final
    dense = dense_posts(res, 30, num_ilabels + 1)
    np.testing.assert_array_equal(dense.argmax(1), best.alignment)
    assert dense[np.arange(30), best.alignment].min() > 0.9
    # at scale 1 the mass is spread: the same frames are far less certain
    soft = forward_backward(graph, log_likes, acoustic_scale=1.0)
    assert dense_posts(soft, 30, num_ilabels + 1).max(1).mean() < dense.max(1).mean()


# ------------------------------------------------------------------ pruning
def test_beam_pruning_exact_when_wide_and_consistent_when_narrow():
    rng = np.random.default_rng(7)
    graph, arrays = chain_graph(num_phones=20, rng=rng)
    log_likes = rng.normal(-5.0, 3.0, (150, 60)).astype(np.float32)
    exact = forward_backward(graph, log_likes)
    wide = forward_backward(graph, log_likes, beam=1e6)
    assert wide.total_log_like == pytest.approx(exact.total_log_like, abs=1e-9)
    np.testing.assert_array_equal(wide.posteriors.label, exact.posteriors.label)
    narrow = forward_backward(graph, log_likes, beam=8.0)
    assert narrow.num_active < exact.num_active
    assert narrow.total_log_like <= exact.total_log_like + 1e-9
    np.testing.assert_allclose(narrow.frame_post_sums, 1.0, atol=1e-6)
    # pruning only removes paths: every surviving (frame, tid) has exact mass too
    exact_dense = dense_posts(exact, 150, 200)
    narrow_dense = dense_posts(narrow, 150, 200)
    assert np.all(exact_dense[narrow_dense > 0] > 0)
    # a beam far above the score spread loses (almost) nothing
    loose = forward_backward(graph, log_likes, beam=60.0)
    assert narrow.total_log_like <= loose.total_log_like <= exact.total_log_like + 1e-9
    assert loose.total_log_like == pytest.approx(exact.total_log_like, abs=1e-3)
    np.testing.assert_allclose(dense_posts(loose, 150, 200), exact_dense, atol=1e-3)


def chain_graph(*, num_phones: int, rng: np.random.Generator) -> tuple[DecodingGraph, dict]:
    """Training-graph-like: 3-state left-to-right HMMs with self-loops, optional
    silence (reached by epsilon arcs) between phones; ilabel = transition-id."""
    src, ilab, wt, nxt = [], [], [], []
    state = 0
    next_free = 1
    tid = 1
    table = [-1]
    for p in range(num_phones):
        for _ in range(3):
            pdf = int(rng.integers(0, 60))
            for is_loop in (True, False):
                table.append(pdf)
                src.append(state), ilab.append(tid), wt.append(0.7 if is_loop else 0.5)
                nxt.append(state if is_loop else next_free)
                tid += 1
            state, next_free = next_free, next_free + 1
        if p < num_phones - 1:  # optional silence: eps skip or a 1-state silence
            sil_in, after = next_free, next_free + 1
            next_free += 2
            src.append(state), ilab.append(0), wt.append(0.7), nxt.append(after)
            src.append(state), ilab.append(0), wt.append(0.7), nxt.append(sil_in)
            for is_loop in (True, False):
                table.append(0)
                (
                    src.append(sil_in),
                    ilab.append(tid),
                    wt.append(0.3),
                    nxt.append(sil_in if is_loop else after),
                )
                tid += 1
            state = after
    final = np.full(next_free, np.inf, np.float32)
    final[state] = 0.0
    arrays = {
        "src": np.array(src),
        "ilabel": np.array(ilab, dtype=np.int32),
        "olabel": np.zeros(len(src), dtype=np.int32),
        "weight": np.array(wt, dtype=np.float32),
        "nextstate": np.array(nxt, dtype=np.int32),
        "final_cost": final,
        "start_state": 0,
        "ilabel_to_pdf": np.array(table),
    }
    return DecodingGraph.from_arrays(**arrays), arrays


def test_chain_graph_matches_dense_forward():
    rng = np.random.default_rng(3)
    graph, arrays = chain_graph(num_phones=6, rng=rng)
    log_likes = rng.normal(-5.0, 3.0, (60, 60)).astype(np.float32)
    res = forward_backward(graph, log_likes)
    assert res.total_log_like == pytest.approx(dense_forward(arrays, log_likes, 1.0), rel=1e-9)
    np.testing.assert_allclose(res.frame_post_sums, 1.0, atol=1e-9)
    # the first and last frames can only be the first and last phone's emitting states
    first = res.posteriors.label[res.posteriors.frame_index == 0]
    assert set(first.tolist()) <= {1, 2}


# ------------------------------------------------------------------ pdf posteriors / GMM stats
def test_pdf_posteriors_feed_the_gmm_accumulator():
    rng = np.random.default_rng(11)
    for _ in range(20):
        graph, arrays = random_graph(rng, num_states=6, num_ilabels=5, num_pdfs=3)
        log_likes = rng.normal(0.0, 2.0, (5, 3)).astype(np.float32)
        total, posts = brute_force(arrays, log_likes, 1.0)
        if math.isfinite(total) and len(posts) > 5:
            break
    res = forward_backward(graph, log_likes)
    table = arrays["ilabel_to_pdf"]
    gamma = np.zeros((5, 3))
    for (t, label), p in posts.items():
        gamma[t, table[label]] += p
    pdf_post = pdf_posteriors(res, table)
    np.testing.assert_allclose(dense_posts(res, 5, 3, pdf_post), gamma, atol=1e-5)
    keys = pdf_post.frame_index.astype(np.int64) * 3 + pdf_post.label
    assert np.all(np.diff(keys) > 0)

    feats = torch.from_numpy(rng.normal(size=(5, 4)))
    gmm = DiagGmmSet.init_single(num_pdfs=3, feats_mean=torch.zeros(4), feats_var=torch.ones(4))
    acc = GmmAccumulator.for_model(gmm)
    acc.accumulate_posteriors(gmm, feats, tuple(pdf_post))
    np.testing.assert_allclose(acc.occupancy.numpy(), gamma.sum(0), atol=1e-5)
    np.testing.assert_allclose(acc.x_sum.numpy(), gamma.T @ feats.numpy(), atol=1e-5)


# ------------------------------------------------------------------ errors
def test_too_short_utterance_raises():
    rng = np.random.default_rng(5)
    graph, _ = chain_graph(num_phones=4, rng=rng)  # needs >= 12 frames
    with pytest.raises(DecodeError, match="too short.*at least 12"):
        forward_backward(graph, rng.normal(size=(11, 60)).astype(np.float32))
    forward_backward(graph, rng.normal(size=(12, 60)).astype(np.float32))


def test_too_long_for_graph_without_self_loops_raises():
    graph = DecodingGraph.from_arrays(
        src=[0], ilabel=[1], olabel=[0], weight=[0.0], nextstate=[1],
        final_cost=[np.inf, 0.0], start_state=0, ilabel_to_pdf=[-1, 0],
    )  # fmt: skip
    with pytest.raises(DecodeError, match="frame 1 of 2"):
        forward_backward(graph, np.zeros((2, 1), np.float32))


def test_nan_scores_and_epsilon_cycle_and_bad_options_raise():
    rng = np.random.default_rng(1)
    graph, _ = chain_graph(num_phones=2, rng=rng)
    log_likes = rng.normal(size=(10, 60)).astype(np.float32)
    log_likes[4, 7] = np.nan
    with pytest.raises(DecodeError, match="NaN"):
        forward_backward(graph, log_likes)
    cyclic = DecodingGraph.from_arrays(
        src=[0, 1, 1], ilabel=[0, 0, 1], olabel=[0, 0, 0], weight=[0.0, 0.0, 0.0],
        nextstate=[1, 0, 1], final_cost=[np.inf, 0.0], start_state=0, ilabel_to_pdf=[-1, 0],
    )  # fmt: skip
    with pytest.raises(DecodeError, match="cycle of epsilon"):
        forward_backward(cyclic, np.zeros((3, 1), np.float32))
    with pytest.raises(DecodeError):
        ForwardBackwardConfig(acoustic_scale=0.0)
    with pytest.raises(DecodeError):
        forward_backward(graph, np.zeros((3, 60), np.float32), beam=float("nan"))
    res = forward_backward(graph, np.zeros((10, 60), np.float32))
    with pytest.raises(DecodeError):
        pdf_posteriors(res, np.zeros(3, np.int64))
    with pytest.raises(DecodeError):
        transition_counts(res, num_transition_ids=2)


# ------------------------------------------------------------------ a real training graph
def test_real_training_graph_matches_dense_forward_and_viterbi(tmp_path):
    training_graphs = pytest.importorskip("asr.align.training_graphs")
    from asr.hmm import init_monophone
    from asr.lang import Lexicon, prepare_lang

    lexicon = Lexicon.from_pairs([("YES", "Y EH S"), ("NO", "N OW")])
    lang = prepare_lang(lexicon, tmp_path / "lang")
    model = init_monophone(lang)
    compiler = training_graphs.TrainingGraphCompiler(lang=lang, model=model)
    tm = model.transition_model
    graph = compiler.compile("YES NO YES").decoding_graph(tm)
    table = tm.tid2pdf.astype(np.int64).copy()
    table[0] = -1
    arrays = {
        "src": np.repeat(np.arange(graph.num_states), np.diff(graph.arc_start)),
        "ilabel": graph.ilabel,
        "weight": graph.weight,
        "nextstate": graph.nextstate,
        "final_cost": graph.final_cost,
        "start_state": graph.start_state,
        "ilabel_to_pdf": table,
    }
    rng = np.random.default_rng(0)
    log_likes = rng.normal(-30.0, 6.0, (80, model.num_pdfs)).astype(np.float32)
    res = forward_backward(graph, log_likes)
    assert res.total_log_like == pytest.approx(dense_forward(arrays, log_likes, 1.0), rel=1e-9)
    counts = transition_counts(res, num_transition_ids=tm.num_transition_ids)
    assert counts.sum() == pytest.approx(80.0, abs=1e-3)
    sharp = forward_backward(graph, log_likes, acoustic_scale=30.0)
    config = DecoderConfig(beam=1e9, max_active=10**6, acoustic_scale=30.0)
    best = decode(graph, log_likes, config)
    dense = dense_posts(sharp, 80, tm.num_transition_ids + 1)
    np.testing.assert_array_equal(dense.argmax(1), best.alignment)
