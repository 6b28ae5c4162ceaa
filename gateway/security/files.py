"""Writing private files (keys, certificates) so that they are never readable by others, even briefly.

Every file is created with ``O_CREAT|O_EXCL|O_NOFOLLOW`` and its final mode from the first instant, written
and fsynced, and only then given its name, so a crash leaves either the old file or the whole new one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def fsync_dir(directory: Path) -> None:
    """Make a rename or link in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_exclusive(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create ``path`` (it must not exist) with ``mode`` and ``data``; raises ``FileExistsError``."""
    fd = os.open(path, _CREATE, mode)  # the mode applies from creation: no window with wider permissions
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; make it exactly what we promise
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` through a temporary file created with ``mode``."""
    tmp = temp_name(path)
    try:
        write_exclusive(tmp, data, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)
