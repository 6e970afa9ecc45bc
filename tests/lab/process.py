"""Child processes the lab starts (QEMU, git daemon) must not outlive a test run."""

from __future__ import annotations

import ctypes
import signal
import threading
from collections.abc import Callable


def _set_pdeathsig() -> None:
    """Make the child die with the Python process that started it (tests leave no QEMU)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def child_setup(persist: bool) -> Callable[[], None] | None:
    """preexec_fn for a lab child: PDEATHSIG unless it must persist (the CLI's `up`).

    PDEATHSIG fires when the starting *thread* ends, so it is used from the main thread only;
    a child started from a worker thread (e.g. a ThreadPoolExecutor) is still stopped by the
    atexit hooks in vm.py and gitremote.py.
    """
    if persist or threading.current_thread() is not threading.main_thread():
        return None
    return _set_pdeathsig
