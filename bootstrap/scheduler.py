"""TieringScheduler: runs the 5-minute hook on a worker thread so serving never waits on it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("spine.scheduler")


class TieringScheduler:
    """Calls `tick` every `interval` seconds until stopped; a failing tick is logged, not fatal."""

    def __init__(self, tick: Callable[[], object], interval: float) -> None:
        self.tick = tick
        self.interval = interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="spine-tiering", daemon=True)
        self._thread.start()

    def trigger(self) -> None:
        """Run a pass now (memory pressure, an API call) instead of waiting for the interval."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.tick()
                self.ticks += 1
            except Exception as exc:  # keep serving; the next pass retries
                log.error("tiering pass failed", extra={"error": str(exc)})

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
