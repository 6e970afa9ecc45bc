"""Group commit for sync mode: many writers, one transaction per round.

Leader/follower, without a thread of its own: a writer queues its change; if no round is in
flight it becomes the leader, takes everything queued (up to a batch limit, at most one change
per key so every writer gets its own version), writes it in one statement and hands each
writer its result. Writers that arrive meanwhile queue up for the next round, led by one of
them; up to `max_rounds` rounds run at once on their own connections, so the server's WAL
flush groups their commits too. One client pays no thread hand-off; 8 clients share round
trips and fsyncs.

Each writer sleeps on its own event and is woken once: when its result is in, or when the
round before hands it the lead. (One condition for all, woken with notify_all after every
round, cost every waiting writer a wake-up per round: most of the group's CPU at 8 clients.)
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from .pg_errors import TierUnavailable
from .pg_sql import Change

MAX_BATCH = 1000
MAX_QUEUED = 10_000

WriteBatch = Callable[[Sequence[Change]], list[int]]


class _Writer:
    """One queued change and the writer waiting for it."""

    __slots__ = ("change", "done", "error", "lead", "version", "wake")

    def __init__(self, change: Change) -> None:
        self.change = change
        self.wake = threading.Event()
        self.lead = False  # this writer runs the next round
        self.done = False
        self.version = 0
        self.error: BaseException | None = None


class GroupCommitter:
    """Turns concurrent `submit` calls into few `write_batch` calls."""

    def __init__(
        self, write_batch: WriteBatch, max_batch: int = MAX_BATCH, max_rounds: int = 1
    ) -> None:
        self._write_batch = write_batch
        self._max_batch = max_batch
        self._max_rounds = max_rounds
        self._queue: deque[_Writer] = deque()
        self._lock = threading.Lock()
        self._rounds = 0  # in flight; more than one lets the server group their fsyncs
        self._closed = False
        self._batches = 0
        self._changes = 0
        self._largest = 0

    def submit(self, change: Change) -> int:
        """Block until the change is committed; its new version, or its round's exception."""
        writer = _Writer(change)
        with self._lock:
            if self._closed:
                raise TierUnavailable("postgres tier is closed")
            if len(self._queue) >= MAX_QUEUED:
                raise TierUnavailable(f"postgres write queue is full ({MAX_QUEUED} waiting)")
            self._queue.append(writer)
            if self._rounds < self._max_rounds:
                self._rounds += 1
                writer.lead = True
        while True:
            if writer.lead:
                writer.lead = False
                self._round()
            if writer.done:
                break
            writer.wake.wait()
            writer.wake.clear()
        if writer.error is not None:
            raise writer.error
        return writer.version

    def status(self) -> dict[str, Any]:
        with self._lock:
            queued = len(self._queue)
        return {
            "queued": queued,
            "batches": self._batches,
            "changes": self._changes,
            "largest_batch": self._largest,
        }

    def close(self) -> None:
        """Refuse new writes; rounds already queued still complete."""
        with self._lock:
            self._closed = True

    def _round(self) -> None:
        """Commit what is queued, wake its writers, then pass the lead on (or give it up)."""
        try:
            with self._lock:
                batch = self._take()
            if batch:
                self._commit(batch)
        finally:
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.wake.set()
                else:
                    self._rounds -= 1

    def _take(self) -> list[_Writer]:
        """The next round: queue order, one change per key (a later one waits a round)."""
        taken: list[_Writer] = []
        deferred: list[_Writer] = []
        keys: set[tuple[str, str]] = set()
        while self._queue and len(taken) < self._max_batch:
            item = self._queue.popleft()
            ident = (item.change.collection, item.change.key)
            if ident in keys:
                deferred.append(item)
            else:
                keys.add(ident)
                taken.append(item)
        self._queue.extendleft(reversed(deferred))
        return taken

    def _commit(self, batch: list[_Writer]) -> None:
        try:
            versions = self._write_batch([writer.change for writer in batch])
        except ValueError:
            if len(batch) > 1:  # one bad value must not fail its neighbours: one by one
                for writer in batch:
                    self._commit([writer])
                return
            raise_into(batch)
            return
        except BaseException:
            raise_into(batch)
            return
        for writer, version in zip(batch, versions, strict=True):
            writer.version = version
            _finish(writer)
        self._batches += 1
        self._changes += len(batch)
        self._largest = max(self._largest, len(batch))


def _finish(writer: _Writer) -> None:
    writer.done = True
    writer.wake.set()


def raise_into(batch: list[_Writer]) -> None:
    """Hand the exception being handled to every writer of the batch."""
    exc = sys.exc_info()[1]
    assert exc is not None
    for writer in batch:
        writer.error = exc
        _finish(writer)
