"""The `spine-agent` command line against the real daemon: config errors (exit 2, one line naming
the key and value), put/get/delete/list exit codes, stdin values, the socket found from
SUPER_SPINE_STORAGE_PATH alone, and an unreachable agent."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import SPINE_AGENT, Agent, AgentFactory, BareRemote, clean_env


def cli(
    *args: str,
    config: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    argv = [SPINE_AGENT, *args]
    if config is not None:
        argv += ["--config", str(config)]
    return subprocess.run(
        argv,
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        env=clean_env(**(env or {})),
        cwd=cwd,
        timeout=timeout,
    )


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    return lines[0]


# -- config errors ------------------------------------------------------------------------

CONFIG_ERRORS: dict[str, tuple[str, str, str]] = {
    # id: (YAML after storage_path, key the line must name, value it must show)
    "unknown-key": ("bogus_key: 1\n", "bogus_key", "1"),
    "unknown-section-key": (
        "git:\n  remtoe: file:///srv/x.git\n",
        "git.remtoe",
        "file:///srv/x.git",
    ),
    "bad-size": ("memory_limit: 100XB\n", "memory_limit", "100XB"),
    "size-too-small": ("max_value_size: 2\n", "max_value_size", "2"),
    "bad-duration": ("stop_budget: 5 fortnights\n", "stop_budget", "5 fortnights"),
    "bad-section-duration": ("tiering:\n  hot_age: soon\n", "tiering.hot_age", "soon"),
    "bad-class": ("classes:\n  forever: [agents]\n", "classes.forever", "agents"),
    "bad-default-class": ("classes:\n  default: forever\n", "classes.default", "forever"),
    "bad-bool": ("tiering:\n  enabled: maybe\n", "tiering.enabled", "maybe"),
    "bad-socket-mode": ("api:\n  socket_mode: '0666'\n", "api.socket_mode", "0666"),
    "bad-remote-scheme": ("git:\n  remote: ftp://host/x.git\n", "git.remote", "ftp://host/x.git"),
    "bad-branch": ("git:\n  branch: 'a..b'\n", "git.branch", "a..b"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_ERRORS))
def test_config_error_exits_2_with_one_line(workdir: Path, case: str) -> None:
    body, key, value = CONFIG_ERRORS[case]
    storage = workdir / "storage"
    config = workdir / "bad.yaml"
    config.write_text(f"storage_path: {storage}\n{body}")
    proc = cli("run", config=config)
    assert proc.returncode == 2, proc
    line = one_line(proc.stderr)
    assert f"{key}=" in line, line
    assert value in line, line
    assert proc.stdout == ""
    assert not storage.exists(), "a bad config must not touch the storage path"


@pytest.mark.parametrize("value", ['""', "'   '"], ids=["empty", "blank"])
def test_bad_storage_path_exits_2(workdir: Path, value: str) -> None:
    config = workdir / "bad.yaml"
    config.write_text(f"storage_path: {value}\n")
    proc = cli("run", config=config)
    assert proc.returncode == 2, proc
    line = one_line(proc.stderr)
    assert "storage_path=" in line, line


@pytest.mark.parametrize(
    "text", ["storage_path: [unclosed\n", "a: b: c\n", "\tstorage_path: x\n"], ids=str
)
def test_bad_yaml_exits_2_naming_the_file(workdir: Path, text: str) -> None:
    config = workdir / "bad.yaml"
    config.write_text(text)
    proc = cli("run", config=config)
    assert proc.returncode == 2, proc
    line = one_line(proc.stderr)
    assert str(config) in line and "YAML" in line, line


def test_missing_config_file_exits_2(workdir: Path) -> None:
    proc = cli("run", config=workdir / "nope.yaml")
    assert proc.returncode == 2
    assert str(workdir / "nope.yaml") in one_line(proc.stderr)


def test_bad_environment_override_exits_2(workdir: Path) -> None:
    env = {"SUPER_SPINE_STORAGE_PATH": str(workdir / "s"), "SUPER_SPINE_MEMORY_LIMIT": "lots"}
    proc = cli("run", env=env)
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert "memory_limit=" in line and "lots" in line, line


def test_client_commands_share_config_validation(workdir: Path) -> None:
    config = workdir / "bad.yaml"
    config.write_text(f"storage_path: {workdir}\nstop_budget: never\n")
    for args in (("status",), ("get", "agents", "a"), ("put", "agents", "a", "1")):
        proc = cli(*args, config=config)
        assert proc.returncode == 2, (args, proc)
        assert "stop_budget=" in one_line(proc.stderr)


# -- client commands against a running agent -----------------------------------------------


@pytest.fixture
def running(agents: AgentFactory) -> Agent:
    return agents.new(max_value_size="1KB").start()


def test_put_exits_0_only_once_durable(running: Agent) -> None:
    value = {"role": "planner", "n": [1, 2, 3]}
    proc = cli("put", "agents", "a1", json.dumps(value), config=running.config_path)
    assert proc.returncode == 0, proc
    assert proc.stderr == ""
    running.kill9()  # acknowledged means on disk: no clean shutdown needed
    running.start()
    proc = cli("get", "agents", "a1", config=running.config_path)
    assert proc.returncode == 0, proc
    assert json.loads(proc.stdout) == value


def test_put_refused_by_the_agent_exits_non_zero(running: Agent) -> None:
    big = json.dumps("x" * 2000)
    proc = cli("put", "agents", "big", big, config=running.config_path)
    assert proc.returncode == 1, proc
    assert "max_value_size" in one_line(proc.stderr)
    proc = cli("put", "agents", "bad", "1", "--class", "cache", config=running.config_path)
    assert proc.returncode == 0
    proc = cli("put", "agents", "a..b", "1", config=running.config_path)
    assert proc.returncode == 1
    one_line(proc.stderr)
    assert cli("get", "agents", "big", config=running.config_path).returncode == 1


def test_put_value_that_is_not_json_exits_2(running: Agent) -> None:
    proc = cli("put", "agents", "a", "not json", config=running.config_path)
    assert proc.returncode == 2
    assert "JSON" in one_line(proc.stderr)
    assert running.client().get("agents", "a").status == 404


def test_put_dash_reads_the_value_from_stdin(running: Agent) -> None:
    value: dict[str, Any] = {"lines": ["a", "b"], "nested": {"x": None, "y": 1.5}, "u": "é"}
    proc = cli(
        "put", "tasks", "t1", "-", config=running.config_path, stdin=json.dumps(value).encode()
    )
    assert proc.returncode == 0, proc
    assert running.client().get("tasks", "t1").json() == value
    bad = cli("put", "tasks", "t2", "-", config=running.config_path, stdin=b"{oops")
    assert bad.returncode == 2
    one_line(bad.stderr)


def test_get_prints_json_and_exits_1_when_absent(running: Agent) -> None:
    assert running.client().put("agents", "a", {"k": [1, "two"]}).status == 200
    proc = cli("get", "agents", "a", config=running.config_path)
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == {"k": [1, "two"]}
    absent = cli("get", "agents", "nobody", config=running.config_path)
    assert absent.returncode == 1
    assert absent.stdout == ""
    assert "nobody" in one_line(absent.stderr)


def test_delete_and_list(running: Agent) -> None:
    config = running.config_path
    for key in ("a", "b", "c"):
        assert cli("put", "agents", key, json.dumps({"k": key}), config=config).returncode == 0
    listed = cli("list", "agents", config=config)
    assert listed.returncode == 0
    body = json.loads(listed.stdout)
    assert body["records"] == {"a": {"k": "a"}, "b": {"k": "b"}, "c": {"k": "c"}}
    assert cli("delete", "agents", "b", config=config).returncode == 0
    gone = cli("delete", "agents", "b", config=config)
    assert gone.returncode == 1
    one_line(gone.stderr)
    assert cli("get", "agents", "b", config=config).returncode == 1
    status = cli("status", config=config)
    assert status.returncode == 0 and json.loads(status.stdout)["records"] == 2


def test_storage_path_env_alone_daemon_and_cli_agree(agents: AgentFactory, workdir: Path) -> None:
    storage = workdir / "env-storage"
    env = {"SUPER_SPINE_STORAGE_PATH": str(storage)}
    agent = agents.new("envonly", storage=storage, env=env, use_config_file=False).start()
    assert agent.socket_path == storage / "spine-agent.sock"
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    put = cli("put", "agents", "e1", '{"via": "env"}', env=env, cwd=elsewhere)
    assert put.returncode == 0, put
    got = cli("get", "agents", "e1", env=env, cwd=elsewhere)
    assert got.returncode == 0 and json.loads(got.stdout) == {"via": "env"}
    status = json.loads(cli("status", env=env, cwd=elsewhere).stdout)
    assert status["storage_path"] == str(storage)
    assert agent.stop() == 0


def test_unreachable_agent_one_line_and_non_zero(agents: AgentFactory, workdir: Path) -> None:
    agent = agents.new()
    config = agent.write_config()
    for args in (("status",), ("get", "agents", "a"), ("put", "agents", "a", "1"), ("flush",)):
        proc = cli(*args, config=config)
        assert proc.returncode == 3, (args, proc)
        line = one_line(proc.stderr)
        assert str(agent.socket_path) in line, line
    # A stale socket left by a crashed agent is unreachable too, not a hang or a traceback.
    agent.start()
    agent.kill9()
    assert agent.socket_path.exists()
    proc = cli("status", config=config)
    assert proc.returncode == 3
    one_line(proc.stderr)


def test_usage_error_exits_2(workdir: Path) -> None:
    proc = cli("frobnicate")
    assert proc.returncode == 2
    proc = cli("get", "agents")
    assert proc.returncode == 2


def test_offline_restore_from_the_remote(agents: AgentFactory, remote: BareRemote) -> None:
    old = agents.new("old-vm", git={"remote": remote.url, "branch": "backup/r"}).start()
    records = {f"a{i}": {"i": i} for i in range(25)}
    client = old.client()
    for key, value in records.items():
        assert client.put("agents", key, value).status == 200
    client.close()
    assert old.stop() == 0

    new = agents.new("new-vm", git={"remote": remote.url, "branch": "backup/r"})
    proc = cli("restore", config=new.write_config())
    assert proc.returncode == 0, proc
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary == {"restored_from": "git-remote", "records": len(records)}
    on_disk = json.loads((new.storage / "agents.json").read_text())
    assert on_disk == records  # human-readable warm file, written by the restore

    new.start()
    client = new.client()
    assert client.status()["restored_from"] == "files"
    assert client.records("agents") == records
    client.close()
    # Restore refuses to run under a live agent.
    busy = cli("restore", config=new.config_path)
    assert busy.returncode == 1
    assert "running" in one_line(busy.stderr)
    assert new.stop() == 0
