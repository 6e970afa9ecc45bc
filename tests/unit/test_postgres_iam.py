"""`postgres.auth: iam`: the password of each new connection is the machine's OAuth token,
from the metadata server, as Cloud SQL's IAM database authentication wants it.

The metadata server here is a STAND-IN the test serves itself (tests/lab/metadata.py, on
127.0.0.1): it hands out a random token as GCE's would. PostgreSQL is real (tests/pgcluster.py):
a role whose password is set to that token plays the IAM user, so the server really checks
what the agent sends. What it cannot show is Cloud SQL's own token check; the Pulumi side
(flag, IAM user, instanceUser role) is tested under the mocks in tests/infra.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from bootstrap.config import ConfigError
from bootstrap.tiers.gce_token import REFRESH_MARGIN, MetadataToken, TokenUnavailable
from bootstrap.tiers.pg_config import parse_postgres_config
from bootstrap.tiers.postgres import Change, PostgresTier, TierUnavailable
from tests.lab.metadata import LabMetadata
from tests.pgcluster import PgCluster

# What Cloud SQL calls a service account's PostgreSQL user: its email less .gserviceaccount.com
IAM_USER = "spine-run@acme-spine-1.iam"


@pytest.fixture
def metadata() -> Iterator[LabMetadata]:
    with LabMetadata(address="127.0.0.1") as server:
        yield server


@pytest.fixture
def iam_db(pg_cluster: PgCluster, metadata: LabMetadata) -> str:
    """A database owned by the IAM user, whose password is the stand-in's current token."""
    with pg_cluster.admin() as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [IAM_USER]).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(IAM_USER), sql.Literal(metadata.token)
            )
        )
    return pg_cluster.create_database(IAM_USER)


def iam_section(pg_cluster: PgCluster, db: str, metadata: LabMetadata) -> dict[str, object]:
    return {
        "dsn": pg_cluster.tcp_dsn(db, IAM_USER),
        "auth": "iam",
        "metadata_url": metadata.metadata_url,
    }


def set_password(pg_cluster: PgCluster, password: str) -> None:
    with pg_cluster.admin() as conn:
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(IAM_USER), sql.Literal(password)
            )
        )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the token ---------------------------------------------------------------------------------
def test_the_token_is_fetched_once_and_refreshed_before_it_expires(
    metadata: LabMetadata,
) -> None:
    clock = FakeClock()
    source = MetadataToken(metadata.metadata_url, clock=clock)
    first = source.token()
    assert first == metadata.token
    clock.now += 3599 - REFRESH_MARGIN - 1  # still more than the margin left: cached
    assert source.token() == first and source.fetches == 1
    second = metadata.rotate_token()
    clock.now += 2  # now within the margin: a new one is fetched
    assert source.token() == second and source.fetches == 2
    assert metadata.requests.count("/computeMetadata/v1/instance/service-accounts/default/token")


def test_a_metadata_server_away_for_a_moment_is_retried(metadata: LabMetadata) -> None:
    metadata.fail_token_requests = 2
    naps: list[float] = []
    source = MetadataToken(metadata.metadata_url, sleep=naps.append)
    assert source.token() == metadata.token
    assert naps == [0.2, 0.4]


def test_a_metadata_server_that_stays_away_is_a_transient_failure(metadata: LabMetadata) -> None:
    """TokenUnavailable is an OperationalError: the tier treats it as the database away."""
    metadata.fail_token_requests = 100
    source = MetadataToken(metadata.metadata_url, sleep=lambda _: None)
    with pytest.raises(TokenUnavailable) as caught:
        source.token()
    assert isinstance(caught.value, psycopg.OperationalError)
    message = str(caught.value)
    assert "\n" not in message and "HTTP 503" in message and "4 tries" in message


def test_no_metadata_server_at_all_is_a_transient_failure(tmp_path: Path) -> None:
    source = MetadataToken("http://127.0.0.1:9/computeMetadata/v1", sleep=lambda _: None)
    with pytest.raises(TokenUnavailable):
        source.token()


# -- against PostgreSQL ------------------------------------------------------------------------
def test_the_agent_logs_in_with_the_token_and_writes(
    pg_cluster: PgCluster, iam_db: str, metadata: LabMetadata, tmp_path: Path
) -> None:
    config = parse_postgres_config(iam_section(pg_cluster, iam_db, metadata), tmp_path)
    assert config.password_file is None and config.auth == "iam"
    tier = PostgresTier(config, host="a", wait_timeout=1.0)
    tier.open()
    try:
        tier.write([Change("agents", "k", b'{"v": 1}', "critical", 1_700_000_000.0)])
        assert [c.key for c in tier.read(None)] == ["k"]
    finally:
        tier.close()
    assert metadata.token not in str(tier.status())


def test_a_rotated_token_is_used_for_the_next_connection(
    pg_cluster: PgCluster, iam_db: str, metadata: LabMetadata, tmp_path: Path
) -> None:
    clock = FakeClock()
    config = parse_postgres_config(iam_section(pg_cluster, iam_db, metadata), tmp_path)
    assert config.token_source is not None
    # The same source, on a clock the test moves (the config's own uses the real one).
    source = MetadataToken(metadata.metadata_url, clock=clock)
    config = replace(config, token_source=source)
    with psycopg.connect(**config.connect_kwargs()) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (IAM_USER,)
    set_password(pg_cluster, metadata.rotate_token())
    clock.now += 3600
    with psycopg.connect(**config.connect_kwargs()) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (IAM_USER,)
    assert source.fetches == 2


def test_a_token_the_server_refuses_stops_the_agent_with_one_line(
    pg_cluster: PgCluster, iam_db: str, metadata: LabMetadata, tmp_path: Path
) -> None:
    set_password(pg_cluster, secrets.token_urlsafe(24))  # the database expects another one
    tier = PostgresTier(
        parse_postgres_config(iam_section(pg_cluster, iam_db, metadata), tmp_path),
        host="a",
        wait_timeout=1.0,
    )
    with pytest.raises(ConfigError) as caught:
        tier.open()
    message = str(caught.value)
    assert "password authentication failed" in message and "\n" not in message
    assert metadata.token not in message


def test_no_metadata_server_at_start_is_the_database_away(
    pg_cluster: PgCluster, iam_db: str, metadata: LabMetadata, tmp_path: Path
) -> None:
    """Not a configuration error (exit 2): the agent keeps trying, as for a server away."""
    metadata.fail_token_requests = 100
    tier = PostgresTier(
        parse_postgres_config(iam_section(pg_cluster, iam_db, metadata), tmp_path),
        host="a",
        wait_timeout=1.0,
    )
    with pytest.raises(TierUnavailable):
        tier.open()
    metadata.fail_token_requests = 0
    tier.open()
    tier.close()


# -- bad input ---------------------------------------------------------------------------------
def refused(section: dict[str, object], tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_postgres_config(section, tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_an_unknown_auth_mode_is_refused(tmp_path: Path) -> None:
    message = refused({"dsn": "host=/cloudsql/x dbname=d user=u", "auth": "kerberos"}, tmp_path)
    assert "postgres.auth='kerberos'" in message and "password, iam" in message


def test_iam_with_a_password_file_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("x\n")
    secret.chmod(0o600)
    section = {
        "dsn": "host=/cloudsql/x dbname=d user=u",
        "auth": "iam",
        "password_file": str(secret),
    }
    message = refused(section, tmp_path)
    assert "postgres.password_file=" in message and "not used with postgres.auth iam" in message


def test_iam_without_a_user_is_refused(tmp_path: Path) -> None:
    message = refused({"dsn": "host=/cloudsql/x dbname=d", "auth": "iam"}, tmp_path)
    assert "postgres.dsn=" in message and "needs user=" in message


def test_a_metadata_url_that_is_not_http_is_refused(tmp_path: Path) -> None:
    section = {
        "dsn": "host=/cloudsql/x dbname=d user=u",
        "auth": "iam",
        "metadata_url": "file:///etc/passwd",
    }
    message = refused(section, tmp_path)
    assert "postgres.metadata_url='file:///etc/passwd'" in message and "http://" in message


def test_the_sidecars_environment_turns_iam_on(tmp_path: Path) -> None:
    """Cloud Run configures the agent by environment alone (infra/components/service.py)."""
    from bootstrap.config import load_config

    config = load_config(env={
        "SUPER_SPINE_STORAGE_PATH": str(tmp_path),
        "SUPER_SPINE_POSTGRES__DSN": "host=/cloudsql/p:r:i dbname=superspine user=sa@p.iam",
        "SUPER_SPINE_POSTGRES__AUTH": "iam",
        "SUPER_SPINE_POSTGRES__WRITE": "sync",
        "SUPER_SPINE_POSTGRES__METADATA_URL": "http://127.0.0.1:9/computeMetadata/v1",
    })
    assert config.postgres is not None
    assert (config.postgres.auth, config.postgres.write) == ("iam", "sync")
    assert config.postgres.token_source is not None
