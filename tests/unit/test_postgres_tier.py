"""The postgres tier's reads and writes, against a real PostgreSQL 15 (see tests/pgcluster.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import psycopg
import pytest

from bootstrap.tiers.pg_committer import GroupCommitter
from bootstrap.tiers.pg_config import parse_postgres_config
from bootstrap.tiers.pg_sql import Statements, upsert
from bootstrap.tiers.postgres import (
    Change,
    PostgresTier,
    PreconditionFailed,
    TierUnavailable,
    ValueTooLarge,
)
from tests.conftest import PgDatabase

TierFactory = Callable[..., PostgresTier]


@pytest.fixture
def make_tier(pg_db: PgDatabase, tmp_path: Path) -> Iterator[TierFactory]:
    opened: list[PostgresTier] = []

    def factory(host: str = "a", **kwargs: object) -> PostgresTier:
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in ("write", "schema")}
        config = parse_postgres_config(pg_db.section(**overrides), tmp_path)
        tier = PostgresTier(config, host=host, **kwargs)  # type: ignore[arg-type]
        tier.open()
        opened.append(tier)
        return tier

    yield factory
    for tier in opened:
        tier.close()


def put(key: str, value: bytes | None, mtime: float, host: str = "") -> Change:
    return Change("agents", key, value, "critical", mtime, host=host)


def stored(tier: PostgresTier) -> dict[str, Change]:
    return {c.key: c for c in tier.read(None)}


def v(seconds: float) -> int:
    """The version an agent's write clock gives a change at that time (µs)."""
    return round(seconds * 1_000_000)


def test_values_read_back_byte_for_byte(make_tier: TierFactory) -> None:
    tier = make_tier()
    odd = b'{"b": 1,   "a": [2, 1], "a": 3, "s": "\\u00e9\xc3\xa9 \\u0000"}'
    assert tier.write([put("k", odd, 1.0), put("n", b"12.50", 1.0)]) == [v(1), v(1)]
    rows = stored(tier)
    assert rows["k"].value == odd  # json, not jsonb: order, spaces, duplicates kept
    assert rows["n"].value == b"12.50"
    assert (rows["k"].version, rows["k"].host, rows["k"].cls) == (v(1), "a", "critical")
    assert rows["k"].mtime == 1.0, "the mtime is the version's seconds"


def test_a_change_keeps_its_own_version_when_it_is_the_newest(make_tier: TierFactory) -> None:
    tier = make_tier()
    assert tier.write([put("k", b"1", 1.0)]) == [v(1)]
    assert tier.write([put("k", b"2", 2.0)]) == [v(2)]
    assert tier.write([put("k", None, 3.0)]) == [v(3)]
    assert tier.write([put("k", b"4", 4.0)]) == [v(4)]
    assert stored(tier)["k"].value == b"4"


def test_a_forced_write_takes_greatest_of_its_version_and_the_stored_plus_one(
    make_tier: TierFactory,
) -> None:
    """Sync mode: the acknowledged write is applied even when its agent's clock is behind,
    and gets a version above the stored one, which every agent then serves as its ETag."""
    tier = make_tier()
    tier.write([put("k", b'"from-b"', 5.0, host="b")])  # another agent, clock ahead
    assert tier.write_forced([put("k", b'"from-a"', 4.0)]) == [v(5) + 1]
    row = stored(tier)["k"]
    assert (row.value, row.version, row.mtime) == (b'"from-a"', v(5) + 1, (v(5) + 1) / 1e6)
    assert tier.write_forced([put("k", b'"later"', 9.0)]) == [v(9)], "ahead: its own version"


def test_a_forced_write_replayed_after_a_lost_reply_is_a_no_op(make_tier: TierFactory) -> None:
    tier = make_tier()
    tier.write([put("k", b"1", 5.0, host="b")])
    change = put("k", b"2", 4.0)
    first = tier.write_forced([change])
    assert tier.write_forced([change]) == first == [v(5) + 1]
    assert stored(tier)["k"].version == v(5) + 1


def test_newest_version_wins_and_an_older_change_gets_the_stored_version(
    make_tier: TierFactory,
) -> None:
    tier = make_tier()
    tier.write([put("k", b'"new"', 5.0)])
    assert tier.write([put("k", b'"old"', 4.0)]) == [v(5)]
    assert stored(tier)["k"].value == b'"new"'


def test_replaying_a_batch_is_a_no_op(make_tier: TierFactory) -> None:
    tier = make_tier()
    batch = [put(f"k{i}", f"{i}".encode(), 10.0 + i) for i in range(50)]
    first = tier.write(batch)
    assert tier.write(batch) == first == [v(10.0 + i) for i in range(50)]
    assert {c.key: c.version for c in stored(tier).values()} == {
        f"k{i}": v(10.0 + i) for i in range(50)
    }


def test_a_delete_never_comes_back_from_an_older_copy(make_tier: TierFactory) -> None:
    tier = make_tier()
    tier.write([put("k", b"1", 1.0)])
    tier.write([put("k", None, 3.0)])
    tier.write([put("k", b"1", 2.0)])  # e.g. another agent's stale warm file
    row = stored(tier)["k"]
    assert (row.value, row.version) == (None, v(3))
    # and a delete of a key never seen still blocks older copies of it
    tier.write([put("ghost", None, 9.0), put("ghost", b"1", 8.0)])
    assert stored(tier)["ghost"].value is None


def test_equal_versions_resolve_the_same_way_in_any_order(make_tier: TierFactory) -> None:
    tier = make_tier()
    a, b = put("x", b'"from-a"', 7.0, host="a"), put("x", b'"from-b"', 7.0, host="b")
    tier.write([a])
    tier.write([b])
    tier.write([Change("agents", "y", b'"from-b"', "critical", 7.0, host="b")])
    tier.write([Change("agents", "y", b'"from-a"', "critical", 7.0, host="a")])
    rows = stored(tier)
    assert rows["x"].value == rows["y"].value == b'"from-b"'  # the greater host wins
    # the winner over an equal version takes stored + 1, so agents holding the loser take it
    assert (rows["x"].version, rows["y"].version) == (v(7) + 1, v(7))


def test_duplicate_keys_in_one_batch_keep_the_newest(make_tier: TierFactory) -> None:
    tier = make_tier()
    assert tier.write([put("k", b"2", 2.0), put("k", b"1", 1.0)]) == [v(2), v(2)]
    assert stored(tier)["k"].value == b"2"


def test_value_over_the_limit_is_refused_and_its_batch_not_written(
    make_tier: TierFactory,
) -> None:
    tier = make_tier(max_value_size=100)
    with pytest.raises(ValueTooLarge, match=r"^postgres: agents/big: value is 101 bytes"):
        tier.write([put("fine", b"1", 1.0), put("big", b"1" * 101, 1.0)])
    assert stored(tier) == {}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (Change("bad/name", "k", b"1", "critical", 1.0), "collection 'bad/name'"),
        (Change("agents", "", b"1", "critical", 1.0), "key must be a non-empty"),
        (Change("agents", "k", b"1", "gold", 1.0), "unknown class 'gold'"),
        (Change("agents", "k", b"1", "critical", float("nan")), "mtime nan"),
        (Change("agents", "k", b"{not json", "critical", 1.0), "refused a value"),
    ],
)
def test_bad_changes_are_one_line_errors(
    make_tier: TierFactory, change: Change, expected: str
) -> None:
    tier = make_tier()
    with pytest.raises(ValueError) as caught:
        tier.write([change])
    assert expected in str(caught.value) and "\n" not in str(caught.value)
    assert stored(tier) == {}


def test_if_match_succeeds_only_against_the_stored_version(make_tier: TierFactory) -> None:
    tier = make_tier()
    tier.write([put("k", b"1", 1.0)])
    assert tier.write_conditional(put("k", b"2", 2.0), if_match=v(1)) == v(2)
    with pytest.raises(PreconditionFailed) as caught:
        tier.write_conditional(put("k", b"3", 3.0), if_match=v(1))
    assert caught.value.current_version == v(2)
    assert str(caught.value) == f"precondition failed: agents/k is at version {v(2)}"
    current = caught.value.current
    assert current is not None and (current.value, current.version) == (b"2", v(2))
    assert stored(tier)["k"].value == b"2"


def test_if_match_with_a_clock_behind_still_moves_the_version_up(make_tier: TierFactory) -> None:
    tier = make_tier()
    tier.write([put("k", b"1", 5.0, host="b")])
    assert tier.write_conditional(put("k", b"2", 1.0), if_match=v(5)) == v(5) + 1


def test_if_match_delete_and_tombstones_count_as_absent(make_tier: TierFactory) -> None:
    tier = make_tier()
    tier.write([put("k", b"1", 1.0)])
    assert tier.write_conditional(put("k", None, 2.0), if_match=v(1)) == v(2)
    with pytest.raises(PreconditionFailed) as caught:
        tier.write_conditional(put("k", b"3", 3.0), if_match=v(2))  # the tombstone's version
    assert caught.value.current_version is None
    tombstone = caught.value.current
    assert tombstone is not None and (tombstone.value, tombstone.version) == (None, v(2))
    # created again over its tombstone: never a version it had before
    assert tier.write_conditional(put("k", b"4", 1.5), if_absent=True) == v(2) + 1
    assert stored(tier)["k"].value == b"4"


def test_if_absent_creates_only(make_tier: TierFactory) -> None:
    tier = make_tier()
    assert tier.write_conditional(put("k", b"1", 1.0), if_absent=True) == v(1)
    with pytest.raises(PreconditionFailed) as caught:
        tier.write_conditional(put("k", b"2", 2.0), if_absent=True)
    assert caught.value.current_version == v(1)
    with pytest.raises(PreconditionFailed) as missing:
        tier.write_conditional(put("missing", b"2", 2.0), if_match=1)
    assert (missing.value.current_version, missing.value.current) == (None, None)


def test_conditional_argument_errors(make_tier: TierFactory) -> None:
    tier = make_tier()
    with pytest.raises(ValueError, match="not both"):
        tier.write_conditional(put("k", b"1", 1.0), if_match=1, if_absent=True)
    with pytest.raises(ValueError, match="if_absent cannot delete"):
        tier.write_conditional(put("k", None, 1.0), if_absent=True)


def test_if_match_increments_from_many_threads_lose_nothing(make_tier: TierFactory) -> None:
    """Three agents (tiers) x 2 threads, each incrementing one counter with retry loops."""
    tiers = [make_tier(host=h) for h in ("a", "b", "c")]
    tiers[0].write_conditional(put("counter", b"0", 0.0), if_absent=True)
    per_thread = 10

    def increment(tier: PostgresTier) -> None:
        for _ in range(per_thread):
            while True:
                row = next(c for c in tier.read(None) if c.key == "counter")
                value = int(row.value or b"0") + 1
                try:
                    tier.write_conditional(
                        put("counter", str(value).encode(), 1.0), if_match=row.version
                    )
                    break
                except PreconditionFailed:
                    continue

    threads = [threading.Thread(target=increment, args=(t,)) for t in tiers for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    final = stored(tiers[0])["counter"]
    assert final.value == str(6 * per_thread).encode()
    # the first write takes its own version, every later one (its clock behind) stored + 1
    assert final.version == v(1) + 6 * per_thread - 1


def test_group_commit_puts_one_key_at_most_once_in_a_round() -> None:
    """Two writes of one key in one statement would share a version: the second waits."""
    batches: list[list[str]] = []

    def write_batch(changes: Sequence[Change]) -> list[int]:
        batches.append([c.key for c in changes])
        time.sleep(0.002)  # a round trip, so the queue fills meanwhile
        return list(range(1, len(changes) + 1))

    committer = GroupCommitter(write_batch)

    def writer(n: int) -> None:
        for i in range(20):
            committer.submit(put("hot" if i % 2 else f"k{n}-{i}", b"1", 1.0))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    committer.close()
    assert sum(len(b) for b in batches) == 160
    assert all(len(b) == len(set(b)) for b in batches)
    assert max(len(b) for b in batches) > 1


def test_group_commit_under_failing_rounds_leaves_no_writer_behind() -> None:
    """Real seconds of 8 writers against rounds that fail at random (the server going away
    mid-load): every submit returns its own version or raises its round's error, the lead
    always passes on, and no writer is left waiting."""
    stop = time.monotonic() + 2.0
    committed: dict[str, int] = {}
    rounds = iter(range(10**9))
    counter = threading.Lock()

    def write_batch(changes: Sequence[Change]) -> list[int]:
        with counter:
            n = next(rounds)
        time.sleep(0.0005)
        if n % 5 == 3:
            raise TierUnavailable(f"round {n} lost")
        with counter:
            versions = []
            for change in changes:
                committed[change.key] = committed.get(change.key, 0) + 1
                versions.append(committed[change.key])
        return versions

    committer = GroupCommitter(write_batch)
    outcomes: list[tuple[str, int | None]] = []

    def writer(n: int) -> None:
        i = 0
        while time.monotonic() < stop:
            key = f"k{n}" if i % 3 else "shared"
            try:
                outcomes.append((key, committer.submit(put(key, b"1", 1.0))))
            except TierUnavailable:
                outcomes.append((key, None))
            i += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert committer.status()["queued"] == 0
    acked = [(key, version) for key, version in outcomes if version is not None]
    failed = len(outcomes) - len(acked)
    assert acked and failed  # both kinds of round happened
    for key in committed:  # every acknowledged version of a key is its own
        versions = [version for k, version in acked if k == key]
        assert sorted(versions) == list(range(1, committed[key] + 1))


def test_a_bad_value_in_a_group_fails_only_its_own_writer(make_tier: TierFactory) -> None:
    tier = make_tier(write="sync")
    barrier = threading.Barrier(6)
    outcomes: dict[str, object] = {}

    def writer(key: str, value: bytes) -> None:
        barrier.wait()
        try:
            outcomes[key] = tier.submit(put(key, value, 1.0))
        except ValueError as exc:
            outcomes[key] = exc

    threads = [threading.Thread(target=writer, args=(f"k{n}", b"1")) for n in range(5)]
    threads.append(threading.Thread(target=writer, args=("bad", b"{nope")))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert isinstance(outcomes.pop("bad"), ValueError)
    assert outcomes == {f"k{n}": v(1) for n in range(5)}
    assert sorted(stored(tier)) == [f"k{n}" for n in range(5)]


def test_group_commit_batches_concurrent_writers(make_tier: TierFactory) -> None:
    tier = make_tier(write="sync")
    barrier = threading.Barrier(8)

    def writer(n: int) -> None:
        barrier.wait()
        for i in range(40):
            tier.submit(put(f"k{n}-{i}", b"1", 1.0))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    committer = tier.status()["committer"]
    assert committer["changes"] == 320 == len(stored(tier))
    assert committer["batches"] < 320 and committer["largest_batch"] > 1


def test_cursor_never_skips_a_transaction_that_commits_late(
    make_tier: TierFactory, pg_db: PgDatabase
) -> None:
    """T1 writes and stays open; T2 writes and commits; a read sees T2 only; T1 commits; a
    read from the first read's mark MUST see T1 although T1's xid is below T2's."""
    tier = make_tier(host="reader")
    start = tier.read(None)
    assert list(start) == []
    slow = psycopg.connect(**tier.config.connect_kwargs())  # not autocommit: stays open
    try:
        upsert(slow, Statements("spine"), [put("t1", b"1", 1.0)], "slow")
        t1_xid = int(slow.execute("SELECT pg_current_xact_id()::text").fetchone()[0])
        tier.write([put("t2", b"2", 1.0)])
        first = tier.read(start.mark)
        seen = [c.key for c in first]
        assert seen == ["t2"]
        newest_seen = max(  # what a "highest id seen" cursor would resume after
            int(r[0])
            for r in slow.execute("SELECT txid::text FROM spine.records WHERE key = 't2'")
        )
        assert t1_xid < newest_seen
        slow.commit()
    finally:
        slow.close()
    assert "t1" in [c.key for c in tier.read(first.mark)]


def test_cursor_reads_only_what_changed_since_the_mark(make_tier: TierFactory) -> None:
    tier = make_tier()
    tier.write([put(f"old{i}", b"1", 1.0) for i in range(20)])
    reader = tier.read(None)
    assert len(list(reader)) == 20
    tier.write([put("new", b"1", 2.0)])
    assert [c.key for c in tier.read(reader.mark)] == ["new"]


def test_bulk_read_streams_every_record(make_tier: TierFactory) -> None:
    tier = make_tier()
    batch = [
        Change("sessions", f"s{i}", f'{{"n":{i}}}'.encode(), "session", float(i))
        for i in range(5000)
    ]
    tier.write(batch)
    got = {c.key: c.value for c in tier.read(None)}
    assert got == {c.key: c.value for c in batch}


def test_status_has_no_secret(make_tier: TierFactory, pg_db: PgDatabase) -> None:
    tier = make_tier(write="sync")
    tier.write([put("k", b"1", 1.0)])
    status = tier.status()
    password = pg_db.password_file.read_text().strip()
    assert password not in repr(status)
    assert status["open"] and status["write"] == "sync" and status["schema"] == "spine"
    assert "password" not in status["dsn"]
