"""Durable file writes: what every on-disk structure of the agent builds on.

A file is written beside its target and fsync'd; a rename makes it visible; an fsync of the
directory makes the rename survive a crash. Readers see the old file or the new one, never half.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def write_durable_tmp(path: Path, data: bytes | Iterable[bytes]) -> Path:
    """Write `data` to a temporary file beside `path` and fsync it; on error nothing is left."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
    try:
        for chunk in [data] if isinstance(data, bytes) else data:
            view = memoryview(chunk)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        os.fsync(fd)
    except OSError:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def atomic_write(path: Path, data: bytes | Iterable[bytes]) -> None:
    """tmp + fsync + rename + fsync(dir): readers see the old file or the new one, never half."""
    tmp = write_durable_tmp(path, data)
    try:
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
