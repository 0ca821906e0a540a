"""File output that is never half-written, never overwrites what medseg did not make.

* **Atomic writes** (:func:`atomic_path`, :func:`atomic_write_bytes`, …): the data
  goes to a temporary file in the *same folder* (so the final rename never crosses
  a file system), is ``fsync``-ed, moved into place with :func:`os.replace`
  (atomic on POSIX), and the folder is ``fsync``-ed so the rename itself survives
  a power cut. A run killed at any moment leaves the old file or the new one.
  Before the rename the file is *checked* (:func:`check_written`): not empty,
  every byte there (writers that take a file object — PIL, matplotlib, pydicom,
  torch — write to memory first, :func:`atomic_write_from`, and the file must hold
  exactly that many bytes), readable back where cheap (SimpleITK images,
  :func:`atomic_write_image`: SimpleITK does not report every failed write). Any
  failure (a full disk, EFBIG under ``ulimit -f``, EIO, a silent writer) is an
  OSError naming the final file, which still holds its previous content.
* **What may be replaced** (:func:`check_output_file`): never an input of the same
  command (same resolved path or device/inode), never a folder, device, FIFO,
  socket or link; an existing regular file only with ``--force``.
* **Temporary and backup names** (:func:`make_temp_dir`): unique,
  ``.<name>.<random>.<host>-<pid>.<tag>`` — never a name a user may already hold
  (such as ``.<name>.old``); those of a process that is gone are cleaned up
  (:func:`clean_stale_temporaries`, a backup moved back if it is the only copy).
* **Permissions**: files are created ``0666 & ~umask`` and folders ``0777 & ~umask``
  (0644 / 0755 under the usual umask 022), as ``open``/``mkdir`` would — Python's
  :mod:`tempfile` alone would make them 0600 / 0700, unreadable to a shared group.
* **Markers**: every folder medseg makes as a whole (run, experiment, synthetic
  dataset, cache) holds :data:`MARKER`; :func:`remove_medseg_folder` removes only
  such folders, and only when they hold nothing medseg did not put there.
* **Locks** (:func:`folder_lock`): one process at a time per run or experiment
  folder, the holder's pid in the lock file ``.<name>.medseg.lock``; a lock left by
  a dead process is taken over, and said so. A file of that name that is not
  medseg's lock (a user's file, a link, a FIFO) is refused, never truncated or removed.
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


def file_size_limit() -> int | None:
    """The process's file size limit in bytes (``ulimit -f``), None when unlimited."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):  # pragma: no cover - non-POSIX
        return None
    return None if soft == resource.RLIM_INFINITY else int(soft)


def short_write(path: str | os.PathLike, written: int, problem: str = "incomplete") -> OSError:
    """The OSError of a file that a writer left ``problem`` (``written`` bytes) without
    raising: the cause when it can be told — a full disk, the file size limit — else EIO."""
    folder = Path(path).parent
    limit = file_size_limit()
    if limit is not None and written >= limit - 4096:
        return OSError(errno.EFBIG, f"file too large: the file size limit (ulimit -f) is {limit} "
                       f"bytes; the file was cut at {written} bytes", str(path))
    with contextlib.suppress(OSError):
        st = os.statvfs(folder)
        if st.f_bavail * st.f_frsize < 1 << 20 or st.f_favail == 0:
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return OSError(errno.EIO, f"the write failed: the file is {problem} ({written} bytes)", str(path))


def check_written(tmp: str | os.PathLike, path: str | os.PathLike, *, size: int | None = None,
                  allow_empty: bool = False,
                  verify: Callable[[Path], str | None] | None = None) -> None:
    """Raise an OSError naming ``path`` unless the temporary file ``tmp`` is complete.

    Complete: it exists, is not empty (unless ``allow_empty``), holds exactly ``size``
    bytes when that is known, and ``verify(tmp)`` (reading it back) finds no problem —
    it returns None, or a short text saying what is wrong. Writers that do not raise on
    a full disk or a file size limit (SimpleITK) leave such files.
    """
    tmp = Path(tmp)
    try:
        written = os.stat(tmp).st_size
    except OSError as exc:
        raise _renamed(exc, Path(path)) from None
    if size is not None and written != size:
        raise short_write(path, written, f"cut short ({written} of {size} bytes written)")
    if written == 0 and not allow_empty:
        raise short_write(path, written, "empty")
    if verify is not None:
        try:
            problem = verify(tmp)
        except (OSError, EOFError, ValueError, RuntimeError) as exc:
            problem = f"not readable back ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})"
        if problem:
            raise short_write(path, written, problem)


def refuse_special(path: str | os.PathLike) -> None:
    """Raise :class:`MedsegError` when ``path`` exists and is neither a regular file nor a
    symbolic link (a folder, a device node, a FIFO, a socket): medseg never replaces one."""
    import stat

    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _renamed(exc, Path(path)) from None
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
        return
    raise MedsegError(f"{path}: exists and is {special_kind(mode)}; refusing to replace it even "
                      "with --force (remove it yourself or choose another name)")


def special_kind(mode: int) -> str:
    """What a file that is not a regular file is, in words (from its ``st_mode``)."""
    import stat

    for test, words in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                        (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return words
    return "not a regular file"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "", *, size: int | None = None,
                allow_empty: bool = False,
                verify: Callable[[Path], str | None] | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; check, fsync and move it onto ``path`` on success.

    On an exception (or Ctrl-C) the temporary file is removed and ``path`` is
    untouched. The temporary name ends in ``.tmp`` + ``suffix``: pass the
    extension for writers that pick the format from it. Before the rename the file
    is checked (:func:`check_written`: not empty, ``size`` bytes when given,
    ``verify``), so a writer that fails silently is an OSError naming ``path``.
    A ``path`` that is a folder, device, FIFO or socket is refused (:func:`refuse_special`).
    """
    path = Path(path)
    refuse_special(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path, suffix)
    try:
        yield tmp
        check_written(tmp, path, size=size, allow_empty=allow_empty, verify=verify)
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


def atomic_write_bytes(path: str | os.PathLike, data: bytes | bytearray | memoryview) -> None:
    """Write ``data`` to ``path`` atomically; the file is checked to hold every byte."""
    data = memoryview(data)
    with atomic_path(path, size=data.nbytes, allow_empty=data.nbytes == 0) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(path: str | os.PathLike, writer: Callable[[Path], None],
                      suffix: str = "", *, verify: Callable[[Path], str | None] | None = None,
                      allow_empty: bool = False) -> None:
    """Call ``writer(tmp)`` on a temporary file (with ``suffix``) and move it to ``path``.

    Use this for libraries that pick the format from the extension (SimpleITK,
    matplotlib, numpy): the temporary name keeps ``suffix``. The file must not be
    empty and pass ``verify`` (see :func:`check_written`).
    """
    with atomic_path(path, suffix, verify=verify, allow_empty=allow_empty) as tmp:
        writer(tmp)


def atomic_write_from(path: str | os.PathLike, writer: Callable[[Any], None]) -> None:
    """Call ``writer(buffer)`` on an in-memory binary buffer, then write it with
    :func:`atomic_write_bytes` (checked to the byte): for writers that take a file object
    (PIL, matplotlib, pydicom, torch)."""
    buffer = io.BytesIO()
    writer(buffer)
    atomic_write_bytes(path, buffer.getbuffer())


# ----------------------------------------------------------------------------- images
def readable_image(expected: Any) -> Any:
    """A ``verify`` for :func:`check_written`: the written image file reads back
    whole (a gzip stream to its end, CRC and length checked; other formats through
    SimpleITK) and has the size of ``expected`` (a SimpleITK image). SimpleITK does not
    report every failed write (a full disk, a file size limit): this finds them."""

    def verify(tmp: Path) -> str | None:
        import SimpleITK as sitk

        name = tmp.name.lower()
        if name.endswith(".gz"):
            import gzip
            import zlib

            try:
                with gzip.open(tmp, "rb") as fh:
                    while fh.read(1 << 22):
                        pass
            except (EOFError, OSError, zlib.error) as exc:
                return f"not a complete gzip stream ({type(exc).__name__})"
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(tmp))
        if name.endswith((".nii", ".nii.gz")):
            reader.ReadImageInformation()
            size = reader.GetSize()
        else:
            size = reader.Execute().GetSize()
        if tuple(size) != tuple(expected.GetSize()):
            return f"reads back as size {tuple(size)}, not {tuple(expected.GetSize())}"
        if name.endswith(".nii"):  # uncompressed: every voxel's bytes must be there
            need = 352 + expected.GetNumberOfPixels() * expected.GetSizeOfPixelComponent() * \
                expected.GetNumberOfComponentsPerPixel()
            if tmp.stat().st_size < need:
                return f"cut short ({tmp.stat().st_size} of at least {need} bytes)"
        return None

    return verify


def atomic_write_image(path: str | os.PathLike, img: Any, compress: bool = True, *,
                       suffix: str | None = None) -> None:
    """A SimpleITK image into ``path`` (atomic, checked: :func:`readable_image`; ``suffix``
    the extension SimpleITK picks the format from, default ``path``'s own); a failure
    SimpleITK raises is an OSError naming ``path``."""
    import SimpleITK as sitk

    name = Path(path).name.lower()
    if suffix is None:
        suffix = ".nii.gz" if name.endswith(".nii.gz") else Path(path).suffix

    def write(tmp: Path) -> None:
        try:
            sitk.WriteImage(img, str(tmp), compress)
        except RuntimeError as exc:
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            why = next((ln for ln in reversed(lines) if "rror" in ln or "annot" in ln), lines[-1] if lines else "")
            raise OSError(errno.EIO, f"SimpleITK could not write it ({why[:160]})", str(path)) from None

    atomic_write_with(path, write, suffix=suffix, verify=readable_image(img))



def _host_tag() -> str:
    import hashlib

    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:4]


def make_temp_dir(path: Path, tag: str = "tmp") -> Path:
    """A new empty folder ``.<name>.<random>.<host>-<pid>.<tag>`` next to ``path`` (umask
    permissions): unique, and telling which process made it (:func:`stale_temporaries`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.",
                                    suffix=f".{_host_tag()}-{os.getpid()}.{tag}", dir=path.parent))
    except OSError as exc:
        raise _renamed(exc, path) from None
    os.chmod(tmp, dir_mode())
    return tmp


def stale_temporaries(path: str | os.PathLike, tag: str) -> list[Path]:
    """The folders :func:`make_temp_dir` made for ``path`` with ``tag`` whose process is gone
    (same host, pid no longer running): left by a killed medseg. Only medseg's own naming
    (``.<name>.<8 random>.<host>-<pid>.<tag>``, a real folder) — never a user's
    ``.<name>.old`` or anything else."""
    import re

    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.([0-9a-f]{{4}})-(\d+)\.{re.escape(tag)}$")
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            m = pattern.match(entry.name)
            if not m or not entry.is_dir(follow_symlinks=False) or m.group(1) != _host_tag():
                continue
            pid = int(m.group(2))
            if pid != os.getpid() and not _pid_alive(pid):
                found.append(Path(entry.path))
    return sorted(found)


def clean_stale_temporaries(path: str | os.PathLike) -> None:
    """Remove what a killed medseg left next to ``path``: its staging folders (``.tmp``)
    and, when ``path`` exists, its backups (``.old``); with ``path`` gone a backup is the
    previous folder itself (killed between the two renames of :func:`replace_dir`) and is
    moved back instead."""
    path = Path(path)
    for tmp in stale_temporaries(path, "tmp"):
        shutil.rmtree(tmp, ignore_errors=True)
    for old in stale_temporaries(path, "old"):
        if not os.path.lexists(path):
            with contextlib.suppress(OSError):
                os.replace(old, path)
                fsync_dir(path.parent)
                continue
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory under a temporary name and rename it to ``path`` on success.

    An existing ``path`` is replaced only after the new one is complete (callers
    check that it may be replaced — see :func:`check_removable` — before building);
    it must be a folder (:func:`replace_dir`).
    """
    path = Path(path)
    clean_stale_temporaries(path)
    tmp = make_temp_dir(path)
    try:
        yield tmp
        replace_dir(tmp, path)
    except OSError as exc:  # name the file the user will look for, not the staging folder's
        shutil.rmtree(tmp, ignore_errors=True)
        inside = str(path) if exc.filename is None else _inside(exc.filename, tmp, path)
        if inside is not None:
            raise OSError(exc.errno, exc.strerror or str(exc), inside) from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _inside(filename: Any, tmp: Path, path: Path) -> str | None:
    """``filename`` under ``tmp`` as the same file under ``path`` (None: not under ``tmp``)."""
    if filename is None:
        return None
    name = os.fspath(filename)
    if isinstance(name, bytes):
        return None
    root = str(tmp)
    if name == root or name.startswith(root + os.sep):
        return str(path) + name[len(root):]
    return None


def replace_dir(new: Path, path: Path) -> None:
    """Move the complete folder ``new`` onto ``path``; an old ``path`` is removed after.

    The old folder is first renamed to a unique backup name (:func:`make_temp_dir`, tag
    ``old``: never a name a user may hold) and removed once the new one is in place;
    a ``path`` that is not a folder (a file, a link, a device) is refused.
    """
    import stat

    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        os.replace(new, path)
        fsync_dir(path.parent)
        return
    if not stat.S_ISDIR(mode):
        raise MedsegError(f"{path}: exists and is {special_kind(mode) if not stat.S_ISREG(mode) else 'a file'}, "
                          "not a folder medseg made; refusing to replace it (remove it yourself)")
    old = make_temp_dir(path, "old")
    os.replace(path, old)  # onto the empty placeholder: atomic, the name is ours alone
    try:
        os.replace(new, path)
    except BaseException:
        os.replace(old, path)
        raise
    fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- what may be replaced
def _identity(path: str | os.PathLike) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` are the same file: the same resolved path, or the same device
    and inode (a hard link, a symlink, another spelling of the path)."""
    with contextlib.suppress(OSError, RuntimeError, ValueError):
        if Path(a).resolve() == Path(b).resolve():
            return True
    ia = _identity(a)
    return ia is not None and ia == _identity(b)


def check_output_file(path: str | os.PathLike, *, force: bool,
                      inputs: Iterable[str | os.PathLike | tuple[str | os.PathLike, str]] = (),
                      what: str = "output") -> None:
    """The one rule for a file a command is about to write (before any work).

    Refused, even with ``--force`` (:class:`MedsegError` naming ``path``): an input
    of the same command (``inputs``: paths, or ``(path, "the config file")`` pairs) (same resolved path or device/inode, also through a
    link); a folder, a device node, a FIFO or a socket; a symbolic link (medseg
    would replace the link, not its target). Refused without ``--force``: any other
    existing file.
    """
    import stat

    p = Path(path)
    for source in inputs:
        source, label = source if isinstance(source, tuple) else (source, "an input")
        if same_file(p, source):
            shown = "" if os.path.abspath(p) == os.path.abspath(source) else f" ({source})"
            raise MedsegError(f"{p}: is {label} read by this command{shown}; refusing to "
                              f"overwrite it with the {what}, even with --force")
    try:
        mode = os.lstat(p).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _renamed(exc, p) from None
    if stat.S_ISDIR(mode):
        raise MedsegError(f"{p}: exists and is a folder; give a file name for the {what}")
    if stat.S_ISLNK(mode):
        raise MedsegError(f"{p}: exists and is a symbolic link; refusing to replace it "
                          f"{'even with --force ' if force else ''}(remove it yourself or choose another name)")
    if not stat.S_ISREG(mode):
        raise MedsegError(f"{p}: exists and is {special_kind(mode)}; refusing to replace it "
                          "even with --force (remove it yourself or choose another name)")
    if not force:
        raise MedsegError(f"{p}: exists (use --force to replace it)")


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


#: what medseg writes inside the sub-folders of the folders it makes, by kind: sub-folder
#: pattern → file name patterns (anywhere below it); ``--force`` refuses a folder holding
#: anything else there too (a user's notes in ``run/checkpoints/``, a text file among the
#: synthetic scans), not only at its top level
NESTED = {
    "run": {"checkpoints": ("*.ckpt", ".*.ckpt.*.tmp*"),
            "logs": ("metrics.csv", "hparams.yaml", "events.out.tfevents.*", ".*.tmp*")},
    "synth": {"*": ("*.dcm", "*.nii.gz", "*.png", "*.meta", "*.json")},
}


def refuse_strangers(folder: str | os.PathLike, kind: str, allowed: Iterable[str],
                     nested: Mapping[str, Sequence[str]] | None = None) -> None:
    """Raise :class:`MedsegError` naming the first entry of ``folder`` that matches none of
    the ``allowed`` glob patterns (the marker is always allowed), or — with ``nested``
    (sub-folder pattern → file patterns) — the first file below such a sub-folder that
    matches none of its patterns."""
    f = Path(folder)
    patterns = [MARKER, *allowed]
    strangers = sorted(c.name for c in f.iterdir()
                       if not any(fnmatch.fnmatchcase(c.name, p) for p in patterns))
    for sub in sorted(f.iterdir()) if nested and not strangers else ():
        files = next((v for k, v in nested.items() if fnmatch.fnmatchcase(sub.name, k)), None)
        if files is None or sub.is_symlink() or not sub.is_dir():
            continue
        for p in sorted(sub.rglob("*")):
            if (p.is_symlink() or not p.is_dir()) and not any(fnmatch.fnmatchcase(p.name, g) for g in files):
                strangers = [str(p.relative_to(f))]
                break
        if strangers:
            break
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
    refuse_strangers(f, kind, allowed, NESTED.get(kind))


def remove_medseg_folder(folder: str | os.PathLike, kind: str, allowed: Iterable[str]) -> None:
    """Remove ``folder`` after :func:`check_removable` (the only way ``--force`` deletes)."""
    check_removable(folder, kind, allowed)
    if Path(folder).exists():
        shutil.rmtree(folder)


# ----------------------------------------------------------------------------- locks
#: the ending of medseg's lock files (distinct from a user's ``.<name>.lock``)
LOCK_SUFFIX = ".medseg.lock"


def lock_path(folder: str | os.PathLike) -> Path:
    """The lock file of ``folder``: a hidden sibling ``.<name>.medseg.lock`` (works before it
    exists)."""
    f = Path(folder)
    return f.parent / f".{f.name}{LOCK_SUFFIX}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_medseg_lock(fd: int) -> bool:
    """Whether the open file is a medseg lock: empty (being created) or medseg's JSON
    (``{"pid": …, "host": …}``) — a user's file of the same name is neither."""
    try:
        raw = os.pread(fd, 4097, 0)
    except OSError:
        return False
    if not raw:
        return True
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("pid"), int) and "host" in data


def open_lock_file(path: Path) -> int:
    """An fd of the lock file ``path`` (created if missing), refusing anything that is not
    medseg's: a link, a folder, a device, a FIFO, or a file of someone else's content —
    those are never opened for writing, truncated or removed."""
    import stat

    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise _renamed(exc, path) from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise MedsegError(f"{path}: exists and is {special_kind(st.st_mode)}, not a medseg lock "
                          "file; refusing to use or replace it (move it away)")
    try:
        fd = os.open(path, flags, file_mode())
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise MedsegError(f"{path}: is a symbolic link, not a medseg lock file; refusing to "
                              "use or replace it (move it away)") from None
        raise _renamed(exc, path) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode) or not _is_medseg_lock(fd):
        os.close(fd)
        raise MedsegError(f"{path}: not a medseg lock file (someone else's file of that name); "
                          "refusing to use, truncate or remove it (move it away)")
    return fd


def _acquire(path: Path, folder, what: str) -> int:
    """An fd of ``path`` holding its flock (retrying if the file was replaced meanwhile)."""
    import fcntl

    while True:
        fd = open_lock_file(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise MedsegError(f"{folder}: {what} in use by process {holder.get('pid', '?')} on "
                              f"{holder.get('host', '?')} (lock {path}); wait for it to finish") from None
        # the file may have been unlinked (or replaced) by its last holder between open and flock
        with contextlib.suppress(FileNotFoundError):
            if os.fstat(fd).st_ino == os.lstat(path).st_ino:
                return fd
        os.close(fd)


def _release(path: Path, fd: int) -> None:
    """Remove the lock file ``path`` if it is still the one ``fd`` holds, with our pid."""
    with contextlib.suppress(OSError):
        if os.fstat(fd).st_ino == os.lstat(path).st_ino and _read_holder(fd).get("pid") == os.getpid():
            path.unlink()


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "folder") -> Iterator[Path]:
    """Hold the lock of ``folder`` for the ``with`` block; a second holder is refused.

    The lock is an ``fcntl.flock`` on :func:`lock_path` (the kernel drops it when
    the process dies, even by ``kill -9``); the file holds the holder's pid and
    host for the message. A file left by a dead process is taken over with a note
    on stderr. Raises :class:`MedsegError` naming the folder and the holder's pid. A
    file of that name that is not medseg's lock is refused, never written or removed.
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
    finally:
        _release(path, fd)
        os.close(fd)  # closing drops the flock


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Wait for and hold an exclusive lock on the medseg lock file ``path`` (created if
    missing and left in place for the next writer; a file of that name that is not
    medseg's is refused, see :func:`open_lock_file`)."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_lock_file(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "what": "writer"}) + "\n"
        with contextlib.suppress(OSError):  # only a note for whoever reads it
            os.ftruncate(fd, 0)
            os.pwrite(fd, me.encode(), 0)
        yield path
    finally:
        os.close(fd)


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
