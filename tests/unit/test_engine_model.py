"""The storage engine held to a plain dict, through every operation that can meet another.

Hypothesis drives a real HybridStorage on a real directory (real journal, warm files and git)
through puts of every class and class overrides, deletes, tiering passes, evictions (the clock
moves past hot_age), git backups, reads of evicted records while a pass renames their file, a
crash (the storage is abandoned without a flush, as `kill -9` leaves it, and reopened), a clean
restart, memory compaction after deletes, the journal checkpoint at start, conditional puts
and deletes (If-Match at the current or a stale version, If-None-Match: *), and injected I/O
errors: a full disk in journal appends (a short write), in warm-file writes and in renames.
After every step each record reads back as the model's acknowledged value with the version
acknowledged for it (through crashes and restarts too), and no acknowledged delete comes back.

Fault injection wraps the real `os` functions of the journal and warm-file modules (the call
still goes to the OS unless a fault is armed); nothing else is replaced.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import threading
import types
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import bootstrap.durable as durable_module
import bootstrap.journal as journal_module
import bootstrap.memory as memory_module
import bootstrap.storage as storage_module
import bootstrap.tiers.files as files_module
from bootstrap.config import config_from_mapping
from bootstrap.errors import PreconditionFailed
from bootstrap.records import PersistenceClass
from bootstrap.storage import HybridStorage, StorageFull

from .conftest import FakeClock

HOT_AGE = 300.0
COLLECTIONS = ["agents", "tasks", "stats", "cache"]  # critical, critical, session, cache
KEYS = [f"k{i}" for i in range(6)]
OVERRIDES = [None, None, None, "critical", "session", "cache"]


class Faults:
    """Armed faults, consumed one per matching call. The wrapped modules see `os` through a
    proxy that forwards everything to the real module."""

    def __init__(self) -> None:
        self.journal_writes = 0
        self.file_writes = 0
        self.renames = 0
        self.on_rename: Any = None

    def clear(self) -> None:
        self.journal_writes = self.file_writes = self.renames = 0

    def journal_os(self) -> types.SimpleNamespace:
        def write(fd: int, data: Any) -> int:
            if self.journal_writes:
                self.journal_writes -= 1
                return os.write(fd, bytes(data)[: max(1, len(data) // 2)])  # a short write
            return os.write(fd, data)

        return proxy(write=write)

    def durable_os(self) -> types.SimpleNamespace:
        def write(fd: int, data: Any) -> int:
            if self.file_writes:
                self.file_writes -= 1
                raise OSError(errno.ENOSPC, "No space left on device (injected)")
            return os.write(fd, data)

        return proxy(write=write)

    def files_os(self) -> types.SimpleNamespace:
        def replace(src: Any, dst: Any) -> None:
            if self.renames:
                self.renames -= 1
                raise OSError(errno.ENOSPC, "No space left on device (injected)")
            os.replace(src, dst)
            if self.on_rename is not None:
                self.on_rename(Path(dst).name)

        return proxy(replace=replace)


def proxy(**overrides: Any) -> types.SimpleNamespace:
    names = [n for n in dir(os) if not n.startswith("__")]
    namespace = types.SimpleNamespace(**{n: getattr(os, n) for n in names})
    for name, function in overrides.items():
        setattr(namespace, name, function)
    return namespace


def make_machine(faults: Faults) -> type[RuleBasedStateMachine]:
    class EngineModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.workdir = Path(tempfile.mkdtemp(prefix="ssk-model-"))
            self.clock = FakeClock()
            self.config = config_from_mapping(
                {
                    "storage_path": str(self.workdir / "storage"),
                    "memory_limit": "1MB",
                    "tiering": {"enabled": False, "hot_age": f"{int(HOT_AGE)}s"},
                    "git": {"branch": "backup/model"},
                }
            )
            # The model: (collection, key) -> (JSON bytes, class, version) of acknowledged writes.
            self.model: dict[tuple[str, str], tuple[bytes, PersistenceClass, int]] = {}
            self.storage = self._open()
            faults.clear()

        def _open(self) -> HybridStorage:
            storage = HybridStorage(self.config, clock=self.clock)
            storage.initialize()
            return storage

        def teardown(self) -> None:
            faults.clear()
            faults.on_rename = None
            self.storage.abandon()
            shutil.rmtree(self.workdir, ignore_errors=True)

        def _forget_volatile(self) -> None:
            """Cache records live in memory only: a restart may lose them."""
            self.model = {k: v for k, v in self.model.items() if v[1] is not PersistenceClass.CACHE}

        # -- operations ---------------------------------------------------------------
        @initialize()
        def start(self) -> None:
            pass

        @rule(
            collection=st.sampled_from(COLLECTIONS),
            key=st.sampled_from(KEYS),
            n=st.integers(0, 10**6),
            pad=st.sampled_from([0, 10, 3000, 120_000]),
            override=st.sampled_from(OVERRIDES),
        )
        def put(self, collection: str, key: str, n: int, pad: int, override: str | None) -> None:
            value = {"key": f"{collection}/{key}", "n": n, "pad": "x" * pad}
            raw = orjson.dumps(value)
            cls = self.storage.resolve_class(collection, override)
            try:
                _, version = self.storage.put_versioned(collection, key, value, cls=override)
            except StorageFull:
                assert faults.journal_writes == 0
                return  # refused: nothing changed
            self._acknowledge(collection, key, raw, cls, version)

        def _acknowledge(
            self, collection: str, key: str, raw: bytes, cls: PersistenceClass, version: int
        ) -> None:
            held = self.model.get((collection, key))
            if held is not None:
                assert version > held[2], f"{collection}/{key}: version went {held[2]} -> {version}"
            self.model[(collection, key)] = (raw, cls, version)

        @rule(
            collection=st.sampled_from(COLLECTIONS[:3]),
            key=st.sampled_from(KEYS),
            n=st.integers(0, 10**6),
            mode=st.sampled_from(["match-current", "match-stale", "absent"]),
        )
        def conditional_put(self, collection: str, key: str, n: int, mode: str) -> None:
            """If-Match / If-None-Match: * on records of a durable class (a cache record may
            vanish from memory at any time, so its precondition is not the model's to say)."""
            held = self.model.get((collection, key))
            if held is not None and held[1] is PersistenceClass.CACHE:
                return
            value = {"key": f"{collection}/{key}", "n": n, "pad": ""}
            current = None if held is None else held[2]
            condition: dict[str, Any]
            if mode == "absent":
                condition, wins = {"if_absent": True}, held is None
            elif mode == "match-current":
                condition, wins = {"if_match": current or 17}, held is not None
            else:
                condition, wins = {"if_match": (current or 18) - 1}, False
            try:
                _, version = self.storage.put_versioned(collection, key, value, **condition)
            except StorageFull:
                return
            except PreconditionFailed as failed:
                assert not wins, f"{collection}/{key} {mode}: refused, stored {current}"
                assert failed.current_version == current
                return
            assert wins, f"{collection}/{key} {mode}: written over version {current}"
            cls = self.storage.resolve_class(collection, None)
            self._acknowledge(collection, key, orjson.dumps(value), cls, version)

        @rule(
            collection=st.sampled_from(COLLECTIONS[:3]),
            key=st.sampled_from(KEYS),
            stale=st.booleans(),
        )
        def conditional_delete(self, collection: str, key: str, stale: bool) -> None:
            held = self.model.get((collection, key))
            if held is not None and held[1] is PersistenceClass.CACHE:
                return
            current = None if held is None else held[2]
            expected = (current or 17) - (1 if stale else 0)
            try:
                deleted = self.storage.delete(collection, key, if_match=expected)
            except StorageFull:
                return
            except PreconditionFailed as failed:
                assert stale or held is None, f"{collection}/{key}: refused at {current}"
                assert failed.current_version == current
                return
            assert deleted and not stale and held is not None
            del self.model[(collection, key)]

        @rule(collection=st.sampled_from(COLLECTIONS), key=st.sampled_from(KEYS))
        def delete(self, collection: str, key: str) -> None:
            try:
                existed = self.storage.delete(collection, key)
            except StorageFull:
                return
            held = self.model.pop((collection, key), None)
            if held is not None and held[1] is not PersistenceClass.CACHE:
                assert existed, f"{collection}/{key} was held but delete found nothing"

        @rule()
        def tier(self) -> None:
            with contextlib.suppress(StorageFull):
                self.storage.tier()

        @rule()
        def age_and_evict(self) -> None:
            self.clock.advance(HOT_AGE + 1)
            self.tier()

        @rule()
        def backup(self) -> None:
            with contextlib.suppress(StorageFull, OSError):
                self.storage.backup_git(push=False)

        @rule(put_during=st.booleans())
        def tier_with_reads_during_renames(self, put_during: bool) -> None:
            """Another thread reads every record right after each warm file is renamed; with
            `put_during`, every record is also overwritten right then (from inside the pass,
            while that reader may wait holding the entry it found before the put)."""
            seen: list[tuple[tuple[str, str], Any]] = []
            threads: list[threading.Thread] = []
            expected = {k: {v[0]} for k, v in self.model.items()}

            def read_all() -> None:
                for collection, key in list(expected):
                    try:
                        seen.append(((collection, key), self.storage.get_json(collection, key)))
                    except Exception as exc:
                        seen.append(((collection, key), exc))

            def overwrite_all() -> None:
                for (collection, key), (raw, cls, _) in list(self.model.items()):
                    value = orjson.loads(raw)
                    value["n"] += 1
                    try:
                        _, version = self.storage.put_versioned(
                            collection, key, value, cls=cls.value
                        )
                    except StorageFull:
                        continue
                    new = orjson.dumps(value)
                    self._acknowledge(collection, key, new, cls, version)
                    expected[(collection, key)].add(new)

            def on_rename(name: str) -> None:
                if name.endswith(".json") and not name.startswith("."):
                    thread = threading.Thread(target=read_all)
                    thread.start()
                    thread.join(0.05)
                    threads.append(thread)
                    if put_during and len(threads) == 1:
                        overwrite_all()

            faults.on_rename = on_rename
            try:
                self.tier()
            finally:
                faults.on_rename = None
                for thread in threads:
                    thread.join(30)
            for (collection, key), got in seen:
                if got is None and self.model.get((collection, key), (b"", None, 0))[1] is (
                    PersistenceClass.CACHE
                ):
                    continue
                assert got in expected[(collection, key)], f"{collection}/{key}: {got!r}"

        @rule()
        def crash(self) -> None:
            faults.clear()
            self.storage.abandon()
            self.storage = self._open()
            self._forget_volatile()

        @rule()
        def restart(self) -> None:
            faults.clear()
            try:
                self.storage.close(backup=False)
            except StorageFull:
                self.storage.abandon()
            self.storage = self._open()
            self._forget_volatile()

        @precondition(lambda self: not (faults.journal_writes or faults.file_writes))
        @rule(where=st.sampled_from(["journal", "file", "rename"]))
        def disk_full(self, where: str) -> None:
            if where == "journal":
                faults.journal_writes = 1
            elif where == "file":
                faults.file_writes = 1
            else:
                faults.renames = 1

        # -- the contract -------------------------------------------------------------
        @invariant()
        def every_record_reads_as_acknowledged(self) -> None:
            for collection in COLLECTIONS:
                for key in KEYS:
                    got = self.storage.get_json(collection, key)
                    held = self.model.get((collection, key))
                    if held is None:
                        assert got is None, f"{collection}/{key} came back: {got!r}"
                    elif held[1] is PersistenceClass.CACHE:
                        assert got in (None, held[0]), f"{collection}/{key}: {got!r}"
                        if got is None:
                            del self.model[(collection, key)]
                    else:
                        assert got == held[0], f"{collection}/{key}: {got!r} != {held[0]!r}"
                        version = self.storage.current_version(collection, key)
                        assert version == held[2], (
                            f"{collection}/{key}: version {version} != {held[2]}"
                        )

        @invariant()
        def listing_matches(self) -> None:
            for collection in COLLECTIONS:
                listed, _ = self.storage.list_records(collection)
                want = {
                    k: orjson.loads(v[0])
                    for (c, k), v in self.model.items()
                    if c == collection and v[1] is not PersistenceClass.CACHE
                }
                assert {k: v for k, v in listed.items() if k in want} == want
                extra = set(listed) - set(want)
                cached = {k for (c, k), v in self.model.items() if c == collection}
                assert extra <= cached, f"{collection}: deleted records listed: {extra - cached}"

    return EngineModel


@pytest.mark.slow
def test_the_engine_matches_a_dict_through_every_interleaving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    faults = Faults()
    monkeypatch.setattr(journal_module, "os", faults.journal_os())
    monkeypatch.setattr(durable_module, "os", faults.durable_os())
    monkeypatch.setattr(files_module, "os", faults.files_os())
    # Memory compaction (after many deletes) rebuilds every entry: let it happen in the model.
    monkeypatch.setattr(memory_module, "COMPACT_AFTER_REMOVED", 2)
    # So is the journal checkpoint at start (files, a git commit, segments dropped).
    monkeypatch.setattr(storage_module, "JOURNAL_CHECKPOINT_BYTES", 4096)
    machine = make_machine(faults)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=int(os.environ.get("SPINE_MODEL_EXAMPLES", "60")),
            stateful_step_count=40,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
