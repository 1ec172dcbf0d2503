"""Fuzzed inputs for every input reader: real seed files, mutations, and one target per reader.

Shared by ``tests/test_fuzz.py`` (hypothesis, a CI-sized sample) and
``benchmarks/fuzz.py`` (>= 10,000 inputs per target, a hang watchdog, atheris).

A :class:`FuzzTarget` holds real, valid inputs (``seeds``: a yesno WAV, the AN4
dictionary and LM, an ark our writer wrote, valid proto messages), the error
types its reader documents (``allowed``) and ``run(data, scratch_dir)``, which
feeds one input to the reader(s) and checks that what comes back is well
formed (:class:`FuzzCheckError` when it is not). :func:`generate` makes an input
from the seeds: random bytes, or a seed put through 1-4 :func:`mutate` steps
(bit flips, truncation, huge length fields, unicode junk, NUL bytes, very long
lines, swapped/duplicated lines, numbers replaced by ``nan``/``1e999``...).
:func:`run_one` returns ``"ok"`` or the name of the documented error raised;
anything else it lets through is a bug in the reader.

>>> import random
>>> data = generate([b"spk1-a YES NO\\n"], random.Random(3))
>>> isinstance(data, bytes)
True
>>> unpack_files(pack_files({"text": b"u1 A\\n", "../x": b""}))
{'text': b'u1 A\\n'}
"""

from __future__ import annotations

import asyncio
import io
import random
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.errors import ArchiveError, AsrError, AudioError, DataDirError, LangError, LmError

__all__ = [
    "TARGETS",
    "FuzzCheckError",
    "FuzzTarget",
    "build_targets",
    "generate",
    "mutate",
    "pack_files",
    "run_one",
    "unpack_files",
]

#: Every fuzz target, in the order the benchmark runs them.
TARGETS: tuple[str, ...] = (
    "audio",
    "kaldi_map",
    "datadir",
    "lexicon",
    "arpa",
    "ark",
    "scp",
    "recognize",
    "streaming",
)
#: Files a packed data directory may hold (anything else in a fuzzed pack is ignored).
DATADIR_FILES: tuple[str, ...] = ("wav.scp", "text", "utt2spk", "spk2utt", "segments")

_HUGE_INTS = (0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0x7FFFF000, 0x7FFFEFFF, 0x10000, 0xFFFF, 1)
_HUGE_TEXT = (
    b"99999999999999999999",
    b"2147483648",
    b"-1",
    b"-0",
    b"0",
    b"1e999",
    b"-1e999",
    b"nan",
    b"inf",
    b"-inf",
    b"0x10",
    b"1_000",
    b"\xd9\xa3",  # ARABIC-INDIC DIGIT THREE: str.isdigit() is True, int() accepts it
    b"\xc2\xb2",  # SUPERSCRIPT TWO: str.isdigit() is True, int() rejects it
)
_JUNK = (
    "\u00a0",
    "\u2028",
    "\u2029",
    "\x85",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x1d",
    "\x1e",
    "\ufeff",
    "\u200b",
    "\u0301",
    "\u202e",
    "\U0001f600",
    "\uffff",
    "\r",
    "\t",
    "\\",
    "#",
    "[",
    ":",
    "|",
    "=",
)
_RAW_JUNK = (b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xc0\xaf")
_DIGITS = re.compile(rb"-?\d+(?:\.\d+)?(?:e-?\d+)?")
_MAX_LONG_LINE = 100_000


class FuzzCheckError(Exception):
    """A reader returned without error but its result is malformed (a bug, like a crash)."""


@dataclass(frozen=True)
class FuzzTarget:
    """One reader under test.

    ``seeds``: real, valid inputs to mutate; ``allowed``: the error types the reader
    documents; ``run(data, scratch_dir)``: feed ``data`` to the reader (files go under
    ``scratch_dir``), check the result, raise an ``allowed`` error or return.
    """

    name: str
    seeds: tuple[bytes, ...]
    allowed: tuple[type[BaseException], ...]
    run: Callable[[bytes, Path], None]
    structured: Callable[[bytes, random.Random], bytes] | None = None

    def generate(self, rng: random.Random) -> bytes:
        """One input: :func:`generate` over the seeds, or (half the time, for targets that
        have one) a ``structured`` mutation that keeps the format valid (proto fields)."""
        if self.structured is not None and rng.random() < 0.5:
            data = self.structured(rng.choice(self.seeds), rng)
            return mutate(data, rng, self.seeds) if rng.random() < 0.2 else data
        return generate(self.seeds, rng)


def run_one(target: FuzzTarget, data: bytes, scratch_dir: Path) -> str:
    """Run one input; return ``"ok"`` or the documented error's label. Other errors propagate."""
    try:
        target.run(data, scratch_dir)
    except target.allowed as err:
        return getattr(err, "label", type(err).__name__)
    return "ok"


# ---- generators


def random_bytes(rng: random.Random, *, max_len: int = 2048) -> bytes:
    """Uniformly random bytes, sometimes printable ASCII with newlines."""
    length = rng.choice((0, 1, 2, 4, 8, 16, rng.randrange(max_len + 1)))
    if rng.random() < 0.5:
        return rng.randbytes(length)
    return bytes(rng.choice(b"abc 01\t\n.-#<>/\\[]:=") for _ in range(length))


def _position(data: bytes, rng: random.Random) -> int:
    if data and rng.random() < 0.5:  # near a line start or the header, where fields live
        starts = [0, *(m.end() for m in re.finditer(rb"\n", data[:65536]))]
        return min(rng.choice(starts) + rng.randrange(8), len(data))
    return rng.randrange(len(data) + 1)


def _flip_bits(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    if not data:
        return data
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        pos = rng.randrange(len(buf)) if rng.random() < 0.7 else rng.randrange(min(len(buf), 64))
        buf[pos] ^= 1 << rng.randrange(8)
    return bytes(buf)


def _set_bytes(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    if not data:
        return data
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        buf[rng.randrange(len(buf))] = rng.choice((0, 0xFF, 0x7F, 0x80, 0x20, 0x0A, 0x0D, 0x09))
    return bytes(buf)


def _truncate(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    return data[: rng.randrange(len(data) + 1)] if data else data


def _drop_slice(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    start = rng.randrange(len(data) + 1)
    return data[:start] + data[start + rng.choice((1, 2, 4, 8, 64, 1024)) :]


def _duplicate_slice(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    start = rng.randrange(len(data) + 1)
    piece = data[start : start + rng.choice((1, 4, 16, 256, 4096))]
    at = rng.randrange(len(data) + 1)
    return data[:at] + piece * rng.choice((1, 2, 50)) + data[at:]


def _huge_length(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    """Overwrite (or insert) a 4/8-byte binary length, or an ASCII number, with a huge one."""
    at = _position(data, rng)
    if rng.random() < 0.5:
        value = rng.choice(_HUGE_INTS)
        fmt = rng.choice(("<I", ">I", "<Q", "<i"))
        if fmt == "<i":
            value = -rng.choice((1, 2, 0x7FFFFFFF))
        packed = struct.pack(fmt, value)
        end = at + len(packed) if rng.random() < 0.8 else at
        return data[:at] + packed + data[end:]
    numbers = list(_DIGITS.finditer(data[:65536]))
    text = rng.choice(_HUGE_TEXT)
    if numbers and rng.random() < 0.8:
        match = rng.choice(numbers)
        return data[: match.start()] + text + data[match.end() :]
    return data[:at] + text + data[at:]


def _unicode_junk(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    at = _position(data, rng)
    if rng.random() < 0.3:
        junk = rng.choice(_RAW_JUNK)
    else:
        junk = "".join(rng.choice(_JUNK) for _ in range(rng.randint(1, 4))).encode("utf-8")
    end = at + (rng.randrange(3) if rng.random() < 0.5 else 0)
    return data[:at] + junk + data[end:]


def _nul_bytes(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    at = _position(data, rng)
    return data[:at] + b"\0" * rng.choice((1, 2, 4, 100)) + data[at:]


def _long_line(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    at = _position(data, rng)
    length = rng.choice((5000, 20000, _MAX_LONG_LINE))
    unit = rng.choice((b"A", b"a ", b"\t", b" ", b"0", b"-", b"\\", b"#1 "))
    return data[:at] + unit * (length // len(unit)) + data[at:]


def _lines(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    """Swap, duplicate, delete or blank a line; or insert a CR/blank line."""
    lines = data.split(b"\n")
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    choice = rng.randrange(5)
    if choice == 0:
        lines[i], lines[j] = lines[j], lines[i]
    elif choice == 1:
        lines.insert(j, lines[i])
    elif choice == 2 and len(lines) > 1:
        del lines[i]
    elif choice == 3:
        lines[i] = rng.choice((b"", b" ", b"\r", b"\t" + lines[i], lines[i] + b"\r"))
    else:
        lines.insert(i, rng.choice((b"", b"\r", b" ", b"\x0c")))
    return b"\n".join(lines)


def _splice(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    other = rng.choice(seeds)
    start = rng.randrange(len(other) + 1)
    piece = other[start : start + rng.choice((8, 64, 512))]
    at = rng.randrange(len(data) + 1)
    return data[:at] + piece + data[at + len(piece) * rng.randrange(2) :]


_MUTATIONS = (
    _flip_bits,
    _set_bytes,
    _truncate,
    _drop_slice,
    _duplicate_slice,
    _huge_length,
    _huge_length,
    _unicode_junk,
    _nul_bytes,
    _long_line,
    _lines,
    _lines,
    _splice,
)


def mutate(seed: bytes, rng: random.Random, seeds: Sequence[bytes] = ()) -> bytes:
    """``seed`` after 1-4 random mutations (``seeds``: material for splicing)."""
    data = seed
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        data = rng.choice(_MUTATIONS)(data, rng, seeds or (seed,))
    return data


def generate(seeds: Sequence[bytes], rng: random.Random) -> bytes:
    """One fuzzed input: random bytes (1 in 12) or a mutated seed."""
    if not seeds or rng.random() < 1 / 12:
        return random_bytes(rng)
    return mutate(rng.choice(seeds), rng, seeds)


def pack_files(files: Mapping[str, bytes]) -> bytes:
    """Several files as one input: ``\\x01<name>\\n<content>`` per file."""
    return b"".join(b"\x01" + name.encode() + b"\n" + content for name, content in files.items())


def unpack_files(data: bytes) -> dict[str, bytes]:
    """Inverse of :func:`pack_files`; names outside :data:`DATADIR_FILES` are dropped."""
    files = {}
    for part in data.split(b"\x01")[1:]:
        name, _, content = part.partition(b"\n")
        text = name.decode("utf-8", "replace")
        if text in DATADIR_FILES:
            files[text] = content
    return files


# ---- targets


def _write(scratch_dir: Path, name: str, data: bytes) -> Path:
    path = scratch_dir / name
    path.write_bytes(data)
    return path


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise FuzzCheckError(message)


def _lines_named(file_name: str, run: Callable[[bytes, Path], None]):
    """``run``, checking that an error naming ``<file>:<line>`` names a line the file has
    (lines end at b"\\n" only, as in Kaldi; not at \\x0c, \\x1c or U+2028)."""

    def checked(data: bytes, scratch_dir: Path) -> None:
        try:
            run(data, scratch_dir)
        except AsrError as err:
            num_lines = data.count(b"\n") + 1
            pattern = re.escape(str(scratch_dir / file_name)) + r":(\d+)"
            for match in re.finditer(pattern, str(err)):
                line = int(match.group(1))
                _check(1 <= line <= num_lines, f"names line {line} of {num_lines}: {err}")
            raise

    return checked


def _run_audio(data: bytes, scratch_dir: Path) -> None:
    from asr.audio import audio_info, read_audio

    path = _write(scratch_dir, "input.wav", data)
    info = audio_info(path)
    samples, rate = read_audio(path)
    _check(isinstance(samples, np.ndarray) and samples.dtype == np.float32, "not float32")
    _check(samples.ndim == 1 and samples.size > 0, f"bad shape {samples.shape}")
    _check(bool(np.isfinite(samples).all()), "non-finite samples")
    _check(rate == info.sampling_rate > 0, f"rate {rate} vs header {info.sampling_rate}")
    _check(samples.size == info.num_samples, f"{samples.size} samples vs {info.num_samples}")
    resampled, new_rate = read_audio(path, sampling_rate=16000)
    expected = (2 * samples.size * 16000 + rate) // (2 * rate)
    _check(new_rate == 16000 and resampled.shape == (expected,), "bad resampled length")
    _check(bool(np.isfinite(resampled).all()), "non-finite resampled samples")


def _check_map(mapping: Mapping[str, str]) -> None:
    for key, value in mapping.items():
        _check(bool(key) and not re.search(r"[ \t\n]", key), f"bad key {key!r}")
        _check(bool(value) and "\n" not in value, f"bad value {value!r}")
        _check(value == value.strip(" \t\r"), f"value not stripped {value!r}")


def _run_kaldi_map(data: bytes, scratch_dir: Path) -> None:
    from asr.data.datadir import read_kaldi_map

    _check_map(read_kaldi_map(_write(scratch_dir, "text", data)))


def _run_datadir(data: bytes, scratch_dir: Path) -> None:
    from asr.data.datadir import read_data_dir, validate_data_dir

    data_dir = scratch_dir / "data"
    data_dir.mkdir(exist_ok=True)
    for name in DATADIR_FILES:
        (data_dir / name).unlink(missing_ok=True)
    for name, content in unpack_files(data).items():
        _write(data_dir, name, content)
    validate_data_dir(data_dir, check_audio=False)
    loaded = read_data_dir(data_dir, check_audio=False)
    _check(len(loaded) > 0, "empty data dir accepted")
    for mapping in (loaded.wav_scp, loaded.text, loaded.utt2spk):
        _check_map(mapping)
    for utt_id, spk_id in loaded.utt2spk.items():
        _check(utt_id.startswith(spk_id), f"{utt_id!r} does not start with {spk_id!r}")


def _run_lexicon(data: bytes, scratch_dir: Path) -> None:
    from asr.lang.lexicon import read_lexicon, read_vocabulary

    path = _write(scratch_dir, "lexicon.txt", data)
    words = read_vocabulary(path)
    _check(all(w and not w.isspace() for w in words), "bad vocabulary word")
    errors = []
    for fmt in ("dict", "lexiconp", "filler"):  # each format on its own: one may accept it
        try:
            lexicon = read_lexicon(path, fmt=fmt)
        except LangError as err:
            errors.append(err)
            continue
        for entry in lexicon.entries:
            _check(bool(entry.word) and len(entry.pron) > 0, f"bad entry {entry!r}")
            _check(0.0 < entry.prob <= 1.0, f"bad prob {entry!r}")
            _check(all(p and not p.isspace() for p in entry.pron), f"bad phone {entry!r}")
    if len(errors) == 3:
        raise errors[0]


def _run_arpa(data: bytes, scratch_dir: Path) -> None:
    from asr.lang.arpa import read_arpa, read_arpa_vocab, write_arpa

    path = _write(scratch_dir, "lm.arpa", data)
    model = read_arpa(path)
    _check(read_arpa_vocab(path) == list(model.vocab), "read_arpa_vocab disagrees with read_arpa")
    scores = model.sentence_logprobs(list(model.vocab[:6]))
    _check(scores.shape == (min(6, len(model.vocab)) + 1,), f"bad scores shape {scores.shape}")
    write_arpa(model, scratch_dir / "copy.arpa")
    copy = read_arpa(scratch_dir / "copy.arpa")
    _check(copy.num_ngrams == model.num_ngrams and copy.vocab == model.vocab, "no round trip")


def _check_matrices(items) -> None:
    for key, matrix in items:
        _check(bool(key) and not re.search(r"[ \t\n\r\v\f]", key), f"bad key {key!r}")
        _check(isinstance(matrix, np.ndarray) and matrix.ndim == 2, f"bad matrix for {key!r}")


def _run_ark(data: bytes, scratch_dir: Path) -> None:
    from asr.features.io import read_matrices_ark

    _check_matrices(list(read_matrices_ark(_write(scratch_dir, "feats.ark", data))))


def _run_scp(data: bytes, scratch_dir: Path) -> None:
    from asr.features.io import read_matrices_scp

    _check_matrices(list(read_matrices_scp(_write(scratch_dir, "feats.scp", data))))


# ---- seeds from real files


def _wav_bytes(samples: np.ndarray, rate: int, fmt: str = "WAV") -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype="PCM_16")
    return buffer.getvalue()


def _audio_seeds(corpora_dir: Path) -> tuple[bytes, ...]:
    from asr.audio import read_audio

    wav = sorted((corpora_dir / "yesno" / "waves_yesno").glob("*.wav"))[0]
    an4 = sorted((corpora_dir / "an4" / "wav").rglob("*.wav"))[0]
    samples, rate = read_audio(wav)
    excerpt = samples[: rate // 4]
    return (
        wav.read_bytes(),
        an4.read_bytes(),
        _wav_bytes(excerpt, rate),
        _wav_bytes(excerpt, rate, fmt="FLAC"),
    )


def _datadir_seeds(corpora_dir: Path, scratch_dir: Path) -> tuple[tuple[bytes, ...], bytes]:
    from asr.data.yesno import prepare_yesno

    prepare_yesno(corpora_dir / "yesno", scratch_dir / "yesno")
    files = {
        name: (scratch_dir / "yesno" / "train" / name).read_bytes() for name in DATADIR_FILES[:4]
    }
    first_utt = files["text"].split()[0]
    with_segments = {**files, "segments": first_utt + b" rec1 0.00 1.25\n"}
    return (pack_files(files), pack_files(with_segments)), files["wav.scp"]


def _lexicon_seeds(corpora_dir: Path) -> tuple[bytes, ...]:
    from asr.lang.lexicon import read_lexicon

    etc = corpora_dir / "an4" / "etc"
    cmudict = (corpora_dir / "cmudict" / "cmudict.dict").read_bytes()
    excerpt = b"\n".join(cmudict.split(b"\n")[:300]) + b"\n"
    lexiconp = read_lexicon(etc / "an4.dic").to_text(with_probs=True).encode()
    return (
        (etc / "an4.dic").read_bytes(),
        (etc / "an4.filler").read_bytes(),
        excerpt,
        lexiconp,
    )


def _arpa_seeds(corpora_dir: Path, scratch_dir: Path) -> tuple[bytes, ...]:
    from asr.lang.arpa import write_arpa
    from asr.lang.lm import NgramConfig, train_ngram

    etc = corpora_dir / "an4" / "etc"
    sentences = []
    for line in (etc / "an4_train.transcription").read_text().splitlines()[:300]:
        words = [w for w in line.rsplit("(", 1)[0].split() if w not in ("<s>", "</s>")]
        sentences.append(words)
    path = scratch_dir / "trigram.arpa"
    write_arpa(train_ngram(sentences, config=NgramConfig(order=3)), path, precision=7)
    return (etc / "an4.lm").read_bytes(), path.read_bytes()


def _ark_seeds(corpora_dir: Path, scratch_dir: Path) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    from asr.audio import read_audio
    from asr.features import MfccConfig, compute_mfcc
    from asr.features.io import write_matrices

    items = []
    for wav in sorted((corpora_dir / "yesno" / "waves_yesno").glob("*.wav"))[:2]:
        samples, rate = read_audio(wav)
        feats = compute_mfcc(samples[: rate // 2], rate, MfccConfig(sampling_rate=rate))
        items.append((f"yesno-{wav.stem}", np.asarray(feats, dtype=np.float32)))
    stats = np.concatenate([items[0][1].sum(0), [len(items[0][1])]])
    items.append(("cmvn-global", np.stack([stats, stats * 2.0]).astype(np.float64)))
    items.append(("empty", np.zeros((0, 13), np.float32)))
    ark, scp = scratch_dir / "feats.ark", scratch_dir / "feats.scp"
    write_matrices(items, ark_path=ark, scp_path=scp)
    scp_text = scp.read_bytes()
    first = scp_text.split(b"\n")[0].split(b" ", 1)[1]
    ranged = b"ranged " + first + b"[2:9,0:4]\n" + b"whole " + str(ark).encode() + b"\n"
    return (ark.read_bytes(),), (scp_text, scp_text + ranged)


# ---- the servicer


class _Aborted(Exception):
    """``context.abort`` was called: the request got a gRPC status (the documented path)."""

    def __init__(self, code, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.label = f"status:{code.name}"


class _Context:
    async def abort(self, code, details: str) -> None:
        raise _Aborted(code, details)


@dataclass(frozen=True)
class _Result:
    text: str = ""
    words: tuple = ()
    confidence: float = 0.0


class _StubScheduler:
    """Stands in for the BatchScheduler: checks the samples it gets, recognizes nothing."""

    def open(self, recognizer, *, sampling_rate, interim_results=False, single_utterance=False):
        from server.scheduler import StreamSlot

        _check(sampling_rate > 0, f"stream opened at {sampling_rate} Hz")
        return StreamSlot(
            recognizer=recognizer,
            stream=None,
            sampling_rate=int(sampling_rate),
            interim_results=bool(interim_results),
            single_utterance=bool(single_utterance),
            slot_id=1,
        )

    def push(self, slot, samples: np.ndarray) -> None:
        _check_samples(samples)
        slot.num_samples_received += int(samples.size)

    def finish(self, slot) -> None:
        from server.scheduler import StreamEvent

        slot.events.put_nowait(StreamEvent("done"))

    def close(self, slot) -> None:
        slot.closed = True

    async def transcribe(self, recognizer, samples: np.ndarray, *, sampling_rate: int) -> _Result:
        _check_samples(samples)
        _check(sampling_rate > 0, f"transcribe at {sampling_rate} Hz")
        return _Result()


def _check_samples(samples: np.ndarray) -> None:
    _check(samples.dtype == np.float32 and samples.ndim == 1, "bad samples array")
    _check(bool(np.all(np.abs(samples) <= 1.0)), "samples outside [-1, 1]")


_PROTO_INTS = (0, 1, -1, 2, 7999, 8000, 16000, 48000, 48001, 30, 31, 2**31 - 1, -(2**31))


def _mutate_proto_fields(message, rng: random.Random) -> None:
    """Give one random (possibly nested) field of ``message`` a random edge value."""
    fields = message.DESCRIPTOR.fields
    field = rng.choice(fields)
    if field.message_type is not None:
        if field.is_repeated:
            return
        if field.message_type.name == "Duration" or rng.random() < 0.2:
            message.ClearField(field.name)
            return
        _mutate_proto_fields(getattr(message, field.name), rng)
        return
    kind = field.type
    if field.is_repeated:
        values = getattr(message, field.name)
        values.append(rng.choice(("", "en-US", "\u00e9", "x" * 200)))
    elif kind == field.TYPE_BOOL:
        setattr(message, field.name, not getattr(message, field.name))
    elif kind == field.TYPE_ENUM:
        setattr(message, field.name, rng.choice((0, 1, 2, 3, 9, 10, 99, -1)))
    elif kind == field.TYPE_STRING:
        junk = "".join(rng.choice(_JUNK) for _ in range(rng.randrange(4)))
        setattr(message, field.name, rng.choice(("", "default", "nope", "x" * 5000)) + junk)
    elif kind == field.TYPE_BYTES:
        value = getattr(message, field.name)
        choice = rng.randrange(4)
        if choice == 0:
            value = value[: rng.randrange(len(value) + 1)]
        elif choice == 1:
            value = rng.randbytes(rng.choice((0, 1, 2, 3, 100, 4001)))
        elif choice == 2:
            value = b"RIFF" + value[4:] if len(value) > 12 else b"RIFF\0\0\0\0WAVE" + value
        else:
            value = struct.pack("<h", rng.choice((-32768, 32767, 0))) * rng.choice((1, 800, 40001))
        setattr(message, field.name, value)
    elif kind in (field.TYPE_FLOAT, field.TYPE_DOUBLE):
        setattr(message, field.name, rng.choice((0.0, -1.0, 1e30, float("nan"), float("inf"))))
    else:
        setattr(message, field.name, rng.choice(_PROTO_INTS))


def _proto_mutator(message_class) -> Callable[[bytes, random.Random], bytes]:
    def structured(seed: bytes, rng: random.Random) -> bytes:
        message = message_class.FromString(seed)
        for _ in range(rng.randint(1, 3)):
            _mutate_proto_fields(message, rng)
        return message.SerializeToString()

    return structured


class _ServicerDriver:
    """Parses bytes as a RecognizeRequest (``kind="recognize"``) or a StreamingRecognizeRequest
    (``kind="streaming"``) and hands it to the servicer, as gRPC would after deserializing.

    A streaming message is sent both as the first request of a stream and after a valid
    config; the label is the outcome where the message is in its proper place (a config
    first, audio second).
    """

    def __init__(self, kind: str, config_bytes: bytes) -> None:
        from server.servicer import SpeechServicer

        self.kind = kind
        self.servicer = SpeechServicer({"default": object()}, _StubScheduler())
        self.config_bytes = config_bytes
        self.loop = asyncio.new_event_loop()

    def __call__(self, data: bytes, scratch_dir: Path) -> None:
        from server.generated import cloud_speech_pb2 as pb

        if self.kind == "recognize":
            self._run(self._recognize(pb.RecognizeRequest.FromString(data)))
            return
        request = pb.StreamingRecognizeRequest.FromString(data)
        config = pb.StreamingRecognizeRequest.FromString(self.config_bytes)
        outcomes = []
        for requests in ([request], [config, request]):
            try:
                self._run(self._stream(requests))
                outcomes.append(None)
            except _Aborted as err:
                outcomes.append(err)
        proper = outcomes[0 if request.WhichOneof("streaming_request") == "streaming_config" else 1]
        if proper is not None:
            raise proper

    def _run(self, call) -> None:
        try:
            self.loop.run_until_complete(asyncio.wait_for(call, timeout=10.0))
        except TimeoutError:
            raise FuzzCheckError("the servicer did not answer within 10 s") from None

    async def _recognize(self, request) -> None:
        response = await self.servicer.Recognize(request, _Context())
        _check(len(response.results) == 0, "the stub recognized something")

    async def _stream(self, requests) -> None:
        async def requests_iter():
            for request in requests:
                yield request

        async for _ in self.servicer.StreamingRecognize(requests_iter(), _Context()):
            raise FuzzCheckError("the stub scheduler sent no results, yet a response came")
        _check(self.servicer.num_streams == 0, "stream count not released")


def _servicer_seeds(audio_seed: bytes) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """(RecognizeRequest seeds, StreamingRecognizeRequest seeds; the first is a valid config)."""
    import soundfile as sf

    from server.generated import cloud_speech_pb2 as pb

    samples, rate = sf.read(io.BytesIO(audio_seed), dtype="int16")
    pcm = samples[: rate // 10].astype("<i2").tobytes()
    wav = _wav_bytes(samples[:800], rate)
    enc = pb.RecognitionConfig.AudioEncoding
    config = pb.RecognitionConfig(
        encoding=enc.LINEAR16,
        sample_rate_hertz=rate,
        language_code="en-US",
        max_alternatives=1,
        enable_word_time_offsets=True,
        enable_word_confidence=True,
        model="default",
    )
    wav_config = pb.RecognitionConfig(encoding=enc.ENCODING_UNSPECIFIED, language_code="en-US")
    # Google's speech_contexts (6), which we do not declare: an unknown field.
    with_unknown = pb.RecognitionConfig.FromString(
        config.SerializeToString() + b"\x32\x03\x0a\x01a"
    )
    configs = [config, with_unknown]
    # Valid configs with edge values in each field the servicer checks.
    edges = [
        ("sample_rate_hertz", v) for v in (0, -1, 1, 7999, 8000, 48000, 48001, 2**31 - 1, -(2**31))
    ]
    edges += [("encoding", v) for v in (0, 2, 3, 9, 99, -5)]
    edges += [("audio_channel_count", v) for v in (0, 2, -1, 2**31 - 1)]
    edges += [("max_alternatives", v) for v in (-1, 0, 30, 31, 2**31 - 1)]
    edges += [("model", v) for v in ("", "nope", "default\0", "\u00e9" * 300)]
    edges += [
        ("enable_automatic_punctuation", True),
        ("enable_separate_recognition_per_channel", True),
        ("language_code", "x" * 10000),
    ]
    for name, value in edges:
        edged = pb.RecognitionConfig()
        edged.CopyFrom(config)
        setattr(edged, name, value)
        configs.append(edged)
    configs[-1].alternative_language_codes.append("fr-FR")
    recognize = [
        pb.RecognizeRequest(config=wav_config, audio=pb.RecognitionAudio(content=wav)),
        pb.RecognizeRequest(config=config, audio=pb.RecognitionAudio(uri="/etc/passwd")),
    ]
    streaming = [pb.StreamingRecognizeRequest(audio_content=pcm)]
    for index, edged in enumerate(configs):
        content = (pcm, wav, pcm[:-1])[index % 3]
        recognize.append(
            pb.RecognizeRequest(config=edged, audio=pb.RecognitionAudio(content=content))
        )
        streaming.append(
            pb.StreamingRecognizeRequest(
                streaming_config=pb.StreamingRecognitionConfig(
                    config=edged,
                    interim_results=index % 2 == 0,
                    single_utterance=index % 3 == 0,
                    enable_voice_activity_events=index % 7 == 6,
                )
            )
        )
    # voice_activity_timeout (6) of StreamingRecognitionConfig: an unknown field.
    streaming.append(
        pb.StreamingRecognizeRequest.FromString(
            streaming[1].SerializeToString()[:0] + b"\x0a\x04\x32\x02\x08\x01"
        )
    )
    streaming.insert(0, streaming.pop(1))  # the valid config first
    return (
        tuple(m.SerializeToString() for m in recognize),
        tuple(m.SerializeToString() for m in streaming),
    )


def build_targets(
    *, corpora_dir: str | Path, scratch_dir: str | Path, names: Sequence[str] = TARGETS
) -> dict[str, FuzzTarget]:
    """The fuzz targets ``names``, with seeds read from the real corpora at ``corpora_dir``
    (``yesno/``, ``an4/``, ``cmudict/``); seed files are written under ``scratch_dir``."""
    corpora_dir, scratch_dir = Path(corpora_dir), Path(scratch_dir)
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        raise AsrError(f"unknown fuzz targets {unknown}; choose from {TARGETS}")
    seed_dir = scratch_dir / "seeds"
    seed_dir.mkdir(parents=True, exist_ok=True)
    targets: dict[str, FuzzTarget] = {}
    audio = _audio_seeds(corpora_dir)
    if "audio" in names:
        targets["audio"] = FuzzTarget("audio", audio, (AudioError,), _run_audio)
    if {"kaldi_map", "datadir"} & set(names):
        packs, wav_scp = _datadir_seeds(corpora_dir, seed_dir)
        maps = tuple(unpack_files(packs[1]).values()) + (wav_scp,)
        targets["kaldi_map"] = FuzzTarget(
            "kaldi_map", maps, (DataDirError,), _lines_named("text", _run_kaldi_map)
        )
        targets["datadir"] = FuzzTarget("datadir", packs, (DataDirError,), _run_datadir)
    if "lexicon" in names:
        lexicons = _lexicon_seeds(corpora_dir)
        targets["lexicon"] = FuzzTarget(
            "lexicon", lexicons, (LangError,), _lines_named("lexicon.txt", _run_lexicon)
        )
    if "arpa" in names:
        targets["arpa"] = FuzzTarget(
            "arpa",
            _arpa_seeds(corpora_dir, seed_dir),
            (LmError,),
            _lines_named("lm.arpa", _run_arpa),
        )
    if {"ark", "scp"} & set(names):
        arks, scps = _ark_seeds(corpora_dir, seed_dir)
        targets["ark"] = FuzzTarget("ark", arks, (ArchiveError,), _run_ark)
        targets["scp"] = FuzzTarget(
            "scp", scps, (ArchiveError,), _lines_named("feats.scp", _run_scp)
        )
    if {"recognize", "streaming"} & set(names):
        from google.protobuf.message import DecodeError

        allowed = (_Aborted, DecodeError)
        from server.generated import cloud_speech_pb2 as pb

        recognize, streaming = _servicer_seeds(audio[0])
        targets["recognize"] = FuzzTarget(
            "recognize",
            recognize,
            allowed,
            _ServicerDriver("recognize", streaming[0]),
            _proto_mutator(pb.RecognizeRequest),
        )
        targets["streaming"] = FuzzTarget(
            "streaming",
            streaming,
            allowed,
            _ServicerDriver("streaming", streaming[0]),
            _proto_mutator(pb.StreamingRecognizeRequest),
        )
    return {name: targets[name] for name in names}
