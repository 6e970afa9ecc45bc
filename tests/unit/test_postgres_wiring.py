"""The postgres tier wired into HybridStorage, against a real PostgreSQL (tests/pgcluster.py):
two agents with their own storage paths share one database."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bootstrap.config import ConfigError, config_from_mapping
from bootstrap.errors import Unavailable
from bootstrap.storage import HybridStorage
from tests.conftest import PgDatabase

from .conftest import PgAgent as Agent


def wait_until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_the_postgres_section_adds_the_tier_to_its_classes(pg_db: PgDatabase) -> None:
    config = config_from_mapping({"postgres": pg_db.section()})
    assert config.routes == {
        "critical": ("files", "git", "postgres"),
        "session": ("files", "postgres"),
        "cache": (),
    }
    assert config_from_mapping({}).postgres is None, "no section, no tier"


def test_a_route_naming_postgres_without_the_section_is_refused() -> None:
    with pytest.raises(ConfigError, match="postgres needs a postgres: section"):
        config_from_mapping({"routes": {"session": ["files", "postgres"]}})


def test_cache_in_postgres_classes_is_refused(pg_db: PgDatabase) -> None:
    with pytest.raises(ConfigError, match=r"postgres\.classes='cache'"):
        config_from_mapping({"postgres": pg_db.section(classes=["critical", "cache"])})


def test_a_password_in_the_dsn_is_refused(pg_db: PgDatabase) -> None:
    with pytest.raises(ConfigError, match=r"use postgres\.password_file"):
        config_from_mapping({"postgres": {"dsn": pg_db.tcp_dsn() + " password=hunter2"}})


@pytest.mark.parametrize("write", ["sync", "async"])
def test_a_write_on_one_agent_is_read_on_the_other(agent: Agent, write: str) -> None:
    a, b = agent("a", write), agent("b", write)
    a.put("agents", "x", {"from": "a"})
    a.backup()  # async: ship now (the shipper thread runs only under the daemon)
    wait_until(lambda: b.get("agents", "x") == {"from": "a"}, "b to see a's write")
    a.delete("agents", "x")
    a.backup()
    wait_until(lambda: b.get("agents", "x") is None, "b to see a's delete")


def test_a_delete_stays_deleted_after_a_restart_from_warm_files(agent: Agent) -> None:
    a, b = agent("a"), agent("b")
    a.put("agents", "gone", {"v": 1})
    a.backup()
    wait_until(lambda: b.get("agents", "gone") == {"v": 1}, "b to see the put")
    b.tier()  # b's warm files now hold the record
    b.close(backup=False)
    a.delete("agents", "gone")
    a.backup()
    again = agent("b")
    assert again.get("agents", "gone") is None, "the tombstone is newer than the warm file"


def test_an_empty_disk_starts_from_postgres(agent: Agent) -> None:
    a = agent("a")
    for i in range(50):
        a.put("agents", f"k{i}", {"i": i})
    a.backup()
    fresh = agent("fresh")
    assert fresh.restored_from == "postgres"
    assert fresh.get("agents", "k49") == {"i": 49}
    assert fresh.record_count() >= 50


def test_async_keeps_a_backlog_and_reports_it(agent: Agent) -> None:
    a = agent("a")
    a.put("stats", "s", {"n": 1})
    status = a.status()["tiers"]["postgres"]
    assert status["backlog"] == 1 and status["write"] == "async"
    assert a.status()["dirty"]["postgres"] == 1
    a.backup()
    assert a.status()["tiers"]["postgres"]["backlog"] == 0


def test_sync_refuses_a_write_with_503_when_postgres_is_unreachable(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    dsn = "host=127.0.0.1 port=1 dbname=nothing user=nobody connect_timeout=1"
    config = config_from_mapping(
        {"storage_path": str(tmp_path / "s"), "postgres": {"dsn": dsn, "write": "sync"}}
    )
    storage = HybridStorage(config)
    storage.initialize()  # serves reads while the server is away
    try:
        with pytest.raises(Unavailable) as info:
            storage.put("agents", "x", {"v": 1})
        assert info.value.status == 503
        assert storage.get("agents", "x") is None, "nothing written"
        storage.put("cache", "c", {"v": 1})  # memory-only classes are not affected
    finally:
        storage.close(backup=False)


def test_the_section_comes_from_the_environment_too(pg_db: PgDatabase) -> None:
    from bootstrap.config import load_config

    section = pg_db.section()
    env = {
        "SUPER_SPINE_POSTGRES__DSN": str(section["dsn"]),
        "SUPER_SPINE_POSTGRES__PASSWORD_FILE": str(section["password_file"]),
        "SUPER_SPINE_POSTGRES__WRITE": "async",
    }
    config = load_config(None, env=env)
    assert config.postgres is not None and config.postgres.write == "async"
    assert "postgres" in config.routes["critical"]
