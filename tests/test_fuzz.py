"""Fuzzing every input reader (hypothesis): a CI-sized sample of ``benchmarks/fuzz.py``.

Each target (see :mod:`tests.support.fuzz_inputs`) gets mutations of real inputs
(a yesno/AN4 WAV, a FLAC excerpt, the AN4 dictionary and LM, a CMUdict excerpt,
an ark our writer wrote, valid proto messages: bit flips, truncation, huge
lengths, unicode junk, NUL bytes, very long lines, ...) and random bytes. Each
example must either give a well-formed result (checked by the target) or raise
one of the reader's documented error types (AsrError subclasses; for the
servicer a gRPC status, or protobuf's DecodeError before it is reached).
Anything else fails. The benchmark runs >= 10,000 inputs per target with a
hang watchdog; the input seeds it reports are the integers used here.

The second half holds one regression test per bug the fuzzer found.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asr.audio import audio_info, read_audio
from asr.data.datadir import validate_data_dir
from asr.errors import ArchiveError, AudioError, DataDirError, LmError
from asr.features.io import read_matrices_ark, read_matrices_scp, read_matrix, write_matrices
from asr.lang.arpa import read_arpa
from tests.support.fuzz_inputs import (
    TARGETS,
    FuzzCheckError,
    build_targets,
    mutate,
    pack_files,
    run_one,
    unpack_files,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
FUZZ_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def fuzz(corpora_dir, tmp_path_factory):
    """(targets by name, a scratch directory per target)."""
    root = tmp_path_factory.mktemp("fuzz")
    targets = build_targets(corpora_dir=corpora_dir, scratch_dir=root / "seeds")
    scratch = {}
    for name in targets:
        scratch[name] = root / name
        scratch[name].mkdir()
    return targets, scratch


def _run(fuzz, name: str, data: bytes) -> str:
    targets, scratch = fuzz
    return run_one(targets[name], data, scratch[name])


@pytest.mark.parametrize("name", TARGETS)
def test_first_seed_is_accepted(fuzz, name):
    """A target that rejected everything would make the fuzzing vacuous."""
    targets, _ = fuzz
    assert _run(fuzz, name, targets[name].seeds[0]) == "ok"


@pytest.mark.parametrize("name", TARGETS)
@settings(FUZZ_SETTINGS, max_examples=150)
@given(input_seed=st.integers(min_value=0, max_value=2**64))
def test_mutated_real_inputs(fuzz, name, input_seed):
    targets, _ = fuzz
    data = targets[name].generate(random.Random(input_seed))
    assert _run(fuzz, name, data) in ("ok", *_labels(targets[name]))


@pytest.mark.parametrize("name", TARGETS)
@settings(FUZZ_SETTINGS, max_examples=40)
@given(data=st.binary(max_size=4096))
def test_random_bytes(fuzz, name, data):
    targets, _ = fuzz
    assert _run(fuzz, name, data) in ("ok", *_labels(targets[name]))


def _labels(target) -> set[str]:
    names = {cls.__name__ for cls in target.allowed}
    return (
        names | {"status:INVALID_ARGUMENT", "status:OUT_OF_RANGE"} if "Aborted" in names else names
    )


def test_generation_is_reproducible_and_mutates(fuzz):
    targets, _ = fuzz
    target = targets["lexicon"]
    first = [target.generate(random.Random(seed)) for seed in range(20)]
    assert first == [target.generate(random.Random(seed)) for seed in range(20)]
    assert sum(data not in target.seeds for data in first) >= 15
    seed = target.seeds[0]
    assert any(mutate(seed, random.Random(k)) != seed for k in range(5))


def test_pack_files_round_trip_keeps_only_data_dir_files():
    files = {"wav.scp": b"a /x.wav\n", "segments": b"a r 0 1\n"}
    assert unpack_files(pack_files(files)) == files
    assert unpack_files(pack_files({"../../etc/passwd": b"x", "text": b""})) == {"text": b""}


def test_malformed_result_is_reported(fuzz):
    """The targets check results: a reader that returned garbage would be caught."""
    from tests.support import fuzz_inputs

    with pytest.raises(FuzzCheckError):
        fuzz_inputs.check_map({"a b": "x"})
    with pytest.raises(FuzzCheckError):
        fuzz_inputs.check_matrices([("k", np.zeros(3))])


def _benchmark(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "fuzz.py"), "--json", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )


def test_benchmark_reports_counts_and_catches_hangs(corpora_dir):
    env_args = ("--corpora", str(corpora_dir), "--targets", "kaldi_map")
    done = _benchmark("--n", "30", *env_args)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["kaldi_map"]
    assert report["inputs"] == 30
    assert report["ok"] + sum(report["typed_errors"].values()) == 30
    assert report["num_crashes"] == report["num_hangs"] == 0
    # Workers that stall 30 s per input: each input is a hang, the run fails.
    hung = _benchmark("--n", "2", "--timeout-s", "0.5", "--stall-s", "30", *env_args)
    assert hung.returncode == 1
    report = json.loads(hung.stdout)["kaldi_map"]
    assert report["num_hangs"] == 2 and report["crashes"][0]["where"] == "hang"


# ---- regressions: inputs the fuzzer found, with what they raised before the fix


def _feats_ark(tmp_path: Path) -> Path:
    ark = tmp_path / "f.ark"
    write_matrices(
        [("utt1", np.ones((3, 2), np.float32))], ark_path=ark, scp_path=tmp_path / "f.scp"
    )
    return ark


def test_ark_key_not_utf8(tmp_path):
    """Was UnicodeDecodeError."""
    ark = tmp_path / "bad.ark"
    ark.write_bytes(b"\xe6\x80 " + _feats_ark(tmp_path).read_bytes()[5:])
    with pytest.raises(ArchiveError, match=r"bad\.ark.*not UTF-8"):
        list(read_matrices_ark(ark))


def test_ark_huge_matrix_header(tmp_path):
    """A 2^31-1 x 2^31-1 header: was OverflowError (read() of ~3.7e19 bytes); smaller huge
    sizes were MemoryError."""
    data = bytearray(_feats_ark(tmp_path).read_bytes())
    header = data.index(b"FM ") + 3
    data[header : header + 10] = struct.pack("<bibi", 4, 2**31 - 1, 4, 2**31 - 1)
    ark = tmp_path / "huge.ark"
    ark.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match=r"huge\.ark.*truncated"):
        list(read_matrices_ark(ark))


@pytest.mark.parametrize(
    ("line", "was"),
    [
        (b"utt1 /tmp/\xff.ark:5\n", "UnicodeDecodeError"),
        (b"utt1 /tmp/a\x00b.ark:5\n", "ValueError: embedded null byte"),
        (b"utt1 ARK:" + b"9" * 5000 + b"\n", "ValueError: int() of 5000 digits"),
        (b"utt1 ARK:5[0:1,0:1,0:1]\n", "IndexError: too many indices"),
    ],
)
def test_scp_bad_lines(tmp_path, line, was):
    ark = _feats_ark(tmp_path)
    scp = tmp_path / "bad.scp"
    scp.write_bytes(
        b"utt0 " + str(ark).encode() + b":5\n" + line.replace(b"ARK", str(ark).encode())
    )
    with pytest.raises(ArchiveError, match=r"bad\.scp:2"):
        list(read_matrices_scp(scp))


def test_read_matrix_nul_in_path():
    """Was ValueError (embedded null byte)."""
    with pytest.raises(ArchiveError):
        read_matrix("/tmp/a\x00b.ark:5")


@pytest.mark.parametrize("count", ["\u00b2", "\u0663" * 3, "9" * 5000])
def test_arpa_count_not_ascii_digits(tmp_path, count):
    """'ngram 1=²' passed str.isdigit() and int() raised ValueError (so did 5000 digits);
    Arabic-Indic digits were read as a count."""
    path = tmp_path / "lm.arpa"
    path.write_text(f"\\data\\\nngram 1={count}\n\n\\1-grams:\n-1\t<s>\n\n\\end\\\n")
    with pytest.raises(LmError, match=r"lm\.arpa:2: expected 'ngram N=count'"):
        read_arpa(path)


def test_audio_header_with_huge_frame_count(tmp_path, yesno_dir):
    """A FLAC STREAMINFO claiming 2^36-1 samples: was MemoryError (one read of the header's
    frame count); now decoded in bounded blocks and reported as truncated."""
    wav = sorted((yesno_dir / "waves_yesno").glob("*.wav"))[0]
    samples, rate = read_audio(wav)
    path = tmp_path / "huge.flac"
    sf.write(path, samples[:4000], rate, format="FLAC", subtype="PCM_16")
    data = bytearray(path.read_bytes())
    # STREAMINFO: 20 bits rate, 3 bits channels-1, 5 bits bits-1, 36 bits total samples.
    packed = int.from_bytes(data[18:26], "big") | (2**36 - 1)
    data[18:26] = packed.to_bytes(8, "big")
    path.write_bytes(bytes(data))
    assert audio_info(path).num_samples == 2**36 - 1
    with pytest.raises(AudioError, match=r"huge\.flac: truncated or corrupt"):
        read_audio(path)


def test_data_dir_with_segments_is_rejected(tmp_path):
    """Was accepted by validate_data_dir (and then confused as recording ids)."""
    files = {
        "wav.scp": b"s1-a /x.wav\n",
        "text": b"s1-a YES\n",
        "utt2spk": b"s1-a s1\n",
        "spk2utt": b"s1 s1-a\n",
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    validate_data_dir(tmp_path, check_audio=False)
    (tmp_path / "segments").write_bytes(b"s1-a rec1 0.0 1.0\n")
    with pytest.raises(DataDirError, match="segments"):
        validate_data_dir(tmp_path, check_audio=False)


@pytest.mark.parametrize(
    ("header_rate", "was"),
    [(1, "16000x the samples: 3.2 GB for a 100 kB file"), (0x40001F40, "4.3 s in soxr")],
)
def test_resampling_a_corrupt_header_rate_is_refused(tmp_path, header_rate, was):
    """A header rate of 1 Hz or 1.07 GHz (fuzz input 1929), read at 16 kHz: refused before
    decoding."""
    path = tmp_path / "odd.wav"
    sf.write(path, np.zeros(50_000, np.int16), 8000)
    data = bytearray(path.read_bytes())
    data[24:28] = struct.pack("<I", header_rate)  # the fmt chunk's sample rate
    path.write_bytes(bytes(data))
    assert read_audio(path)[1] == header_rate
    with pytest.raises(AudioError, match=rf"odd\.wav: cannot resample {header_rate} Hz audio"):
        read_audio(path, sampling_rate=16000)


@pytest.mark.parametrize("separator", ["\x0c", "\x1c", "\u2028", "\r", "\x85"])
def test_line_numbers_count_newlines_only(tmp_path, separator):
    """splitlines()/universal newlines also broke lines at \\x0c, \\x1c, U+2028, \\r, NEL:
    errors named lines past the end of the file (as Kaldi, lines now end at \\n only)."""
    from asr.errors import LangError
    from asr.lang.lexicon import read_lexicon

    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_bytes(f"A AH{separator}B B\nC #1\n".encode())
    with pytest.raises(LangError, match=r"lexicon\.txt:2: word 'C' uses reserved phone"):
        read_lexicon(lexicon)
    scp = tmp_path / "feats.scp"
    scp.write_bytes(f"u1 {_feats_ark(tmp_path)}:5{separator}\nu2\n".encode())
    with pytest.raises(ArchiveError, match=r"feats\.scp:2: expected '<key> <rxfilename>'"):
        list(read_matrices_scp(scp))


def test_arpa_missing_section_at_end_of_file(tmp_path):
    """Was reported at line len(lines) + 1, a line the file does not have."""
    path = tmp_path / "lm.arpa"
    path.write_text("\\data\\\nngram 1=1\nngram 2=0\n\n\\1-grams:\n-1\t<s>\n")
    with pytest.raises(LmError, match=r"lm\.arpa \(at end of file\): expected '\\2-grams:'"):
        read_arpa(path)
