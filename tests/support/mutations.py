"""Input mutations for fuzzing: byte-level (any format) and field-level (protobuf messages).

:func:`mutate` puts a seed through 1-4 random steps: bit flips, bytes set to
0/0xff/newline..., truncation, dropped or repeated slices, huge binary length
fields (``0xFFFFFFFF``...) or ASCII numbers (``99999999999999999999``, ``nan``,
``1e999``, ``²``), unicode junk (U+2028, NEL, BOM, invalid UTF-8), NUL bytes,
100,000-byte lines, swapped/duplicated/blanked lines, splices from other seeds.
:func:`generate` returns random bytes 1 time in 12, else a mutated seed.
:func:`proto_mutator` sets fields of a parsed message to edge values and
serializes it again, so that the result still parses.

>>> import random
>>> data = generate([b"spk1-a YES NO\\n"], random.Random(3))
>>> isinstance(data, bytes)
True
"""

from __future__ import annotations

import random
import re
import struct
from collections.abc import Callable, Sequence

__all__ = ["generate", "mutate", "proto_mutator", "random_bytes"]

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


def proto_mutator(message_class) -> Callable[[bytes, random.Random], bytes]:
    """``structured(seed, rng)``: parse ``seed`` as ``message_class``, give 1-3 random
    fields edge values (:data:`_PROTO_INTS`, junk strings, cut or odd-length bytes,
    unknown enum values), serialize."""

    def structured(seed: bytes, rng: random.Random) -> bytes:
        message = message_class.FromString(seed)
        for _ in range(rng.randint(1, 3)):
            _mutate_proto_fields(message, rng)
        return message.SerializeToString()

    return structured
