"""The PostgreSQL tier's replica: Super Spine's records shared by every agent on one database.

- `sync` mode: a write of a class routed here goes through PostgreSQL before it is
  acknowledged (`write_through`, group-committed by the backend); PostgreSQL unreachable means
  503 and nothing written. Nothing is ever pending for this tier.
- `async` mode: a write is acknowledged after the journal, as without the tier; the pending
  bits are shipped in batches by a background thread within `max_lag`, at every pass that
  finds it due, and at shutdown. PostgreSQL unreachable: reads and writes go on, the backlog
  grows and is shipped when it comes back.
- Conditional writes (If-Match, If-None-Match: *) of a class routed here are decided by
  PostgreSQL, synchronously, whatever the mode (`write_conditional`): unreachable means 503 and
  nothing written; a lost precondition brings the stored row back, so the next read is fresh.
- Versions: the agent's write-clock version goes with each change; PostgreSQL stores
  GREATEST(incoming, stored + 1), and in sync mode and for conditional writes that settled
  version is the one the agent keeps and serves as the ETag.
- Other agents' writes arrive through the backend's LISTEN/NOTIFY listener (resynced from an
  xid8 cursor after every reconnect) and are taken newest-wins by version; a tombstone removes.
- Restore: an empty disk starts from the database (one COPY); otherwise every row newer than
  the local copy is taken, so a delete made elsewhere does not come back from warm files.
- PostgreSQL away at start: the agent serves from its own tiers, and a connector thread
  retries with backoff; once it is back the agent takes every newer row (as a restore would)
  and starts the listener from that read's mark.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any, ClassVar

from ..errors import BadRequest
from ..errors import ValueTooLarge as TooLarge
from ..memory import bulk_load
from ..records import Change, Entry, Guarded, PersistenceClass, version_of
from ..tiers import TierUnavailable
from ..tiers.postgres import PostgresTier, PreconditionFailed, ValueTooLarge
from . import Context, PassReport

log = logging.getLogger("spine.postgres")

BATCH = 5000  # changes per shipped statement
RECONNECT_FIRST = 0.05  # the connector's backoff while PostgreSQL is away at start
RECONNECT_MAX = 2.0
# A local delete is remembered this long (and while it waits to be shipped): a row the
# listener read just before the delete committed must not bring the record back here.
TOMBSTONE_SECONDS = 60.0
MAX_TOMBSTONES = 100_000


class PostgresReplica:
    """Ships this agent's writes to PostgreSQL and takes the others' (module docstring)."""

    name: ClassVar[str] = "postgres"
    every_pass: ClassVar[bool] = False

    def __init__(self, ctx: Context, bit: int) -> None:
        if ctx.config.postgres is None:
            raise ValueError("the postgres tier needs a postgres: section")
        self.ctx = ctx
        self.bit = bit
        self.pg = ctx.config.postgres
        self.backend = PostgresTier(
            self.pg, host=ctx.host, max_value_size=ctx.config.max_value_size
        )
        self.commits = 0
        self.last_error: str | None = None
        self.last_ship_at: float | None = None
        self.shipped = 0
        self._covered = 0
        self._opened = False
        self._pending: set[tuple[str, str]] = set()
        self._deletes: dict[tuple[str, str], tuple[PersistenceClass, float]] = {}
        self._oldest: float | None = None
        self._in_flight = False
        # What a ship has taken out of the backlog but not yet written: still backlog for
        # status (a ship blocked on a dead server must not read as "nothing pending").
        self._in_flight_count = 0
        self._in_flight_since: float | None = None
        self._applying = False  # taking others' changes: they are not ours to ship back
        self._ship_lock = threading.Lock()
        self._open_lock = threading.Lock()
        self._stop = threading.Event()
        self._mark: int | None = None
        self._following = False  # the listener runs (it reconnects by itself from then on)
        self._restored: list[Change] = []  # read at restore, taken once the journal is in
        # (collection, key) -> (version, monotonic time) of this agent's recent deletes
        self._tombstones: dict[tuple[str, str], tuple[int, float]] = {}
        self._connector: threading.Thread | None = None

    # -- connection ------------------------------------------------------------------------
    def open(self) -> None:
        """Connect and migrate. A refusal (wrong password, no database, no rights, TLS
        mismatch) is a ConfigError (exit 2); a server that is away is retried later."""
        self._try_open(at_start=True)

    def _try_open(self, at_start: bool = False) -> bool:
        if self._opened:
            return True
        with self._open_lock:
            if self._opened:
                return True
            if self._stop.is_set():
                return False
            try:
                self._mark = self.backend.open()
            except TierUnavailable as exc:
                self.last_error = str(exc)
                log.warning("postgres unreachable; will retry", extra={"error": self.last_error})
                return False
            except Exception as exc:  # a refusal after start: keep serving, keep reporting
                if at_start:
                    raise  # at start a refusal is the operator's to fix: exit 2, one line
                self.last_error = str(exc)
                log.error("postgres refused the agent", extra={"error": self.last_error})
                return False
            self._opened = True
            return True

    @property
    def sync(self) -> bool:
        return self.pg.write == "sync"

    # -- write-through (sync) ----------------------------------------------------------------
    def writes_through(self, cls: PersistenceClass) -> bool:
        return self.sync and bool(self.ctx.routes.mask(cls) & self.bit)

    def write_through(self, change: Change) -> int:
        """Commit one change in PostgreSQL before the write is acknowledged; the version
        PostgreSQL settled on."""
        return self.write_through_many([change])[0]

    def write_through_many(self, changes: Sequence[Change]) -> list[int]:
        """Commit a bulk write's or transaction's changes in one PostgreSQL transaction (one
        change: the group-committed submit) before they are acknowledged; the versions
        PostgreSQL settled on, in order."""
        self._require_open()
        with self._writing():
            if len(changes) == 1:
                versions = [self.backend.submit(changes[0])]
            else:
                versions = self.backend.write_forced(changes)
        self.last_error = None
        self.commits += 1
        return versions

    # -- conditional writes (any mode) --------------------------------------------------------
    def decides_conditions(self, cls: PersistenceClass) -> bool:
        return bool(self.ctx.routes.mask(cls) & self.bit)

    def write_conditional(self, change: Change, if_match: int | None, if_absent: bool) -> int:
        """Decide and write in PostgreSQL: the settled version, or PreconditionFailed (the
        stored row is taken first, newest wins, so a read that follows is fresh), or
        TierUnavailable (503: nothing written)."""
        self._require_open()
        ident = (change.collection, change.key)
        if ident in self._pending or ident in self._deletes:
            # async: this agent's own newer write of the key goes first, so the version the
            # writer read here is the one PostgreSQL compares.
            self.ship(PassReport())
            if ident in self._pending or ident in self._deletes:
                raise TierUnavailable(
                    f"postgres unreachable, nothing written: {self.last_error or 'backlog kept'}"
                )
        with self._writing():
            try:
                version = self.backend.write_conditional(
                    change, if_match=if_match, if_absent=if_absent
                )
            except PreconditionFailed as failed:
                if failed.current is not None:
                    self.take([failed.current])
                raise
        self.last_error = None
        self.commits += 1
        return version

    def settle_backlog(self, names: Iterable[tuple[str, str]]) -> None:
        """Before a batch with conditions (outside the storage lock): this agent's own queued
        writes of those keys go first (async), so PostgreSQL compares the versions the client
        read here."""
        if any(name in self._pending or name in self._deletes for name in names):
            with contextlib.suppress(TierUnavailable):
                self.ship(PassReport())

    def decide_batch(
        self, ops: Sequence[Guarded], atomic: bool
    ) -> tuple[list[int | None], dict[int, PreconditionFailed]]:
        """A batch's operations routed here, conditions and writes, in one PostgreSQL
        transaction (see PostgresTier.write_guarded); a lost condition's stored row is taken,
        newest wins, so the next read is fresh. TierUnavailable (503): nothing written, also
        when this agent still holds a queued write of one of the keys (async)."""
        self._require_open()
        for op in ops:
            ident = (op.change.collection, op.change.key)
            if ident in self._pending or ident in self._deletes:
                raise TierUnavailable(
                    f"postgres unreachable, nothing written: {self.last_error or 'backlog kept'}"
                )
        with self._writing():
            versions, lost = self.backend.write_guarded(ops, atomic)
        self.take([failed.current for failed in lost.values() if failed.current is not None])
        self.last_error = None
        if not (atomic and lost):
            self.commits += 1
        return versions, lost

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A synchronous write to PostgreSQL: its failures as the storage's errors (away: 503
        with the reason noted for status; too large: 413; refused input: 400)."""
        try:
            yield
        except TierUnavailable as exc:
            self.last_error = str(exc)
            raise TierUnavailable(f"postgres unreachable, nothing written: {exc}") from None
        except ValueTooLarge as exc:
            raise TooLarge(str(exc)) from None
        except ValueError as exc:
            raise BadRequest(str(exc)) from None

    def _require_open(self) -> None:
        if not self._try_open():
            raise TierUnavailable(f"postgres unreachable, nothing written: {self.last_error}")

    # -- queued work (async) -----------------------------------------------------------------
    def note_put(self, collection: str, key: str, entry: Entry, now: float) -> None:
        if self._applying:
            return
        self._pending.add((collection, key))
        self._deletes.pop((collection, key), None)
        if self._oldest is None:
            self._oldest = now

    def note_delete(self, collection: str, key: str, cls: PersistenceClass, when: float) -> None:
        if self._applying:
            return
        self._remember_delete((collection, key), version_of(when))
        if self.sync:
            return  # the delete went through already
        self._deletes[(collection, key)] = (cls, when)
        if self._oldest is None:
            self._oldest = when

    def note_bulk(self, collection: str, cls: PersistenceClass) -> None:
        for key, entry in self.ctx.memory.collection(collection).items():
            if entry.pending & self.bit:
                self.note_put(collection, key, entry, entry.mtime)

    def pending_work(self) -> bool:
        return bool(self._pending or self._deletes)

    @property
    def covered(self) -> int:
        """The last journal segment PostgreSQL holds: every closed one when nothing is pending
        or in flight (a write-through put reached PostgreSQL before its journal line)."""
        with self.ctx.memory.lock:
            if not (self._pending or self._deletes or self._in_flight):
                self._covered = self.ctx.journal.segment - 1
            return self._covered

    def due(self, now: float) -> bool:
        return self._oldest is not None and now - self._oldest >= self.pg.max_lag

    def retry_in(self, now: float) -> float | None:
        return None  # the shipper thread retries on its own

    def background(self) -> Callable[[], Any] | None:
        return None if self.sync else self._ship_loop

    def _ship_loop(self) -> None:
        """Ship the backlog every half max_lag, until closed."""
        interval = max(0.005, self.pg.max_lag / 2)
        while not self._stop.wait(interval):
            if self._pending or self._deletes:
                try:
                    self.ship(PassReport())
                except Exception as exc:  # never let the shipper die
                    log.error("postgres ship failed", extra={"error": str(exc)})

    def ship(self, report: PassReport, compact: bool = True) -> dict[str, Any]:
        """Send what is pending, in batches; on failure it stays pending for the next try."""
        with self._ship_lock:
            changes, touched = self._collect()
            if not changes:
                return {}
            try:
                if not self._try_open():
                    raise TierUnavailable(self.last_error or "postgres unreachable")
                for start in range(0, len(changes), BATCH):
                    self.backend.write(changes[start : start + BATCH])
            except (TierUnavailable, ValueError) as exc:
                self.last_error = str(exc)
                self._requeue(touched, changes)
                log.warning("postgres backlog kept", extra={"error": self.last_error})
                return {}
            finally:
                self._in_flight = False
                self._in_flight_count = 0
                self._in_flight_since = None
            self.last_error = None
            self.last_ship_at = self.ctx.clock()
            self.shipped += len(changes)
            self.commits += 1
        return {}

    def _collect(self) -> tuple[list[Change], list[tuple[str, str, Entry]]]:
        memory, bit = self.ctx.memory, self.bit
        changes: list[Change] = []
        touched: list[tuple[str, str, Entry]] = []
        with memory.lock:
            pending, self._pending = self._pending, set()
            deletes, self._deletes = self._deletes, {}
            since, self._oldest = self._oldest, None
            for collection, key in sorted(pending):
                entry = memory.entry(collection, key)
                if entry is None or not entry.pending & bit or entry.value is None:
                    continue
                change = Change(collection, key, entry.value, entry.cls.value, entry.mtime)
                changes.append(replace(change, expires=entry.expires))
                entry.pending &= ~bit
                touched.append((collection, key, entry))
            for (collection, key), (cls, when) in deletes.items():
                changes.append(Change(collection, key, None, cls.value, when))
            self._in_flight = bool(changes)
            self._in_flight_count = len(changes)
            self._in_flight_since = since if changes else None
        return changes, touched

    def _requeue(self, touched: list[tuple[str, str, Entry]], changes: list[Change]) -> None:
        with self.ctx.memory.lock:
            for collection, key, entry in touched:
                if self.ctx.memory.entry(collection, key) is entry:
                    entry.pending |= self.bit
                    self._pending.add((collection, key))
            for change in changes:
                if change.value is None:
                    ident = (change.collection, change.key)
                    if ident not in self._pending:
                        self._deletes.setdefault(
                            ident, (PersistenceClass(change.cls), change.mtime)
                        )
            if self._oldest is None:
                self._oldest = min((c.mtime for c in changes), default=None)

    def publish(self, deadline: float) -> bool:
        """Ship the backlog now (shutdown, preemption); True when nothing is left."""
        if self.sync:
            return True
        if (self._pending or self._deletes) and time.monotonic() < deadline:
            self.ship(PassReport())
        return not (self._pending or self._deletes)

    def published(self) -> bool | None:
        return None

    # -- others' changes ---------------------------------------------------------------------
    def _remember_delete(self, ident: tuple[str, str], version: int) -> None:
        now = time.monotonic()
        tombstones = self._tombstones
        tombstones.pop(ident, None)
        tombstones[ident] = (version, now)
        while tombstones:
            oldest = next(iter(tombstones))
            fresh = now - tombstones[oldest][1] < TOMBSTONE_SECONDS
            if fresh and len(tombstones) <= MAX_TOMBSTONES:
                break
            del tombstones[oldest]

    def _deleted_here_since(self, ident: tuple[str, str], version: int) -> bool:
        """True when this agent deleted the record at `version` or later (caller holds the
        memory lock): an older row read before that delete committed loses to it."""
        held = self._tombstones.get(ident)
        if held is not None and held[0] >= version:
            return True
        pending = self._deletes.get(ident)
        return pending is not None and version_of(pending[1]) >= version

    def take(self, changes: Iterable[Change]) -> int:
        """Newest wins by version against what memory holds; owed to the tiers before this one
        (the warm files), not journaled: PostgreSQL itself holds them. A record takes the
        version PostgreSQL holds (its mtime is that version's seconds)."""
        memory, routes = self.ctx.memory, self.ctx.routes
        taken = 0
        with memory.lock:
            self._applying = True
            try:
                for change in changes:
                    version = change.version or version_of(change.mtime)
                    local = memory.entry(change.collection, change.key)
                    if local is not None and local.version >= version:
                        continue
                    if local is None and self._deleted_here_since(
                        (change.collection, change.key), version
                    ):
                        continue
                    mtime = version / 1_000_000
                    cls = PersistenceClass(change.cls)
                    if change.value is None:
                        if local is not None:
                            memory.remove_entry(change.collection, change.key, local.cls, mtime)
                            taken += 1
                        continue
                    owed = routes.owed_after_restore(cls, self.name)
                    entry = Entry(change.value, cls, mtime, owed, change.expires)
                    memory.set_entry(change.collection, change.key, entry, mtime)
                    taken += 1
            finally:
                self._applying = False
        return taken

    def _on_changes(self, changes: list[Change]) -> None:
        try:
            self.take(changes)
        except Exception as exc:  # the listener thread must keep running
            log.error("others' changes not applied", extra={"error": str(exc)})

    # -- restore -----------------------------------------------------------------------------
    def restore_all(self) -> str | None:
        """An empty disk: every row of the database (one COPY), tombstones left out. Taken in
        `ready`, after the journal replay (see restore_newer)."""
        if not self._opened:
            return None
        reader = self.backend.read(None)
        self._restored = list(reader)
        self._mark = reader.mark
        return self.name if any(c.value is not None for c in self._restored) else None

    def restore_newer(self, since: float, lost: list[str]) -> None:
        """A local copy was restored: every row newer than it (deletes included) is taken in
        `ready`, after the journal replay, newest wins by version: a replayed journal line
        older than what another agent wrote since must not stand over it."""
        if not self._opened:
            return
        reader = self.backend.read(None)
        self._restored = list(reader)
        self._mark = reader.mark

    def restore_mark(self) -> tuple[float | None, list[str]]:
        return None, []

    def ready(self, restored_from: str) -> None:
        """Start taking other agents' changes from the restore's mark on; with PostgreSQL
        away, start the connector that does it once it is back."""
        restored, self._restored = self._restored, []
        if restored:
            with bulk_load():
                self.take(restored)
        if self._opened and self._mark is not None:
            self._listen(self._mark)
            return
        self._connector = threading.Thread(
            target=self._connect_loop, name="pg-connector", daemon=True
        )
        self._connector.start()

    def _listen(self, mark: int) -> None:
        self.backend.listen(self._on_changes, since=mark)
        self._following = True

    def _connect_loop(self) -> None:
        """Retry until PostgreSQL answers; then catch up as a restore would (every row newer
        than ours) and start the listener from that read's mark: nothing written meanwhile by
        another agent is missed."""
        backoff = RECONNECT_FIRST
        while not self._stop.wait(backoff):
            backoff = min(backoff * 2, RECONNECT_MAX)
            if not self._try_open():
                continue
            try:
                reader = self.backend.read(None)
                self.take(list(reader))
                if self._stop.is_set():
                    return
                self._listen(reader.mark)
            except Exception as exc:  # away again, or closing: try again
                self.last_error = str(exc)
                continue
            log.info("postgres reachable again; following other agents' changes")
            return

    def wait_following(self, timeout: float) -> bool:
        """True once other agents' changes are followed (tests, tools)."""
        deadline = time.monotonic() + timeout
        while not self._following:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    # -- status ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        body = self.backend.status()
        backlog = len(self._pending) + len(self._deletes) + self._in_flight_count
        oldest = min(
            (t for t in (self._oldest, self._in_flight_since) if t is not None), default=None
        )
        body.update(
            {
                "backlog": backlog,
                "lag_s": round(self.ctx.clock() - oldest, 3) if oldest is not None else 0.0,
                # The listener is the first to see the server go: its error counts too.
                "last_error": self.last_error
                or body.get("last_error")
                or (body.get("listener") or {}).get("last_error"),
                "last_ship_at": self.last_ship_at,
                "shipped": self.shipped,
            }
        )
        return {"tiers": {"postgres": body}}

    def close(self) -> None:
        self._stop.set()
        if self._connector is not None:
            self._connector.join(timeout=10)
            self._connector = None
        with self._open_lock, contextlib.suppress(Exception):
            self.backend.close()
        self._opened = False
        self._following = False
