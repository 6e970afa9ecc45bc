"""The tier contract (bootstrap.tiers.Tier), held against every backend: files, git and
postgres (a real server, tests/pgcluster.py).

What every tier promises: open() reports the newest change held (None when empty); read(None)
yields every record, read(mark) at least what changed after the mark; write() takes a batch,
newest mtime wins, a replayed batch changes nothing, a delete removes; publish() within a
deadline; status() is plain JSON; what was published is there after a close and a reopen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bootstrap.records import Change
from bootstrap.tiers import TIERS, Tier
from bootstrap.tiers.files import FilesTier
from bootstrap.tiers.git import GitTier
from bootstrap.tiers.pg_config import parse_postgres_config
from bootstrap.tiers.postgres import PostgresTier

Opener = Callable[[], Tier]
BACKENDS = ["files", "git", "postgres"]


@pytest.fixture(params=BACKENDS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """A function that opens (again) one tier on the same storage: each call is a restart."""
    opened: list[Tier] = []
    name = request.param
    if name == "postgres":
        pg_db = request.getfixturevalue("pg_db")
        config = parse_postgres_config(pg_db.section(), tmp_path)

        def make() -> Tier:
            return PostgresTier(config, host="contract")

    elif name == "git":

        def make() -> Tier:
            return GitTier(tmp_path / "backup.git", "backup/contract")

    else:

        def make() -> Tier:
            return FilesTier(tmp_path / "files")

        (tmp_path / "files").mkdir()

    def open_tier() -> Tier:
        tier = make()
        tier.open()
        opened.append(tier)
        return tier

    yield open_tier
    for tier in opened:
        tier.close()


def records(changes: Iterable[Change]) -> dict[tuple[str, str], bytes]:
    """A read folded into what it says is stored: later changes win, deletes remove."""
    result: dict[tuple[str, str], bytes | None] = {}
    for change in changes:
        result[(change.collection, change.key)] = change.value
    return {ident: value for ident, value in result.items() if value is not None}


def put(key: str, n: int, mtime: float, collection: str = "agents") -> Change:
    return Change(collection, key, orjson.dumps({"n": n}), "critical", mtime)


def delete(key: str, mtime: float) -> Change:
    return Change("agents", key, None, "critical", mtime)


def publish(tier: Tier) -> None:
    tier.publish(time.monotonic() + 10)


def test_every_tier_in_the_table_has_a_backend_here() -> None:
    assert set(TIERS) <= set(BACKENDS)


def test_an_empty_tier_holds_nothing(opener: Opener) -> None:
    tier = opener()
    assert records(tier.read(None)) == {}


def test_a_batch_reads_back(opener: Opener) -> None:
    tier = opener()
    now = time.time()
    tier.write([put("a", 1, now), put("b", 2, now), put("c", 3, now, collection="tasks")])
    assert records(tier.read(None)) == {
        ("agents", "a"): b'{"n":1}',
        ("agents", "b"): b'{"n":2}',
        ("tasks", "c"): b'{"n":3}',
    }


def test_the_newest_change_of_a_key_wins(opener: Opener) -> None:
    tier = opener()
    now = time.time()
    tier.write([put("a", 2, now + 1), put("a", 1, now)])  # within one batch
    assert records(tier.read(None))[("agents", "a")] == b'{"n":2}'
    tier.write([put("a", 0, now - 5)])  # an older change in a later batch
    assert records(tier.read(None))[("agents", "a")] == b'{"n":2}'


def test_a_replayed_batch_changes_nothing(opener: Opener) -> None:
    tier = opener()
    now = time.time()
    batch = [put("a", 1, now), delete("b", now)]
    tier.write(batch)
    first = records(tier.read(None))
    tier.write(batch)
    assert records(tier.read(None)) == first == {("agents", "a"): b'{"n":1}'}


def test_a_delete_removes_and_an_older_put_does_not_bring_it_back(opener: Opener) -> None:
    tier = opener()
    now = time.time()
    tier.write([put("a", 1, now)])
    tier.write([delete("a", now + 1)])
    assert ("agents", "a") not in records(tier.read(None))
    tier.write([put("a", 9, now + 0.5)])
    assert ("agents", "a") not in records(tier.read(None))


def test_what_was_published_is_there_after_a_reopen(opener: Opener) -> None:
    tier = opener()
    assert tier.open() is None or records(tier.read(None)) == {}
    now = time.time()
    tier.write([put("a", 1, now), put("b", 2, now)])
    publish(tier)
    tier.close()
    again = opener()
    assert again.open() is not None, "a tier holding changes reports a mark"
    assert records(again.read(None)) == {("agents", "a"): b'{"n":1}', ("agents", "b"): b'{"n":2}'}


def test_a_read_from_a_mark_holds_what_changed_after_it(opener: Opener) -> None:
    tier = opener()
    now = time.time()
    tier.write([put("a", 1, now)])
    publish(tier)
    tier.close()
    tier = opener()
    mark = tier.open()
    assert mark is not None
    tier.write([put("b", 2, time.time() + 1)])
    assert records(tier.read(mark)).get(("agents", "b")) == b'{"n":2}'


def test_status_is_plain_json(opener: Opener) -> None:
    tier = opener()
    tier.write([put("a", 1, time.time())])
    status: dict[str, Any] = tier.status()
    assert orjson.loads(orjson.dumps(status)) == status
