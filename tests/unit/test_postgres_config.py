"""The `postgres:` section: each bad value is one ConfigError line naming key and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootstrap.config import ConfigError
from bootstrap.records import PersistenceClass
from bootstrap.tiers.pg_config import parse_postgres_config, redact_dsn

SECRET = "s3cr3t-Pa55"


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "pg-password"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.crt"
    path.write_text("not parsed here\n")
    return path


def refused(section: dict[str, object], base: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_postgres_config(section, base)
    message = str(caught.value)
    assert "\n" not in message
    assert SECRET not in message
    return message


def test_defaults(tmp_path: Path, password_file: Path) -> None:
    config = parse_postgres_config(
        {"dsn": "host=/cloudsql/proj:europe-west1:db dbname=spine user=agent",
         "password_file": str(password_file)},
        tmp_path,
    )
    assert config.classes == {PersistenceClass.CRITICAL, PersistenceClass.SESSION}
    assert (config.write, config.max_lag, config.schema) == ("sync", 1.0, "spine")
    params = config.connect_kwargs()
    assert params["host"] == "/cloudsql/proj:europe-west1:db"
    assert params["password"] == SECRET  # read from the file, at connect time
    assert SECRET not in config.dsn and SECRET not in config.describe()


def test_private_ip_with_verify_ca_and_every_key(tmp_path: Path, ca_file: Path) -> None:
    config = parse_postgres_config(
        {
            "dsn": f"postgresql://agent@10.20.0.3:5432/spine?sslmode=verify-ca&sslrootcert={ca_file}",
            "classes": "critical",
            "write": "ASYNC",
            "max_lag": "250ms",
            "schema": "spine_b",
        },
        tmp_path,
    )
    assert config.classes == {PersistenceClass.CRITICAL}
    assert (config.write, config.max_lag, config.schema) == ("async", 0.25, "spine_b")
    assert config.connect_kwargs()["sslrootcert"] == str(ca_file)


def test_relative_ca_and_password_paths_are_taken_from_base_dir(
    tmp_path: Path, ca_file: Path, password_file: Path
) -> None:
    config = parse_postgres_config(
        {"dsn": "host=10.0.0.5 sslmode=verify-full sslrootcert=ca.crt",
         "password_file": password_file.name},
        tmp_path,
    )
    assert config.password_file == password_file
    assert config.connect_kwargs()["sslrootcert"] == str(ca_file)


@pytest.mark.parametrize(
    "dsn",
    [
        f"host=/tmp dbname=spine password={SECRET}",
        f"host=/tmp dbname=spine password='{SECRET}'",
        f"postgresql://agent:{SECRET}@127.0.0.1/spine",
    ],
)
def test_password_in_dsn_is_refused_without_echoing_it(tmp_path: Path, dsn: str) -> None:
    message = refused({"dsn": dsn}, tmp_path)
    assert "postgres.dsn" in message and "use postgres.password_file" in message


def test_unparsable_dsn(tmp_path: Path) -> None:
    message = refused({"dsn": f"host=/tmp dbname password={SECRET}"}, tmp_path)
    assert "postgres.dsn" in message and "not a valid conninfo" in message


def test_unknown_dsn_parameter(tmp_path: Path) -> None:
    assert "not a valid conninfo" in refused({"dsn": "host=/tmp colour=blue"}, tmp_path)


@pytest.mark.parametrize("dsn", ["", "   ", 42])
def test_empty_or_non_string_dsn(tmp_path: Path, dsn: object) -> None:
    assert "postgres.dsn" in refused({"dsn": dsn}, tmp_path)


def test_missing_dsn(tmp_path: Path) -> None:
    assert "postgres.dsn=None: required" in refused({"write": "sync"}, tmp_path)


def test_overlong_dsn(tmp_path: Path) -> None:
    assert "longer than 4096" in refused({"dsn": "host=/tmp dbname=" + "x" * 5000}, tmp_path)


@pytest.mark.parametrize("sslmode", ["", "sslmode=disable", "sslmode=prefer", "sslmode=require"])
def test_network_host_must_verify_the_server(tmp_path: Path, sslmode: str) -> None:
    message = refused({"dsn": f"host=10.1.2.3 dbname=spine {sslmode}"}, tmp_path)
    assert "sslmode=verify-ca" in message and "10.1.2.3" in message


def test_verify_ca_needs_a_root_certificate(tmp_path: Path) -> None:
    assert "needs sslrootcert" in refused({"dsn": "host=10.1.2.3 sslmode=verify-ca"}, tmp_path)


def test_missing_root_certificate_file(tmp_path: Path) -> None:
    message = refused(
        {"dsn": "host=10.1.2.3 sslmode=verify-ca sslrootcert=/nonexistent/ca.crt"}, tmp_path
    )
    assert "sslrootcert '/nonexistent/ca.crt' is not a readable file" in message


def test_loopback_may_go_without_tls(tmp_path: Path) -> None:
    config = parse_postgres_config({"dsn": "host=127.0.0.1 port=5432 dbname=x"}, tmp_path)
    assert config.connect_kwargs()["host"] == "127.0.0.1"


def test_password_file_readable_by_others_is_refused(tmp_path: Path, password_file: Path) -> None:
    password_file.chmod(0o644)
    message = refused({"dsn": "host=/tmp", "password_file": str(password_file)}, tmp_path)
    assert "postgres.password_file" in message and "mode 0644 lets group or others in" in message


def test_missing_password_file(tmp_path: Path) -> None:
    message = refused({"dsn": "host=/tmp", "password_file": str(tmp_path / "nope")}, tmp_path)
    assert "postgres.password_file" in message and "cannot read" in message


def test_empty_password_file(tmp_path: Path, password_file: Path) -> None:
    password_file.write_text("")
    message = refused({"dsn": "host=/tmp", "password_file": str(password_file)}, tmp_path)
    assert "must hold 1 to 1024 bytes, not 0" in message


def test_oversized_password_file(tmp_path: Path, password_file: Path) -> None:
    password_file.write_text("x" * 2000)
    assert "must hold 1 to 1024 bytes, not 2000" in refused(
        {"dsn": "host=/tmp", "password_file": str(password_file)}, tmp_path
    )


def test_password_is_read_again_on_every_connect(tmp_path: Path, password_file: Path) -> None:
    config = parse_postgres_config(
        {"dsn": "host=/tmp", "password_file": str(password_file)}, tmp_path
    )
    password_file.write_text("rotated\n")
    assert config.connect_kwargs()["password"] == "rotated"
    password_file.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 0600"):
        config.connect_kwargs()


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("write", "eventually", "allowed: sync, async"),
        ("max_lag", "5ms", "between 10ms and 60min"),
        ("max_lag", "2h", "between 10ms and 60min"),
        ("max_lag", "soon", "expected a duration"),
        ("schema", "Spine", "lower-case SQL name"),
        ("schema", "pg_spine", "lower-case SQL name"),
        ("schema", "a" * 64, "lower-case SQL name"),
        ("schema", "spine;drop", "lower-case SQL name"),
        ("classes", ["critical", "gold"], "unknown class 'gold'"),
        ("classes", [], "non-empty list"),
        ("classes", {"critical": 1}, "non-empty list"),
        ("colour", "blue", "unknown key"),
    ],
)
def test_bad_values(tmp_path: Path, key: str, value: object, expected: str) -> None:
    message = refused({"dsn": "host=/tmp", key: value}, tmp_path)
    assert f"postgres.{key}" in message and expected in message


def test_section_must_be_a_mapping(tmp_path: Path) -> None:
    assert "must be a mapping" in refused(["dsn"], tmp_path)  # type: ignore[arg-type]


def test_redaction_covers_both_dsn_forms() -> None:
    assert redact_dsn("host=x password=abc user=u") == "host=x password=*** user=u"
    assert redact_dsn("postgresql://u:abc@h/db") == "postgresql://u:***@h/db"
