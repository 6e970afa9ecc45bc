"""The agent's container image, built by `make image` on a local Debian base and run by podman:
a numeric non-root user, a read-only root, no shell, its socket in a host directory, its data
on a volume that outlives the container, and a clean stop on SIGTERM.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.container.conftest import AGENT_UID, BuiltImage, StartAgent
from tests.container.podman import podman
from tests.integration.conftest import Client


def _config(image: BuiltImage) -> dict:
    config: dict = json.loads(podman("image", "inspect", image.ref).stdout)[0]["Config"]
    return config


def test_entry_point_is_exec_form_as_a_numeric_non_root_user(agent_image: BuiltImage) -> None:
    config = _config(agent_image)
    assert config["Entrypoint"] == ["spine-agent", "run"]
    assert not config.get("Cmd")
    assert config["User"] == f"{AGENT_UID}:{AGENT_UID}"
    assert config["StopSignal"] == "SIGTERM"
    healthcheck = json.loads(
        podman("image", "inspect", "--format", "{{json .HealthCheck}}", agent_image.ref).stdout
    )
    assert healthcheck["Test"] == ["CMD", "spine-agent", "status"]  # exec form, not CMD-SHELL


def test_configuration_defaults_come_from_the_environment(agent_image: BuiltImage) -> None:
    env = dict(item.split("=", 1) for item in _config(agent_image)["Env"])
    assert env["SUPER_SPINE_STORAGE_PATH"] == "/data/super-spine"
    assert env["SUPER_SPINE_API__SOCKET"] == "/run/super-spine/spine-agent.sock"
    assert env["SUPER_SPINE_STOP_BUDGET"] == "8s"  # under podman's and Cloud Run's 10 s


@pytest.mark.parametrize("shell", ["sh", "/bin/sh", "bash", "/usr/bin/dash"])
def test_the_image_has_no_shell(agent_image: BuiltImage, shell: str) -> None:
    proc = podman("run", "--rm", "--entrypoint", shell, agent_image.ref, "-c", "true",
                  check=False)
    assert proc.returncode == 127, proc.stderr
    assert "not found" in proc.stderr


def test_serves_put_and_get_on_a_host_socket_read_only_as_non_root(
    start_agent: StartAgent,
) -> None:
    agent = start_agent()
    agent.wait_serving()
    client = Client(agent.socket)
    reply = client.put("agents", "a1", {"name": "first", "n": 1})
    assert reply.status == 200, reply.body
    assert client.get("agents", "a1").json() == {"name": "first", "n": 1}
    client.close()

    state = agent.inspect()
    assert state["HostConfig"]["ReadonlyRootfs"] is True
    pid = state["State"]["Pid"]  # the container's PID 1, seen from the host (no user namespace)
    status = Path(f"/proc/{pid}/status").read_text()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert uids == [str(AGENT_UID)] * 4
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert argv[1:3] == [b"/opt/super-spine/venv/bin/spine-agent", b"run"]  # no sh -c in between
    assert os.stat(agent.socket).st_uid == AGENT_UID

    unwritable = podman("exec", agent.name, "python3", "-c", "open('/opt/probe', 'w')",
                        check=False)
    assert unwritable.returncode != 0
    assert "Read-only file system" in unwritable.stderr
    assert podman("healthcheck", "run", agent.name, check=False).returncode == 0


def test_data_survives_sigterm_and_a_new_container_on_the_same_volume(
    start_agent: StartAgent, record_property: Callable[[str, object], None]
) -> None:
    first = start_agent(SUPER_SPINE_TIERING__GIT_BACKUP_INTERVAL="1h")
    first.wait_serving()
    client = Client(first.socket)
    for collection, key in [("agents", "a1"), ("sessions", "s1"), ("tasks", "t1")]:
        reply = client.put(collection, key, {"collection": collection, "key": key})
        assert reply.status == 200, reply.body
    client.close()

    stop_seconds = first.stop()
    record_property("podman_stop_seconds", round(stop_seconds, 2))
    state = first.inspect()["State"]
    # 0, not 137: the agent finished its shutdown backup before podman's SIGKILL deadline.
    assert state["ExitCode"] == 0, first.logs()
    assert "shutdown backup done" in first.logs()
    assert not first.socket.exists()  # the agent removed its socket on the way out

    second = start_agent()
    second.wait_serving()
    client = Client(second.socket)
    for collection, key in [("agents", "a1"), ("sessions", "s1"), ("tasks", "t1")]:
        assert client.get(collection, key).json() == {"collection": collection, "key": key}
    client.close()


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        ("SUPER_SPINE_STOP_BUDGET", "soon", "stop_budget"),
        ("SUPER_SPINE_MEMORY_LIMIT", "lots", "memory_limit"),
        ("SUPER_SPINE_API__SOCKET_MODE", "0777", "api.socket_mode"),
        ("SUPER_SPINE_GIT__NOPE", "1", "git.nope"),
    ],
)
def test_a_bad_environment_value_exits_2_with_one_line(
    start_agent: StartAgent, name: str, value: str, key: str
) -> None:
    agent = start_agent(**{name: value})
    exit_code = podman("wait", agent.name, timeout=120).stdout.strip()
    assert exit_code == "2", agent.logs()
    lines = agent.logs().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"spine-agent: config error: {key}="), lines[0]


def test_the_data_directory_must_be_a_mounted_volume_on_a_read_only_root(
    agent_image: BuiltImage,
) -> None:
    """Without a volume the data dir is part of the read-only image: one line, exit 1."""
    name = f"spine-test-novol-{os.getpid()}"
    try:
        podman("run", "--detach", "--name", name, "--read-only", agent_image.ref)
        assert podman("wait", name, timeout=120).stdout.strip() == "1"
        logs = podman("logs", name).stderr.strip().splitlines()
        assert len(logs) == 1, logs
        assert logs[0].startswith("spine-agent: storage_path /data/super-spine"), logs[0]
        assert "not writable" in logs[0]
    finally:
        podman("rm", "--force", name, check=False)

