"""Other agents' writes, delivered as they commit: LISTEN on a dedicated connection, resync by
cursor.

A NOTIFY only says "something committed"; the listener then reads every row at or after its
mark (see pg_sql's cursor) and hands the ones other agents wrote to `on_changes`. Notifications
sent while it was disconnected are lost, which is harmless: every (re)connect starts with the
same resync from the last mark, and a slow poll covers anything else. The connection is its
own, not the pool's, because LISTEN belongs to a session. When the server goes away the loop
reconnects with capped exponential backoff, reading the password file again each time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from .pg_errors import one_line
from .pg_own import OwnTransactions
from .pg_sql import Change, Statements, begin_snapshot, stream_rows

log = logging.getLogger(__name__)

WAKE_INTERVAL = 0.2  # how often the idle loop checks for close()
POLL_INTERVAL = 5.0  # resync even without a notification
BURST_GRACE = 0.002  # gather a burst of notifications this long before one read
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 5.0

OnChanges = Callable[[list[Change]], None]


class Listener:
    """A thread that keeps `on_changes` fed with other agents' changes after `since`."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection],
        stmts: Statements,
        channel: str,
        since: int,
        on_changes: OnChanges,
        own: OwnTransactions,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self._connect = connect
        self._stmts = stmts
        self._channel = channel
        self._mark = since
        self._on_changes = on_changes
        self._own = own
        self._poll_interval = poll_interval
        self._stop = threading.Event()
        self._connected = threading.Event()
        # (collection, key) -> (version, txid) delivered at or after the mark: rows the cursor
        # will read again are not handed over twice.
        self._delivered: dict[tuple[str, str], tuple[int, int]] = {}
        self._pending_since: float | None = None
        self._down_since: float | None = time.monotonic()
        self.last_error: str | None = None
        self.counts = {
            "notifications": 0, "own_skipped": 0, "resyncs": 0, "delivered": 0, "reconnects": 0
        }
        self._thread = threading.Thread(target=self._run, name="pg-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    @property
    def mark(self) -> int:
        return self._mark

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        started = self._down_since if self._down_since is not None else self._pending_since
        return {
            "connected": self._connected.is_set(),
            "mark": self._mark,
            "lag_seconds": round(now - started, 3) if started is not None else 0.0,
            "last_error": self.last_error,
            **self.counts,
        }

    # -- the loop ------------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = BACKOFF_FIRST
        while not self._stop.is_set():
            try:
                with self._connect() as conn:
                    self._session(conn)
                    return
            except Exception as exc:  # server away, on_changes failed, password file went bad
                self._note_down(one_line(exc))
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, BACKOFF_MAX)
            self.counts["reconnects"] += 1

    def _session(self, conn: psycopg.Connection) -> None:
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        self._resync(conn)  # whatever was missed while away
        self._connected.set()
        self._down_since = None
        self.last_error = None
        last_resync = time.monotonic()
        while not self._stop.is_set():
            heard = False
            burst = [n.payload for n in conn.notifies(timeout=WAKE_INTERVAL, stop_after=1)]
            if burst:
                # A moment for the rest of the burst, and for this agent's writes in flight
                # to note their txids (a notification overtakes the writer's reply); then
                # one read for all of it, or none when every commit in it was this agent's.
                time.sleep(BURST_GRACE)
                burst += [n.payload for n in conn.notifies(timeout=0)]
                self._own.settle()
                self.counts["notifications"] += len(burst)
                foreign = sum(not self._own_payload(p) for p in burst)
                self.counts["own_skipped"] += len(burst) - foreign
                if foreign:
                    heard = True
                    self._pending_since = self._pending_since or time.monotonic()
            if heard or time.monotonic() - last_resync >= self._poll_interval:
                self._resync(conn)
                last_resync = time.monotonic()

    def _own_payload(self, payload: str) -> bool:
        """The notification names a transaction of this agent (the payload is its xid8)."""
        return payload.isdigit() and len(payload) <= 20 and self._own.is_own(int(payload))

    def _note_down(self, message: str) -> None:
        if self._connected.is_set() or self.last_error != message:
            log.warning("postgres listener disconnected: %s", message)
        self._connected.clear()
        self._down_since = self._down_since or time.monotonic()
        self.last_error = message

    def _resync(self, conn: psycopg.Connection) -> None:
        """Read from the mark in one snapshot; deliver others' new rows; advance the mark."""
        mark = begin_snapshot(conn)
        try:
            rows = list(stream_rows(conn, self._stmts, self._mark))
        finally:
            conn.execute("COMMIT")
        self._own.settle()  # a row this agent just wrote is known as its own after this
        fresh = []
        seen: dict[tuple[str, str], tuple[int, int]] = {}
        for row in rows:
            ident = (row.change.collection, row.change.key)
            held = self._delivered.get(ident)
            if held is not None and held[0] >= row.change.version:
                continue
            seen[ident] = (row.change.version, row.txid)
            if not self._own.is_own(row.txid):
                fresh.append(row.change)
        if fresh:
            self._on_changes(fresh)  # if it raises, the mark stays and all is read again
            self.counts["delivered"] += len(fresh)
        self._delivered.update(seen)
        self._mark = mark
        self._delivered = {k: v for k, v in self._delivered.items() if v[1] >= mark}
        self._pending_since = None
        self.counts["resyncs"] += 1
