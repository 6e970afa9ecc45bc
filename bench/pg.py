"""PostgreSQL tier rows, on a throwaway cluster with fsync on: `python -m bench.pg [--quick]`.

- direct psycopg upsert (one autocommit INSERT .. ON CONFLICT per op, a connection per client)
  against the tier's group-committed `submit` (what sync PUT will call), at 1 and 8 clients;
- invalidation delay: write on tier A until B's listener callback has it, p50/p99;
- restore: `read(None)` of 100k records by binary COPY;
- contention: 8 writers doing If-Match increments of one key, commits per second.

The agent's HTTP layer is not in these rows (the lead wires the tier in); they bound what the
tier itself adds over the database.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from bootstrap.tiers.pg_config import parse_postgres_config
from bootstrap.tiers.postgres import Change, PostgresTier, PreconditionFailed
from tests.pgcluster import PgCluster

ROLE = "spine_bench"
VALUE = b'{"state":"running","progress":0.42,"note":"' + b"x" * 140 + b'"}'  # ~200 B
DIRECT_UPSERT = """INSERT INTO bench (k, v) VALUES (%s, %s::json)
ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"""


def _clients(count: int, seconds: float, op: Callable[[int, int], None]) -> float:
    """ops/s of `count` threads each calling op(client, n) for `seconds`."""
    done = [0] * count
    stop = threading.Event()
    barrier = threading.Barrier(count + 1)

    def client(c: int) -> None:
        barrier.wait()
        n = 0
        while not stop.is_set():
            op(c, n)
            n += 1
        done[c] = n

    threads = [threading.Thread(target=client, args=(c,)) for c in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - started)


def direct_upsert(dsn: dict[str, Any], clients: int, seconds: float) -> float:
    conns = [psycopg.connect(**dsn, autocommit=True) for _ in range(clients)]
    conns[0].execute("CREATE TABLE IF NOT EXISTS bench (k text PRIMARY KEY, v json)")
    value = VALUE.decode()
    try:
        def op(c: int, n: int) -> None:
            conns[c].execute(DIRECT_UPSERT, (f"c{c}-{n % 1000}", value))

        return _clients(clients, seconds, op)
    finally:
        for conn in conns:
            conn.close()


def tier_submit(tier: PostgresTier, clients: int, seconds: float) -> float:
    def op(c: int, n: int) -> None:
        tier.submit(Change("sessions", f"c{c}-{n % 1000}", VALUE, "session", time.time()))

    return _clients(clients, seconds, op)


def invalidation(a: PostgresTier, b: PostgresTier, samples: int) -> dict[str, float]:
    arrived: dict[str, float] = {}
    ready = threading.Condition()

    def on_changes(changes: list[Change]) -> None:
        now = time.perf_counter()
        with ready:
            for change in changes:
                arrived.setdefault(change.key, now)
            ready.notify_all()

    listener = b.listen(on_changes, since=b.open(), poll_interval=60.0)
    listener.wait_connected(30)
    delays = []
    for i in range(samples):
        key = f"inv{i}"
        started = time.perf_counter()
        a.write([Change("agents", key, VALUE, "critical", time.time())])
        with ready:
            ready.wait_for(lambda key=key: key in arrived, timeout=30)
        delays.append((arrived[key] - started) * 1000)
        time.sleep(0.005)
    delays.sort()
    return {
        "p50_ms": round(statistics.median(delays), 2),
        "p99_ms": round(delays[max(0, int(len(delays) * 0.99) - 1)], 2),
        "samples": samples,
    }


def restore(tier: PostgresTier, count: int) -> dict[str, float]:
    for start in range(0, count, 10_000):
        tier.write([
            Change("sessions", f"r{i}", VALUE, "session", 1.0)
            for i in range(start, min(count, start + 10_000))
        ])
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        got = sum(1 for _ in tier.read(None))
        runs.append(time.perf_counter() - started)
        if got < count:
            raise RuntimeError(f"restore read {got} of {count}")
    return {"records": count, "seconds_median": round(statistics.median(runs), 3)}


def contention(tier: PostgresTier, writers: int, seconds: float) -> float:
    tier.write_conditional(Change("agents", "counter", b"0", "critical", 0.0), if_absent=True)
    commits = [0] * writers

    def op(c: int, n: int) -> None:
        version = tier.current_version("agents", "counter") or 0
        try:
            tier.write_conditional(
                Change("agents", "counter", str(n).encode(), "critical", time.time()),
                if_match=version,
            )
            commits[c] += 1
        except PreconditionFailed:
            pass

    started = time.perf_counter()
    _clients(writers, seconds, op)
    return sum(commits) / (time.perf_counter() - started)


def run(quick: bool) -> dict[str, Any]:
    seconds = 0.5 if quick else 3.0
    cluster = PgCluster(fast=False).init()
    cluster.start()
    results: dict[str, Any] = {}
    try:
        password = secrets.token_urlsafe(18)
        cluster.create_role(ROLE, password)
        db = cluster.create_database(ROLE)
        with tempfile.TemporaryDirectory() as tmp:
            secret = Path(tmp) / "pw"
            secret.write_text(password)
            secret.chmod(0o600)
            section = {"dsn": cluster.tcp_dsn(db, ROLE), "password_file": str(secret)}
            config = parse_postgres_config(section, Path(tmp))
            a, b = PostgresTier(config, host="a", pool_size=8), PostgresTier(config, host="b")
            a.open()
            b.open()
            try:
                for clients in (1, 8):
                    direct = direct_upsert(config.connect_kwargs(), clients, seconds)
                    before = a.status()["committer"]
                    grouped = tier_submit(a, clients, seconds)
                    after = a.status()["committer"]
                    batches = after["batches"] - before["batches"]
                    results[f"put_{clients}_clients"] = {
                        "mean_batch": round((after["changes"] - before["changes"]) / batches, 1),
                        "direct_upsert_ops": round(direct),
                        "tier_sync_ops": round(grouped),
                        "ratio": round(grouped / direct, 2),
                    }
                results["invalidation"] = invalidation(a, b, 50 if quick else 300)
                results["restore"] = restore(a, 10_000 if quick else 100_000)
                results["contention_8_writers_commits_per_s"] = round(contention(a, 8, seconds))
            finally:
                a.close()
                b.close()
    finally:
        cluster.destroy()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
