"""Resident memory at 100k records: the daemon, a bare in-process store, and Redis for scale.

In-process figures come from a fresh child interpreter (`python -m bench.rss load|put ROOT`),
so nothing the bench itself allocated is counted. The daemon is `spine-agent run` restoring the
100k warm files the backup section left; Redis holds the same 100k keys and values.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import psutil

from .backup import record_ids
from .common import loadavg, make_values
from .peers import SocketAgent, preload_redis
from .servers import AgentDaemon, RedisServer

MB = 1024 * 1024


def _rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def child(mode: str, root: Path) -> dict[str, Any]:
    """In a fresh interpreter: RSS after imports, then after loading 100k records."""
    from bootstrap.storage import HybridStorage

    from .common import agent_config

    # The bench's own ids and values exist before the baseline, so only the agent's copies
    # count. put_json without canonical= parses and re-encodes each value, as the socket API
    # does: the agent holds fresh bytes, not references to ours.
    ids = record_ids(100_000) if mode == "put" else []
    values = make_values(100_000, seed=1) if mode == "put" else []
    base = _rss()
    storage = HybridStorage(agent_config(root))
    started = time.perf_counter()
    storage.initialize()
    for (collection, key), value in zip(ids, values, strict=True):
        storage.put_json(collection, key, value, wait=False)
    storage.sync()
    seconds = time.perf_counter() - started
    after = _rss()
    return {
        "mode": mode,
        "records": storage.record_count(),
        "rss_base_mb": round(base / MB, 1),
        "rss_mb": round(after / MB, 1),
        "delta_mb": round((after - base) / MB, 1),
        "memory_tier_bytes": storage.status()["tiers"]["memory"]["bytes"],
        "seconds": round(seconds, 3),
    }


def _run_child(mode: str, root: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.rss", mode, str(root)],
        capture_output=True,
        check=True,
        timeout=300,
    )
    return dict(orjson.loads(proc.stdout.splitlines()[-1]))


PUT_CLIENTS = 8


def _put_worker(socket: Path, ids: list[tuple[str, str]], values: list[bytes]) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    client = SocketAgent(socket, "stats")  # collection replaced per record below
    for (collection, key), value in zip(ids, values, strict=True):
        client.prefix = f"/v1/records/{collection}/"
        client.put(key, value)
    client.close()


def put_over_socket(daemon: AgentDaemon) -> dict[str, Any]:
    """100k session-class puts over the socket from PUT_CLIENTS processes, then RSS.

    Session class (no per-put fdatasync) keeps this under a minute; a record costs the same
    memory in either class. The records are the same as the critical set, in `stats`-style
    session collections named after the critical ones plus `-s`.
    """
    ids = [(f"{c}-s", k) for c, k in record_ids(100_000)]
    values = make_values(100_000, seed=1)
    ctx = mp.get_context("fork")
    procs = [
        ctx.Process(target=_put_worker, args=(daemon.socket, ids[i::PUT_CLIENTS],
                                              values[i::PUT_CLIENTS]))
        for i in range(PUT_CLIENTS)
    ]
    started = time.perf_counter()
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
    seconds = time.perf_counter() - started
    if any(proc.exitcode != 0 for proc in procs):
        raise RuntimeError("a put worker failed")
    return {
        "puts": len(ids),
        "seconds": round(seconds, 2),
        "ops_s": round(len(ids) / seconds, 1),
        "rss_mb": round(daemon.rss_bytes() / MB, 1),
    }


def run_rss(backup_root: Path, scratch: Path) -> dict[str, Any]:
    started = time.perf_counter()
    source = backup_root / "100k"
    out: dict[str, Any] = {}
    out["in_process_restored"] = _run_child("load", source)
    out["in_process_put"] = _run_child("put", scratch / "inproc-put")
    empty = scratch / "empty-daemon"
    empty.mkdir(parents=True)
    with AgentDaemon(empty) as daemon:
        out["daemon_empty_mb"] = round(daemon.rss_bytes() / MB, 1)
        out["daemon_100k_puts"] = put_over_socket(daemon)
    with AgentDaemon(source) as daemon:
        loaded = daemon.rss_bytes()
        client = SocketAgent(daemon.socket, "agents")
        for i in range(0, 100_000, 52):  # every 52nd id is in "agents" (ids cycle 4 collections)
            client.get(f"r{i:07d}")
        out["daemon_100k"] = {
            "startup_s": round(daemon.startup_s, 3),
            "rss_mb": round(loaded / MB, 1),
            "rss_after_gets_mb": round(daemon.rss_bytes() / MB, 1),
        }
    with RedisServer(scratch, "everysec") as server:
        ids = record_ids(100_000)
        values = make_values(100_000, seed=1)  # the records the agent holds
        for collection in sorted({c for c, _ in ids}):
            mine = [j for j, (c, _) in enumerate(ids) if c == collection]
            keys = [ids[j][1] for j in mine]
            preload_redis(server.client(), collection, keys, [values[j] for j in mine])
        out["redis_100k_mb"] = round(server.rss_bytes() / MB, 1)
    out["load"] = loadavg()
    print(f"  rss: done in {time.perf_counter() - started:.1f}s, load {loadavg()}")
    return out


if __name__ == "__main__":
    print(orjson.dumps(child(sys.argv[1], Path(sys.argv[2]))).decode())
