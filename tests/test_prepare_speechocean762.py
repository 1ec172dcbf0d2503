"""Tests of asr.data.speechocean762 and ``asr prepare speechocean762``.

Oracles: the corpus's README counts (2,500 training utterances, 125 speakers, children aged
5-12 and adults, both genders), the corpus's own files re-parsed independently here
(``text``, ``utt2spk``, ``spk2gender``, ``spk2age``, ``wav.scp`` relative to the corpus
root), the documented dev rule recomputed from SHA-256 digests, and ``validate_data_dir``
on every written set. Bad-input cases use a small synthetic copy of the layout in tmp_path
(a few speakers, tiny audio files written with soundfile); the real audio is never decoded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile

import asr.cli.main as cli_main
from asr.data import (
    prepare_speechocean762,
    read_data_dir,
    read_speechocean762_portion,
    select_stratified_dev_speakers,
    validate_data_dir,
)
from asr.errors import CorpusError, DataDirError

SET_FILES = ["spk2age", "spk2gender", "spk2utt", "text", "utt2spk", "wav.scp"]


def _snapshot(out_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out_dir)): p.read_bytes()
        for p in sorted(out_dir.rglob("*"))
        if p.is_file()
    }


def _table(path: Path, sep: str | None = None) -> dict[str, str]:
    """``key<sep>value`` lines of a corpus file, parsed independently of the library."""
    rows = {}
    for line in path.read_text().splitlines():
        key, value = line.split(sep, 1)
        rows[key] = value.strip()
    return rows


# ---------------------------------------------------------------- the real corpus


@pytest.fixture(scope="module")
def real_sets(speechocean762_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("so762") / "data"
    return out, prepare_speechocean762(speechocean762_dir, out)


def test_real_counts_and_disjoint_dev(real_sets, speechocean762_dir: Path) -> None:
    out, sets = real_sets
    assert sorted(sets) == ["dev", "train"]  # the official test half is not here
    train, dev = sets["train"], sets["dev"]
    assert len(train.data) + len(dev.data) == 2500
    assert len(train.data.speakers) + len(dev.data.speakers) == 125
    assert len(dev.data.speakers) == 12
    assert not set(train.data.speakers) & set(dev.data.speakers)
    for prepared in (train, dev):
        assert prepared.children and prepared.adults
        assert set(prepared.spk2gender.values()) == {"f", "m"}
    # children of both genders and adults of both genders in dev
    cells = {(dev.spk2age[s] <= 12, dev.spk2gender[s]) for s in dev.data.speakers}
    assert cells == {(True, "f"), (True, "m"), (False, "f"), (False, "m")}
    children = len(train.children) + len(dev.children)
    assert children == 52  # the README: 52 children aged 5-12
    for name in sets:
        validate_data_dir(out / name)  # audio files exist (not decoded)
        assert sorted(p.name for p in (out / name).iterdir()) == SET_FILES


def test_real_contents_match_corpus_files(real_sets, speechocean762_dir: Path) -> None:
    out, _ = real_sets
    corpus = speechocean762_dir / "train"
    text = _table(corpus / "text", "\t")
    utt2spk = _table(corpus / "utt2spk", " ")
    wav_scp = _table(corpus / "wav.scp", "\t")
    genders = _table(corpus / "spk2gender")
    ages = _table(corpus / "spk2age")
    seen = set()
    for name in ("train", "dev"):
        data = read_data_dir(out / name)
        for utt_id in data.utt_ids:
            assert data.text[utt_id] == text[utt_id]
            assert data.utt2spk[utt_id] == utt2spk[utt_id]
            assert data.wav_scp[utt_id] == str(speechocean762_dir / wav_scp[utt_id])
            assert data.wav_scp[utt_id].endswith(".flac")
        seen |= set(data.utt_ids)
        written_genders = _table(out / name / "spk2gender")
        written_ages = _table(out / name / "spk2age")
        assert list(written_genders) == data.speakers == list(written_ages)
        assert all(written_genders[s] == genders[s] for s in data.speakers)
        assert all(written_ages[s] == ages[s] for s in data.speakers)
    assert seen == set(text)


def test_real_dev_follows_documented_rule(real_sets) -> None:
    """Within each (child/adult, gender) cell, dev takes the speakers first in SHA-256
    order; on this corpus 2 girls, 3 boys, 4 women and 3 men (the docstring's numbers)."""
    _, sets = real_sets
    train, dev = sets["train"], sets["dev"]
    everyone = {**train.spk2gender, **dev.spk2gender}
    age = {**train.spk2age, **dev.spk2age}
    per_cell: dict[tuple[bool, str], list[str]] = {}
    for spk in sorted(everyone, key=lambda s: hashlib.sha256(s.encode()).hexdigest()):
        per_cell.setdefault((age[spk] > 12, everyone[spk]), []).append(spk)
    dev_speakers = set(dev.data.speakers)
    counts = {}
    for cell, speakers in per_cell.items():
        count = sum(s in dev_speakers for s in speakers)
        assert set(speakers[:count]) <= dev_speakers  # a prefix of the hash order
        counts[cell] = count
    assert counts == {(False, "f"): 2, (False, "m"): 3, (True, "f"): 4, (True, "m"): 3}


def test_real_deterministic(real_sets, speechocean762_dir: Path, tmp_path: Path) -> None:
    out, _ = real_sets
    prepare_speechocean762(speechocean762_dir, tmp_path / "again")
    assert _snapshot(tmp_path / "again") == _snapshot(out)


# ---------------------------------------------------------------- a synthetic copy

# speaker -> (gender, age): 2 girls, 2 boys, 2 women, 2 men
SPEAKERS = {
    "0001": ("m", 6),
    "0003": ("f", 9),
    "0012": ("f", 25),
    "0040": ("m", 31),
    "0105": ("f", 11),
    "1000": ("m", 20),
    "2020": ("f", 40),
    "9001": ("m", 12),
}


def _make_corpus(
    root: Path,
    portion: str = "train",
    speakers: dict[str, tuple[str, int]] | None = None,
    *,
    suffix: str = ".flac",
    utts_per_speaker: int = 2,
) -> dict[str, str]:
    """Write ``root/<portion>/`` and its audio as the original layout has it; returns
    utt_id -> wav.scp value (relative to ``root``)."""
    speakers = SPEAKERS if speakers is None else speakers
    folder = root / portion
    folder.mkdir(parents=True)
    text, wav_scp, utt2spk = [], [], []
    rel = {}
    for spk in sorted(speakers):
        wave = root / "WAVE" / f"SPEAKER{spk}"
        wave.mkdir(parents=True, exist_ok=True)
        for i in range(utts_per_speaker):
            utt = f"{int(spk):05d}{i + 1:04d}"  # 000010001 for speaker 0001, as the corpus
            rel[utt] = f"WAVE/SPEAKER{spk}/{utt}{suffix}"
            soundfile.write(root / rel[utt], np.zeros(1600 + 160 * i, dtype=np.int16), 16000)
            text.append(f"{utt}\tWE CALL IT BEAR\n")
            wav_scp.append(f"{utt}\t{rel[utt]}\n")
            utt2spk.append(f"{utt} {spk}\n")
    (folder / "text").write_text("".join(text))
    (folder / "wav.scp").write_text("".join(wav_scp))
    (folder / "utt2spk").write_text("".join(utt2spk))
    spk2utt = [
        f"{spk} " + " ".join(f"{int(spk):05d}{i + 1:04d}" for i in range(utts_per_speaker))
        for spk in sorted(speakers)
    ]
    (folder / "spk2utt").write_text("\n".join(spk2utt) + "\n")
    (folder / "spk2gender").write_text(
        "".join(f"{s}\t{speakers[s][0]}\n" for s in sorted(speakers))
    )
    # unsorted, as the real corpus's spk2age is
    (folder / "spk2age").write_text(
        "".join(f"{s}\t{speakers[s][1]}\n" for s in reversed(sorted(speakers)))
    )
    return rel


def test_synthetic_wav_names_and_dev(tmp_path: Path) -> None:
    root = tmp_path / "so"
    rel = _make_corpus(root, suffix=".WAV")
    sets = prepare_speechocean762(root, tmp_path / "out", num_dev_speakers=4)
    assert sorted(sets) == ["dev", "train"]
    dev = read_data_dir(tmp_path / "out" / "dev")
    assert len(dev.speakers) == 4  # one per (child/adult, gender) cell
    assert {(SPEAKERS[s][1] <= 12, SPEAKERS[s][0]) for s in dev.speakers} == {
        (True, "f"), (True, "m"), (False, "f"), (False, "m"),
    }  # fmt: skip
    train = read_data_dir(tmp_path / "out" / "train")
    assert len(train) + len(dev) == 2 * len(SPEAKERS)
    for data in (train, dev):
        for utt_id, audio in data.wav_scp.items():
            assert audio == str(root / rel[utt_id]) and audio.endswith(".WAV")
    assert (tmp_path / "out" / "dev" / "spk2age").read_text().splitlines() == [
        f"{s} {SPEAKERS[s][1]}" for s in dev.speakers
    ]
    # no dev set when asked for none; every speaker stays in train
    sets = prepare_speechocean762(root, tmp_path / "out0", num_dev_speakers=0)
    assert sorted(sets) == ["train"] and len(sets["train"].data.speakers) == len(SPEAKERS)
    with pytest.raises(CorpusError, match="leaves no training speakers"):
        prepare_speechocean762(root, tmp_path / "out1", num_dev_speakers=len(SPEAKERS))


def test_synthetic_missing_audio_names_the_line(tmp_path: Path) -> None:
    root = tmp_path / "so"
    rel = _make_corpus(root)
    third = sorted(rel)[2]
    (root / rel[third]).unlink()
    wav_scp = root / "train" / "wav.scp"
    with pytest.raises(
        CorpusError,
        match=rf"train/wav\.scp:3: utterance '{third}': audio file not found: .*{third}\.flac$",
    ):
        prepare_speechocean762(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # wav.scp names .WAV but only the .flac exists: still an error, with a hint
    soundfile.write(root / rel[third], np.zeros(1600, dtype=np.int16), 16000)
    wav_scp.write_text(wav_scp.read_text().replace(f"{third}.flac", f"{third}.WAV"))
    with pytest.raises(CorpusError, match=rf"wav\.scp:3: .*{third}\.WAV \(found {third}\.flac"):
        prepare_speechocean762(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_synthetic_speaker_tables(tmp_path: Path) -> None:
    root = tmp_path / "so"
    _make_corpus(root)
    gender = root / "train" / "spk2gender"
    original = gender.read_text()
    gender.write_text(
        "".join(line + "\n" for line in original.splitlines() if not line.startswith("0040"))
    )
    with pytest.raises(
        CorpusError,
        match=r"train/spk2gender: speaker '0040' \(of utterance '000400001', .*utt2spk:7\) has no gender",
    ):
        prepare_speechocean762(root, tmp_path / "out")
    gender.write_text(original + "7777\tf\n")
    with pytest.raises(CorpusError, match=r"spk2gender:9: speaker '7777' is not in .*utt2spk"):
        prepare_speechocean762(root, tmp_path / "out")
    gender.write_text(original.replace("0012\tf", "0012\tx"))
    with pytest.raises(
        CorpusError, match=r"spk2gender:3: gender of speaker '0012' must be 'm' or 'f'"
    ):
        prepare_speechocean762(root, tmp_path / "out")
    gender.write_text(original)
    age = root / "train" / "spk2age"
    age.write_text(age.read_text().replace("0012\t25", "0012\tadult"))
    with pytest.raises(CorpusError, match=r"spk2age:6: age of speaker '0012' must be a whole"):
        prepare_speechocean762(root, tmp_path / "out")
    age.unlink()
    with pytest.raises(CorpusError, match=r"train/spk2age: file not found"):
        prepare_speechocean762(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_synthetic_bad_data_dir_names_the_line(tmp_path: Path) -> None:
    root = tmp_path / "so"
    _make_corpus(root)
    text = root / "train" / "text"
    lines = text.read_text().splitlines(keepends=True)
    lines[3], lines[4] = lines[4], lines[3]
    text.write_text("".join(lines))
    with pytest.raises(DataDirError, match=r"train/text:5: not sorted"):
        prepare_speechocean762(root, tmp_path / "out")
    with pytest.raises(CorpusError, match="speechocean762 corpus not found"):
        prepare_speechocean762(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(CorpusError, match=r"test is not a directory"):
        read_speechocean762_portion(root, "test")
    assert not (tmp_path / "out").exists()


def test_synthetic_test_portion_prepared_as_is(tmp_path: Path) -> None:
    root = tmp_path / "so"
    _make_corpus(root)
    test_speakers = {"0002": ("f", 7), "0004": ("m", 30), "0500": ("f", 22)}
    rel = _make_corpus(root, "test", test_speakers, suffix=".WAV", utts_per_speaker=3)
    sets = prepare_speechocean762(root, tmp_path / "out", num_dev_speakers=4)
    assert sorted(sets) == ["dev", "test", "train"]
    out = tmp_path / "out" / "test"
    assert sorted(p.name for p in out.iterdir()) == SET_FILES
    test = read_data_dir(out)
    assert test.utt_ids == sorted(rel)
    assert test.speakers == sorted(test_speakers)  # no dev carved from test
    assert all(test.wav_scp[u] == str(root / rel[u]) for u in rel)
    assert _table(out / "spk2gender") == {s: g for s, (g, _) in test_speakers.items()}
    assert _table(out / "spk2age") == {s: str(a) for s, (_, a) in test_speakers.items()}
    assert sets["test"].children == ["0002"] and sets["test"].adults == ["0004", "0500"]
    # the training sets do not change when a test half appears
    assert len(sets["train"].data) + len(sets["dev"].data) == 2 * len(SPEAKERS)
    # a broken test half fails before anything is written
    (root / rel[sorted(rel)[-1]]).unlink()
    with pytest.raises(CorpusError, match=r"test/wav\.scp:9: .*audio file not found"):
        prepare_speechocean762(root, tmp_path / "out2", num_dev_speakers=4)
    assert not (tmp_path / "out2").exists()


def test_select_stratified_dev_speakers_rules() -> None:
    genders = {s: g for s, (g, _) in SPEAKERS.items()}
    ages = {s: a for s, (_, a) in SPEAKERS.items()}
    assert select_stratified_dev_speakers(genders, ages, num_dev_speakers=0) == []
    four = select_stratified_dev_speakers(genders, ages, num_dev_speakers=4)
    assert len({(ages[s] <= 12, genders[s]) for s in four}) == 4
    # fewer than the cells: the largest cells (ties: children, then f) first
    two = select_stratified_dev_speakers(genders, ages, num_dev_speakers=2)
    assert [(ages[s] <= 12, genders[s]) for s in two].count((True, "f")) == 1
    # more than a cell holds: the rest spill into the other cells
    only_adults = {s: 30 for s in SPEAKERS}
    six = select_stratified_dev_speakers(genders, only_adults, num_dev_speakers=6)
    assert sorted(genders[s] for s in six) == ["f", "f", "f", "m", "m", "m"]
    # the order of the input does not matter
    backwards = dict(reversed(list(genders.items())))
    assert select_stratified_dev_speakers(backwards, ages, num_dev_speakers=4) == four
    with pytest.raises(CorpusError, match="must be >= 0"):
        select_stratified_dev_speakers(genders, ages, num_dev_speakers=-1)
    with pytest.raises(CorpusError, match="same speakers"):
        select_stratified_dev_speakers(genders, {**ages, "x": 3})


# ---------------------------------------------------------------- CLI


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ("asr.cli.prepare",))
    return cli_main.main


def test_cli_prepare_speechocean762(cli, tmp_path: Path, capsys) -> None:
    root = tmp_path / "so"
    _make_corpus(root)
    out = tmp_path / "o"
    rc = cli(
        [
            "prepare",
            "speechocean762",
            "--corpus-dir",
            str(root),
            "--out",
            str(out),
            "--num-dev-speakers",
            "4",
        ]
    )
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(
        f"{out / 'train'}: 8 utterances, 4 speakers (2 children, 2 adults; 2 female, 2 male)"
    )
    assert lines[1].startswith(f"{out / 'dev'}: 8 utterances, 4 speakers (2 children, 2 adults")
    assert lines[0].endswith(" hours") and "no official test set found" in lines[2]
    # a bad corpus: one line on stderr, exit status 2, nothing written
    (root / "train" / "spk2gender").unlink()
    rc = cli(
        ["prepare", "speechocean762", "--corpus-dir", str(root), "--out", str(tmp_path / "o2")]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "spk2gender: file not found" in err
    assert not (tmp_path / "o2").exists()


def test_cli_help_lists_speechocean762(cli, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli(["prepare", "--help"])
    assert exc.value.code == 0
    assert "asr prepare speechocean762 --corpus-dir" in capsys.readouterr().out
