"""Cases 1-5, 8 and 9 of issue 4: one persistent disk through a VM's life, in the order it lives.

Boots are the expensive part under TCG, so the cases share them and run in this order:
  1 fresh VM, blank disk: site.yml formats, mounts, starts the agent  (boot 1)
  2 the same playbook again: changed=0
  8 --check on the configured VM: no changes
  3 the testinfra host checks pass
  4 records written, VM rebooted (boot 2), records still there
  5 the VM replaced by GCE itself (a preemption with DELETE, a host failure, a MIG repair):
    new overlay, same disk (boot 3), given ONLY the rendered startup script through a stand-in
    metadata server (tests.lab.metadata, which also stands in for the bucket holding the
    bundle and for Secret Manager holding the git remote). Nobody runs ansible-playbook from
    this machine: the startup script runs site.yml from the bundle inside the VM. Records
    there, the disk not reformatted (same UUID, marker file intact), the health port answers.
  9 the disk image was grown (tests.lab.grow_disk, as `gcloud compute disks resize`) while
    the VM was down before case 5, so case 5's in-VM run is also case 9's re-run: the
    filesystem grew, online, in that run. This saves a whole playbook run (minutes under TCG)
    and is the way a resize usually meets the role: resize the disk, then replace the VM.
Each case asserts only what it claims; a case whose predecessor failed fails with that reason
instead of asserting on a VM in an unknown state.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from infra import bundle, scripts
from tests.ansible.conftest import (
    PlaybookRun,
    boot,
    record_timing,
    run_playbook,
    run_testinfra,
)
from tests.lab import LabGitRemote, LabVM, grow_disk, make_blank_disk, parse_size
from tests.lab.metadata import LabMetadata

pytestmark = pytest.mark.lab

DEVICE = "/dev/disk/by-id/google-super-spine-disk"
DISK_SIZE = "1G"
GROWN_SIZE = "2G"
MOUNT = "/data/super-spine"
SOCKET = f"{MOUNT}/spine-agent.sock"
MARKER = f"{MOUNT}/lost+found/e2e-marker"  # root-only directory the agent never looks into
RECORDS = {
    ("agents", "e2e-critical"): {"role": "planner", "n": 1},  # class critical (git backup)
    ("sessions", "e2e-session"): {"user": "ada", "n": 2},  # class session (warm files)
}


@dataclass
class Lifecycle:
    """The VM, its disk and what earlier cases established."""

    workdir: Path
    disk: Path
    vm: LabVM
    remote: LabGitRemote
    passed: set[str] = field(default_factory=set)
    uuid: str = ""
    marker: str = ""
    machine_id: str = ""
    size_before_grow: int = 0
    replacement_run: PlaybookRun | None = None

    def require(self, *cases: str) -> None:
        """Fail (not skip) when a case this one builds on did not pass."""
        missing = [case for case in cases if case not in self.passed]
        if missing:
            pytest.fail(f"needs case(s) {', '.join(missing)} to have passed first")

    def playbook(self, name: str, *extra: str) -> PlaybookRun:
        return run_playbook(self.vm, name, "-e", f"spine_git_remote={self.remote.url}", *extra,
                            log_dir=self.workdir)

    def sh(self, cmd: str) -> str:
        return self.vm.ssh(cmd).stdout.strip()


@pytest.fixture(scope="module")
def life(lab_dir: Path, git_remote: LabGitRemote) -> Iterator[Lifecycle]:
    workdir = lab_dir / "lifecycle"
    workdir.mkdir()
    disk = make_blank_disk(workdir / "pd.img", DISK_SIZE)
    vm = LabVM(workdir / "vm", data_disk=disk)
    try:
        yield Lifecycle(workdir, disk, vm, git_remote)
    finally:
        vm.powerdown()


def curl(life: Lifecycle, method: str, path: str, body: object | None = None) -> str:
    """One HTTP call to the agent over its unix socket, from inside the VM."""
    data = f" --data-binary {shlex.quote(json.dumps(body))}" if body is not None else ""
    return life.sh(
        f"curl -sS --fail-with-body --max-time 60 --unix-socket {SOCKET} -X {method}{data} "
        f"http://spine-agent{path}"
    )


def wait_for_agent(life: Lifecycle, timeout: float = 300) -> float:
    """Seconds until GET /v1/health answers (the agent starts slowly under emulation)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if life.vm.ssh(f"curl -sf --max-time 10 --unix-socket {SOCKET} http://x/v1/health",
                       check=False).returncode == 0:
            return time.monotonic() - start
        time.sleep(3)
    journal = life.vm.ssh("journalctl -u spine-agent --no-pager | tail -20", check=False).stdout
    pytest.fail(f"the agent did not answer within {timeout:.0f} s:\n{journal}")


def assert_records(life: Lifecycle) -> None:
    for (collection, key), value in RECORDS.items():
        got = json.loads(curl(life, "GET", f"/v1/records/{collection}/{key}"))
        assert got == value or got.get("value") == value, f"{collection}/{key}: {got}"


def fs_size(life: Lifecycle) -> int:
    return int(life.sh(f"findmnt -b -n -o SIZE --mountpoint {MOUNT}"))


def test_01_fresh_vm_blank_disk_is_formatted_mounted_and_agent_runs(life: Lifecycle) -> None:
    boot(life.vm, "fresh VM", fresh=True)
    assert life.sh(f"blkid -p -o value -s TYPE {DEVICE} || true") == "", "the disk is not blank"

    run = life.playbook("1-fresh")
    record_timing("playbook on a fresh VM", run.seconds)
    assert run.rc == 0, run.tail()
    assert run.task_changed("Format the blank data disk"), f"changed: {run.changed_tasks()}"

    assert life.sh(f"findmnt -n -o FSTYPE --mountpoint {MOUNT}") == "ext4"
    assert life.sh(f"blkid -p -o value -s LABEL {DEVICE}") == "super-spine"
    assert life.sh("systemctl is-active spine-agent.service") == "active"
    life.uuid = life.sh(f"blkid -p -o value -s UUID {DEVICE}")
    life.machine_id = life.sh("cat /etc/machine-id")
    life.marker = f"written after the first run, uuid {life.uuid}"
    # 0600 like everything else on the disk: the host checks refuse world-readable files there.
    life.sh(f"(umask 077; echo {shlex.quote(life.marker)} > {MARKER}) && sync")
    life.passed.add("1")


def test_02_second_run_changes_nothing(life: Lifecycle) -> None:
    life.require("1")
    run = life.playbook("2-idempotent")
    record_timing("idempotent re-run", run.seconds)
    assert run.rc == 0, run.tail()
    assert run.changed == 0, f"changed tasks: {run.changed_tasks()}"
    life.passed.add("2")


def test_08_check_mode_on_a_configured_vm_reports_no_changes(life: Lifecycle) -> None:
    life.require("1")
    run = life.playbook("8-check", "--check", "--diff")
    assert run.rc == 0, run.tail()
    assert run.changed == 0, f"check mode reports changes: {run.changed_tasks()}"
    life.passed.add("8")


def test_03_testinfra_host_checks_pass(life: Lifecycle) -> None:
    life.require("1")
    proc = run_testinfra(life.vm, "lifecycle", f"--spine-git-remote={life.remote.url}",
                         log_dir=life.workdir)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout
    life.passed.add("3")


def test_04_records_survive_a_reboot(life: Lifecycle) -> None:
    life.require("1")
    for (collection, key), value in RECORDS.items():
        curl(life, "PUT", f"/v1/records/{collection}/{key}", value)
    assert_records(life)

    start = time.monotonic()
    life.vm.reboot(timeout=120)
    record_timing("reboot to ssh", time.monotonic() - start)
    record_timing("agent answering after boot", wait_for_agent(life))
    assert life.sh(f"findmnt -n -o FSTYPE --mountpoint {MOUNT}") == "ext4", "fstab did not mount it"
    assert_records(life)
    life.passed.add("4")


def wait_for_startup_script(life: Lifecycle, timeout: float = 3000) -> float:
    """Seconds until the startup script reports success; fails on its FAILED line."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        journal = life.vm.ssh("journalctl -t super-spine-startup --no-pager -o cat",
                              check=False).stdout
        if "provisioned in" in journal or "FAILED" in journal:
            assert "FAILED" not in journal, journal[-3000:]
            return time.monotonic() - start
        time.sleep(15)
    pytest.fail(f"the startup script did not finish within {timeout:.0f} s")


def test_05_replaced_vm_provisions_itself_from_its_startup_script(
    life: Lifecycle, tmp_path: Path
) -> None:
    life.require("1", "4")
    life.size_before_grow = fs_size(life)
    life.vm.powerdown()
    grow_disk(life.disk, GROWN_SIZE)  # for case 9, see the module docstring
    built = bundle.build(tmp_path / "super-spine-bundle.tar")
    with LabMetadata(objects={built.object_name: built.path},
                     secret_values={"git-remote": life.remote.url}) as metadata:
        # What the Pulumi program puts in the instance template, with the stand-in's URLs.
        metadata.attributes.update(scripts.vm_metadata(
            startup=scripts.startup_script(metadata.metadata_url),
            bundle_url=metadata.object_url("lab-bucket", built.object_name),
            bundle_sha256=built.sha256,
            variables=scripts.role_vars(None),
            secret_urls={"spine_git_remote": metadata.secret_url("git-remote")},
        ))
        life.vm.metadata_url = metadata.metadata_url
        start = time.monotonic()
        boot(life.vm, "replacement VM (new overlay, same disk, startup script only)", fresh=True)
        assert life.sh("cat /etc/machine-id") != life.machine_id, "not a new VM"
        wait_for_startup_script(life)
        record_timing("self-healing: boot to agent serving, no ansible from here",
                      time.monotonic() - start + wait_for_agent(life))
        assert any(built.object_name in path for path in metadata.requests), metadata.requests
    life.vm.metadata_url = None

    log = life.sh("cat /var/log/super-spine-bootstrap.log")
    run = life.replacement_run = PlaybookRun(0, log, 0.0)
    assert not run.task_changed("Format the blank data disk"), "the disk was reformatted"
    assert life.sh(f"blkid -p -o value -s UUID {DEVICE}") == life.uuid
    assert life.sh(f"cat {MARKER}") == life.marker
    assert_records(life)
    config = life.sh("cat /etc/super-spine/agent.yaml")
    assert f'remote: "{life.remote.url}"' in config, "the secret git remote did not arrive"
    assert life.sh("ls /var/lib/super-spine-bootstrap") == "ansible\napplied\nbundle\nvars.json", (
        "the secret variables outlived the run"
    )
    assert life.sh("nc -w 10 127.0.0.1 8021 </dev/null") == "healthy"
    life.passed.add("5")


def test_09_grown_disk_grows_the_filesystem(life: Lifecycle) -> None:
    run = life.replacement_run
    if run is None:
        pytest.fail("needs case 5's playbook run (the re-run after the disk grew)")
    assert run.rc == 0, run.tail()
    assert life.sh(f"blockdev --getsize64 {DEVICE}") == str(parse_size(GROWN_SIZE))
    assert run.task_changed("Grow the mounted filesystem"), f"changed: {run.changed_tasks()}"
    after = fs_size(life)
    grown_by = parse_size(GROWN_SIZE) - parse_size(DISK_SIZE)
    assert after >= life.size_before_grow + grown_by * 0.95, (
        f"filesystem {life.size_before_grow} -> {after} bytes"
    )
    assert life.sh(f"cat {MARKER}") == life.marker
