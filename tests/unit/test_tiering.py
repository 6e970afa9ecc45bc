"""Tiering and eviction rules, driven by an injectable clock on a real storage directory."""

from __future__ import annotations

import orjson
import pytest

from bootstrap.storage import BadRequest, HybridStorage

from .conftest import FakeClock

MB = 1_000_000


def resident(storage: HybridStorage, collection: str, key: str) -> bool:
    return storage.is_resident(collection, key)


def test_records_go_as_far_as_their_class(make_storage, tmp_path) -> None:
    storage = make_storage()
    storage.put("agents", "a", {"v": 1})
    storage.put("stats", "s", {"v": 2})
    storage.put("cache", "c", {"v": 3})
    storage.tier()
    storage.backup_git(push=False)
    root = tmp_path / "storage"
    assert orjson.loads((root / "agents.json").read_bytes()) == {"a": {"v": 1}}
    assert orjson.loads((root / "stats.json").read_bytes()) == {"s": {"v": 2}}
    assert not (root / "cache.json").exists()
    snapshot, _ = storage.tier_backend("git").read_tip()
    assert set(snapshot) >= {"agents.json"}
    assert b'"a"' in snapshot["agents.json"]
    assert not any(b'"s"' in blob for blob in snapshot.values())


def test_class_parameter_overrides_the_map(make_storage, tmp_path) -> None:
    storage = make_storage()
    storage.put("agents", "tmp", {"v": 1}, cls="session")
    storage.put("stats", "keep", {"v": 2}, cls="critical")
    storage.tier()
    storage.backup_git(push=False)
    root = tmp_path / "storage"
    assert orjson.loads((root / "agents.session.json").read_bytes()) == {"tmp": {"v": 1}}
    snapshot, _ = storage.tier_backend("git").read_tip()
    assert "stats.critical.json" in snapshot and b"tmp" not in b"".join(snapshot.values())
    with pytest.raises(BadRequest, match="unknown class"):
        storage.put("agents", "x", 1, cls="forever")


def test_idle_records_leave_memory_after_hot_age_but_stay_readable(make_storage, clock: FakeClock):
    storage = make_storage()
    storage.put("agents", "old", {"v": "old"})
    storage.put("stats", "old", {"v": "s"})
    storage.tier()  # written to warm files, still hot
    storage.backup_git(push=False)  # critical records stay resident until they reach git
    assert resident(storage, "agents", "old")
    clock.advance(301)
    storage.put("agents", "fresh", {"v": "new"})
    report = storage.tier()
    assert report.evicted == 2
    assert not resident(storage, "agents", "old") and not resident(storage, "stats", "old")
    assert resident(storage, "agents", "fresh")
    assert storage.get("agents", "old") == {"v": "old"}  # one pread from agents.json
    assert storage.get("stats", "old") == {"v": "s"}


def test_dirty_records_are_never_aged_out(make_storage, clock: FakeClock) -> None:
    storage = make_storage(tiering={"enabled": False})  # no git backup inside the pass
    storage.put("agents", "a", {"v": 1})
    storage.put("stats", "s", {"v": 2})
    clock.advance(10_000)
    report = storage.tier()  # the files take both; only git still lacks the critical record
    assert resident(storage, "agents", "a")  # dirty for git: kept, however idle
    assert not resident(storage, "stats", "s")  # clean and idle: aged out (the pass did age)
    assert report.evicted == 1


def test_cache_expires_after_hot_age(make_storage, clock: FakeClock) -> None:
    storage = make_storage()
    storage.put("cache", "c", 1)
    clock.advance(299)
    storage.tier()
    assert storage.get("cache", "c") == 1  # a read also refreshes its age
    clock.advance(301)
    report = storage.tier()
    assert report.expired_cache == 1 and storage.get("cache", "c") is None


def test_memory_limit_evicts_cache_first_then_least_recently_used(make_storage, clock):
    storage = make_storage(memory_limit="1MB")
    value = "x" * 10_000
    for i in range(40):
        storage.put("agents", f"a{i:02d}", value)
    storage.tier()  # everything clean in agents.json
    storage.backup_git(push=False)  # ... and in git
    clock.advance(1)
    storage.get("agents", "a00")  # a00 is now the most recently used critical record
    clock.advance(1)
    for i in range(40):
        storage.put("cache", f"c{i:02d}", value)
    # Crossing 1 MB: the cache goes first, and is enough for now.
    for i in range(20):
        storage.put("stats", f"s{i}", value)
    assert storage.get("cache", "c00") is None
    assert all(resident(storage, "agents", f"a{i:02d}") for i in range(40))
    # Crossing it again: now the least recently used clean agents go; a00 was read last.
    for i in range(20, 80):
        storage.put("stats", f"s{i}", value)
    assert storage.status()["tiers"]["memory"]["bytes"] <= 1 * MB
    assert resident(storage, "agents", "a00")
    assert not resident(storage, "agents", "a01")
    assert storage.get("agents", "a01") == value  # evicted means readable from disk
    assert storage.counters.evictions > 0


def test_dirty_data_over_the_limit_is_kept_and_reported(make_storage) -> None:
    storage = make_storage(memory_limit="1MB")
    value = "y" * 20_000
    for i in range(80):  # 1.6 MB of records no tier pass has written yet
        storage.put("stats", f"s{i}", value)
    assert all(storage.get("stats", f"s{i}") == value for i in range(80))
    status = storage.status()
    assert status["tiers"]["memory"]["over_limit"] is True
    assert status["dirty"]["unevictable_over_limit"] is True
    assert status["dirty"]["files"] == 80
    storage.tier()  # now clean on disk: the limit can be honoured
    status = storage.status()
    assert status["tiers"]["memory"]["over_limit"] is False
    assert all(storage.get("stats", f"s{i}") == value for i in range(80))


def test_critical_change_older_than_warm_age_triggers_git(make_storage, clock) -> None:
    storage = make_storage(tiering={"git_backup_interval": "10h", "warm_age": "30min"})
    storage.put("agents", "a", 1)
    storage.tier()
    assert storage.tier_backend("git").state.head is None
    clock.advance(1801)
    storage.tier()
    assert storage.tier_backend("git").state.head is not None


def test_git_interval_triggers_backup(make_storage, clock) -> None:
    storage = make_storage(tiering={"git_backup_interval": "30min", "warm_age": "30min"})
    storage.tier()
    clock.advance(1801)
    storage.put("agents", "a", 1)
    storage.tier()
    assert storage.status()["backup"]["last_commit_at"] is not None


def test_delete_reaches_files_and_git(make_storage, tmp_path) -> None:
    storage = make_storage()
    storage.put("agents", "a", 1)
    storage.put("agents", "b", 2)
    storage.tier()
    storage.backup_git(push=False)
    assert storage.delete("agents", "a") is True
    assert storage.delete("agents", "missing") is False
    storage.tier()
    storage.backup_git(push=False)
    assert orjson.loads((tmp_path / "storage" / "agents.json").read_bytes()) == {"b": 2}
    _, changes = storage.tier_backend("git").read_tip()
    assert [(c.key, c.value) for c in changes] == [("a", None)]


@pytest.mark.parametrize(
    ("collection", "key"),
    [
        ("", "k"),
        ("agents", ""),
        ("a" * 200, "k"),
        ("agents", "k" * 600),
        ("a/b", "k"),
        ("agents", "a/b"),
        ("agents", ".."),
        ("agents", "a\x00b"),
        ("..", "k"),
        ("-x", "k"),
    ],
)
def test_bad_names_are_refused_and_nothing_is_written(make_storage, collection, key) -> None:
    storage = make_storage()
    with pytest.raises(BadRequest):
        storage.put(collection, key, 1)
    assert storage.record_count() == 0 and storage.journal.seq == 0


def test_value_size_limit(make_storage) -> None:
    storage = make_storage(max_value_size="1KB")
    from bootstrap.storage import ValueTooLarge

    with pytest.raises(ValueTooLarge, match="max_value_size"):
        storage.put("agents", "big", "z" * 2000)
    assert storage.get("agents", "big") is None


def test_restart_prefers_warm_files_and_replays_the_journal(make_storage, tmp_path) -> None:
    storage = make_storage()
    storage.put("agents", "in-file", 1)
    storage.tier()
    storage.put("agents", "in-journal-only", 2)
    storage.abandon()  # like a crash: no flush, no tier; the process's lock goes with it
    again = make_storage()
    assert again.restored_from == "files"
    assert again.get("agents", "in-file") == 1
    assert again.get("agents", "in-journal-only") == 2


def test_older_git_backup_never_overwrites_newer_local_data(make_storage, clock) -> None:
    storage = make_storage()
    storage.put("agents", "a", "old")
    storage.backup_git(push=False)
    clock.advance(60)
    storage.put("agents", "a", "new")
    storage.close(backup=False)  # files hold "new"; git holds "old"
    again = make_storage()
    assert again.get("agents", "a") == "new"


def test_newer_git_backup_contributes_only_newer_records(make_storage, clock, tmp_path) -> None:
    """The disk came back from an old snapshot while git moved on: git's newer records win."""
    storage = make_storage()
    storage.put("agents", "a", "v1")
    storage.put("agents", "b", "v1")
    storage.close(backup=True)
    root = tmp_path / "storage"
    stale = {p.name: p.read_bytes() for p in root.glob("*.json")}
    stale_manifest = (root / ".warm-manifest.json").read_bytes()
    clock.advance(60)
    storage = make_storage()
    storage.put("agents", "b", "v2")
    storage.close(backup=True)
    for name, data in stale.items():
        (root / name).write_bytes(data)
    (root / ".warm-manifest.json").write_bytes(stale_manifest)
    again = make_storage()
    assert again.get("agents", "a") == "v1" and again.get("agents", "b") == "v2"


def test_one_agent_per_storage_path(make_storage) -> None:
    from bootstrap.storage import StorageError

    first = make_storage()
    with pytest.raises(StorageError, match="in use by another agent"):
        make_storage()
    first.close(backup=False)
    make_storage()  # the lock went with the first agent


def test_read_only_views_follow_the_storage_state(make_storage) -> None:
    storage = make_storage()
    assert storage.is_open
    assert not storage.is_resident("agents", "absent")
    assert not storage.is_resident("no-such-collection", "k")
    storage.put("agents", "a", 1)
    assert storage.is_resident("agents", "a")
    storage.close(backup=False)
    assert not storage.is_open
