"""The kit's own schema in PostgreSQL, and the versioned migrations that build it.

Migrations run when the tier opens, inside one transaction that first takes a transaction-level
advisory lock: ten agents starting at once queue on the lock, the first applies what is
missing, the others find nothing left to do. Each applied version is recorded with who applied
it, so "exactly once" can be checked. A database whose schema is newer than this code is
refused with one line rather than written by code that does not understand it.

The records table keeps the JSON value as `json`, not `jsonb`: `json` stores the text exactly
as given (key order, spacing, duplicate keys), so a value reads back byte for byte.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

import psycopg
from psycopg import sql

from ..config import ConfigError

# A fixed number, shared by every agent: only the kit's own migrations take it.
ADVISORY_LOCK_KEY = 0x5350494E45  # "SPINE"
CHANGES_CHANNEL_SUFFIX = "_changes"

# (version, statements) in order; statements are templates over {schema}. Never edit a
# released entry: add a new one.
MIGRATIONS: Sequence[tuple[int, Sequence[str]]] = (
    (
        1,
        (
            """CREATE TABLE {schema}.records (
                collection text NOT NULL,
                key text NOT NULL,
                value json,
                version bigint NOT NULL,
                mtime double precision NOT NULL,
                host text NOT NULL,
                cls text NOT NULL,
                deleted boolean NOT NULL DEFAULT false,
                txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
                PRIMARY KEY (collection, key),
                CHECK (deleted = (value IS NULL))
            )""",
            "CREATE INDEX records_txid ON {schema}.records (txid)",
            # One notification per writing statement (the tier writes one statement per
            # transaction); the payload is the writer's transaction id, small and fixed-size.
            """CREATE FUNCTION {schema}.notify_changes() RETURNS trigger
               LANGUAGE plpgsql AS $$
               BEGIN
                   PERFORM pg_notify(TG_TABLE_SCHEMA || '_changes', pg_current_xact_id()::text);
                   RETURN NULL;
               END $$""",
            """CREATE TRIGGER records_notify AFTER INSERT OR UPDATE ON {schema}.records
               FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_changes()""",
        ),
    ),
    (
        2,
        (
            # The end of a record's time to live (epoch seconds; NULL: none), so every agent's
            # reads treat it as gone once it passes, not only the writer's (issue 11).
            "ALTER TABLE {schema}.records ADD COLUMN expires double precision",
        ),
    ),
)
LATEST_VERSION = MIGRATIONS[-1][0]


class SchemaTooNew(ConfigError):
    """The database was migrated by a newer kit: refuse instead of guessing."""


def channel_name(schema: str) -> str:
    return schema + CHANGES_CHANNEL_SUFFIX


def migrate(conn: psycopg.Connection, schema: str) -> list[int]:
    """Bring `schema` to LATEST_VERSION; returns the versions this call applied."""
    ident = sql.Identifier(schema)
    if _current_version(conn, schema) == LATEST_VERSION:
        return []  # the common case: no lock, no writes
    applied: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.migrations (version integer PRIMARY KEY, "
                "applied_at timestamptz NOT NULL DEFAULT now(), applied_by text NOT NULL)"
            ).format(ident)
        )
        current = _current_version(conn, schema)
        for version, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                conn.execute(sql.SQL(statement).format(schema=ident))
            conn.execute(
                sql.SQL("INSERT INTO {}.migrations (version, applied_by) VALUES (%s, %s)").format(
                    ident
                ),
                (version, socket.gethostname()),
            )
            applied.append(version)
    return applied


def _current_version(conn: psycopg.Connection, schema: str) -> int:
    table = f"{schema}.migrations"
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    if not row or not row[0]:
        return 0
    found = conn.execute(
        sql.SQL("SELECT coalesce(max(version), 0) FROM {}.migrations").format(
            sql.Identifier(schema)
        )
    ).fetchone()
    version = int(found[0]) if found else 0
    if version > LATEST_VERSION:
        raise SchemaTooNew(
            "postgres.schema",
            schema,
            f"the database holds schema version {version}, newer than this agent knows "
            f"({LATEST_VERSION}): upgrade the agent",
        )
    return version
