"""A throwaway PostgreSQL 15 cluster for tests and benchmarks: real server, real TLS, real auth.

Root cannot run initdb or postgres, so every directory belongs to the unprivileged `postgres`
system user that Debian's package creates, and the binaries run through `runuser`. The cluster
listens on a unix socket (superuser, trust: the harness's own door) and on 127.0.0.1 with TLS
only (scram-sha-256 passwords), so the tests can exercise the same DSNs an agent gets: a socket
directory as for Cloud SQL's volume, or an address with `sslmode=verify-ca`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"
START_TIMEOUT = 60.0  # a loaded 2-core machine; a quiet one starts in ~0.2 s
CERT_DAYS = "2"


@dataclass(frozen=True)
class Certificates:
    """A CA that signed the server's certificate, and an unrelated CA for mismatch tests."""

    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(directory: Path) -> Certificates:
    """Self-signed CA + server certificate for 127.0.0.1/localhost, and a second, unrelated CA."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("ca", "other-ca"):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", CERT_DAYS,
            "-subj", f"/CN=spine-test-{name}", "-keyout", f"{name}.key", "-out", f"{name}.crt",
            cwd=directory,
        )
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr", cwd=directory,
    )
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", CERT_DAYS, "-extfile", "san.ext", "-out", "server.crt",
        cwd=directory,
    )
    return Certificates(
        ca=directory / "ca.crt",
        other_ca=directory / "other-ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
    )


class PgCluster:
    """initdb + postgres as the `postgres` user in a private temp directory.

    `fast=True` (tests) turns fsync off: an immediate stop is a crash of the server, not of the
    OS, so no acknowledged commit is lost either way; benchmarks keep fsync on.
    """

    def __init__(self, fast: bool = True) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="spine-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.sockdir = self.root / "sock"
        self.log = self.root / "log" / "postgres.log"
        self.port = _free_port()
        self.fast = fast
        self.certs = make_certificates(self.root / "certs")
        self._owner = pwd.getpwnam(PG_USER)
        self._databases = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def init(self) -> PgCluster:
        for path in (self.data, self.sockdir, self.log.parent):
            path.mkdir(parents=True)
        self.root.chmod(0o755)  # postgres must reach its own directories below
        (self.root / "certs").chmod(0o755)
        for path in (self.data, self.sockdir, self.log.parent):
            os.chown(path, self._owner.pw_uid, self._owner.pw_gid)
        self.data.chmod(0o700)
        self._as_postgres(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", PG_USER, "-E", "UTF8",
            "--locale=C", "--no-sync", "--auth-local=trust", "--auth-host=scram-sha-256",
        )
        key = self.data / "server.key"
        shutil.copy(self.certs.server_key, key)
        shutil.copy(self.certs.server_cert, self.data / "server.crt")
        for path in (key, self.data / "server.crt"):
            os.chown(path, self._owner.pw_uid, self._owner.pw_gid)
        key.chmod(0o600)
        (self.data / "pg_hba.conf").write_text(
            "local all postgres trust\n"
            "local all all scram-sha-256\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            "hostnossl all all 127.0.0.1/32 reject\n"
        )
        settings = {
            "ssl": "on",
            "ssl_cert_file": "server.crt",
            "ssl_key_file": "server.key",
            "password_encryption": "scram-sha-256",
            "max_connections": "200",
            "fsync": "off" if self.fast else "on",
            "full_page_writes": "off" if self.fast else "on",
            "log_min_messages": "warning",
        }
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.writelines(f"{name} = '{value}'\n" for name, value in settings.items())
        return self

    def start(self) -> None:
        options = f"-k {self.sockdir} -c listen_addresses=127.0.0.1 -p {self.port}"
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-w", "-t", str(int(START_TIMEOUT)), "start",
        )
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            probe = subprocess.run(
                [str(PG_BIN / "pg_isready"), "-q", "-h", str(self.sockdir), "-p", str(self.port)],
                check=False, timeout=30,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError(f"postgres did not become ready; see {self.log}")

    def stop(self, mode: str = "immediate") -> None:
        """`immediate` is a crash of the server: no checkpoint, clients cut off at once."""
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False
        )

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- the harness's own superuser door ----------------------------------------------------
    def admin(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(
            host=str(self.sockdir), port=self.port, user=PG_USER, dbname=dbname, autocommit=True
        )

    def create_role(self, name: str, password: str) -> None:
        with self.admin() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(password)
                )
            )

    def create_database(self, owner: str) -> str:
        self._databases += 1
        name = f"t{self._databases}_{os.getpid()}"
        with self.admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(owner)
                )
            )
        return name

    # -- DSNs an agent would be given ------------------------------------------------------
    def tcp_dsn(
        self, dbname: str, user: str, sslmode: str = "verify-ca", ca: Path | None = None
    ) -> str:
        return (
            f"host=127.0.0.1 port={self.port} dbname={dbname} user={user} "
            f"sslmode={sslmode} sslrootcert={ca or self.certs.ca}"
        )

    def socket_dsn(self, dbname: str, user: str) -> str:
        return f"host={self.sockdir} port={self.port} dbname={dbname} user={user}"

    def _as_postgres(self, *command: str, check: bool = True) -> None:
        done = subprocess.run(
            ["runuser", "-u", PG_USER, "--", *command],
            check=False, capture_output=True, text=True, timeout=START_TIMEOUT,
        )
        if check and done.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{command[0]} failed ({done.returncode}): {done.stderr.strip()} {tail}"
            )
