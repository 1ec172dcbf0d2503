"""Tests for asr.features.batch and the ``asr features`` CLI on real yesno/AN4 audio.

Oracles: features recomputed here per utterance with the offline front-end, archives
read back with kaldi_io, CMVN stats summed here from those features.
"""

from __future__ import annotations

import contextlib
import io
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from asr.audio import read_audio
from asr.cli.main import main
from asr.data import DataDir, write_data_dir
from asr.errors import AsrError, FeatureError
from asr.features import LpccConfig, MfccConfig, compute_features
from asr.features.batch import compute_data_dir_features
from asr.parallel import split_by_speaker

with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    import kaldi_io


@pytest.fixture()
def data_dir(tmp_path, yesno_dir, an4_dir):
    """12 utterances of 3 speakers: 10 yesno (8 kHz), one AN4 (16 kHz), one corrupt file."""
    waves = sorted((yesno_dir / "waves_yesno").glob("*.wav"))[:10]
    wav_scp = {}
    for index, path in enumerate(waves):
        wav_scp[f"{'ab'[index % 2]}-{path.stem}"] = str(path)
    wav_scp["c-an4"] = str(an4_dir / "wav" / "an4_clstk" / "fash" / "an251-fash-b.wav")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(40)))
    wav_scp["c-corrupt"] = str(corrupt)
    data = DataDir(
        wav_scp=wav_scp,
        text=dict.fromkeys(wav_scp, "YES"),
        utt2spk={utt_id: utt_id.split("-")[0] for utt_id in wav_scp},
    )
    write_data_dir(data, tmp_path / "train")
    return tmp_path / "train"


def _read_scp(path):
    return {key: matrix for key, matrix in kaldi_io.read_mat_scp(str(path))}


def test_features_stats_and_failures(data_dir, tmp_path):
    config = MfccConfig(sampling_rate=8000)
    calls = []
    summary = compute_data_dir_features(
        data_dir, tmp_path / "f1", config=config, num_jobs=1, progress=calls.append
    )
    assert sum(calls) == 12
    assert summary.num_utterances == 11 and summary.dim == 13 and not summary.skipped
    [(failed_utt, reason)] = summary.failed
    assert failed_utt == "c-corrupt" and "corrupt.wav" in reason
    assert (tmp_path / "f1" / "failed.txt").read_text().startswith("c-corrupt ")

    feats = _read_scp(tmp_path / "f1" / "feats.scp")
    wav_scp = dict(line.split(" ", 1) for line in (data_dir / "wav.scp").read_text().splitlines())
    assert list(feats) == sorted(utt for utt in wav_scp if utt != "c-corrupt")
    for utt_id, matrix in feats.items():
        samples, rate = read_audio(wav_scp[utt_id], sampling_rate=8000)  # AN4 is resampled
        assert matrix.tobytes() == compute_features(samples, rate, config).tobytes()
    frames = dict(
        line.split() for line in (tmp_path / "f1" / "utt2num_frames").read_text().splitlines()
    )
    assert {u: int(n) for u, n in frames.items()} == {u: m.shape[0] for u, m in feats.items()}
    assert summary.num_frames == sum(m.shape[0] for m in feats.values())

    cmvn = _read_scp(tmp_path / "f1" / "cmvn.scp")
    assert list(cmvn) == ["a", "b", "c"]
    for spk_id, stats in cmvn.items():
        utts = [m.astype(np.float64) for u, m in feats.items() if u.startswith(spk_id + "-")]
        assert stats.dtype == np.float64 and stats.shape == (2, 14)
        stacked = np.concatenate(utts)
        np.testing.assert_allclose(stats[0, :-1], stacked.sum(axis=0), rtol=1e-12)
        np.testing.assert_allclose(stats[1, :-1], (stacked**2).sum(axis=0), rtol=1e-12)
        assert stats[0, -1] == stacked.shape[0] and stats[1, -1] == 0.0
    # Kaldi's layout: the data dir gets feats.scp / cmvn.scp pointing at the archives.
    assert (data_dir / "feats.scp").read_text() == (tmp_path / "f1" / "feats.scp").read_text()
    assert (data_dir / "cmvn.scp").read_text() == (tmp_path / "f1" / "cmvn.scp").read_text()


def test_parallel_jobs_give_identical_features(data_dir, tmp_path):
    config = MfccConfig(sampling_rate=8000)
    compute_data_dir_features(data_dir, tmp_path / "f1", config=config, num_jobs=1)
    calls = []
    two = compute_data_dir_features(
        data_dir, tmp_path / "f2", config=config, num_jobs=2, progress=calls.append
    )
    assert sum(calls) == 12 and two.num_jobs == 2
    with ThreadPoolExecutor(max_workers=3) as pool:
        three = compute_data_dir_features(
            data_dir, tmp_path / "f3", config=config, num_jobs=3, executor=pool
        )
    assert three.num_jobs == 3
    reference = _read_scp(tmp_path / "f1" / "feats.scp")
    for name in ("f2", "f3"):
        other = _read_scp(tmp_path / name / "feats.scp")
        assert list(other) == list(reference)
        assert all(other[k].tobytes() == reference[k].tobytes() for k in reference)
        for file_name in ("cmvn.ark", "utt2num_frames", "failed.txt", "feature_config.json"):
            assert (tmp_path / name / file_name).read_bytes() == (
                tmp_path / "f1" / file_name
            ).read_bytes()
    # Speakers are not split across jobs: each job archive holds whole speakers.
    for job in (1, 2, 3):
        keys = [k for k, _ in kaldi_io.read_mat_ark(str(tmp_path / "f3" / f"raw_mfcc.{job}.ark"))]
        assert len({k.split("-")[0] for k in keys}) == 1


def test_up_to_date_outputs_are_skipped(data_dir, tmp_path):
    out = tmp_path / "f"
    config = MfccConfig(sampling_rate=8000)
    with ThreadPoolExecutor(max_workers=3) as pool:
        compute_data_dir_features(data_dir, out, config=config, num_jobs=3, executor=pool)
    ark_mtime = (out / "raw_mfcc.1.ark").stat().st_mtime_ns
    again = compute_data_dir_features(data_dir, out, config=config, num_jobs=1)
    assert again.skipped and again.num_utterances == 11 and len(again.failed) == 1
    assert (out / "raw_mfcc.1.ark").stat().st_mtime_ns == ark_mtime
    # Newer inputs: recompute; one job now, so the stale job archives are removed.
    future = (out / "feats.scp").stat().st_mtime + 10
    os.utime(data_dir / "wav.scp", (future, future))
    redone = compute_data_dir_features(data_dir, out, config=config, num_jobs=1)
    assert not redone.skipped
    assert sorted(p.name for p in out.glob("raw_*")) == ["raw_mfcc.1.ark", "raw_mfcc.1.scp"]
    # Another configuration: recompute, even though the outputs are newer.
    other = compute_data_dir_features(
        data_dir, out, config=MfccConfig(sampling_rate=8000, num_ceps=10), num_jobs=1
    )
    assert not other.skipped and other.dim == 10
    assert next(iter(_read_scp(out / "feats.scp").values())).shape[1] == 10


def test_all_failures_raise(tmp_path):
    wav_scp = {"s-1": str(tmp_path / "missing.wav"), "s-2": str(tmp_path / "empty.wav")}
    (tmp_path / "empty.wav").write_bytes(b"")
    data = DataDir(
        wav_scp=wav_scp, text=dict.fromkeys(wav_scp, "X"), utt2spk=dict.fromkeys(wav_scp, "s")
    )
    write_data_dir(data, tmp_path / "d")
    with pytest.raises(FeatureError, match="all 2 utterances"):
        compute_data_dir_features(tmp_path / "d", tmp_path / "out", config=MfccConfig())
    assert len((tmp_path / "out" / "failed.txt").read_text().splitlines()) == 2
    assert not (tmp_path / "out" / "feats.scp").exists()


def test_feature_jobs_split_by_speaker():
    """The jobs of compute_data_dir_features: asr.parallel.split_by_speaker."""
    utt2spk = {
        f"{spk}-{i}": spk for spk, n in (("a", 5), ("b", 1), ("c", 2), ("d", 4)) for i in range(n)
    }
    utts = sorted(utt2spk)
    jobs = split_by_speaker(utts, utt2spk, 2)
    assert [len(j) for j in jobs] == [6, 6]
    for num_jobs in (1, 2, 3, 4):
        jobs = split_by_speaker(utts, utt2spk, num_jobs)
        assert len(jobs) <= num_jobs and [u for j in jobs for u in j] == utts
        spk_sets = [{utt2spk[u] for u in job} for job in jobs]
        assert all(not (x & y) for i, x in enumerate(spk_sets) for y in spk_sets[i + 1 :])
    # More jobs than speakers: split utterances evenly; never more jobs than utterances.
    sizes = [len(j) for j in split_by_speaker(utts, utt2spk, 5)]
    assert len(sizes) == 5 and sum(sizes) == len(utts) and max(sizes) - min(sizes) <= 1
    assert len(split_by_speaker(utts[:3], utt2spk, 8)) == 3
    with pytest.raises(AsrError):
        split_by_speaker(utts, utt2spk, 0)


def test_cli_compute_and_show(data_dir, tmp_path, capsys):
    out = tmp_path / "lpcc"
    code = main(
        [
            "features",
            "compute",
            str(data_dir),
            "--type",
            "lpcc",
            "--nj",
            "2",
            "--out",
            str(out),
            "--num-ceps",
            "12",
            "--lpc-order",
            "10",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert "11 utterances" in captured.out and "1 failed" in captured.out
    assert "c-corrupt" in captured.err
    config = LpccConfig(sampling_rate=8000, num_ceps=12, order=10)  # rate from the first file
    feats = _read_scp(out / "feats.scp")
    first = sorted(feats)[0]
    wav = dict(line.split(" ", 1) for line in (data_dir / "wav.scp").read_text().splitlines())[
        first
    ]
    samples, rate = read_audio(wav)
    assert feats[first].tobytes() == compute_features(samples, rate, config).tobytes()

    assert (
        main(["features", "compute", str(data_dir), "--type", "lpc", "--num-mel-bins", "40"]) == 2
    )
    assert "--num-mel-bins does not apply to lpc" in capsys.readouterr().err

    assert main(["features", "show", str(out / "feats.scp"), "--utt", first, "--rows", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{first} {feats[first].shape[0]}x12 float32"
    assert len(lines) == 3
    assert np.allclose([float(v) for v in lines[1].split()], feats[first][0], rtol=1e-5)
    assert main(["features", "show", str(out / "cmvn.scp")]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "a 2x13 float64",
        "b 2x13 float64",
        "c 2x13 float64",
    ]


def test_cli_config_file_reproduces_features(data_dir, tmp_path, capsys):
    first = tmp_path / "first"
    args = ["features", "compute", str(data_dir), "--type", "fbank", "--num-mel-bins", "15"]
    assert main([*args, "--snip-edges", "false", "--out", str(first)]) == 0
    again = tmp_path / "again"
    config_json = str(first / "feature_config.json")
    assert (
        main(["features", "compute", str(data_dir), "--config", config_json, "--out", str(again)])
        == 0
    )
    a, b = _read_scp(first / "feats.scp"), _read_scp(again / "feats.scp")
    assert list(a) == list(b) and all(a[k].tobytes() == b[k].tobytes() for k in a)
    assert next(iter(b.values())).shape[1] == 15
    assert main(["features", "compute", str(data_dir), "--nj", "0", "--out", str(again)]) == 2
    assert "num_jobs must be >= 1" in capsys.readouterr().err
