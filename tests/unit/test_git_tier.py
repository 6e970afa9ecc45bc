from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bootstrap.tiers.files import render
from bootstrap.tiers.git import (
    SEGMENTS_BEFORE_SNAPSHOT,
    GitRecord,
    GitTier,
    GitUnavailable,
    RemoteMoved,
)

from .conftest import FakeClock


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def tier(tmp_path: Path, clock: FakeClock) -> GitTier:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    tier = GitTier(tmp_path / "local.git", "backup/test-host", f"file://{remote}", clock=clock)
    tier.open()
    return tier


def snapshot_file(tmp_path: Path, name: str, items: dict[str, bytes]) -> dict[str, Path]:
    path = tmp_path / name
    path.write_bytes(render(items.items()))
    return {name: path}


def test_a_backup_commits_only_the_changes(tier: GitTier, tmp_path: Path) -> None:
    tier.commit_snapshot(snapshot_file(tmp_path, "agents.json", {"a": b"1", "b": b"2"}), "h")
    tier.commit_changes([GitRecord("agents.json", "b", 1.0, b"3")], "h")
    changed = git(tier.path, "show", "--stat", "--format=", tier.branch)
    assert "changes/000000000001.jsonl" in changed and "snapshot" not in changed
    snapshot, changes = tier.read_tip()
    assert b'"a": 1' in snapshot["agents.json"]
    assert changes == [GitRecord("agents.json", "b", 1.0, b"3")]
    assert tier.commit_changes([], "h") is None


def test_repository_is_valid_for_git_itself(tier: GitTier, tmp_path: Path) -> None:
    tier.commit_snapshot(snapshot_file(tmp_path, "agents.json", {"a": b"1"}), "h")
    tier.commit_changes([GitRecord("agents.json", "a", 2.0, None)], "h")
    git(tier.path, "fsck", "--strict", "--no-dangling")
    assert git(tier.path, "log", "--format=%s", tier.branch).splitlines() == [
        "backup: 1 change(s)",
        "snapshot: 1 file(s), 11 bytes",
    ]


def test_segments_trigger_a_fresh_snapshot(tier: GitTier, tmp_path: Path) -> None:
    tier.commit_snapshot(snapshot_file(tmp_path, "agents.json", {}), "h")
    for i in range(SEGMENTS_BEFORE_SNAPSHOT):
        assert not tier.needs_snapshot()
        tier.commit_changes([GitRecord("agents.json", f"k{i}", 1.0, b"1")], "h")
    assert tier.needs_snapshot()


def test_push_then_restore_on_a_new_vm(tier: GitTier, tmp_path: Path, clock) -> None:
    tier.commit_snapshot(snapshot_file(tmp_path, "agents.json", {"a": b"1"}), "h")
    tier.commit_changes([GitRecord("agents.json", "b", 5.0, b'{"x":2}')], "h")
    tier.push(expected=None)
    fresh = GitTier(tmp_path / "new-vm.git", tier.branch, tier.remote, clock=clock)
    fresh.open()
    assert fresh.state.head is None
    assert fresh.fetch() is True
    assert fresh.read_tip() == tier.read_tip()
    other_branch = GitTier(tmp_path / "other.git", "backup/other", tier.remote, clock=clock)
    other_branch.open()
    assert other_branch.fetch() is False


def test_unreachable_remote_raises_one_clear_error(tmp_path: Path, clock) -> None:
    tier = GitTier(tmp_path / "l.git", "backup/x", f"file://{tmp_path}/missing.git", clock=clock)
    tier.open()
    tier.commit_snapshot(snapshot_file(tmp_path, "agents.json", {"a": b"1"}), "h")
    with pytest.raises(GitUnavailable, match="git push failed") as info:
        tier.push(expected=None)
    assert "\n" not in str(info.value)


def test_history_older_than_max_age_is_squashed(tier: GitTier, tmp_path, clock) -> None:
    tier.history_max_age = 7 * 86400
    tier.commit_snapshot(snapshot_file(tmp_path, "agents.json", {"a": b"1"}), "h")
    for day in range(10):
        clock.advance(86400)
        tier.commit_changes([GitRecord("agents.json", "a", clock(), str(day).encode())], "h")
    before = tier.read_tip()
    assert tier.commit_count() == 11
    removed = tier.squash_history()
    assert removed == 2  # the three commits older than 7 days became one root
    assert tier.commit_count() == 9
    assert tier.read_tip() == before  # the tree at the tip is unchanged
    git(tier.path, "fsck", "--strict")
    tier.push(expected=None)
    tier.squash_history()
    tier.commit_changes([GitRecord("agents.json", "a", clock(), b"99")], "h")
    tier.push(expected=tier.known_remote_tip())  # a rewritten branch still pushes under lease


def test_credentials_are_redacted_from_errors(tmp_path: Path, clock) -> None:
    from bootstrap.tiers.git import redact

    assert redact("fatal: https://user:tok3n@example.com/r.git not found") == (
        "fatal: https://example.com/r.git not found"
    )


def test_push_never_replaces_a_remote_tip_it_has_not_merged(tier: GitTier, tmp_path, clock):
    tier.commit_snapshot(snapshot_file(tmp_path, "agents.json", {"a": b"1"}), "h")
    tier.push(expected=None)
    other = GitTier(tmp_path / "other-vm.git", tier.branch, tier.remote, clock=clock)
    other.open()
    other.commit_snapshot(snapshot_file(tmp_path, "agents.json", {"b": b"2"}), "other")
    with pytest.raises(RemoteMoved):
        other.push(expected=None)  # it believes the branch is new: the lease refuses
    tip = other.remote_tip()
    assert tip == tier.state.head and not other.is_merged(tip)
    state = other.fetch_foreign()
    assert state is not None and b'"a"' in other.read_tip(state)[0]["agents.json"]
    assert other.state.head != tier.state.head  # fetched aside, not over its own branch


def test_backup_files_are_not_world_readable(tier: GitTier, tmp_path: Path) -> None:
    tier.commit_snapshot(snapshot_file(tmp_path, "agents.json", {"a": b"1"}), "h")
    tier.commit_changes([GitRecord("agents.json", "b", 1.0, b"2")], "h")
    exposed = [
        p for p in (tier.path / "objects").rglob("*") if p.is_file() and p.stat().st_mode & 0o007
    ]
    ref = tier.path / tier.ref
    assert exposed == [] and ref.stat().st_mode & 0o777 == 0o640


def test_opening_the_repository_tightens_old_files(tier: GitTier, tmp_path: Path, clock) -> None:
    tier.commit_snapshot(snapshot_file(tmp_path, "agents.json", {"a": b"1"}), "h")
    ref = tier.path / tier.ref
    ref.chmod(0o644)
    tier.close()
    again = GitTier(tier.path, tier.branch, tier.remote, clock=clock)
    again.open()
    assert ref.stat().st_mode & 0o777 == 0o640
    assert again.state.head == tier.state.head
