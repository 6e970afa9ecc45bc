"""The api section's limits and the TCP token rule: defaults, overrides, and one line per bad
value naming its key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bootstrap.config import ConfigError, config_from_mapping, load_config


def _token(path: Path, mode: int = 0o600, text: str = "t0ken-" + "x" * 20) -> str:
    path.write_text(text + "\n")
    os.chmod(path, mode)
    return str(path)


def _error(api: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"storage_path": "/tmp/ssk-unit", "api": api})
    message = str(info.value)
    assert "\n" not in message
    return message


def test_limits_have_defaults_and_are_configurable(tmp_path: Path) -> None:
    api = config_from_mapping({"storage_path": str(tmp_path)}).api
    assert (api.max_header_bytes, api.max_connections, api.idle_timeout) == (16384, 256, 5)
    assert api.token_file is None
    set_ = {"max_header_bytes": "64KiB", "max_connections": 1000, "idle_timeout": "2min"}
    api = config_from_mapping({"storage_path": str(tmp_path), "api": set_}).api
    assert (api.max_header_bytes, api.max_connections, api.idle_timeout) == (65536, 1000, 120)


def test_limits_come_from_the_environment_too(tmp_path: Path) -> None:
    env = {
        "SUPER_SPINE_STORAGE_PATH": str(tmp_path),
        "SUPER_SPINE_API__MAX_CONNECTIONS": "12",
        "SUPER_SPINE_API__IDLE_TIMEOUT": "3s",
    }
    api = load_config(env=env).api
    assert (api.max_connections, api.idle_timeout) == (12, 3)


@pytest.mark.parametrize(
    ("api", "key"),
    [
        ({"max_header_bytes": "512B"}, "api.max_header_bytes"),
        ({"max_header_bytes": "2MiB"}, "api.max_header_bytes"),
        ({"max_header_bytes": "lots"}, "api.max_header_bytes"),
        ({"max_connections": 0}, "api.max_connections"),
        ({"max_connections": 70_000}, "api.max_connections"),
        ({"max_connections": True}, "api.max_connections"),
        ({"max_connections": "12.5"}, "api.max_connections"),
        ({"idle_timeout": "0.5s"}, "api.idle_timeout"),
        ({"idle_timeout": "1.5s"}, "api.idle_timeout"),
        ({"idle_timeout": "2h"}, "api.idle_timeout"),
        ({"idle_timeout": float("nan")}, "api.idle_timeout"),
        ({"idle_timeout": float("inf")}, "api.idle_timeout"),
    ],
    ids=lambda v: str(v),
)
def test_each_bad_limit_names_its_key(api: dict[str, Any], key: str) -> None:
    assert _error(api).startswith(f"config error: {key}=")


def test_tcp_port_needs_a_token_file() -> None:
    message = _error({"tcp_port": 8765})
    assert "api.tcp_port=8765" in message and "api.token_file" in message


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_token_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = _token(tmp_path / "token", mode)
    message = _error({"tcp_port": 8765, "token_file": path})
    assert "api.token_file" in message and f"{mode:04o}" in message and "0600" in message


@pytest.mark.parametrize(
    "text", ["short", "has space inside-xxxxxxxxxx", "x" * 5000], ids=["short", "space", "huge"]
)
def test_token_file_content_is_checked(tmp_path: Path, text: str) -> None:
    path = _token(tmp_path / "token", 0o600, text)
    message = _error({"tcp_port": 8765, "token_file": path})
    assert "api.token_file" in message
    assert text[:40] not in message.split("token_file=")[1].split(":")[0]  # never echoed


def test_missing_token_file_is_one_line(tmp_path: Path) -> None:
    message = _error({"tcp_port": 8765, "token_file": str(tmp_path / "absent")})
    assert "api.token_file" in message and "cannot read" in message


def test_token_file_0600_and_0400_are_accepted(tmp_path: Path) -> None:
    for mode in (0o600, 0o400):
        path = _token(tmp_path / f"token{mode:o}", mode)
        cfg = config_from_mapping(
            {"storage_path": str(tmp_path), "api": {"tcp_port": 8765, "token_file": path}}
        )
        assert cfg.api.token_file == Path(path)
        assert "x" * 20 not in repr(cfg)  # the token itself is never held in the config


def test_health_port_is_off_by_default_and_binds_loopback() -> None:
    config = config_from_mapping({"storage_path": "/tmp/x"})
    assert config.api.health_port is None and config.api.health_address == "127.0.0.1"
    config = config_from_mapping(
        {"storage_path": "/tmp/x", "api": {"health_port": 8091, "health_address": "0.0.0.0"}}
    )
    assert (config.api.health_port, config.api.health_address) == (8091, "0.0.0.0")


def test_a_bad_health_port_is_refused() -> None:
    assert _error({"health_port": 70000}).startswith("config error: api.health_port=70000")


def test_a_health_address_that_is_not_an_ip_is_refused() -> None:
    message = _error({"health_port": 8091, "health_address": "metadata.example"})
    assert message.startswith("config error: api.health_address='metadata.example'")
    assert "IP address" in message


def test_the_health_port_must_differ_from_the_tcp_port(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t" * 32 + "\n")
    token.chmod(0o600)
    message = _error({"tcp_port": 8765, "token_file": str(token), "health_port": 8765})
    assert "api.health_port=8765" in message and "must differ from api.tcp_port" in message
