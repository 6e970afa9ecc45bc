"""Record versions and conditional writes in the storage engine (issue 8, local semantics).

A version is the write clock in microseconds: strictly increasing, never handed out twice,
and kept as the mtime every tier persists. Conditional puts and deletes are decided under the
storage lock: a lost precondition writes nothing, not even a journal line.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bootstrap.config import config_from_mapping
from bootstrap.errors import PreconditionFailed
from bootstrap.storage import HybridStorage, StorageFull

from .conftest import FakeClock

Make = Callable[..., HybridStorage]


def test_a_version_is_the_write_time_in_microseconds(make_storage: Make, clock: FakeClock) -> None:
    storage = make_storage()
    clock.now = 1_700_000_123.456789
    _, version = storage.put_versioned("agents", "a", {"n": 1})
    assert version == 1_700_000_123_456_789
    assert storage.get_versioned("agents", "a") == ({"n": 1}, version)
    assert storage.current_version("agents", "a") == version


def test_versions_strictly_increase_when_the_clock_stalls_or_steps_back(
    make_storage: Make, clock: FakeClock
) -> None:
    storage = make_storage()
    versions = [storage.put_versioned("agents", "a", i)[1] for i in range(5)]  # clock stalled
    clock.advance(-3600)  # an NTP step back
    versions += [storage.put_versioned("agents", k, 0)[1] for k in ("a", "b", "c")]
    assert versions == sorted(set(versions)), versions
    assert all(b == a + 1 for a, b in itertools.pairwise(versions))


def test_a_delete_then_a_new_put_never_reuses_a_version(
    make_storage: Make, clock: FakeClock
) -> None:
    storage = make_storage()
    _, first = storage.put_versioned("agents", "a", 1)
    storage.delete("agents", "a")
    clock.advance(-10)
    _, again = storage.put_versioned("agents", "a", 2)
    assert again > first


def test_if_match_writes_only_at_the_expected_version(make_storage: Make) -> None:
    storage = make_storage()
    _, v1 = storage.put_versioned("agents", "a", "one")
    _, v2 = storage.put_versioned("agents", "a", "two", if_match=v1)
    assert v2 > v1 and storage.get("agents", "a") == "two"
    seq = storage.journal.seq
    with pytest.raises(PreconditionFailed) as failed:
        storage.put("agents", "a", "stale", if_match=v1)
    assert failed.value.current_version == v2
    assert "agents/a is at version" in str(failed.value)
    assert storage.get_versioned("agents", "a") == ("two", v2)
    assert storage.journal.seq == seq  # nothing journaled: a crash cannot bring it back


def test_if_match_on_an_absent_record_fails_with_no_current_version(make_storage: Make) -> None:
    storage = make_storage()
    with pytest.raises(PreconditionFailed) as failed:
        storage.put("agents", "ghost", 1, if_match=17)
    assert failed.value.current_version is None
    assert storage.get("agents", "ghost") is None


def test_if_absent_creates_only(make_storage: Make) -> None:
    storage = make_storage()
    _, v1 = storage.put_versioned("agents", "a", 1, if_absent=True)
    with pytest.raises(PreconditionFailed) as failed:
        storage.put("agents", "a", 2, if_absent=True)
    assert failed.value.current_version == v1
    assert storage.get("agents", "a") == 1
    storage.delete("agents", "a")
    storage.put("agents", "a", 3, if_absent=True)  # deleted: absent again
    assert storage.get("agents", "a") == 3


def test_if_match_and_if_absent_hold_for_every_class(make_storage: Make) -> None:
    storage = make_storage()
    for cls in ("critical", "session", "cache"):
        _, version = storage.put_versioned("tasks", cls, 0, cls, if_absent=True)
        with pytest.raises(PreconditionFailed):
            storage.put("tasks", cls, 1, cls, if_match=version + 1)
        storage.put("tasks", cls, 2, cls, if_match=version)
        assert storage.get("tasks", cls) == 2


def test_a_conditional_delete_removes_only_the_expected_version(make_storage: Make) -> None:
    storage = make_storage()
    _, v1 = storage.put_versioned("agents", "a", 1)
    _, v2 = storage.put_versioned("agents", "a", 2)
    with pytest.raises(PreconditionFailed) as failed:
        storage.delete("agents", "a", if_match=v1)
    assert failed.value.current_version == v2
    assert storage.get("agents", "a") == 2
    assert storage.delete("agents", "a", if_match=v2) is True
    assert storage.get("agents", "a") is None
    with pytest.raises(PreconditionFailed) as absent:
        storage.delete("agents", "a", if_match=v2)
    assert absent.value.current_version is None


def test_of_two_writers_holding_one_version_exactly_one_wins(make_storage: Make) -> None:
    """Real threads race on the same version; the lock lets exactly one through per round."""
    storage = make_storage()
    storage.put("agents", "counter", 0)
    wins: list[int] = []
    losses: list[int] = []

    def writer(n: int, start: threading.Barrier, version: int) -> None:
        start.wait()
        try:
            storage.put("agents", "counter", n, if_match=version)
            wins.append(n)
        except PreconditionFailed:
            losses.append(n)

    for _ in range(20):
        version = storage.current_version("agents", "counter")
        assert version is not None
        start = threading.Barrier(4)
        threads = [threading.Thread(target=writer, args=(n, start, version)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(wins) == 20 and len(losses) == 60


def test_versions_survive_a_crash_through_the_journal(make_storage: Make, clock: FakeClock) -> None:
    storage = make_storage()
    clock.advance(0.123457)
    versions = {k: storage.put_versioned("agents", k, {"k": k})[1] for k in ("a", "b")}
    storage.put("agents", "b", "again")
    versions["b"] = storage.current_version("agents", "b")
    storage.abandon()  # kill -9: only the journal holds them
    reopened = make_storage()
    assert {k: reopened.current_version("agents", k) for k in versions} == versions
    _, newer = reopened.put_versioned("agents", "c", 1)
    assert newer > max(v for v in versions.values() if v is not None)


def test_versions_survive_a_clean_restart_through_the_warm_files(
    make_storage: Make, clock: FakeClock
) -> None:
    """The pass writes each warm file's versions beside it; the journal is gone after close."""
    storage = make_storage()
    versions = {}
    for n, key in enumerate(("a", "b", "c")):
        clock.advance(1.5)
        versions[("agents", key)] = storage.put_versioned("agents", key, n)[1]
        versions[("stats", key)] = storage.put_versioned("stats", key, n)[1]  # session
    storage.close()  # files written, critical records committed: the journal is dropped
    clock.advance(60)
    reopened = make_storage()
    assert reopened.status()["restored_from"] == "files"
    assert reopened.journal.size_bytes() == 0  # nothing replayed: the versions came from files
    assert {k: reopened.current_version(*k) for k in versions} == versions


def test_a_warm_file_without_its_sidecar_loads_with_the_file_time_as_version(
    make_storage: Make, clock: FakeClock, tmp_path: Path
) -> None:
    """What an older agent left (no sidecar) or a hand edit: every record loads, and its
    version is newer than any the agent handed out before, so an old ETag gets a 412."""
    storage = make_storage()
    _, before = storage.put_versioned("agents", "a", 1)
    clock.advance(5)
    storage.close()
    sidecars = list((tmp_path / "storage").glob(".agents.json.*.versions"))
    assert len(sidecars) == 1
    sidecars[0].unlink()
    reopened = make_storage()
    assert reopened.get("agents", "a") == 1
    after = reopened.current_version("agents", "a")
    assert after is not None and after > before
    with pytest.raises(PreconditionFailed):
        reopened.put("agents", "a", 2, if_match=before)


def test_a_sidecar_of_other_content_is_ignored(
    make_storage: Make, clock: FakeClock, tmp_path: Path
) -> None:
    """A sidecar whose header names another content (a copy, a hand edit) must not lend its
    versions to the file's records."""
    storage = make_storage()
    _, first = storage.put_versioned("agents", "a", 1)
    storage.tier()
    root = tmp_path / "storage"
    (old_sidecar,) = root.glob(".agents.json.*.versions")
    old_bytes = old_sidecar.read_bytes()
    assert int.from_bytes(old_bytes[8:16], "little") == first
    clock.advance(1)
    storage.put("agents", "a", 2)
    storage.close()
    (current,) = root.glob(".agents.json.*.versions")  # the old content's sidecar is gone
    assert current != old_sidecar
    current.write_bytes(old_bytes)
    reopened = make_storage()
    assert reopened.get("agents", "a") == 2
    version = reopened.current_version("agents", "a")
    assert version is not None and version > first


def test_a_failed_rename_after_the_sidecar_keeps_every_version(
    make_storage: Make, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new sidecar is in place, the file's rename fails (disk full), the agent dies: the
    old file's records keep their versions from the old sidecar, the newer write its version
    from the journal."""
    storage = make_storage()
    versions = {k: storage.put_versioned("agents", k, k)[1] for k in ("a", "b")}
    storage.close()
    storage = make_storage()
    clock.advance(1)
    versions["a"] = storage.put_versioned("agents", "a", "again")[1]
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if str(dst).endswith("/agents.json"):
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(StorageFull):
        storage.tier()
    monkeypatch.setattr(os, "replace", real_replace)
    storage.abandon()
    reopened = make_storage()
    assert {k: reopened.current_version("agents", k) for k in versions} == versions
    assert reopened.get("agents", "a") == "again"


class TickingClock(FakeClock):
    """Moves a millisecond on every reading: a snapshot is then newer than the file pass
    before it, as it is on a real clock."""

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


def test_versions_survive_a_crash_right_after_a_git_snapshot(tmp_path: Path) -> None:
    """A snapshot newer than the warm files is applied over them at start: its records take
    their versions from the sidecar of the same content, not the snapshot's time."""
    clock = TickingClock()
    config = config_from_mapping({"storage_path": str(tmp_path / "storage")})

    def open_storage() -> HybridStorage:
        storage = HybridStorage(config, clock=clock)
        storage.initialize()
        return storage

    storage = open_storage()
    versions = {k: storage.put_versioned("agents", k, k)[1] for k in ("a", "b")}
    storage.backup_git(push=False)  # the first backup is a snapshot, after a file pass
    snapshot_at = storage.tier_backend("git").state.snapshot_at
    assert snapshot_at > (storage.tier_backend("files").written_at or 0)
    storage.abandon()
    reopened = open_storage()
    assert reopened.journal.size_bytes() == 0  # nothing replayed: files, then the snapshot
    assert {k: reopened.current_version("agents", k) for k in versions} == versions
    reopened.close(backup=False)
