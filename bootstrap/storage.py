"""HybridStorage: the facade the API, CLI and lifecycle call. It owns the put/get/delete path
and routes each persistence class to the tiers its config names:

- every put lands in memory (bootstrap.memory); a class routed anywhere is journaled first
  (critical: fdatasync before the put returns, group-committed);
- each entry carries one pending bit per configured tier; every tier's replica
  (bootstrap.replicas) takes what is pending for it, and is called here only through the
  replica verbs, never by name;
- the rest lives in one module per concern, and the facade delegates to it: the write clock
  (write_clock), conditions and TTL checks (conditions), which tiers a write reaches before
  its ack (routing), batches and transactions (batches), expiry (expiry), the tiering pass,
  backup, flush and publish (passes), the status document (status);
- restore (bootstrap.restore) takes the newest point across tiers, then replays the journal.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from . import conditions
from . import restore as restoring
from .batch import BatchOp
from .batches import BatchOutcome, BatchWriter
from .conditions import check_precondition, check_ttl
from .config import AgentConfig
from .errors import (
    BadRequest,
    StorageError,
    StorageFull,
    ValueTooLarge,
)
from .expiry import Expiry
from .journal import Journal, JournalWriteError
from .memory import MemoryStore
from .passes import JOURNAL_CHECKPOINT_BYTES, Passes, TierReport
from .path_lock import PathLock
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
from .replicas import Context, Incoming, Replica
from .routing import TierRouting
from .status import build_status
from .tiers import FOLLOWS, replica_factory
from .write_clock import WriteClock

log = logging.getLogger("spine.storage")

RESTORE_SOURCES = ("empty", "files", "git-local", "git-remote", "postgres")

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
        self._path_lock = PathLock(self.root)
        self.write_clock = WriteClock(clock)
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
        self.routing = TierRouting(self.routes, self.replicas)
        self.expiry = Expiry(
            clock, self.memory, self.journal, self.routes, self.replicas, self.write_clock
        )
        self.batches = BatchWriter(
            config,
            clock,
            self.memory,
            self.journal,
            self.routes,
            self.replicas,
            self.routing,
            self.write_clock,
            self.expiry,
            self._counters,
            self.resolve_class,
            self._journal_full,
            self.sync,
        )
        self.passes = Passes(
            config,
            clock,
            self.memory,
            self.journal,
            self.replicas,
            self._maintenance,
            self._counters,
            self.expire,
            self.sync,
        )

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
        self._path_lock.take()
        for replica in self.replicas:
            replica.open()
        self.restored_from, replayed = restoring.restore(self.replicas, self.memory, self.journal)
        if self._journal_full():
            self.checkpoint()
        for replica in self.replicas:
            replica.ready(self.restored_from)
        self._seed_write_clock()
        self.expiry.reset(self.memory.expiring())
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
            self._path_lock.release()
            self._open = False

    def abandon(self) -> None:
        """Let go of the storage path as a killed process would: nothing is written, flushed or
        synced. What `kill -9` leaves, for crash tests and the model-based test."""
        self.journal.abandon()
        for replica in self.replicas:
            replica.close()
        self._path_lock.release()
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
        ttl: int | None = None,
    ) -> int:
        """Store a JSON-able value. Critical puts are durable when this returns (wait=True).
        Returns the journal sequence number; `put_versioned` also returns the new version."""
        return self.put_versioned(
            collection, key, value, cls, wait, if_match=if_match, if_absent=if_absent, ttl=ttl
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
        ttl: int | None = None,
    ) -> tuple[int, int]:
        """`put` returning (journal sequence number, the record's new version)."""
        try:
            data = orjson.dumps(value)
        except TypeError as exc:
            raise BadRequest(f"value is not JSON-serialisable: {exc}") from None
        return self.put_json_versioned(
            collection, key, data, cls, wait, True, if_match=if_match, if_absent=if_absent, ttl=ttl
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
        ttl: int | None = None,
    ) -> tuple[int, int]:
        """`put_json` returning (journal sequence number, new version). With `if_match` the
        write happens only if the stored version is that one; with `if_absent` only if there is
        no record. Both are decided under the storage lock, so of two writers holding the same
        version exactly one wins; the other gets PreconditionFailed and nothing is written.
        With `ttl` (seconds; session and cache records only) the record expires."""
        self.check_names(collection, key)
        pclass = self.resolve_class(collection, cls)
        if ttl is not None:
            check_ttl(collection, key, pclass, ttl)
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
        arbiter = self.routing.arbiter(pclass) if conditional else None
        through = arbiter is not None or self.routing.writes_through(pclass)
        seq: int | None = None
        with memory.lock:
            old = memory.entry(collection, key)
            if conditional and arbiter is None:
                check_precondition(collection, key, self._live(old), if_match, if_absent)
            version = self.write_clock.next(old)
            now = version / 1_000_000
            expires = None if ttl is None else now + ttl
            change = replace(change, mtime=now, expires=expires)
            if not through:
                # Decided and written under the lock: no other write interleaves.
                seq = self._apply_put(
                    collection, key, raw, pclass, now, self.routes.mask(pclass), old, expires
                )
        if seq is None:
            # A tier decides or must hold the write before the ack (postgres): not under the
            # lock, so writes of other keys go on meanwhile. The record takes the version
            # that tier settled on.
            if arbiter is not None:
                version = arbiter.write_conditional(change, if_match, if_absent)
                mask = self.routes.mask(pclass) & ~arbiter.bit
            else:
                mask, settled = self.routing.write_through(change, pclass)
                version = settled or version
            now = version / 1_000_000
            with memory.lock:
                self.write_clock.observe(version)
                old = memory.entry(collection, key)
                if old is not None and old.version > version:
                    return 0, version  # written through; a newer write has landed meanwhile
                seq = self._apply_put(collection, key, raw, pclass, now, mask, old, expires)
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
        expires: float | None = None,
    ) -> int:
        """Journal and install a put (caller holds the lock); the journal sequence number,
        negative when it tombstoned a durable record that must be synced before the ack."""
        memory, routes = self.memory, self.routes
        tombstoned_durable = False
        try:
            if routes.journaled(pclass):
                seq = self.journal.append(collection, key, pclass.value, raw, now, expires)
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
        memory.set_entry(collection, key, Entry(raw, pclass, now, mask, expires), now)
        if expires is not None:
            self.expiry.track(collection, key)
        self._counters.puts += 1
        if memory.used > memory.limit and not memory.evict_blocked:
            memory.evict_for_limit()
        elif seq and self._journal_full() and memory.on_pressure is not None:
            memory.on_pressure()  # an early pass checkpoints the journal
        return -seq if tombstoned_durable else seq

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
            self.write_clock.observe(version_of(newest))

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
        now = self.clock()
        if entry.expires is not None and entry.expires <= now:
            self._counters.misses += 1
            return None
        entry.atime = now
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
            entry = self._live(self.memory.entry(collection, key))
            if entry is None:
                self._counters.misses += 1
                return None
            raw = self.get_json(collection, key)
            if raw is None and entry.expired(self.clock()):
                return None  # its time to live ran out between the two reads
            # A write between the two reads replaced the entry: read the pair again.
            if raw is not None and self.memory.entry(collection, key) is entry:
                return raw, entry.version

    def get_versioned(self, collection: str, key: str) -> tuple[Any, int] | None:
        """(value, version), or None when the record is absent."""
        found = self.get_json_versioned(collection, key)
        return None if found is None else (orjson.loads(found[0]), found[1])

    def current_version(self, collection: str, key: str) -> int | None:
        """The stored version, or None when the record is absent (or expired)."""
        entry = self._live(self.memory.entry(collection, key))
        return None if entry is None else entry.version

    def _live(self, entry: Entry | None) -> Entry | None:
        return conditions.live(entry, self.clock)

    def delete(
        self, collection: str, key: str, wait: bool = True, *, if_match: int | None = None
    ) -> bool:
        """Remove a record everywhere it may travel. False when it did not exist. With
        `if_match`, only if the stored version is that one (else PreconditionFailed, also
        when the record is absent)."""
        self.check_names(collection, key)
        memory = self.memory
        with memory.lock:
            entry = self._live(memory.entry(collection, key))
            arbiter = None
            if if_match is not None:
                cls = entry.cls if entry is not None else self.config.class_of(collection)
                arbiter = self.routing.arbiter(cls)
                if arbiter is None:
                    check_precondition(collection, key, entry, if_match, False)
            if entry is None and arbiter is None:
                return False
            if entry is not None:
                cls = entry.cls
            version = self.write_clock.next(entry)
            change = Change(collection, key, None, cls.value, version / 1_000_000)
            through = arbiter is not None or self.routing.writes_through(cls)
            if not through:
                assert entry is not None
                seq = self._apply_delete(collection, key, entry, change.mtime)
        if through:
            if arbiter is not None:
                assert if_match is not None
                version = arbiter.write_conditional(change, if_match, False)
            else:
                version = self.routing.write_through(change, cls)[1] or version
            now = version / 1_000_000
            with memory.lock:
                self.write_clock.observe(version)
                entry = memory.entry(collection, key)
                if entry is None:
                    # Not held here (yet): the tiers still learn of the delete, so a copy of
                    # the record on its way here (the listener) cannot bring it back.
                    memory.remove_entry(collection, key, cls, now)
                    return True
                if entry.version > version:
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

    def expire(self) -> int:
        """Delete every record whose time to live has passed (bootstrap.expiry)."""
        return self.expiry.expire()

    # == batches (bootstrap.batch validates them; see its docstring) ==========================
    def get_many(self, names: Sequence[tuple[str, str]]) -> list[tuple[bytes, int] | None]:
        """(JSON bytes, version) of each record named, None where it is absent or expired."""
        return [self.get_json_versioned(collection, key) for collection, key in names]

    def write_batch(self, ops: Sequence[BatchOp], atomic: bool, wait: bool = True) -> BatchOutcome:
        """Apply validated operations as one step (bootstrap.batches: its docstring)."""
        return self.batches.write_batch(ops, atomic, wait)

    def list_records(
        self, collection: str, prefix: str = "", limit: int = 1000
    ) -> tuple[dict[str, Any], bool]:
        """Records of a collection, sorted by key; the flag says the limit cut the list."""
        try:
            check_collection(collection)
        except ValueError as exc:  # a bad name is the caller's error (400), not ours (500)
            raise BadRequest(str(exc)) from None
        now = self.clock()
        with self.memory.lock:
            keys = sorted(
                k
                for k, entry in self.memory.collection(collection).items()
                if k.startswith(prefix) and not entry.expired(now)
            )
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

    # == passes (bootstrap.passes) =========================================================
    def tier(self) -> TierReport:
        """The periodic pass: ship every-pass tiers (warm files), checkpoint the journal, age
        memory, then back up to the tiers that are due."""
        return self.passes.tier()

    def tier_files_only(self) -> TierReport:
        """Ship the every-pass tiers only (the CLI's offline flush)."""
        return self.passes.tier_files_only()

    def checkpoint(self) -> None:
        """Every tier written now, so the journal segments they cover are dropped."""
        self.passes.checkpoint()

    def backup(
        self, push: bool = True, push_timeout: float | None = None, compact: bool = True
    ) -> dict[str, Any]:
        """Ship the backup tiers now and, with push, publish them."""
        return self.passes.backup(push, push_timeout, compact)

    backup_git = backup  # the name of the API's POST /v1/backup and older callers

    def push(self, timeout: float | None = None) -> bool:
        """Publish every tier that publishes (git: push); False when one could not."""
        return self.passes.push(timeout)

    def background_tasks(self) -> list[Callable[[], Any]]:
        """Checks to run once after start, off the serving path (git: merge the remote)."""
        return self.passes.background_tasks()

    def seconds_until_push_retry(self) -> float | None:
        """When a failed publish should be tried again (the scheduler sleeps until then)."""
        return self.passes.seconds_until_push_retry()

    def flush(self, backup: bool = True, push_timeout: float | None = None) -> dict[str, Any]:
        """Everything to every tier now; with backup, publish too (SIGTERM, preemption)."""
        return self.passes.flush(backup, push_timeout)

    def _journal_full(self) -> bool:
        return self.passes.journal_full()

    def _checkpoint_journal(self) -> int:
        return self.passes.checkpoint_journal()

    def blocks_on_a_tier(self, cls: PersistenceClass, conditional: bool) -> bool:
        """True when a write waits for a remote tier (postgres): the API runs it off the event
        loop so that other requests, and the tier's group commit, go on meanwhile."""
        routing = self.routing
        return routing.writes_through(cls) or (conditional and routing.arbiter(cls) is not None)

    def batch_blocks_on_a_tier(self, ops: Sequence[BatchOp]) -> bool:
        """blocks_on_a_tier for a batch: True when any operation may wait for PostgreSQL (a
        delete's or check's class taken as its collection's default)."""
        for op in ops:
            try:
                cls = self.resolve_class(op.collection, op.cls)
            except BadRequest:
                continue  # write_batch refuses it, naming the operation
            if self.blocks_on_a_tier(cls, op.conditional):
                return True
        return False

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
        """What `GET /v1/status` shows (assembled in bootstrap.status)."""
        return build_status(self)

    def check_names(self, collection: str, key: str) -> None:
        try:
            check_collection(collection)
            check_key(key)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
