"""A local stand-in for the `cloudrun` topology: podman pods shaped like Cloud Run instances.

Each pod holds the agent's image (the sidecar: no port of its own, its environment exactly the
one the Pulumi program gives it, infra.components.service.AGENT_ENV) and a STAND-IN app
(tests/container/standin_app.py, the Debian base's python3), sharing an in-memory volume for
the agent's socket, as Cloud Run's containers share an `emptyDir` of medium MEMORY. The agent's
storage path is an in-memory tmpfs too: an instance has no disk. "Cloud SQL" is a real
PostgreSQL 15 on the host, reached through its socket directory mounted at
/cloudsql/<connection name>, as Cloud Run's Cloud SQL volume does. The agent logs in with IAM
database authentication: the token comes from a STAND-IN metadata server this test serves
(tests/lab/metadata.py), and PostgreSQL checks it as the role's password.

Differences from Cloud Run, on purpose: the pods use the host's network (so the agent reaches
the stand-in metadata server on 127.0.0.1, and each pod gets its own ports), and the app is
asked directly instead of through Cloud Run's front end. The app starts once the agent's
health port answers, as `depends_ons` plus the startup probe do.
"""

from __future__ import annotations

import http.client
import json
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from infra.components.service import AGENT_ENV, DSN_ENV, SOCKET_DIR, SOCKET_ENV, SOCKET_PATH
from tests.container.conftest import AGENT_UID, BuiltImage
from tests.container.podman import podman
from tests.lab.metadata import LabMetadata
from tests.pgcluster import PgCluster

APP = Path(__file__).with_name("standin_app.py")
APP_UID = 10002  # not the agent's user: the app reaches the socket through the agent's group
IAM_USER = "spine-run@acme-spine-1.iam"
CONNECTION_NAME = "acme-spine-1:europe-west1:standin"
GRACE = 10  # Cloud Run's SIGTERM-to-SIGKILL time
START_TIMEOUT = 120.0
VISIBLE_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(condition: Any, what: str, timeout: float) -> float:
    started = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def metadata() -> Iterator[LabMetadata]:
    with LabMetadata(address="127.0.0.1") as server:
        yield server


@pytest.fixture(scope="module")
def cloud_sql(metadata: LabMetadata) -> Iterator[tuple[PgCluster, str]]:
    """The host's PostgreSQL, and a database owned by the run account's IAM user."""
    cluster = PgCluster().init()
    cluster.start()
    cluster.create_role(IAM_USER, metadata.token)
    database = cluster.create_database(IAM_USER)
    yield cluster, database
    cluster.destroy()


class CloudRunPod:
    """One Cloud Run instance: the agent sidecar and the app, in one pod."""

    def __init__(self, image: str, base: str, cluster: PgCluster, database: str,
                 metadata: LabMetadata) -> None:
        self.name = f"spine-run-{secrets.token_hex(4)}"
        self.image, self.base = image, base
        self.cluster, self.database, self.metadata = cluster, database, metadata
        self.app_port = free_port()
        self.health_port = free_port()
        self.socket_volume = f"{self.name}-socket"
        self.timings: dict[str, float] = {}

    @property
    def agent(self) -> str:
        return f"{self.name}-agent"

    def agent_env(self) -> dict[str, str]:
        dsn = (
            f"host=/cloudsql/{CONNECTION_NAME} port={self.cluster.port} "
            f"dbname={self.database} user={IAM_USER}"
        )
        return {
            **AGENT_ENV,
            DSN_ENV: dsn,
            # Host networking here: each pod its own health port, on loopback.
            "SUPER_SPINE_API__HEALTH_PORT": str(self.health_port),
            "SUPER_SPINE_API__HEALTH_ADDRESS": "127.0.0.1",
            "SUPER_SPINE_POSTGRES__METADATA_URL": self.metadata.metadata_url,
        }

    def start(self) -> CloudRunPod:
        started = time.monotonic()
        podman("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
               "--opt", f"o=uid={AGENT_UID},gid={AGENT_UID},mode=0770",
               self.socket_volume)
        podman("pod", "create", "--name", self.name, "--network", "host")
        args = ["run", "--detach", "--pod", self.name, "--name", self.agent, "--read-only",
                "--volume", f"{self.socket_volume}:{SOCKET_DIR}",
                "--mount", f"type=tmpfs,destination={AGENT_ENV['SUPER_SPINE_STORAGE_PATH']},"
                "tmpfs-size=128m,tmpfs-mode=0750,U=true",
                # --mount: the connection name's colons would split a --volume argument.
                "--mount", f"type=bind,source={self.cluster.sockdir},"
                f"destination=/cloudsql/{CONNECTION_NAME}"]
        for key, value in self.agent_env().items():
            args += ["--env", f"{key}={value}"]
        podman(*args, self.image)
        # The startup probe: GET /v1/health on the agent's health port.
        wait_until(self._agent_healthy, f"the agent of {self.name} to pass its probe",
                   START_TIMEOUT)
        self.timings["agent_ready_s"] = time.monotonic() - started
        podman("run", "--detach", "--pod", self.name, "--name", f"{self.name}-app",
               "--read-only", "--user", f"{APP_UID}:{AGENT_UID}",
               "--env", f"{SOCKET_ENV}={SOCKET_PATH}", "--env", f"PORT={self.app_port}",
               "--volume", f"{self.socket_volume}:{SOCKET_DIR}",
               "--volume", f"{APP}:/app/app.py:ro",
               self.base, "python3", "/app/app.py")
        wait_until(lambda: self._app_answers(), f"the app of {self.name}", START_TIMEOUT)
        self.timings["serving_s"] = time.monotonic() - started
        return self

    def _agent_healthy(self) -> bool:
        state = json.loads(podman("inspect", self.agent).stdout)[0]["State"]
        if not state["Running"]:
            raise AssertionError(f"the agent exited before serving:\n{self.logs()}")
        try:
            return self._request(self.health_port, "GET", "/v1/health")[0] == 200
        except OSError:
            return False

    def _app_answers(self) -> bool:
        try:
            self.get("probe", "none")
        except OSError:
            return False
        return True

    def logs(self) -> str:
        proc = podman("logs", self.agent, check=False)
        return (proc.stdout + proc.stderr)[-4000:]

    @staticmethod
    def _request(port: int, method: str, path: str,
                 body: bytes | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request(method, path, body=body)
            reply = conn.getresponse()
            return reply.status, reply.read()
        finally:
            conn.close()

    def put(self, collection: str, key: str, value: Any) -> int:
        body = json.dumps(value).encode()
        return self._request(self.app_port, "PUT", f"/records/{collection}/{key}", body)[0]

    def get(self, collection: str, key: str) -> tuple[int, Any]:
        status, body = self._request(self.app_port, "GET", f"/records/{collection}/{key}")
        return status, (json.loads(body) if status == 200 else None)

    def stop(self) -> tuple[float, int]:
        """SIGTERM to every container of the pod, SIGKILL after GRACE s; (seconds, the
        agent's exit code: 137 would be the SIGKILL)."""
        started = time.monotonic()
        podman("pod", "stop", "--time", str(GRACE), self.name)
        seconds = time.monotonic() - started
        state = json.loads(podman("inspect", self.agent).stdout)[0]["State"]
        return seconds, int(state["ExitCode"])

    def remove(self) -> None:
        podman("pod", "rm", "--force", "--time", "0", self.name, check=False)
        podman("volume", "rm", "--force", self.socket_volume, check=False)


@pytest.fixture
def new_pod(agent_image: BuiltImage, cloud_sql: tuple[PgCluster, str],
            metadata: LabMetadata) -> Iterator[Any]:
    made: list[CloudRunPod] = []

    def make() -> CloudRunPod:
        pod = CloudRunPod(agent_image.ref, agent_image.base, *cloud_sql, metadata)
        made.append(pod)
        return pod.start()

    yield make
    for pod in made:
        pod.remove()


def test_every_acknowledged_write_is_served_by_a_new_instance(new_pod: Any) -> None:
    first = new_pod()
    acked: dict[tuple[str, str], Any] = {}
    started = time.monotonic()
    for i in range(150):
        for collection in ("agents", "sessions"):  # critical and session: both in PostgreSQL
            value = {"i": i, "tag": secrets.token_hex(4)}
            if first.put(collection, f"k{i}", value) == 200:
                acked[(collection, f"k{i}")] = value
    write_s = time.monotonic() - started
    assert len(acked) == 300
    stop_s, exit_code = first.stop()
    # The agent finished within Cloud Run's grace: it exited by itself, not by SIGKILL.
    assert exit_code == 0, first.logs()
    first.remove()
    second = new_pod()  # fresh in-memory volumes: nothing but PostgreSQL to restore from
    for (collection, key), value in acked.items():
        assert second.get(collection, key) == (200, value), (collection, key)
    print(f"\ncloudrun stand-in: 300 writes through the app {write_s:.2f} s, pod stop "
          f"{stop_s:.2f} s, first pod serving {first.timings['serving_s']:.1f} s, new pod "
          f"serving {second.timings['serving_s']:.1f} s")


def test_two_instances_see_each_others_writes(new_pod: Any) -> None:
    a, b = new_pod(), new_pod()
    assert a.put("agents", "x", {"by": "a"}) == 200
    seen_b = wait_until(lambda: b.get("agents", "x") == (200, {"by": "a"}),
                        "b to serve a's write", VISIBLE_TIMEOUT)
    assert b.put("agents", "y", {"by": "b"}) == 200
    wait_until(lambda: a.get("agents", "y") == (200, {"by": "b"}),
               "a to serve b's write", VISIBLE_TIMEOUT)
    # A replaced value, already cached in a's memory, is replaced there too.
    assert b.put("agents", "x", {"by": "b"}) == 200
    replaced = wait_until(lambda: a.get("agents", "x") == (200, {"by": "b"}),
                          "a to serve b's newer value", VISIBLE_TIMEOUT)
    print(f"\ncloudrun stand-in: visible on the other pod after {seen_b * 1000:.0f} ms, "
          f"a replaced value after {replaced * 1000:.0f} ms")


def test_the_database_role_is_the_iam_user(cloud_sql: tuple[PgCluster, str],
                                           new_pod: Any) -> None:
    """The rows were written by the IAM user, logged in with the stand-in's token."""
    pod = new_pod()
    assert pod.put("agents", "who", {"v": 1}) == 200
    cluster, database = cloud_sql
    with cluster.admin(database) as conn:
        owners = conn.execute(
            sql.SQL("SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = {}").format(
                sql.Literal(database)
            )
        ).fetchall()
    assert (IAM_USER,) in owners
