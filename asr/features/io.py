"""Kaldi feature archives: binary ``ark`` files indexed by ``scp`` files.

Matrices are written in Kaldi's binary format (``<key> \\0B FM <rows> <cols>
<data>`` for float32, ``DM`` for float64) through :mod:`kaldi_io`, so that
``copy-feats``, ``kaldi_io`` and ``kaldiio`` read them unchanged. The scp file
holds ``<key> <absolute ark path>:<byte offset>`` lines, exactly as Kaldi's
``ark,scp:`` write specifier produces.

Reading is done here (not by ``kaldi_io``, whose scp reader skips unreadable
entries with a printed warning) so that a missing file, a bad offset or a
truncated archive raises :class:`asr.errors.ArchiveError` naming the file.
Compressed (``CM``) and text matrices are read through ``kaldi_io``.

>>> import numpy as np, tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> feats = np.arange(6, dtype=np.float32).reshape(3, 2)
>>> write_matrices([("utt1", feats)], ark_path=d / "f.ark", scp_path=d / "f.scp")
1
>>> [(utt_id, m.shape) for utt_id, m in read_matrices_scp(d / "f.scp")]
[('utt1', (3, 2))]
>>> bool((read_matrix(f"{d / 'f.ark'}:5") == feats).all())
True
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from asr.errors import ArchiveError
from asr.fileio import atomic_write

__all__ = [
    "read_matrices_ark",
    "read_matrices_scp",
    "read_matrix",
    "write_kaldi_matrix",
    "write_matrices",
]

_BINARY_MARK = b"\0B"
_HEADER_DTYPES = {b"FM ": np.dtype("<f4"), b"DM ": np.dtype("<f8")}
_DIMS_DTYPE = np.dtype([("s1", "i1"), ("rows", "<i4"), ("s2", "i1"), ("cols", "<i4")])
_RANGE_RE = re.compile(
    r"^(?P<path>.*?)(?::(?P<offset>\d+))?(?:\[(?P<range>[^\]]*)\])?$", re.ASCII | re.DOTALL
)
_KALDI_IO = None


def _kaldi_io():
    """Import :mod:`kaldi_io` once, hiding the KALDI_ROOT banner it prints on import."""
    global _KALDI_IO
    if _KALDI_IO is None:
        with (
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            import kaldi_io

        _KALDI_IO = kaldi_io
    return _KALDI_IO


def _check_key(key: str, where: str) -> None:
    if not key or any(ch.isspace() for ch in key):
        raise ArchiveError(f"{where}: key {key!r} is empty or contains whitespace")


def write_matrices(
    items: Iterable[tuple[str, np.ndarray]],
    *,
    ark_path: str | os.PathLike,
    scp_path: str | os.PathLike,
) -> int:
    """Write ``(key, matrix)`` pairs to a binary ark and its scp index; return the count.

    Matrices must be 2-D float32 or float64 (written as ``FM``/``DM``). Both
    files are written to temporary names and renamed into place (the ark
    first), and the scp offsets refer to the final, absolute ``ark_path``.
    """
    ark_path = Path(ark_path).absolute()
    scp_path = Path(scp_path)
    kaldi_io = _kaldi_io()
    scp_lines: list[str] = []
    seen: set[str] = set()
    with atomic_write(scp_path, "w") as scp_file:
        with atomic_write(ark_path, "wb") as ark_file:
            for key, matrix in items:
                _check_key(key, str(ark_path))
                if key in seen:
                    raise ArchiveError(f"{ark_path}: duplicate key {key!r}")
                seen.add(key)
                matrix = np.asarray(matrix)
                if matrix.ndim != 2 or matrix.dtype not in (np.float32, np.float64):
                    raise ArchiveError(
                        f"{ark_path}: {key}: expected a 2-D float32/float64 matrix, "
                        f"got shape {matrix.shape} dtype {matrix.dtype}"
                    )
                ark_file.write(f"{key} ".encode())
                scp_lines.append(f"{key} {ark_path}:{ark_file.tell()}\n")
                kaldi_io.write_mat(ark_file, np.ascontiguousarray(matrix))
        scp_file.write("".join(scp_lines))
    return len(scp_lines)


def _read_binary_matrix(handle: BinaryIO, where: str) -> np.ndarray:
    """Read one matrix at the handle's position (after the key)."""
    start = handle.tell()
    mark = handle.read(2)
    if mark != _BINARY_MARK:
        if mark == b"":
            raise ArchiveError(f"{where}: truncated archive: no matrix at byte {start}")
        if mark == b" [":
            handle.seek(start)
            return _read_via_kaldi_io(handle, where)
        raise ArchiveError(f"{where}: no Kaldi matrix at byte {start} (found {mark!r})")
    header = handle.read(3)
    if header.startswith(b"CM"):
        handle.seek(start)
        return _read_via_kaldi_io(handle, where)
    dtype = _HEADER_DTYPES.get(header)
    if dtype is None:
        raise ArchiveError(f"{where}: unsupported matrix type {header!r} at byte {start}")
    dims_bytes = handle.read(_DIMS_DTYPE.itemsize)
    if len(dims_bytes) < _DIMS_DTYPE.itemsize:
        raise ArchiveError(f"{where}: truncated archive: matrix header at byte {start} is cut off")
    dims = np.frombuffer(dims_bytes, dtype=_DIMS_DTYPE)[0]
    if dims["s1"] != 4 or dims["s2"] != 4 or dims["rows"] < 0 or dims["cols"] < 0:
        raise ArchiveError(f"{where}: corrupt matrix header at byte {start}")
    rows, cols = int(dims["rows"]), int(dims["cols"])
    num_bytes = rows * cols * dtype.itemsize
    available = _bytes_left(handle)
    if available is not None and num_bytes > available:
        raise ArchiveError(
            f"{where}: truncated archive: matrix at byte {start} needs {num_bytes} bytes "
            f"of data ({rows}x{cols}), found {available}"
        )
    data = handle.read(num_bytes)
    if len(data) < num_bytes:
        raise ArchiveError(
            f"{where}: truncated archive: matrix at byte {start} needs {num_bytes} bytes "
            f"of data ({rows}x{cols}), found {len(data)}"
        )
    return np.frombuffer(data, dtype=dtype).reshape(rows, cols).astype(dtype.newbyteorder("="))


def _bytes_left(handle: BinaryIO) -> int | None:
    """Bytes between the position and the end of a regular file (None when unknown), so
    that a corrupt header's huge size is refused instead of allocated."""
    try:
        return os.fstat(handle.fileno()).st_size - handle.tell()
    except (OSError, AttributeError, io.UnsupportedOperation):
        return None


def _decode_key(chars: bytes | bytearray, where: str) -> str:
    try:
        return bytes(chars).decode("utf-8")
    except UnicodeDecodeError:
        raise ArchiveError(
            f"{where}: key {bytes(chars[:60])!r} is not UTF-8 text (is this a Kaldi binary ark?)"
        ) from None


def _read_via_kaldi_io(handle: BinaryIO, where: str) -> np.ndarray:
    try:
        return np.asarray(_kaldi_io().read_mat(handle))
    except Exception as err:  # kaldi_io signals format errors with asserts and ValueErrors
        raise ArchiveError(f"{where}: cannot read matrix: {err!r}") from err


def _read_key(handle: BinaryIO, where: str) -> str | None:
    """Read ``key`` followed by one space; None at end of file."""
    chars = bytearray()
    while True:
        char = handle.read(1)
        if not char:
            if chars.strip():
                key = _decode_key(chars, where)
                raise ArchiveError(f"{where}: truncated archive: key {key!r} at end")
            return None
        if char == b" ":
            if chars:
                return _decode_key(chars, where)
            continue
        if char in b"\n\r\t\v\f":
            if chars:
                raise ArchiveError(f"{where}: malformed key {_decode_key(chars, where)!r}")
            continue
        chars += char
        if len(chars) > 4096:
            raise ArchiveError(f"{where}: no key found (is this a Kaldi binary ark?)")


def read_matrices_ark(ark_path: str | os.PathLike) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(key, matrix)`` pairs from an ark file in file order."""
    ark_path = Path(ark_path)
    handle = _open_archive(ark_path, str(ark_path))
    try:
        while True:
            key = _read_key(handle, str(ark_path))
            if key is None:
                return
            yield key, _read_binary_matrix(handle, f"{ark_path} (key {key})")
    finally:
        handle.close()


def _open_archive(path: str | os.PathLike, where: str) -> BinaryIO:
    try:
        return open(path, "rb")  # noqa: SIM115 (the callers close it)
    except OSError as err:
        raise ArchiveError(f"{where}: cannot open archive: {err.strerror or err}") from err
    except ValueError as err:  # a NUL byte in the path
        raise ArchiveError(f"{where}: invalid archive path {os.fspath(path)!r} ({err})") from err


def _parse_rxfile(rxfile: str, where: str = "") -> tuple[str, int | None, tuple[slice, ...] | None]:
    """Split ``path[:offset][[r0:r1(,c0:c1)]]`` into its parts (``where`` starts errors)."""
    rxfile = rxfile.strip()
    prefix = f"{where}: " if where else ""
    match = _RANGE_RE.match(rxfile)
    if match is None or not match.group("path"):
        raise ArchiveError(f"{prefix}malformed rxfilename {rxfile!r}")
    offset = match.group("offset")
    ranges = None
    if match.group("range") is not None:
        parts = []
        for part in match.group("range").split(","):
            bounds = part.split(":")
            try:
                if len(bounds) != 2 or len(part) > 40:
                    raise ValueError(part)
                lo = int(bounds[0]) if bounds[0] else None
                hi = int(bounds[1]) + 1 if bounds[1] else None  # Kaldi ranges are inclusive
            except ValueError as err:
                raise ArchiveError(f"{prefix}malformed range in rxfilename {rxfile!r}") from err
            parts.append(slice(lo, hi))
        if len(parts) > 2:
            raise ArchiveError(f"{prefix}range in rxfilename {rxfile!r} has more than 2 parts")
        ranges = tuple(parts)
    if offset is not None:
        if len(offset) > 18:  # beyond any file size (and int() refuses > 4300 digits)
            raise ArchiveError(f"{prefix}offset {offset[:30]}... in rxfilename is too large")
        offset = int(offset)
    return match.group("path"), offset, ranges


def _read_at(handle: BinaryIO, path: str, offset: int | None, where: str) -> np.ndarray:
    if offset is not None:
        size = os.fstat(handle.fileno()).st_size
        if offset >= size:
            raise ArchiveError(f"{where}: bad offset {offset} beyond the end of {path} ({size} B)")
        handle.seek(offset)
    else:
        handle.seek(0)
    return _read_binary_matrix(handle, where)


def read_matrix(rxfile: str | os.PathLike) -> np.ndarray:
    """Read one matrix from ``path``, ``path:offset`` or ``path:offset[r0:r1]``.

    Ranges follow Kaldi (inclusive row/column bounds, e.g. ``[0:9]`` is 10 rows).
    """
    path, offset, ranges = _parse_rxfile(os.fspath(rxfile))
    with _open_archive(path, path) as handle:
        matrix = _read_at(handle, path, offset, os.fspath(rxfile))
    return np.ascontiguousarray(matrix[ranges]) if ranges else matrix


def read_matrices_scp(scp_path: str | os.PathLike) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(key, matrix)`` for every line of an scp file, in file order.

    Archives are opened once and kept open while the scp is read.
    """
    scp_path = Path(scp_path)
    try:
        raw = scp_path.read_bytes()
    except OSError as err:
        raise ArchiveError(f"{scp_path}: cannot read scp file: {err.strerror}") from err
    try:
        lines = raw.decode("utf-8").split("\n")  # as Kaldi: line numbers are the file's
    except UnicodeDecodeError as err:
        line_number = raw.count(b"\n", 0, err.start) + 1
        raise ArchiveError(f"{scp_path}:{line_number}: not UTF-8 text (byte {err.start})") from None
    handles: dict[str, BinaryIO] = {}
    try:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            fields = line.split(maxsplit=1)
            where = f"{scp_path}:{line_number}"
            if len(fields) != 2:
                raise ArchiveError(f"{where}: expected '<key> <rxfilename>', got {line!r}")
            key, rxfile = fields
            path, offset, ranges = _parse_rxfile(rxfile, where)
            handle = handles.get(path)
            if handle is None:
                handle = handles[path] = _open_archive(path, f"{where}: {path}")
            matrix = _read_at(handle, path, offset, f"{where} ({key})")
            yield key, (np.ascontiguousarray(matrix[ranges]) if ranges else matrix)
    finally:
        for handle in handles.values():
            handle.close()


def write_kaldi_matrix(path: str | os.PathLike, matrix: np.ndarray) -> None:
    """One Kaldi binary double matrix (``DM``) as a file of its own (atomically), as
    ``est-lda``/``compose-transforms`` write ``final.mat``; :func:`read_matrix` reads it."""
    matrix = np.ascontiguousarray(matrix, dtype="<f8")
    rows, cols = matrix.shape
    header = b"\0BDM " + b"\4" + np.int32(rows).tobytes() + b"\4" + np.int32(cols).tobytes()
    with atomic_write(Path(path), "wb") as handle:
        handle.write(header + matrix.tobytes())
