"""Bad PostgreSQL input through the real `spine-agent run` (issue 8 §2 "Bad input"): each case
exits 2 at start with one line naming the key and the value, and never echoes a password; a
value over the size limit is a 413 at run time with nothing written anywhere.

The server is the session's real PostgreSQL 15 (tests/conftest.py: TLS-only on 127.0.0.1,
scram passwords); every test gets a fresh database.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from bootstrap.config import MAX_ERROR_CHARS
from tests.conftest import PgDatabase

from .conftest import AgentFactory
from .pgagents import SCHEMA, put, value_of
from .test_cli import cli, one_line

PREFIX = "spine-agent: "


def run_with(workdir: Path, section: dict[str, object]) -> subprocess.CompletedProcess[str]:
    config = workdir / "agent.yaml"
    config.write_text(yaml.safe_dump({"storage_path": str(workdir / "storage"),
                                      "postgres": section}))
    return cli("run", config=config, timeout=120)


def refused(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2, one short line on stderr holding every needle."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    line = one_line(proc.stderr)
    assert line.startswith(PREFIX) and len(line) <= len(PREFIX) + MAX_ERROR_CHARS, line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def test_an_unparsable_dsn(pg_db: PgDatabase, workdir: Path) -> None:
    proc = run_with(workdir, pg_db.section(dsn="host='127.0.0.1 dbname=x"))
    refused(proc, "postgres.dsn", "host='127.0.0.1", "not a valid conninfo")


def test_a_password_in_the_dsn_is_refused_and_not_echoed(
    pg_db: PgDatabase, workdir: Path
) -> None:
    for dsn in (
        pg_db.tcp_dsn() + " password=hunter2-secret",
        f"postgresql://{pg_db.role}:hunter2-secret@127.0.0.1:{pg_db.cluster.port}/{pg_db.name}"
        f"?sslmode=verify-ca&sslrootcert={pg_db.cluster.certs.ca}",
    ):
        line = refused(run_with(workdir, pg_db.section(dsn=dsn)), "postgres.dsn", "password_file")
        assert "hunter2-secret" not in line


def test_a_wrong_password_names_the_password_file(pg_db: PgDatabase, workdir: Path) -> None:
    wrong = workdir / "wrong-password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    proc = run_with(workdir, pg_db.section(password_file=str(wrong)))
    line = refused(proc, "postgres.password_file", str(wrong), "password authentication failed")
    assert "not-the-password" not in line


def test_a_password_file_others_can_read_is_refused(pg_db: PgDatabase, workdir: Path) -> None:
    loose = workdir / "loose-password"
    loose.write_text(pg_db.password_file.read_text())
    loose.chmod(0o644)
    proc = run_with(workdir, pg_db.section(password_file=str(loose)))
    line = refused(proc, "postgres.password_file", str(loose))
    assert pg_db.password_file.read_text().strip() not in line


def test_ssl_disabled_where_the_server_demands_tls(pg_db: PgDatabase, workdir: Path) -> None:
    proc = run_with(workdir, pg_db.section(dsn=pg_db.tcp_dsn(sslmode="disable")))
    refused(proc, "postgres.dsn", "no encryption")


def test_a_server_certificate_from_another_ca(pg_db: PgDatabase, workdir: Path) -> None:
    other = str(pg_db.cluster.certs.other_ca)
    proc = run_with(workdir, pg_db.section(dsn=pg_db.tcp_dsn(ca=other)))
    refused(proc, "postgres.dsn", "certificate verify failed")


def test_a_database_that_does_not_exist(pg_db: PgDatabase, workdir: Path) -> None:
    dsn = pg_db.cluster.tcp_dsn("no_such_db", pg_db.role)
    proc = run_with(workdir, pg_db.section(dsn=dsn))
    refused(proc, "postgres.dsn", "no_such_db", 'database "no_such_db" does not exist')


def test_a_role_without_rights_is_told_what_to_grant(pg_db: PgDatabase, workdir: Path) -> None:
    cluster = pg_db.cluster
    role, database = f"norights_{pg_db.name}", f"norights_{pg_db.name}"
    cluster.create_role(role, "norights-pw")
    with cluster.admin() as admin:
        admin.execute(f"CREATE DATABASE {database}")  # owned by postgres: no CREATE for role
    secret = workdir / "norights"
    secret.write_text("norights-pw")
    secret.chmod(0o600)
    section = {"dsn": cluster.tcp_dsn(database, role), "password_file": str(secret)}
    proc = run_with(workdir, section)
    refused(proc, "postgres.dsn", f"GRANT CREATE ON DATABASE {database} TO {role}")


def test_a_schema_newer_than_the_agent_is_refused(pg_db: PgDatabase, workdir: Path) -> None:
    with pg_db.cluster.admin(pg_db.name) as admin:
        admin.execute(f"CREATE SCHEMA {SCHEMA} AUTHORIZATION {pg_db.role}")
        admin.execute(
            f"CREATE TABLE {SCHEMA}.migrations (version integer PRIMARY KEY, "
            "applied_at timestamptz NOT NULL DEFAULT now(), applied_by text NOT NULL)"
        )
        admin.execute(f"ALTER TABLE {SCHEMA}.migrations OWNER TO {pg_db.role}")
        admin.execute(f"INSERT INTO {SCHEMA}.migrations VALUES (999, now(), 'future')")
    proc = run_with(workdir, pg_db.section())
    refused(proc, "postgres.schema", "999", "upgrade the agent")


def test_a_bad_write_mode(pg_db: PgDatabase, workdir: Path) -> None:
    proc = run_with(workdir, pg_db.section(write="eventually"))
    refused(proc, "postgres.write", "eventually")


def test_a_value_over_the_size_limit_is_413_and_written_nowhere(
    pg_db: PgDatabase, agents: AgentFactory
) -> None:
    agent = agents.new("big", postgres=pg_db.section(), max_value_size="4KiB").start()
    with agent.client() as client:
        reply = put(client, "agents", "big", {"pad": "x" * 5000})
        assert reply.status == 413, (reply.status, reply.body)
        assert "max_value_size" in reply.json()["error"]
        assert value_of(client, "agents", "big") is None
        assert put(client, "agents", "small", {"pad": "x"}).status == 200
    with pg_db.cluster.admin(pg_db.name) as admin:
        keys = [k for (k,) in admin.execute(f"SELECT key FROM {SCHEMA}.records").fetchall()]
    assert keys == ["small"]
