"""Conditional writes, versions and freshness with the postgres tier wired into HybridStorage,
against a real PostgreSQL (tests/pgcluster.py): several agents on one database, and the server
stopped and started under them (`pg_ctl stop -m immediate`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from bootstrap.errors import PreconditionFailed, Unavailable
from bootstrap.storage import HybridStorage
from tests.conftest import PgDatabase
from tests.pgcluster import PgCluster

from .conftest import PgAgent as Agent

MODES = ["sync", "async"]


def wait_until(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def stored_version(pg_db: PgDatabase, collection: str, key: str) -> int | None:
    with pg_db.cluster.admin(pg_db.name) as conn:
        row = conn.execute(
            "SELECT version FROM spine.records WHERE collection = %s AND key = %s",
            (collection, key),
        ).fetchone()
    return None if row is None else int(row[0])


def write_unheard(pg_db: PgDatabase, collection: str, key: str, value: str, version: int) -> None:
    """Another writer's row that no listener hears of (its NOTIFY trigger is off for this one
    statement): until the listeners' slow poll, only PostgreSQL knows it."""
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


@pytest.mark.parametrize("write", MODES)
def test_if_match_is_decided_by_postgres_and_one_of_two_agents_wins(
    agent: Agent, write: str
) -> None:
    a, b = agent("a", write), agent("b", write)
    _, version = a.put_versioned("agents", "k", {"n": 0})
    shipped(a)
    wait_until(lambda: b.get_versioned("agents", "k") == ({"n": 0}, version), "b to hold a's")
    _, won = b.put_versioned("agents", "k", {"n": "b"}, if_match=version)
    with pytest.raises(PreconditionFailed) as lost:
        a.put_versioned("agents", "k", {"n": "a"}, if_match=version)
    assert lost.value.current_version == won
    # the lost writer holds the winner's row at once: its next read-modify-write can succeed
    assert a.get_versioned("agents", "k") == ({"n": "b"}, won)
    _, again = a.put_versioned("agents", "k", {"n": "a"}, if_match=won)
    assert again > won


@pytest.mark.parametrize("write", MODES)
def test_a_stale_local_copy_cannot_win_a_conditional_write(
    agent: Agent, pg_db: PgDatabase, write: str
) -> None:
    """b's memory still has version V when PostgreSQL already holds a newer one nobody heard
    of: If-Match V on b is a 412 (PostgreSQL decides, not the local store), and b then serves
    the stored row."""
    b = agent("b", write)
    _, version = b.put_versioned("agents", "k", "old")
    shipped(b)
    write_unheard(pg_db, "agents", "k", '"newer"', version + 10)
    assert b.get_versioned("agents", "k") == ("old", version), "nobody told b"
    with pytest.raises(PreconditionFailed) as lost:
        b.put_versioned("agents", "k", "mine", if_match=version)
    assert lost.value.current_version == version + 10
    assert b.get_versioned("agents", "k") == ("newer", version + 10)
    with pytest.raises(PreconditionFailed):
        b.put_versioned("agents", "k", "mine", if_absent=True)
    with pytest.raises(PreconditionFailed):
        b.delete("agents", "k", if_match=version)
    assert b.get("agents", "k") == "newer"


@pytest.mark.parametrize("write", MODES)
def test_if_absent_and_conditional_delete_across_agents(agent: Agent, write: str) -> None:
    a, b = agent("a", write), agent("b", write)
    _, created = a.put_versioned("locks", "leader", "a", if_absent=True)
    with pytest.raises(PreconditionFailed) as taken:
        b.put_versioned("locks", "leader", "b", if_absent=True)
    assert taken.value.current_version == created
    assert b.delete("locks", "leader", if_match=created)
    assert b.get("locks", "leader") is None
    wait_until(lambda: a.get("locks", "leader") is None, "a to see b's delete")
    _, again = a.put_versioned("locks", "leader", "a", if_absent=True)
    assert again > created, "created again over its tombstone: a new, larger version"


def test_async_own_unshipped_write_is_what_if_match_compares(agent: Agent) -> None:
    """The version an async agent served for its own write not yet shipped is the one a
    conditional write compares: the backlog of that key is shipped first."""
    a = agent("a", "async")
    _, first = a.put_versioned("agents", "k", 1)
    shipped(a)
    _, second = a.put_versioned("agents", "k", 2)  # acknowledged, not shipped yet
    assert a.status()["tiers"]["postgres"]["backlog"] == 1
    _, third = a.put_versioned("agents", "k", 3, if_match=second)
    assert first < second < third
    assert a.status()["tiers"]["postgres"]["backlog"] == 0


def test_sync_etag_is_the_version_postgres_settled_on(agent: Agent, pg_db: PgDatabase) -> None:
    """b's clock is 100 s behind a's: its sync write still wins (it is the newest write), with
    a version above a's, and every agent serves that same version."""
    a = agent("a", "sync")
    b = agent("b", "sync", clock=lambda: time.time() - 100)
    _, va = a.put_versioned("agents", "k", "from-a")
    wait_until(lambda: b.get_versioned("agents", "k") == ("from-a", va), "b to hold a's")
    _, vb = b.put_versioned("agents", "k", "from-b")
    assert vb == va + 1 == stored_version(pg_db, "agents", "k")
    assert b.get_versioned("agents", "k") == ("from-b", vb)
    wait_until(lambda: a.get_versioned("agents", "k") == ("from-b", vb), "a to take b's")
    _, vb2 = b.put_versioned("agents", "other", 1)
    assert vb2 > vb, "b's write clock moved past the version PostgreSQL settled on"


@pytest.mark.parametrize("write", MODES)
def test_conditional_writes_are_503_and_write_nothing_while_postgres_is_away(
    agent: Agent, outage: PgCluster, write: str
) -> None:
    a = agent("a", write)
    _, version = a.put_versioned("agents", "k", "kept")
    shipped(a)
    outage.stop("immediate")
    attempts: list[Callable[[], Any]] = [
        lambda: a.put("agents", "k", "lost", if_match=version),
        lambda: a.put("agents", "new", "lost", if_absent=True),
        lambda: a.delete("agents", "k", if_match=version),
    ]
    for attempt in attempts:
        with pytest.raises(Unavailable) as away:
            attempt()
        assert away.value.status == 503
        assert "\n" not in str(away.value) and "postgres unreachable" in str(away.value)
    assert a.get_versioned("agents", "k") == ("kept", version)
    assert a.get("agents", "new") is None
    if write == "async":
        a.put("agents", "plain", "acknowledged locally")  # async keeps serving writes
    outage.start()
    retried = lambda: a.put("agents", "k", "back", if_match=version)  # noqa: E731
    wait_until(lambda: _succeeds(retried), "recovery")
    assert a.get("agents", "k") == "back"


def _succeeds(attempt: Callable[[], Any]) -> bool:
    try:
        attempt()
    except Unavailable:
        time.sleep(0.05)
        return False
    return True


@pytest.mark.parametrize("write", MODES)
def test_an_agent_started_with_postgres_away_follows_others_once_it_is_back(
    agent: Agent, outage: PgCluster, write: str
) -> None:
    a = agent("a", write)
    a.put("agents", "before", "written while b was away")
    shipped(a)
    a.close(backup=False)
    outage.stop("immediate")
    b = agent("b", write)  # starts, serves, without PostgreSQL
    assert b.restored_from == "empty"
    assert b.status()["tiers"]["postgres"]["open"] is False
    outage.start()
    wait_until(lambda: b.get("agents", "before") is not None, "b to catch up on its return")
    again = agent("a2", write)
    again.put("agents", "after", "written once both are up")
    shipped(again)
    wait_until(lambda: b.get("agents", "after") is not None, "b's listener to deliver")
    b.put("agents", "from-b", 1)  # sync mode too: writes work again by themselves
    shipped(b)
    wait_until(lambda: again.get("agents", "from-b") == 1, "a2 to see b's write")


def test_async_keeps_writing_while_postgres_is_away_and_catches_up(
    agent: Agent, outage: PgCluster
) -> None:
    a, b = agent("a", "async"), agent("b", "async")
    outage.stop("immediate")
    versions = {f"k{i}": a.put_versioned("agents", f"k{i}", i)[1] for i in range(20)}
    a.delete("agents", "k0")
    shipped(a)  # refused: the backlog is kept
    assert a.status()["tiers"]["postgres"]["backlog"] == 20
    outage.start()
    wait_until(lambda: (shipped(a), a.status()["tiers"]["postgres"]["backlog"])[1] == 0, "ship")
    wait_until(lambda: b.get_versioned("agents", "k19") == (19, versions["k19"]), "b to catch up")
    assert b.get("agents", "k0") is None


def test_a_412_carries_no_secret_and_postgres_decides_with_the_psycopg_error_hidden(
    agent: Agent,
) -> None:
    a = agent("a", "sync")
    with pytest.raises(PreconditionFailed) as lost:
        a.put("agents", "missing", 1, if_match=17)
    assert lost.value.current_version is None
    assert str(lost.value) == "precondition failed: agents/missing is absent"
    assert not isinstance(lost.value, psycopg.Error)


@pytest.mark.parametrize("write", MODES)
def test_a_replayed_journal_line_does_not_stand_over_a_newer_write_from_another_agent(
    agent: Agent, write: str
) -> None:
    """b's journal still holds its own older write when b restarts after a crash; a wrote the
    key since: b serves a's value and version, not its replayed line."""
    a, b = agent("a", write), agent("b", write)
    b.put("agents", "k", "b's, older")
    shipped(b)
    wait_until(lambda: a.get("agents", "k") == "b's, older", "a to see b's write")
    b.abandon()  # kill -9: the journal is not checkpointed
    _, newer = a.put_versioned("agents", "k", "a's, newer")
    shipped(a)
    again = agent("b", write)
    assert again.get_versioned("agents", "k") == ("a's, newer", newer)
