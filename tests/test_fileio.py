"""asr.fileio: atomic writes leave either the old or the new file, with normal permissions."""

from __future__ import annotations

import os
import stat

import pytest

from asr.fileio import (
    atomic_write,
    atomic_write_text,
    is_up_to_date,
    replace_if_changed,
    touch,
)


def test_atomic_write_replaces_and_uses_umask_permissions(tmp_path):
    target = tmp_path / "sub" / "text"
    atomic_write_text(target, "a\n")
    atomic_write_text(target, "b\n")
    assert target.read_text() == "b\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["text"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "model.bin"
    with atomic_write(target, "wb") as handle:
        handle.write(b"old")

    class Boom(Exception):
        pass

    with pytest.raises(Boom), atomic_write(target, "wb") as handle:
        handle.write(b"half")
        raise Boom
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]
    with pytest.raises(ValueError), atomic_write(target, "a"):
        pass


def _age(path, seconds=100.0):
    """Set ``path``'s times ``seconds`` into the past (a later write then shows as newer)."""
    old = path.stat().st_mtime - seconds
    os.utime(path, (old, old))
    return path.stat().st_mtime_ns


def test_rewriting_the_same_bytes_keeps_the_file_and_its_mtime(tmp_path):
    target = tmp_path / "lm.arpa"
    atomic_write_text(target, "same\n")
    before = _age(target)
    inode = target.stat().st_ino
    atomic_write_text(target, "same\n")
    assert target.stat().st_mtime_ns == before and target.stat().st_ino == inode
    with atomic_write(target, "wb") as handle:
        handle.write(b"same\n")
    assert target.stat().st_mtime_ns == before
    assert [p.name for p in tmp_path.iterdir()] == ["lm.arpa"]  # no temporary left
    # different bytes (same length too) replace it, with a new mtime
    atomic_write_text(target, "diff\n")
    assert target.read_text() == "diff\n" and target.stat().st_mtime_ns > before
    assert [p.name for p in tmp_path.iterdir()] == ["lm.arpa"]


def test_replace_if_changed_replaces_other_modes_and_non_files(tmp_path):
    target, tmp = tmp_path / "G.fst", tmp_path / ".G.fst.tmp"
    target.write_bytes(b"x")
    os.chmod(target, 0o600)
    tmp.write_bytes(b"x")
    os.chmod(tmp, 0o644)
    assert replace_if_changed(tmp, target) is True  # same bytes, other permissions
    assert stat.S_IMODE(target.stat().st_mode) == 0o644 and not tmp.exists()
    tmp.write_bytes(b"x")
    os.chmod(tmp, 0o644)
    assert replace_if_changed(tmp, target) is False and not tmp.exists()
    link = tmp_path / "link"
    link.symlink_to(target)
    tmp.write_bytes(b"x")
    os.chmod(tmp, 0o644)
    assert replace_if_changed(tmp, link) is True  # a link is replaced by a file, not kept
    assert link.is_file() and not link.is_symlink()
    new = tmp_path / "new"
    tmp.write_bytes(b"y")
    assert replace_if_changed(tmp, new) is True and new.read_bytes() == b"y"


def test_touch_makes_kept_outputs_newer_than_the_input_that_made_a_step_run(tmp_path):
    out, inp = tmp_path / "out", tmp_path / "in"
    atomic_write_text(out, "same\n")
    _age(out)
    inp.write_text("input\n")
    assert not is_up_to_date([out], [inp])
    atomic_write_text(out, "same\n")  # the step ran; its output kept its old time
    assert not is_up_to_date([out], [inp])
    touch([out, tmp_path / "missing"])
    assert is_up_to_date([out], [inp])


def test_is_up_to_date(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    assert not is_up_to_date([out], [src])
    src.write_text("x")
    out.write_text("y")
    os.utime(src, (1_000, 1_000))
    os.utime(out, (2_000, 2_000))
    assert is_up_to_date([out], [src])
    os.utime(src, (3_000, 3_000))
    assert not is_up_to_date([out], [src])


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_new_files_and_temp_dirs_follow_the_umask_set_after_import(tmp_path, umask):
    """The umask of the moment, not the one at import time; directories not mkdtemp's 0700."""
    from asr.fileio import current_umask, make_temp_dir

    old = os.umask(umask)
    try:
        assert current_umask() == umask
        atomic_write_text(tmp_path / "text", "a\n")
        made = make_temp_dir(tmp_path, prefix=".out.")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "text").stat().st_mode) == 0o666 & ~umask
    assert made.is_dir() and made.name.startswith(".out.")
    assert stat.S_IMODE(made.stat().st_mode) == 0o777 & ~umask
