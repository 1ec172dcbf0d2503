"""``asr decode`` end to end on a small graph directory and a Kaldi ark."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from asr.cli.main import main
from asr.decode import DecoderConfig, DecodingGraph, decode
from tests.support.random_graphs import random_problem

with contextlib.redirect_stdout(io.StringIO()):
    import kaldi_io


@pytest.fixture()
def graph_dir(tmp_path):
    fst, table, _ = random_problem(5, num_states=20, num_arcs=80, num_ilabels=8, num_pdfs=5)
    gdir = tmp_path / "graph"
    gdir.mkdir()
    fst.write(str(gdir / "HCLG.fst"))
    (gdir / "ilabel_to_pdf.int").write_text("".join(f"{v}\n" for v in table))
    words = ["<eps>", "ONE", "TWO", "THREE", "FOUR", "FIVE"]
    (gdir / "words.txt").write_text("".join(f"{w} {i}\n" for i, w in enumerate(words)))
    return gdir, table, words


def test_decode_cli_writes_hyps_alignments_and_wer(tmp_path, graph_dir, capsys):
    gdir, table, words = graph_dir
    rng = np.random.default_rng(1)
    mats = {
        f"utt{i}": rng.normal(-3, 2, (int(n), 5)).astype(np.float32)
        for i, n in enumerate([6, 9, 4])
    }
    ark = tmp_path / "loglikes.ark"
    with open(ark, "wb") as f:
        for utt_id, m in mats.items():
            kaldi_io.write_mat(f, m, key=utt_id)
    graph = DecodingGraph.from_fst(gdir / "HCLG.fst", table)
    config = DecoderConfig(beam=10.0, acoustic_scale=0.5)
    expected = {
        u: decode(graph, m, config, word_symbols=dict(enumerate(words))) for u, m in mats.items()
    }
    ref = tmp_path / "text"
    ref.write_text("".join(f"{u} {r.text}\n" for u, r in expected.items()))
    out = tmp_path / "decode"
    argv = ["decode", "--graph", str(gdir), "--log-likes", str(ark), "--out", str(out)]
    argv += ["--beam", "10", "--acoustic-scale", "0.5", "--ref", str(ref)]
    assert main(argv) == 0
    hyp_lines = (out / "hyp.txt").read_text().splitlines()
    assert hyp_lines == [f"{u} {r.text}".rstrip() for u, r in expected.items()]
    ali = {line.split()[0]: line.split()[1:] for line in (out / "ali.txt").read_text().splitlines()}
    for u, r in expected.items():
        assert [int(x) for x in ali[u]] == r.alignment.tolist()
    assert (out / "wer").read_text().startswith("%WER 0.00")
    assert "%WER 0.00" in capsys.readouterr().out
    costs = (out / "costs.txt").read_text().splitlines()
    assert len(costs) == 3 and float(costs[0].split()[1]) == pytest.approx(
        expected["utt0"].total_cost, abs=1e-3
    )


def test_decode_cli_errors_are_clean(tmp_path, graph_dir, capsys):
    gdir, _, _ = graph_dir
    ark = tmp_path / "bad.ark"
    with open(ark, "wb") as f:
        kaldi_io.write_mat(f, np.zeros((3, 2), np.float32), key="u1")  # too few pdf columns
    out = tmp_path / "out"
    assert main(["decode", "--graph", str(gdir), "--log-likes", str(ark), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "utterance u1" in err and "pdf-count mismatch" in err
    assert (
        main(
            [
                "decode",
                "--graph",
                str(tmp_path / "nope"),
                "--log-likes",
                str(ark),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert not (out / "hyp.txt").exists()
    argv = ["decode", "--graph", str(gdir), "--log-likes", str(ark), "--out", str(out)]
    assert main([*argv, "--lattice-beam", "6"]) == 2
    assert "--lattice-beam/--word-ins-penalties need MODEL_DIR" in capsys.readouterr().err
    assert main(["decode", "m", "d", "--graph", str(gdir), "--word-ins-penalties", "0,x"]) == 2
    assert "--word-ins-penalties: not a comma-separated list" in capsys.readouterr().err


def test_decode_on_cuda_without_cuda_is_one_line_exit_2(tmp_path, graph_dir, capsys, monkeypatch):
    """`asr decode --device cuda` on a torch without CUDA (or without a GPU): a one-line
    error and exit 2, in both modes, not torch's AssertionError traceback."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    gdir, _, _ = graph_dir
    ark = tmp_path / "loglikes.ark"
    with open(ark, "wb") as f:
        kaldi_io.write_mat(f, np.zeros((3, 5), np.float32), key="u1")
    argvs = [
        ["decode", "--graph", str(gdir), "--log-likes", str(ark), "--out", str(tmp_path / "o")],
        ["decode", str(tmp_path / "model"), str(tmp_path / "data"), "--graph", str(gdir)],
    ]
    for argv in argvs:
        assert main([*argv, "--device", "cuda"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("asr decode: error: device 'cuda': ") and err.count("\n") == 1
        assert "--device cpu" in err
