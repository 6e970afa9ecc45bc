"""Fixtures for the agent's container image: a real podman build on a local Debian base, and
real containers of it, each removed (with its volumes) in teardown. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.container.base import ensure_base_image
from tests.container.podman import REPO, podman
from tests.integration.conftest import Client, wait_for

AGENT_UID = 10001  # the Containerfile's ARG AGENT_UID
START_TIMEOUT = 90.0  # generous: the machine is shared with VMs and other test runs
STOP_TIMEOUT = 10  # podman stop's default, and Cloud Run's SIGTERM grace


@dataclass(frozen=True)
class BuiltImage:
    ref: str
    base: str
    seconds: float  # wall time of `make image` (wheel, dependency download, podman build)

    @property
    def tag(self) -> str:
        return self.ref.rsplit(":", 1)[1]


def run_image_script(*args: str) -> subprocess.CompletedProcess[str]:
    """scripts/image.sh as a user runs it, from the repository root."""
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "image.sh"), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
        check=False,
    )


@pytest.fixture(scope="session")
def base_image() -> str:
    ref, _timing = ensure_base_image()
    return ref


@pytest.fixture(scope="session")
def agent_image(base_image: str) -> Iterator[BuiltImage]:
    """`make image` on the local base, under a name of this run's own (removed afterwards)."""
    name = f"localhost/super-spine-agent-test-{os.getpid()}"
    started = time.monotonic()
    proc = subprocess.run(
        ["make", "-s", "image", f"IMAGE_BASE={base_image}", f"IMAGE_NAME={name}"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ref = proc.stdout.strip().splitlines()[-1]
    assert ref.startswith(f"{name}:"), proc.stdout
    yield BuiltImage(ref=ref, base=base_image, seconds=time.monotonic() - started)
    podman("rmi", "--force", ref, check=False)


@dataclass
class AgentContainer:
    """One `podman run -d` of the image: read-only root, the socket dir mounted from the host."""

    image: str
    socket_dir: Path
    data_volume: str
    env: dict[str, str] = field(default_factory=dict)
    name: str = field(default_factory=lambda: f"spine-test-{secrets.token_hex(4)}")

    @property
    def socket(self) -> Path:
        return self.socket_dir / "spine-agent.sock"

    def start(self) -> AgentContainer:
        args = ["run", "--detach", "--name", self.name, "--read-only",
                "--volume", f"{self.socket_dir}:/run/super-spine",
                "--volume", f"{self.data_volume}:/data/super-spine"]
        for key, value in self.env.items():
            args += ["--env", f"{key}={value}"]
        podman(*args, self.image)
        return self

    def wait_serving(self, timeout: float = START_TIMEOUT) -> None:
        wait_for(self._serves, timeout, what=f"the agent in {self.name} to serve")

    def _serves(self) -> bool:
        if not self.inspect()["State"]["Running"]:
            raise AssertionError(f"agent container exited before serving:\n{self.logs()}")
        if not self.socket.exists():
            return False
        with closing(Client(self.socket, timeout=5)) as probe:
            try:
                return probe.request("GET", "/v1/health").status == 200
            except OSError:
                return False

    def inspect(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(podman("inspect", self.name).stdout)[0]
        return result

    def logs(self) -> str:
        """The container's own output (podman's messages about itself are not in it)."""
        proc = podman("logs", self.name, check=False)
        return proc.stdout + proc.stderr

    def stop(self) -> float:
        """`podman stop` (SIGTERM, SIGKILL after STOP_TIMEOUT); returns its wall time."""
        started = time.monotonic()
        podman("stop", "--time", str(STOP_TIMEOUT), self.name)
        return time.monotonic() - started

    def remove(self) -> None:
        podman("rm", "--force", "--time", "0", self.name, check=False)


@pytest.fixture
def socket_dir(tmp_path: Path) -> Path:
    """A host directory for the socket, owned by the agent's uid (as a shared volume would be)."""
    directory = tmp_path / "sock"
    directory.mkdir()
    os.chown(directory, AGENT_UID, AGENT_UID)
    directory.chmod(0o770)
    return directory


@pytest.fixture
def data_volume() -> Iterator[str]:
    """A named volume: it outlives containers, as a disk does, and starts with the image's owner."""
    name = f"spine-test-data-{secrets.token_hex(4)}"
    podman("volume", "create", name)
    yield name
    podman("volume", "rm", "--force", name, check=False)


StartAgent = Callable[..., AgentContainer]


@pytest.fixture
def start_agent(agent_image: BuiltImage, socket_dir: Path,
                data_volume: str) -> Iterator[StartAgent]:
    """start_agent(**env): a new container on this test's socket dir and data volume."""
    made: list[AgentContainer] = []

    def start(**env: str) -> AgentContainer:
        container = AgentContainer(agent_image.ref, socket_dir, data_volume, env)
        made.append(container)
        return container.start()

    yield start
    for container in made:
        container.remove()
