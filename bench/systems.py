"""Sets up every system of the get/put comparison on the same preloaded records.

The agent runs twice (in-process and as `spine-agent run` behind its socket), Redis twice
(appendfsync everysec and always), SQLite twice (synchronous FULL and NORMAL). All hold the same
keys and ~200-byte values before any sample is taken.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bootstrap.storage import HybridStorage

from .common import agent_config, make_keys, make_values, shuffled
from .peers import (
    BareHttp,
    ClientFactory,
    InProcessAgent,
    RedisBatchPeer,
    RedisPeer,
    SocketAgent,
    SQLitePeer,
    preload_redis,
    preload_sqlite,
    preload_storage,
)
from .servers import AgentDaemon, BareApp, RedisServer

PRELOAD = 10_000
CRITICAL = "agents"  # mapped to the critical class
SESSION = "stats"  # mapped to the session class


@dataclass(frozen=True)
class Case:
    """One measured operation: who, what, and how its clients run (thread or process)."""

    system: str
    op: str  # "get" or "put"
    label: str
    factory: ClientFactory
    worker: str  # "thread" (in-process libraries) or "process" (servers)
    max_ops: int
    durable: bool = False
    server_pid: int | None = None  # whose CPU time to charge per op (servers only)
    batch: int = 1  # records per op (bulk reads and writes); latency per record = p50 / batch


@dataclass
class Systems:
    cases: list[Case]
    keys: list[str]
    values: list[bytes]
    daemon: AgentDaemon
    bare: BareApp
    redis_version: str
    storage: HybridStorage


@contextlib.contextmanager
def start_systems(root: Path) -> Iterator[Systems]:
    """Start and preload everything; stop every server on exit, failure included."""
    keys = make_keys(PRELOAD)
    values = make_values()
    order = shuffled(keys)

    # The daemon restores its records from warm files written here (fast, and the same bytes).
    daemon_root = root / "daemon"
    seed = HybridStorage(agent_config(daemon_root))
    seed.initialize()
    preload_storage(seed, CRITICAL, keys, values)
    preload_storage(seed, SESSION, keys, values)
    seed.close(backup=False)

    inproc_root = root / "inproc"
    storage = HybridStorage(agent_config(inproc_root))
    storage.initialize()
    preload_storage(storage, CRITICAL, keys, values)
    preload_storage(storage, SESSION, keys, values)

    sqlite_path = root / "sqlite" / "bench.db"
    sqlite_path.parent.mkdir(parents=True)
    preload_sqlite(sqlite_path, CRITICAL, keys, values)
    sqlite_normal = root / "sqlite" / "normal.db"
    preload_sqlite(sqlite_normal, CRITICAL, keys, values)

    with contextlib.ExitStack() as stack:
        daemon = stack.enter_context(AgentDaemon(daemon_root))
        bare = stack.enter_context(BareApp(root))
        redis_es = stack.enter_context(RedisServer(root, "everysec"))
        redis_al = stack.enter_context(RedisServer(root, "always"))
        for server in (redis_es, redis_al):
            preload_redis(server.client(), CRITICAL, keys, values)
        stack.callback(storage.close, backup=False)

        sock = daemon.socket
        agent_pid = daemon.pid
        es_pid, al_pid = redis_es.pid, redis_al.pid
        bare_sock, bare_pid = bare.socket, bare.pid
        batch = 100
        fast, slow = 20_000, 4_000
        cases = [
            Case("agent in-process", "get", "get_json (hot, raw bytes)",
                 lambda: InProcessAgent(storage, CRITICAL), "thread", fast),
            Case("agent in-process", "get", "get (hot, parsed)",
                 lambda: InProcessAgent(storage, CRITICAL, parsed=True), "thread", fast),
            Case("agent in-process", "put", "put critical (fdatasync)",
                 lambda: InProcessAgent(storage, CRITICAL), "thread", slow, durable=True),
            Case("agent in-process", "put", "put session",
                 lambda: InProcessAgent(storage, SESSION), "thread", fast),
            Case("agent socket", "get", "GET",
                 lambda: SocketAgent(sock, CRITICAL), "process", slow, server_pid=agent_pid),
            Case("agent socket", "put", "PUT critical (fdatasync)",
                 lambda: SocketAgent(sock, CRITICAL), "process", slow, True, agent_pid),
            Case("agent socket", "put", "PUT session",
                 lambda: SocketAgent(sock, SESSION), "process", slow, server_pid=agent_pid),
            Case("bare ASGI app (same stack)", "get", "GET (constant 200 B)",
                 lambda: BareHttp(bare_sock, CRITICAL), "process", slow, server_pid=bare_pid),
            Case("redis everysec", "get", "GET",
                 lambda: RedisPeer(redis_es.socket, CRITICAL), "process", slow, server_pid=es_pid),
            Case("redis everysec", "put", "SET",
                 lambda: RedisPeer(redis_es.socket, CRITICAL), "process", slow, server_pid=es_pid),
            Case("redis always", "get", "GET",
                 lambda: RedisPeer(redis_al.socket, CRITICAL), "process", slow, server_pid=al_pid),
            Case("redis always", "put", "SET (fsync)",
                 lambda: RedisPeer(redis_al.socket, CRITICAL), "process", slow, True, al_pid),
            Case("redis always", "get", f"MGET {batch} keys",
                 lambda: RedisBatchPeer(redis_al.socket, CRITICAL, keys, batch), "process",
                 slow // 10, server_pid=al_pid, batch=batch),
            Case("redis always", "put", f"pipelined SET {batch} keys (fsync)",
                 lambda: RedisBatchPeer(redis_al.socket, CRITICAL, keys, batch), "process",
                 slow // 10, True, al_pid, batch=batch),
            Case("sqlite WAL FULL", "get", "SELECT",
                 lambda: SQLitePeer(sqlite_path, CRITICAL, "FULL"), "thread", fast),
            Case("sqlite WAL FULL", "put", "UPSERT (fsync per commit)",
                 lambda: SQLitePeer(sqlite_path, CRITICAL, "FULL"), "thread", slow, durable=True),
            Case("sqlite WAL NORMAL", "put", "UPSERT (no fsync per commit)",
                 lambda: SQLitePeer(sqlite_normal, CRITICAL, "NORMAL"), "thread", fast),
        ]  # fmt: skip
        yield Systems(
            cases=cases,
            keys=order,
            values=values,
            daemon=daemon,
            bare=bare,
            redis_version=redis_es.version(),
            storage=storage,
        )

