"""The PostgreSQL tier's rows of `make bench` (issue 8 §4); alone: `make bench-pg` or
`python -m bench.pg [--quick]`.

One throwaway PostgreSQL 15 (tests/pgcluster.py) with fsync on, reached the way agents reach it
(TLS on 127.0.0.1, scram password), and in the same run:
- PUT throughput at 1 and 8 clients: the agent with `write: sync`, the agent with
  `write: async`, a direct psycopg upsert on the same server (a table shaped like the agent's:
  value json, version +1, mtime; no trigger), and Redis `appendfsync always`. Clients are
  processes with one connection each, timed by the same loop as the throughput table;
- cross-agent invalidation: a PUT acknowledged by agent A until agent B serves the new value
  (B is polled with GETs as fast as one client can), p50/p99;
- restore of 100k records (half critical, half session) from PostgreSQL into an agent with an
  empty storage path: `HybridStorage.initialize()` in-process (as the other restore rows), and
  the daemon from exec to serving;
- If-Match contention: 8 client processes doing GET + conditional PUT of one key on one agent,
  commits per second (and 412s per second).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import multiprocessing as mp
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson
import psycopg

from bootstrap.client import JSON_HEADERS, ApiClient
from bootstrap.config import AgentConfig, config_from_mapping
from bootstrap.storage import HybridStorage
from bootstrap.tiers.pg_config import parse_postgres_config
from bootstrap.tiers.postgres import Change, PostgresTier
from tests.pgcluster import PgCluster

from . import throughput
from .common import BRANCH, check_stop, loadavg, make_keys, make_values, shuffled
from .peers import RedisPeer, SocketAgent
from .servers import AgentDaemon, RedisServer
from .systems import CRITICAL, Case

ROLE = "spine_bench"
SESSION = "sessions"
RESTORE_RECORDS = 100_000
INVALIDATION_SAMPLES = 300
CONTENTION_WRITERS = 8
POLL_PAUSE = 0.001  # between B's GETs in the invalidation row (0: B saturated by reads)
DIRECT_TABLE = """CREATE TABLE IF NOT EXISTS bench_records (
    collection text NOT NULL, key text NOT NULL, value json NOT NULL,
    version bigint NOT NULL, mtime double precision NOT NULL, PRIMARY KEY (collection, key))"""
DIRECT_UPSERT = """INSERT INTO bench_records AS r (collection, key, value, version, mtime)
VALUES (%s, %s, %s::json, 1, extract(epoch FROM clock_timestamp()))
ON CONFLICT (collection, key) DO UPDATE
SET value = EXCLUDED.value, version = r.version + 1, mtime = EXCLUDED.mtime"""


@dataclass(frozen=True)
class Server:
    """The cluster, the bench role's password file and one database per purpose."""

    cluster: PgCluster
    password_file: Path

    def section(self, database: str, **extra: Any) -> dict[str, Any]:
        return {
            "dsn": self.cluster.tcp_dsn(database, ROLE),
            "password_file": str(self.password_file),
            **extra,
        }

    def connect_kwargs(self, database: str) -> dict[str, Any]:
        config = parse_postgres_config(self.section(database), self.password_file.parent)
        return config.connect_kwargs()


@contextlib.contextmanager
def postgres(root: Path) -> Iterator[Server]:
    """A fsync-on cluster, stopped on the way out whatever happens."""
    cluster = PgCluster(fast=False).init()
    try:
        cluster.start()
        password = secrets.token_urlsafe(18)
        cluster.create_role(ROLE, password)
        root.mkdir(parents=True, exist_ok=True)
        secret = root / "pg-password"
        secret.write_text(password + "\n")
        secret.chmod(0o600)
        yield Server(cluster, secret)
    finally:
        cluster.destroy()


def _yaml_section(section: dict[str, Any]) -> str:
    lines = ["postgres:"]
    lines += [f"  {key}: {orjson.dumps(value).decode()}" for key, value in section.items()]
    return "\n".join(lines) + "\n"


class PgDirectPeer:
    """psycopg 3 on its own connection: one autocommit upsert per put (prepared)."""

    def __init__(self, connect_kwargs: dict[str, Any], collection: str) -> None:
        self.conn = psycopg.connect(**connect_kwargs, autocommit=True)
        self.collection = collection

    def get(self, key: str) -> object:
        return self.conn.execute(
            "SELECT value::text FROM bench_records WHERE collection = %s AND key = %s",
            (self.collection, key), prepare=True,
        ).fetchone()

    def put(self, key: str, value: bytes) -> object:
        return self.conn.execute(
            DIRECT_UPSERT, (self.collection, key, value.decode()), prepare=True
        )

    def close(self) -> None:
        self.conn.close()


class TierPeer:
    """The sync tier's group committer called directly (what a sync PUT waits for)."""

    def __init__(self, tier: PostgresTier, collection: str) -> None:
        self.tier = tier
        self.collection = collection

    def get(self, key: str) -> object:
        return self.tier.current_version(self.collection, key)

    def put(self, key: str, value: bytes) -> object:
        return self.tier.submit(Change(self.collection, key, value, "critical", time.time()))

    def close(self) -> None:
        pass


# -- throughput -------------------------------------------------------------------------------
def run_put_rows(
    server: Server, root: Path, keys: list[str], values: list[bytes], repeats: int
) -> list[dict[str, Any]]:
    # A database each: no agent's listener works for another's writes mid-sample.
    sync_db, async_db, direct_db, tier_db = (
        server.cluster.create_database(ROLE) for _ in range(4)
    )
    direct_kwargs = server.connect_kwargs(direct_db)
    with psycopg.connect(**direct_kwargs, autocommit=True) as conn:
        conn.execute(DIRECT_TABLE)
    sync_yaml = _yaml_section(server.section(sync_db, write="sync"))
    async_yaml = _yaml_section(server.section(async_db, write="async", max_lag="1s"))
    with contextlib.ExitStack() as stack:
        sync = stack.enter_context(AgentDaemon(root / "put-sync", "sync", sync_yaml))
        lazy = stack.enter_context(AgentDaemon(root / "put-async", "async", async_yaml))
        redis_always = stack.enter_context(RedisServer(root, "always"))
        tier = PostgresTier(
            parse_postgres_config(server.section(tier_db, write="sync"), root), host="bench"
        )
        tier.open()
        stack.callback(tier.close)
        sync_sock, async_sock, redis_sock = sync.socket, lazy.socket, redis_always.socket
        cases = [
            Case("agent + postgres sync", "put", "PUT critical",
                 lambda: SocketAgent(sync_sock, CRITICAL), "process", 0, True, sync.pid),
            Case("agent + postgres async", "put", "PUT critical",
                 lambda: SocketAgent(async_sock, CRITICAL), "process", 0, True, lazy.pid),
            Case("psycopg direct", "put", "upsert (autocommit)",
                 lambda: PgDirectPeer(direct_kwargs, CRITICAL), "process", 0, True),
            Case("redis always", "put", "SET (fsync)",
                 lambda: RedisPeer(redis_sock, CRITICAL), "process", 0, True, redis_always.pid),
            # Where the agent's time goes: the tier's group commit alone, no HTTP, no journal.
            Case("postgres tier alone", "put", "submit (in-process threads)",
                 lambda: TierPeer(tier, CRITICAL), "thread", 0, True),
        ]  # fmt: skip
        plan = [(case, clients) for clients in throughput.CONCURRENCY for case in cases]
        runs: dict[int, list[dict[str, float]]] = {i: [] for i in range(len(plan))}
        for _ in range(repeats):
            for i, (case, clients) in enumerate(plan):
                runs[i].append(throughput.sample(case, keys, values, clients))
                if case.server_pid == lazy.pid:
                    settle(async_sock)  # its shipping must not overlap the next sample
    rows = []
    for i, (case, clients) in enumerate(plan):
        samples = runs[i]
        rows.append({
            "system": case.system,
            "label": case.label,
            "clients": clients,
            "ops_s": round(statistics.median(s["ops_s"] for s in samples), 1),
            "p50_us": round(statistics.median(s["p50_us"] for s in samples), 1),
            "p99_us": round(statistics.median(s["p99_us"] for s in samples), 1),
            "server_cpu_us_per_op": (
                round(statistics.median(s["server_cpu_us_per_op"] for s in samples), 1)
                if case.server_pid else None
            ),
            "repeats": len(samples),
        })
    return rows


def settle(socket_path: Path, timeout: float = 120.0) -> float:
    """Wait until an async agent has shipped its backlog; the seconds it took."""
    started = time.perf_counter()
    with ApiClient(socket_path) as client:
        while time.perf_counter() - started < timeout:
            status = orjson.loads(client.request("GET", "/v1/status").body)
            if status["tiers"]["postgres"]["backlog"] == 0:
                return time.perf_counter() - started
            time.sleep(0.05)
    raise RuntimeError(f"the async agent still had a backlog after {timeout}s")


# -- invalidation ---------------------------------------------------------------------------
def run_invalidation(
    server: Server, root: Path, samples: int, poll_pause: float = POLL_PAUSE
) -> dict[str, Any]:
    """A PUT acknowledged by A until B serves it. B is polled every `poll_pause` seconds; with
    no pause the poll loop keeps B's event loop busy, and B's listener thread waits for the
    GIL behind it: that is the delay on an agent saturated by reads."""
    database = server.cluster.create_database(ROLE)
    section = _yaml_section(server.section(database, write="sync"))
    with AgentDaemon(root / "inv-a", "a", section) as a, AgentDaemon(
        root / "inv-b", "b", section
    ) as b:
        writer, reader = ApiClient(a.socket), ApiClient(b.socket)
        path = f"/v1/records/{CRITICAL}/invalidated"
        delays, polls = [], []
        for i in range(samples + 5):  # the first few warm both agents up
            check_stop()
            body = orjson.dumps({"i": i, "pad": "x" * 180})
            reply = writer.request("PUT", path, body, JSON_HEADERS)
            if reply.status != 200:
                raise RuntimeError(f"PUT on A: {reply.status} {reply.body[:200]!r}")
            acked = time.perf_counter()
            deadline = acked + 30
            n = 0
            while True:
                n += 1
                got = reader.request("GET", path)
                if got.status == 200 and got.body == body:
                    break
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"B never served sample {i}: {got.status}")
                if poll_pause:
                    time.sleep(poll_pause)
            if i >= 5:
                delays.append((time.perf_counter() - acked) * 1000)
                polls.append(n)
            time.sleep(0.005)
        writer.close()
        reader.close()
    delays.sort()
    return {
        "poll_pause_ms": poll_pause * 1000,
        "samples": len(delays),
        "p50_ms": round(_pct(delays, 0.50), 2),
        "p99_ms": round(_pct(delays, 0.99), 2),
        "max_ms": round(delays[-1], 2),
        "mean_polls": round(statistics.mean(polls), 1),
    }


def _pct(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


# -- restore --------------------------------------------------------------------------------
def fill(server: Server, database: str, count: int) -> None:
    """`count` records straight into the tier (half critical, half session), 10k per batch."""
    config = parse_postgres_config(server.section(database), server.password_file.parent)
    tier = PostgresTier(config, host="bench-fill")
    tier.open()
    values = make_values()
    try:
        for start in range(0, count, 10_000):
            check_stop()
            tier.write([
                Change(
                    CRITICAL if i % 2 else SESSION, f"r{i:07d}", values[i % len(values)],
                    "critical" if i % 2 else "session", 1_700_000_000.0 + i / 1000,
                )
                for i in range(start, min(count, start + 10_000))
            ])
    finally:
        tier.close()


def run_restore(server: Server, root: Path, count: int, repeats: int) -> dict[str, Any]:
    database = server.cluster.create_database(ROLE)
    started = time.perf_counter()
    fill(server, database, count)
    fill_s = time.perf_counter() - started
    section = server.section(database, write="sync")
    in_process, daemon = [], []
    for n in range(repeats):
        check_stop()
        storage = HybridStorage(_storage_config(root / f"restore-{n}", section))
        t0 = time.perf_counter()
        storage.initialize()
        in_process.append(time.perf_counter() - t0)
        got = storage.record_count()
        storage.close(backup=False)
        if got < count:
            raise RuntimeError(f"in-process restore held {got} of {count} records")
        with AgentDaemon(root / f"restore-daemon-{n}", "r", _yaml_section(section)) as agent:
            daemon.append(agent.startup_s)
            with ApiClient(agent.socket) as client:
                records = orjson.loads(client.request("GET", "/v1/status").body)["records"]
            if records < count:
                raise RuntimeError(f"daemon restore held {records} of {count} records")
    empty = server.cluster.create_database(ROLE)
    with AgentDaemon(root / "restore-empty", "e", _yaml_section(server.section(empty))) as agent:
        empty_start = agent.startup_s
    return {
        "records": count,
        "fill_s": round(fill_s, 2),
        "initialize_s": round(statistics.median(in_process), 3),
        "initialize_runs_s": [round(s, 3) for s in in_process],
        "daemon_start_to_serving_s": round(statistics.median(daemon), 3),
        "daemon_empty_db_start_s": round(empty_start, 3),
    }


def _storage_config(base: Path, section: dict[str, Any]) -> AgentConfig:
    """The bench's in-process agent config (tiering off) with a `postgres:` section, through
    the agent's own parser."""
    return config_from_mapping({
        "storage_path": str(base / "data"),
        "git": {"path": str(base / "backup.git"), "branch": BRANCH},
        "tiering": {"enabled": False},
        "log_level": "warning",
        "postgres": section,
    })


# -- contention -------------------------------------------------------------------------------
def _contender(socket_path: Path, seconds: float, barrier: Any, out: Connection) -> None:
    try:
        client = ApiClient(socket_path, timeout=60)
        path = f"/v1/records/{CRITICAL}/contended"
        commits = conflicts = 0
        barrier.wait()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            got = client.request("GET", path)
            tag = got.headers["etag"]
            count = orjson.loads(got.body)["n"]
            reply = client.request(
                "PUT", path, orjson.dumps({"n": count + 1}), {**JSON_HEADERS, "If-Match": tag}
            )
            if reply.status == 200:
                commits += 1
            elif reply.status == 412:
                conflicts += 1
            else:
                raise RuntimeError(f"If-Match PUT: {reply.status} {reply.body[:200]!r}")
        client.close()
        out.send((commits, conflicts))
    except BaseException as exc:  # report, don't hang the parent
        out.send(exc)
    finally:
        out.close()


def run_contention(server: Server, root: Path, seconds: float, repeats: int) -> dict[str, Any]:
    database = server.cluster.create_database(ROLE)
    section = _yaml_section(server.section(database, write="sync"))
    rates, conflict_rates, final = [], [], None
    with AgentDaemon(root / "contention", "c", section) as agent:
        with ApiClient(agent.socket) as client:
            path = f"/v1/records/{CRITICAL}/contended"
            reply = client.request("PUT", path, b'{"n":0}', {**JSON_HEADERS, "If-None-Match": "*"})
            if reply.status != 200:
                raise RuntimeError(f"create: {reply.status} {reply.body[:200]!r}")
        total = 0
        for _ in range(repeats):
            ctx = mp.get_context("fork")
            barrier = ctx.Barrier(CONTENTION_WRITERS + 1)
            procs, pipes = [], []
            for _ in range(CONTENTION_WRITERS):
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_contender, args=(agent.socket, seconds, barrier, send))
                proc.start()
                send.close()
                procs.append(proc)
                pipes.append(recv)
            barrier.wait()
            started = time.perf_counter()
            results = [recv.recv() for recv in pipes]
            elapsed = time.perf_counter() - started
            for proc in procs:
                proc.join(timeout=30)
            for res in results:
                if isinstance(res, BaseException):
                    raise RuntimeError(f"contention: {res!r}") from res
            commits = sum(r[0] for r in results)
            total += commits
            rates.append(commits / elapsed)
            conflict_rates.append(sum(r[1] for r in results) / elapsed)
        with ApiClient(agent.socket) as client:
            final = orjson.loads(client.request("GET", f"/v1/records/{CRITICAL}/contended").body)
    if final != {"n": total}:
        raise RuntimeError(f"contention lost an update: counter {final}, commits {total}")
    return {
        "writers": CONTENTION_WRITERS,
        "commits_per_s": round(statistics.median(rates), 1),
        "conflicts_per_s": round(statistics.median(conflict_rates), 1),
        "counter_checked": total,
    }


# -- the section ------------------------------------------------------------------------------
def run_pg(root: Path, quick: bool, repeats: int) -> dict[str, Any]:
    """Every PostgreSQL row, one server, same run."""
    started = time.perf_counter()
    keys = shuffled(make_keys(10_000))
    values = make_values()
    results: dict[str, Any] = {"fsync": True}
    with postgres(root / "pg") as server:
        sections: dict[str, Callable[[], Any]] = {
            "put": lambda: run_put_rows(server, root, keys, values, repeats),
            "invalidation": lambda: run_invalidation(
                server, root, 50 if quick else INVALIDATION_SAMPLES
            ),
            "invalidation_saturated": lambda: run_invalidation(
                server, root, 50 if quick else INVALIDATION_SAMPLES, poll_pause=0.0
            ),
            "restore": lambda: run_restore(
                server, root, 10_000 if quick else RESTORE_RECORDS, 1 if quick else repeats
            ),
            "contention": lambda: run_contention(
                server, root, throughput.DURATION * 2, repeats
            ),
        }
        for name, section in sections.items():
            check_stop()
            try:
                results[name] = section()
            except Exception as exc:  # one section's failure is reported, the rest still run
                results[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
                print(f"  postgres {name}: FAILED {results[name]['error']}")
    results["runtime_s"] = round(time.perf_counter() - started, 1)
    print(f"  postgres: {results['runtime_s']:.1f}s, load {loadavg()}")
    return results


def _find(rows: list[dict[str, Any]], system: str, clients: int) -> dict[str, Any]:
    return next(r for r in rows if r["system"] == system and r["clients"] == clients)


def _failed(pg: dict[str, Any], *names: str) -> str | None:
    errors = [f"{n}: {pg[n]['error']}" for n in names if "error" in pg.get(n, {})]
    return "; ".join(errors) or None


def evaluate_pg(pg: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's three targets for the tier, each met or missed with its figure."""
    failed = _failed(pg, "put", "invalidation", "restore")
    if failed:
        return [{"target": "postgres rows", "figure": f"failed: {failed}", "met": False}]
    sync = _find(pg["put"], "agent + postgres sync", 8)["ops_s"]
    direct = _find(pg["put"], "psycopg direct", 8)["ops_s"]
    inv, restore = pg["invalidation"], pg["restore"]
    busy = pg.get("invalidation_saturated", {})
    saturated = (f"p99 {busy['p99_ms']:.1f} ms" if "p99_ms" in busy
                 else busy.get("error", "not run"))
    return [
        {
            "target": "postgres sync PUT at 8 clients >= 0.7x direct psycopg upsert",
            "figure": f"{sync:,.0f} vs {direct:,.0f} ops/s ({sync / direct:.2f}x)",
            "met": sync >= 0.7 * direct,
        },
        {
            "target": "cross-agent invalidation p99 <= 50 ms",
            "figure": f"p50 {inv['p50_ms']:.1f} ms, p99 {inv['p99_ms']:.1f} ms "
            f"(B saturated by reads: {saturated})",
            "met": inv["p99_ms"] <= 50,
        },
        {
            "target": f"restore of {restore['records'] // 1000}k from postgres <= 2 s",
            "figure": f"initialize {restore['initialize_s']:.2f} s; daemon exec to serving "
            f"{restore['daemon_start_to_serving_s']:.2f} s (empty db "
            f"{restore['daemon_empty_db_start_s']:.2f} s)",
            "met": restore["initialize_s"] <= 2.0,
        },
    ]


def markdown_pg(pg: dict[str, Any]) -> str:
    out: list[str] = []
    add = out.append
    add("**PostgreSQL tier** (PostgreSQL 15, fsync on, TLS on 127.0.0.1; ~200-byte values; "
        "clients are processes with a connection each, the tier-alone row threads)")
    add("")
    if "error" in pg["put"]:
        add(f"PUT rows failed: {pg['put']['error']}")
    else:
        add("| system | op | clients | ops/s | p50 µs | p99 µs | server CPU µs/op |")
        add("|---|---|---:|---:|---:|---:|---:|")
        for r in pg["put"]:
            cpu = r["server_cpu_us_per_op"]
            add(f"| {r['system']} | {r['label']} | {r['clients']} | {r['ops_s']:,.0f} "
                f"| {r['p50_us']:,.0f} | {r['p99_us']:,.0f} | {'-' if cpu is None else cpu} |")
    add("")
    rs, ct = pg["restore"], pg["contention"]
    for name, what in (("invalidation", "B polled every 1 ms"),
                       ("invalidation_saturated", "B polled without pause, saturated by reads")):
        inv = pg.get(name, {"error": "not run"})
        if "error" in inv:
            add(f"Cross-agent invalidation ({what}) failed: {inv['error']}")
        else:
            add(f"Cross-agent invalidation, a PUT acknowledged by A until B serves it ({what}, "
                f"{inv['samples']} samples): p50 {inv['p50_ms']:.1f} ms, "
                f"p99 {inv['p99_ms']:.1f} ms, max {inv['max_ms']:.1f} ms.")
        add("")
    if "error" in rs:
        add(f"Restore failed: {rs['error']}")
    else:
        add(f"Restore of {rs['records']:,} records from PostgreSQL into an empty storage path: "
            f"`initialize()` {rs['initialize_s']:.2f} s; the daemon from exec to serving "
            f"{rs['daemon_start_to_serving_s']:.2f} s (on an empty database "
            f"{rs['daemon_empty_db_start_s']:.2f} s).")
    add("")
    if "error" in ct:
        add(f"If-Match contention failed: {ct['error']}")
    else:
        add(f"If-Match contention, {ct['writers']} writers on one key (GET + conditional PUT): "
            f"{ct['commits_per_s']:,.0f} commits/s, {ct['conflicts_per_s']:,.0f} 412s/s; "
            f"the counter ended at exactly the {ct['counter_checked']:,} commits.")
    add("")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    import shutil
    import signal
    import tempfile

    from .common import request_stop

    parser = argparse.ArgumentParser(prog="bench.pg", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short samples, one repeat")
    args = parser.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)
    if args.quick:
        throughput.DURATION = 0.3
    tmp = Path(tempfile.mkdtemp(prefix="ssk-bpg-"))
    try:
        results = run_pg(tmp, args.quick, 1 if args.quick else 3)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["targets"] = evaluate_pg(results)
    results["environment"] = {
        "finished_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_end": loadavg(),
        "quick": args.quick,
    }
    results_dir = Path(__file__).resolve().parent / "results"
    results_dir.mkdir(exist_ok=True)
    name = "pg-quick" if args.quick else "pg-latest"
    (results_dir / f"{name}.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    )
    table = markdown_pg(results) + "\n" + "\n".join(
        f"- {t['target']}: {t['figure']} ({'met' if t['met'] else 'MISSED'})"
        for t in results["targets"]
    )
    (results_dir / f"{name}.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
