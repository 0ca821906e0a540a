"""File output that is never half-written, never overwrites what medseg did not make.

* **Atomic writes** (:func:`atomic_path`, :func:`atomic_write_bytes`, …): the data
  goes to a temporary file in the *same folder* (so the final rename never crosses
  a file system), is ``fsync``-ed, moved into place with :func:`os.replace`
  (atomic on POSIX), and the folder is ``fsync``-ed so the rename itself survives
  a power cut. A run killed at any moment leaves the old file or the new one.
* **Permissions**: files are created ``0666 & ~umask`` and folders ``0777 & ~umask``
  (0644 / 0755 under the usual umask 022), as ``open``/``mkdir`` would — Python's
  :mod:`tempfile` alone would make them 0600 / 0700, unreadable to a shared group.
* **Markers**: every folder medseg makes as a whole (run, experiment, synthetic
  dataset, cache) holds :data:`MARKER`; :func:`remove_medseg_folder` removes only
  such folders, and only when they hold nothing medseg did not put there.
* **Locks** (:func:`folder_lock`): one process at a time per run or experiment
  folder, the holder's pid in the lock file; a lock left by a dead process is
  taken over, and said so.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fnmatch
import io
import json
import math
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from .errors import MedsegError

#: the file that marks a folder as made by medseg (JSON: {"kind": ...})
MARKER = ".medseg"


# ----------------------------------------------------------------------------- umask
def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (thread-safe)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    return 0o777 & ~current_umask()


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename inside it) to disk; a no-op where unsupported."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


# ----------------------------------------------------------------------------- atomic files
def _renamed(exc: OSError, path: Path) -> OSError:
    """The same OSError, naming ``path`` (the file the user asked for, not a temporary name)."""
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


def _tmp_path(path: Path, suffix: str = "") -> Path:
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    except OSError as exc:
        raise _renamed(exc, path) from None
    os.fchmod(fd, file_mode())
    os.close(fd)
    return Path(name)


def _commit(tmp: Path, path: Path) -> None:
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; fsync and move it onto ``path`` on success.

    On an exception (or Ctrl-C) the temporary file is removed and ``path`` is
    untouched. The temporary name ends in ``.tmp`` + ``suffix``: pass the
    extension for writers that pick the format from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path, suffix)
    try:
        yield tmp
        _commit(tmp, path)
    except OSError as exc:  # disk full, permissions: name the file the user asked for
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if exc.filename in (None, str(tmp), tmp):
            raise _renamed(exc, path) from None
        raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(path: str | os.PathLike, writer: Callable[[Path], None],
                      suffix: str = "") -> None:
    """Call ``writer(tmp)`` on a temporary file (with ``suffix``) and move it to ``path``.

    Use this for libraries that pick the format from the extension (SimpleITK,
    matplotlib, numpy): the temporary name keeps ``suffix``.
    """
    with atomic_path(path, suffix) as tmp:
        writer(tmp)


def make_temp_dir(path: Path, tag: str = "tmp") -> Path:
    """A new empty folder ``.<name>.<random>.<tag>`` next to ``path`` (umask permissions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=f".{tag}", dir=path.parent))
    except OSError as exc:
        raise _renamed(exc, path) from None
    os.chmod(tmp, dir_mode())
    return tmp


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory under a temporary name and rename it to ``path`` on success.

    An existing ``path`` is replaced only after the new one is complete (callers
    check that it may be replaced — see :func:`check_removable` — before building).
    """
    path = Path(path)
    tmp = make_temp_dir(path)
    try:
        yield tmp
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(new: Path, path: Path) -> None:
    """Move the complete folder ``new`` onto ``path``; an old ``path`` is removed after."""
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(new, path)
        fsync_dir(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, path)
        fsync_dir(path.parent)


# ----------------------------------------------------------------------------- markers
def mark_folder(folder: str | os.PathLike, kind: str, **info: Any) -> None:
    """Write the medseg marker (``kind``: run, experiment, synth, cache) into ``folder``."""
    from . import __version__

    atomic_write_text(Path(folder) / MARKER,
                      json.dumps({"kind": kind, "medseg": __version__, **info}, sort_keys=True) + "\n")


def folder_kind(folder: str | os.PathLike) -> str | None:
    """The ``kind`` of a medseg-made folder, or None if it has no (readable) marker."""
    p = Path(folder) / MARKER
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return data.get("kind") if isinstance(data, dict) else None


def _is_cwd_or_parent(folder: Path) -> bool:
    here = Path.cwd().resolve()
    target = folder.resolve()
    return target == here or target in here.parents or target == Path(target.anchor)


def refuse_cwd_or_parent(folder: str | os.PathLike) -> None:
    """Raise :class:`MedsegError` when ``folder`` is the current folder or one of its parents."""
    if _is_cwd_or_parent(Path(folder)):
        raise MedsegError(f"{folder}: is the current folder or one of its parents; refusing to "
                          "replace it even with --force")


def refuse_strangers(folder: str | os.PathLike, kind: str, allowed: Iterable[str]) -> None:
    """Raise :class:`MedsegError` naming the first entry of ``folder`` that matches none of
    the ``allowed`` glob patterns (the marker is always allowed)."""
    f = Path(folder)
    patterns = [MARKER, *allowed]
    strangers = sorted(c.name for c in f.iterdir()
                       if not any(fnmatch.fnmatchcase(c.name, p) for p in patterns))
    if strangers:
        raise MedsegError(f"{f / strangers[0]}: not made by medseg; refusing to replace the "
                          f"{kind} folder {f} holding it (move it away first)")


def check_removable(folder: str | os.PathLike, kind: str, allowed: Iterable[str]) -> None:
    """Raise :class:`MedsegError` unless ``folder`` may be replaced by ``--force``.

    It must be a folder medseg made (its marker says ``kind``), not the current
    folder or one of its parents, and hold only entries matching ``allowed``
    (glob patterns of top-level names; the marker is always allowed).
    """
    f = Path(folder)
    if not f.exists():
        return
    if f.is_symlink() or not f.is_dir():
        raise MedsegError(f"{f}: not a folder; refusing to replace it (remove it yourself)")
    refuse_cwd_or_parent(f)
    found = folder_kind(f)
    if found != kind:
        what = "no medseg marker" if found is None else f"it is a medseg {found} folder"
        raise MedsegError(f"{f}: not a medseg {kind} folder ({what}, {MARKER}); refusing to "
                          "replace it even with --force — remove it yourself or choose another folder")
    refuse_strangers(f, kind, allowed)


def remove_medseg_folder(folder: str | os.PathLike, kind: str, allowed: Iterable[str]) -> None:
    """Remove ``folder`` after :func:`check_removable` (the only way ``--force`` deletes)."""
    check_removable(folder, kind, allowed)
    if Path(folder).exists():
        shutil.rmtree(folder)


# ----------------------------------------------------------------------------- locks
def lock_path(folder: str | os.PathLike) -> Path:
    """The lock file of ``folder``: a hidden sibling ``.<name>.lock`` (works before it exists)."""
    f = Path(folder)
    return f.parent / f".{f.name}.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _acquire(path: Path, folder, what: str) -> int:
    """An fd of ``path`` holding its flock (retrying if the file was replaced meanwhile)."""
    import fcntl

    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, file_mode())
        except OSError as exc:
            raise _renamed(exc, path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise MedsegError(f"{folder}: {what} in use by process {holder.get('pid', '?')} on "
                              f"{holder.get('host', '?')} (lock {path}); wait for it to finish") from None
        # the file may have been unlinked by its last holder between open and flock
        with contextlib.suppress(FileNotFoundError):
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        os.close(fd)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "folder") -> Iterator[Path]:
    """Hold the lock of ``folder`` for the ``with`` block; a second holder is refused.

    The lock is an ``fcntl.flock`` on :func:`lock_path` (the kernel drops it when
    the process dies, even by ``kill -9``); the file holds the holder's pid and
    host for the message. A file left by a dead process is taken over with a note
    on stderr. Raises :class:`MedsegError` naming the folder and the holder's pid.
    """
    path = lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path, folder, what)
    try:
        previous = _read_holder(fd)
        if previous.get("pid") and previous.get("pid") != os.getpid():
            alive = previous.get("host") == socket.gethostname() and _pid_alive(int(previous["pid"]))
            state = "still running but not holding it" if alive else "no longer running"
            print(f"medseg: took over the stale lock {path} of process {previous['pid']} ({state})",
                  file=sys.stderr)
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "what": what}) + "\n"
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, me.encode(), 0)
        except OSError as exc:
            with contextlib.suppress(OSError):
                path.unlink()
            raise _renamed(exc, path) from None
        yield path
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    except BaseException:
        with contextlib.suppress(OSError):
            if _read_holder(fd).get("pid") == os.getpid():
                path.unlink()
        raise
    finally:
        os.close(fd)  # closing drops the flock


# ----------------------------------------------------------------------------- CSV
def csv_cell(value: Any) -> str:
    """One CSV cell: floats at full precision (``repr``), NaN as ``nan``."""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return str(value)


def csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """A CSV document with a header row and one line per mapping in ``rows``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([csv_cell(r[c]) for c in columns])
    return buf.getvalue()


def read_csv_rows(path: str | os.PathLike, columns: Sequence[str], what: str) -> list[dict[str, str]]:
    """The rows of a CSV file medseg wrote with :func:`csv_text` (as text); a file whose
    header is not ``columns`` is a MedsegError naming it as not a medseg ``what`` file."""
    p = Path(path)
    with open(p, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames != list(columns):
            raise MedsegError(f"{p}: not a medseg {what} file (header {reader.fieldnames})")
        return list(reader)
