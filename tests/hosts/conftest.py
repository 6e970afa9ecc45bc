"""Options for the host checks: where things live on the host under test.

Defaults are the contract in docs/contracts.md; each can be changed with a pytest option or an
environment variable (for runs where tests/hosts is not the directory pytest was pointed at,
since pytest only reads options from conftest files it loads at start-up).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

# option name -> (environment variable, contract default)
OPTIONS: dict[str, tuple[str, str]] = {
    "disk_device": ("SPINE_DISK_DEVICE", "/dev/disk/by-id/google-super-spine-disk"),
    "mount_point": ("SPINE_MOUNT_POINT", "/data/super-spine"),
    "user": ("SPINE_USER", "super-spine"),
    "group": ("SPINE_GROUP", "super-spine"),
    "config_path": ("SPINE_CONFIG_PATH", "/etc/super-spine/agent.yaml"),
    "venv": ("SPINE_VENV", "/opt/super-spine/venv"),
    "unit": ("SPINE_UNIT", "spine-agent.service"),
    "health_port": ("SPINE_HEALTH_PORT", "8021"),
    "git_remote": ("SPINE_GIT_REMOTE", ""),
    "stop_budget_s": ("SPINE_STOP_BUDGET_S", "25"),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("super-spine host checks")
    for name, (env, default) in OPTIONS.items():
        group.addoption(
            f"--spine-{name.replace('_', '-')}",
            dest=f"spine_{name}",
            default=None,
            help=f"(env {env}, default {default or 'none'})",
        )


@dataclass(frozen=True)
class Spine:
    """Where the kit put things on the host under test."""

    disk_device: str
    mount_point: str
    user: str
    group: str
    config_path: str
    venv: str
    unit: str
    health_port: int
    git_remote: str
    stop_budget_s: float

    @property
    def agent(self) -> str:
        return f"{self.venv}/bin/spine-agent"

    @property
    def socket(self) -> str:
        return f"{self.mount_point}/spine-agent.sock"

    @property
    def backup_repo(self) -> str:
        return f"{self.mount_point}/.backup.git"

    @property
    def config_dir(self) -> str:
        return os.path.dirname(self.config_path)


@pytest.fixture(scope="session")
def spine(request: pytest.FixtureRequest) -> Spine:
    """Option, else environment, else the contract's default."""
    values: dict[str, str] = {}
    for name, (env, default) in OPTIONS.items():
        given = request.config.getoption(f"spine_{name}", default=None)
        values[name] = given if given is not None else os.environ.get(env, default)
    return Spine(
        **{k: v for k, v in values.items() if k not in ("stop_budget_s", "health_port")},
        stop_budget_s=float(values["stop_budget_s"]),
        health_port=int(values["health_port"]),
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without --hosts testinfra would check the machine pytest runs on: say so instead."""
    if config.getoption("hosts", default=None):
        return
    here = os.path.dirname(__file__)
    reason = "tests/hosts checks a provisioned host: pass --hosts=ssh://USER@HOST or ansible://all"
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.skip(reason=reason))
