"""Fuzzed inputs for every input reader: real seed files, mutations, and one target per reader.

Shared by ``tests/test_fuzz.py`` (hypothesis, a CI-sized sample) and
``benchmarks/fuzz.py`` (>= 10,000 inputs per target, a hang watchdog, atheris).

The mutations live in :mod:`tests.support.mutations`, the servicer driver in
:mod:`tests.support.servicer_fuzz`. A :class:`FuzzTarget` holds real, valid inputs (``seeds``: a yesno WAV, the AN4
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

import contextlib
import io
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.errors import ArchiveError, AsrError, AudioError, DataDirError, LangError, LmError
from tests.support.mutations import generate, mutate, proto_mutator

__all__ = [
    "TARGETS",
    "FuzzCheckError",
    "FuzzTarget",
    "build_targets",
    "check",
    "check_map",
    "check_matrices",
    "generate",
    "mutate",
    "pack_files",
    "run_one",
    "unpack_files",
    "wav_bytes",
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


def check(condition: bool, message: str) -> None:
    """Raise :class:`FuzzCheckError` with ``message`` unless ``condition`` holds."""
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
                check(1 <= line <= num_lines, f"names line {line} of {num_lines}: {err}")
            raise

    return checked


def _run_audio(data: bytes, scratch_dir: Path) -> None:
    from asr.audio import audio_info, read_audio

    path = _write(scratch_dir, "input.wav", data)
    info = audio_info(path)
    samples, rate = read_audio(path)
    check(isinstance(samples, np.ndarray) and samples.dtype == np.float32, "not float32")
    check(samples.ndim == 1 and samples.size > 0, f"bad shape {samples.shape}")
    check(bool(np.isfinite(samples).all()), "non-finite samples")
    check(rate == info.sampling_rate > 0, f"rate {rate} vs header {info.sampling_rate}")
    check(samples.size == info.num_samples, f"{samples.size} samples vs {info.num_samples}")
    resampled, new_rate = read_audio(path, sampling_rate=16000)
    expected = (2 * samples.size * 16000 + rate) // (2 * rate)
    check(new_rate == 16000 and resampled.shape == (expected,), "bad resampled length")
    check(bool(np.isfinite(resampled).all()), "non-finite resampled samples")


def check_map(mapping: Mapping[str, str]) -> None:
    """A Kaldi map as a reader must return it: keys without whitespace, stripped values."""
    for key, value in mapping.items():
        check(bool(key) and not re.search(r"[ \t\n]", key), f"bad key {key!r}")
        check(bool(value) and "\n" not in value, f"bad value {value!r}")
        check(value == value.strip(" \t\r"), f"value not stripped {value!r}")


def _run_kaldi_map(data: bytes, scratch_dir: Path) -> None:
    from asr.data.datadir import read_kaldi_map

    check_map(read_kaldi_map(_write(scratch_dir, "text", data)))


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
    check(len(loaded) > 0, "empty data dir accepted")
    for mapping in (loaded.wav_scp, loaded.text, loaded.utt2spk):
        check_map(mapping)
    for utt_id, spk_id in loaded.utt2spk.items():
        check(utt_id.startswith(spk_id), f"{utt_id!r} does not start with {spk_id!r}")


def _run_lexicon(data: bytes, scratch_dir: Path) -> None:
    from asr.lang.lexicon import read_lexicon, read_vocabulary

    path = _write(scratch_dir, "lexicon.txt", data)
    words = read_vocabulary(path)
    check(all(w and not w.isspace() for w in words), "bad vocabulary word")
    errors = []
    for fmt in ("dict", "lexiconp", "filler"):  # each format on its own: one may accept it
        try:
            lexicon = read_lexicon(path, fmt=fmt)
        except LangError as err:
            errors.append(err)
            continue
        for entry in lexicon.entries:
            check(bool(entry.word) and len(entry.pron) > 0, f"bad entry {entry!r}")
            check(0.0 < entry.prob <= 1.0, f"bad prob {entry!r}")
            check(all(p and not p.isspace() for p in entry.pron), f"bad phone {entry!r}")
    if len(errors) == 3:
        raise errors[0]


def _run_arpa(data: bytes, scratch_dir: Path) -> None:
    from asr.lang.arpa import read_arpa, read_arpa_vocab, write_arpa

    path = _write(scratch_dir, "lm.arpa", data)
    model = read_arpa(path)
    check(read_arpa_vocab(path) == list(model.vocab), "read_arpa_vocab disagrees with read_arpa")
    scores = model.sentence_logprobs(list(model.vocab[:6]))
    check(scores.shape == (min(6, len(model.vocab)) + 1,), f"bad scores shape {scores.shape}")
    write_arpa(model, scratch_dir / "copy.arpa")
    copy = read_arpa(scratch_dir / "copy.arpa")
    check(copy.num_ngrams == model.num_ngrams and copy.vocab == model.vocab, "no round trip")


def check_matrices(items) -> None:
    """``(key, matrix)`` pairs as an archive reader must return them: clean keys, 2-D arrays."""
    for key, matrix in items:
        check(bool(key) and not re.search(r"[ \t\n\r\v\f]", key), f"bad key {key!r}")
        check(isinstance(matrix, np.ndarray) and matrix.ndim == 2, f"bad matrix for {key!r}")


def _run_ark(data: bytes, scratch_dir: Path) -> None:
    from asr.features.io import read_matrices_ark

    path = _write(scratch_dir, "feats.ark", data)
    ours = list(read_matrices_ark(path))
    check_matrices(ours)
    # The peer: what kaldi_io reads must be what we read. kaldi_io stops at the first empty
    # key (whitespace before a key, which Kaldi skips, as we do): its entries are a prefix
    # of ours. It decodes keys as Latin-1, we as UTF-8: compare the bytes.
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            import kaldi_io  # prints a KALDI_ROOT banner on import

            peer = [(key, np.asarray(m)) for key, m in kaldi_io.read_mat_ark(str(path))]
    except Exception:  # noqa: BLE001 - the peer is stricter (keys matching \S+ only)
        return
    check(len(peer) <= len(ours), "kaldi_io reads more matrices than we do")
    for (key, mine), (peer_key, theirs) in zip(ours, peer, strict=False):
        check(key.encode() == peer_key.encode("latin-1"), f"key {key!r} vs kaldi_io's")
        same = mine.shape == theirs.shape and np.array_equal(mine, theirs, equal_nan=True)
        check(same, f"matrix {key!r} differs from kaldi_io's")


def _run_scp(data: bytes, scratch_dir: Path) -> None:
    from asr.features.io import read_matrices_scp

    check_matrices(list(read_matrices_scp(_write(scratch_dir, "feats.scp", data))))


# ---- seeds from real files


def wav_bytes(samples: np.ndarray, rate: int, fmt: str = "WAV") -> bytes:
    """``samples`` encoded as a 16-bit sound file (``fmt``: a soundfile format) in memory."""
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
        wav_bytes(excerpt, rate),
        wav_bytes(excerpt, rate, fmt="FLAC"),
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

        from server.generated import cloud_speech_pb2 as pb
        from tests.support.servicer_fuzz import Aborted, ServicerDriver, servicer_seeds

        allowed = (Aborted, DecodeError)

        recognize, streaming = servicer_seeds(audio[0])
        targets["recognize"] = FuzzTarget(
            "recognize",
            recognize,
            allowed,
            ServicerDriver("recognize", streaming[0]),
            proto_mutator(pb.RecognizeRequest),
        )
        targets["streaming"] = FuzzTarget(
            "streaming",
            streaming,
            allowed,
            ServicerDriver("streaming", streaming[0]),
            proto_mutator(pb.StreamingRecognizeRequest),
        )
    return {name: targets[name] for name in names}
