"""FSTs as numpy arrays, read from and written to OpenFst's binary ``vector`` format.

:class:`FstArrays` holds a tropical (``standard`` arc) FST as flat arrays (arcs grouped by
source state) and converts to and from OpenFst's binary format with compiled (numba) scans,
so graph builders and the decoder work on whole arc arrays instead of per-arc Python calls.
Files we write are read by OpenFst's own tools (``fstinfo``, ``fstprint``).

>>> import kaldifst
>>> fst = kaldifst.compile("0 1 3 4 0.5\\n1 0.25\\n")
>>> arrays = FstArrays.from_fst(fst)
>>> arrays.ilabel.tolist(), arrays.final.tolist()
([3], [inf, 0.25])
>>> arrays.to_fst().num_states
2
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import kaldifst
import numba
import numpy as np

from asr.errors import GraphError
from asr.fileio import atomic_write

_MAGIC = 2125659606
_SYMBOL_TABLE_MAGIC = 2125658996
_VECTOR_VERSION = 2
_PROPS_EXPANDED_MUTABLE = 0x3  # every other property "unknown": OpenFst recomputes on demand


@numba.njit(cache=True)
def _get_i32(buf, pos):  # pragma: no cover - numba
    value = buf[pos] | (buf[pos + 1] << 8) | (buf[pos + 2] << 16) | (np.int64(buf[pos + 3]) << 24)
    return value - (np.int64(1) << 32) if value >= (np.int64(1) << 31) else value


@numba.njit(cache=True)
def _put_i32(buf, pos, value):  # pragma: no cover - numba
    value = value & 0xFFFFFFFF
    for k in range(4):
        buf[pos + k] = (value >> (8 * k)) & 0xFF


@numba.njit(cache=True)
def _count_arcs(buf, pos, num_states):  # pragma: no cover - numba
    """Total arcs of OpenFst's per-state records (final weight, int64 arc count, 16-byte arcs);
    -1 when the buffer is too short."""
    total = 0
    for _ in range(num_states):
        if pos + 12 > buf.shape[0]:
            return -1
        count = _get_i32(buf, pos + 4) + (_get_i32(buf, pos + 8) << 32)
        if count < 0:
            return -1
        total += count
        pos += 12 + 16 * count
    return total if pos <= buf.shape[0] else -1


@numba.njit(cache=True)
def _parse_body(buf, pos, final_bits, counts, ilabel, olabel, weight_bits, dst):  # pragma: no cover
    """Fill the arrays from the per-state records (after :func:`_count_arcs` checked them)."""
    arc = 0
    for s in range(final_bits.shape[0]):
        final_bits[s] = _get_i32(buf, pos)
        count = _get_i32(buf, pos + 4) + (_get_i32(buf, pos + 8) << 32)
        counts[s] = count
        pos += 12
        for _ in range(count):
            ilabel[arc] = _get_i32(buf, pos)
            olabel[arc] = _get_i32(buf, pos + 4)
            weight_bits[arc] = _get_i32(buf, pos + 8)
            dst[arc] = _get_i32(buf, pos + 12)
            pos += 16
            arc += 1


@numba.njit(cache=True)
def _write_body(buf, final_bits, counts, ilabel, olabel, weight_bits, dst):  # pragma: no cover
    """Inverse of :func:`_parse_body`; arcs must be grouped by source state."""
    pos = 0
    arc = 0
    for s in range(final_bits.shape[0]):
        _put_i32(buf, pos, final_bits[s])
        _put_i32(buf, pos + 4, counts[s])
        _put_i32(buf, pos + 8, counts[s] >> 32)
        pos += 12
        for _ in range(counts[s]):
            _put_i32(buf, pos, ilabel[arc])
            _put_i32(buf, pos + 4, olabel[arc])
            _put_i32(buf, pos + 8, weight_bits[arc])
            _put_i32(buf, pos + 12, dst[arc])
            pos += 16
            arc += 1


def _read_vector_fst(data: bytes, where: str) -> FstArrays:
    buf = np.frombuffer(data, dtype=np.uint8)

    def take(pos: int, dtype: str) -> tuple[int, int]:
        size = np.dtype(dtype).itemsize
        if pos + size > len(buf):
            raise GraphError(f"{where}: truncated FST header")
        return pos + size, buf[pos : pos + size].view(dtype)[0].item()

    pos, magic = take(0, "<i4")
    if magic != _MAGIC:
        raise GraphError(f"{where}: not an OpenFst binary file")
    names = []
    for _ in range(2):
        pos, length = take(pos, "<i4")
        names.append(bytes(buf[pos : pos + length]).decode(errors="replace"))
        pos += length
    if names != ["vector", "standard"]:
        raise GraphError(f"{where}: expected a standard-arc vector FST, got {names}")
    pos, _version = take(pos, "<i4")
    pos, flags = take(pos, "<i4")
    pos, _props = take(pos, "<u8")
    pos, start = take(pos, "<i8")
    pos, num_states = take(pos, "<i8")
    pos, _num_arcs = take(pos, "<i8")  # OpenFst leaves this 0 in vector files
    for flag in (0x1, 0x2):  # stored input / output symbol tables: skip them
        if flags & flag:
            pos, magic = take(pos, "<i4")
            if magic != _SYMBOL_TABLE_MAGIC:
                raise GraphError(f"{where}: malformed symbol table in the FST header")
            pos, length = take(pos, "<i4")
            pos, _available_key = take(pos + length, "<i8")
            pos, num_symbols = take(pos, "<i8")
            for _ in range(num_symbols):
                pos, length = take(pos, "<i4")
                pos, _key = take(pos + length, "<i8")
    if num_states < 0:
        raise GraphError(f"{where}: FST header lacks the number of states")
    num_arcs = _count_arcs(buf, pos, num_states)
    if num_arcs < 0:
        raise GraphError(f"{where}: truncated FST body")
    final_bits = np.empty(num_states, dtype=np.int32)
    counts = np.empty(num_states, dtype=np.int64)
    ilabel, olabel, weight_bits, dst = (np.empty(num_arcs, dtype=np.int32) for _ in range(4))
    _parse_body(buf, pos, final_bits, counts, ilabel, olabel, weight_bits, dst)
    return FstArrays(
        start=int(start),
        final=final_bits.view(np.float32),
        src=np.repeat(np.arange(num_states, dtype=np.int32), counts),
        dst=dst,
        ilabel=ilabel,
        olabel=olabel,
        weight=weight_bits.view(np.float32),
    )


_SCRATCH_LOCK = threading.Lock()
_scratch_dirs: dict[int, Path] = {}  # pid -> this process's scratch directory


def _scratch_path() -> Path:
    """A file name private to this process and thread, in a scratch directory created once per
    process (removed at exit) — kaldifst reads and writes FSTs only through files, and a fresh
    temporary directory per conversion cost more than the conversion of a training graph."""
    pid = os.getpid()
    with _SCRATCH_LOCK:
        scratch = _scratch_dirs.get(pid)
        if scratch is None or not scratch.is_dir():
            scratch = Path(tempfile.mkdtemp(prefix="asr-fst-"))
            _scratch_dirs[pid] = scratch
            atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return scratch / f"{threading.get_ident()}.fst"


@dataclass(frozen=True, eq=False)
class FstArrays:
    """A tropical FST as arrays: ``final: (num_states,) float32`` (``inf`` = not final) and
    per-arc ``src, dst, ilabel, olabel: (num_arcs,) int32``, ``weight: (num_arcs,) float32``."""

    start: int
    final: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    ilabel: np.ndarray
    olabel: np.ndarray
    weight: np.ndarray

    @property
    def num_states(self) -> int:
        return len(self.final)

    @property
    def num_arcs(self) -> int:
        return len(self.src)

    @classmethod
    def from_fst(cls, fst: kaldifst.StdFst) -> FstArrays:
        """Arrays of a kaldifst FST (through its OpenFst binary form)."""
        path = _scratch_path()
        try:
            if not fst.write(str(path)):
                raise GraphError("could not serialise an FST")
            return _read_vector_fst(path.read_bytes(), "<fst>")
        finally:
            path.unlink(missing_ok=True)

    @classmethod
    def read(cls, path: str | os.PathLike) -> FstArrays:
        """Arrays of a binary OpenFst ``vector`` FST file."""
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise GraphError(f"{path}: FST not found") from None
        return _read_vector_fst(data, str(path))

    def to_bytes(self) -> bytes:
        """OpenFst binary ``vector`` format (arcs written grouped by source state)."""
        order = np.argsort(self.src, kind="stable")
        counts = np.bincount(self.src, minlength=self.num_states).astype(np.int64)
        body = np.empty(12 * self.num_states + 16 * self.num_arcs, dtype=np.uint8)
        _write_body(
            body,
            np.ascontiguousarray(self.final, dtype=np.float32).view(np.int32),
            counts,
            np.ascontiguousarray(self.ilabel[order], dtype=np.int32),
            np.ascontiguousarray(self.olabel[order], dtype=np.int32),
            np.ascontiguousarray(self.weight[order], dtype=np.float32).view(np.int32),
            np.ascontiguousarray(self.dst[order], dtype=np.int32),
        )
        header = bytearray()
        header += np.array([_MAGIC, 6], dtype="<i4").tobytes() + b"vector"
        header += np.array([8], dtype="<i4").tobytes() + b"standard"
        header += np.array([_VECTOR_VERSION, 0], dtype="<i4").tobytes()
        header += np.array([_PROPS_EXPANDED_MUTABLE], dtype="<u8").tobytes()
        header += np.array([self.start, self.num_states, self.num_arcs], dtype="<i8").tobytes()
        return bytes(header) + body.tobytes()

    def to_fst(self) -> kaldifst.StdVectorFst:
        """A kaldifst ``StdVectorFst`` with these states and arcs."""
        path = _scratch_path()
        try:
            path.write_bytes(self.to_bytes())
            return kaldifst.StdVectorFst.read(str(path))
        finally:
            path.unlink(missing_ok=True)

    def write(self, path: str | os.PathLike) -> None:
        """Write atomically in OpenFst's binary format (``fstinfo`` reads it)."""
        with atomic_write(path, "wb") as handle:
            handle.write(self.to_bytes())


def write_fst(fst: kaldifst.StdFst, path: str | os.PathLike) -> None:
    """Write a kaldifst FST atomically (OpenFst binary)."""
    tmp_path = _scratch_path()
    try:
        if not fst.write(str(tmp_path)):
            raise GraphError(f"{path}: could not write FST")
        data = tmp_path.read_bytes()
    finally:
        tmp_path.unlink(missing_ok=True)
    with atomic_write(path, "wb") as handle:
        handle.write(data)
