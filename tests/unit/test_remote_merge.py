"""No VM's backup is ever overwritten by another VM's push on the same branch."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bootstrap.config import config_from_mapping
from bootstrap.storage import HybridStorage

from .conftest import FakeClock


def test_vm_started_without_remote_merges_the_old_backup_before_pushing(
    tmp_path: Path, clock: FakeClock
) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)

    def vm(name: str) -> HybridStorage:
        storage = HybridStorage(
            config_from_mapping(
                {
                    "storage_path": str(tmp_path / name),
                    "git": {"remote": f"file://{remote}", "branch": "backup/web-1"},
                }
            ),
            clock=clock,
        )
        storage.initialize()
        return storage

    first = vm("vm-a")
    first.put("agents", "from-a", {"vm": "a"})
    first.put("agents", "shared", {"vm": "a"})
    first.backup_git()
    assert first.status()["backup"]["last_push_error"] is None
    first.close(backup=False)

    hidden = tmp_path / "remote-away.git"
    remote.rename(hidden)  # the remote is unreachable while the replacement VM starts
    clock.advance(60)
    second = vm("vm-b")
    assert second.restored_from == "empty"
    second.put("agents", "from-b", {"vm": "b"})
    second.put("agents", "shared", {"vm": "b"})  # newer than a's copy
    second.backup_git()
    assert second.status()["backup"]["last_push_error"] is not None
    hidden.rename(remote)  # it is back

    assert second.push() is True
    assert second.get("agents", "from-a") == {"vm": "a"}  # merged in
    assert second.get("agents", "shared") == {"vm": "b"}  # newer record kept
    second.close(backup=True)

    third = vm("vm-c")
    assert third.restored_from == "git-remote"
    assert third.get("agents", "from-a") == {"vm": "a"}
    assert third.get("agents", "from-b") == {"vm": "b"}
    assert third.get("agents", "shared") == {"vm": "b"}
    third.close(backup=False)


def test_restart_of_the_same_vm_does_not_remerge(tmp_path: Path, clock: FakeClock) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    raw = {
        "storage_path": str(tmp_path / "s"),
        "git": {"remote": f"file://{remote}", "branch": "backup/h"},
    }
    storage = HybridStorage(config_from_mapping(raw), clock=clock)
    storage.initialize()
    storage.put("agents", "a", 1)
    storage.close(backup=True)
    storage = HybridStorage(config_from_mapping(raw), clock=clock)
    storage.initialize()
    storage.delete("agents", "a")
    storage.backup_git()
    assert storage.status()["backup"]["last_push_error"] is None
    assert storage.get("agents", "a") is None  # the remote's old copy did not come back
    storage.close(backup=False)
