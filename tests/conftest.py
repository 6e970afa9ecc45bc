"""PostgreSQL fixtures: one real throwaway cluster per test session, a fresh database per test.

The cluster starts only when a test asks for it (about 2 s, plus the TLS certificates), so
test runs that never touch PostgreSQL pay nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.pgcluster import PgCluster

TEST_ROLE = "spine_test"


@dataclass
class PgDatabase:
    """A database owned by the test role, and what an agent needs to reach it."""

    cluster: PgCluster
    name: str
    role: str
    password_file: Path

    def tcp_dsn(self, **kwargs: str) -> str:
        return self.cluster.tcp_dsn(self.name, self.role, **kwargs)  # type: ignore[arg-type]

    def socket_dsn(self) -> str:
        return self.cluster.socket_dsn(self.name, self.role)

    def section(self, **overrides: object) -> dict[str, object]:
        """A `postgres:` config section for this database (TLS on 127.0.0.1)."""
        section: dict[str, object] = {
            "dsn": self.tcp_dsn(),
            "password_file": str(self.password_file),
        }
        section.update(overrides)
        return section


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    cluster = PgCluster().init()
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def pg_password_file(pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test role's password, in a 0600 file as an agent is given it."""
    password = secrets.token_urlsafe(24)
    pg_cluster.create_role(TEST_ROLE, password)
    secret = tmp_path_factory.mktemp("pg-secret") / "password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    return secret


@pytest.fixture
def pg_db(pg_cluster: PgCluster, pg_password_file: Path) -> PgDatabase:
    """A fresh, empty database for one test."""
    name = pg_cluster.create_database(TEST_ROLE)
    return PgDatabase(pg_cluster, name, TEST_ROLE, pg_password_file)
