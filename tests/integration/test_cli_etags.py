"""`spine-agent` conditional writes against the real daemon: `get --etag`, `put --if-match`,
`put --if-absent`, `delete --if-match`; a lost precondition exits 4 with one line and writes
nothing, a malformed version exits 2 before anything is sent."""

from __future__ import annotations

import json

import pytest

from .conftest import Agent, AgentFactory
from .test_cli import cli, one_line


@pytest.fixture
def running(agents: AgentFactory) -> Agent:
    return agents.new("cli-etag").start()


def read(agent: Agent, key: str) -> tuple[int, object]:
    """(version, value) from `get --etag`: the version's line, then the JSON value."""
    proc = cli("get", "--etag", "agents", key, config=agent.config_path)
    assert proc.returncode == 0, proc
    first, _, rest = proc.stdout.partition("\n")
    return int(first), json.loads(rest)


def test_get_etag_prints_the_version_of_the_value_it_prints(running: Agent) -> None:
    reply = running.client().put("agents", "a", {"n": 1})
    assert reply.status == 200
    assert read(running, "a") == (reply.version, {"n": 1})


def test_put_if_match_writes_at_the_version_and_exits_4_when_stale(running: Agent) -> None:
    config = running.config_path
    assert cli("put", "agents", "a", "1", config=config).returncode == 0
    version, _ = read(running, "a")
    proc = cli("put", "--etag", "--if-match", str(version), "agents", "a", "2", config=config)
    assert proc.returncode == 0, proc
    new_version = int(proc.stdout)
    assert read(running, "a") == (new_version, 2)
    stale = cli("put", "--if-match", f'"{version}"', "agents", "a", "3", config=config)
    assert stale.returncode == 4, stale
    line = one_line(stale.stderr)
    assert "precondition failed" in line and str(new_version) in line
    assert read(running, "a") == (new_version, 2)


def test_put_if_absent_creates_only(running: Agent) -> None:
    config = running.config_path
    assert cli("put", "--if-absent", "agents", "n", "1", config=config).returncode == 0
    again = cli("put", "--if-absent", "agents", "n", "2", config=config)
    assert again.returncode == 4
    assert "exists" in one_line(again.stderr)
    assert read(running, "n")[1] == 1


def test_delete_if_match(running: Agent) -> None:
    config = running.config_path
    assert cli("put", "agents", "d", "1", config=config).returncode == 0
    version, _ = read(running, "d")
    stale = cli("delete", "--if-match", str(version - 1), "agents", "d", config=config)
    assert stale.returncode == 4
    one_line(stale.stderr)
    assert cli("delete", "--if-match", str(version), "agents", "d", config=config).returncode == 0
    absent = cli("delete", "--if-match", str(version), "agents", "d", config=config)
    assert absent.returncode == 4
    assert "absent" in one_line(absent.stderr)


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "W/\"1\"", "9" * 20, ""])
def test_a_malformed_version_exits_2_naming_the_option(running: Agent, value: str) -> None:
    config = running.config_path
    proc = cli("put", "--if-match", value, "agents", "a", "1", config=config)
    assert proc.returncode == 2, proc
    assert "--if-match" in one_line(proc.stderr)
    assert running.client().get("agents", "a").status == 404


def test_if_match_and_if_absent_together_is_a_usage_error(running: Agent) -> None:
    config = running.config_path
    proc = cli("put", "--if-match", "1", "--if-absent", "agents", "a", "1", config=config)
    assert proc.returncode == 2
    assert running.client().get("agents", "a").status == 404
