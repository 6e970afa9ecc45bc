"""One agent per storage path: a second one would replay the same journal and write the same
files. Apart from the facade because it is an OS concern (flock on a file in the path, the
holder's pid written in it for the error line), held from initialize() to close()."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import StorageError

LOCK_NAME = ".agent.lock"


class PathLock:
    """The storage path's exclusive lock; closing the descriptor drops it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.fd = -1

    def take(self) -> None:
        """One agent per storage path: a second one would replay and write the same files."""
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StorageError(
                f"storage_path {self.root} is in use by another agent (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = -1
