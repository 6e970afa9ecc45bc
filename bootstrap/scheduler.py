"""TieringScheduler: runs on_tiering_pass on a worker thread so serving never waits on it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("spine.scheduler")


class TieringScheduler:
    """Calls `tick` every `interval` seconds until stopped; a failing tick is logged, not fatal.

    Between ticks it also wakes for `retry` when `retry_in` says one is due (a failed push is
    retried with backoff, not only every 5 minutes)."""

    def __init__(
        self,
        tick: Callable[[], object],
        interval: float,
        retry: Callable[[], object] | None = None,
        retry_in: Callable[[], float | None] | None = None,
    ) -> None:
        self.tick = tick
        self.interval = interval
        self.retry = retry
        self.retry_in = retry_in
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
        next_tick = time.monotonic() + self.interval
        while not self._stop.is_set():
            wait = next_tick - time.monotonic()
            retry_wait = self.retry_in() if self.retry_in is not None else None
            if retry_wait is not None:
                wait = min(wait, retry_wait)
            triggered = self._wake.wait(max(0.0, wait))
            self._wake.clear()
            if self._stop.is_set():
                break
            if triggered or time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.interval
                self._guarded(self.tick, "tiering pass failed")
                self.ticks += 1
            elif self.retry is not None:
                self._guarded(self.retry, "push retry failed")

    @staticmethod
    def _guarded(work: Callable[[], object], message: str) -> None:
        try:
            work()
        except Exception as exc:  # keep serving; the next pass retries
            log.error(message, extra={"error": str(exc)})

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
