"""Tests of the lab harness itself: they really boot the VM (the cached image after the first)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab import LabError, LabGitRemote, LabVM, grow_disk, make_blank_disk, parse_size
from tests.lab.vm import BOOT_ATTEMPTS, DISK_NAME

pytestmark = pytest.mark.lab

DISK_LINK = f"/dev/disk/by-id/google-{DISK_NAME}"
MOUNT = "mkdir -p /mnt/pd && mount " + DISK_LINK + " /mnt/pd"


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lab")


@pytest.fixture(scope="module")
def vm(lab_dir: Path) -> Iterator[LabVM]:
    """One VM for the module (booting costs ~25 s under TCG); tests run in file order."""
    machine = LabVM(lab_dir / "vm", data_disk=lab_dir / "pd.img", data_disk_size="1G")
    machine.boot()
    try:
        yield machine
    finally:
        machine.powerdown()
        assert not machine.running


@pytest.fixture(scope="module")
def remote(lab_dir: Path) -> Iterator[LabGitRemote]:
    with LabGitRemote(lab_dir / "git") as served:
        yield served
    assert served.proc is None


def test_the_data_disk_has_its_gce_name(vm: LabVM) -> None:
    out = vm.ssh(f"readlink -f {DISK_LINK}; lsblk -dno VENDOR,MODEL {DISK_LINK}").stdout.split()
    assert out[0].startswith("/dev/sd")
    assert out[1:] == ["Google", "PersistentDisk"]
    assert vm.ssh(f"test -b {DISK_LINK}").returncode == 0


def test_the_guest_is_the_recipe(vm: LabVM) -> None:
    out = vm.ssh("hostname; findmnt -no SOURCE,FSTYPE /; systemctl is-system-running || true; "
                 "python3 -c 'import venv, apt; print(\"py-ok\")'").stdout.split()
    assert out[0] == "super-spine-lab"
    assert out[1:3] == ["/dev/vda", "ext4"]
    assert out[3] in {"running", "degraded", "starting"}
    assert out[4] == "py-ok"


def test_a_file_on_the_data_disk_survives_a_new_vm(vm: LabVM) -> None:
    vm.ssh(f"mkfs.ext4 -q -L lab-pd {DISK_LINK} && {MOUNT} && "
           "echo kept > /mnt/pd/marker && touch /root/on-the-old-root && umount /mnt/pd")
    old_id = vm.ssh("cat /etc/machine-id").stdout.strip()
    assert vm.powerdown() < 30
    assert not vm.running
    vm.boot(fresh=True)
    assert vm.ssh(f"{MOUNT} && cat /mnt/pd/marker && umount /mnt/pd").stdout.strip() == "kept"
    assert vm.ssh("test -e /root/on-the-old-root", check=False).returncode == 1
    assert vm.ssh("cat /etc/machine-id").stdout.strip() != old_id


def test_reboot_keeps_the_vm_and_shows_a_grown_disk(vm: LabVM, lab_dir: Path) -> None:
    vm.ssh("touch /root/same-vm")
    grow_disk(lab_dir / "pd.img", "1536M")
    vm.reboot()
    assert vm.ssh("test -e /root/same-vm").returncode == 0
    size = int(vm.ssh(f"blockdev --getsize64 {DISK_LINK}").stdout)
    assert size == parse_size("1536M")


def test_the_git_remote_is_reachable_from_the_guest(vm: LabVM, remote: LabGitRemote) -> None:
    assert remote.url.startswith("git://10.0.2.2:")
    vm.ssh(f"set -e; rm -rf /tmp/r; git init -q /tmp/r; cd /tmp/r; "
           "git -c user.name=lab -c user.email=lab@lab commit -q --allow-empty -m hello; "
           f"git push -q {remote.url} HEAD:refs/heads/backup/lab")
    out = vm.ssh(f"git ls-remote {remote.url}").stdout
    assert "refs/heads/backup/lab" in out
    host = subprocess.run(["git", "--git-dir", str(remote.path), "log", "--format=%s",
                           "backup/lab"], capture_output=True, text=True, check=True)
    assert host.stdout.strip() == "hello"


def test_the_guest_cannot_download(vm: LabVM) -> None:
    """Whatever the roles need must be in the image: the guest resolves no names."""
    result = vm.ssh("getent hosts deb.debian.org", check=False)
    assert result.returncode != 0


def test_ssh_check_raises_a_lab_error(vm: LabVM) -> None:
    with pytest.raises(LabError, match=r"exit 3"):
        vm.ssh("exit 3")
    assert vm.ssh("exit 3", check=False).returncode == 3


def test_a_missing_data_disk_directory_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(LabError) as err:
        LabVM(tmp_path / "vm", data_disk=tmp_path / "nope" / "pd.img")
    assert err.value.message == f"data disk directory does not exist: {tmp_path / 'nope'}"
    assert "\n" not in str(err.value)


def test_a_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        machine = LabVM(tmp_path / "vm", data_disk=tmp_path / "pd.img", ssh_port=port)
        with pytest.raises(LabError) as err:
            machine.boot()
        assert str(err.value) == f"ssh port {port} on 127.0.0.1 is already in use"
        assert not machine.running
        with pytest.raises(LabError) as err2:
            LabGitRemote(tmp_path / "git", port=port).start()
        assert str(err2.value) == f"git daemon port {port} on 127.0.0.1 is already in use"


def test_disk_helpers_refuse_what_would_lose_data(tmp_path: Path) -> None:
    disk = make_blank_disk(tmp_path / "d.img", "64M")
    assert disk.stat().st_size == 64 * 1024**2
    assert disk.stat().st_blocks == 0  # sparse
    with pytest.raises(LabError, match="already exists"):
        make_blank_disk(disk, "64M")
    with pytest.raises(LabError, match="refusing to shrink"):
        grow_disk(disk, "32M")
    with pytest.raises(LabError, match="bad disk size"):
        parse_size("two gigs")


class _FrozenAtFirst(LabVM):
    """A VM whose first `frozen` launches hang like the one a CI run saw: the emulated CPU is
    stopped (HMP `stop`) right after QEMU starts, so the guest never prints or writes."""

    def __init__(self, *args: object, frozen: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.frozen = frozen
        self.launches = 0

    def _launch(self) -> None:
        super()._launch()
        self.launches += 1
        if self.launches <= self.frozen:
            deadline = time.monotonic() + 10
            while not self.monitor.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            self.monitor_command("stop")


def test_a_boot_that_hangs_is_reset_and_tried_again(tmp_path: Path) -> None:
    machine = _FrozenAtFirst(tmp_path / "vm", data_disk=tmp_path / "pd.img",
                             data_disk_size="64M", stall_timeout=10, frozen=1)
    try:
        machine.boot()
        assert machine.launches == 2
        assert machine.timings["boot_retries"] == 1
        assert (machine.workdir / "serial.stalled-1.log").exists()
        assert machine.ssh("hostname").stdout.strip() == "super-spine-lab"
    finally:
        machine.kill()


def test_a_boot_that_always_hangs_is_one_clear_error(tmp_path: Path) -> None:
    machine = _FrozenAtFirst(tmp_path / "vm", data_disk=tmp_path / "pd.img",
                             data_disk_size="64M", stall_timeout=5, frozen=BOOT_ATTEMPTS)
    with pytest.raises(LabError) as err:
        machine.boot()
    assert machine.launches == BOOT_ATTEMPTS
    assert not machine.running
    assert str(err.value).startswith(f"lab VM hung at boot {BOOT_ATTEMPTS} times in a row")
    assert "serial.stalled-3.log" in str(err.value)
