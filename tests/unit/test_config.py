"""Every bad config value gets one line naming the key and the value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bootstrap.config import ConfigError, config_from_mapping, load_config
from bootstrap.records import PersistenceClass


def error_for(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        config_from_mapping(raw)
    message = str(info.value)
    assert "\n" not in message
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
