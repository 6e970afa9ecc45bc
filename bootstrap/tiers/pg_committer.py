"""Group commit for sync mode: many writers, one transaction per round.

Each request thread submits its change and waits. One committer thread takes everything queued
(up to a batch limit, at most one change per key so every writer gets its own version) and
writes it in one statement. While that round trip is in flight the next round queues up, so
with 8 clients the database sees a few large commits instead of 8 small ones: the fsync and the
round trip are shared.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from .pg_errors import TierUnavailable
from .pg_sql import Change

MAX_BATCH = 1000
MAX_QUEUED = 10_000
SUBMIT_TIMEOUT = 30.0

WriteBatch = Callable[[Sequence[Change]], list[int]]


class GroupCommitter:
    """A daemon thread that drains a queue of (change, future) into `write_batch` calls."""

    def __init__(self, write_batch: WriteBatch, max_batch: int = MAX_BATCH) -> None:
        self._write_batch = write_batch
        self._max_batch = max_batch
        self._queue: deque[tuple[Change, Future[int]]] = deque()
        self._wake = threading.Condition()
        self._closed = False
        self._batches = 0
        self._changes = 0
        self._largest = 0
        self._thread = threading.Thread(target=self._run, name="pg-group-commit", daemon=True)
        self._thread.start()

    def submit(self, change: Change, timeout: float = SUBMIT_TIMEOUT) -> int:
        """Block until the change is committed; its new version, or the batch's exception."""
        future: Future[int] = Future()
        with self._wake:
            if self._closed:
                raise TierUnavailable("postgres tier is closed")
            if len(self._queue) >= MAX_QUEUED:
                raise TierUnavailable(f"postgres write queue is full ({MAX_QUEUED} waiting)")
            self._queue.append((change, future))
            self._wake.notify()
        return future.result(timeout=timeout)

    def status(self) -> dict[str, Any]:
        with self._wake:
            queued = len(self._queue)
        return {
            "queued": queued,
            "batches": self._batches,
            "changes": self._changes,
            "largest_batch": self._largest,
        }

    def close(self, timeout: float = 5.0) -> None:
        """Commit what is queued, then stop."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout)

    def _take(self) -> list[tuple[Change, Future[int]]]:
        """The next round: queue order, one change per key (a later one waits a round)."""
        taken: list[tuple[Change, Future[int]]] = []
        deferred: list[tuple[Change, Future[int]]] = []
        keys: set[tuple[str, str]] = set()
        while self._queue and len(taken) < self._max_batch:
            item = self._queue.popleft()
            ident = (item[0].collection, item[0].key)
            if ident in keys:
                deferred.append(item)
            else:
                keys.add(ident)
                taken.append(item)
        self._queue.extendleft(reversed(deferred))
        return taken

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if not self._queue and self._closed:
                    return
                batch = self._take()
            self._commit(batch)

    def _commit(self, batch: list[tuple[Change, Future[int]]]) -> None:
        try:
            versions = self._write_batch([change for change, _ in batch])
        except ValueError:
            if len(batch) > 1:  # one bad value must not fail its neighbours: one by one
                for item in batch:
                    self._commit([item])
                return
            raise_into(batch)
            return
        except BaseException:
            raise_into(batch)
            return
        for (_, future), version in zip(batch, versions, strict=True):
            future.set_result(version)
        self._batches += 1
        self._changes += len(batch)
        self._largest = max(self._largest, len(batch))


def raise_into(batch: list[tuple[Change, Future[int]]]) -> None:
    """Hand the exception being handled to every writer of the batch."""
    exc = sys.exc_info()[1]
    assert exc is not None
    for _, future in batch:
        future.set_exception(exc)
