"""asr.cli.results: EXP/*/decode_*/wer collected into RESULTS.md; the table is the one
asr.plot.parse_results_table reads (first %WER column = dev)."""

from __future__ import annotations

import contextlib
import io
import json

from asr.cli.main import main
from asr.plot import parse_results_table


def _decode_dir(exp, model, data_set, errors, words, scale):
    out = exp / model / f"decode_{data_set}"
    out.mkdir(parents=True)
    wer = 100.0 * errors / words
    (out / "wer").write_text(f"%WER {wer:.2f} [ {errors} / {words}, 0 ins, 0 del, {errors} sub ]\n")
    (out / "decode.json").write_text(json.dumps({"best_acoustic_scale": scale}))


def test_results_table_from_wer_files(tmp_path):
    exp = tmp_path / "exp"
    _decode_dir(exp, "ctc", "dev", 12, 400, 1.0)
    _decode_dir(exp, "mono", "dev", 40, 400, 0.1)
    _decode_dir(exp, "mono", "test", 30, 300, 0.1)
    _decode_dir(exp, "dnn", "dev", 8, 400, 0.083)
    (exp / "dnn" / "train_summary.json").write_text(json.dumps({"train_seconds": 90}))
    (exp / "mono0").mkdir()  # no decodes: no row
    out = tmp_path / "RESULTS.md"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["results", str(exp), "--out", str(out), "--title", "t"]) == 0
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0] == "| model | %WER dev | %WER test | nnet training |"
    assert rows[1:] == [
        "| mono | 10.00 [40 / 400, 0.1] | 10.00 [30 / 300, 0.1] |  |",
        "| dnn | 2.00 [8 / 400, 0.083] |  | 1.5 min |",
        "| ctc | 3.00 [12 / 400, 1] |  |  |",
    ]
    assert parse_results_table(text) == [("mono", 10.0), ("dnn", 2.0), ("ctc", 3.0)]


def test_results_missing_exp_dir(tmp_path, capsys):
    assert main(["results", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err
