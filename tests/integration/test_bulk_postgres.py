"""Transactions and bulk writes over HTTP, two real agents sharing one real PostgreSQL
(tests/pgcluster.py): a transaction's stale check on agent A against agent B's write is a 412
naming the record, and nothing changes anywhere; a sync bulk write of 100 records is one
PostgreSQL transaction that B serves whole; PostgreSQL away is a 503 that writes nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from bootstrap.batch import Check, Put
from tests.conftest import PgDatabase
from tests.pgcluster import PgCluster

from .conftest import Agent, AgentFactory


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def pg_agent(agents: AgentFactory, pg_db: PgDatabase, name: str, write: str) -> Agent:
    return agents.new(name, postgres=pg_db.section(write=write, max_lag="20ms")).start()


def txids(pg_db: PgDatabase, collection: str) -> dict[str, str]:
    with pg_db.cluster.admin(pg_db.name) as conn:
        found = conn.execute(
            "SELECT key, txid::text FROM spine.records WHERE collection = %s", (collection,)
        ).fetchall()
    return dict(found)


def value(agent: Agent, collection: str, key: str) -> Any:
    with agent.client() as client:
        reply = client.get(collection, key)
    return reply.json() if reply.status == 200 else None


@pytest.mark.parametrize("write", ["sync", "async"])
def test_a_stale_transaction_on_a_loses_to_bs_write_and_changes_nothing(
    agents: AgentFactory, pg_db: PgDatabase, write: str
) -> None:
    a, b = pg_agent(agents, pg_db, "a", write), pg_agent(agents, pg_db, "b", write)
    with a.client() as on_a, b.client() as on_b:
        read = on_a.put("tasks", "t1", {"state": "queued"}).version
        assert read is not None
        on_a.put("agents", "x", "old")
        wait_until(lambda: value(b, "tasks", "t1") == {"state": "queued"}, "b to hear of t1")
        claim = json.dumps({"state": "claimed by b"}).encode()
        claimed = on_b.put_record("tasks", "t1", claim, if_match=read).version
        assert claimed is not None and claimed > read
        reply = on_a.transaction(
            [Put("agents", "x", "new"), Check("tasks", "t1", if_match=read), Put("stats", "y", 1)]
        )
        assert reply.status == 412, reply.body
        body = reply.json()
        assert (body["index"], body["collection"], body["key"]) == (1, "tasks", "t1")
        assert body["current_version"] == claimed
        assert "tasks/t1" in body["error"] and "\n" not in body["error"]
    for agent in (a, b):
        assert value(agent, "agents", "x") == "old"
        assert value(agent, "stats", "y") is None
    assert txids(pg_db, "stats") == {}
    for agent in (a, b):
        assert agent.stop() == 0
        agent.assert_clean_logs()


def test_a_sync_bulk_write_of_100_records_is_one_postgres_transaction(
    agents: AgentFactory, pg_db: PgDatabase
) -> None:
    a, b = pg_agent(agents, pg_db, "a", "sync"), pg_agent(agents, pg_db, "b", "sync")
    with a.client() as on_a:
        reply = on_a.bulk_write([Put("bulk", f"r{i:03}", {"i": i}) for i in range(100)])
    assert reply.status == 200 and reply.json()["ok"], reply.body
    stored = txids(pg_db, "bulk")
    assert len(stored) == 100 and len(set(stored.values())) == 1
    with b.client() as on_b:
        wait_until(lambda: on_b.get("bulk", "r099").status == 200, "b to hear of the batch")
        found = on_b.bulk_get([("bulk", f"r{i:03}") for i in range(100)]).json()
    assert found["missing"] == 0
    assert [r["value"] for r in found["records"]] == [{"i": i} for i in range(100)]
    for agent in (a, b):
        assert agent.stop() == 0
        agent.assert_clean_logs()


def test_a_conditional_transaction_is_503_and_writes_nothing_while_postgres_is_away(
    agents: AgentFactory, pg_db: PgDatabase, pg_cluster: PgCluster
) -> None:
    a = pg_agent(agents, pg_db, "a", "async")
    with a.client() as on_a:
        read = on_a.put("tasks", "t1", "queued").version
        pg_cluster.stop("immediate")
        try:
            reply = on_a.transaction(
                [Put("tasks", "t1", "claimed", if_match=read), Put("agents", "a", 1)]
            )
            assert reply.status == 503, reply.body
            assert "postgres unreachable" in reply.json()["error"]
            assert on_a.get("tasks", "t1").json() == "queued"
            assert on_a.get("agents", "a").status == 404
            assert on_a.status()["tiers"]["postgres"]["last_error"]  # it still answers
        finally:
            try:
                pg_cluster.admin().close()
            except psycopg.OperationalError:
                pg_cluster.start()
    assert a.stop() == 0
