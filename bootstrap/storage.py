"""HybridStorage: the facade the API, CLI and lifecycle call. It owns the put/get/delete path,
the journal and the passes, and routes each persistence class to the tiers its config names:

- every put lands in memory (bootstrap.memory); a class routed anywhere is journaled first
  (critical: fdatasync before the put returns, group-committed);
- each entry carries one pending bit per configured tier; every tier's replica
  (bootstrap.replicas) takes what is pending for it, and is called here only through the
  replica verbs, never by name;
- the tiering pass ships the every-pass replicas (the warm files), checkpoints the journal,
  ages memory, then ships and publishes the backup replicas that are due (git);
- restore (bootstrap.restore) takes the newest point across tiers, then replays the journal.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from . import restore as restoring
from .config import AgentConfig
from .errors import BadRequest, PreconditionFailed, StorageError, StorageFull, ValueTooLarge
from .journal import Journal, JournalWriteError
from .memory import MemoryStore, release_free_heap
from .policy import Routes
from .records import (
    Change,
    Entry,
    InvalidValue,
    PersistenceClass,
    check_collection,
    check_key,
    exact_bytes,
    validate_value,
    version_of,
)
from .replicas import Context, Incoming, PassReport, Replica
from .tiers import FOLLOWS, replica_factory

log = logging.getLogger("spine.storage")

LOCK_NAME = ".agent.lock"
# The journal is checkpointed (every tier written, segments dropped) once it holds this much:
# it bounds replay time and memory after a crash, also for an agent that never lives to its
# first pass.
JOURNAL_CHECKPOINT_BYTES = 32 * 1024 * 1024
RESTORE_SOURCES = ("empty", "files", "git-local", "git-remote", "postgres")
BACKGROUND_PUBLISH_TIMEOUT = 30.0
TierReport = PassReport  # the name the lifecycle and the API know

__all__ = [
    "JOURNAL_CHECKPOINT_BYTES",
    "BadRequest",
    "HybridStorage",
    "StorageError",
    "StorageFull",
    "TierReport",
    "ValueTooLarge",
]


@dataclass
class Counters:
    puts: int = 0
    gets: int = 0
    deletes: int = 0
    misses: int = 0
    evictions: int = 0
    put_errors: int = 0
    tier_passes: int = 0
    backups: int = 0


class HybridStorage:
    """The agent's storage manager. Thread-safe: the API thread serves while a worker tiers."""

    def __init__(self, config: AgentConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.root = config.storage_path
        self.routes = Routes({PersistenceClass(c): t for c, t in config.routes.items()})
        self.journal = Journal(self.root / "journal")
        self.memory = MemoryStore(
            config.memory_limit, self.routes, self._note_put, self._note_forget
        )
        self.host = socket.gethostname()
        self.restored_from = "empty"
        self.started_at = clock()
        self._counters = Counters()
        self._maintenance = threading.Lock()
        self._open = False
        self._lock_fd = -1
        self._last_version = 0  # the write clock (µs): every write takes a larger value
        ctx = Context(
            config=config,
            clock=clock,
            memory=self.memory,
            journal=self.journal,
            routes=self.routes,
            host=self.host,
            root=self.root,
            checkpoint_journal=self._checkpoint_journal,
            adopt=self._adopt,
            note_bulk=self._note_bulk,
            maintenance=self._maintenance,
        )
        self.replicas: list[Replica] = []
        by_name: dict[str, Replica] = {}
        for name in self.routes.tiers:
            factory = replica_factory(name)
            bit = self.routes.bit(name)
            follows = FOLLOWS.get(name)
            replica = factory(ctx, bit, by_name[follows]) if follows else factory(ctx, bit)
            by_name[name] = replica
            self.replicas.append(replica)
        self._by_name = by_name

    # == lifecycle ========================================================================
    def initialize(self) -> str:
        """Restore state (the newest point across tiers, then the journal); ready to serve."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"storage_path {self.root}: cannot create ({exc.strerror})"
            ) from None
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"storage_path {self.root}: not writable by this user")
        self._take_lock()
        for replica in self.replicas:
            replica.open()
        self.restored_from, replayed = restoring.restore(self.replicas, self.memory, self.journal)
        if self._journal_full():
            self.checkpoint()
        for replica in self.replicas:
            replica.ready(self.restored_from)
        self._seed_write_clock()
        self._open = True
        log.info(
            "storage ready",
            extra={
                "restored_from": self.restored_from,
                "records": self.record_count(),
                "journal_ops": replayed,
                "storage_path": str(self.root),
            },
        )
        return self.restored_from

    def _take_lock(self) -> None:
        """One agent per storage path: a second one would replay and write the same files."""
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StorageError(
                f"storage_path {self.root} is in use by another agent (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = -1

    def close(self, backup: bool = True, push_timeout: float | None = None) -> None:
        """Flush everything to every tier and publish it (the shutdown hook)."""
        if not self._open:
            return
        try:
            self.flush(backup=backup, push_timeout=push_timeout)
        finally:
            self.journal.close()
            for replica in self.replicas:
                replica.close()
            self._release_lock()
            self._open = False

    def abandon(self) -> None:
        """Let go of the storage path as a killed process would: nothing is written, flushed or
        synced. What `kill -9` leaves, for crash tests and the model-based test."""
        self.journal.abandon()
        for replica in self.replicas:
            replica.close()
        self._release_lock()
        self._open = False

    @property
    def on_pressure(self) -> Callable[[], None] | None:
        """Called (from a put) when an early pass would help: memory or the journal is full."""
        return self.memory.on_pressure

    @on_pressure.setter
    def on_pressure(self, callback: Callable[[], None] | None) -> None:
        self.memory.on_pressure = callback

    # == the record API ===================================================================
    def resolve_class(
        self, collection: str, cls: str | PersistenceClass | None
    ) -> PersistenceClass:
        if cls is None:
            return self.config.class_of(collection)
        if isinstance(cls, PersistenceClass):
            return cls
        try:
            return PersistenceClass.parse(cls)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None

    def put(
        self,
        collection: str,
        key: str,
        value: Any,
        cls: str | PersistenceClass | None = None,
        wait: bool = True,
        *,
        if_match: int | None = None,
        if_absent: bool = False,
    ) -> int:
        """Store a JSON-able value. Critical puts are durable when this returns (wait=True).
        Returns the journal sequence number; `put_versioned` also returns the new version."""
        return self.put_versioned(
            collection, key, value, cls, wait, if_match=if_match, if_absent=if_absent
        )[0]

    def put_versioned(
        self,
        collection: str,
        key: str,
        value: Any,
        cls: str | PersistenceClass | None = None,
        wait: bool = True,
        *,
        if_match: int | None = None,
        if_absent: bool = False,
    ) -> tuple[int, int]:
        """`put` returning (journal sequence number, the record's new version)."""
        try:
            data = orjson.dumps(value)
        except TypeError as exc:
            raise BadRequest(f"value is not JSON-serialisable: {exc}") from None
        return self.put_json_versioned(
            collection, key, data, cls, wait, True, if_match=if_match, if_absent=if_absent
        )

    def put_json(
        self,
        collection: str,
        key: str,
        raw: bytes,
        cls: str | PersistenceClass | None = None,
        wait: bool = True,
        canonical: bool = False,
    ) -> int:
        """Store raw JSON bytes (the socket API's path). Returns the journal sequence number."""
        return self.put_json_versioned(collection, key, raw, cls, wait, canonical)[0]

    def put_json_versioned(
        self,
        collection: str,
        key: str,
        raw: bytes,
        cls: str | PersistenceClass | None = None,
        wait: bool = True,
        canonical: bool = False,
        *,
        if_match: int | None = None,
        if_absent: bool = False,
    ) -> tuple[int, int]:
        """`put_json` returning (journal sequence number, new version). With `if_match` the
        write happens only if the stored version is that one; with `if_absent` only if there is
        no record. Both are decided under the storage lock, so of two writers holding the same
        version exactly one wins; the other gets PreconditionFailed and nothing is written."""
        self.check_names(collection, key)
        pclass = self.resolve_class(collection, cls)
        if len(raw) > self.config.max_value_size:
            raise ValueTooLarge(
                f"value is {len(raw)} bytes (max_value_size is {self.config.max_value_size})"
            )
        try:
            raw = validate_value(raw, reencode=not canonical)
        except InvalidValue as exc:
            raise BadRequest(str(exc)) from None
        raw = exact_bytes(raw)
        conditional = if_match is not None or if_absent
        memory = self.memory
        change = Change(collection, key, raw, pclass.value, 0.0)
        arbiter = self._arbiter(pclass) if conditional else None
        through = arbiter is not None or self._writes_through(pclass)
        seq: int | None = None
        with memory.lock:
            old = memory.entry(collection, key)
            if conditional and arbiter is None:
                self._check_precondition(collection, key, old, if_match, if_absent)
            version = self._next_version(old)
            now = version / 1_000_000
            change = replace(change, mtime=now)
            if not through:
                # Decided and written under the lock: no other write interleaves.
                seq = self._apply_put(
                    collection, key, raw, pclass, now, self.routes.mask(pclass), old
                )
        if seq is None:
            # A tier decides or must hold the write before the ack (postgres): not under the
            # lock, so writes of other keys go on meanwhile. The record takes the version
            # that tier settled on.
            if arbiter is not None:
                version = arbiter.write_conditional(change, if_match, if_absent)
                mask = self.routes.mask(pclass) & ~arbiter.bit
            else:
                mask, settled = self._write_through(change, pclass)
                version = settled or version
            now = version / 1_000_000
            with memory.lock:
                self._observe_version(version)
                old = memory.entry(collection, key)
                if old is not None and old.version > version:
                    return 0, version  # written through; a newer write has landed meanwhile
                seq = self._apply_put(collection, key, raw, pclass, now, mask, old)
        tombstoned_durable = seq < 0
        seq = abs(seq)
        if (wait and pclass.waits_for_sync) or tombstoned_durable:
            self.sync(seq)
        return seq, version

    def _apply_put(
        self,
        collection: str,
        key: str,
        raw: bytes,
        pclass: PersistenceClass,
        now: float,
        mask: int,
        old: Entry | None,
    ) -> int:
        """Journal and install a put (caller holds the lock); the journal sequence number,
        negative when it tombstoned a durable record that must be synced before the ack."""
        memory, routes = self.memory, self.routes
        tombstoned_durable = False
        try:
            if routes.journaled(pclass):
                seq = self.journal.append(collection, key, pclass.value, raw, now)
            elif old is not None and routes.journaled(old.cls):
                # The record leaves its tiers (a cache value over a durable one): the journal
                # must say the older value is gone, or a crash brings it back.
                seq = self.journal.append(collection, key, old.cls.value, None, now)
                tombstoned_durable = old.cls.waits_for_sync
            else:
                seq = 0
        except JournalWriteError as exc:
            self._counters.put_errors += 1
            raise StorageFull(f"write refused, nothing stored: {exc.strerror or exc}") from None
        memory.set_entry(collection, key, Entry(raw, pclass, now, mask), now)
        self._counters.puts += 1
        if memory.used > memory.limit and not memory.evict_blocked:
            memory.evict_for_limit()
        elif seq and self._journal_full() and memory.on_pressure is not None:
            memory.on_pressure()  # an early pass checkpoints the journal
        return -seq if tombstoned_durable else seq

    def _next_version(self, old: Entry | None) -> int:
        """Tick the write clock (caller holds the lock): max(now µs, last + 1, the record's own
        version + 1). Strictly increasing, so a version is never handed out twice, even when
        the system clock steps back or a merged backup carries a time from the future."""
        version = max(version_of(self.clock()), self._last_version + 1)
        if old is not None and old.version >= version:
            version = old.version + 1
        self._last_version = version
        return version

    def _seed_write_clock(self) -> None:
        """After restore: the clock starts past every version loaded, so a record deleted and
        written again never gets a version a client saw before."""
        newest = 0.0
        for replica in self.replicas:
            newest = max(newest, replica.restore_mark()[0] or 0.0)
        with self.memory.lock:
            for _, coll in self.memory.collections():
                for entry in coll.values():
                    if entry.mtime > newest:
                        newest = entry.mtime
            self._last_version = max(self._last_version, version_of(newest))

    @staticmethod
    def _check_precondition(
        collection: str,
        key: str,
        old: Entry | None,
        if_match: int | None,
        if_absent: bool,
    ) -> None:
        """Raise PreconditionFailed unless the stored record is as the writer expects."""
        current = None if old is None else old.version
        if if_absent and current is not None:
            raise PreconditionFailed(
                current, f"precondition failed: {collection}/{key} exists (version {current})"
            )
        if if_match is not None and current != if_match:
            shown = "is absent" if current is None else f"is at version {current}"
            raise PreconditionFailed(
                current,
                f"precondition failed: {collection}/{key} {shown}, not {if_match}",
            )

    def sync(self, seq: int | None = None) -> None:
        """Make journaled writes up to `seq` durable (fdatasync, shared between callers)."""
        try:
            self.journal.sync(seq)
        except JournalWriteError as exc:
            raise StorageFull(f"journal sync failed: {exc.strerror or exc}") from None

    def get_json(self, collection: str, key: str) -> bytes | None:
        """The stored JSON bytes, or None. Memory first; an evicted record is one pread away."""
        entry = self.memory.entry(collection, key)
        if entry is None:
            self._counters.misses += 1
            return None
        entry.atime = self.clock()
        self._counters.gets += 1
        value = entry.value
        if value is not None:
            return value
        return self.memory.read_evicted(collection, key)

    def get(self, collection: str, key: str, default: Any = None) -> Any:
        raw = self.get_json(collection, key)
        return default if raw is None else orjson.loads(raw)

    def get_json_versioned(self, collection: str, key: str) -> tuple[bytes, int] | None:
        """(JSON bytes, version) read together, or None: the pair a conditional write needs."""
        while True:
            entry = self.memory.entry(collection, key)
            if entry is None:
                self._counters.misses += 1
                return None
            raw = self.get_json(collection, key)
            # A write between the two reads replaced the entry: read the pair again.
            if raw is not None and self.memory.entry(collection, key) is entry:
                return raw, entry.version

    def get_versioned(self, collection: str, key: str) -> tuple[Any, int] | None:
        """(value, version), or None when the record is absent."""
        found = self.get_json_versioned(collection, key)
        return None if found is None else (orjson.loads(found[0]), found[1])

    def current_version(self, collection: str, key: str) -> int | None:
        """The stored version, or None when the record is absent."""
        entry = self.memory.entry(collection, key)
        return None if entry is None else entry.version

    def delete(
        self, collection: str, key: str, wait: bool = True, *, if_match: int | None = None
    ) -> bool:
        """Remove a record everywhere it may travel. False when it did not exist. With
        `if_match`, only if the stored version is that one (else PreconditionFailed, also
        when the record is absent)."""
        self.check_names(collection, key)
        memory = self.memory
        with memory.lock:
            entry = memory.entry(collection, key)
            arbiter = None
            if if_match is not None:
                cls = entry.cls if entry is not None else self.config.class_of(collection)
                arbiter = self._arbiter(cls)
                if arbiter is None:
                    self._check_precondition(collection, key, entry, if_match, False)
            if entry is None and arbiter is None:
                return False
            if entry is not None:
                cls = entry.cls
            version = self._next_version(entry)
            change = Change(collection, key, None, cls.value, version / 1_000_000)
            through = arbiter is not None or self._writes_through(cls)
            if not through:
                assert entry is not None
                seq = self._apply_delete(collection, key, entry, change.mtime)
        if through:
            if arbiter is not None:
                assert if_match is not None
                version = arbiter.write_conditional(change, if_match, False)
            else:
                version = self._write_through(change, cls)[1] or version
            now = version / 1_000_000
            with memory.lock:
                self._observe_version(version)
                entry = memory.entry(collection, key)
                if entry is None or entry.version > version:
                    return True  # deleted through; a newer write (or delete) landed meanwhile
                seq = self._apply_delete(collection, key, entry, now)
        if wait and cls.waits_for_sync:
            self.sync(seq)
        return True

    def _apply_delete(self, collection: str, key: str, entry: Entry, now: float) -> int:
        """Journal and remove (caller holds the lock); the journal sequence number."""
        seq = 0
        if self.routes.journaled(entry.cls):
            try:
                seq = self.journal.append(collection, key, entry.cls.value, None, now)
            except JournalWriteError as exc:
                raise StorageFull(f"delete refused, nothing changed: {exc}") from None
        self.memory.remove_entry(collection, key, entry.cls, now)
        self._counters.deletes += 1
        return seq

    def list_records(
        self, collection: str, prefix: str = "", limit: int = 1000
    ) -> tuple[dict[str, Any], bool]:
        """Records of a collection, sorted by key; the flag says the limit cut the list."""
        try:
            check_collection(collection)
        except ValueError as exc:  # a bad name is the caller's error (400), not ours (500)
            raise BadRequest(str(exc)) from None
        with self.memory.lock:
            keys = sorted(k for k in self.memory.collection(collection) if k.startswith(prefix))
        result: dict[str, Any] = {}
        for key in keys[:limit]:
            raw = self.get_json(collection, key)
            if raw is not None:
                result[key] = orjson.loads(raw)
        return result, len(keys) > limit

    def record_count(self) -> int:
        return self.memory.count()

    # == read-only views (for tests and tools; they change nothing) =========================
    @property
    def is_open(self) -> bool:
        """True between initialize() and close()/abandon(): the storage path is locked by us."""
        return self._open

    def is_resident(self, collection: str, key: str) -> bool:
        """True when the record's value is in memory (hot); False when it is evicted (read from
        its warm file on demand) or absent."""
        with self.memory.lock:
            entry = self.memory.entry(collection, key)
            return entry is not None and entry.value is not None

    @property
    def counters(self) -> Counters:
        self._counters.evictions = self.memory.evictions
        self._counters.backups = sum(r.commits for r in self.replicas)
        return self._counters

    def tier_backend(self, name: str) -> Any:
        """A configured tier's backend (tools, benchmarks and tests read from it)."""
        return getattr(self._by_name[name], "backend")  # noqa: B009 - the protocol has none

    def replica(self, name: str) -> Replica:
        return self._by_name[name]

    # == passes ===========================================================================
    def tier(self) -> TierReport:
        """The periodic pass: ship every-pass tiers (warm files), checkpoint the journal, age
        memory, then back up to the tiers that are due."""
        started = time.perf_counter()
        report = TierReport()
        memory = self.memory
        with self._maintenance:
            self._ship_every_pass(report)
            now = self.clock()
            with memory.lock:
                aged = memory.age(now, self.config.tiering.hot_age)
                report.evicted, report.expired_cache = aged.evicted, aged.expired_cache
                memory.evict_blocked = False
                if memory.over_limit():
                    # This is the pass: asking for another one would loop while records owed to
                    # a backup tier hold memory (only a backup cleans them).
                    memory.evict_for_limit(ask_for_pass=False)
            self._counters.tier_passes += 1
        if self.config.tiering.enabled:
            now = self.clock()
            full = self._journal_full()
            due = [r for r in self._backups() if full or r.due(now)]
            if due:
                self._backup(due, push=True, push_timeout=None, compact=True)
        with self._maintenance, memory.lock:
            # After the backup: it lets go of the deleted keys the backup was still to hear of.
            report.compacted = memory.compact()
        if report.compacted:
            release_free_heap()
        report.seconds = time.perf_counter() - started
        return report

    def tier_files_only(self) -> TierReport:
        """Ship the every-pass tiers only (the CLI's offline flush)."""
        report = TierReport()
        with self._maintenance:
            self._ship_every_pass(report)
        return report

    def checkpoint(self) -> None:
        """Every tier written now (no publish, no snapshot), so the journal segments they cover
        are dropped."""
        self.tier_files_only()
        self._backup(self._backups(), push=False, push_timeout=None, compact=False)

    def backup(
        self, push: bool = True, push_timeout: float | None = None, compact: bool = True
    ) -> dict[str, Any]:
        """Ship the backup tiers now (git: a segment, or a fresh snapshot when due) and, with
        push, publish them."""
        return self._backup(self._backups(), push, push_timeout, compact)

    backup_git = backup  # the name of the API's POST /v1/backup and older callers

    def push(self, timeout: float | None = None) -> bool:
        """Publish every tier that publishes (git: push); False when one could not."""
        deadline = time.monotonic() + (timeout or BACKGROUND_PUBLISH_TIMEOUT)
        return all([r.publish(deadline) for r in self.replicas])

    def background_tasks(self) -> list[Callable[[], Any]]:
        """Checks to run once after start, off the serving path (git: merge the remote)."""
        return [task for r in self.replicas if (task := r.background()) is not None]

    def seconds_until_push_retry(self) -> float | None:
        """When a failed publish should be tried again (the scheduler sleeps until then)."""
        now = self.clock()
        waits = [w for r in self.replicas if (w := r.retry_in(now)) is not None]
        return min(waits) if waits else None

    def flush(self, backup: bool = True, push_timeout: float | None = None) -> dict[str, Any]:
        """Everything to every tier now; with backup, publish too (SIGTERM, preemption)."""
        self.sync()
        report = self.tier_files_only()
        result: dict[str, Any] = {"files_written": report.files_written}
        if backup:
            result.update(self._backup(self._backups(), True, push_timeout, compact=False))
            states = [p for r in self.replicas if (p := r.published()) is not None]
            result["pushed"] = all(states) if states else None
        return result

    def _backups(self) -> list[Replica]:
        return [r for r in self.replicas if not r.every_pass]

    def _ship_every_pass(self, report: TierReport) -> None:
        for replica in self.replicas:
            if replica.every_pass:
                replica.ship(report)

    def _backup(
        self, replicas: list[Replica], push: bool, push_timeout: float | None, compact: bool
    ) -> dict[str, Any]:
        result: dict[str, Any] = {"commit": None, "changes": 0}
        with self._maintenance:
            for replica in replicas:
                result.update(replica.ship(TierReport(), compact=compact))
        if push:
            deadline = time.monotonic() + (push_timeout or BACKGROUND_PUBLISH_TIMEOUT)
            for replica in replicas:
                replica.publish(deadline)
        return result

    def _journal_full(self) -> bool:
        return self.journal.size_bytes() > JOURNAL_CHECKPOINT_BYTES

    def _checkpoint_journal(self) -> int:
        """Drop the journal segments every tier holds: until then a crash replays them, so no
        change (a delete bound for a backup included) is only in memory."""
        if not self.replicas:
            return 0
        return self.journal.drop_through(min(r.covered for r in self.replicas))

    def _writes_through(self, cls: PersistenceClass) -> bool:
        """True when a write of this class must reach a tier before it is acknowledged."""
        mask = self.routes.mask(cls)
        return any(mask & r.bit and r.writes_through(cls) for r in self.replicas)

    def _write_through(self, change: Change, cls: PersistenceClass) -> tuple[int, int | None]:
        """Reach the tiers that must hold a write before it is acknowledged (Unavailable:
        nothing written): the route's mask less those tiers, whose bits are never pending,
        and the version they settled on (None when none keeps versions)."""
        mask = self.routes.mask(cls)
        settled: int | None = None
        for replica in self.replicas:
            if mask & replica.bit and replica.writes_through(cls):
                version = replica.write_through(change)
                if version is not None:
                    settled = max(settled or 0, version)
                mask &= ~replica.bit
        return mask, settled

    def _arbiter(self, cls: PersistenceClass) -> Replica | None:
        """The tier that decides conditional writes of this class (postgres when routed), or
        None: the local store decides, under its lock."""
        mask = self.routes.mask(cls)
        for replica in self.replicas:
            if mask & replica.bit and replica.decides_conditions(cls):
                return replica
        return None

    def blocks_on_a_tier(self, cls: PersistenceClass, conditional: bool) -> bool:
        """True when a write waits for a remote tier (postgres): the API runs it off the event
        loop so that other requests, and the tier's group commit, go on meanwhile."""
        return self._writes_through(cls) or (conditional and self._arbiter(cls) is not None)

    def _observe_version(self, version: int) -> None:
        """A tier settled on `version` (caller holds the lock): the write clock moves past it,
        so this agent's next write is newer."""
        if version > self._last_version:
            self._last_version = version

    # == the memory store's notices, dispatched by pending bit =============================
    def _note_put(self, collection: str, key: str, entry: Entry, now: float) -> None:
        for replica in self.replicas:
            if entry.pending & replica.bit:
                replica.note_put(collection, key, entry, now)

    def _note_forget(self, collection: str, key: str, cls: PersistenceClass, when: float) -> None:
        mask = self.routes.mask(cls)
        for replica in self.replicas:
            if mask & replica.bit:
                replica.note_delete(collection, key, cls, when)

    def _note_bulk(self, collection: str, cls: PersistenceClass, mask: int) -> None:
        for replica in self.replicas:
            if mask & replica.bit:
                replica.note_bulk(collection, cls)

    def _adopt(self, records: Iterable[Incoming]) -> int:
        return restoring.adopt(records, self.memory, self.journal, self.routes)

    # == status ===========================================================================
    def status(self) -> dict[str, Any]:
        """What `GET /v1/status` shows. No secrets: remote URLs and DSNs are redacted."""
        memory = self.memory
        tiers = self.routes.tiers
        with memory.lock:
            per_class = {c.value: {"records": 0, "in_memory": 0} for c in PersistenceClass}
            pending = [0] * len(tiers)
            for _, coll in memory.collections():
                for entry in coll.values():
                    stats = per_class[entry.cls.value]
                    stats["records"] += 1
                    stats["in_memory"] += entry.value is not None
                    bits = entry.pending
                    index = 0
                    while bits:
                        pending[index] += bits & 1
                        bits >>= 1
                        index += 1
            counts = memory.counts()
            memory_bytes = memory.used
        now = self.clock()
        result: dict[str, Any] = {
            "host": self.host,
            "storage_path": str(self.root),
            "restored_from": self.restored_from,
            "uptime_s": round(now - self.started_at, 3),
            "records": sum(counts.values()),
            "collections": counts,
            "classes": per_class,
            "routes": {cls: list(route) for cls, route in self.config.routes.items()},
            "journal": {"bytes": self.journal.size_bytes()},
            "tiers": {
                "memory": {
                    "bytes": memory_bytes,
                    "limit": memory.limit,
                    "records": sum(c["in_memory"] for c in per_class.values()),
                    "over_limit": memory_bytes > memory.limit,
                },
            },
            "dirty": {
                **dict(zip(tiers, pending, strict=True)),
                "unevictable_over_limit": memory_bytes > memory.limit,
            },
        }
        for replica in self.replicas:
            for section, body in replica.status().items():
                result.setdefault(section, {}).update(body)
        return result

    def check_names(self, collection: str, key: str) -> None:
        try:
            check_collection(collection)
            check_key(key)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
