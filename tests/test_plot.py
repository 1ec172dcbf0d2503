"""asr.plot and ``asr plot``: PNGs exist, are non-trivial (size, pixel variance via
matplotlib.image.imread), and the RESULTS.md table parser reads what a recipe writes."""

from __future__ import annotations

import contextlib
import io

import matplotlib.image
import numpy as np
import pytest

from asr.bundle import export_bundle
from asr.cli.main import main
from asr.data import read_kaldi_map
from asr.errors import PlotError
from asr.plot import parse_results_table, plot_results
from tests.support.yesno_data import build_yesno_model


def _check_png(path, min_bytes=5000):
    assert path.is_file() and path.stat().st_size > min_bytes
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 200
    assert float(pixels[..., :3].std()) > 0.05  # not blank


def test_alignment_plot(yesno_dir, tmp_path):
    paths = build_yesno_model(yesno_dir, tmp_path / "m")
    bundle = export_bundle(paths["model"], graph_dir=paths["graph"], out_dir=tmp_path / "b")
    wav = next(iter(read_kaldi_map(paths["test"] / "wav.scp").values()))
    out = tmp_path / "align.png"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["plot", "alignment", "--model", str(bundle.root), wav, "--out", str(out)]) == 0
    _check_png(out, min_bytes=20000)


def test_results_table_and_chart(tmp_path):
    md = tmp_path / "RESULTS.md"
    md.write_text(
        "# yesno\n\nsome text | not a table\n\n| system | data | %WER | notes |\n|:--|--|--:|--|\n"
        "| mono | test | %WER 3.33 [ 8 / 240, 8 ins, 0 del, 0 sub ] | x |\n"
        "| tri1 | test | 1.25 | |\n| dnn | test | n/a | |\n"
    )
    assert parse_results_table(md.read_text()) == [("mono", 3.33), ("tri1", 1.25)]
    out = tmp_path / "chart.png"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["plot", "results", str(md), "--out", str(out)]) == 0
    _check_png(out)
    (tmp_path / "empty.md").write_text("# nothing here\n")
    with pytest.raises(PlotError, match="no markdown table"):
        plot_results(tmp_path / "empty.md", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
    np.testing.assert_equal(parse_results_table("| a | WER |\n|---|---|\n| s | 7 |"), [("s", 7.0)])
