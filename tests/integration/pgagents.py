"""Helpers for the multi-agent PostgreSQL tests: a server the module owns, fresh databases, agents
wired to them, conditional HTTP writes and a direct look at the records table.

The module owns its server (not the session's `pg_cluster`) because these tests stop it with
`pg_ctl stop -m immediate` and start it again mid-load; other modules must not see that.
Everything is real: PostgreSQL 15, TLS on 127.0.0.1, scram passwords, agents as subprocesses.
"""

from __future__ import annotations

import http.client
import json
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bootstrap.client import JSON_HEADERS, Reply, record_path
from tests.pgcluster import PgCluster

from .conftest import Agent, AgentFactory, Client

ROLE = "spine_agents"
SCHEMA = "spine"
TRANSPORT_ERRORS = (OSError, http.client.HTTPException)


@dataclass
class Server:
    """The module's PostgreSQL server and the role every agent logs in as."""

    cluster: PgCluster
    password_file: Path
    databases: int = 0

    def database(self) -> Database:
        return Database(self, self.cluster.create_database(ROLE))

    def stop(self) -> None:
        """A crash of the server: no checkpoint, every client cut off at once."""
        self.cluster.stop("immediate")

    def start(self) -> None:
        self.cluster.start()


def start_server() -> Iterator[Server]:
    """Body of a module-scoped fixture: initdb, start, a role with a 0600 password file."""
    cluster = PgCluster(fast=True).init()
    secret_dir = Path(tempfile.mkdtemp(prefix="ssk-pgpw-", dir="/tmp"))
    try:
        cluster.start()
        password = secrets.token_urlsafe(24)
        cluster.create_role(ROLE, password)
        secret = secret_dir / "password"
        secret.write_text(password + "\n")
        secret.chmod(0o600)
        yield Server(cluster, secret)
    finally:
        cluster.destroy()
        for path in secret_dir.iterdir():
            path.unlink()
        secret_dir.rmdir()


@dataclass
class Database:
    """One database owned by the agents' role."""

    server: Server
    name: str

    @property
    def cluster(self) -> PgCluster:
        return self.server.cluster

    def dsn(self, **kwargs: Any) -> str:
        return self.cluster.tcp_dsn(self.name, ROLE, **kwargs)

    def section(self, **overrides: Any) -> dict[str, Any]:
        """A `postgres:` config section (TLS on 127.0.0.1, verify-ca, password file)."""
        section: dict[str, Any] = {
            "dsn": self.dsn(),
            "password_file": str(self.server.password_file),
        }
        section.update(overrides)
        return section

    def admin(self) -> psycopg.Connection:
        return self.cluster.admin(self.name)

    def rows(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every row of the records table, read as the superuser, not through the agent."""
        with self.admin() as conn:
            found = conn.execute(
                f"SELECT collection, key, value::text, version, deleted, host "
                f"FROM {SCHEMA}.records"
            ).fetchall()
        return {
            (coll, key): {
                "value": None if text is None else json.loads(text),
                "version": int(version),
                "deleted": bool(deleted),
                "host": host,
            }
            for coll, key, text, version, deleted, host in found
        }

    def live(self) -> dict[tuple[str, str], Any]:
        """The values of the rows that are not tombstones."""
        return {k: r["value"] for k, r in self.rows().items() if not r["deleted"]}


def pg_agent(
    agents: AgentFactory, db: Database, name: str, write: str = "sync", **config: Any
) -> Agent:
    """An agent of its own storage path, sharing `db`; `postgres` overrides merge in."""
    section = db.section(write=write, **config.pop("postgres", {}))
    if write == "async":
        section.setdefault("max_lag", "200ms")
    return agents.new(name, postgres=section, **config)


# -- HTTP with preconditions ------------------------------------------------------------------
def put(
    client: Client,
    collection: str,
    key: str,
    value: Any,
    if_match: int | str | None = None,
    if_absent: bool = False,
) -> Reply:
    headers = dict(JSON_HEADERS)
    if if_match is not None:
        headers["If-Match"] = if_match if isinstance(if_match, str) else f'"{if_match}"'
    if if_absent:
        headers["If-None-Match"] = "*"
    body = json.dumps(value).encode()
    return client.request("PUT", record_path(collection, key), body, headers)


def delete(client: Client, collection: str, key: str, if_match: int | None = None) -> Reply:
    headers = {"If-Match": f'"{if_match}"'} if if_match is not None else {}
    return client.request("DELETE", record_path(collection, key), None, headers)


def etag(reply: Reply) -> int:
    """The version a reply's strong ETag carries: `"<decimal>"`."""
    tag = reply.headers.get("etag")
    assert tag is not None, f"no ETag in a {reply.status} reply: {reply.headers}"
    assert tag.startswith('"') and tag.endswith('"') and tag[1:-1].isdigit(), tag
    return int(tag[1:-1])


def value_of(client: Client, collection: str, key: str) -> Any:
    """The record's value on this agent, or None when it answers 404."""
    reply = client.get(collection, key)
    if reply.status == 404:
        return None
    assert reply.status == 200, (reply.status, reply.body)
    return reply.json()


def pg_status(client: Client) -> dict[str, Any]:
    """The postgres tier's part of GET /v1/status."""
    status = client.status()
    tiers = status.get("tiers", {})
    assert "postgres" in tiers, f"no postgres tier in status: {sorted(tiers)}"
    section: dict[str, Any] = tiers["postgres"]
    return section
