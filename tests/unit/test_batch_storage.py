"""Bulk writes, transactions and TTLs in the storage engine (issue 11 §1), on a real directory
with an injected clock: a batch is one journal group (replayed all or none), a transaction's
failed condition changes nothing (not even the journal), an expired record is absent for every
read and condition at once and deleted from the tiers by the pass, and a TTL survives a crash
(journal) and a restart (the warm files' expiry table)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from bootstrap.batch import BatchOp, Check, Delete, Limits, Put, write_ops
from bootstrap.errors import BadRequest, TransactionFailed
from bootstrap.lifecycle import HybridVMStorage
from bootstrap.storage import HybridStorage

from .conftest import FakeClock

Make = Callable[..., HybridStorage]
LIMITS = Limits(1000, 1 << 20)


def ops(*items: Put | Delete | Check, transaction: bool = True) -> list[BatchOp]:
    return write_ops(list(items), LIMITS, transaction)


def journal_lines(storage: HybridStorage) -> list[dict[str, object]]:
    lines = []
    for path in sorted((storage.root / "journal").glob("journal-*.jsonl")):
        lines += [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return lines


def reopen(storage: HybridStorage, clock: FakeClock, crash: bool = False) -> HybridStorage:
    if crash:
        storage.abandon()
    else:
        storage.close(backup=False)
    again = HybridStorage(storage.config, clock=clock)
    again.initialize()
    return again


# -- bulk writes and transactions ---------------------------------------------------------
def test_a_bulk_write_is_one_journal_group(make_storage: Make) -> None:
    storage = make_storage()
    storage.put("agents", "before", 0)
    outcome = storage.write_batch(
        ops(Put("agents", "a", 1), Put("stats", "b", 2), Delete("agents", "before")),
        atomic=False,
    )
    assert [r.status for r in outcome.results] == [200, 200, 200]
    lines = journal_lines(storage)[1:]
    assert len(lines) == 3
    assert {line["g"] for line in lines} == {lines[-1]["s"]}
    assert storage.get("agents", "a") == 1 and storage.get("agents", "before") is None


def test_a_failed_transaction_writes_nothing_not_even_a_journal_line(
    make_storage: Make,
) -> None:
    storage = make_storage()
    version = storage.put_versioned("tasks", "t", "queued")[1]
    before = journal_lines(storage)
    with pytest.raises(TransactionFailed) as caught:
        storage.write_batch(
            ops(Put("agents", "a", 1), Put("tasks", "t", "claimed", if_match=version + 1)),
            atomic=True,
        )
    failed = caught.value
    assert (failed.index, failed.collection, failed.key) == (1, "tasks", "t")
    assert failed.current_version == version and failed.status == 412
    assert journal_lines(storage) == before
    assert storage.get("agents", "a") is None
    assert storage.get_versioned("tasks", "t") == ("queued", version)


def test_a_bulk_write_skips_only_the_operations_whose_condition_failed(
    make_storage: Make,
) -> None:
    storage = make_storage()
    outcome = storage.write_batch(
        ops(Put("agents", "a", 1, if_match=5), Put("agents", "b", 2), transaction=False),
        atomic=False,
    )
    assert [(r.status, r.current_version) for r in outcome.results] == [(412, None), (200, None)]
    assert storage.get("agents", "a") is None and storage.get("agents", "b") == 2


def test_versions_in_a_batch_strictly_increase_and_match_reads(make_storage: Make) -> None:
    storage = make_storage()
    outcome = storage.write_batch(ops(*(Put("agents", f"k{i}", i) for i in range(5))), True)
    versions = [r.version for r in outcome.results]
    assert versions == sorted(set(versions))  # type: ignore[type-var]
    assert [storage.current_version("agents", f"k{i}") for i in range(5)] == versions


def test_a_batch_torn_by_a_crash_replays_none_of_its_lines(
    make_storage: Make, clock: FakeClock
) -> None:
    storage = make_storage()
    storage.put("agents", "kept", "yes")
    storage.write_batch(ops(*(Put("agents", f"t{i}", i) for i in range(4))), atomic=True)
    storage.abandon()
    segment = max((storage.root / "journal").glob("journal-*.jsonl"))
    data = segment.read_bytes()
    cut = data.rstrip(b"\n").rfind(b"\n") + 1  # the group's last line is lost
    segment.write_bytes(data[:cut])
    again = HybridStorage(storage.config, clock=clock)
    again.initialize()
    assert again.get("agents", "kept") == "yes"
    assert [again.get("agents", f"t{i}") for i in range(4)] == [None] * 4
    assert list(segment.parent.glob("*.torn"))
    again.close(backup=False)


def test_a_whole_batch_survives_a_crash(make_storage: Make, clock: FakeClock) -> None:
    storage = make_storage()
    storage.write_batch(ops(*(Put("agents", f"t{i}", i) for i in range(4))), atomic=True)
    again = reopen(storage, clock, crash=True)
    assert [again.get("agents", f"t{i}") for i in range(4)] == [0, 1, 2, 3]
    again.close(backup=False)


def test_a_check_reports_the_version_it_checked(make_storage: Make) -> None:
    storage = make_storage()
    version = storage.put_versioned("tasks", "t", 1)[1]
    results = storage.write_batch(ops(Check("tasks", "t", if_match=version)), True).results
    assert results[0].status == 200 and results[0].version == version


def test_an_unknown_class_in_a_batch_is_refused_naming_the_operation(make_storage: Make) -> None:
    storage = make_storage()
    with pytest.raises(BadRequest, match=r"operations\[1\]: unknown class 'gold'"):
        storage.write_batch(ops(Put("stats", "a", 1), Put("stats", "b", 1, cls="gold")), True)
    assert storage.get("stats", "a") is None


# -- TTL ----------------------------------------------------------------------------------
def test_an_expired_record_is_absent_for_every_read_and_condition(
    make_storage: Make, clock: FakeClock
) -> None:
    storage = make_storage()
    storage.put("stats", "s", {"v": 1}, ttl=10)
    clock.advance(9.9)
    assert storage.get("stats", "s") == {"v": 1}
    clock.advance(0.2)
    assert storage.get("stats", "s") is None
    assert storage.get_versioned("stats", "s") is None
    assert storage.current_version("stats", "s") is None
    assert storage.list_records("stats")[0] == {}
    assert storage.get_many([("stats", "s")]) == [None]
    assert storage.delete("stats", "s") is False
    storage.put("stats", "s", "new", if_absent=True)
    assert storage.get("stats", "s") == "new"


def test_the_pass_deletes_expired_records_from_the_tiers(
    make_storage: Make, clock: FakeClock
) -> None:
    storage = make_storage()
    storage.put("stats", "gone", 1, ttl=5)
    storage.put("stats", "stays", 2)
    storage.put("cache", "c", 3, ttl=5)
    storage.tier()
    assert b'"gone"' in (storage.root / "stats.json").read_bytes()
    clock.advance(6)
    report = storage.tier()
    assert report.expired == 2
    assert b'"gone"' not in (storage.root / "stats.json").read_bytes()
    assert storage.record_count() == 1


def test_a_ttl_on_a_critical_record_is_refused(make_storage: Make) -> None:
    storage = make_storage()
    with pytest.raises(BadRequest, match="ttl is refused on critical records"):
        storage.put("agents", "a", 1, ttl=60)
    with pytest.raises(BadRequest, match="critical"):
        storage.put("stats", "a", 1, cls="critical", ttl=60)
    assert storage.record_count() == 0


def test_a_ttl_survives_a_crash_through_the_journal(make_storage: Make, clock: FakeClock) -> None:
    storage = make_storage()
    storage.put("stats", "s", 1, ttl=30)
    again = reopen(storage, clock, crash=True)
    assert again.get("stats", "s") == 1
    clock.advance(31)
    assert again.get("stats", "s") is None
    again.close(backup=False)


def test_a_ttl_survives_a_restart_through_the_warm_files(
    make_storage: Make, clock: FakeClock
) -> None:
    storage = make_storage()
    storage.put("stats", "s", 1, ttl=30)
    storage.put("stats", "forever", 2)
    storage.tier()  # the files hold both; the journal segment is dropped
    again = reopen(storage, clock)
    assert again.get("stats", "s") == 1
    clock.advance(31)
    assert again.get("stats", "s") is None and again.get("stats", "forever") == 2
    again.close(backup=False)


def test_a_record_written_again_without_a_ttl_keeps_living(
    make_storage: Make, clock: FakeClock
) -> None:
    storage = make_storage()
    storage.put("stats", "s", 1, ttl=5)
    storage.tier()
    storage.put("stats", "s", 2)
    storage.tier()
    again = reopen(storage, clock)
    clock.advance(10)
    assert again.get("stats", "s") == 2
    again.close(backup=False)


def test_old_stores_without_an_expiry_table_load_unchanged(
    make_storage: Make, clock: FakeClock
) -> None:
    storage = make_storage()
    storage.put("stats", "s", 1)
    storage.tier()
    storage.close(backup=False)
    assert not (storage.root / ".warm-expiries.json").exists()
    again = HybridStorage(storage.config, clock=clock)
    again.initialize()
    assert again.get("stats", "s") == 1
    again.close(backup=False)


# -- the library front door -----------------------------------------------------------------
def test_the_library_speaks_bulk_transactions_and_ttl(tmp_path: Path) -> None:
    storage = HybridVMStorage(storage_path=str(tmp_path / "s"), tiering_enabled=False)
    storage.initialize()
    version = storage.put("tasks", "t", {"state": "queued"})
    storage.put("stats", "short", 1, ttl=60)
    results = storage.transaction(
        [Put("tasks", "t", {"state": "claimed"}, if_match=version), Put("agents", "a", 1)]
    )
    assert [r.status for r in results] == [200, 200]
    with pytest.raises(TransactionFailed):
        storage.transaction([Put("tasks", "t", "x", if_match=version)])
    found = storage.get_many([("tasks", "t"), ("agents", "none"), ("stats", "short")])
    assert found[0] is not None and found[0][0] == {"state": "claimed"}
    assert found[1] is None and found[2] is not None
    assert [r.status for r in storage.bulk_write([Delete("agents", "a")])] == [200]
    with pytest.raises(BadRequest, match="ttl 0 must be from 1"):
        storage.put("stats", "x", 1, ttl=0)
    with pytest.raises(BadRequest, match="both name"):
        storage.bulk_write([Put("stats", "x", 1), Put("stats", "x", 2)])
    storage.shutdown()
