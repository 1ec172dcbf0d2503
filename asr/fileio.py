"""Atomic file output and up-to-date checks shared by every pipeline step.

Steps write to a temporary file beside the target and ``os.replace`` it into
place, so an interrupted run never leaves a half-written output behind. A temporary whose
bytes equal the existing target's is dropped instead, so the target keeps its modification
time: a rerun step that produces the same output does not make the later steps (whose
up-to-date checks compare modification times) out of date.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> with atomic_write(d / "text") as f:
...     _ = f.write("utt1 HELLO\\n")
>>> (d / "text").read_text()
'utt1 HELLO\\n'
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask now (read from ``/proc/self/status`` where Linux has it, since
    setting and restoring it with ``os.umask`` races with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        umask = os.umask(0o077)
        os.umask(umask)
    return umask


def new_file_mode() -> int:
    """Permissions of a newly created file under the current umask (``0o666 & ~umask``)."""
    return 0o666 & ~current_umask()


def new_dir_mode() -> int:
    """Permissions of a newly created directory under the current umask (``0o777 & ~umask``)."""
    return 0o777 & ~current_umask()


def make_temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A new, uniquely named directory in ``parent`` (to fill, then rename into place) with
    the permissions of any new directory under the umask -- not ``tempfile.mkdtemp``'s
    ``0700``, which a renamed output would keep (unreadable to a service account)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(path, new_dir_mode())
    return path


# errors of writing a file (disk full, over quota, over RLIMIT_FSIZE, read-only file system)
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched; an
    OSError of a full or read-only file system names ``path`` (not the temporary).
    ``mode`` is ``"w"`` (text, UTF-8 unless ``encoding`` is given) or ``"wb"``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "w":
        open_kwargs.setdefault("encoding", "utf-8")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:  # read-only or full directory: name the output, not the temporary
        raise OSError(err.errno, err.strerror, str(path)) from None
    try:
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fchmod(handle.fileno(), new_file_mode())  # not mkstemp's 0600: honour the umask
            os.fsync(handle.fileno())
        replace_if_changed(tmp_name, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        if err.filename is None and err.errno in _WRITE_ERRNOS:
            # a failed write() on the handle names no file: say which output it was
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


def _same_bytes(a: Path, b: Path, chunk_size: int = 1 << 20) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            chunk = fa.read(chunk_size)
            if chunk != fb.read(chunk_size):
                return False
            if not chunk:
                return True


def replace_if_changed(tmp: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Move the finished temporary file ``tmp`` onto ``path``, unless ``path`` is a regular
    file with the same bytes and permissions: then ``tmp`` is removed and ``path`` (with its
    modification time) kept. Returns whether ``path`` was replaced."""
    tmp, path = Path(tmp), Path(path)
    try:
        old, new = path.lstat(), tmp.stat()
        unchanged = (
            stat.S_ISREG(old.st_mode)
            and old.st_size == new.st_size
            and stat.S_IMODE(old.st_mode) == stat.S_IMODE(new.st_mode)
            and _same_bytes(tmp, path)
        )
    except OSError:  # no old file (or an unreadable one): replace it
        unchanged = False
    if unchanged:
        tmp.unlink()
        return False
    os.replace(tmp, path)
    return True


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_write(path, "w") as handle:
        handle.write(text)


def touch(paths: Iterable[str | os.PathLike]) -> None:
    """Set the modification time of each existing path in ``paths`` to now. A step that
    checks :func:`is_up_to_date` calls it on its outputs after it ran: an output rewritten with
    the same bytes keeps its old time (:func:`replace_if_changed`), and would otherwise stay
    older than the input that made the step run, which would then run on every rerun."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.utime(path)


def is_up_to_date(
    outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike]
) -> bool:
    """True when every output exists and is newer than every existing input."""
    out_paths = [Path(p) for p in outputs]
    if not out_paths or not all(p.exists() for p in out_paths):
        return False
    oldest_output = min(p.stat().st_mtime for p in out_paths)
    in_times = [Path(p).stat().st_mtime for p in inputs if Path(p).exists()]
    return not in_times or max(in_times) <= oldest_output
