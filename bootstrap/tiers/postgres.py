"""The PostgreSQL tier: Super Spine's records shared by every agent on one database.

What it gives the storage:
- `open()` connects (a refusal such as a wrong password or a missing database is a ConfigError
  line; a server that is away is TierUnavailable), migrates the kit's schema once under an
  advisory lock, and returns the current change mark.
- `read(None)` streams every record by binary COPY (restore); `read(mark)` streams what was
  written at or after a mark, and the reader's own `.mark` is where the next read starts. The
  cursor is the snapshot's xmin (see pg_sql), so a transaction committing during a read is
  never skipped.
- `write(changes)` upserts a batch in one statement: idempotent, newest version wins, a row's
  version is GREATEST(incoming, stored + 1), deletes become tombstones that an older change
  cannot undo.
- `submit(change)` writes one change forced (it is the newest acknowledged write of its key)
  through the group committer (sync mode: many request threads, one transaction per round);
  the version PostgreSQL settled on comes back.
- `write_conditional(change, if_match=V | if_absent=True)` is the ETag path: it succeeds only
  against stored version V (or an absent/tombstoned key) and otherwise raises
  PreconditionFailed with the current version and row.
- `listen(on_changes, since)` starts the listener: other agents' changes, pushed by
  LISTEN/NOTIFY and resynced by cursor after every reconnect.
- `status()` (no secrets) and `close()`.

The password is read from `password_file` on every new connection, never kept in a DSN.
"""

from __future__ import annotations

import contextlib
import math
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

import psycopg
from psycopg import pq
from psycopg_pool import ConnectionPool

from ..records import InvalidName, PersistenceClass, check_collection, check_key
from .pg_committer import GroupCommitter
from .pg_config import PostgresConfig
from .pg_errors import (
    PreconditionFailed,
    ServerRefused,
    TierUnavailable,
    ValueTooLarge,
    connect_error,
    one_line,
    unavailable,
)
from .pg_listener import Listener, OnChanges
from .pg_own import OwnTransactions
from .pg_schema import channel_name, migrate
from .pg_sql import (
    Change,
    Guarded,
    Statements,
    begin_snapshot,
    conditional,
    current_row,
    current_version,
    guarded_batch,
    live_version,
    stream_rows,
    upsert,
)

__all__ = [
    "Change",
    "ChangeReader",
    "Guarded",
    "PostgresTier",
    "PreconditionFailed",
    "ServerRefused",
    "TierUnavailable",
    "ValueTooLarge",
]

T = TypeVar("T")
DEFAULT_MAX_VALUE_SIZE = 1024**2
POOL_SIZE = 4
WAIT_TIMEOUT = 5.0  # longest a caller waits for a pooled connection before TierUnavailable
LISTENER_APPLICATION_NAME = "spine-agent-listener"
_CLASSES = {c.value for c in PersistenceClass}


class ChangeReader:
    """The rows of one snapshot, streamed once; `mark` is where the next read starts."""

    def __init__(
        self, pool: ConnectionPool, stmts: Statements, since: int | None, wait_timeout: float
    ) -> None:
        self._pool = pool
        self._stmts = stmts
        self._since = since
        self._conn: psycopg.Connection | None = pool.getconn(wait_timeout)
        try:
            self.mark = begin_snapshot(self._conn)
        except BaseException:
            self.close()
            raise

    def __iter__(self) -> Iterator[Change]:
        if self._conn is None:
            raise TierUnavailable("postgres read already consumed or closed")
        try:
            for row in stream_rows(self._conn, self._stmts, self._since):
                yield row.change
        except psycopg.Error as exc:
            raise unavailable(exc) from None
        finally:
            self.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.info.transaction_status == pq.TransactionStatus.INTRANS:
            with contextlib.suppress(psycopg.Error):  # broken: the pool discards it
                conn.execute("ROLLBACK")
        self._pool.putconn(conn)

    def __enter__(self) -> ChangeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PostgresTier:
    """One agent's view of the shared records table (see the module docstring)."""

    name: ClassVar[str] = "postgres"

    def __init__(
        self,
        config: PostgresConfig,
        host: str | None = None,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        pool_size: int = POOL_SIZE,
        wait_timeout: float = WAIT_TIMEOUT,
    ) -> None:
        self.config = config
        self.host = host or socket.gethostname()
        self.max_value_size = max_value_size
        self._pool_size = pool_size
        self._wait_timeout = wait_timeout
        self._stmts = Statements(config.schema)
        self._pool: ConnectionPool | None = None
        self._committer: GroupCommitter | None = None
        self._listener: Listener | None = None
        self._own = OwnTransactions()
        self.last_error: str | None = None

    # -- open / close --------------------------------------------------------------------------
    def open(self) -> int:
        """Connect, migrate, start the pool; the current mark. May be called again after a
        TierUnavailable (the server was away)."""
        if self._pool is not None:
            return self._current_mark()
        try:
            conn = self._connect()
        except psycopg.Error as exc:
            raise self._connect_error(exc) from None
        with conn:
            try:
                migrate(conn, self.config.schema)
            except psycopg.errors.InsufficientPrivilege as exc:
                raise ServerRefused(
                    "postgres.dsn",
                    self.config.describe(),
                    f"role {conn.info.user!r} may not create the schema "
                    f"{self.config.schema!r} ({one_line(exc)}): GRANT CREATE ON DATABASE "
                    f"{conn.info.dbname} TO {conn.info.user}, or create the schema for it",
                ) from None
            except psycopg.OperationalError as exc:
                raise unavailable(exc) from None
            mark = _snapshot_mark(conn)
        pool: ConnectionPool = ConnectionPool(
            kwargs=self._connect_params,
            min_size=1,
            max_size=self._pool_size,
            timeout=self._wait_timeout,
            name=f"postgres-{self.config.schema}",
            open=False,
        )
        try:
            pool.open(wait=True, timeout=self._wait_timeout * 2)
        except psycopg.Error as exc:
            pool.close()
            raise unavailable(exc) from None
        self._pool = pool
        if self.config.write == "sync":
            self._committer = GroupCommitter(self.write_forced)
        return mark

    def close(self) -> None:
        if self._committer is not None:
            self._committer.close()
            self._committer = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def publish(self, deadline: float) -> None:
        """Nothing to do: every write has committed by the time it returns."""

    # -- reads ---------------------------------------------------------------------------------
    def read(self, since: int | None) -> ChangeReader:
        """Everything (since None, by COPY) or what was written at or after `since`."""
        pool = self._require_pool()
        try:
            return ChangeReader(pool, self._stmts, since, self._wait_timeout)
        except psycopg.Error as exc:
            raise self._failed(exc) from None

    def current_version(self, collection: str, key: str) -> int | None:
        return self._with_conn(
            lambda conn: current_version(conn, self._stmts, collection, key), retry=True
        )

    # -- writes --------------------------------------------------------------------------------
    def write(self, changes: Sequence[Change], forced: bool = False) -> list[int]:
        """Upsert a batch in one transaction; the stored version for each change, in order
        (a change older than the stored row gets the stored row's version). `forced` applies
        every change whatever the stored version (pg_sql)."""
        if not changes:
            return []
        self._check(changes)

        def work(conn: psycopg.Connection) -> dict[tuple[str, str], int]:
            with self._own.writing():
                versions, txids = upsert(conn, self._stmts, changes, self.host, forced)
                self._own.remember(txids)
            return versions

        # A replay is a no-op (forced: a row holding this very write is left as it is): safe
        # to retry after a dropped connection.
        versions = self._with_conn(work, retry=True)
        return [versions[(c.collection, c.key)] for c in changes]

    def write_forced(self, changes: Sequence[Change]) -> list[int]:
        return self.write(changes, forced=True)

    def submit(self, change: Change) -> int:
        """Write one change forced through the group committer (sync mode); the version
        PostgreSQL settled on."""
        if self._committer is None:
            raise TierUnavailable("postgres tier is not open in sync mode")
        self._check([change])
        return self._committer.submit(change)

    def write_conditional(
        self, change: Change, if_match: int | None = None, if_absent: bool = False
    ) -> int:
        """The new version, or PreconditionFailed(current version; None when absent). A
        tombstone counts as absent. Never retried: after a lost reply the outcome is unknown,
        and a retry could report a 412 for the writer's own success."""
        if if_match is not None and if_absent:
            raise ValueError("give if_match or if_absent, not both")
        if if_absent and change.value is None:
            raise ValueError(f"{change.collection}/{change.key}: if_absent cannot delete")
        if if_match is None and not if_absent:
            return self.write([change])[0]
        self._check([change])

        def work(conn: psycopg.Connection) -> int:
            with self._own.writing():
                done = conditional(conn, self._stmts, change, self.host, if_match)
                if done is not None:
                    self._own.remember([done[1]])
            if done is None:
                row = current_row(conn, self._stmts, change.collection, change.key)
                now = live_version(row, change.mtime)
                raise PreconditionFailed(change.collection, change.key, now, row)
            return done[0]

        return self._with_conn(work, retry=False)

    def write_guarded(
        self, ops: Sequence[Guarded], atomic: bool
    ) -> tuple[list[int | None], dict[int, PreconditionFailed]]:
        """A bulk write's or transaction's operations, with their conditions, decided and
        written in ONE PostgreSQL transaction: the version each ends at, and index -> the
        failure of each lost condition (nothing written for it). `atomic` (a transaction): any
        lost condition rolls the whole transaction back, nothing written. Never retried, as
        write_conditional."""
        for op in ops:
            if op.if_absent and op.write and op.change.value is None:
                raise ValueError(f"{op.change.collection}/{op.change.key}: if_absent cannot delete")
        self._check([op.change for op in ops if op.write])

        def work(conn: psycopg.Connection) -> tuple[list[int | None], dict[int, Any]]:
            lost: dict[int, PreconditionFailed] = {}
            # In an explicit transaction the ids are known before COMMIT sends the NOTIFY:
            # remembered there, a rolled-back transaction's id is harmless (it wrote nothing).
            with conn.transaction() as tx:
                versions, failed, txids = guarded_batch(conn, self._stmts, ops, self.host)
                self._own.remember(txids)
                for index in failed:
                    change = ops[index].change
                    row = current_row(conn, self._stmts, change.collection, change.key)
                    now = live_version(row, change.mtime)
                    lost[index] = PreconditionFailed(change.collection, change.key, now, row)
                if atomic and lost:
                    raise psycopg.Rollback(tx)  # nothing of it stays
            return versions, lost

        return self._with_conn(work, retry=False)

    # -- other agents' changes -----------------------------------------------------------------
    def listen(self, on_changes: OnChanges, since: int, poll_interval: float = 5.0) -> Listener:
        """Start delivering other agents' changes written at or after `since`."""
        if self._listener is not None:
            raise RuntimeError("the postgres listener is already running")
        self._listener = Listener(
            connect=lambda: self._connect(LISTENER_APPLICATION_NAME),
            stmts=self._stmts,
            channel=channel_name(self.config.schema),
            since=since,
            on_changes=on_changes,
            own=self._own,
            poll_interval=poll_interval,
        )
        self._listener.start()
        return self._listener

    # -- status --------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What an operator needs, and nothing secret: the DSN is the password-free one."""
        result: dict[str, Any] = {
            "dsn": self.config.describe(),
            "schema": self.config.schema,
            "write": self.config.write,
            "open": self._pool is not None,
            "last_error": self.last_error,
        }
        if self._pool is not None:
            stats = self._pool.get_stats()
            result["pool"] = {
                "size": stats.get("pool_size", 0),
                "available": stats.get("pool_available", 0),
                "waiting": stats.get("requests_waiting", 0),
            }
        if self._committer is not None:
            result["committer"] = self._committer.status()
        if self._listener is not None:
            result["listener"] = self._listener.status()
        return result

    # -- helpers -------------------------------------------------------------------------------
    def _connect_params(self) -> dict[str, Any]:
        return {**self.config.connect_kwargs(), "autocommit": True}

    def _connect(self, application_name: str | None = None) -> psycopg.Connection:
        params = self._connect_params()
        if application_name:
            params["application_name"] = application_name
        return psycopg.connect(**params)

    def _connect_error(self, exc: psycopg.Error) -> Exception:
        pw_file = str(self.config.password_file) if self.config.password_file else None
        error = connect_error(exc, self.config.describe(), pw_file)
        self.last_error = str(error)
        return error

    def _require_pool(self) -> ConnectionPool:
        if self._pool is None:
            raise TierUnavailable("postgres tier is not open")
        return self._pool

    def _with_conn(self, work: Callable[[psycopg.Connection], T], retry: bool) -> T:
        """Run `work` on a pooled connection; a dropped connection is retried once when `retry`
        (idempotent work), and any database failure becomes one TierUnavailable line."""
        pool = self._require_pool()
        for attempt in (1, 2):
            try:
                with pool.connection() as conn:
                    result = work(conn)
                self.last_error = None
                return result
            except psycopg.DataError as exc:
                raise ValueError(f"postgres refused a value: {one_line(exc)}") from None
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                pool.check()  # drop every connection the server's restart left broken
                if not retry or attempt == 2:
                    raise self._failed(exc) from None
            except psycopg.Error as exc:
                raise self._failed(exc) from None
        raise AssertionError("unreachable")

    def _failed(self, exc: psycopg.Error) -> TierUnavailable:
        error = unavailable(exc)
        self.last_error = str(error)
        return error

    def _check(self, changes: Sequence[Change]) -> None:
        """Refuse a whole batch before any of it is sent: one line naming the record."""
        for change in changes:
            where = f"{change.collection}/{change.key}"
            try:
                check_collection(change.collection)
                check_key(change.key)
            except InvalidName as exc:
                raise ValueError(f"postgres: {exc}") from None
            if change.cls not in _CLASSES:
                raise ValueError(f"postgres: {where}: unknown class {change.cls!r}")
            if not math.isfinite(change.mtime):
                raise ValueError(f"postgres: {where}: mtime {change.mtime!r} is not finite")
            size = len(change.value) if change.value is not None else 0
            if size > self.max_value_size:
                raise ValueTooLarge(
                    f"postgres: {where}: value is {size} bytes (at most {self.max_value_size})"
                )

    def _current_mark(self) -> int:
        return self._with_conn(_snapshot_mark, retry=True)


def _snapshot_mark(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text").fetchone()
    assert row is not None
    return int(row[0])
