"""Tests of asr.data.datadir: Kaldi map files, DataDir, write/read/validate.

Oracles: ``LC_ALL=C sort`` for the sort order, ``soxi`` for audio durations, and
hand-written broken data directories for each validation rule.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hypothesis import given, settings
from hypothesis import strategies as st

from asr.data.datadir import (
    DataDir,
    read_data_dir,
    read_kaldi_map,
    total_duration_seconds,
    validate_data_dir,
    write_data_dir,
    write_data_dirs,
    write_kaldi_map,
)
from asr.errors import DataDirError


def _make_wavs(folder: Path, names: list[str], num_samples: int = 800) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for i, name in enumerate(names):
        path = folder / f"{name}.wav"
        soundfile.write(path, np.zeros(num_samples + 100 * i, dtype=np.int16), 8000)
        paths[name] = str(path)
    return paths


@pytest.fixture
def good_dir(tmp_path: Path) -> Path:
    """A valid data dir: speakers a and b, utts a-1, a-2, b-1."""
    wavs = _make_wavs(tmp_path / "wav", ["a-1", "a-2", "b-1"])
    data = DataDir(
        wav_scp=wavs,
        text={"a-1": "YES NO", "a-2": "NO", "b-1": "YES YES"},
        utt2spk={"a-1": "a", "a-2": "a", "b-1": "b"},
    )
    write_data_dir(data, tmp_path / "d")
    return tmp_path / "d"


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _rewrite(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


# ---------------------------------------------------------------- read_kaldi_map


def test_read_kaldi_map_key_and_rest_of_line(tmp_path: Path) -> None:
    path = tmp_path / "wav.scp"
    path.write_bytes(b"u1 /a b/c.wav  \nu2\t\tx  y\r\nu3 z")  # no final newline
    assert read_kaldi_map(path) == {"u1": "/a b/c.wav", "u2": "x  y", "u3": "z"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"u1 a\n\nu2 b\n", r"text:2: blank line"),
        (b"u1 a\n u2 b\n", r"text:2: empty key"),
        (b"u1 a\nu2\n", r"text:2: key 'u2' has no value"),
        (b"u1 a\nu2 b\nu1 c\n", r"text:3: duplicate key 'u1'"),
        (b"u1 a\nu2 \xff\xfe\n", r"text:2: not valid UTF-8"),
    ],
)
def test_read_kaldi_map_errors_name_file_and_line(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "text"
    path.write_bytes(content)
    with pytest.raises(DataDirError, match=message):
        read_kaldi_map(path)


def test_read_kaldi_map_allow_empty_and_name(tmp_path: Path) -> None:
    path = tmp_path / "text"
    path.write_text("u1\nu2 A\n")
    assert read_kaldi_map(path, allow_empty_value=True) == {"u1": "", "u2": "A"}
    with pytest.raises(DataDirError, match=r"^my/text:1:"):
        read_kaldi_map(path, name="my/text")
    with pytest.raises(DataDirError, match="file not found"):
        read_kaldi_map(tmp_path / "missing")


# ---------------------------------------------------------------- write_kaldi_map

_KEY = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x2FF, exclude_characters="\x85\xa0"),
    min_size=1,
    max_size=8,
)
_VALUE = st.text(alphabet="ABC xyz-_/.", min_size=1, max_size=12).filter(lambda v: v.strip())


@settings(max_examples=30, deadline=None)
@given(mapping=st.dictionaries(_KEY, _VALUE, min_size=1, max_size=20))
def test_write_kaldi_map_matches_c_sort_and_round_trips(
    tmp_path_factory: pytest.TempPathFactory, mapping: dict[str, str]
) -> None:
    path = tmp_path_factory.mktemp("w") / "map"
    write_kaldi_map(path, mapping)
    raw = path.read_bytes()
    c_sorted = subprocess.run(
        ["sort"], input=raw, capture_output=True, check=True, env={**os.environ, "LC_ALL": "C"}
    ).stdout
    assert raw == c_sorted
    assert read_kaldi_map(path) == {k: v.strip() for k, v in mapping.items()}


def test_write_kaldi_map_rejects_bad_entries_and_keeps_old_file(tmp_path: Path) -> None:
    path = tmp_path / "text"
    write_kaldi_map(path, {"u1": "A"})
    for bad in ({"u 1": "A"}, {"u1": ""}, {"u1": "A\nB"}, {"": "A"}):
        with pytest.raises(DataDirError):
            write_kaldi_map(path, bad)
    assert path.read_text() == "u1 A\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text"]  # no temp files left


def test_write_kaldi_map_leaves_identical_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "utt2spk"
    write_kaldi_map(path, {"a-1": "a"})
    os.utime(path, (1_000_000, 1_000_000))
    write_kaldi_map(path, {"a-1": "a"})
    assert path.stat().st_mtime == 1_000_000
    write_kaldi_map(path, {"a-1": "a", "a-2": "a"})
    assert path.stat().st_mtime != 1_000_000
    assert path.read_text() == "a-1 a\na-2 a\n"


# ---------------------------------------------------------------- DataDir


def test_datadir_properties_and_subset() -> None:
    data = DataDir(
        wav_scp={"b-1": "/x/b1.wav", "a-2": "/x/a2.wav", "a-10": "/x/a10.wav"},
        text={"b-1": "YES", "a-2": "NO", "a-10": "NO NO"},
        utt2spk={"b-1": "b", "a-2": "a", "a-10": "a"},
    )
    assert data.utt_ids == ["a-10", "a-2", "b-1"]  # byte order, not numeric
    assert data.speakers == ["a", "b"]
    assert data.spk2utt == {"a": ["a-10", "a-2"], "b": ["b-1"]}
    assert len(data) == 3
    sub = data.subset(["b-1"])
    assert sub.wav_scp == {"b-1": "/x/b1.wav"} and sub.speakers == ["b"]
    with pytest.raises(DataDirError, match="unknown utterance ids"):
        data.subset(["c-1"])
    with pytest.raises(Exception):  # noqa: B017 - frozen dataclass
        data.text = {}  # type: ignore[misc]


def test_datadir_copies_its_inputs() -> None:
    text = {"a-1": "YES"}
    data = DataDir(wav_scp={"a-1": "/x.wav"}, text=text, utt2spk={"a-1": "a"})
    text["a-2"] = "NO"
    assert list(data.text) == ["a-1"]


def test_datadir_rejects_inconsistent_maps() -> None:
    with pytest.raises(DataDirError, match="wav.scp and text differ"):
        DataDir(wav_scp={"a-1": "/x.wav"}, text={"a-2": "NO"}, utt2spk={"a-1": "a"})
    with pytest.raises(DataDirError, match="wav.scp and utt2spk differ"):
        DataDir(wav_scp={"a-1": "/x.wav"}, text={"a-1": "NO"}, utt2spk={})
    with pytest.raises(DataDirError, match="speaker 'a' sorts before .* speaker 'b'"):
        DataDir(
            wav_scp={"a-1": "/x.wav", "b-1": "/y.wav"},
            text={"a-1": "NO", "b-1": "YES"},
            utt2spk={"a-1": "b", "b-1": "a"},
        )


def test_datadir_accepts_utt_ids_without_speaker_prefix() -> None:
    """Kaldi requires consistent sorting, not the prefix (speechocean762: 000010011 -> 0001)."""
    utt2spk = {"000010011": "0001", "000010035": "0001", "000020007": "0002"}
    data = DataDir(wav_scp=dict.fromkeys(utt2spk, "/x.wav"), text=dict.fromkeys(utt2spk, "A"),
                   utt2spk=utt2spk)  # fmt: skip
    assert data.spk2utt == {"0001": ["000010011", "000010035"], "0002": ["000020007"]}


# ---------------------------------------------------------------- write / read / validate


def test_write_and_read_round_trip(good_dir: Path) -> None:
    assert sorted(p.name for p in good_dir.iterdir()) == ["spk2utt", "text", "utt2spk", "wav.scp"]
    assert _lines(good_dir / "spk2utt") == ["a a-1 a-2", "b b-1"]
    assert _lines(good_dir / "utt2spk") == ["a-1 a", "a-2 a", "b-1 b"]
    data = read_data_dir(good_dir)
    assert data.text == {"a-1": "YES NO", "a-2": "NO", "b-1": "YES YES"}
    write_data_dir(data, good_dir.parent / "copy")
    for name in ("wav.scp", "text", "utt2spk", "spk2utt"):
        assert (good_dir / name).read_bytes() == (good_dir.parent / "copy" / name).read_bytes()


def test_write_data_dir_refuses_empty(tmp_path: Path) -> None:
    empty = DataDir(wav_scp={}, text={}, utt2spk={})
    with pytest.raises(DataDirError, match="empty"):
        write_data_dir(empty, tmp_path / "d")
    with pytest.raises(DataDirError, match="empty"):
        write_data_dirs({"train": empty}, tmp_path / "e")
    assert not (tmp_path / "d").exists() and not (tmp_path / "e").exists()


def _break_unsorted(d: Path) -> None:
    _rewrite(d / "wav.scp", list(reversed(_lines(d / "wav.scp"))))


def _break_duplicate(d: Path) -> None:
    lines = _lines(d / "text")
    _rewrite(d / "text", [lines[0], lines[0], *lines[1:]])


def _break_text_extra(d: Path) -> None:
    _rewrite(d / "text", [*_lines(d / "text"), "b-2 NO"])


def _break_wav_extra(d: Path) -> None:
    _rewrite(d / "text", _lines(d / "text")[:-1])


def _break_utt2spk_missing(d: Path) -> None:
    _rewrite(d / "utt2spk", _lines(d / "utt2spk")[1:])


def _break_spk2utt_missing_utt(d: Path) -> None:
    _rewrite(d / "spk2utt", ["a a-1", "b b-1"])


def _break_spk2utt_extra_speaker(d: Path) -> None:
    _rewrite(d / "spk2utt", [*_lines(d / "spk2utt"), "c c-1"])


def _break_spk2utt_missing_speaker(d: Path) -> None:
    _rewrite(d / "spk2utt", _lines(d / "spk2utt")[:1])


def _break_prefix(d: Path) -> None:
    _rewrite(d / "utt2spk", ["a-1 a", "a-2 b", "b-1 b"])
    _rewrite(d / "spk2utt", ["a a-1", "b a-2 b-1"])


def test_validate_accepts_what_kaldi_accepts_without_prefix(good_dir: Path) -> None:
    """'a-2' of speaker 'b' sorts consistently (utt2spk sorted by speaker is unchanged), so
    Kaldi's validate_data_dir.sh accepts it although 'a-2' does not start with 'b'."""
    _break_prefix(good_dir)
    assert read_data_dir(good_dir).spk2utt == {"a": ["a-1"], "b": ["a-2", "b-1"]}


def test_validate_real_kaldi_data_dir_speechocean762(speechocean762_dir: Path, tmp_path: Path,
                                                     monkeypatch) -> None:  # fmt: skip
    """A copy of speechocean762's own train/ dir validates as Kaldi validates it (its utt ids
    start with the speaker number padded to five digits, not with the speaker id)."""
    import shutil

    copy = tmp_path / "train"
    shutil.copytree(speechocean762_dir / "train", copy)
    monkeypatch.chdir(speechocean762_dir)  # wav.scp paths are relative to the corpus root
    data = read_data_dir(copy)
    assert len(data) == 2500 and len(data.speakers) == 125
    assert not any(u.startswith(s) for u, s in data.utt2spk.items())
    # and a genuinely inconsistent order is still rejected with file:line
    lines = _lines(copy / "utt2spk")
    lines[0] = f"{lines[0].split()[0]} {lines[-1].split()[1]}"  # first utt -> last speaker
    _rewrite(copy / "utt2spk", lines)
    with pytest.raises(DataDirError, match=r"utt2spk:2: speaker .* sorts before"):
        validate_data_dir(copy)


def _break_sort_consistency(d: Path) -> None:
    # Utt ids start with their speaker ids, but speaker "a-1" sorts before "a":
    # utt "a-1-x" (speaker a-1) comes before "a-2" (speaker a).
    wav = _lines(d / "wav.scp")
    audio = wav[0].split(maxsplit=1)[1]
    _rewrite(d / "wav.scp", [f"a-1-x {audio}", f"a-2 {audio}"])
    _rewrite(d / "text", ["a-1-x YES", "a-2 NO"])
    _rewrite(d / "utt2spk", ["a-1-x a-1", "a-2 a"])
    _rewrite(d / "spk2utt", ["a a-2", "a-1 a-1-x"])


def _break_missing_audio(d: Path) -> None:
    Path(_lines(d / "wav.scp")[1].split(maxsplit=1)[1]).unlink()


def _break_pipe(d: Path) -> None:
    lines = _lines(d / "wav.scp")
    _rewrite(d / "wav.scp", [lines[0], "a-2 sox x.sph -t wav - |", lines[2]])


def _break_missing_file(d: Path) -> None:
    (d / "spk2utt").unlink()


def _break_blank_line(d: Path) -> None:
    lines = _lines(d / "utt2spk")
    _rewrite(d / "utt2spk", [lines[0], "", *lines[1:]])


def _break_empty_text(d: Path) -> None:
    (d / "text").write_text("")


@pytest.mark.parametrize(
    ("breaker", "message"),
    [
        (_break_unsorted, r"wav\.scp:2: not sorted: key 'a-2' comes after 'b-1'"),
        (_break_duplicate, r"text:2: duplicate key 'a-1'"),
        (_break_text_extra, r"text: utterance 'b-2' is not in .*wav\.scp"),
        (_break_wav_extra, r"wav\.scp: utterance 'b-1' is not in .*text"),
        (_break_utt2spk_missing, r"wav\.scp: utterance 'a-1' is not in .*utt2spk"),
        (_break_spk2utt_missing_utt, r"spk2utt:1: utterances of speaker 'a' disagree"),
        (_break_spk2utt_extra_speaker, r"spk2utt:3: speaker 'c' is not in utt2spk"),
        (_break_spk2utt_missing_speaker, r"spk2utt: speaker 'b' of utt2spk is missing"),
        (_break_sort_consistency, r"utt2spk:2: speaker 'a' sorts before .* speaker 'a-1'"),
        (_break_missing_audio, r"wav\.scp:2: 'a-2': audio file not found"),
        (_break_pipe, r"wav\.scp:2: 'a-2': piped commands are not supported"),
        (_break_missing_file, r"spk2utt: file not found"),
        (_break_blank_line, r"utt2spk:2: blank line"),
        (_break_empty_text, r"text: file is empty"),
    ],
)
def test_validate_detects_each_error(good_dir: Path, breaker, message: str) -> None:
    validate_data_dir(good_dir)  # valid before
    breaker(good_dir)
    with pytest.raises(DataDirError, match=message):
        validate_data_dir(good_dir)
    with pytest.raises(DataDirError, match=message):
        read_data_dir(good_dir)


def test_validate_can_skip_audio_check(good_dir: Path) -> None:
    _break_missing_audio(good_dir)
    validate_data_dir(good_dir, check_audio=False)


def test_validate_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(DataDirError, match="not a data directory"):
        validate_data_dir(tmp_path / "nope")


# ---------------------------------------------------------------- durations


@pytest.mark.skipif(shutil.which("soxi") is None, reason="soxi (sox) is not installed")
def test_total_duration_matches_soxi(yesno_dir: Path) -> None:
    wavs = sorted((yesno_dir / "waves_yesno").glob("*.wav"))[:5]
    data = DataDir(
        wav_scp={f"g-{p.stem}": str(p) for p in wavs},
        text={f"g-{p.stem}": "YES" for p in wavs},
        utt2spk={f"g-{p.stem}": "g" for p in wavs},
    )
    soxi = subprocess.run(
        ["soxi", "-D", *map(str, wavs)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert total_duration_seconds(data) == pytest.approx(sum(map(float, soxi)), abs=1e-6)


def test_total_duration_unreadable_audio(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    data = DataDir(wav_scp={"a-1": str(bad)}, text={"a-1": "A"}, utt2spk={"a-1": "a"})
    with pytest.raises(DataDirError, match="a-1: cannot read audio header"):
        total_duration_seconds(data)
