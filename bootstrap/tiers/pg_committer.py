"""Group commit for sync mode: many writers, one transaction per round.

Leader/follower, without a thread of its own: a writer queues its change; if no round is in
flight it becomes the leader, takes everything queued (up to a batch limit, at most one change
per key so every writer gets its own version), writes it in one statement and hands each
writer its result. Writers that arrive meanwhile queue up for the next round, led by one of
them; up to `max_rounds` rounds run at once on their own connections, so the server's WAL
flush groups their commits too. One client pays no thread hand-off; 8 clients share round
trips and fsyncs.
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

WriteBatch = Callable[[Sequence[Change]], list[int]]


class GroupCommitter:
    """Turns concurrent `submit` calls into few `write_batch` calls."""

    def __init__(
        self, write_batch: WriteBatch, max_batch: int = MAX_BATCH, max_rounds: int = 1
    ) -> None:
        self._write_batch = write_batch
        self._max_batch = max_batch
        self._max_rounds = max_rounds
        self._queue: deque[tuple[Change, Future[int]]] = deque()
        self._turn = threading.Condition()
        self._rounds = 0  # in flight; more than one lets the server group their fsyncs
        self._closed = False
        self._batches = 0
        self._changes = 0
        self._largest = 0

    def submit(self, change: Change) -> int:
        """Block until the change is committed; its new version, or its round's exception."""
        future: Future[int] = Future()
        with self._turn:
            if self._closed:
                raise TierUnavailable("postgres tier is closed")
            if len(self._queue) >= MAX_QUEUED:
                raise TierUnavailable(f"postgres write queue is full ({MAX_QUEUED} waiting)")
            self._queue.append((change, future))
            while not future.done():
                if self._rounds >= self._max_rounds or not self._queue:
                    self._turn.wait()
                    continue
                self._rounds += 1
                batch = self._take()
                self._turn.release()
                try:
                    self._commit(batch)
                finally:
                    self._turn.acquire()
                    self._rounds -= 1
                    self._turn.notify_all()
        return future.result()

    def status(self) -> dict[str, Any]:
        with self._turn:
            queued = len(self._queue)
        return {
            "queued": queued,
            "batches": self._batches,
            "changes": self._changes,
            "largest_batch": self._largest,
        }

    def close(self) -> None:
        """Refuse new writes; rounds already queued still complete."""
        with self._turn:
            self._closed = True

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
