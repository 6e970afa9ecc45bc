"""AgentConfig: one YAML file plus environment overrides, validated in one place.

Every bad value raises ConfigError with one line that names the key and the value, so the daemon
and the CLI can print it and exit 2. Unknown keys are errors too: a typo must not silently fall
back to a default on a production VM.
"""

from __future__ import annotations

import ipaddress
import os
import reprlib
import socket
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .config_file import ConfigFileError, read_mapping
from .records import InvalidName, PersistenceClass, check_collection
from .tiers import FOLLOWS, MEMORY_ONLY_CLASSES, TIERS
from .units import parse_duration, parse_size

ENV_PREFIX = "SUPER_SPINE_"
ENV_CONFIG_FILE = "SUPER_SPINE_CONFIG"
SOCKET_NAME = "spine-agent.sock"
BACKUP_DIR_NAME = ".backup.git"
MAX_UNIX_SOCKET_PATH = 107
DEFAULT_CLASS_MAP: dict[str, list[str]] = {
    "critical": ["agents", "subscriptions", "tasks", "access"],
    "session": ["stats", "frames", "traces", "sessions"],
    "cache": ["cache"],
}
# The one source of every default, as it would be written in the config file. build_config,
# the dataclasses below and HybridVMStorage read it; tests/unit/test_defaults.py holds the
# template (templates/agent.yaml.j2), the Ansible role's defaults and the docs' tables to it.
# Keys without an entry default to nothing (git.remote, api.tcp_port, ...) or are derived
# (git.path and api.socket from storage_path, git.branch from the host name).
DEFAULTS: dict[str, Any] = {
    "storage_path": "/data/super-spine",
    "memory_limit": "100MB",
    "max_value_size": "1MB",
    "stop_budget": "25s",
    "log_level": "info",
    "tiering.enabled": True,
    "tiering.hot_age": "5min",
    "tiering.warm_age": "30min",
    "tiering.file_backup_interval": "5min",
    "tiering.git_backup_interval": "30min",
    "classes.default": "session",
    # Where each class travels, in order (see bootstrap.policy.Routes); "none" is memory only.
    "routes.critical": "files, git",
    "routes.session": "files",
    "routes.cache": "none",
    "git.history_max_age": "7d",
    "git.push_retry_max": "5min",
    "api.socket_mode": "0660",
    "api.max_header_bytes": "16KiB",
    "api.max_connections": 256,
    "api.idle_timeout": "5s",
    "api.max_batch_ops": 1000,
    "api.max_batch_bytes": "16MB",
    "api.health_address": "127.0.0.1",
    "preemption.watch": "auto",
    "preemption.metadata_url": "http://metadata.google.internal/computeMetadata/v1",
}
DEFAULT_STORAGE_PATH = DEFAULTS["storage_path"]
REMOTE_SCHEMES = ("file", "git", "ssh", "https", "http")
MAX_ERROR_CHARS = 240
MAX_ECHO_CHARS = 120
MIN_ECHO_CHARS = 24
MAX_ENV_CHARS = 4096
MAX_PATH_BYTES = 4095  # PATH_MAX less the NUL
MAX_URL_CHARS = 2048
MAX_BRANCH_CHARS = 255
MAX_SECRET_FILE_BYTES = 64 * 1024
# (minimum, maximum) of every duration in seconds and every size in bytes: a value outside is
# refused, naming the key. The maxima are far above any useful setting and below anything that
# overflows a timer or wraps a counter.
DURATION_LIMITS: dict[str, tuple[float, float]] = {
    "stop_budget": (1.0, 3600.0),
    "tiering.hot_age": (0.001, 30 * 86400.0),
    "tiering.warm_age": (0.001, 365 * 86400.0),
    "tiering.file_backup_interval": (0.01, 86400.0),
    "tiering.git_backup_interval": (0.01, 7 * 86400.0),
    "git.history_max_age": (60.0, 3650 * 86400.0),
    "git.push_retry_max": (1.0, 86400.0),
    "api.idle_timeout": (1.0, 3600.0),
}
SIZE_LIMITS: dict[str, tuple[int, int]] = {
    "memory_limit": (1_000_000, 1024**4),
    "max_value_size": (16, 64 * 1024**2),
    "api.max_header_bytes": (1024, 1024**2),
    "api.max_batch_bytes": (1024, 1024**3),
}
MAX_BATCH_OPS_RANGE = (1, 100_000)


class ConfigError(ValueError):
    """One short line naming the bad key and value (both cut short: the value may be huge)."""

    def __init__(self, key: str, value: Any, reason: str) -> None:
        reason = " ".join(str(reason).split())  # a reason never spans lines, whatever it quotes
        head = f"config error: {_shown_key(key)}="
        shown = " ".join(_ECHO.repr(value).split())
        # The reason says what to do: the echoed value gives way to it first.
        room = max(MIN_ECHO_CHARS, MAX_ERROR_CHARS - len(head) - len(reason) - 2)
        if len(shown) > room:
            shown = shown[: room - 3] + "..."
        line = f"{head}{shown}: {reason}"
        if len(line) > MAX_ERROR_CHARS:
            line = line[: MAX_ERROR_CHARS - 3] + "..."
        super().__init__(line)
        self.key = key


def _echo() -> reprlib.Repr:
    """A repr that stays short whatever the value: long strings and lists are elided."""
    echo = reprlib.Repr()
    echo.maxlevel = 2
    echo.maxstring = MAX_ECHO_CHARS
    echo.maxother = MAX_ECHO_CHARS
    echo.maxlong = MAX_ECHO_CHARS
    echo.maxlist = echo.maxtuple = echo.maxdict = echo.maxset = 4
    return echo


_ECHO = _echo()


def _shown_key(key: Any) -> str:
    """Keys we name are short identifiers; an unknown key from the file is echoed like a value."""
    text = str(key)
    if len(text) <= MAX_ECHO_CHARS and text.isprintable() and " " not in text:
        return text
    return _ECHO.repr(key)


def _default_seconds(key: str) -> float:
    return parse_duration(DEFAULTS[key])


def _default_bytes(key: str) -> int:
    return parse_size(DEFAULTS[key])


_DEFAULT_CLASS = PersistenceClass(DEFAULTS["classes.default"])


@dataclass(frozen=True)
class TieringConfig:
    enabled: bool = DEFAULTS["tiering.enabled"]
    hot_age: float = _default_seconds("tiering.hot_age")
    warm_age: float = _default_seconds("tiering.warm_age")
    file_backup_interval: float = _default_seconds("tiering.file_backup_interval")
    git_backup_interval: float = _default_seconds("tiering.git_backup_interval")


@dataclass(frozen=True)
class GitConfig:
    path: Path
    remote: str | None = None
    branch: str = "backup/localhost"
    ssh_key_file: Path | None = None
    token_file: Path | None = None
    history_max_age: float = _default_seconds("git.history_max_age")
    push_retry_max: float = _default_seconds("git.push_retry_max")


@dataclass(frozen=True)
class ApiConfig:
    """Where the API listens and the limits that keep one client from exhausting the agent."""

    socket: Path
    socket_mode: int = int(DEFAULTS["api.socket_mode"], 8)
    tcp_port: int | None = None
    token_file: Path | None = None  # required with tcp_port: bearer token, mode 0600
    max_header_bytes: int = _default_bytes("api.max_header_bytes")  # request line + headers
    max_connections: int = DEFAULTS["api.max_connections"]  # beyond it: 503, then closed
    # seconds a connection may sit without a complete request head
    idle_timeout: int = int(_default_seconds("api.idle_timeout"))
    # operations in one bulk read, bulk write or transaction, and the bytes of its body
    max_batch_ops: int = DEFAULTS["api.max_batch_ops"]
    max_batch_bytes: int = _default_bytes("api.max_batch_bytes")
    # A TCP port that answers GET /v1/health and nothing else, without a token: for probes
    # that cannot read a unix socket (Cloud Run's startup probe of the sidecar).
    health_port: int | None = None
    health_address: str = DEFAULTS["api.health_address"]


@dataclass(frozen=True)
class PreemptionConfig:
    watch: str = DEFAULTS["preemption.watch"]  # auto: only when the DMI product says GCE
    metadata_url: str = DEFAULTS["preemption.metadata_url"]


@dataclass(frozen=True)
class AgentConfig:
    storage_path: Path
    git: GitConfig
    api: ApiConfig
    memory_limit: int = _default_bytes("memory_limit")
    max_value_size: int = _default_bytes("max_value_size")
    stop_budget: float = _default_seconds("stop_budget")
    log_level: str = DEFAULTS["log_level"]
    tiering: TieringConfig = field(default_factory=TieringConfig)
    default_class: PersistenceClass = _DEFAULT_CLASS
    class_map: dict[str, PersistenceClass] = field(default_factory=dict)
    preemption: PreemptionConfig = field(default_factory=PreemptionConfig)
    # class name -> ordered tier names (bootstrap.policy.Routes reads it)
    routes: dict[str, tuple[str, ...]] = field(default_factory=lambda: _default_routes())
    # the `postgres:` section (a bootstrap.tiers.pg_config.PostgresConfig), None without one
    postgres: Any = None

    def class_of(self, collection: str) -> PersistenceClass:
        return self.class_map.get(collection, self.default_class)


_TOP_KEYS = {
    "storage_path",
    "memory_limit",
    "max_value_size",
    "stop_budget",
    "log_level",
    "tiering",
    "classes",
    "git",
    "api",
    "preemption",
    "routes",
    "postgres",
}
_SECTION_KEYS = {
    "tiering": {"enabled", "hot_age", "warm_age", "file_backup_interval", "git_backup_interval"},
    "git": {
        "path",
        "remote",
        "branch",
        "ssh_key_file",
        "token_file",
        "history_max_age",
        "push_retry_max",
    },
    "api": {
        "socket",
        "socket_mode",
        "tcp_port",
        "token_file",
        "max_header_bytes",
        "max_connections",
        "idle_timeout",
        "max_batch_ops",
        "max_batch_bytes",
        "health_port",
        "health_address",
    },
    "preemption": {"watch", "metadata_url"},
    "routes": {c.value for c in PersistenceClass},
    # checked by the postgres tier's own parser (bootstrap.tiers.pg_config)
    "postgres": {
        "dsn", "password_file", "classes", "write", "max_lag", "schema", "auth", "metadata_url"
    },
}
_LOG_LEVELS = ("debug", "info", "warning", "error")


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> AgentConfig:
    """Read the YAML file (if any), apply SUPER_SPINE_* overrides, validate, return the config."""
    env = dict(os.environ if env is None else env)
    if path is None and env.get(ENV_CONFIG_FILE):
        path = env[ENV_CONFIG_FILE]
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(Path(path))
    _apply_env(raw, env)
    # Relative paths are taken from the working directory, as `make agent` expects ./storage.
    return build_config(raw, base_dir=Path.cwd())


def config_from_mapping(raw: dict[str, Any], base_dir: Path | None = None) -> AgentConfig:
    """Validate an in-memory mapping (the library API and tests use this)."""
    return build_config(dict(raw), base_dir=base_dir or Path.cwd())


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        return read_mapping(path)
    except ConfigFileError as exc:
        raise ConfigError("config", str(path), str(exc)) from None


def _apply_env(raw: dict[str, Any], env: dict[str, str]) -> None:
    """SUPER_SPINE_STORAGE_PATH -> storage_path; SUPER_SPINE_GIT__REMOTE -> git.remote."""
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG_FILE:
            continue
        if len(value) > MAX_ENV_CHARS:
            raise ConfigError(name, value, f"longer than {MAX_ENV_CHARS} characters")
        dotted = name[len(ENV_PREFIX) :].lower()
        if "__" in dotted:
            section, key = dotted.split("__", 1)
            if section not in _SECTION_KEYS:
                raise ConfigError(name, value, f"unknown section {section!r}")
            target = raw.setdefault(section, {})
            if not isinstance(target, dict):
                raise ConfigError(section, target, "must be a mapping")
            target[key] = value
        elif dotted in _TOP_KEYS - set(_SECTION_KEYS) - {"classes"}:
            raw[dotted] = value


def build_config(raw: dict[str, Any], base_dir: Path) -> AgentConfig:
    for key in raw:
        if key not in _TOP_KEYS:
            raise ConfigError(
                key, raw[key], f"unknown key (allowed: {', '.join(sorted(_TOP_KEYS))})"
            )
    sections = {name: _section(raw, name) for name in _SECTION_KEYS}

    def given(key: str) -> Any:
        section = key.rpartition(".")[0]
        return _given(sections[section] if section else raw, key)

    storage = _path("storage_path", given("storage_path"), base_dir)
    tiering = TieringConfig(
        enabled=_bool("tiering.enabled", given("tiering.enabled")),
        hot_age=_duration("tiering.hot_age", given("tiering.hot_age")),
        warm_age=_duration("tiering.warm_age", given("tiering.warm_age")),
        file_backup_interval=_duration(
            "tiering.file_backup_interval", given("tiering.file_backup_interval")
        ),
        git_backup_interval=_duration(
            "tiering.git_backup_interval", given("tiering.git_backup_interval")
        ),
    )
    if tiering.warm_age < tiering.hot_age:
        raise ConfigError(
            "tiering.warm_age",
            sections["tiering"].get("warm_age"),
            "must not be shorter than tiering.hot_age",
        )

    git_raw = sections["git"]
    remote = _remote(git_raw.get("remote"))
    token_file = _secret_file("git.token_file", git_raw.get("token_file"), base_dir)
    if token_file is not None and urlsplit(remote or "").scheme != "https":
        shown = _redact(remote) if remote else remote
        raise ConfigError("git.remote", shown, "git.token_file is sent only to an https:// remote")
    git = GitConfig(
        path=_path("git.path", git_raw.get("path", str(storage / BACKUP_DIR_NAME)), base_dir),
        remote=remote,
        branch=_branch(git_raw.get("branch")),
        ssh_key_file=_secret_file("git.ssh_key_file", git_raw.get("ssh_key_file"), base_dir),
        token_file=token_file,
        history_max_age=_duration("git.history_max_age", given("git.history_max_age")),
        push_retry_max=_duration("git.push_retry_max", given("git.push_retry_max")),
    )

    api_raw = sections["api"]
    sock = _path("api.socket", api_raw.get("socket", str(storage / SOCKET_NAME)), base_dir)
    if len(str(sock)) > MAX_UNIX_SOCKET_PATH:
        raise ConfigError(
            "api.socket",
            str(sock),
            f"a unix socket path may be at most {MAX_UNIX_SOCKET_PATH} bytes",
        )
    api = _api_limits(
        api_raw,
        ApiConfig(
            socket=sock,
            socket_mode=_mode("api.socket_mode", given("api.socket_mode")),
            tcp_port=_port("api.tcp_port", api_raw.get("tcp_port")),
            token_file=_secret_file("api.token_file", api_raw.get("token_file"), base_dir),
        ),
    )

    preemption_raw = sections["preemption"]
    watch = str(given("preemption.watch")).lower()
    if watch in ("true", "false"):  # YAML on/off become booleans
        watch = "on" if watch == "true" else "off"
    if watch not in ("auto", "on", "off"):
        raise ConfigError("preemption.watch", preemption_raw.get("watch"), "allowed: auto, on, off")
    metadata_url = str(given("preemption.metadata_url"))
    if len(metadata_url) > MAX_URL_CHARS:
        raise ConfigError("preemption.metadata_url", metadata_url, _longer_than(MAX_URL_CHARS))
    if urlsplit(metadata_url).scheme != "http" or not urlsplit(metadata_url).hostname:
        raise ConfigError("preemption.metadata_url", metadata_url, "expected an http:// URL")
    default_class, class_map = _classes(raw.get("classes"))
    log_level = str(given("log_level")).lower()
    if log_level not in _LOG_LEVELS:
        raise ConfigError("log_level", raw.get("log_level"), f"allowed: {', '.join(_LOG_LEVELS)}")
    memory_limit = _size("memory_limit", given("memory_limit"))
    postgres = None
    if raw.get("postgres") is not None:
        from .tiers.pg_config import parse_postgres_config  # psycopg only when configured

        postgres = parse_postgres_config(sections["postgres"], base_dir)
    routes = _routes(sections["routes"], postgres.classes if postgres else frozenset())
    return AgentConfig(
        storage_path=storage,
        git=git,
        api=api,
        memory_limit=memory_limit,
        max_value_size=_size("max_value_size", given("max_value_size")),
        stop_budget=_duration("stop_budget", given("stop_budget")),
        log_level=log_level,
        tiering=tiering,
        default_class=default_class,
        class_map=class_map,
        preemption=PreemptionConfig(watch=watch, metadata_url=metadata_url),
        routes=routes,
        postgres=postgres,
    )


MAX_CONNECTIONS_RANGE = (1, 65_536)
MAX_TOKEN_BYTES = 4096


def _api_limits(api_raw: dict[str, Any], api: ApiConfig) -> ApiConfig:
    """The api section's limits and the TCP token rule (a TCP port without a token is refused:
    any local process and any browser page could reach it)."""
    header = _size("api.max_header_bytes", _given(api_raw, "api.max_header_bytes"))
    connections = _whole(
        "api.max_connections", _given(api_raw, "api.max_connections"), MAX_CONNECTIONS_RANGE
    )
    idle = _duration("api.idle_timeout", _given(api_raw, "api.idle_timeout"))
    batch_ops = _whole(
        "api.max_batch_ops", _given(api_raw, "api.max_batch_ops"), MAX_BATCH_OPS_RANGE
    )
    batch_bytes = _size("api.max_batch_bytes", _given(api_raw, "api.max_batch_bytes"))
    if idle != int(idle):  # uvicorn's keep-alive time is whole seconds
        raise ConfigError("api.idle_timeout", api_raw.get("idle_timeout"), "must be whole seconds")
    health_port = _port("api.health_port", api_raw.get("health_port"))
    health_address = _ip_address("api.health_address", _given(api_raw, "api.health_address"))
    if health_port is not None and health_port == api.tcp_port:
        raise ConfigError("api.health_port", health_port, "must differ from api.tcp_port")
    if api.tcp_port is not None:
        if api.token_file is None:
            raise ConfigError(
                "api.tcp_port", api.tcp_port, "needs api.token_file (a bearer token, mode 0600)"
            )
        read_token_file(api.token_file)
    return replace(
        api,
        max_header_bytes=header,
        max_connections=connections,
        idle_timeout=int(idle),
        max_batch_ops=batch_ops,
        max_batch_bytes=batch_bytes,
        health_port=health_port,
        health_address=health_address,
    )


def _ip_address(key: str, value: Any) -> str:
    """An IP literal to bind (no host names: resolving one at start may hang or change)."""
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise ConfigError(key, value, "expected an IP address such as 127.0.0.1") from None


def read_token_file(path: Path) -> bytes:
    """The TCP API's bearer token: one printable word (the file's mode and size are checked by
    _secret_file when the config loads; this runs again when the daemon starts)."""
    key = "api.token_file"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(key, str(path), f"cannot read the file ({exc.strerror})") from None
    token = data.strip()
    if not 16 <= len(token) <= MAX_TOKEN_BYTES or any(c <= 32 or c > 126 for c in token):
        raise ConfigError(
            key, str(path), f"must hold one token of 16 to {MAX_TOKEN_BYTES} printable characters"
        )
    return token


def _given(section: dict[str, Any], key: str) -> Any:
    """The file's (or environment's) value of a dotted key in its section, else its DEFAULTS
    entry (None when it has none)."""
    return section.get(key.rpartition(".")[2], DEFAULTS.get(key))


def _whole(key: str, value: Any, bounds: tuple[int, int]) -> int:
    if isinstance(value, bool) or not str(value).strip().isdigit():
        raise ConfigError(key, value, "expected a whole number")
    number = int(str(value))
    if not bounds[0] <= number <= bounds[1]:
        raise ConfigError(key, value, f"must be from {bounds[0]} to {bounds[1]}")
    return number


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigError(name, value, "must be a mapping")
    for key in value:
        if key not in _SECTION_KEYS[name]:
            allowed = ", ".join(sorted(_SECTION_KEYS[name]))
            raise ConfigError(f"{name}.{key}", value[key], f"unknown key (allowed: {allowed})")
    return value


def _size(key: str, value: Any) -> int:
    """Bytes within SIZE_LIMITS[key]."""
    minimum, maximum = SIZE_LIMITS[key]
    try:
        size = parse_size(value)
    except ValueError as exc:
        raise ConfigError(key, value, str(exc)) from None
    if not minimum <= size <= maximum:
        raise ConfigError(key, value, f"must be from {minimum} to {maximum} bytes")
    return size


def _duration(key: str, value: Any) -> float:
    """Seconds within DURATION_LIMITS[key] (never NaN or infinite: parse_duration refuses)."""
    minimum, maximum = DURATION_LIMITS[key]
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ConfigError(key, value, str(exc)) from None
    if not minimum <= seconds <= maximum:
        raise ConfigError(key, value, f"must be from {minimum:g}s to {maximum:g}s")
    return seconds


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ConfigError(key, value, "expected true or false")


def _path(key: str, value: Any, base_dir: Path) -> Path:
    if not isinstance(value, str | Path) or str(value).strip() == "":
        raise ConfigError(key, value, "expected a non-empty path")
    if "\x00" in str(value):
        raise ConfigError(key, value, "a path must not contain NUL")
    path = Path(os.path.expanduser(str(value)))
    path = path if path.is_absolute() else (base_dir / path).resolve()
    if len(os.fsencode(path)) > MAX_PATH_BYTES:
        raise ConfigError(key, value, f"a path may be at most {MAX_PATH_BYTES} bytes")
    return path


def _secret_file(key: str, value: Any, base_dir: Path) -> Path | None:
    if value in (None, ""):
        return None
    path = _path(key, value, base_dir)
    check_secret_file(key, path)
    return path


def check_secret_file(key: str, path: Path, max_bytes: int = MAX_SECRET_FILE_BYTES) -> None:
    """A credential file only its owner can read, as ssh demands of a private key; checked at
    start and by tiers that read theirs again on reconnect."""
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(key, str(path), f"cannot read the file ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(key, str(path), "not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise ConfigError(
            key, str(path), f"mode {mode:04o} lets group or others in: chmod 0600 the file"
        )
    if not 0 < info.st_size <= max_bytes:
        raise ConfigError(key, str(path), f"must hold 1 to {max_bytes} bytes, not {info.st_size}")


def _longer_than(limit: int) -> str:
    return f"longer than {limit} characters"


def _remote(value: Any) -> str | None:
    if value in (None, ""):
        return None
    text = str(value)
    if len(text) > MAX_URL_CHARS:
        raise ConfigError("git.remote", _redact(text), _longer_than(MAX_URL_CHARS))
    if not text.isprintable():
        raise ConfigError("git.remote", _redact(text), "must not contain control characters")
    if "://" not in text and ":" in text and not text.startswith("/"):
        return text  # scp-like ssh form: git@host:org/repo.git
    try:
        parts = urlsplit(text if "://" in text else f"file://{text}")
        parts.port  # noqa: B018 - parsing the port is what raises for a bad one
    except ValueError as exc:
        raise ConfigError("git.remote", _redact(text), f"not a valid URL ({exc})") from None
    if parts.scheme not in REMOTE_SCHEMES:
        raise ConfigError(
            "git.remote", _redact(text), f"scheme must be one of {', '.join(REMOTE_SCHEMES)}"
        )
    if parts.scheme in ("https", "http") and parts.password:
        raise ConfigError(
            "git.remote", _redact(text), "put credentials in git.token_file, never in the URL"
        )
    return text


def _redact(url: str) -> str:
    """The URL without its password; an unparsable URL is shown up to its scheme only."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return url.split("://", 1)[0] + "://..."
    return url.replace(password, "***") if password else url


def _branch(value: Any) -> str:
    if value in (None, ""):
        return f"backup/{socket.gethostname()}"
    text = str(value)
    if len(text) > MAX_BRANCH_CHARS:
        raise ConfigError("git.branch", value, _longer_than(MAX_BRANCH_CHARS))
    if (
        not text.isprintable()
        or any(c in text for c in " ~^:?*[\\")
        or ".." in text
        or text.startswith("/")
        or text.endswith((".lock", "/"))
    ):
        raise ConfigError("git.branch", value, "not a valid git branch name")
    return text


def _mode(key: str, value: Any) -> int:
    if isinstance(value, bool | float):  # bool is an int in Python: `false` would be mode 0
        raise ConfigError(key, value, "expected an octal mode such as 0660")
    try:
        mode = int(str(value), 8) if not isinstance(value, int) else value
    except ValueError:
        raise ConfigError(key, value, "expected an octal mode such as 0660") from None
    if mode & ~0o777 or mode & 0o007:
        raise ConfigError(key, value, "must be an octal mode with no access for others, e.g. 0660")
    return mode


def _port(key: str, value: Any) -> int | None:
    if isinstance(value, bool | float):  # bool is an int in Python: `true` would be port 1
        raise ConfigError(key, value, "expected a TCP port number")
    if value in (None, "", 0, "0"):
        return None
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigError(key, value, "expected a TCP port number") from None
    if not 1 <= port <= 65535:
        raise ConfigError(key, value, "expected a TCP port from 1 to 65535")
    return port


MAX_ROUTE_CHARS = 256
_NO_TIERS = ("none", "[]", "")


def _route(key: str, value: Any) -> tuple[str, ...]:
    """One class's route: a YAML list or a comma-separated string of tier names; none/[]
    means memory only."""
    if isinstance(value, str):
        if len(value) > MAX_ROUTE_CHARS:
            raise ConfigError(key, value, _longer_than(MAX_ROUTE_CHARS))
        text = value.strip().strip("[]")
        names = [] if value.strip().lower() in _NO_TIERS else [n.strip() for n in text.split(",")]
    elif isinstance(value, list | tuple):
        names = [str(n).strip() for n in value]
    elif value is None:
        names = []
    else:
        raise ConfigError(key, value, "expected a list of tiers such as [files, git], or none")
    known = ", ".join(TIERS)
    for position, name in enumerate(names):
        if name not in TIERS:
            raise ConfigError(key, value, f"unknown tier {name!r} (known: {known})")
        if name in names[:position]:
            raise ConfigError(key, value, f"tier {name!r} is listed twice")
        copied = FOLLOWS.get(name)
        if copied is not None and copied not in names[:position]:
            raise ConfigError(key, value, f"{name} backs up {copied}: list {copied} before {name}")
    return tuple(names)


def _routes(
    section: dict[str, Any], postgres: frozenset[PersistenceClass] = frozenset()
) -> dict[str, tuple[str, ...]]:
    """Each class's route; with a postgres section, its classes end in postgres (unless their
    route lists it already), and no route may name postgres without the section."""
    routes: dict[str, tuple[str, ...]] = {}
    for cls in PersistenceClass:
        key = f"routes.{cls.value}"
        route = _route(key, _given(section, key))
        if "postgres" in route and not postgres:
            raise ConfigError(key, section.get(cls.value), "postgres needs a postgres: section")
        if cls in postgres and cls.value in MEMORY_ONLY_CLASSES:
            raise ConfigError("postgres.classes", cls.value, f"{cls.value} is memory only")
        if cls in postgres and "postgres" not in route:
            route = (*route, "postgres")
        if route and cls.value in MEMORY_ONLY_CLASSES:
            raise ConfigError(
                key, section.get(cls.value), f"{cls.value} is memory only: route it to none"
            )
        routes[cls.value] = route
    return routes


def _default_routes() -> dict[str, tuple[str, ...]]:
    return _routes({})


def _classes(value: Any) -> tuple[PersistenceClass, dict[str, PersistenceClass]]:
    if value is not None and not isinstance(value, dict):
        raise ConfigError("classes", value, "must be a mapping of class -> list of collections")
    mapping: dict[str, Any] = dict(value) if value is not None else {}
    default_text = mapping.pop("default", DEFAULTS["classes.default"])
    try:
        default = PersistenceClass.parse(str(default_text))
    except ValueError as exc:
        raise ConfigError("classes.default", default_text, str(exc)) from None
    source = mapping or DEFAULT_CLASS_MAP
    result: dict[str, PersistenceClass] = {}
    for cls_name, collections in source.items():
        try:
            cls = PersistenceClass.parse(str(cls_name))
        except ValueError as exc:
            raise ConfigError(f"classes.{cls_name}", collections, str(exc)) from None
        if not isinstance(collections, list):
            raise ConfigError(f"classes.{cls_name}", collections, "expected a list of collections")
        for name in collections:
            try:
                check_collection(str(name))
            except InvalidName as exc:
                raise ConfigError(f"classes.{cls_name}", name, str(exc)) from None
            if name in result and result[name] is not cls:
                raise ConfigError(
                    f"classes.{cls_name}", name, "collection is listed in two classes"
                )
            result[str(name)] = cls
    return default, result
