"""Tests for asr.features.io: our ark/scp against kaldi_io (the peer) and Kaldi's byte layout."""

from __future__ import annotations

import contextlib
import io
import struct

import numpy as np
import pytest

from asr.errors import ArchiveError
from asr.features.io import read_matrices_ark, read_matrices_scp, read_matrix, write_matrices

with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    import kaldi_io


def _random_items(seed: int = 0) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    items = []
    for index, num_frames in enumerate([17, 1, 250, 0, 33]):
        dtype = np.float64 if index == 2 else np.float32
        items.append(
            (f"spk{index % 2}-utt{index:03d}", rng.normal(size=(num_frames, 13)).astype(dtype))
        )
    items.append(("cmvn", rng.normal(size=(2, 41))))
    return items


def test_written_archive_is_read_by_kaldi_io_bit_exact(tmp_path):
    items = _random_items()
    count = write_matrices(items, ark_path=tmp_path / "feats.ark", scp_path=tmp_path / "feats.scp")
    assert count == len(items)
    peer_scp = list(kaldi_io.read_mat_scp(str(tmp_path / "feats.scp")))
    peer_ark = list(kaldi_io.read_mat_ark(str(tmp_path / "feats.ark")))
    for peer in (peer_scp, peer_ark):
        assert [key for key, _ in peer] == [key for key, _ in items]
        for (_, ours), (_, theirs) in zip(items, peer, strict=True):
            assert theirs.dtype == ours.dtype
            assert theirs.shape == ours.shape
            assert theirs.tobytes() == ours.tobytes()


def test_scp_entries_are_absolute_ark_offsets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    items = _random_items(1)
    write_matrices(items, ark_path="rel.ark", scp_path="rel.scp")
    lines = (tmp_path / "rel.scp").read_text().splitlines()
    raw = (tmp_path / "rel.ark").read_bytes()
    for (key, _), line in zip(items, lines, strict=True):
        scp_key, rxfile = line.split(" ")
        path, offset = rxfile.rsplit(":", 1)
        assert scp_key == key
        assert path == str(tmp_path / "rel.ark")
        # Kaldi's convention: the offset points just past "<key> ", at the binary mark.
        assert raw[int(offset) - len(key) - 1 : int(offset)] == f"{key} ".encode()
        assert raw[int(offset) : int(offset) + 2] == b"\0B"


def test_byte_layout_matches_kaldi_binary_format(tmp_path):
    matrix = np.array([[1.5, -2.0, 3.25], [0.0, 7.0, -1e-3]], dtype=np.float32)
    write_matrices([("a", matrix)], ark_path=tmp_path / "a.ark", scp_path=tmp_path / "a.scp")
    expected = b"a \0BFM " + struct.pack("<bi", 4, 2) + struct.pack("<bi", 4, 3)
    expected += struct.pack("<6f", *matrix.ravel())
    assert (tmp_path / "a.ark").read_bytes() == expected


def test_reads_archives_written_by_kaldi_io(tmp_path):
    items = _random_items(2)
    offsets = []
    with open(tmp_path / "peer.ark", "wb") as handle:
        for key, matrix in items:
            offsets.append(handle.tell() + len(key) + 1)
            kaldi_io.write_mat(handle, matrix, key=key)
    ours = list(read_matrices_ark(tmp_path / "peer.ark"))
    assert [key for key, _ in ours] == [key for key, _ in items]
    for (_, expected), (_, got), offset in zip(items, ours, offsets, strict=True):
        assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes()
        single = read_matrix(f"{tmp_path / 'peer.ark'}:{offset}")
        assert single.tobytes() == expected.tobytes()
    scp = "".join(
        f"{k} {tmp_path / 'peer.ark'}:{o}\n" for (k, _), o in zip(items, offsets, strict=True)
    )
    (tmp_path / "peer.scp").write_text(scp)
    from_scp = dict(read_matrices_scp(tmp_path / "peer.scp"))
    for key, expected in items:
        assert np.array_equal(from_scp[key], expected)


def test_reads_text_matrices_and_ranges(tmp_path):
    (tmp_path / "t.ark").write_bytes(b"u1  [\n 1 2 3\n 4 5 6 ]\n")
    [(key, matrix)] = list(read_matrices_ark(tmp_path / "t.ark"))
    assert key == "u1"
    assert np.array_equal(matrix, [[1, 2, 3], [4, 5, 6]])
    items = [("x", np.arange(20, dtype=np.float32).reshape(5, 4))]
    write_matrices(items, ark_path=tmp_path / "r.ark", scp_path=tmp_path / "r.scp")
    rxfile = (tmp_path / "r.scp").read_text().split()[1]
    # Kaldi ranges are inclusive: [1:2] is rows 1 and 2, [1:3,0:1] also selects columns.
    assert np.array_equal(read_matrix(rxfile + "[1:2]"), items[0][1][1:3])
    assert np.array_equal(read_matrix(rxfile + "[1:3,0:1]"), items[0][1][1:4, 0:2])
    peer = kaldi_io.read_mat(rxfile)
    assert np.array_equal(read_matrix(rxfile), peer)


def test_missing_files_raise_archive_error(tmp_path):
    with pytest.raises(ArchiveError, match="missing.scp"):
        list(read_matrices_scp(tmp_path / "missing.scp"))
    with pytest.raises(ArchiveError, match="missing.ark"):
        list(read_matrices_ark(tmp_path / "missing.ark"))
    (tmp_path / "f.scp").write_text(f"u1 {tmp_path / 'gone.ark'}:5\n")
    with pytest.raises(ArchiveError, match=r"f.scp:1.*gone.ark"):
        list(read_matrices_scp(tmp_path / "f.scp"))


def test_bad_offsets_and_truncation_raise_archive_error(tmp_path):
    items = [("u1", np.ones((10, 3), np.float32)), ("u2", np.zeros((4, 3), np.float32))]
    write_matrices(items, ark_path=tmp_path / "f.ark", scp_path=tmp_path / "f.scp")
    ark = tmp_path / "f.ark"
    size = ark.stat().st_size
    with pytest.raises(ArchiveError, match="bad offset"):
        read_matrix(f"{ark}:{size + 10}")
    with pytest.raises(ArchiveError, match="no Kaldi matrix at byte 7"):
        read_matrix(f"{ark}:7")
    (tmp_path / "bad.scp").write_text(f"u1 {ark}:3\nu2 {ark}:{size + 1}\n")
    with pytest.raises(ArchiveError, match=r"bad.scp:2"):
        list(read_matrices_scp(tmp_path / "bad.scp"))
    (tmp_path / "short.ark").write_bytes(ark.read_bytes()[:-5])
    with pytest.raises(ArchiveError, match="truncated"):
        list(read_matrices_ark(tmp_path / "short.ark"))
    (tmp_path / "header.ark").write_bytes(ark.read_bytes()[:9])
    with pytest.raises(ArchiveError, match="truncated"):
        list(read_matrices_ark(tmp_path / "header.ark"))
    (tmp_path / "line.scp").write_text("only-a-key\n")
    with pytest.raises(ArchiveError, match="line.scp:1"):
        list(read_matrices_scp(tmp_path / "line.scp"))


def test_write_is_atomic_and_validates(tmp_path):
    ark, scp = tmp_path / "f.ark", tmp_path / "f.scp"
    write_matrices([("old", np.ones((2, 2), np.float32))], ark_path=ark, scp_path=scp)
    before = (ark.read_bytes(), scp.read_text())

    def failing_items():
        yield "new", np.zeros((3, 2), np.float32)
        raise RuntimeError("job died")

    with pytest.raises(RuntimeError):
        write_matrices(failing_items(), ark_path=ark, scp_path=scp)
    assert (ark.read_bytes(), scp.read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.ark", "f.scp"]
    for bad in (
        [("a b", np.ones((1, 1), np.float32))],
        [("a", np.ones(3, np.float32))],
        [("a", np.ones((1, 1), np.int32))],
        [("a", np.ones((1, 1), np.float32)), ("a", np.ones((1, 1), np.float32))],
    ):
        with pytest.raises(ArchiveError):
            write_matrices(bad, ark_path=ark, scp_path=scp)
    assert (ark.read_bytes(), scp.read_text()) == before
