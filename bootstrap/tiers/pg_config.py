"""The agent's `postgres:` section: parsed, bounded and checked before anything connects.

The DSN never carries the password (it would end up in process listings, logs and status);
the password lives in a 0600 file that is read again on every (re)connect, so a rotated secret
is picked up without a restart. Every refusal is one ConfigError line naming key and value,
with any password-looking part of a DSN masked before it is echoed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ..config import ConfigError, check_secret_file
from ..records import PersistenceClass
from ..units import parse_duration
from .gce_token import MetadataToken, check_metadata_url

SECTION = "postgres"
KEYS = ("dsn", "password_file", "classes", "write", "max_lag", "schema", "auth", "metadata_url")
WRITE_MODES = ("sync", "async")
# password: the DSN's user with postgres.password_file (or none: trust, peer, a .pgpass).
# iam: Cloud SQL IAM database authentication; the password is an OAuth token of the
# machine's service account, from the metadata server (gce_token.py), on every connection.
AUTH_MODES = ("password", "iam")
DEFAULT_METADATA_URL = "http://metadata.google.internal/computeMetadata/v1"
DEFAULT_CLASSES = (PersistenceClass.CRITICAL, PersistenceClass.SESSION)
DEFAULT_SCHEMA = "spine"
DEFAULT_MAX_LAG = 1.0
MAX_LAG_RANGE = (0.01, 3600.0)
MAX_DSN_LENGTH = 4096
MAX_PASSWORD_BYTES = 1024
DEFAULT_CONNECT_TIMEOUT = 5
# Weaker modes would let anyone on the path read or impersonate the server.
VERIFYING_SSL_MODES = ("verify-ca", "verify-full")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)([^@\s]*)(@)")


@dataclass(frozen=True)
class PostgresConfig:
    """A validated `postgres:` section; `dsn` holds no password."""

    dsn: str
    password_file: Path | None = None
    classes: frozenset[PersistenceClass] = frozenset(DEFAULT_CLASSES)
    write: str = "sync"
    max_lag: float = DEFAULT_MAX_LAG
    schema: str = DEFAULT_SCHEMA
    auth: str = "password"
    metadata_url: str = DEFAULT_METADATA_URL
    # With auth iam: the token cache (one per config, so every connection shares it).
    token_source: MetadataToken | None = field(default=None, compare=False, repr=False)

    def connect_kwargs(self) -> dict[str, Any]:
        """Connection parameters for one new connection: the password is read now, every time
        (with auth iam: a token valid for a few minutes more at least)."""
        params: dict[str, Any] = conninfo_to_dict(self.dsn)
        params.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
        params.setdefault("application_name", "spine-agent")
        if self.token_source is not None:
            params["password"] = self.token_source.token()
        elif self.password_file is not None:
            params["password"] = read_password(self.password_file)
        return params

    def describe(self) -> str:
        """The DSN as safe to show in status and errors."""
        return redact_dsn(self.dsn)


def redact_dsn(text: str) -> str:
    """Mask anything that looks like a password in a conninfo or URL."""
    return _URL_PASSWORD.sub(r"\1***\3", _KV_PASSWORD.sub(r"\1***", text))


def parse_postgres_config(section: Mapping[str, Any], base_dir: Path) -> PostgresConfig:
    """Validate the `postgres:` mapping; ConfigError names the first bad key and its value."""
    if not isinstance(section, Mapping):
        raise ConfigError(SECTION, section, "must be a mapping")
    for key in section:
        if key not in KEYS:
            raise ConfigError(
                f"{SECTION}.{key}", section[key], f"unknown key (allowed: {', '.join(KEYS)})"
            )
    if "dsn" not in section:
        raise ConfigError(f"{SECTION}.dsn", None, "required when the postgres section is given")
    auth = str(section.get("auth", "password")).strip().lower()
    if auth not in AUTH_MODES:
        raise ConfigError(f"{SECTION}.auth", section.get("auth"), "allowed: password, iam")
    if auth == "iam" and section.get("password_file") not in (None, ""):
        raise ConfigError(
            f"{SECTION}.password_file",
            section["password_file"],
            "not used with postgres.auth iam (the password is the metadata server's token)",
        )
    password_file = _password_file(section.get("password_file"), base_dir)
    write = str(section.get("write", "sync")).strip().lower()
    if write not in WRITE_MODES:
        raise ConfigError(f"{SECTION}.write", section.get("write"), "allowed: sync, async")
    dsn = _dsn(section["dsn"], base_dir)
    metadata_url = str(section.get("metadata_url") or DEFAULT_METADATA_URL)
    token_source = None
    if auth == "iam":
        if not conninfo_to_dict(dsn).get("user"):
            raise ConfigError(
                f"{SECTION}.dsn",
                redact_dsn(dsn),
                "needs user=<service account email less .gserviceaccount.com> with auth iam",
            )
        check_metadata_url(f"{SECTION}.metadata_url", metadata_url)
        token_source = MetadataToken(metadata_url)
    return PostgresConfig(
        dsn=dsn,
        password_file=password_file,
        classes=_classes(section.get("classes")),
        write=write,
        max_lag=_max_lag(section.get("max_lag", DEFAULT_MAX_LAG)),
        schema=_schema(section.get("schema", DEFAULT_SCHEMA)),
        auth=auth,
        metadata_url=metadata_url,
        token_source=token_source,
    )


def read_password(path: Path) -> str:
    """The password file's first line; refused when others could read it."""
    key = f"{SECTION}.password_file"
    check_secret_file(key, path, MAX_PASSWORD_BYTES)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ConfigError(key, str(path), f"cannot read the file ({reason})") from None
    lines = text.splitlines()
    password = lines[0] if lines else ""
    if password == "":
        raise ConfigError(key, str(path), "the file is empty")
    return password


def _password_file(value: Any, base_dir: Path) -> Path | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str | Path) or "\x00" in str(value):
        raise ConfigError(f"{SECTION}.password_file", value, "expected a path")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else (base_dir / path).resolve()
    read_password(path)  # refuse a bad file at start, not at the first connect
    return path


def _dsn(value: Any, base_dir: Path) -> str:
    key = f"{SECTION}.dsn"
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, value, "expected a libpq conninfo or postgresql:// URL")
    shown = redact_dsn(value)
    if len(value) > MAX_DSN_LENGTH:
        raise ConfigError(key, shown[:80] + "...", f"longer than {MAX_DSN_LENGTH} characters")
    try:
        params = conninfo_to_dict(value)
    except psycopg.ProgrammingError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "unparsable"
        reason = redact_dsn(reason)
        raise ConfigError(key, shown, f"not a valid conninfo or URL ({reason})") from None
    if "password" in params:
        raise ConfigError(key, shown, "holds a password: use postgres.password_file")
    _check_transport(key, shown, params, base_dir)
    return make_conninfo("", **params)


def _check_transport(key: str, shown: str, params: dict[str, Any], base_dir: Path) -> None:
    """A socket directory is local; a network address must verify the server's certificate."""
    for name in ("sslrootcert", "sslcert", "sslkey"):
        if name in params:
            path = Path(str(params[name])).expanduser()
            path = path if path.is_absolute() else base_dir / path
            if not path.is_file():
                raise ConfigError(key, shown, f"{name} {str(path)!r} is not a readable file")
            params[name] = str(path)
    hosts = [h for h in str(params.get("host", "")).split(",") if h]
    remote = [h for h in hosts if not h.startswith("/") and not _is_loopback(h)]
    if remote and params.get("sslmode") not in VERIFYING_SSL_MODES:
        raise ConfigError(
            key,
            shown,
            f"host {remote[0]} is reached over the network: set sslmode=verify-ca (or "
            "verify-full) and sslrootcert=<CA file>",
        )
    if params.get("sslmode") in VERIFYING_SSL_MODES and "sslrootcert" not in params:
        raise ConfigError(key, shown, "sslmode verify-ca/verify-full needs sslrootcert=<CA file>")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _classes(value: Any) -> frozenset[PersistenceClass]:
    key = f"{SECTION}.classes"
    if value in (None, ""):
        return frozenset(DEFAULT_CLASSES)
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list | tuple) or not names:
        raise ConfigError(key, value, "expected a non-empty list such as [critical, session]")
    result: set[PersistenceClass] = set()
    for name in names:
        try:
            result.add(PersistenceClass.parse(str(name).strip()))
        except ValueError as exc:
            raise ConfigError(key, name, str(exc)) from None
    return frozenset(result)


def _max_lag(value: Any) -> float:
    key = f"{SECTION}.max_lag"
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ConfigError(key, value, str(exc)) from None
    low, high = MAX_LAG_RANGE
    if not low <= seconds <= high:
        raise ConfigError(key, value, f"must be between {low * 1000:g}ms and {high / 60:g}min")
    return seconds


def _schema(value: Any) -> str:
    text = str(value)
    if not _SCHEMA_NAME.match(text) or text.startswith("pg_"):
        raise ConfigError(
            f"{SECTION}.schema",
            value,
            "expected a lower-case SQL name: letters, digits, '_' (at most 63, not pg_*)",
        )
    return text
