"""The statements the postgres tier runs, each on a connection it is handed.

Writes are ONE statement each, run in autocommit mode: one round trip, one transaction, one
NOTIFY (from the statement trigger). A batch travels as parallel arrays through `unnest`, which
costs the same round trip for 1 or 10,000 changes.

Versions are the agents' own: a change carries its agent's write-clock version (microseconds,
a hybrid logical clock; `version_of(mtime)` when the change names none). Every applied write
stores GREATEST(incoming version, stored version + 1), so a row's version grows by at least one
per write, and its mtime is that version's seconds. Two ways in:
- newest wins (`upsert`: async shipping, restore, replays): a stored row is replaced only by a
  change with a greater version; at equal versions the greater (host, deleted, value text)
  wins, a total order, so every agent converges whatever order the changes arrive in, and a
  replayed change is a no-op that returns the stored version;
- forced (`upsert_forced`: sync write-through): the change is the newest acknowledged write of
  its key, so it is applied whatever the stored version, and the version PostgreSQL settled on
  is the one the agent serves as its ETag. Only a row holding the same host, value and a
  version at least as large (this very write, after a lost reply) is left as it is.

The change cursor: a read runs in a REPEATABLE READ transaction and returns, with its rows,
`pg_snapshot_xmin` of that same snapshot. Every transaction below that xmin had finished when
the snapshot was taken, so its rows were in the read; every one at or above it is read again
next time (`txid >= mark`). A transaction that was still open during the read, however early
it started, therefore cannot be skipped, which a timestamp or sequence cursor cannot promise.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..records import Change, version_of

COLUMNS = "collection, key, convert_to(value::text, 'UTF8'), cls, mtime, version, host, txid::text"
COPY_TYPES = ("text", "text", "bytea", "text", "float8", "int8", "text", "text")


@dataclass(frozen=True)
class Row:
    """A change as read back, with the id of the transaction that wrote it."""

    change: Change
    txid: int


class Statements:
    """SQL composed once per schema."""

    def __init__(self, schema: str) -> None:
        table = sql.Identifier(schema, "records")
        settled = "greatest(EXCLUDED.version, r.version + 1)"
        insert = """INSERT INTO {t} AS r (collection, key, value, version, mtime, host, cls,
                                         deleted, txid)
            SELECT c, k, v::json, ver, ver::float8 / 1000000, h, cl, v IS NULL,
                   pg_current_xact_id()
            FROM unnest(%s::text[], %s::text[], %s::text[], %s::int8[], %s::text[],
                        %s::text[]) AS u(c, k, v, ver, h, cl)
            ON CONFLICT (collection, key) DO UPDATE SET
                value = EXCLUDED.value, version = {settled},
                mtime = ({settled})::float8 / 1000000, host = EXCLUDED.host,
                cls = EXCLUDED.cls, deleted = EXCLUDED.deleted, txid = EXCLUDED.txid
            WHERE """
        returning = " RETURNING collection, key, version, txid::text"
        self.upsert = sql.SQL(
            insert
            + """r.version < EXCLUDED.version
               OR (r.version = EXCLUDED.version
                   AND (EXCLUDED.host, EXCLUDED.deleted, coalesce(EXCLUDED.value::text, ''))
                     > (r.host, r.deleted, coalesce(r.value::text, '')))"""
            + returning
        ).format(t=table, settled=sql.SQL(settled))
        self.upsert_forced = sql.SQL(
            insert
            + """NOT (r.version >= EXCLUDED.version AND r.host = EXCLUDED.host
                     AND r.deleted = EXCLUDED.deleted
                     AND coalesce(r.value::text, '') = coalesce(EXCLUDED.value::text, ''))"""
            + returning
        ).format(t=table, settled=sql.SQL(settled))
        self.versions = sql.SQL(
            """SELECT r.collection, r.key, r.version FROM {t} AS r
            JOIN unnest(%s::text[], %s::text[]) AS u(c, k) ON r.collection = u.c AND r.key = u.k"""
        ).format(t=table)
        bumped = "greatest(%(ver_new)s::int8, r.version + 1)"
        self.update_if_match = sql.SQL(
            """UPDATE {t} AS r SET value = %(v)s::json, version = {bumped},
                mtime = ({bumped})::float8 / 1000000, host = %(h)s, cls = %(cl)s,
                deleted = %(v)s::text IS NULL, txid = pg_current_xact_id()
            WHERE collection = %(c)s AND key = %(k)s AND version = %(ver)s AND NOT deleted
            RETURNING version, txid::text"""
        ).format(t=table, bumped=sql.SQL(bumped))
        self.insert_if_absent = sql.SQL(
            """INSERT INTO {t} AS r (collection, key, value, version, mtime, host, cls, deleted,
                                     txid)
            VALUES (%(c)s, %(k)s, %(v)s::json, %(ver_new)s, %(ver_new)s::float8 / 1000000,
                    %(h)s, %(cl)s, false, pg_current_xact_id())
            ON CONFLICT (collection, key) DO UPDATE SET
                value = EXCLUDED.value, version = {settled},
                mtime = ({settled})::float8 / 1000000, host = EXCLUDED.host,
                cls = EXCLUDED.cls, deleted = false, txid = EXCLUDED.txid
            WHERE r.deleted
            RETURNING version, txid::text"""
        ).format(t=table, settled=sql.SQL(settled))
        self.current_row = sql.SQL(
            "SELECT " + COLUMNS + " FROM {t} WHERE collection = %s AND key = %s"
        ).format(t=table)
        self.current = sql.SQL(
            "SELECT version, deleted FROM {t} WHERE collection = %s AND key = %s"
        ).format(t=table)
        self.select_all = sql.SQL("SELECT " + COLUMNS + " FROM {t}").format(t=table)
        self.select_since = sql.SQL(
            "SELECT " + COLUMNS + " FROM {t} WHERE txid >= %s::xid8"
        ).format(t=table)


def version_of_change(change: Change) -> int:
    """The version a change carries: its own, else its mtime's microseconds."""
    return change.version or version_of(change.mtime)


def newest_per_key(changes: Sequence[Change]) -> list[Change]:
    """One change per key (the newest; the later one at equal version): ON CONFLICT may touch
    a row only once per statement."""
    chosen: dict[tuple[str, str], Change] = {}
    for change in changes:
        ident = (change.collection, change.key)
        held = chosen.get(ident)
        if held is None or version_of_change(change) >= version_of_change(held):
            chosen[ident] = change
    return list(chosen.values())


def upsert(
    conn: psycopg.Connection,
    stmts: Statements,
    changes: Sequence[Change],
    host: str,
    forced: bool = False,
) -> tuple[dict[tuple[str, str], int], list[int]]:
    """Write a batch with one statement (newest wins, or `forced`); the stored version of every
    key, and the txids of the rows this statement wrote."""
    batch = newest_per_key(changes)
    columns: tuple[list[object], ...] = ([], [], [], [], [], [])
    for change in batch:
        columns[0].append(change.collection)
        columns[1].append(change.key)
        columns[2].append(None if change.value is None else change.value.decode("utf-8"))
        columns[3].append(version_of_change(change))
        columns[4].append(change.host or host)
        columns[5].append(change.cls)
    rows = conn.execute(stmts.upsert_forced if forced else stmts.upsert, columns).fetchall()
    versions = {(c, k): int(v) for c, k, v, _ in rows}
    txids = sorted({int(t) for *_, t in rows})
    if len(versions) < len(batch):  # older or replayed changes: report what is stored
        missing = [c for c in batch if (c.collection, c.key) not in versions]
        found = conn.execute(
            stmts.versions, ([c.collection for c in missing], [c.key for c in missing])
        ).fetchall()
        versions.update({(c, k): int(v) for c, k, v in found})
    return versions, txids


def conditional(
    conn: psycopg.Connection,
    stmts: Statements,
    change: Change,
    host: str,
    if_match: int | None,
) -> tuple[int, int] | None:
    """(version, txid) if the precondition held and the write was made, else None."""
    params = {
        "c": change.collection,
        "k": change.key,
        "v": None if change.value is None else change.value.decode("utf-8"),
        "ver_new": version_of_change(change),
        "h": change.host or host,
        "cl": change.cls,
        "ver": if_match,
    }
    query = stmts.update_if_match if if_match is not None else stmts.insert_if_absent
    row = conn.execute(query, params).fetchone()
    return None if row is None else (int(row[0]), int(row[1]))


def current_version(
    conn: psycopg.Connection, stmts: Statements, collection: str, key: str
) -> int | None:
    """The stored version, or None when absent or a tombstone."""
    row = conn.execute(stmts.current, (collection, key)).fetchone()
    return None if row is None or row[1] else int(row[0])


def current_row(
    conn: psycopg.Connection, stmts: Statements, collection: str, key: str
) -> Change | None:
    """The stored row (a tombstone has value None), or None when the key was never written."""
    row = conn.execute(stmts.current_row, (collection, key)).fetchone()
    if row is None:
        return None
    c, k, value, cls, mtime, version, host, _ = row
    return Change(c, k, value, cls, float(mtime), int(version), host)


def begin_snapshot(conn: psycopg.Connection) -> int:
    """Open a REPEATABLE READ transaction on an autocommit connection; returns its mark."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    row = conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text").fetchone()
    assert row is not None
    return int(row[0])


def stream_rows(conn: psycopg.Connection, stmts: Statements, since: int | None) -> Iterator[Row]:
    """Rows written at or after `since` (all, with None) by binary COPY, in the open snapshot."""
    query = stmts.select_all if since is None else stmts.select_since
    copy_sql = sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(query)
    params = None if since is None else (str(since),)
    with conn.cursor().copy(copy_sql, params) as copy:
        copy.set_types(list(COPY_TYPES))
        for collection, key, value, cls, mtime, version, host, txid in copy.rows():
            yield Row(Change(collection, key, value, cls, mtime, version, host), int(txid))
