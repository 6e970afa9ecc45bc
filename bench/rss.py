"""Resident memory at 100k records: the daemon, a bare in-process store, and Redis for scale.

In-process figures come from a fresh child interpreter (`python -m bench.rss load|put ROOT`),
so nothing the bench itself allocated is counted. The daemon is `spine-agent run` restoring the
100k warm files the backup section left; Redis holds the same 100k keys and values.
"""

from __future__ import annotations

import gc
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

    from .backup import fill
    from .common import agent_config

    base = _rss()
    storage = HybridStorage(agent_config(root))
    started = time.perf_counter()
    storage.initialize()
    if mode == "put":
        fill(storage, record_ids(100_000), make_values(100_000, seed=1))
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
