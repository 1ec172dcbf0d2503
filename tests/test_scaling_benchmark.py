"""benchmarks/scaling.py: cost ratios against data ratios from synthetic stage_times.json
files (the ratios worked out by hand), its JSON keys, and the --perturb driver's pieces; the
driver itself on a two-speaker slice of speechocean762 is a slow test."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import scaling  # noqa: E402


def write_exp(path: Path, hours: float | None, stages: dict[str, tuple[int, float, float]]):
    """``stages``: name -> (stage number, wall seconds, CPU seconds)."""
    times = {
        "format": "asr-stage-times-1",
        "stages": {
            name: {"stage": n, "wall_seconds": wall, "cpu_seconds": cpu, "peak_rss_mib": 100.0}
            for name, (n, wall, cpu) in stages.items()
        },
    }
    if hours is not None:
        times["train_data"] = {"hours": hours, "num_utterances": 10}
    path.mkdir(parents=True)
    (path / "stage_times.json").write_text(json.dumps(times))
    return path


def run_main(*argv) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert scaling.main([str(a) for a in argv]) == 0
    return out.getvalue()


@pytest.fixture
def two_runs(tmp_path):
    small = write_exp(tmp_path / "small", 1.0, {
        "features": (1, 2.0, 1.0),
        "mono": (5, 10.0, 8.0),
        "mono_decode": (6, 6.0, 5.0),
        "tri1": (7, 20.0, 10.0),
        "dnn": (13, 100.0, 100.0),
    })  # fmt: skip
    big = write_exp(tmp_path / "big", 2.0, {
        "features": (1, 20.0, 10.0),  # x10, but not a GMM stage
        "mono": (5, 20.0, 16.0),  # x2: linear
        "mono_decode": (6, 6.0, 5.0),  # the same dev set: x1
        "tri1": (7, 70.0, 30.0),  # CPU x3: 1.5 times the data ratio; wall x3.5
        "dnn": (13, 900.0, 900.0),  # not a GMM stage
        "tri2": (9, 5.0, 5.0),  # only in one run
    })  # fmt: skip
    return small, big


def test_ratios_and_the_headline(two_runs):
    report = json.loads(run_main(*two_runs, "--json"))
    assert report["max_gmm_stage_cost_ratio_over_data_ratio"] == pytest.approx(1.5)
    assert report["max_gmm_stage"] == "tri1"
    assert report["cost"] == "cpu"
    assert report["train_hours"] == [1.0, 2.0] and report["data_ratios"] == [2.0]
    stages = report["stages"]
    assert list(stages) == ["features", "mono", "mono_decode", "tri1", "tri2", "dnn"]
    mono = stages["mono"]
    assert mono["stage"] == 5
    assert mono["wall_seconds"] == [10.0, 20.0] and mono["cpu_seconds"] == [8.0, 16.0]
    assert mono["pairs"] == [{
        "data_ratio": 2.0, "wall_ratio": 2.0, "cpu_ratio": 2.0,
        "wall_ratio_over_data_ratio": 1.0, "cpu_ratio_over_data_ratio": 1.0,
        "peak_rss_ratio": 1.0,
    }]  # fmt: skip
    assert stages["mono_decode"]["pairs"][0]["cpu_ratio_over_data_ratio"] == 0.5
    assert stages["tri1"]["pairs"][0]["wall_ratio_over_data_ratio"] == 1.75
    assert stages["features"]["pairs"][0]["cpu_ratio_over_data_ratio"] == 5.0  # not counted
    assert stages["tri2"]["pairs"][0]["cpu_ratio"] is None  # missing in the first run
    assert stages["tri2"]["wall_seconds"] == [None, 5.0]

    assert report["warnings"] == []

    wall = json.loads(run_main(*two_runs, "--json", "--cost", "wall"))
    assert wall["max_gmm_stage_cost_ratio_over_data_ratio"] == pytest.approx(1.75)

    text = run_main(*two_runs)
    assert "data x2" in text and "tri1" in text
    assert text.strip().endswith("1.500 (tri1)")


def test_three_runs_compare_consecutive_pairs(tmp_path):
    runs = [
        write_exp(tmp_path / "a", 1.0, {"mono": (5, 10.0, 10.0)}),
        write_exp(tmp_path / "b", 2.0, {"mono": (5, 30.0, 30.0)}),  # x3 for x2 data: 1.5
        write_exp(tmp_path / "c", 8.0, {"mono": (5, 60.0, 60.0)}),  # x2 for x4 data: 0.5
    ]
    report = json.loads(run_main(*runs, "--json"))
    assert report["data_ratios"] == [2.0, 4.0]
    assert [p["cpu_ratio_over_data_ratio"] for p in report["stages"]["mono"]["pairs"]] == [1.5, 0.5]
    assert report["max_gmm_stage_cost_ratio_over_data_ratio"] == pytest.approx(1.5)
    assert report["max_gmm_stage_pair"] == 0


def test_no_gmm_stage_and_missing_sizes(tmp_path):
    a = write_exp(tmp_path / "a", 1.0, {"features": (1, 1.0, 1.0)})
    b = write_exp(tmp_path / "b", 2.0, {"features": (1, 2.0, 2.0)})
    report = json.loads(run_main(a, b, "--json"))
    assert report["max_gmm_stage_cost_ratio_over_data_ratio"] is None
    assert "n/a" in run_main(a, b)
    c = write_exp(tmp_path / "c", None, {"features": (1, 2.0, 2.0)})
    with pytest.raises(SystemExit, match="train_data.hours"):
        scaling.main([str(a), str(c)])
    with pytest.raises(SystemExit, match="stage times"):
        scaling.main([str(a), str(tmp_path / "nothing")])
    with pytest.raises(SystemExit):
        scaling.main([str(a)])  # one dir: nothing to compare


def test_a_training_stage_that_trained_nothing_is_flagged(tmp_path):
    a = write_exp(tmp_path / "a", 1.0, {"mono": (5, 10.0, 10.0)})
    b = write_exp(tmp_path / "b", 2.0, {"mono": (5, 1.0, 1.0)})
    times = json.loads((b / "stage_times.json").read_text())
    times["stages"]["mono"]["models_trained"] = []  # rerun, model up to date
    (b / "stage_times.json").write_text(json.dumps(times))
    report = json.loads(run_main(a, b, "--json"))
    assert len(report["warnings"]) == 1 and "stage 5 (mono)" in report["warnings"][0]
    assert "warning:" in run_main(a, b)


def test_stage_lists_and_ranges():
    assert scaling.parse_stages("1,3-5") == [1, 3, 4, 5]
    assert scaling._ranges([1, 3, 4, 5, 9]) == [(1, 1), (3, 5), (9, 9)]
    assert scaling.PERTURB_FACTORS[2] == (0.9, 1.1)


@pytest.mark.slow
def test_perturb_on_a_two_speaker_slice(speechocean762_dir, tmp_path):
    """The driver end to end on 2 train + 2 dev speakers: features, LM, monophone graph and
    training (stages 1, 3-5) in both roots; the perturbed run has 2.02 times the hours."""
    text = run_main("--perturb", 2, "--corpus-dir", speechocean762_dir, "--work-dir", tmp_path,
                    "--max-speakers", 2, "--stages", "1,3-5", "--json")  # fmt: skip
    report = json.loads(text)
    assert report["data_ratios"][0] == pytest.approx(1 / 0.9 + 1 / 1.1, abs=0.01)
    assert {"features", "lm", "mono_graph", "mono"} <= set(report["stages"])
    assert report["max_gmm_stage"] == "mono"
    assert report["max_gmm_stage_cost_ratio_over_data_ratio"] > 0
    for root in ("base", "sp2"):
        times = json.loads((tmp_path / root / "exp/an4/stage_times.json").read_text())
        assert times["train_data"]["num_speakers"] == (2 if root == "base" else 4)
        assert [e["iteration"] for e in times["trainings"]["mono"]["iterations"]] == list(range(40))
