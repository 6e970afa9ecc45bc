"""This agent's own PostgreSQL transactions, so its listener never hands its writes back.

A write runs in autocommit: its NOTIFY goes out at commit, before the writer's thread has the
reply with the transaction id. On a busy machine the listener can read the new row before the
writer has noted that id, and would deliver the agent's own write as another agent's change.
So every write is registered while in flight; before the listener decides whose rows are
whose, it waits (bounded) for the writes that were in flight when it read them.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

OWN_TXIDS = 4096  # recent transactions of this agent: the listener does not echo them back
SETTLE_TIMEOUT = 10.0  # a write stuck longer than this may be delivered back: harmless, rare


class OwnTransactions:
    """The transaction ids this agent wrote, and its writes still in flight."""

    def __init__(self, keep: int = OWN_TXIDS) -> None:
        self._recent: deque[int] = deque(maxlen=keep)
        self._known: set[int] = set()
        self._in_flight: set[int] = set()
        self._tickets = itertools.count()
        self._changed = threading.Condition()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Around one write, from before its statement until its ids are remembered."""
        with self._changed:
            ticket = next(self._tickets)
            self._in_flight.add(ticket)
        try:
            yield
        finally:
            with self._changed:
                self._in_flight.discard(ticket)
                self._changed.notify_all()

    def remember(self, txids: Iterable[int]) -> None:
        with self._changed:
            for txid in txids:
                if len(self._recent) == self._recent.maxlen:
                    self._known.discard(self._recent[0])
                self._recent.append(txid)
                self._known.add(txid)

    def is_own(self, txid: int) -> bool:
        with self._changed:
            return txid in self._known

    def settle(self, timeout: float = SETTLE_TIMEOUT) -> bool:
        """Wait until every write in flight now has finished; False if one outlived timeout."""
        with self._changed:
            waiting = set(self._in_flight)
            return self._changed.wait_for(lambda: not waiting & self._in_flight, timeout)
