"""Several agents on one real PostgreSQL (issue 8 §3): sharing, deletes, If-Match counters,
kill -9 under load, PostgreSQL crashing mid-load in both write modes, ten agents migrating at
once, restore into an empty agent, and what status and /metrics say about the tier.

Each agent is a real `spine-agent run` subprocess with its own storage path and a `postgres:`
section, spoken to over its unix socket through bootstrap.client. The module starts its own
PostgreSQL 15 (tests/pgcluster.py: initdb in a temp dir, TLS on 127.0.0.1, scram) because some
tests crash it with `pg_ctl stop -m immediate`; each test gets a fresh database. Nothing is
mocked. "Acknowledged" means a 200 reply; every acknowledged (key, value) is checked at the end
on a fresh agent with an empty storage path and directly in the records table.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from .conftest import Agent, AgentFactory, Client, wait_for
from .pgagents import (
    SCHEMA,
    TRANSPORT_ERRORS,
    Database,
    Server,
    delete,
    etag,
    pg_agent,
    pg_status,
    put,
    start_server,
    value_of,
)

SEEN = 15.0  # longest wait for another agent to see a write (the target is 50 ms)
RECOVER = 45.0  # longest wait for an agent to recover from a PostgreSQL restart by itself
# How long PostgreSQL stays down. A sync write waits for a pooled connection (up to 5 s) before
# its 503, so the sync outage outlasts that wait; async writes never wait for the server.
OUTAGE = {"sync": 8.0, "async": 2.5}
STUCK = 4.0  # a reply slower than this while PostgreSQL is down waited for it (pool wait: 5 s)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    yield from start_server()


@pytest.fixture
def db(server: Server) -> Iterator[Database]:
    yield server.database()
    # A test that failed mid-outage must not leave the next one without a server.
    if not _is_up(server):
        server.start()


def _is_up(server: Server) -> bool:
    try:
        with server.cluster.admin():
            return True
    except Exception:
        return False


def _run_threads(targets: list[Callable[[], None]], timeout: float = 300.0) -> None:
    """Run each target in its own thread; re-raise the first failure here."""
    errors: list[BaseException] = []

    def wrap(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # reported to the test thread
                errors.append(exc)

        return run

    threads = [threading.Thread(target=wrap(t), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a load thread hung"
    if errors:
        raise errors[0]


def _sees(client: Client, collection: str, key: str, expected: Any) -> Callable[[], bool]:
    return lambda: value_of(client, collection, key) == expected


# -- a ledger of what was sent and what was acknowledged ----------------------------------------
ACKED, UNKNOWN, REFUSED = "acked", "unknown", "refused"


@dataclass
class Ledger:
    """Per record, every value sent in order and its outcome: acknowledged (200), unknown (the
    connection broke: it may or may not have been written) or refused (503: nothing written)."""

    history: dict[tuple[str, str], list[tuple[Any, str]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, collection: str, key: str, value: Any, outcome: str) -> None:
        with self.lock:
            self.history.setdefault((collection, key), []).append((value, outcome))

    def acked(self) -> int:
        return sum(o == ACKED for h in self.history.values() for _, o in h)

    def allowed(self, record: tuple[str, str]) -> tuple[bool, list[Any]]:
        """(must exist, the values it may hold): the last acknowledged value or any value sent
        after it whose outcome is unknown; never a refused one."""
        history = self.history[record]
        last = max((i for i, (_, o) in enumerate(history) if o == ACKED), default=-1)
        later = [v for v, o in history[last + 1:] if o == UNKNOWN]
        if last < 0:
            return False, later
        return True, [history[last][0], *later]

    def check(self, found: Callable[[str, str], Any], where: str) -> None:
        """Every record as `found(collection, key)` reports it (None when absent)."""
        wrong = []
        for record in sorted(self.history):
            must, values = self.allowed(record)
            value = found(*record)
            if value is None and not must:
                continue
            if value not in values:
                wrong.append((record, value, values[:3], self.history[record][-3:]))
        assert not wrong, f"{where}: {len(wrong)} records lost or wrong, first: {wrong[:3]}"


def _writer(
    agent: Agent,
    ledger: Ledger,
    stop: threading.Event,
    name: str,
    keys: int,
    pause: float = 0.0,
    on_reply: Callable[[float, float, int], None] | None = None,
) -> Callable[[], None]:
    """A client that overwrites `keys` records of its own in turn until `stop`, noting every
    outcome. A broken connection (the agent was killed) is an unknown outcome; it waits for the
    agent to come back."""

    def run() -> None:
        client = agent.client(timeout=30)
        n = 0
        while not stop.is_set():
            n += 1
            collection = "agents" if n % 3 else "sessions"  # critical and session classes
            key = f"{name}-{n % keys}"
            value = {"w": name, "n": n}
            started = time.monotonic()
            try:
                reply = put(client, collection, key, value)
            except TRANSPORT_ERRORS:
                ledger.note(collection, key, value, UNKNOWN)
                client.close()
                time.sleep(0.05)
                continue
            if on_reply is not None:
                on_reply(started, time.monotonic(), reply.status)
            if reply.status == 200:
                ledger.note(collection, key, value, ACKED)
            elif reply.status == 503:
                ledger.note(collection, key, value, REFUSED)
                time.sleep(0.02)
            else:
                raise AssertionError(f"{name}: PUT answered {reply.status}: {reply.body!r}")
            if pause:
                time.sleep(pause)
        client.close()

    return run


def _fresh_agent_check(agents: AgentFactory, db: Database, ledger: Ledger, name: str) -> None:
    """Every acknowledged record, on a new agent with an empty storage path, and in PostgreSQL."""
    rows = db.rows()
    ledger.check(
        lambda c, k: None if rows.get((c, k), {"deleted": True})["deleted"] else rows[(c, k)][
            "value"
        ],
        "PostgreSQL",
    )
    fresh = pg_agent(agents, db, name).start()
    with fresh.client() as client:
        ledger.check(lambda c, k: value_of(client, c, k), f"fresh agent {name}")
    assert fresh.stop() == 0


# -- three agents, one database ---------------------------------------------------------------
def test_a_write_on_one_agent_is_read_on_the_others(
    agents: AgentFactory, db: Database
) -> None:
    a, b, c = (pg_agent(agents, db, n).start() for n in ("a", "b", "c"))
    ca, cb, cc = a.client(), b.client(), c.client()
    for collection in ("agents", "sessions"):  # a critical and a session collection
        assert put(ca, collection, "k", {"v": 1}).status == 200
        for client in (cb, cc):
            wait_for(_sees(client, collection, "k", {"v": 1}), SEEN, 0.01, f"{collection}/k")
        # An overwrite elsewhere replaces copies the others already hold in memory.
        assert put(cb, collection, "k", {"v": 2}).status == 200
        for client in (ca, cc):
            wait_for(_sees(client, collection, "k", {"v": 2}), SEEN, 0.01, f"{collection}/k v2")
    assert db.live()[("agents", "k")] == {"v": 2}


def test_a_delete_stays_deleted_everywhere_also_after_a_restart_from_warm_files(
    agents: AgentFactory, db: Database
) -> None:
    a, b, c = (pg_agent(agents, db, n).start() for n in ("a", "b", "c"))
    ca, cb, cc = a.client(), b.client(), c.client()
    # B writes both records and makes them warm files of its own.
    for key in ("gone-live", "gone-away"):
        assert put(cb, "agents", key, {"doomed": key}).status == 200
        wait_for(_sees(ca, "agents", key, {"doomed": key}), SEEN, 0.01, f"A sees {key}")
    assert cb.post("flush").status == 200
    assert any("gone-away" in p.read_text(errors="replace")
               for p in b.storage.rglob("*.json") if p.is_file()), "B's warm files hold it"

    # 1. Deleted on A while B runs: gone on B and C, and after B is killed and restarted.
    assert delete(ca, "agents", "gone-live").status == 200
    for client in (cb, cc):
        wait_for(_sees(client, "agents", "gone-live", None), SEEN, 0.01, "delete propagates")
    cb.close()
    b.kill9()
    # 2. Deleted on A while B is down: B's warm files still hold the old value.
    assert delete(ca, "agents", "gone-away").status == 200
    b.start()
    cb = b.client()
    for key in ("gone-live", "gone-away"):
        assert value_of(cb, "agents", key) is None, f"{key} came back on B from its warm files"
        assert value_of(cc, "agents", key) is None
    assert not any(k.startswith("gone") for k in cb.records("agents"))
    # B's own tiering and flush must not ship its stale copy back over the tombstone.
    assert cb.post("tier").status == 200 and cb.post("flush").status == 200
    b.stop()
    b.start()
    cb = b.client()
    rows = db.rows()
    for key in ("gone-live", "gone-away"):
        assert rows[("agents", key)]["deleted"], f"{key} resurrected in PostgreSQL"
        for client in (ca, cb, cc):
            assert value_of(client, "agents", key) is None


def test_a_thousand_if_match_increments_across_three_agents_end_at_1000(
    agents: AgentFactory, db: Database
) -> None:
    trio = [pg_agent(agents, db, n).start() for n in ("a", "b", "c")]
    with trio[0].client() as client:
        first = put(client, "agents", "counter", {"n": 0}, if_absent=True)
        assert first.status == 200, first.body
        assert put(client, "agents", "counter", {"n": 0}, if_absent=True).status == 412
    for agent in trio[1:]:
        wait_for(_sees(agent.client(), "agents", "counter", {"n": 0}), SEEN, 0.01, "counter")
    total, per_agent_threads = 1000, 2
    shares = [total // 6 + (i < total % 6) for i in range(3 * per_agent_threads)]
    successes: list[tuple[int, int]] = []  # (new value, new version)
    conflicts = [0]
    lock = threading.Lock()

    def incrementer(agent: Agent, share: int) -> Callable[[], None]:
        def run() -> None:
            client = agent.client()
            done = 0
            while done < share:
                got = client.get("agents", "counter")
                assert got.status == 200, got.body
                seen, tag = got.json()["n"], etag(got)
                reply = put(client, "agents", "counter", {"n": seen + 1}, if_match=tag)
                if reply.status == 200:
                    done += 1
                    with lock:
                        successes.append((seen + 1, etag(reply)))
                elif reply.status == 412:
                    current = reply.json()["current_version"]
                    assert isinstance(current, int) and current != tag, reply.body
                    with lock:
                        conflicts[0] += 1
                    time.sleep(random.random() * 0.002)
                else:
                    raise AssertionError(f"If-Match PUT answered {reply.status}: {reply.body!r}")
            client.close()

        return run

    _run_threads([
        incrementer(trio[i % 3], share) for i, share in enumerate(shares)
    ])
    assert len(successes) == total
    # No lost update: each value was reached exactly once, and versions grew with the value.
    assert sorted(v for v, _ in successes) == list(range(1, total + 1))
    versions = [ver for _, ver in sorted(successes)]
    assert versions == sorted(versions) and len(set(versions)) == total
    assert conflicts[0] > 0, "three agents never raced: the test proved nothing"
    assert db.live()[("agents", "counter")] == {"n": total}
    for agent in trio:
        wait_for(_sees(agent.client(), "agents", "counter", {"n": total}), SEEN, 0.01, "1000")


def test_kill_9_of_each_agent_under_load_loses_nothing_acknowledged(
    agents: AgentFactory, db: Database
) -> None:
    seed = int(os.environ.get("SPINE_TEST_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    modes = {"a": "sync", "b": "async", "c": "sync"}
    trio = {n: pg_agent(agents, db, n, write=m).start() for n, m in modes.items()}
    ledger, stop = Ledger(), threading.Event()
    kills: list[str] = []

    def killer() -> None:
        order = [*rng.sample(sorted(trio), 3), *rng.sample(sorted(trio), 3)]
        for name in order:  # every agent killed at least once, at random moments
            time.sleep(rng.uniform(0.4, 1.2))
            trio[name].kill9()
            kills.append(name)
            time.sleep(rng.uniform(0.0, 0.3))
            trio[name].start()
        time.sleep(0.5)
        stop.set()

    writers = [
        _writer(agent, ledger, stop, f"{name}{w}", keys=20, pause=0.002)
        for name, agent in trio.items()
        for w in range(2)
    ]
    _run_threads([killer, *writers])
    assert sorted(set(kills)) == sorted(trio), f"seed {seed}"
    assert ledger.acked() > 300, f"too little load to mean anything: {ledger.acked()}"
    # Each agent still serves what its own clients were acknowledged, right after its restarts.
    for name, agent in trio.items():
        mine = Ledger({r: h for r, h in ledger.history.items() if r[1].startswith(name)})
        with agent.client() as client:
            mine.check(lambda c, k: value_of(client, c, k), f"agent {name} (seed {seed})")
    for agent in trio.values():  # async agents ship what is left at shutdown
        assert agent.stop() == 0, agent.output()
    _fresh_agent_check(agents, db, ledger, "fresh")


# -- PostgreSQL crashes and comes back, no agent restarted --------------------------------------
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_postgres_stopped_immediately_mid_load(
    agents: AgentFactory, db: Database, server: Server, mode: str
) -> None:
    pair = [pg_agent(agents, db, n, write=mode).start() for n in ("a", "b")]
    pids = [agent.pid for agent in pair]
    with pair[0].client() as client:
        assert put(client, "agents", "pinned", {"read": "me"}).status == 200
    wait_for(_sees(pair[1].client(), "agents", "pinned", {"read": "me"}), SEEN, 0.01, "pinned")
    ledger, stop = Ledger(), threading.Event()
    outage: dict[str, float] = {}
    replies: list[tuple[float, float, int]] = []
    reads: list[tuple[float, float]] = []  # (asked at, seconds to answer)

    def note_reply(started: float, ended: float, status: int) -> None:
        replies.append((started, ended, status))

    def reader() -> None:
        client = pair[1].client()
        while not stop.is_set():
            asked = time.monotonic()
            reply = client.get("agents", "pinned")
            reads.append((asked, time.monotonic() - asked))
            assert reply.status == 200 and reply.json() == {"read": "me"}, reply.body
            time.sleep(0.01)
        client.close()

    def crasher() -> None:
        time.sleep(1.0)
        outage["down"] = time.monotonic()
        server.stop()
        time.sleep(OUTAGE[mode])
        outage["up"] = time.monotonic()
        server.start()
        # Recovery by itself: each agent acknowledges writes again, with no restart.
        for agent in pair:
            with agent.client() as client:
                wait_for(
                    lambda c=client: put(c, "agents", "probe", {"t": time.time()}).status == 200,
                    RECOVER, 0.1, "writes acknowledged again after PostgreSQL came back",
                )
        outage["recovered"] = time.monotonic()
        time.sleep(1.0)
        stop.set()

    writers = [
        _writer(agent, ledger, stop, f"{mode}{i}", keys=30, pause=0.003, on_reply=note_reply)
        for i, agent in enumerate(pair)
    ]
    _run_threads([crasher, reader, *writers])
    assert [agent.pid for agent in pair] == pids and all(a.running() for a in pair)
    # A reply that came back while the server was down: in sync mode it must be a 503 (a 200
    # would be acknowledged without a commit); a write caught by the crash may instead wait
    # for the pool and commit once the server is back, and that 200 comes after "up".
    during = [s for _, t1, s in replies if outage["down"] + 0.5 < t1 < outage["up"]]
    assert during, f"no write came back while PostgreSQL was down: {_around(replies, outage)}"
    assert any(outage["down"] < t < outage["up"] for t, _ in reads), "no read during the outage"
    # Reads do not wait for the dead server: not behind a write stuck in the pool's 5 s wait.
    slowest = max(took for t, took in reads if outage["down"] < t < outage["up"])
    assert slowest < STUCK, f"a read took {slowest:.1f}s while PostgreSQL was down"
    if mode == "sync":
        assert set(during) == {503}, f"sync writes while PostgreSQL was down: {set(during)}"
    else:
        assert set(during) == {200}, f"async writes while PostgreSQL was down: {set(during)}"
    assert {s for *_, s in replies} <= {200, 503}
    # Every acknowledged write reaches PostgreSQL and the other agent without any restart.
    for agent in pair:
        with agent.client() as client:
            wait_for(
                lambda c=client: not _ledger_misses(ledger, lambda col, k: value_of(c, col, k)),
                RECOVER, 0.2, f"agent {agent.name} caught up",
            )
    wait_for(lambda: not _ledger_misses(ledger, _pg_reader(db)), RECOVER, 0.2, "PG caught up")
    for agent in pair:
        agent.stop()
    _fresh_agent_check(agents, db, ledger, "fresh")


def _around(replies: list[tuple[float, float, int]], outage: dict[str, float]) -> list[Any]:
    down, up = outage["down"], outage["up"]
    return [(round(t0 - down, 2), round(t1 - down, 2), s)
            for t0, t1, s in replies if t1 > down - 0.1 and t0 < up + 0.1][:20]


def _pg_reader(db: Database) -> Callable[[str, str], Any]:
    live = db.live()
    return lambda c, k: live.get((c, k))


def _ledger_misses(ledger: Ledger, found: Callable[[str, str], Any]) -> bool:
    try:
        ledger.check(found, "")
    except AssertionError:
        return True
    return False


def test_a_conditional_write_with_postgres_down_is_503_and_writes_nothing(
    agents: AgentFactory, db: Database, server: Server
) -> None:
    sync_agent = pg_agent(agents, db, "s", write="sync").start()
    async_agent = pg_agent(agents, db, "y", write="async").start()
    with sync_agent.client() as client:
        created = put(client, "agents", "guarded", {"v": 1}, if_absent=True)
        assert created.status == 200
        version = etag(created)
    server.stop()
    try:
        for agent in (sync_agent, async_agent):
            with agent.client() as client:
                for reply in (
                    put(client, "agents", "guarded", {"v": 2}, if_match=version),
                    put(client, "agents", f"new-{agent.name}", {"v": 1}, if_absent=True),
                    delete(client, "agents", "guarded", if_match=version),
                ):
                    assert reply.status == 503, (agent.name, reply.status, reply.body)
                    body = reply.json()
                    assert "\n" not in body["error"] and "postgres" in body["error"].lower()
    finally:
        server.start()
    time.sleep(1.0)  # an async agent would have shipped anything it kept by now (max_lag 200ms)
    for agent in (sync_agent, async_agent):
        assert agent.stop() == 0  # and at shutdown
    rows = db.rows()
    assert rows[("agents", "guarded")]["version"] == version
    assert rows[("agents", "guarded")]["value"] == {"v": 1}
    assert ("agents", "new-s") not in rows and ("agents", "new-y") not in rows
    for agent in (sync_agent, async_agent):
        agent.start()
        with agent.client() as client:
            got = client.get("agents", "guarded")
            assert got.json() == {"v": 1} and etag(got) == version
            assert value_of(client, "agents", f"new-{agent.name}") is None


# -- start-up ---------------------------------------------------------------------------------
def test_ten_agents_starting_at_once_on_an_empty_database_migrate_once(
    agents: AgentFactory, db: Database
) -> None:
    log = db.cluster.log
    log_start = log.stat().st_size if log.exists() else 0
    ten = [pg_agent(agents, db, f"m{i}") for i in range(10)]
    for agent in ten:
        agent.start(wait=False)
    for agent in ten:
        agent.wait_ready()
    with db.admin() as conn:
        applied = conn.execute(
            f"SELECT version, count(*) FROM {SCHEMA}.migrations GROUP BY version ORDER BY 1"
        ).fetchall()
    assert applied and all(count == 1 for _, count in applied), applied
    assert [v for v, _ in applied] == list(range(1, len(applied) + 1))
    errors = log.read_bytes()[log_start:].decode(errors="replace") if log.exists() else ""
    assert "already exists" not in errors and "deadlock" not in errors, errors[-2000:]
    # All ten share it: a write on the last is seen by the first.
    with ten[-1].client() as client:
        assert put(client, "agents", "hello", {"from": "m9"}).status == 200
    wait_for(_sees(ten[0].client(), "agents", "hello", {"from": "m9"}), SEEN, 0.01, "shared")


def test_an_agent_with_an_empty_disk_restores_everything_from_postgres(
    agents: AgentFactory, db: Database
) -> None:
    writer = pg_agent(agents, db, "w", write="async").start()
    old = pg_agent(agents, db, "old").start()
    with old.client() as client:  # stale copies in old's warm files, overwritten below
        for i in range(10):
            assert put(client, "agents", f"shared-{i}", {"by": "old"}).status == 200
        assert client.post("flush").status == 200
    assert old.stop() == 0
    expected: dict[tuple[str, str], Any] = {}
    lock = threading.Lock()

    def fill(part: int) -> Callable[[], None]:
        def run() -> None:
            with writer.client() as client:
                for i in range(part, 1500, 3):
                    collection = ("agents", "sessions", "tasks")[i % 3]
                    value = {"i": i, "pad": "x" * (i % 200)}
                    assert put(client, collection, f"r{i:05d}", value).status == 200
                    with lock:
                        expected[(collection, f"r{i:05d}")] = value

        return run

    _run_threads([fill(p) for p in range(3)])
    with writer.client() as client:
        for i in range(10):
            assert put(client, "agents", f"shared-{i}", {"by": "writer"}).status == 200
            expected[("agents", f"shared-{i}")] = {"by": "writer"}
        assert put(client, "agents", "deleted", {"x": 1}).status == 200
        assert client.request("DELETE", "/v1/records/agents/deleted").status == 200
        assert put(client, "cache", "local-only", {"x": 1}).status == 200
    assert writer.stop() == 0  # async: what is not shipped yet goes at shutdown
    assert ("cache", "local-only") not in db.rows(), "the cache class is not routed to postgres"

    fresh = pg_agent(agents, db, "fresh")
    assert not fresh.storage.exists()
    fresh.start()
    with fresh.client() as client:
        got = {
            (collection, key): value
            for collection in ("agents", "sessions", "tasks")
            for key, value in client.records(collection).items()
        }
        assert value_of(client, "agents", "deleted") is None
        assert value_of(client, "cache", "local-only") is None
    assert got == expected
    # Newest wins against an agent's own older warm files.
    old.start()
    with old.client() as client:
        for i in range(10):
            assert value_of(client, "agents", f"shared-{i}") == {"by": "writer"}


# -- what operators see -----------------------------------------------------------------------
def _metric(text: str, needle: str) -> float:
    """The value of the first sample line whose name holds all of `needle`'s words."""
    words = needle.split()
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        if all(w in name for w in words):
            return float(value)
    raise AssertionError(f"no metric with {words} in:\n{text[-3000:]}")


def test_status_and_metrics_show_lag_backlog_and_last_error(
    agents: AgentFactory, db: Database, server: Server
) -> None:
    agent = pg_agent(agents, db, "ops", write="async").start()
    client = agent.client()
    assert put(client, "agents", "warm-up", {"x": 0}).status == 200
    wait_for(lambda: pg_status(client)["backlog"] == 0, RECOVER, 0.05, "backlog drained")
    healthy = pg_status(client)
    assert healthy["last_error"] is None and healthy["lag_s"] < 5, healthy
    password = server.password_file.read_text().strip()
    server.stop()
    try:
        for i in range(5):
            assert put(client, "agents", f"queued-{i}", {"i": i}).status == 200
        time.sleep(1.5)  # past max_lag: a shipping attempt has failed by now
        down = pg_status(client)
        assert down["backlog"] >= 5, json.dumps(down)
        assert down["lag_s"] >= 1.0, down
        assert isinstance(down["last_error"], str) and "\n" not in down["last_error"], down
        metrics = client.request("GET", "/metrics").body.decode()
        assert _metric(metrics, "postgres backlog") >= 5
        assert _metric(metrics, "postgres lag") >= 1.0
        assert _metric(metrics, "postgres up") == 0
    finally:
        server.start()
    wait_for(lambda: pg_status(client)["backlog"] == 0, RECOVER, 0.1, "caught up")
    assert {f"queued-{i}" for i in range(5)} <= {k for _, k in db.live()}
    # Up again once the listener is back too (its reconnect backs off up to 5 s).
    def metrics_when_up() -> str | None:
        text = client.request("GET", "/metrics").body.decode()
        return text if _metric(text, "postgres up") == 1 else None

    metrics = wait_for(metrics_when_up, RECOVER, 0.1, "spine_postgres_up back to 1")
    assert _metric(metrics, "postgres backlog") == 0
    shown = [str(client.status()), metrics, agent.stdout(), agent.stderr()]
    assert not any(password in text for text in shown), "the password leaked"
    client.close()

