"""Alignments on disk: Kaldi int-vector archives (``ali.ark`` + ``ali.scp``), a text form
(``ali.txt``) and the list of utterances that could not be aligned (``failed.txt``).

An alignment is one transition-id per frame, ``(num_frames,) int32``. The archive uses
Kaldi's binary int-vector format (``<utt_id> \\0B \\4 <int32 size>`` then ``\\4 <int32>`` per
element), so ``kaldi_io.read_vec_int_ark`` and Kaldi's ``copy-int-vector``/``ali-to-pdf`` read
it; ``ali.scp`` holds ``<utt_id> <absolute ark path>:<offset>`` lines. ``ali.txt`` has one
line ``<utt_id> tid tid ...`` per utterance; ``failed.txt`` has ``<utt_id> <reason>``.

>>> import tempfile, numpy as np
>>> d = tempfile.mkdtemp()
>>> write_alignments({"utt1": np.array([2, 2, 3])}, d)
1
>>> {k: v.tolist() for k, v in read_alignments(d).items()}
{'utt1': [2, 2, 3]}
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from asr.errors import ArchiveError
from asr.fileio import atomic_write, atomic_write_text

__all__ = [
    "ALI_ARK",
    "ALI_SCP",
    "ALI_TXT",
    "FAILED_TXT",
    "read_alignments",
    "read_alignments_ark",
    "read_alignments_scp",
    "read_alignments_text",
    "read_failed",
    "write_alignments",
    "write_failed",
]

ALI_ARK, ALI_SCP, ALI_TXT, FAILED_TXT = "ali.ark", "ali.scp", "ali.txt", "failed.txt"
_ELEM = np.dtype([("size", "i1"), ("value", "<i4")])


def _encode(utt_id: str, alignment: np.ndarray) -> bytes:
    if not utt_id or any(c.isspace() for c in utt_id):
        raise ArchiveError(f"invalid utterance id {utt_id!r} (empty or with whitespace)")
    values = np.asarray(alignment)
    if values.ndim != 1 or (values.size and not np.issubdtype(values.dtype, np.integer)):
        raise ArchiveError(f"{utt_id}: alignment must be a 1-d integer array")
    body = np.empty(len(values), dtype=_ELEM)
    body["size"] = 4
    body["value"] = values
    header = utt_id.encode() + b" \0B\4" + np.array([len(values)], "<i4").tobytes()
    return header + body.tobytes()


def write_alignments(
    alignments: Mapping[str, np.ndarray], ali_dir: str | os.PathLike, *, sort: bool = True
) -> int:
    """Write ``ali.ark``, ``ali.scp`` and ``ali.txt`` under ``ali_dir`` (each atomically);
    utterances in sorted order unless ``sort=False``. Returns the number written."""
    ali_dir = Path(ali_dir)
    ali_dir.mkdir(parents=True, exist_ok=True)
    ark_path = (ali_dir / ALI_ARK).resolve()
    keys = sorted(alignments) if sort else list(alignments)
    scp_lines, txt_lines = [], []
    with atomic_write(ark_path, "wb") as ark:
        offset = 0
        for utt_id in keys:
            record = _encode(utt_id, alignments[utt_id])
            data_offset = offset + len(utt_id.encode()) + 1
            ark.write(record)
            offset += len(record)
            scp_lines.append(f"{utt_id} {ark_path}:{data_offset}\n")
            values = np.asarray(alignments[utt_id]).tolist()
            txt_lines.append(" ".join([utt_id, *map(str, values)]) + "\n")
    atomic_write_text(ali_dir / ALI_SCP, "".join(scp_lines))
    atomic_write_text(ali_dir / ALI_TXT, "".join(txt_lines))
    return len(keys)


def _read_vector(data: bytes, pos: int, where: str) -> tuple[np.ndarray, int]:
    """Parse a binary int vector at ``pos`` (just after the key's space); returns the vector and
    the position after it."""
    if data[pos : pos + 3] != b"\0B\4":
        raise ArchiveError(f"{where}: not a binary int32 vector (Kaldi '\\0B\\4' header)")
    if pos + 7 > len(data):
        raise ArchiveError(f"{where}: truncated vector header")
    size = int(np.frombuffer(data, "<i4", 1, pos + 3)[0])
    end = pos + 7 + 5 * size
    if size < 0 or end > len(data):
        raise ArchiveError(f"{where}: truncated vector of {size} elements")
    body = np.frombuffer(data, _ELEM, size, pos + 7)
    if size and np.any(body["size"] != 4):
        raise ArchiveError(f"{where}: vector elements are not int32")
    return body["value"].astype(np.int32), end


def read_alignments_ark(ark_path: str | os.PathLike) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(utt_id, alignment)`` from a binary int-vector archive."""
    ark_path = Path(ark_path)
    try:
        data = ark_path.read_bytes()
    except OSError as err:
        raise ArchiveError(f"{ark_path}: cannot read archive: {err.strerror}") from err
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            raise ArchiveError(f"{ark_path}: truncated key at byte {pos}")
        utt_id = data[pos:space].decode()
        values, pos = _read_vector(data, space + 1, f"{ark_path}:{utt_id}")
        yield utt_id, values


def read_alignments_scp(scp_path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``utt_id -> alignment`` for every line ``<utt_id> <ark>:<offset>`` of an scp file."""
    scp_path = Path(scp_path)
    try:
        lines = scp_path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise ArchiveError(f"{scp_path}: cannot read scp file: {err.strerror}") from err
    cache: dict[str, bytes] = {}
    out: dict[str, np.ndarray] = {}
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{scp_path}:{line_no}"
        fields = line.split(maxsplit=1)
        path, sep, offset = fields[-1].rpartition(":") if len(fields) == 2 else ("", "", "")
        if not sep or not offset.isdigit():
            raise ArchiveError(f"{where}: expected '<utt_id> <ark>:<offset>', got {line!r}")
        if path not in cache:
            try:
                cache[path] = Path(path).read_bytes()
            except OSError as err:
                raise ArchiveError(f"{where}: cannot read {path}: {err.strerror}") from err
        out[fields[0]] = _read_vector(cache[path], int(offset), where)[0]
    return out


def read_alignments_text(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``utt_id -> alignment`` from ``ali.txt`` lines ``<utt_id> tid tid ...``."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise ArchiveError(f"{path}: cannot read alignments: {err.strerror}") from err
    out: dict[str, np.ndarray] = {}
    for line_no, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        try:
            out[fields[0]] = np.array([int(v) for v in fields[1:]], dtype=np.int32)
        except ValueError:
            raise ArchiveError(f"{path}:{line_no}: expected integers after the utt_id") from None
    return out


def read_alignments(ali_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """Alignments of an alignment dir (``ali.scp``, else ``ali.ark``, else ``ali.txt``)."""
    ali_dir = Path(ali_dir)
    if (ali_dir / ALI_SCP).is_file():
        return read_alignments_scp(ali_dir / ALI_SCP)
    if (ali_dir / ALI_ARK).is_file():
        return dict(read_alignments_ark(ali_dir / ALI_ARK))
    if (ali_dir / ALI_TXT).is_file():
        return read_alignments_text(ali_dir / ALI_TXT)
    raise ArchiveError(f"{ali_dir}: no {ALI_SCP}, {ALI_ARK} or {ALI_TXT}; is it an alignment dir?")


def write_failed(failed: Mapping[str, str], ali_dir: str | os.PathLike) -> None:
    """Write ``failed.txt`` (``<utt_id> <reason>`` per line, sorted); removed when empty."""
    path = Path(ali_dir) / FAILED_TXT
    if not failed:
        path.unlink(missing_ok=True)
        return
    lines = [f"{utt_id} {' '.join(failed[utt_id].split())}\n" for utt_id in sorted(failed)]
    atomic_write_text(path, "".join(lines))


def read_failed(ali_dir: str | os.PathLike) -> dict[str, str]:
    """``utt_id -> reason`` from ``failed.txt`` (empty when there is none)."""
    path = Path(ali_dir) / FAILED_TXT
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        utt_id, _, reason = line.partition(" ")
        if utt_id:
            out[utt_id] = reason
    return out
