"""GitPython is known to leak `git cat-file` children in long-running programs. After many backup
cycles no git child process may be left alive: checked in-process over 1,000 cycles (commits,
snapshots, history squashes with gc, pushes) and in the real daemon over the API."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psutil
import pytest

from bootstrap.config import config_from_mapping
from bootstrap.storage import HybridStorage

from .conftest import AgentFactory, BareRemote

CYCLES = 1000
PUSH_EVERY = 20  # a push runs a few git processes (~0.2 s here): every 20th keeps the test short
CHECK_EVERY = 10


def git_children(pid: int) -> list[str]:
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if child.name().startswith("git") and child.status() != psutil.STATUS_ZOMBIE:
                found.append(" ".join(child.cmdline()) or child.name())
        except psutil.NoSuchProcess:
            continue
    return found


class FakeClock:
    """Time moves 30 s per cycle, so history older than git.history_max_age (60 s) exists
    and every snapshot also squashes history (reflog expire + gc)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.mark.slow
def test_no_git_child_left_after_1000_backup_cycles(workdir: Path, remote: BareRemote) -> None:
    clock = FakeClock()
    config = config_from_mapping(
        {
            "storage_path": str(workdir / "storage"),
            "git": {"remote": remote.url, "branch": "backup/leak", "history_max_age": "60s"},
        }
    )
    storage = HybridStorage(config, clock=clock)
    storage.initialize()
    me = psutil.Process().pid
    assert git_children(me) == []
    started = time.monotonic()
    commits = pushes = 0
    try:
        for cycle in range(1, CYCLES + 1):
            clock.now += 30
            storage.put("agents", f"k{cycle % 50}", {"cycle": cycle})
            if cycle % 7 == 0:
                storage.delete("agents", f"k{(cycle + 1) % 50}")
            push = cycle % PUSH_EVERY == 0
            result = storage.backup_git(push=push)
            assert result["commit"] is not None, f"cycle {cycle} committed nothing"
            commits += 1
            if push:
                assert storage.status()["backup"]["last_push_error"] is None, storage.status()[
                    "backup"
                ]["last_push_error"]
                pushes += 1
            if cycle % CHECK_EVERY == 0:
                assert git_children(me) == [], f"after cycle {cycle}"
            if cycle % 200 == 0:
                storage.tier()  # warm files and journal checkpoints in between
    finally:
        storage.close(backup=False)
    elapsed = time.monotonic() - started
    assert git_children(me) == []
    assert commits == CYCLES and pushes == CYCLES // PUSH_EVERY
    # History stayed bounded: squashes ran (the chain is far shorter than 1,000 commits).
    storage.tier_backend("git").open()
    try:
        assert storage.tier_backend("git").commit_count() < CYCLES // 4
    finally:
        storage.tier_backend("git").close()
    assert git_children(me) == []
    # The remote holds the last pushed state, readable by plain git.
    assert remote.branch_sha("backup/leak") is not None
    print(f"{CYCLES} backup cycles ({pushes} pushes) in {elapsed:.1f}s")


def test_daemon_has_no_git_child_after_backups_tiers_and_restore(
    agents: AgentFactory, remote: BareRemote
) -> None:
    agent = agents.new(git={"remote": remote.url, "branch": "backup/leak"}).start()
    client = agent.client()
    for cycle in range(30):
        assert client.put("agents", f"k{cycle % 5}", {"cycle": cycle}).status == 200
        reply = client.post("backup")
        assert reply.status == 200 and reply.json()["pushed"] is True, reply.body
        if cycle % 10 == 0:
            assert client.post("tier").status == 200
        assert git_children(agent.pid) == [], f"after cycle {cycle}"
    client.close()
    assert agent.stop() == 0

    # A new VM restores from the remote (fetch + blob reads) and is left with no git child.
    fresh = agents.new("fresh", git={"remote": remote.url, "branch": "backup/leak"}).start()
    client = fresh.client()
    assert client.status()["restored_from"] == "git-remote"
    assert client.get("agents", "k4").json() == {"cycle": 29}
    assert git_children(fresh.pid) == []
    client.close()
    assert fresh.stop() == 0
    subprocess.run(
        ["git", "--git-dir", str(remote.path), "fsck", "--no-progress"],
        check=True,
        capture_output=True,
        timeout=120,
    )
