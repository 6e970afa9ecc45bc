"""Clients with one shape (get(key), put(key, value)) for the agent and each of its peers.

The latency and throughput loops only see this shape, so every system pays the same harness
overhead. A client is built by a factory so that each worker thread or process opens its own
connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import orjson
import redis

from bootstrap.client import JSON_HEADERS, ApiClient
from bootstrap.records import PersistenceClass
from bootstrap.storage import HybridStorage


class Client(Protocol):
    def get(self, key: str) -> object: ...

    def put(self, key: str, value: bytes) -> object: ...

    def close(self) -> None: ...


ClientFactory = Callable[[], Client]


class InProcessAgent:
    """HybridStorage called directly: get_json (raw bytes) or get (parsed), put(value)."""

    def __init__(self, storage: HybridStorage, collection: str, parsed: bool = False) -> None:
        self.storage = storage
        self.collection = collection
        self._get = storage.get if parsed else storage.get_json
        self._objects: dict[bytes, Any] = {}

    def get(self, key: str) -> object:
        return self._get(self.collection, key)

    def put(self, key: str, value: bytes) -> object:
        obj = self._objects.get(value)
        if obj is None:
            obj = self._objects[value] = orjson.loads(value)
        # put() serialises the object itself: the library's real call path.
        return self.storage.put(self.collection, key, obj)

    def close(self) -> None:
        pass


class SocketAgent:
    """The shared API client (http.client, keep-alive) on the agent's unix socket."""

    def __init__(self, socket_path: Path, collection: str) -> None:
        self.client = ApiClient(socket_path, timeout=60)
        self.prefix = f"/v1/records/{collection}/"

    def get(self, key: str) -> bytes:
        reply = self.client.request("GET", self.prefix + key)
        if reply.status != 200:
            raise RuntimeError(f"GET {key}: {reply.status} {reply.body[:200]!r}")
        return reply.body

    def put(self, key: str, value: bytes) -> bytes:
        reply = self.client.request("PUT", self.prefix + key, value, JSON_HEADERS)
        if reply.status != 200:
            raise RuntimeError(f"PUT {key}: {reply.status} {reply.body[:200]!r}")
        return reply.body

    def close(self) -> None:
        self.client.close()


class BareHttp:
    """The same shared client (http.client, keep-alive) on the bare ASGI app: the HTTP floor."""

    def __init__(self, socket_path: Path, collection: str) -> None:
        self.client = ApiClient(socket_path, timeout=60)
        self.prefix = f"/v1/records/{collection}/"

    def get(self, key: str) -> bytes:
        reply = self.client.request("GET", self.prefix + key)
        if reply.status != 200:
            raise RuntimeError(f"GET {key}: {reply.status} {reply.body[:200]!r}")
        return reply.body

    def put(self, key: str, value: bytes) -> bytes:
        reply = self.client.request("PUT", self.prefix + key, value, JSON_HEADERS)
        if reply.status != 200:
            raise RuntimeError(f"PUT {key}: {reply.status} {reply.body[:200]!r}")
        return reply.body

    def close(self) -> None:
        self.client.close()


class RedisPeer:
    """redis-py (hiredis parser) over a unix socket; keys are `collection:key`."""

    def __init__(self, socket_path: Path, collection: str) -> None:
        self.client = redis.Redis(unix_socket_path=str(socket_path))
        self.prefix = f"{collection}:"

    def get(self, key: str) -> bytes | None:
        return self.client.get(self.prefix + key)  # type: ignore[return-value]

    def put(self, key: str, value: bytes) -> object:
        return self.client.set(self.prefix + key, value)

    def close(self) -> None:
        self.client.close()


class RedisBatchPeer:
    """MGET, or a pipeline of SETs (no MULTI), of `batch` consecutive keys per call: Redis'
    bulk read and bulk write, the peers of the agent's bulk endpoints. Each call takes the
    next `batch` keys of the list it is given, so every batch is of distinct, existing keys."""

    def __init__(
        self, socket_path: Path, collection: str, keys: list[str], batch: int = 100
    ) -> None:
        self.client = redis.Redis(unix_socket_path=str(socket_path))
        self.names = [f"{collection}:{key}" for key in keys]
        self.batch = batch
        self.offset = 0

    def _next(self) -> list[str]:
        start = self.offset
        self.offset = (start + self.batch) % (len(self.names) - self.batch)
        return self.names[start : start + self.batch]

    def get(self, key: str) -> object:
        values = self.client.mget(self._next())
        if any(v is None for v in values):
            raise RuntimeError("MGET: a preloaded key is missing")
        return values

    def put(self, key: str, value: bytes) -> object:
        pipe = self.client.pipeline(transaction=False)
        for name in self._next():
            pipe.set(name, value)
        return pipe.execute()

    def close(self) -> None:
        self.client.close()


SQLITE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS kv (c TEXT NOT NULL, k TEXT NOT NULL, v BLOB NOT NULL, "
    "PRIMARY KEY (c, k)) WITHOUT ROWID"
)


class SQLitePeer:
    """SQLite in WAL mode, autocommit: each put is its own transaction (commit = durable
    with synchronous=FULL; NORMAL may lose the last commits on power loss)."""

    def __init__(self, path: Path, collection: str, synchronous: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        self.db.execute("PRAGMA busy_timeout=30000")
        self.db.execute(SQLITE_SCHEMA)
        self.collection = collection

    def get(self, key: str) -> bytes | None:
        row = self.db.execute(
            "SELECT v FROM kv WHERE c = ? AND k = ?", (self.collection, key)
        ).fetchone()
        return None if row is None else row[0]

    def put(self, key: str, value: bytes) -> object:
        return self.db.execute(
            "INSERT INTO kv (c, k, v) VALUES (?, ?, ?) "
            "ON CONFLICT (c, k) DO UPDATE SET v = excluded.v",
            (self.collection, key, value),
        )

    def close(self) -> None:
        self.db.close()


def preload_sqlite(path: Path, collection: str, keys: list[str], values: list[bytes]) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(SQLITE_SCHEMA)
    db.execute("BEGIN")
    db.executemany(
        "INSERT OR REPLACE INTO kv (c, k, v) VALUES (?, ?, ?)",
        ((collection, k, values[i % len(values)]) for i, k in enumerate(keys)),
    )
    db.execute("COMMIT")
    db.close()


def preload_redis(
    client: redis.Redis, collection: str, keys: list[str], values: list[bytes]
) -> None:
    pipe = client.pipeline(transaction=False)
    for i, key in enumerate(keys):
        pipe.set(f"{collection}:{key}", values[i % len(values)])
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()


def preload_storage(
    storage: HybridStorage,
    collection: str,
    keys: list[str],
    values: list[bytes],
    cls: PersistenceClass | None = None,
) -> None:
    """Bulk load through put_json without waiting per put, then one sync."""
    for i, key in enumerate(keys):
        storage.put_json(collection, key, values[i % len(values)], cls, wait=False, canonical=True)
    storage.sync()
