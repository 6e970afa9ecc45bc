"""Every bad config value gets one line naming the key and the value."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

from bootstrap.config import (
    DURATION_LIMITS,
    MAX_ERROR_CHARS,
    MAX_SECRET_FILE_BYTES,
    SIZE_LIMITS,
    ConfigError,
    config_from_mapping,
    load_config,
)
from bootstrap.config_file import MAX_CONFIG_BYTES, MAX_DEPTH
from bootstrap.records import PersistenceClass
from bootstrap.units import parse_duration, parse_size


def error_for(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        config_from_mapping(raw)
    message = str(info.value)
    assert "\n" not in message and len(message) <= MAX_ERROR_CHARS, message
    return message


def test_defaults_follow_the_design_notes(tmp_path: Path) -> None:
    cfg = config_from_mapping({"storage_path": str(tmp_path)})
    assert cfg.memory_limit == 100_000_000
    assert cfg.tiering.hot_age == 300 and cfg.tiering.warm_age == 1800
    assert cfg.tiering.file_backup_interval == 300 and cfg.tiering.git_backup_interval == 1800
    assert cfg.stop_budget == 25
    assert cfg.class_of("agents") is PersistenceClass.CRITICAL
    assert cfg.class_of("stats") is PersistenceClass.SESSION
    assert cfg.class_of("cache") is PersistenceClass.CACHE
    assert cfg.class_of("never-heard-of-it") is PersistenceClass.SESSION
    assert cfg.api.socket == tmp_path / "spine-agent.sock"
    assert cfg.api.socket_mode == 0o660 and cfg.api.tcp_port is None
    assert cfg.git.path == tmp_path / ".backup.git"
    assert cfg.git.branch.startswith("backup/")


def test_storage_path_default_is_the_mount_point() -> None:
    assert str(config_from_mapping({}).storage_path) == "/data/super-spine"


def test_env_overrides_the_file_and_derives_the_socket(tmp_path: Path) -> None:
    config_file = tmp_path / "agent.yaml"
    config_file.write_text("storage_path: /somewhere/else\nmemory_limit: 50MB\n")
    env = {
        "SUPER_SPINE_STORAGE_PATH": str(tmp_path / "s"),
        "SUPER_SPINE_GIT__BRANCH": "backup/x",
        "SUPER_SPINE_TIERING__HOT_AGE": "1min",
    }
    cfg = load_config(config_file, env=env)
    assert cfg.storage_path == tmp_path / "s"
    assert cfg.api.socket == tmp_path / "s" / "spine-agent.sock"
    assert cfg.memory_limit == 50_000_000
    assert cfg.git.branch == "backup/x"
    assert cfg.tiering.hot_age == 60


def test_class_map_and_default_are_configurable() -> None:
    cfg = config_from_mapping({"classes": {"default": "cache", "critical": ["orders"]}})
    assert cfg.class_of("orders") is PersistenceClass.CRITICAL
    assert cfg.class_of("agents") is PersistenceClass.CACHE


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"memroy_limit": "1MB"}, "memroy_limit"),
        ({"tiering": {"hot": "5min"}}, "tiering.hot"),
        ({"memory_limit": "lots"}, "memory_limit='lots'"),
        ({"memory_limit": "10KB"}, "memory_limit='10KB'"),
        ({"max_value_size": "big"}, "max_value_size"),
        ({"stop_budget": "soon"}, "stop_budget='soon'"),
        ({"tiering": {"hot_age": "5 fortnights"}}, "tiering.hot_age"),
        ({"tiering": {"hot_age": "10min", "warm_age": "5min"}}, "tiering.warm_age"),
        ({"tiering": {"enabled": "maybe"}}, "tiering.enabled"),
        ({"classes": {"default": "forever"}}, "classes.default='forever'"),
        ({"classes": {"eternal": ["agents"]}}, "classes.eternal"),
        ({"classes": {"critical": "agents"}}, "classes.critical"),
        ({"classes": {"critical": ["a/b"]}}, "classes.critical='a/b'"),
        ({"classes": {"critical": ["x"], "cache": ["x"]}}, "two classes"),
        ({"storage_path": ""}, "storage_path=''"),
        ({"storage_path": 42}, "storage_path=42"),
        ({"git": {"remote": "ftp://host/repo"}}, "git.remote"),
        ({"git": {"remote": "https://user:hunter2@host/repo"}}, "git.token_file"),
        ({"git": {"branch": "bad branch"}}, "git.branch='bad branch'"),
        ({"api": {"socket_mode": "0666"}}, "api.socket_mode='0666'"),
        ({"api": {"socket_mode": "rw"}}, "api.socket_mode='rw'"),
        ({"api": {"tcp_port": 70000}}, "api.tcp_port=70000"),
        ({"api": {"socket": "/" + "x" * 120}}, "api.socket"),
        ({"log_level": "chatty"}, "log_level='chatty'"),
        ({"tiering": "fast"}, "tiering='fast'"),
    ],
)
def test_each_bad_value_names_its_key(raw: dict[str, Any], named: str) -> None:
    assert named in error_for(raw)


def test_credentials_never_echoed_in_the_error() -> None:
    message = error_for({"git": {"remote": "https://user:hunter2@host/repo"}})
    assert "hunter2" not in message


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("storage_path: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, env={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", env={})
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listed, env={})


def test_unknown_env_section_is_an_error() -> None:
    with pytest.raises(ConfigError, match="SUPER_SPINE_NOPE__X"):
        load_config(None, env={"SUPER_SPINE_NOPE__X": "1"})


# -- issue 7, item 11: dangerous values -----------------------------------------------------


def alias_bomb(levels: int = 9) -> str:
    """The "billion laughs" in YAML: ~400 bytes that expand to 9**levels strings when loaded."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        ref = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{','.join([ref] * 9)}]")
    return "\n".join(lines) + f"\nmemory_limit: *a{levels - 1}\n"


def nested_in(dotted: str, value: Any) -> dict[str, Any]:
    """{"tiering": {"hot_age": value}} from "tiering.hot_age"."""
    *sections, key = dotted.split(".")
    raw: dict[str, Any] = {key: value}
    for section in reversed(sections):
        raw = {section: raw}
    return raw


def file_error(tmp_path: Path, text: str | bytes, env: dict[str, str] | None = None) -> str:
    config_file = tmp_path / "agent.yaml"
    if isinstance(text, str):
        text = text.encode()
    config_file.write_bytes(text)
    with pytest.raises(ConfigError) as info:
        load_config(config_file, env=env or {})
    message = str(info.value)
    assert "\n" not in message and len(message) <= MAX_ERROR_CHARS, message
    return message


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    bomb = alias_bomb()
    assert len(bomb) < 500
    message = file_error(tmp_path, bomb)
    assert "anchors and aliases are not allowed" in message and "line 1" in message


def test_a_single_anchor_or_merge_key_is_refused_too(tmp_path: Path) -> None:
    text = "base: &base {hot_age: 1min}\ntiering:\n  <<: *base\n"
    assert "anchors and aliases" in file_error(tmp_path, text)
    assert "anchors and aliases" in file_error(tmp_path, "memory_limit: *nowhere\n")


def test_deep_nesting_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    message = file_error(tmp_path, "memory_limit: " + "[" * 10_000 + "]" * 10_000 + "\n")
    assert f"nested deeper than {MAX_DEPTH} levels" in message


def test_nesting_within_the_bound_reaches_validation(tmp_path: Path) -> None:
    def nested(lists: int) -> str:
        return "memory_limit: " + "[" * lists + "1" + "]" * lists + "\n"

    # The top-level mapping and the innermost scalar are levels too.
    message = file_error(tmp_path, nested(MAX_DEPTH - 2))
    assert "memory_limit=[[" in message and "expected a size" in message
    assert "nested deeper" in file_error(tmp_path, nested(MAX_DEPTH - 1))


def test_a_file_over_the_size_bound_is_refused_unread(tmp_path: Path) -> None:
    padding = "# " + "x" * 97 + "\n"
    fits = "memory_limit: 50MB\n" + padding * ((MAX_CONFIG_BYTES - 100) // len(padding))
    config_file = tmp_path / "agent.yaml"
    config_file.write_text(fits)
    assert load_config(config_file, env={}).memory_limit == 50_000_000
    message = file_error(tmp_path, fits + padding * 2)
    assert "larger than 64 KiB" in message


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    assert "not UTF-8" in file_error(tmp_path, b"log_level: \xff\xfe\n")


def test_an_integer_past_pythons_digit_limit_is_one_line(tmp_path: Path) -> None:
    message = file_error(tmp_path, "memory_limit: " + "9" * 5000 + "\n")
    assert "not valid YAML" in message


@pytest.mark.parametrize("key", sorted(DURATION_LIMITS))
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_a_non_finite_duration_is_refused(key: str, value: float) -> None:
    message = error_for(nested_in(key, value))
    assert f"{key}=" in message and "finite" in message


@pytest.mark.parametrize("text", [".nan", ".inf", "-.inf", ".NaN"])
def test_yaml_nan_and_inf_durations_are_refused(tmp_path: Path, text: str) -> None:
    message = file_error(tmp_path, f"tiering:\n  hot_age: {text}\n")
    assert "tiering.hot_age=" in message and "finite" in message


@pytest.mark.parametrize("key", sorted(DURATION_LIMITS))
def test_each_duration_has_bounds(key: str) -> None:
    minimum, maximum = DURATION_LIMITS[key]
    raw = nested_in(key, maximum)
    if key == "tiering.hot_age":  # warm_age may not be shorter than hot_age
        raw["tiering"]["warm_age"] = maximum
    config_from_mapping(raw)  # the bound itself is allowed
    message = error_for(nested_in(key, maximum * 2))
    assert f"{key}=" in message and f"to {maximum:g}s" in message
    assert f"{key}=" in error_for(nested_in(key, 10**400))
    assert f"from {minimum:g}s" in error_for(nested_in(key, minimum / 2))


@pytest.mark.parametrize("key", sorted(SIZE_LIMITS))
def test_each_size_has_bounds(key: str) -> None:
    minimum, maximum = SIZE_LIMITS[key]
    config = config_from_mapping(nested_in(key, maximum))
    section, _, name = key.rpartition(".")
    assert getattr(getattr(config, section) if section else config, name) == maximum
    message = error_for(nested_in(key, maximum + 1))
    assert f"{key}=" in message and f"to {maximum} bytes" in message
    assert "size" in error_for(nested_in(key, "9" * 40 + "GB"))
    assert f"from {minimum} to" in error_for(nested_in(key, minimum - 1))


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"api": {"tcp_port": True}}, "api.tcp_port=True"),
        ({"api": {"tcp_port": False}}, "api.tcp_port=False"),
        ({"api": {"tcp_port": 8080.5}}, "api.tcp_port=8080.5"),
        ({"api": {"socket_mode": False}}, "api.socket_mode=False"),
        ({"memory_limit": True}, "memory_limit=True"),
        ({"max_value_size": False}, "max_value_size=False"),
        ({"stop_budget": True}, "stop_budget=True"),
        ({"tiering": {"hot_age": False}}, "tiering.hot_age=False"),
    ],
)
def test_a_boolean_is_not_a_number(raw: dict[str, Any], named: str) -> None:
    assert named in error_for(raw)


def test_true_as_tcp_port_in_yaml_opens_nothing(tmp_path: Path) -> None:
    assert "api.tcp_port=True" in file_error(tmp_path, "api:\n  tcp_port: true\n")


def test_long_values_and_keys_are_cut_short_in_the_error() -> None:
    message = error_for({"log_level": "x" * 50_000})
    assert "log_level='xxx" in message and "..." in message and len(message) < 200
    message = error_for({"k" * 50_000: 1})
    assert "unknown key" in message
    message = error_for({"classes": {"critical": [["a"] * 10_000]}})
    assert "classes.critical=" in message


def test_a_key_with_a_newline_stays_on_one_line() -> None:
    assert "'bad\\nkey'" in error_for({"bad\nkey": 1})


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"classes": "agents"}, "classes='agents'"),
        ({"storage_path": "/" + "d" * 5000}, "at most 4095 bytes"),
        ({"git": {"remote": "https://host/" + "r" * 3000}}, "longer than 2048"),
        ({"git": {"remote": "https://[::1/repo.git"}}, "not a valid URL"),
        ({"git": {"remote": "https://host:99999/repo.git"}}, "not a valid URL"),
        ({"git": {"remote": "file:///srv/a\nb.git"}}, "control characters"),
        ({"git": {"branch": "b" * 300}}, "longer than 255"),
        ({"git": {"branch": "backup/a\tb"}}, "git.branch="),
        ({"preemption": {"metadata_url": "http://h/" + "m" * 3000}}, "longer than 2048"),
    ],
)
def test_every_string_has_a_limit(raw: dict[str, Any], named: str) -> None:
    assert named in error_for(raw)


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("SUPER_SPINE_STOP_BUDGET", "inf", "stop_budget='inf'"),
        ("SUPER_SPINE_TIERING__HOT_AGE", "nan", "tiering.hot_age='nan'"),
        ("SUPER_SPINE_STOP_BUDGET", "99999999999d", "stop_budget="),
        ("SUPER_SPINE_MEMORY_LIMIT", "9" * 100, "at most 32 characters"),
        ("SUPER_SPINE_API__TCP_PORT", "true", "api.tcp_port='true'"),
        ("SUPER_SPINE_GIT__BRANCH", "b" * 5000, "longer than 4096"),
    ],
)
def test_environment_overrides_have_the_same_limits(name: str, value: str, named: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={name: value})
    message = str(info.value)
    assert named in message and len(message) <= MAX_ERROR_CHARS, message


# -- issue 7, items 15 and 16: git credentials ----------------------------------------------


def secret_file(tmp_path: Path, name: str, mode: int, content: str = "s3cr3t-token\n") -> Path:
    path = tmp_path / name
    path.write_text(content)
    path.chmod(mode)
    return path


HTTPS_REMOTE = "https://git.example.com/org/backup.git"


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_token_file_with_an_https_remote_is_accepted(tmp_path: Path, mode: int) -> None:
    token = secret_file(tmp_path, "token", mode)
    cfg = config_from_mapping({"git": {"remote": HTTPS_REMOTE, "token_file": str(token)}})
    assert cfg.git.token_file == token and cfg.git.remote == HTTPS_REMOTE


@pytest.mark.parametrize(
    "remote",
    [
        "http://git.example.com/org/backup.git",
        "HTTP://git.example.com/org/backup.git",
        "ssh://git@git.example.com/org/backup.git",
        "git@git.example.com:org/backup.git",
        "git://git.example.com/org/backup.git",
        "file:///srv/backup.git",
        None,
    ],
)
def test_a_token_is_refused_with_anything_but_https(tmp_path: Path, remote: str | None) -> None:
    token = secret_file(tmp_path, "token", 0o600)
    message = error_for({"git": {"remote": remote, "token_file": str(token)}})
    assert "git.remote=" in message and "only to an https:// remote" in message
    assert "s3cr3t" not in message


@pytest.mark.parametrize("key", ["token_file", "ssh_key_file"])
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o610])
def test_a_credential_file_open_to_group_or_others_is_refused(
    tmp_path: Path, key: str, mode: int
) -> None:
    path = secret_file(tmp_path, key, mode)
    message = error_for({"git": {"remote": HTTPS_REMOTE, key: str(path)}})
    assert f"git.{key}='{path}'" in message and f"mode {mode:04o}" in message
    assert "chmod 0600" in message and "s3cr3t" not in message


def test_a_private_ssh_key_is_accepted(tmp_path: Path) -> None:
    key = secret_file(tmp_path, "id_ed25519", 0o600)
    cfg = config_from_mapping({"git": {"remote": "git@host:org/b.git", "ssh_key_file": str(key)}})
    assert cfg.git.ssh_key_file == key


@pytest.mark.parametrize("key", ["token_file", "ssh_key_file"])
def test_a_missing_empty_oversized_or_odd_credential_file_is_refused(
    tmp_path: Path, key: str
) -> None:
    def refused(value: str) -> str:
        return error_for({"git": {"remote": HTTPS_REMOTE, key: value}})

    assert "No such file" in refused(str(tmp_path / "absent"))
    assert "not a regular file" in refused(str(tmp_path))
    assert "not 0" in refused(str(secret_file(tmp_path, "empty", 0o600, content="")))
    big = secret_file(tmp_path, "big", 0o600, content="x" * (MAX_SECRET_FILE_BYTES + 1))
    assert f"1 to {MAX_SECRET_FILE_BYTES} bytes" in refused(str(big))


def test_the_readme_states_the_limits_the_code_enforces() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("<!-- CONFIG-LIMITS", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `([a-z_.]+)` \| `([^`]+)` \| `([^`]+)` \|$", table, re.M)
    stated = {key: (low, high) for key, low, high in rows}
    assert set(stated) == set(DURATION_LIMITS) | set(SIZE_LIMITS)
    for key, (low, high) in stated.items():
        parse = parse_duration if key in DURATION_LIMITS else parse_size
        enforced = DURATION_LIMITS.get(key) or SIZE_LIMITS[key]
        assert (parse(low), parse(high)) == pytest.approx(enforced), key
