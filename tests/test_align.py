"""asr.align: training graphs, Viterbi/equal alignment, alignment jobs and I/O.

Oracles: the pronunciations of the lexicon (paths of the training graph, enumerated by brute
force), the HMM topology (every alignment is split into phone instances by a plain loop that
follows the topology's transitions), graphs compiled with the transition probabilities at build
time (mkgraph-style) for the path costs, OpenFst's ``fstinfo``, and ``kaldi_io`` for archives.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import io
import shutil
import subprocess
from pathlib import Path

import kaldifst
import numpy as np
import pytest
import torch

from asr.align import (
    AlignConfig,
    AlignJob,
    TrainingGraphCompiler,
    TrainingGraphConfig,
    align_utterance,
    equal_alignment,
    read_alignments,
    read_alignments_ark,
    read_alignments_text,
    read_failed,
    run_alignment_job,
    scaled_transition_costs,
    write_alignments,
)
from asr.data import DataDir, write_data_dir
from asr.decode import DecoderConfig, DecodingGraph, decode
from asr.errors import AlignmentError, ArchiveError
from asr.features import MfccConfig
from asr.features.batch import compute_data_dir_features
from asr.features.pipeline import FeaturePipelineConfig, load_features
from asr.gmm import DiagGmmSet, GmmAccumulator, ml_update
from asr.gmm.alignment import align_data_dir
from asr.gmm.jobs import GmmJob, run_gmm_job
from asr.graph.fst_arrays import FstArrays
from asr.graph.mkgraph import MkGraphConfig, build_hclg
from asr.hmm import init_monophone
from asr.lang import Lexicon, prepare_lang
from asr.parallel import split_by_speaker

YES, NO, SIL = "Y", "N", "SIL"


# ----------------------------------------------------------------------------- helpers
def split_phones(tids: np.ndarray, tm) -> list[int]:
    """Phone instances of a reordered alignment, checking the topology on the way: within a
    phone, each forward transition leaves the state the previous one entered (starting at
    state 0), self-loops repeat the current state, and a phone ends in the final state."""
    phones: list[int] = []
    state = None  # HMM state entered by the last forward transition (None: between phones)
    current = None  # state whose self-loops may follow
    for tid in map(int, tids):
        phone, src, dst = (
            int(tm.tid2phone[tid]),
            int(tm.tid2hmm_state[tid]),
            int(tm.tid2dest_state[tid]),
        )
        final = tm.topology.entry(phone).num_states - 1
        if tm.is_self_loop[tid]:
            assert phones and phone == phones[-1] and src == current, "self-loop out of place"
            continue
        if state is None:
            assert src == 0, f"phone {phone} entered at state {src}"
            phones.append(phone)
        else:
            assert phone == phones[-1] and src == state, "broken transition chain"
        current = src
        state = None if dst == final else dst
    assert state is None, "alignment ends inside a phone"
    return phones


def phone_language(fst: FstArrays, tm) -> set[tuple[int, ...]]:
    """Phone sequences the graph accepts: every phone-entry transition (a forward transition
    out of HMM state 0) relabelled with its phone, everything else epsilon; epsilons removed,
    determinized, and the (acyclic) result enumerated by brute force."""
    entry = (tm.tid2hmm_state[fst.ilabel] == 0) & ~tm.is_self_loop[fst.ilabel] & (fst.ilabel > 0)
    labels = np.where(entry, tm.tid2phone[fst.ilabel], 0).astype(np.int32)
    acceptor = dataclasses.replace(
        fst, ilabel=labels, olabel=labels, weight=fst.weight * 0
    ).to_fst()
    kaldifst.rmepsilon(acceptor)
    det = FstArrays.from_fst(kaldifst.determinize(acceptor))
    out: set[tuple[int, ...]] = set()
    stack = [(det.start, ())]
    while stack:
        state, seq = stack.pop()
        if np.isfinite(det.final[state]):
            out.add(seq)
        for k in np.flatnonzero(det.src == state):
            assert len(seq) < 50, "phone language is not finite"
            stack.append((int(det.dst[k]), seq + (int(det.ilabel[k]),)))
    return out


@pytest.fixture(scope="module")
def lang(tmp_path_factory):
    return prepare_lang(
        Lexicon.from_pairs([("YES", YES), ("NO", NO)]), tmp_path_factory.mktemp("lang") / "lang"
    )


@pytest.fixture(scope="module")
def model(lang):
    return init_monophone(lang)


@pytest.fixture(scope="module")
def compiler(lang, model):
    return TrainingGraphCompiler(lang=lang, model=model)


def _pron(lang, words: str) -> list[int]:
    return [lang.phones[YES if w == "YES" else NO] for w in words.split()]


# ----------------------------------------------------------------------------- graphs
@pytest.mark.parametrize("text", ["YES NO", "NO NO YES"])
def test_graph_accepts_exactly_the_pronunciations_with_optional_silence(
    lang, model, compiler, text
):
    graph = compiler.compile(text)
    tm = model.transition_model
    sil = lang.phones[SIL]
    words = [lang.words[w] for w in text.split()]
    pron = _pron(lang, text)
    expected = set()
    for mask in range(2 ** (len(pron) + 1)):  # optional SIL before, between and after words
        seq = []
        for k in range(len(pron) + 1):
            if mask >> k & 1:
                seq.append(sil)
            if k < len(pron):
                seq.append(pron[k])
        expected.add(tuple(seq))
    assert phone_language(graph.fst, tm) == expected
    for seed in range(20):  # random paths: valid HMM sequences, the transcript as output
        ok, path = kaldifst.equal_align(graph.fst.to_fst(), 40, seed)
        assert ok
        _, tids, out_words, _ = kaldifst.get_linear_symbol_sequence(path)
        assert out_words == words
        assert tuple(split_phones(np.array(tids), tm)) in expected
    assert graph.min_num_frames() == 3 * len(pron)


def test_transition_probs_added_at_align_time_equal_build_time_scales(lang, model, compiler):
    rng = np.random.default_rng(0)
    tm = model.transition_model
    probs = rng.uniform(0.05, 1.0, tm.num_transition_ids + 1)
    sums = np.bincount(tm.tid2tstate[1:], weights=probs[1:])
    sums[0] = probs[0]  # index 0 is unused: log_probs[0] = 0
    log_probs = np.log(probs / sums[tm.tid2tstate])
    model2 = dataclasses.replace(model, transition_model=tm.with_log_probs(log_probs))
    text = "YES NO YES"
    ours = (
        TrainingGraphCompiler(lang=lang, model=model2)
        .compile(text)
        .decoding_graph(model2.transition_model, transition_scale=1.0, self_loop_scale=0.1)
    )
    lw = kaldifst.compose(lang.load_l_fst(), kaldifst.make_linear_acceptor(
        [lang.words[w] for w in text.split()]))  # fmt: skip
    built = build_hclg(
        lw,
        model=model2,
        disambig_phone_ids=lang.disambig_phone_ids,
        config=MkGraphConfig(self_loop_scale=0.1, transition_scale=1.0),
    )
    ilabel_to_pdf = np.where(np.arange(tm.num_transition_ids + 1) == 0, -1, tm.tid2pdf)
    reference = DecodingGraph.from_fst(built.to_fst(), ilabel_to_pdf)
    for num_frames in (9, 20, 57):
        zeros = np.zeros((num_frames, model.num_pdfs), dtype=np.float32)
        cfg = DecoderConfig(beam=1000.0, acoustic_scale=0.1)
        a, b = decode(ours, zeros, cfg), decode(reference, zeros, cfg)
        assert a.reached_final and b.reached_final
        assert a.graph_cost == pytest.approx(b.graph_cost, abs=1e-3)


def test_scaled_transition_costs_follow_kaldi_formula(model):
    tm = model.transition_model
    costs = scaled_transition_costs(tm, transition_scale=1.0, self_loop_scale=0.1)
    for tid in range(1, tm.num_transition_ids + 1):
        tstate = tm.tid2tstate[tid]
        loop = tm.self_loop_tid[tstate]
        p_loop = np.exp(tm.log_probs[loop]) if loop else 0.0
        if tm.is_self_loop[tid]:
            expected = 0.1 * tm.log_probs[tid]
        else:
            expected = 0.1 * np.log(1 - p_loop) + (tm.log_probs[tid] - np.log(1 - p_loop))
        assert costs[tid] == pytest.approx(-expected)
    assert costs[0] == 0.0


@pytest.mark.skipif(shutil.which("fstinfo") is None, reason="OpenFst fstinfo not installed")
def test_written_graph_is_readable_by_fstinfo(compiler, tmp_path):
    graph = compiler.compile("YES NO")
    graph.fst.write(tmp_path / "g.fst")
    out = subprocess.run(["fstinfo", str(tmp_path / "g.fst")], capture_output=True, text=True)
    assert out.returncode == 0
    assert f"# of states                                       {graph.num_states}" in out.stdout


def test_unknown_word_is_an_error_unless_mapped_to_oov(lang, model, compiler):
    with pytest.raises(AlignmentError, match="MAYBE"):
        compiler.compile("YES MAYBE")
    graphs, failed = compiler.compile_many({"a": "YES", "b": "MAYBE NO", "c": ""})
    assert set(graphs) == {"a"} and "MAYBE" in failed["b"] and "empty" in failed["c"]
    mapped = TrainingGraphCompiler(lang=lang, model=model, config=TrainingGraphConfig(map_oov=True))
    assert mapped.compile("YES MAYBE").word_ids == (lang.words["YES"], lang.oov_id)


# ----------------------------------------------------------------------------- real audio
@pytest.fixture(scope="module")
def yesno_set(yesno_dir, tmp_path_factory):
    names = sorted(p.stem for p in (yesno_dir / "waves_yesno").glob("*.wav"))[:6]
    words = {"0": "NO", "1": "YES"}
    wav_scp = {f"g-{n}": str(yesno_dir / "waves_yesno" / f"{n}.wav") for n in names}
    text = {f"g-{n}": " ".join(words[c] for c in n.split("_")) for n in names}
    utt2spk = {u: "g" for u in wav_scp}
    out = tmp_path_factory.mktemp("yesno") / "train"
    write_data_dir(DataDir(wav_scp=wav_scp, text=text, utt2spk=utt2spk), out)
    compute_data_dir_features(out, out / "data", config=MfccConfig(sampling_rate=8000))
    pipeline = FeaturePipelineConfig(cmvn="speaker", deltas=2)
    return out, text, load_features(out, pipeline), pipeline


@pytest.fixture(scope="module")
def flat_model(yesno_set, model, compiler):
    """GMMs after one pass over an equal alignment (a flat-start model 1)."""
    _, text, feats, _ = yesno_set
    all_feats = torch.from_numpy(np.concatenate(list(feats.values())).astype(np.float64))
    gmm = DiagGmmSet.init_single(
        num_pdfs=model.num_pdfs, feats_mean=all_feats.mean(0), feats_var=all_feats.var(0)
    )
    acc = GmmAccumulator.for_model(gmm)
    tm = model.transition_model
    for utt_id, f in feats.items():
        ali = equal_alignment(compiler.compile(text[utt_id]), len(f), seed=1)
        acc.accumulate_aligned(gmm, torch.from_numpy(f).double(), torch.from_numpy(tm.tid2pdf[ali]))
    return ml_update(gmm, acc)[0]


def test_equal_and_viterbi_alignments_follow_topology_and_transcript(
    yesno_set, model, compiler, flat_model, lang
):
    _, text, feats, _ = yesno_set
    tm = model.transition_model
    sil = lang.phones[SIL]
    for utt_id, f in list(feats.items())[:3]:
        graph = compiler.compile(text[utt_id])
        log_likes = flat_model.log_likelihoods(torch.from_numpy(f)).numpy()
        for ali in (
            equal_alignment(graph, len(f), seed=7),
            align_utterance(graph, log_likes, transition_model=tm).alignment,
        ):
            assert ali.shape == (len(f),)
            phones = [p for p in split_phones(ali, tm) if p != sil]
            assert phones == _pron(lang, text[utt_id])
    # the Viterbi alignment is the best path: its cost is not above the equal alignment's
    utt_id, f = next(iter(feats.items()))
    graph = compiler.compile(text[utt_id])
    log_likes = flat_model.log_likelihoods(torch.from_numpy(f)).numpy()
    viterbi = align_utterance(graph, log_likes, transition_model=tm, config=AlignConfig(beam=200))
    eq = equal_alignment(graph, len(f), seed=3)
    eq_like = log_likes[np.arange(len(f)), tm.tid2pdf[eq]].sum()
    costs = scaled_transition_costs(tm)
    assert viterbi.graph_cost - 0.1 * viterbi.log_like <= costs[eq].sum() - 0.1 * eq_like + 1e-2


def test_too_short_and_missing_utterances_are_reported_and_skipped(
    yesno_set, model, compiler, flat_model
):
    _, text, feats, _ = yesno_set
    ids = list(feats)[:3]
    job_feats = {u: feats[u] for u in ids}
    job_feats[ids[1]] = feats[ids[1]][:10]  # 8 words need >= 24 frames
    graphs = {u: compiler.compile(text[u]) for u in ids}
    job = GmmJob(
        AlignJob(
            utt_ids=(*ids, "ghost"),
            feats=job_feats,
            graphs=graphs,
            scorer=flat_model,
            transition_model=model.transition_model,
            mode="align",
        )
    )
    res = run_gmm_job(job)
    assert set(res.alignments) == {ids[0], ids[2]}
    assert "too short" in res.failed[ids[1]] and "10 frames" in res.failed[ids[1]]
    assert res.failed["ghost"] == "no features"
    # the aligner alone (any frame scorer) gives the same alignments and failures
    plain = run_alignment_job(job.align)
    assert plain.failed == res.failed and sorted(plain.alignments) == sorted(res.alignments)
    assert all(np.array_equal(plain.alignments[u], res.alignments[u]) for u in res.alignments)
    eq = run_gmm_job(GmmJob(dataclasses.replace(job.align, mode="equal")))
    assert set(eq.alignments) == {ids[0], ids[2]} and "too short" in eq.failed[ids[1]]
    assert eq.acc is not None and eq.acc.tot_weight == sum(len(job_feats[u]) for u in eq.alignments)


def test_align_data_dir_writes_kaldi_archives_and_failed_list(
    yesno_set, model, flat_model, lang, tmp_path
):
    data_dir, text, feats, pipeline = yesno_set
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    bad = sorted(text)[2]
    lines = [f"{u} {'YES MAYBE' if u == bad else text[u]}\n" for u in sorted(text)]
    (data / "text").write_text("".join(lines))
    model_dir = tmp_path / "model"
    model.save(model_dir)
    flat_model.save(model_dir / "gmm.pt")
    pipeline.save(model_dir)
    summary = align_data_dir(data, lang.path, model_dir, tmp_path / "ali")
    assert summary.num_aligned == len(text) - 1 and summary.num_failed == 1
    assert "MAYBE" in read_failed(tmp_path / "ali")[bad]
    ali = read_alignments(tmp_path / "ali")
    assert sorted(ali) == sorted(set(text) - {bad})
    assert all(len(ali[u]) == len(feats[u]) for u in ali)
    with contextlib.redirect_stdout(io.StringIO()):
        import kaldi_io
    theirs = dict(kaldi_io.read_vec_int_ark(str(tmp_path / "ali" / "ali.ark")))
    text_form = read_alignments_text(tmp_path / "ali" / "ali.txt")
    for u in ali:
        assert np.array_equal(theirs[u], ali[u]) and np.array_equal(text_form[u], ali[u])
    # two jobs on a thread pool give the same alignments
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        align_data_dir(data, lang.path, model_dir, tmp_path / "ali2", num_jobs=2, executor=pool)
    ali2 = read_alignments(tmp_path / "ali2")
    assert sorted(ali2) == sorted(ali) and all(np.array_equal(ali[u], ali2[u]) for u in ali)


# ----------------------------------------------------------------------------- I/O, jobs
def test_alignment_io_roundtrip_kaldi_io_and_errors(tmp_path):
    rng = np.random.default_rng(1)
    alis = {f"u{i}": rng.integers(1, 500, size=int(rng.integers(0, 50))) for i in range(7)}
    assert write_alignments(alis, tmp_path) == 7
    with contextlib.redirect_stdout(io.StringIO()):
        import kaldi_io
    for utt_id, values in kaldi_io.read_vec_int_ark(str(tmp_path / "ali.ark")):
        assert np.array_equal(values, alis[utt_id])
    for reader in (read_alignments, lambda d: dict(read_alignments_ark(Path(d) / "ali.ark"))):
        back = reader(tmp_path)
        assert sorted(back) == sorted(alis)
        assert all(np.array_equal(back[u], alis[u]) for u in alis)
    data = (tmp_path / "ali.ark").read_bytes()
    (tmp_path / "bad.ark").write_bytes(data[:-3])
    with pytest.raises(ArchiveError, match="truncated"):
        list(read_alignments_ark(tmp_path / "bad.ark"))
    with pytest.raises(ArchiveError):
        write_alignments({"has space": np.array([1])}, tmp_path / "x")
    with pytest.raises(ArchiveError, match="alignment dir"):
        read_alignments(tmp_path / "nothing")


def test_split_by_speaker_keeps_speakers_whole_and_balanced():
    utt2spk = {f"s{i // 4}-{i}": f"s{i // 4}" for i in range(20)}
    jobs = split_by_speaker(sorted(utt2spk), utt2spk, 3)
    assert len(jobs) == 3 and sorted(u for j in jobs for u in j) == sorted(utt2spk)
    for job in jobs:
        speakers = {utt2spk[u] for u in job}
        assert all(sum(utt2spk[u] == s for u in job) == 4 for s in speakers)
    assert len(split_by_speaker(["a-1", "a-2"], {"a-1": "a", "a-2": "a"}, 4)) == 2
