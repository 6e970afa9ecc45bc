"""Bulk writes, transactions and TTLs with the postgres tier, against a real PostgreSQL
(tests/pgcluster.py), two agents on one database (issue 11 §1 with issue 8): conditions on
records routed to PostgreSQL are decided there, with the batch's writes, in one transaction; a
lost condition in a transaction changes nothing anywhere; a sync bulk write is one PostgreSQL
transaction; PostgreSQL away means 503 and nothing written; a record's time to live is stored
with it, so every agent's reads and conditions treat it as gone once it passes."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from bootstrap.batch import BatchOp, Check, Delete, Limits, Put, write_ops
from bootstrap.errors import TransactionFailed, Unavailable
from bootstrap.storage import HybridStorage
from tests.conftest import PgDatabase
from tests.pgcluster import PgCluster

from .conftest import FakeClock
from .conftest import PgAgent as Agent

MODES = ["sync", "async"]
LIMITS = Limits(1000, 1 << 20)


def ops(*items: Put | Delete | Check, transaction: bool = True) -> list[BatchOp]:
    return write_ops(list(items), LIMITS, transaction)


def wait_until(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def rows(pg_db: PgDatabase, collection: str) -> dict[str, tuple[int, str, bool]]:
    """key -> (version, txid, deleted) of every row of a collection, as PostgreSQL holds it."""
    with pg_db.cluster.admin(pg_db.name) as conn:
        found = conn.execute(
            "SELECT key, version, txid::text, deleted FROM spine.records WHERE collection = %s",
            (collection,),
        ).fetchall()
    return {key: (int(version), txid, deleted) for key, version, txid, deleted in found}


def write_unheard(pg_db: PgDatabase, collection: str, key: str, value: str, version: int) -> None:
    """Another writer's row no listener hears of (its NOTIFY trigger off for this statement)."""
    with pg_db.cluster.admin(pg_db.name) as conn, conn.transaction():
        conn.execute("ALTER TABLE spine.records DISABLE TRIGGER records_notify")
        conn.execute(
            """UPDATE spine.records SET value = %s::json, version = %s,
               mtime = %s::float8 / 1000000, host = 'elsewhere', txid = pg_current_xact_id()
               WHERE collection = %s AND key = %s""",
            (value, version, version, collection, key),
        )
        conn.execute("ALTER TABLE spine.records ENABLE TRIGGER records_notify")


def shipped(storage: HybridStorage) -> None:
    """Async: ship the backlog now (the shipper thread runs under the daemon only)."""
    storage.backup(push=False)


def seeded(a: HybridStorage, b: HybridStorage) -> dict[str, int]:
    """Two records written on a and held by b: their versions."""
    versions = {
        "task": a.put_versioned("tasks", "t1", {"state": "queued"})[1],
        "agent": a.put_versioned("agents", "x", "old")[1],
    }
    shipped(a)
    wait_until(lambda: b.get("agents", "x") == "old" and b.get("tasks", "t1") is not None, "b")
    return versions


@pytest.mark.parametrize("write", MODES)
def test_a_transaction_with_a_stale_check_loses_to_another_agents_write(
    agent: Agent, pg_db: PgDatabase, write: str
) -> None:
    """a's transaction checks the task at the version a read; b has claimed the task since:
    412 naming that record, and nothing of the transaction is anywhere (a, b, PostgreSQL)."""
    a, b = agent("a", write), agent("b", write)
    versions = seeded(a, b)
    _, claimed = b.put_versioned("tasks", "t1", {"state": "claimed by b"})
    shipped(b)
    before = rows(pg_db, "agents")
    with pytest.raises(TransactionFailed) as lost:
        a.write_batch(
            ops(
                Put("agents", "x", "new"),
                Check("tasks", "t1", if_match=versions["task"]),
                Put("stats", "y", 1),
            ),
            atomic=True,
        )
    assert (lost.value.index, lost.value.collection, lost.value.key) == (1, "tasks", "t1")
    assert lost.value.current_version == claimed
    assert lost.value.status == 412
    assert rows(pg_db, "agents") == before and rows(pg_db, "stats") == {}
    for storage in (a, b):
        assert storage.get_versioned("agents", "x") == ("old", versions["agent"])
        assert storage.get("stats", "y") is None
    assert a.get_versioned("tasks", "t1") == ({"state": "claimed by b"}, claimed)


@pytest.mark.parametrize("write", MODES)
def test_postgres_decides_a_transaction_even_when_the_local_copy_is_stale(
    agent: Agent, pg_db: PgDatabase, write: str
) -> None:
    """PostgreSQL holds a newer row nobody heard of: a's memory would pass the check, PostgreSQL
    does not; a then holds the stored row."""
    a = agent("a", write)
    _, version = a.put_versioned("tasks", "t1", "queued")
    shipped(a)
    write_unheard(pg_db, "tasks", "t1", '"claimed elsewhere"', version + 10)
    assert a.get_versioned("tasks", "t1") == ("queued", version), "nobody told a"
    with pytest.raises(TransactionFailed) as lost:
        a.write_batch(
            ops(Put("tasks", "t1", "claimed by a", if_match=version), Put("agents", "a", 1)),
            atomic=True,
        )
    assert (lost.value.index, lost.value.current_version) == (0, version + 10)
    assert a.get_versioned("tasks", "t1") == ("claimed elsewhere", version + 10)
    assert a.get("agents", "a") is None and rows(pg_db, "agents") == {}


@pytest.mark.parametrize("write", MODES)
def test_a_transaction_that_holds_commits_in_one_postgres_transaction(
    agent: Agent, pg_db: PgDatabase, write: str
) -> None:
    a, b = agent("a", write), agent("b", write)
    versions = seeded(a, b)
    outcome = a.write_batch(
        ops(
            Put("tasks", "t1", {"state": "claimed by a"}, if_match=versions["task"]),
            Delete("agents", "x", if_match=versions["agent"]),
            Put("stats", "claims", 1, if_absent=True),
        ),
        atomic=True,
    )
    assert [r.status for r in outcome.results] == [200, 200, 200]
    task, stats = rows(pg_db, "tasks")["t1"], rows(pg_db, "stats")["claims"]
    assert task[1] == rows(pg_db, "agents")["x"][1] == stats[1], "one transaction id"
    assert rows(pg_db, "agents")["x"][2], "the delete is a tombstone"
    assert outcome.results[0].version == task[0] == a.get_versioned("tasks", "t1")[1]  # type: ignore[index]
    wait_until(lambda: b.get("tasks", "t1") == {"state": "claimed by a"}, "b to see the claim")
    wait_until(lambda: b.get("agents", "x") is None, "b to see the delete")
    assert b.get("stats", "claims") == 1


@pytest.mark.parametrize("write", MODES)
def test_a_bulk_writes_lost_condition_is_its_own_412_and_the_rest_commit(
    agent: Agent, pg_db: PgDatabase, write: str
) -> None:
    a, b = agent("a", write), agent("b", write)
    versions = seeded(a, b)
    _, claimed = b.put_versioned("tasks", "t1", "claimed by b")
    shipped(b)
    outcome = a.write_batch(
        ops(
            Put("tasks", "t1", "claimed by a", if_match=versions["task"]),
            Put("agents", "x", "new", if_match=versions["agent"]),
            transaction=False,
        ),
        atomic=False,
    )
    assert [(r.status, r.current_version) for r in outcome.results] == [(412, claimed), (200, None)]
    assert rows(pg_db, "agents")["x"][0] == outcome.results[1].version
    assert a.get("tasks", "t1") == "claimed by b"
    wait_until(lambda: b.get("agents", "x") == "new", "b to see the write that held")


def test_a_sync_bulk_write_of_100_records_is_one_postgres_transaction(
    agent: Agent, pg_db: PgDatabase
) -> None:
    a, b = agent("a", "sync"), agent("b", "sync")
    outcome = a.write_batch(
        ops(*(Put("bulk", f"r{i:03}", {"i": i}) for i in range(100)), transaction=False),
        atomic=False,
    )
    stored = rows(pg_db, "bulk")
    assert len(stored) == 100
    assert len({txid for _, txid, _ in stored.values()}) == 1, "one PostgreSQL transaction"
    for result in outcome.results:
        assert result.version == stored[result.key][0], "the ETag is the version stored"
    assert a.status()["tiers"]["postgres"]["backlog"] == 0
    wait_until(lambda: b.get("bulk", "r099") is not None, "b to hear of the batch")
    assert [b.get("bulk", f"r{i:03}") for i in range(100)] == [{"i": i} for i in range(100)]


@pytest.mark.parametrize("write", MODES)
def test_a_transaction_with_conditions_is_503_and_writes_nothing_while_postgres_is_away(
    agent: Agent, pg_db: PgDatabase, outage: PgCluster, write: str
) -> None:
    a = agent("a", write)
    _, version = a.put_versioned("tasks", "t1", "queued")
    shipped(a)
    outage.stop("immediate")
    with pytest.raises(Unavailable) as away:
        a.write_batch(
            ops(Put("tasks", "t1", "claimed", if_match=version), Put("agents", "a", 1)),
            atomic=True,
        )
    assert away.value.status == 503
    assert "\n" not in str(away.value) and "postgres unreachable" in str(away.value)
    assert a.get_versioned("tasks", "t1") == ("queued", version)
    assert a.get("agents", "a") is None
    outage.start()
    assert rows(pg_db, "agents") == {}


def expiry_of(pg_db: PgDatabase, collection: str, key: str) -> float | None:
    with pg_db.cluster.admin(pg_db.name) as conn:
        row = conn.execute(
            "SELECT expires FROM spine.records WHERE collection = %s AND key = %s",
            (collection, key),
        ).fetchone()
    assert row is not None
    return None if row[0] is None else float(row[0])


@pytest.mark.parametrize("write", MODES)
def test_an_expired_record_is_gone_on_every_agent_before_any_pass(
    agent: Agent, pg_db: PgDatabase, write: str
) -> None:
    """a writes a session with a TTL; once it passes, b reads nothing and may create the key
    (PostgreSQL's condition sees it absent too), with no pass run anywhere."""
    clock = FakeClock(time.time())
    a, b = agent("a", write, clock), agent("b", write, clock)
    _, version = a.put_versioned("sessions", "s1", {"user": 1}, cls="session", ttl=60)
    shipped(a)
    wait_until(lambda: b.get("sessions", "s1") == {"user": 1}, "b to hear of the session")
    assert expiry_of(pg_db, "sessions", "s1") == pytest.approx(version / 1e6 + 60)
    clock.advance(61)
    assert b.get("sessions", "s1") is None and a.get("sessions", "s1") is None
    assert b.get_many([("sessions", "s1")]) == [None]
    _, again = b.put_versioned("sessions", "s1", {"user": 2}, cls="session", if_absent=True)
    assert again > version
    assert expiry_of(pg_db, "sessions", "s1") is None, "written again without a TTL"
    wait_until(lambda: a.get("sessions", "s1") == {"user": 2}, "a to hear of b's session")


def test_a_batch_put_carries_its_ttl_to_postgres(agent: Agent, pg_db: PgDatabase) -> None:
    clock = FakeClock(time.time())
    a, b = agent("a", "sync", clock), agent("b", "sync", clock)
    outcome = a.write_batch(
        ops(Put("sessions", "s1", 1, cls="session", ttl=30), transaction=False), atomic=False
    )
    assert expiry_of(pg_db, "sessions", "s1") == pytest.approx(
        outcome.results[0].version / 1e6 + 30  # type: ignore[operator]
    )
    wait_until(lambda: b.get("sessions", "s1") == 1, "b to hear of the session")
    clock.advance(31)
    assert b.get("sessions", "s1") is None
