"""User-facing errors and the CLI's error boundary.

Anything the user can fix (a bad path, a malformed file, a wrong config key, a
full disk) is raised as :class:`MedsegError` with a one-line message that names
the file or key and the problem. The CLI prints it as ``medseg: error: <message>``
and exits with status 2, without a traceback. Programming errors stay ordinary
exceptions and keep their traceback.

:func:`expected_failure` is the boundary's second half: it turns the library
errors a user's file or machine can cause (``OSError`` — disk full, permission
denied, … —, YAML/JSON/pickle/DICOM/image decoding errors, PIL's decompression-bomb
guard) into that one line; anything else returns None and is re-raised.
"""

from __future__ import annotations

import errno
import os


class MedsegError(Exception):
    """An error caused by user input; its message is shown as one line."""

    exit_code = 2

    def __init__(self, message: str):
        # Keep the message on one line whatever the caller passed in.
        super().__init__(" ".join(str(message).split()))


class ConfigError(MedsegError):
    """A config file or a ``key=value`` override is invalid."""


class DataError(MedsegError):
    """A dataset file or folder is missing, unreadable or inconsistent."""


class CheckpointError(MedsegError):
    """A checkpoint is missing, unsafe or incompatible."""


def _one_line(text: str, limit: int = 200) -> str:
    first = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    return first[:limit]


def describe_os_error(exc: OSError) -> str:
    """``<file>: <problem>`` for an OSError (both files of a failed rename)."""
    why = exc.strerror or _one_line(exc) or errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    if exc.errno == errno.ENOSPC:
        why = "no space left on device (the disk is full)"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        why = "permission denied"
    elif exc.errno == errno.EROFS:
        why = "read-only file system"
    where = [os.fspath(f) for f in (exc.filename, exc.filename2) if f is not None]
    return f"{' -> '.join(map(str, where))}: {why}" if where else why


def _decoding_errors() -> tuple[type[BaseException], ...]:
    """Library exceptions raised by malformed files (imported lazily, where installed)."""
    import json
    import pickle

    kinds: list[type[BaseException]] = [json.JSONDecodeError, pickle.UnpicklingError,
                                        UnicodeDecodeError, EOFError]
    try:
        import yaml

        kinds.append(yaml.YAMLError)
    except ImportError:  # pragma: no cover
        pass
    try:
        from pydicom.errors import InvalidDicomError

        kinds.append(InvalidDicomError)
    except ImportError:  # pragma: no cover
        pass
    try:
        from PIL import Image, UnidentifiedImageError

        kinds += [UnidentifiedImageError, Image.DecompressionBombError]
    except ImportError:  # pragma: no cover
        pass
    return tuple(kinds)


def expected_failure(exc: BaseException) -> str | None:
    """The one-line message for an expected failure, or None for a genuine bug."""
    if isinstance(exc, MedsegError):
        return str(exc)
    if isinstance(exc, OSError):
        return describe_os_error(exc)
    if isinstance(exc, _decoding_errors()):
        where = getattr(getattr(exc, "problem_mark", None), "name", None)
        prefix = f"{where}: " if where and not str(where).startswith("<") else ""
        return f"{prefix}unreadable file ({type(exc).__name__}: {_one_line(exc)})"
    return None
