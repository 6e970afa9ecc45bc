"""Regression tests for reads of evicted records while a pass rewrites their warm file.

A record that left memory is served by one pread of its line in its warm file. A pass that
rewrites that file moves the lines; the reads must never see the new file with the old byte
ranges (a 200 carrying another record's value), and a pass that fails half-way must not leave
ranges that point into the wrong layout.

The window is hit deterministically: `os.replace` is wrapped (the real one still runs) so that,
right after a warm file is renamed into place, a second thread reads every record. Its reads
either see a consistent state or wait for the pass; they are checked once the pass is over.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from bootstrap.storage import HybridStorage, StorageFull

from .conftest import FakeClock

HOT_AGE = 300


def value_for(key: str, size: int) -> dict[str, str]:
    """Each value names its own key, so a read that returns a neighbour's line is caught."""
    return {"key": key, "pad": "x" * size}


def evicted_collection(storage: HybridStorage, clock: FakeClock, keys: list[str]) -> None:
    """Put the records, write and back them up, then age them out of memory."""
    for key in keys:
        storage.put("agents", key, value_for(key, 10))
    storage.tier()
    storage.backup_git(push=False)
    clock.advance(HOT_AGE + 1)
    report = storage.tier()
    assert report.evicted == len(keys)


class ReadsDuringRename:
    """Wraps os.replace: after a warm data file is renamed, another thread reads records."""

    def __init__(self, storage: HybridStorage, keys: list[str], fail_on: str | None = None):
        self.storage = storage
        self.keys = keys
        self.fail_on = fail_on
        self.threads: list[threading.Thread] = []
        self.results: list[tuple[str, object]] = []
        self.renames: list[str] = []
        self.real_replace = os.replace

    def __call__(self, src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        name = Path(dst).name
        if self.fail_on is not None and name == self.fail_on:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        self.real_replace(src, dst)
        if name.endswith(".json") and not name.startswith("."):
            self.renames.append(name)
            thread = threading.Thread(target=self._read_all)
            thread.start()
            thread.join(0.3)  # a reader that waits for the pass is fine: checked at the end
            self.threads.append(thread)

    def _read_all(self) -> None:
        for key in self.keys:
            try:
                self.results.append((key, self.storage.get("agents", key)))
            except Exception as exc:  # a 500 is a failure too
                self.results.append((key, exc))

    def check(self) -> None:
        for thread in self.threads:
            thread.join(30)
        assert self.results, "no read ran inside the rename window"
        wrong = [(k, v) for k, v in self.results if not isinstance(v, dict) or v["key"] != k]
        assert wrong == []


@pytest.fixture
def patch_replace(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., ReadsDuringRename]]:
    def install(storage: HybridStorage, keys: list[str], **kw: str) -> ReadsDuringRename:
        hook = ReadsDuringRename(storage, keys, **kw)
        monkeypatch.setattr(os, "replace", hook)
        return hook

    yield install


def test_evicted_reads_never_see_the_new_layout_with_old_offsets(
    make_storage, clock: FakeClock, patch_replace
) -> None:
    storage = make_storage()
    keys = [f"k{i:03d}" for i in range(40)]
    evicted_collection(storage, clock, keys)
    # A new record that sorts first shifts every line of agents.json on the next rewrite.
    storage.put("agents", "a-first", value_for("a-first", 500))
    hook = patch_replace(storage, keys)
    storage.tier()
    assert "agents.json" in hook.renames
    hook.check()
    assert all(storage.get("agents", k) == value_for(k, 10) for k in keys)


def test_a_pass_that_fails_half_way_leaves_every_record_readable_and_right(
    make_storage, clock: FakeClock, patch_replace, tmp_path: Path
) -> None:
    storage = make_storage()
    keys = [f"k{i:03d}" for i in range(40)]
    evicted_collection(storage, clock, keys)
    storage.put("tasks", "t", {"key": "t"})  # tasks.json sorts after agents.json
    storage.put("agents", "a-first", value_for("a-first", 333))
    hook = patch_replace(storage, keys, fail_on="tasks.json")
    with pytest.raises(StorageFull):
        storage.tier()
    hook.check()
    assert all(storage.get("agents", k) == value_for(k, 10) for k in keys)
    # The disk has room again: the next pass succeeds and carries the right values to disk.
    hook.fail_on = None
    storage.tier()
    storage.close(backup=False)
    on_disk = orjson.loads((tmp_path / "storage" / "agents.json").read_bytes())
    assert {k: on_disk[k] for k in keys} == {k: value_for(k, 10) for k in keys}
    again = make_storage()
    assert all(again.get("agents", k) == value_for(k, 10) for k in keys)
    assert again.get("agents", "a-first") == value_for("a-first", 333)
    assert again.get("tasks", "t") == {"key": "t"}
