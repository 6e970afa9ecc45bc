"""Cases 6 and 7 of issue 4: the disk role never formats a disk that is not blank.

Each case prepares a raw disk image on the host, boots a new lab VM with it attached as the
persistent disk, runs site.yml and expects a clear refusal, then checks the disk's contents on
the host, byte for byte where it matters. These run before the lifecycle cases: a role that
would format a foreign disk is the worst bug this suite can find.
"""

from __future__ import annotations

import hashlib
import struct
import subprocess
from pathlib import Path

import pytest

from tests.ansible.conftest import run_playbook, running_vm
from tests.lab import LabVM, make_blank_disk

pytestmark = pytest.mark.lab

DISK_SIZE = "1G"
SECTOR = 512


def sha256(path: Path) -> str:
    """Digest of the whole image: 'intact' means not one byte changed."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_dos_partition_table(image: Path) -> None:
    """An MBR with one Linux partition and nothing else (what `sfdisk` writes for `type=83`).

    Written by hand so the test needs no partitioning tool on the host.
    """
    sectors = image.stat().st_size // SECTOR
    start = 2048
    entry = struct.pack("<B3sB3sII", 0x00, b"\x00\x02\x00", 0x83, b"\xfe\xff\xff", start,
                        sectors - start)
    mbr = bytearray(SECTOR)
    mbr[440:444] = struct.pack("<I", 0x5E1F5E1F)  # disk identifier
    mbr[446:462] = entry
    mbr[510:512] = b"\x55\xaa"
    with image.open("r+b") as handle:
        handle.write(mbr)


def refused(vm: LabVM, name: str, log_dir: Path) -> str:
    """Run site.yml, expect it to fail in the disk role with the refusal, return the output."""
    run = run_playbook(vm, name, log_dir=log_dir)
    assert run.rc != 0, f"the playbook accepted a non-blank disk:\n{run.tail()}"
    assert "Refusing to format" in run.output, run.tail()
    assert "Nothing was written to the device" in run.output
    assert "spine_disk_force" in run.output, "the message must name the way out"
    return run.output


def test_06_foreign_filesystem_is_refused_and_its_file_is_intact(lab_dir: Path) -> None:
    case = lab_dir / "case6"
    (case / "content").mkdir(parents=True)
    (case / "content" / "precious.txt").write_text("somebody else's data\n")
    disk = make_blank_disk(case / "foreign-ext2.img", DISK_SIZE)
    subprocess.run(
        ["mkfs.ext2", "-q", "-F", "-L", "not-ours", "-d", str(case / "content"), str(disk)],
        check=True,
    )
    before = sha256(disk)

    with running_vm(case / "vm", disk, "case 6 (foreign ext2 disk)") as vm:
        output = refused(vm, "case6-foreign-fs", case)
        assert "filesystem ext2 labelled 'not-ours'" in output
        assert vm.ssh("findmnt /data/super-spine", check=False).returncode != 0, "it was mounted"

    assert sha256(disk) == before, "the foreign disk was modified"
    listing = subprocess.run(["debugfs", "-R", "cat /precious.txt", str(disk)],
                             capture_output=True, text=True, check=True)
    assert listing.stdout == "somebody else's data\n"


def test_07_partition_table_only_is_refused(lab_dir: Path) -> None:
    case = lab_dir / "case7"
    case.mkdir()
    disk = make_blank_disk(case / "partitioned.img", DISK_SIZE)
    write_dos_partition_table(disk)
    probe = subprocess.run(["blkid", "-p", "-o", "export", str(disk)],
                           capture_output=True, text=True, check=False)
    assert "PTTYPE=dos" in probe.stdout, f"test setup: not a partition table: {probe.stdout}"
    before = sha256(disk)

    with running_vm(case / "vm", disk, "case 7 (partition table only)") as vm:
        output = refused(vm, "case7-partition-table", case)
        assert "partition table dos" in output

    assert sha256(disk) == before, "the partitioned disk was modified"
