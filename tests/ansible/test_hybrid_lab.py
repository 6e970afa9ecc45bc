"""The `hybrid` topology in the lab: the VM's agent writes to a PostgreSQL on the host, and a
VM that lost everything (new overlay, BLANK data disk) serves every record from PostgreSQL.

What stands in for what:
- Cloud SQL: a real PostgreSQL 15 on the host (tests/pgcluster.py), TLS only on 127.0.0.1,
  which the VM reaches at 10.0.2.2 (QEMU's user network). The agent verifies its certificate
  against the CA the role writes (`sslmode=verify-ca`).
- IAM database authentication: the token comes from a STAND-IN metadata server that this test
  serves (tests/lab/metadata.py, at 10.0.2.2 for the VM); PostgreSQL checks it as the IAM
  user's password.
- The Pulumi outputs: the role variables come from infra.scripts.postgres_vars, the function
  the hybrid stack's inventory and VM metadata use, with the lab's host, port, CA and metadata
  server in place of Cloud SQL's.

Two boots only (the lab's cost is boots and playbook runs under TCG): case 1 provisions a new
VM on a blank disk and checks the PATH and the status; case 2 shares records both ways with an
agent on the host; case 3 replaces the VM with a fresh overlay and a blank disk (no git remote
either: PostgreSQL is the only source left) and reads every record back.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bootstrap.client import ApiClient
from infra import scripts
from tests.ansible.conftest import boot, record_timing, run_playbook
from tests.lab import LabVM, make_blank_disk
from tests.lab.gitremote import GUEST_HOST_ADDRESS
from tests.lab.metadata import LabMetadata
from tests.pgcluster import PgCluster

pytestmark = pytest.mark.lab

IAM_USER = "ssk-lab-vm@acme-spine-1.iam"
SOCKET = "/data/super-spine/spine-agent.sock"
VISIBLE_TIMEOUT = 60.0  # async shipping (max_lag 1 s) plus a loaded, emulated VM
RECORDS = 40


@dataclass
class Hybrid:
    workdir: Path
    vm: LabVM
    cluster: PgCluster
    database: str
    metadata: LabMetadata
    extra_vars: Path
    passed: set[str] = field(default_factory=set)
    written: dict[tuple[str, str], Any] = field(default_factory=dict)

    def require(self, *cases: str) -> None:
        missing = [case for case in cases if case not in self.passed]
        if missing:
            pytest.fail(f"needs case(s) {', '.join(missing)} to have passed first")

    def sh(self, cmd: str, check: bool = True) -> str:
        return self.vm.ssh(cmd, check=check).stdout.strip()

    def vm_request(self, method: str, path: str, body: object | None = None) -> tuple[int, str]:
        data = f" --data-binary {shlex.quote(json.dumps(body))}" if body is not None else ""
        out = self.sh(
            f"curl -sS --max-time 60 -o /dev/stdout -w '\\n%{{http_code}}' --unix-socket "
            f"{SOCKET} -X {method}{data} http://spine-agent{path}"
        )
        text, _, code = out.rpartition("\n")
        return int(code), text


def role_vars(cluster: PgCluster, database: str, metadata: LabMetadata) -> dict[str, Any]:
    """The hybrid stack's role variables, with the lab's stand-ins for Cloud SQL."""
    return {
        **scripts.postgres_vars(
            host=GUEST_HOST_ADDRESS,
            database=database,
            user=IAM_USER,
            ca_cert=cluster.certs.ca.read_text(),
            connection_name="lab:local:postgres",
        ),
        "spine_postgres_port": cluster.port,
        "spine_postgres_metadata_url": metadata.metadata_url,
        "spine_git_remote": "",  # PostgreSQL must be the only copy off the disk
    }


@pytest.fixture(scope="module")
def hybrid(lab_dir: Path) -> Iterator[Hybrid]:
    workdir = lab_dir / "hybrid"
    workdir.mkdir()
    with LabMetadata() as metadata:  # serves 10.0.2.2 for the VM, 127.0.0.1 for the host
        cluster = PgCluster().init()
        cluster.start()
        try:
            cluster.create_role(IAM_USER, metadata.token)
            database = cluster.create_database(IAM_USER)
            extra = workdir / "hybrid-vars.json"
            extra.write_text(json.dumps(role_vars(cluster, database, metadata)))
            disk = make_blank_disk(workdir / "pd-1.img", "1G")
            vm = LabVM(workdir / "vm", data_disk=disk)
            try:
                yield Hybrid(workdir, vm, cluster, database, metadata, extra)
            finally:
                vm.powerdown()
        finally:
            cluster.destroy()


@dataclass
class HostAgent:
    """The agent on the host; a connection per request (it closes idle keep-alives after 5 s,
    and the VM's side of a case takes longer than that)."""

    socket: Path

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        with ApiClient(self.socket, timeout=30) as client:
            reply = client.request(method, path, body)
            return reply.status, reply.body


@pytest.fixture(scope="module")
def host_agent(hybrid: Hybrid) -> Iterator[HostAgent]:
    """An agent on the host sharing the database (sync, the same IAM login)."""
    storage = hybrid.workdir / "host-agent"
    storage.mkdir()
    config = storage / "agent.yaml"
    local_metadata = f"http://127.0.0.1:{hybrid.metadata.port}/computeMetadata/v1"
    config.write_text(json.dumps({
        "storage_path": str(storage / "data"),
        "preemption": {"watch": "off"},
        "postgres": {
            "dsn": hybrid.cluster.tcp_dsn(hybrid.database, IAM_USER),
            "auth": "iam",
            "metadata_url": local_metadata,
            "write": "sync",
        },
    }))
    log = (storage / "agent.log").open("w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("spine-agent")), "run", "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    agent = HostAgent(storage / "data" / "spine-agent.sock")
    deadline = time.monotonic() + 120
    while True:
        try:
            if agent.request("GET", "/v1/health")[0] == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the host agent did not serve:\n{(storage / 'agent.log').read_text()}")
        time.sleep(0.2)
    try:
        yield agent
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def wait_until(condition: Any, what: str, timeout: float = VISIBLE_TIMEOUT) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)
    return time.monotonic() - started


def test_1_a_new_vm_is_provisioned_with_the_postgres_tier(hybrid: Hybrid) -> None:
    boot(hybrid.vm, "hybrid new VM, blank disk", fresh=True)
    run = run_playbook(hybrid.vm, "hybrid-1", "-e", f"@{hybrid.extra_vars}",
                       log_dir=hybrid.workdir)
    assert run.rc == 0, run.tail()
    # The operator's command line: on the PATH, no --config.
    status = json.loads(hybrid.sh("spine-agent status"))
    assert "postgres" in json.dumps(status), status
    config = hybrid.sh("cat /etc/super-spine/agent.yaml")
    assert "password" not in config and "verify-ca" in config
    assert hybrid.sh("test -s /etc/super-spine/postgres-ca.pem && echo yes") == "yes"
    hybrid.passed.add("1")


def test_2_the_vm_and_a_host_agent_share_records_both_ways(
    hybrid: Hybrid, host_agent: HostAgent
) -> None:
    hybrid.require("1")
    for i in range(RECORDS):
        collection = "agents" if i % 2 else "sessions"  # critical and session
        value = {"i": i, "from": "vm"}
        assert hybrid.vm_request("PUT", f"/v1/records/{collection}/vm-{i}", value)[0] == 200
        hybrid.written[(collection, f"vm-{i}")] = value

    def serves(get: Any, collection: str, key: str, value: Any) -> bool:
        status, text = get(collection, key)
        return bool(status == 200 and json.loads(text) == value)

    def host_get(collection: str, key: str) -> tuple[int, str]:
        status, body = host_agent.request("GET", f"/v1/records/{collection}/{key}")
        return status, body.decode()

    def vm_get(collection: str, key: str) -> tuple[int, str]:
        return hybrid.vm_request("GET", f"/v1/records/{collection}/{key}")

    def host_has_all() -> bool:
        return all(serves(host_get, c, k, v) for (c, k), v in hybrid.written.items())

    shipped = wait_until(host_has_all, "the host agent to serve the VM's writes")
    value = {"from": "host"}
    body = json.dumps(value).encode()
    assert host_agent.request("PUT", "/v1/records/agents/host-1", body)[0] == 200
    hybrid.written[("agents", "host-1")] = value
    seen = wait_until(lambda: serves(vm_get, "agents", "host-1", value),
                      "the VM's agent to serve the host's write")
    record_timing("hybrid: VM writes visible on the host", shipped)
    record_timing("hybrid: host write visible on the VM", seen)
    hybrid.passed.add("2")


def test_3_a_new_vm_on_a_blank_disk_serves_every_record_from_postgres(hybrid: Hybrid) -> None:
    hybrid.require("2")
    hybrid.vm.powerdown()  # SIGTERM: the agent ships what is left within its stop budget
    hybrid.vm.data_disk = make_blank_disk(hybrid.workdir / "pd-2.img", "1G")
    boot(hybrid.vm, "hybrid replacement VM, blank disk", fresh=True)
    assert hybrid.sh("ls /data/super-spine 2>/dev/null | wc -l", check=False) in ("", "0")
    run = run_playbook(hybrid.vm, "hybrid-replacement", "-e", f"@{hybrid.extra_vars}",
                       log_dir=hybrid.workdir)
    assert run.rc == 0, run.tail()
    missing = []
    for (collection, key), value in hybrid.written.items():
        status, text = hybrid.vm_request("GET", f"/v1/records/{collection}/{key}")
        if status != 200 or json.loads(text) != value:
            missing.append((collection, key, status))
    assert missing == [], missing
