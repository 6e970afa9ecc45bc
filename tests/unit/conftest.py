"""Shared fixtures for unit tests: a controllable clock and storage on a real temp directory."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bootstrap.config import config_from_mapping
from bootstrap.storage import HybridStorage
from tests.conftest import PgCluster, PgDatabase


class FakeClock:
    """Wall-clock stand-in the tests move by hand, so age rules are tested without sleeping."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_storage(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[..., HybridStorage]]:
    opened: list[HybridStorage] = []

    def factory(**raw: Any) -> HybridStorage:
        raw.setdefault("storage_path", str(tmp_path / "storage"))
        storage = HybridStorage(config_from_mapping(raw), clock=clock)
        storage.initialize()
        opened.append(storage)
        return storage

    yield factory
    for storage in opened:
        if storage.is_open:
            storage.close(backup=False)


PgAgent = Callable[..., HybridStorage]


@pytest.fixture
def agent(pg_db: PgDatabase, tmp_path: Path) -> Iterator[PgAgent]:
    """Agents (HybridStorage) with their own storage paths on the test's PostgreSQL database:
    agent(name, write="async"|"sync", clock=..., **more postgres keys)."""
    opened: list[HybridStorage] = []

    def make(
        name: str,
        write: str = "async",
        clock: Callable[[], float] = time.time,
        **postgres: Any,
    ) -> HybridStorage:
        section = pg_db.section(write=write, max_lag="20ms", **postgres)
        config = config_from_mapping(
            {"storage_path": str(tmp_path / name), "postgres": section}, base_dir=tmp_path
        )
        storage = HybridStorage(config, clock=clock)
        storage.initialize()
        opened.append(storage)
        return storage

    yield make
    for storage in opened:
        if storage.is_open:
            storage.close(backup=False)


@pytest.fixture
def outage(pg_cluster: PgCluster) -> Iterator[PgCluster]:
    """The session's server, started again after the test if the test left it stopped."""
    yield pg_cluster
    try:
        pg_cluster.admin().close()
    except psycopg.OperationalError:
        pg_cluster.start()
