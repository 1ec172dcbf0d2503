"""asr.gmm.train_tri (tri1 on deltas, tri2 on LDA+MLLT) and ``asr train tri``.

On a small FSDD subset (two speakers, the ten digit words from CMUdict): a short monophone run,
then tri1 and tri2 from its alignments. Oracles: a plain per-frame loop over phone instances
(following the topology's transitions) and ``ContextDependency.compute`` per frame for
convert-ali; ``kaldi_io`` for the Kaldi-format ``final.mat``; the aligner run from the saved
model dir (its feature pipeline) reproducing the trainer's own final alignment; an
uninterrupted run for resumption; EM's monotone likelihood at a fixed alignment.
"""

from __future__ import annotations

import json

import kaldi_io
import numpy as np
import pytest

from asr.align import read_alignments
from asr.batch.decode_dir import decode_data_dir
from asr.cli.main import main
from asr.errors import TrainingError
from asr.features.pipeline import FeaturePipelineConfig, load_transform
from asr.gmm import DiagGmmSet
from asr.gmm.alignment import align_data_dir
from asr.gmm.train_tri import TriConfig, convert_alignments, train_tri
from asr.graph import mkgraph
from asr.hmm import HmmModel
from tests.support import fsdd_tri
from tests.support.fsdd_tri import TRI1, TRI2

# the shared module fixtures of tests/support/fsdd_tri.py (each module builds its own copy)
setup, tri1, tri2 = fsdd_tri.setup, fsdd_tri.tri1, fsdd_tri.tri2


# ----------------------------------------------------------------------------- oracles
def _phone_instances(tids: np.ndarray, tm) -> list[tuple[int, int]]:
    """(phone, first frame) per phone instance, following the topology transition by
    transition (reordered alignments: a phone's first frame leaves HMM state 0)."""
    out, state = [], None
    for frame, tid in enumerate(map(int, tids)):
        phone, src, dst = (
            int(tm.tid2phone[tid]),
            int(tm.tid2hmm_state[tid]),
            int(tm.tid2dest_state[tid]),
        )
        if tm.is_self_loop[tid]:
            assert out and out[-1][0] == phone
            continue
        if state is None:
            assert src == 0
            out.append((phone, frame))
        else:
            assert out[-1][0] == phone and src == state
        state = None if dst == tm.topology.entry(phone).num_states - 1 else dst
    assert state is None
    return out


def _expected_pdfs(ali: np.ndarray, tm, ctx_dep) -> np.ndarray:
    """Per frame, the new tree's pdf for the frame's triphone window and pdf-class."""
    instances = _phone_instances(ali, tm)
    bounds = [f for _, f in instances] + [len(ali)]
    out = np.empty(len(ali), dtype=np.int64)
    for k, (phone, first) in enumerate(instances):
        left = instances[k - 1][0] if k > 0 else 0
        right = instances[k + 1][0] if k + 1 < len(instances) else 0
        for frame in range(first, bounds[k + 1]):
            tid = int(ali[frame])
            state = tm.topology.entry(phone).states[int(tm.tid2hmm_state[tid])]
            pdf_class = (
                state.self_loop_pdf_class if tm.is_self_loop[tid] else state.forward_pdf_class
            )
            out[frame] = ctx_dep.compute((left, phone, right), pdf_class)
    return out


# ----------------------------------------------------------------------------- tests
def test_tri1_tree_conversion_and_training(setup, tri1):
    root = setup["root"]
    mono, model = HmmModel.load(root / "mono"), HmmModel.load(root / "tri1")
    assert model.ctx_dep.context_width == 3 and model.ctx_dep.central_position == 1
    assert mono.num_pdfs < model.num_pdfs <= TRI1.num_leaves
    assert tri1.num_pdfs == model.num_pdfs and tri1.feature_dim == 39
    # convert-ali against a per-frame oracle: same phones, states and transitions, new pdfs
    old_ali = read_alignments(root / "mono" / "ali")
    some = dict(sorted(old_ali.items())[:25])
    new_ali = convert_alignments(
        some, old_transition_model=mono.transition_model, ctx_dep=model.ctx_dep,
        transition_model=model.transition_model,
    )  # fmt: skip
    old_tm, new_tm = mono.transition_model, model.transition_model
    for utt_id, ali in some.items():
        new = new_ali[utt_id]
        assert new.shape == ali.shape and new.min() >= 1
        assert new.max() <= new_tm.num_transition_ids
        for table in ("tid2phone", "tid2hmm_state", "tid2dest_state", "is_self_loop", "tid2index"):
            np.testing.assert_array_equal(getattr(new_tm, table)[new], getattr(old_tm, table)[ali])
        np.testing.assert_array_equal(
            new_tm.tid2pdf[new], _expected_pdfs(ali, old_tm, model.ctx_dep)
        )
        _phone_instances(new, new_tm)  # a valid path through the new model's HMMs
    # training: the likelihood never drops at a fixed alignment (beyond mixing-up noise)
    curve = tri1.log_like_per_frame
    assert len(curve) == TRI1.num_iters - 1 and curve[-1] > curve[0]
    for prev, it in zip(tri1.iterations, tri1.iterations[1:], strict=False):
        if it.mode == "given":
            assert it.log_like_per_frame > prev.log_like_per_frame - 0.05
    assert tri1.num_failed == 0 and tri1.num_aligned == 100
    assert tri1.num_pdfs < tri1.num_gauss <= TRI1.totgauss  # mixed up (as far as the data allow)
    log = json.loads((root / "tri1" / "train_log.json").read_text())
    assert log["format"] == "asr-train-tri" and log["config"] == TRI1.to_dict()
    assert not (root / "tri1" / "checkpoint.npz").exists() and not (root / "tri1" / "init").exists()


def test_tri_models_decode_held_out_takes(setup, tri1, tri2, tmp_path):
    root = setup["root"]
    wers = {}
    for name in ("mono", "tri1", "tri2"):
        mkgraph(setup["lang"].path, root / name, root / "G.fst", tmp_path / name / "graph")
        summary = decode_data_dir(
            root / name, tmp_path / name / "graph", setup["test"], tmp_path / name / "decode"
        )
        wers[name] = summary.wer
    # 40 held-out digits after training on 100: one error is 2.5 %; LDA+MLLT estimated from this
    # little data is the weakest of the three here (on all of FSDD it is not)
    assert wers["mono"] <= 5.0 and wers["tri1"] <= 5.0 and wers["tri2"] <= 15.0, wers


def test_tri2_lda_mllt_transform_and_pipeline(setup, tri2, tmp_path):
    model_dir = setup["root"] / "tri2"
    assert tri2.feature_mode == "lda_mllt" and tri2.feature_dim == TRI2.lda_dim
    pipeline = FeaturePipelineConfig.load(model_dir)
    assert pipeline.splice == (3, 3) and pipeline.deltas == 0 and pipeline.transform == "final.mat"
    matrix = kaldi_io.read_mat(str(model_dir / "final.mat"))  # Kaldi-readable
    assert matrix.shape == (TRI2.lda_dim, 13 * 7)
    np.testing.assert_array_equal(matrix, load_transform(model_dir / "final.mat"))
    assert DiagGmmSet.load(model_dir / "gmm.pt").dim == TRI2.lda_dim
    # MLLT: one update per mllt iteration, each raising its auxiliary objective
    assert [m.iteration for m in tri2.mllt] == list(TRI2.mllt_iters)
    for update in tri2.mllt:
        assert update.objective_after > update.objective_before
    # the saved pipeline reproduces the training features: aligning with the model dir gives
    # the trainer's own final alignment
    align_data_dir(setup["train"], setup["lang"].path, model_dir, tmp_path / "ali")
    ours, theirs = read_alignments(model_dir / "ali"), read_alignments(tmp_path / "ali")
    assert ours.keys() == theirs.keys()
    same = sum(np.array_equal(ours[u], theirs[u]) for u in ours)
    assert same == len(ours)


def test_tri2_resume_after_interruption_gives_the_same_model(setup, tri2, tmp_path):
    class Stop(Exception):
        pass

    def stop_after_2(stats) -> None:
        if stats.iteration == 2:
            raise Stop

    args = (setup["train"], setup["lang"].path, setup["root"] / "tri1", tmp_path / "b")
    with pytest.raises(Stop):  # after the MLLT update of iteration 2
        train_tri(*args, config=TRI2, progress=stop_after_2)
    assert (tmp_path / "b" / "checkpoint.npz").exists() and not (
        tmp_path / "b" / "hmm.json"
    ).exists()
    resumed = train_tri(*args, config=TRI2)
    assert resumed.resumed_from == 3
    a, b = (DiagGmmSet.load(d / "gmm.pt") for d in (setup["root"] / "tri2", tmp_path / "b"))
    np.testing.assert_allclose(b.means.numpy(), a.means.numpy(), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(
        load_transform(tmp_path / "b" / "final.mat"),
        load_transform(setup["root"] / "tri2" / "final.mat"), rtol=1e-9, atol=1e-12,
    )  # fmt: skip
    assert resumed.mllt == tri2.mllt


def test_lda_dim_larger_than_classes_is_a_clear_error(setup, tmp_path):
    config = TriConfig(feature_mode="lda_mllt", num_leaves=40, num_iters=2, lda_dim=91)
    with pytest.raises(TrainingError, match="LDA"):
        train_tri(setup["train"], setup["lang"].path, setup["root"] / "mono", tmp_path / "x",
                  config=config)  # fmt: skip


def test_cli_train_tri_maps_options_and_keeps_an_up_to_date_model(setup, tri1, capsys):
    out = setup["root"] / "tri1"
    code = main(["train", "tri", str(setup["train"]), str(setup["lang"].path),
                 str(setup["root"] / "mono"), str(out), "--num-leaves", "120", "--totgauss", "500",
                 "--num-iters", "8", "--realign-iters", "4", "--max-iter-inc", "5",
                 "--tree-thresh", "50"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    # the same options give TRI1's config, so the finished model is kept (not retrained)
    assert f"{tri1.seconds:.1f} s" in printed and "resumed" not in printed
    assert f"deltas, dim 39, {tri1.num_pdfs} pdfs, {tri1.num_gauss} Gaussians" in printed
    with pytest.raises(SystemExit):
        main(["train", "tri", "a", "b", "c", "d", "--mode", "fmllr"])


def test_tri2_in_worker_processes(setup, tri1, tmp_path):
    """Two spawned single-threaded workers (statistics merged across processes, MLLT included)
    give a model like one process's."""
    config = TriConfig(
        feature_mode="lda_mllt", num_leaves=60, totgauss=150, num_iters=3, max_iter_inc=2,
        realign_iters=(), mllt_iters=(1,), lda_dim=20, tree_thresh=50.0,
    )  # fmt: skip
    args = (setup["train"], setup["lang"].path, setup["root"] / "tri1")
    one = train_tri(*args, tmp_path / "one", config=config)
    two = train_tri(*args, tmp_path / "two", config=config, num_jobs=2)
    assert two.num_aligned == one.num_aligned == 100
    # Statistics summed per worker then merged differ from one process's sums in the last
    # bits (and differently on every CPU's SIMD width), so a tree split whose gain sits on
    # the threshold may flip: at most one leaf apart, and then the models are close, not equal.
    assert abs(two.num_pdfs - one.num_pdfs) <= 1
    assert len(two.mllt) == 1 and two.mllt[0].objective_after > two.mllt[0].objective_before
    rtol = 1e-4 if two.num_pdfs == one.num_pdfs else 1e-2
    np.testing.assert_allclose(two.log_like_per_frame, one.log_like_per_frame, rtol=rtol)
