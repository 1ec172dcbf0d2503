"""Tests of the corpus preparers (asr.data.an4/fsdd/yesno) and the ``asr prepare`` CLI.

Real corpora via the conftest fixtures. Oracles: counts from the corpora's README,
transcripts re-parsed independently from the official files and file names, the
pronunciation dictionary ``etc/an4.dic``, and ``validate_data_dir`` on every written set.
Temporary corpus trees use symlinks to the real audio; nothing is copied.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import asr.cli.main as cli_main
from asr.data import (
    DataDir,
    prepare_an4,
    prepare_fsdd,
    prepare_yesno,
    read_data_dir,
    select_dev_speakers,
    validate_data_dir,
)
from asr.errors import CorpusError

SETS_FILES = ("spk2utt", "text", "utt2spk", "wav.scp")


def _snapshot(out_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out_dir)): p.read_bytes()
        for p in sorted(out_dir.rglob("*"))
        if p.is_file()
    }


def _an4_reference(an4_dir: Path, portion: str = "train") -> dict[str, tuple[str, str]]:
    """utt_id -> (spk_id, transcript), parsed independently from the official files."""
    fileids = (an4_dir / "etc" / f"an4_{portion}.fileids").read_text().split()
    lines = (an4_dir / "etc" / f"an4_{portion}.transcription").read_text().splitlines()
    reference = {}
    for fileid, line in zip(fileids, lines, strict=True):
        folder, spk_id, file_id = fileid.split("/")
        words = [w for w in line[: line.rindex("(")].split() if not w.startswith("<")]
        assert line[line.rindex("(") + 1 : line.rindex(")")] == file_id
        reference[f"{spk_id}-{file_id}"] = (spk_id, " ".join(words))
    return reference


def _an4_tree(an4_dir: Path, tmp_path: Path) -> Path:
    """A corpus tree in tmp_path whose files are symlinks to the real AN4 files."""
    root = tmp_path / "an4"
    (root / "etc").mkdir(parents=True)
    for path in (an4_dir / "etc").iterdir():
        (root / "etc" / path.name).symlink_to(path)
    (root / "wav").mkdir()
    (root / "wav" / "an4_clstk").symlink_to(an4_dir / "wav" / "an4_clstk")
    return root


def _replace(path: Path, text: str) -> None:
    path.unlink()
    path.write_text(text)


# ---------------------------------------------------------------- AN4


@pytest.fixture(scope="module")
def an4_sets(an4_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("an4") / "data"
    return out, prepare_an4(an4_dir, out)


def test_an4_counts_and_disjoint_dev(an4_sets, an4_dir: Path) -> None:
    out, sets = an4_sets
    assert sorted(sets) == ["dev", "train"]  # no official test portion in the shared corpus
    assert sorted(p.name for p in out.iterdir()) == ["dev", "train"]
    train, dev = sets["train"], sets["dev"]
    assert len(train) + len(dev) == 948
    assert len(set(train.speakers) | set(dev.speakers)) == 74
    assert not set(train.speakers) & set(dev.speakers)
    assert not set(train.utt_ids) & set(dev.utt_ids)
    assert 10 <= len(dev.speakers) <= 12
    genders = [spk[0] for spk in dev.speakers]
    assert abs(genders.count("f") - genders.count("m")) <= 2
    # speakers recorded twice (mdcs / mdcs2) stay on one side
    for spk in train.speakers + dev.speakers:
        base = spk.rstrip("0123456789")
        side = dev.speakers if spk in dev.speakers else train.speakers
        assert all(
            s in side for s in train.speakers + dev.speakers if s.rstrip("0123456789") == base
        )


def test_an4_contents_match_official_files(an4_sets, an4_dir: Path) -> None:
    out, sets = an4_sets
    reference = _an4_reference(an4_dir)
    dictionary = {
        line.split()[0].split("(")[0]
        for line in (an4_dir / "etc" / "an4.dic").read_text().splitlines()
    }
    for name in ("train", "dev"):
        validate_data_dir(out / name)
        data = read_data_dir(out / name)
        assert data == sets[name]
        for utt_id in data.utt_ids:
            spk_id, words = reference[utt_id]
            assert data.utt2spk[utt_id] == spk_id
            assert data.text[utt_id] == words
            assert set(words.split()) <= dictionary
            wav = Path(data.wav_scp[utt_id])
            assert wav.is_absolute() and wav.is_file()
            assert wav.parent.name == spk_id and wav.name == utt_id[len(spk_id) + 1 :] + ".wav"


def test_an4_deterministic(an4_sets, an4_dir: Path, tmp_path: Path) -> None:
    out, _ = an4_sets
    prepare_an4(an4_dir, tmp_path / "again")
    assert _snapshot(tmp_path / "again") == _snapshot(out)


def test_an4_official_test_portion(an4_dir: Path, tmp_path: Path) -> None:
    root = _an4_tree(an4_dir, tmp_path)
    reference = _an4_reference(an4_dir)
    picked = [u for u in reference if reference[u][0] in ("fash", "mblb")][:6]
    fileids, transcription = [], []
    for utt_id in picked:
        spk_id, words = reference[utt_id]
        file_id = utt_id[len(spk_id) + 1 :]
        folder = root / "wav" / "an4test_clstk" / spk_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{file_id}.wav").symlink_to(
            an4_dir / "wav" / "an4_clstk" / spk_id / f"{file_id}.wav"
        )
        fileids.append(f"an4test_clstk/{spk_id}/{file_id}\n")
        transcription.append(f"<s> {words} </s> ({file_id})\n")
    (root / "etc" / "an4_test.fileids").write_text("".join(fileids))
    (root / "etc" / "an4_test.transcription").write_text("".join(transcription))

    sets = prepare_an4(root, tmp_path / "out")
    assert sorted(sets) == ["dev", "test", "train"]
    validate_data_dir(tmp_path / "out" / "test")
    test = read_data_dir(tmp_path / "out" / "test")
    assert test.utt_ids == sorted(picked)
    assert test.speakers == sorted({reference[u][0] for u in picked})
    for utt_id in picked:
        assert test.text[utt_id] == reference[utt_id][1]
        assert "/an4test_clstk/" in test.wav_scp[utt_id]
    # the training sets do not change when a test portion appears
    assert len(sets["train"]) + len(sets["dev"]) == 948

    # a missing test wav fails before anything is written
    Path(test.wav_scp[picked[-1]]).unlink()
    with pytest.raises(CorpusError, match=r"an4_test\.fileids:6: audio file not found"):
        prepare_an4(root, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_an4_mismatched_ids_name_the_line(an4_dir: Path, tmp_path: Path) -> None:
    root = _an4_tree(an4_dir, tmp_path)
    lines = (an4_dir / "etc" / "an4_train.transcription").read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace("(an254-fash-b)", "(an999-fash-b)")
    _replace(root / "etc" / "an4_train.transcription", "".join(lines))
    with pytest.raises(CorpusError, match=r"an4_train\.transcription:3: .*'an999-fash-b'"):
        prepare_an4(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()

    _replace(root / "etc" / "an4_train.transcription", "".join(lines[:-1]))
    with pytest.raises(CorpusError, match="948 lines .* 947"):
        prepare_an4(root, tmp_path / "out")

    lines[2] = lines[2].replace("(an999-fash-b)", "(an254-fash-b)")
    lines[4] = "YES NO\n"
    _replace(root / "etc" / "an4_train.transcription", "".join(lines))
    with pytest.raises(CorpusError, match=r"an4_train\.transcription:5: expected"):
        prepare_an4(root, tmp_path / "out")


def test_an4_missing_layout(an4_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="not a directory"):
        prepare_an4(tmp_path / "nothing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match=r"an4_train\.fileids: not found"):
        prepare_an4(tmp_path / "empty", tmp_path / "out")
    root = _an4_tree(an4_dir, tmp_path)
    (root / "etc" / "an4_test.fileids").write_text("an4test_clstk/fash/an251-fash-b\n")
    with pytest.raises(CorpusError, match=r"an4_test\.transcription: not found"):
        prepare_an4(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an4_failed_prepare_keeps_previous_output(an4_sets, an4_dir: Path, tmp_path: Path) -> None:
    out, _ = an4_sets
    before = _snapshot(out)
    root = _an4_tree(an4_dir, tmp_path)
    lines = (an4_dir / "etc" / "an4_train.fileids").read_text().splitlines(keepends=True)
    _replace(root / "etc" / "an4_train.fileids", "".join([*lines[:-1], "an4_clstk/x/y/z\n"]))
    with pytest.raises(CorpusError, match=r"an4_train\.fileids:948: expected"):
        prepare_an4(root, out)
    assert _snapshot(out) == before


def test_select_dev_speakers_rules() -> None:
    speakers = [f"f{c}" for c in "abcdef"] + [f"m{c}" for c in "abcdefghij"]
    dev = select_dev_speakers(speakers, num_dev_speakers=5)
    assert len(dev) == 5 and sum(s[0] == "f" for s in dev) == 2  # extra one from larger gender
    assert select_dev_speakers(speakers, num_dev_speakers=5) == dev  # deterministic
    assert select_dev_speakers(reversed(speakers), num_dev_speakers=5) == dev  # order-free
    assert select_dev_speakers(speakers, num_dev_speakers=0) == []
    # not enough of one gender: the rest come from the other
    dev = select_dev_speakers(["fa", "ma", "mb", "mc", "md", "me"], num_dev_speakers=4)
    assert sum(s[0] == "f" for s in dev) == 1 and len(dev) == 4
    # no gender marks: evenly spread over all speakers
    assert len(select_dev_speakers(["s1x", "s2x", "s3x", "s4x"], num_dev_speakers=2)) == 2
    with pytest.raises(CorpusError, match="leaves no training speakers"):
        select_dev_speakers(["fa", "ma"], num_dev_speakers=2)
    with pytest.raises(CorpusError, match=">= 0"):
        select_dev_speakers(["fa", "ma"], num_dev_speakers=-1)


# ---------------------------------------------------------------- FSDD


def test_fsdd_split_and_transcripts(fsdd_dir: Path, tmp_path: Path) -> None:
    sets = prepare_fsdd(fsdd_dir, tmp_path / "fsdd")
    assert {name: len(d) for name, d in sets.items()} == {"train": 2700, "test": 300}
    words = ["ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"]
    for name, data in sets.items():
        validate_data_dir(tmp_path / "fsdd" / name)
        assert read_data_dir(tmp_path / "fsdd" / name) == data
        assert len(data.speakers) == 6
        for utt_id, wav in data.wav_scp.items():
            digit, speaker, take = Path(wav).stem.split("_")
            assert data.utt2spk[utt_id] == speaker and utt_id == f"{speaker}-{Path(wav).stem}"
            assert data.text[utt_id] == words[int(digit)]
            assert (int(take) < 5) == (name == "test")
    prepare_fsdd(fsdd_dir, tmp_path / "again")
    assert _snapshot(tmp_path / "again") == _snapshot(tmp_path / "fsdd")


def test_fsdd_bad_layout_writes_nothing(fsdd_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="recordings is not a directory"):
        prepare_fsdd(tmp_path, tmp_path / "out")
    root = tmp_path / "fsdd"
    (root / "recordings").mkdir(parents=True)
    for wav in sorted((fsdd_dir / "recordings").glob("*_theo_*.wav")):
        (root / "recordings" / wav.name).symlink_to(wav)
    (root / "recordings" / ".DS_Store").write_text("ignored")
    assert len(prepare_fsdd(root, tmp_path / "ok")["test"]) == 50
    (root / "recordings" / "seven_theo_1.wav").symlink_to(fsdd_dir / "recordings" / "7_theo_1.wav")
    with pytest.raises(CorpusError, match=r"seven_theo_1\.wav: file name is not"):
        prepare_fsdd(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- yesno


def test_yesno_split_and_transcripts(yesno_dir: Path, tmp_path: Path) -> None:
    sets = prepare_yesno(yesno_dir, tmp_path / "yesno")
    names = sorted(p.name for p in (yesno_dir / "waves_yesno").glob("*.wav"))
    assert len(names) == 60
    for name, files in (("train", names[:30]), ("test", names[30:])):
        validate_data_dir(tmp_path / "yesno" / name)
        data = sets[name]
        assert data.speakers == ["global"]
        assert sorted(Path(w).name for w in data.wav_scp.values()) == files
        for utt_id, wav in data.wav_scp.items():
            labels = Path(wav).stem.split("_")
            assert data.text[utt_id] == " ".join("YES" if x == "1" else "NO" for x in labels)
    prepare_yesno(yesno_dir, tmp_path / "again")
    assert _snapshot(tmp_path / "again") == _snapshot(tmp_path / "yesno")


def test_yesno_incomplete_corpus_writes_nothing(yesno_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "yesno"
    (root / "waves_yesno").mkdir(parents=True)
    for wav in sorted((yesno_dir / "waves_yesno").glob("*.wav"))[1:]:
        (root / "waves_yesno" / wav.name).symlink_to(wav)
    with pytest.raises(CorpusError, match="expected 60 WAV files, found 59"):
        prepare_yesno(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(CorpusError, match="yesno corpus not found"):
        prepare_yesno(tmp_path / "missing", tmp_path / "out")


# ---------------------------------------------------------------- CLI


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch):
    """``asr`` main with only the prepare command registered (isolates this module)."""
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ("asr.cli.prepare",))
    return cli_main.main


def test_cli_prepare_yesno(cli, yesno_dir: Path, tmp_path: Path, capsys) -> None:
    rc = cli(["prepare", "yesno", "--corpus-dir", str(yesno_dir), "--out", str(tmp_path / "o")])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(str(tmp_path / "o" / "train")) and lines[1].endswith("hours")
    assert "30 utterances, 1 speaker, 0.051 hours" in lines[0]  # 6.1 min over 60 files
    assert sorted(p.name for p in (tmp_path / "o" / "test").iterdir()) == list(SETS_FILES)


def test_cli_defaults_and_an4_note(
    cli, corpora_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("ASR_CORPORA", str(corpora_dir))
    monkeypatch.chdir(tmp_path)
    assert cli(["prepare", "an4", "--num-dev-speakers", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out[:2]] == [
        os.path.join("data", "an4", "train"),
        os.path.join("data", "an4", "dev"),
    ]
    assert "no official test set found" in out[2]
    dev = read_data_dir(tmp_path / "data" / "an4" / "dev")
    assert isinstance(dev, DataDir) and len(dev.speakers) == 4


def test_cli_bad_corpus_dir(cli, tmp_path: Path, capsys) -> None:
    rc = cli(["prepare", "fsdd", "--corpus-dir", str(tmp_path / "x"), "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "FSDD corpus not found" in err
    assert not (tmp_path / "o").exists()


def test_cli_help_has_example(cli, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli(["prepare", "--help"])
    assert exc.value.code == 0
    assert "asr prepare an4 --corpus-dir" in capsys.readouterr().out
