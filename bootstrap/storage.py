"""HybridStorage: the policy that moves records between memory, warm JSON files and git.

Tiers know only themselves; this module decides where a record lives:
- every put lands in memory; file-bound classes are journaled first (critical: fdatasync before
  the put returns, group-committed);
- the tiering pass rewrites changed warm files, checkpoints the journal, and drops records that
  are clean and idle past `hot_age` from memory (their bytes stay readable from the files);
- the backup pass commits critical changes to git and pushes; it runs on its interval, when a
  critical change is older than `warm_age`, on demand, and at shutdown.
The memory limit evicts clean records, least recently used first and cache first; dirty records
are never dropped: they are counted and reported instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import gc
import itertools
import logging
import os
import pickle
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .config import AgentConfig
from .errors import PreconditionFailed
from .records import (
    ENTRY_OVERHEAD,
    Entry,
    InvalidValue,
    PersistenceClass,
    check_collection,
    check_key,
    exact_bytes,
    validate_value,
    version_of,
)
from .tiers.files import FilesTier, StagedFile, parse, read_value
from .tiers.git import GitRecord, GitTier, GitUnavailable, RemoteMoved, redact
from .tiers.journal import Journal, JournalWriteError

log = logging.getLogger("spine.storage")

EVICT_TO_FRACTION = 0.9
# A new VM waits this long for the remote at start; after that it serves, and a backup written
# meanwhile by another VM is merged before this one's first push (see push()).
START_FETCH_TIMEOUT = 15.0
BACKGROUND_PUSH_TIMEOUT = 30.0
LOCK_NAME = ".agent.lock"
# The journal is checkpointed (warm files written, critical changes committed to git, segments
# dropped) once it holds this much: it bounds replay time and memory after a crash, also for an
# agent that never lives to its first 5-minute pass.
JOURNAL_CHECKPOINT_BYTES = 32 * 1024 * 1024
# Memory is compacted after this many removals, once they outnumber the records left.
COMPACT_AFTER_REMOVED = 10_000
RESTORE_SOURCES = ("empty", "files", "git-local", "git-remote")


def release_free_heap() -> None:
    """glibc keeps freed small blocks; malloc_trim returns them to the OS (RSS after restore)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class StorageError(Exception):
    """Base for errors the API maps to a 4xx/5xx with one clear message."""

    status = 500


class BadRequest(StorageError):
    status = 400


class ValueTooLarge(StorageError):
    status = 413


class StorageFull(StorageError):
    """The disk refused the write; nothing was acknowledged, nothing changed."""

    status = 507


@dataclass
class BackupState:
    last_commit_at: float | None = None
    last_commit: str | None = None
    last_push_at: float | None = None
    last_push_error: str | None = None
    push_failures: int = 0
    next_push_at: float = 0.0
    pushed_commit: str | None = None
    unpushed_commits: int = 0
    oldest_unpushed_at: float | None = None


@dataclass
class TierReport:
    files_written: int = 0
    records_written: int = 0
    evicted: int = 0
    expired_cache: int = 0
    journal_segments_dropped: int = 0
    compacted: bool = False
    seconds: float = 0.0


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
        self.files = FilesTier(self.root, clock=clock)
        self.journal = Journal(self.root / "journal")
        self.git = GitTier(
            config.git.path,
            config.git.branch,
            config.git.remote,
            config.git.ssh_key_file,
            config.git.token_file,
            config.git.history_max_age,
            clock=clock,
        )
        self.host = socket.gethostname()
        self.backup = BackupState()
        self.counters = Counters()
        self.restored_from = "empty"
        self.started_at = clock()
        self._mem: dict[str, dict[str, Entry]] = {}
        self._bytes = 0
        self._dirty_files: set[tuple[str, str | None]] = set()
        self._git_deletes: dict[str, dict[str, float]] = {}  # file -> key -> deleted at
        self._git_pending: set[tuple[str, str]] = set()  # (collection, key) not yet in git
        self._oldest_git_change: float | None = None
        self._last_git_backup = clock()
        self._removed_since_compaction = 0
        self._files_covered = 0  # last journal segment the warm files hold
        self._git_covered = 0  # last journal segment git holds
        self._evict_blocked = False
        self._lock = threading.RLock()
        self._maintenance = threading.Lock()
        self._open = False
        self.on_pressure: Callable[[], None] | None = None
        self._push_lock = threading.Lock()
        self._remote_checked = False
        self._lock_fd = -1
        self._last_version = 0  # the write clock (µs): every write takes a larger value

    # == lifecycle ========================================================================
    def initialize(self) -> str:
        """Restore state (warm files + journal, else git), and make the storage ready."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"storage_path {self.root}: cannot create ({exc.strerror})"
            ) from None
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"storage_path {self.root}: not writable by this user")
        self._take_lock()
        self.git.open()
        # Restore builds ~100k long-lived objects: the cyclic collector would rescan them all
        # several times on the way (measured: 1.7-2.8 s with it, 1.0 s without); afterwards
        # they are frozen out of future collections and the freed heap is handed back.
        gc.disable()
        try:
            self._load_files()
            if self.files.present:
                self.restored_from = "files"
                self._merge_newer_git()
            else:
                self.restored_from = self._load_git()
            replayed = self._replay_journal()
        finally:
            gc.enable()
            gc.freeze()
            release_free_heap()
        self._ensure_views()
        self._seed_write_clock()
        if self.journal.size_bytes() > JOURNAL_CHECKPOINT_BYTES:
            self.checkpoint()
        if (
            self.config.git.remote
            and self.git.state.head is not None
            and (self.restored_from != "git-remote")
        ):
            # Unknown whether the remote has the local tip: push it on the next backup.
            self.backup.unpushed_commits = 1
            self.backup.oldest_unpushed_at = self.git.state.written_at
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

    def _ensure_views(self) -> None:
        """Super Spine's views (agents.json, tasks.json, stats.json, ...) exist from the start."""
        created = False
        for collection, cls in self.config.class_map.items():
            name = self.files.file_name(collection, None)
            pending = (collection, None) in self._dirty_files
            if cls.to_files and not pending and not (self.root / name).exists():
                self.files.write_file(name, [])
                created = True
        if created:
            self.files.commit_manifest()

    def close(self, backup: bool = True, push_timeout: float | None = None) -> None:
        """Flush everything to files, commit critical changes and push (the shutdown hook)."""
        if not self._open:
            return
        try:
            self.flush(backup=backup, push_timeout=push_timeout)
        finally:
            self.journal.close()
            self.git.close()
            self._release_lock()
            self._open = False

    def abandon(self) -> None:
        """Let go of the storage path as a killed process would: nothing is written, flushed or
        synced. What `kill -9` leaves, for crash tests and the model-based test."""
        self.journal.abandon()
        self.git.close()
        self._release_lock()
        self._open = False

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
        self._check_names(collection, key)
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
        tombstoned_critical = False
        with self._lock:
            coll = self._mem.get(collection)
            old = coll.get(key) if coll is not None else None
            if if_match is not None or if_absent:
                self._check_precondition(collection, key, old, if_match, if_absent)
            version = self._next_version(old)
            now = version / 1_000_000
            try:
                if pclass.to_files:
                    seq = self.journal.append(collection, key, pclass.value, raw, now)
                elif old is not None and old.cls.to_files:
                    # The record leaves the files (a cache value over a file-bound one): the
                    # journal must say the older value is gone, or a crash brings it back.
                    seq = self.journal.append(collection, key, old.cls.value, None, now)
                    tombstoned_critical = old.cls is PersistenceClass.CRITICAL
                else:
                    seq = 0
            except JournalWriteError as exc:
                self.counters.put_errors += 1
                raise StorageFull(f"write refused, nothing stored: {exc.strerror or exc}") from None
            entry = Entry(raw, pclass, now, pclass.to_files, pclass.to_git)
            self._set_entry(collection, key, entry, now)
            self.counters.puts += 1
            if self._bytes > self.config.memory_limit and not self._evict_blocked:
                self._evict_for_limit()
            elif seq and self._journal_full() and self.on_pressure is not None:
                self.on_pressure()  # an early pass checkpoints the journal
        if (wait and pclass is PersistenceClass.CRITICAL) or tombstoned_critical:
            self.sync(seq)
        return seq, version

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
        newest = max(self.files.written_at or 0.0, self.git.state.written_at or 0.0)
        with self._lock:
            for coll in self._mem.values():
                for entry in coll.values():
                    if entry.mtime > newest:
                        newest = entry.mtime
            self._last_version = max(self._last_version, version_of(newest))

    def _check_precondition(
        self,
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
        coll = self._mem.get(collection)
        entry = coll.get(key) if coll is not None else None
        if entry is None:
            self.counters.misses += 1
            return None
        entry.atime = self.clock()
        self.counters.gets += 1
        value = entry.value
        if value is not None:
            return value
        return self._read_evicted(collection, key, entry)

    def get(self, collection: str, key: str, default: Any = None) -> Any:
        raw = self.get_json(collection, key)
        return default if raw is None else orjson.loads(raw)

    def get_json_versioned(self, collection: str, key: str) -> tuple[bytes, int] | None:
        """(JSON bytes, version) read together, or None: the pair a conditional write needs."""
        while True:
            coll = self._mem.get(collection)
            entry = coll.get(key) if coll is not None else None
            if entry is None:
                self.counters.misses += 1
                return None
            raw = self.get_json(collection, key)
            # A write between the two reads replaced the entry: read the pair again.
            coll = self._mem.get(collection)
            if raw is not None and coll is not None and coll.get(key) is entry:
                return raw, entry.version

    def get_versioned(self, collection: str, key: str) -> tuple[Any, int] | None:
        """(value, version), or None when the record is absent."""
        found = self.get_json_versioned(collection, key)
        return None if found is None else (orjson.loads(found[0]), found[1])

    def current_version(self, collection: str, key: str) -> int | None:
        """The stored version, or None when the record is absent."""
        coll = self._mem.get(collection)
        entry = coll.get(key) if coll is not None else None
        return None if entry is None else entry.version

    def delete(
        self, collection: str, key: str, wait: bool = True, *, if_match: int | None = None
    ) -> bool:
        """Remove a record everywhere it may travel. False when it did not exist. With
        `if_match`, only if the stored version is that one (else PreconditionFailed, also
        when the record is absent)."""
        self._check_names(collection, key)
        with self._lock:
            coll = self._mem.get(collection)
            entry = coll.get(key) if coll is not None else None
            if if_match is not None:
                self._check_precondition(collection, key, entry, if_match, False)
            if entry is None:
                return False
            now = self._next_version(entry) / 1_000_000
            seq = 0
            if entry.cls.to_files:
                try:
                    seq = self.journal.append(collection, key, entry.cls.value, None, now)
                except JournalWriteError as exc:
                    raise StorageFull(f"delete refused, nothing changed: {exc}") from None
            self._remove_entry(collection, key, entry.cls, now)
            self.counters.deletes += 1
        if wait and entry.cls is PersistenceClass.CRITICAL:
            self.sync(seq)
        return True

    def list_records(
        self, collection: str, prefix: str = "", limit: int = 1000
    ) -> tuple[dict[str, Any], bool]:
        """Records of a collection, sorted by key; the flag says the limit cut the list."""
        try:
            check_collection(collection)
        except ValueError as exc:  # a bad name is the caller's error (400), not ours (500)
            raise BadRequest(str(exc)) from None
        with self._lock:
            keys = sorted(k for k in self._mem.get(collection, {}) if k.startswith(prefix))
        result: dict[str, Any] = {}
        for key in keys[:limit]:
            raw = self.get_json(collection, key)
            if raw is not None:
                result[key] = orjson.loads(raw)
        return result, len(keys) > limit

    def record_count(self) -> int:
        return sum(len(c) for c in self._mem.values())

    # == read-only views (for tests and tools; they change nothing) =========================
    @property
    def is_open(self) -> bool:
        """True between initialize() and close()/abandon(): the storage path is locked by us."""
        return self._open

    def is_resident(self, collection: str, key: str) -> bool:
        """True when the record's value is in memory (hot); False when it is evicted (read from
        its warm file on demand) or absent."""
        with self._lock:
            entry = self._mem.get(collection, {}).get(key)
            return entry is not None and entry.value is not None

    # == tiering ==========================================================================
    def tier(self) -> TierReport:
        """The 5-minute pass: write changed warm files, checkpoint the journal, age memory."""
        started = time.perf_counter()
        report = TierReport()
        with self._maintenance:
            self._write_dirty_files(report)
            now = self.clock()
            with self._lock:
                self._age_memory(now, report)
                self._evict_blocked = False
                if self._bytes > self.config.memory_limit:
                    # This is the pass: asking for another one would loop while git-dirty records
                    # hold memory (only a git backup cleans them).
                    self._evict_for_limit(ask_for_pass=False)
            self.counters.tier_passes += 1
        if self.config.tiering.enabled and self._git_due():
            self.backup_git()
        with self._maintenance, self._lock:
            # After the backup: it lets go of the deleted keys that git was still to hear of.
            report.compacted = self._compact_memory()
        if report.compacted:
            release_free_heap()
        report.seconds = time.perf_counter() - started
        return report

    def _compact_memory(self) -> bool:
        """After many deletes, copy the survivors into new objects and new dicts. Freed records
        leave Python's small-object arenas and the dicts' tables partly used, and neither is
        ever handed back while one survivor sits in it (measured: 200k records, 90% deleted,
        the RSS did not fall). The copies pack into few arenas; the rest empty and are freed."""
        removed = self._removed_since_compaction
        if removed < COMPACT_AFTER_REMOVED or removed < self.record_count():
            return False
        # Copies made while the originals live would land in the originals' half-empty pools
        # (pymalloc fills used pools first): serialise the survivors into one large block,
        # free every original, then rebuild into emptied arenas.
        blob = pickle.dumps(self._mem, protocol=pickle.HIGHEST_PROTOCOL)
        self._mem = {}
        self._mem = pickle.loads(blob)
        del blob
        self._removed_since_compaction = 0
        return True

    def _git_due(self) -> bool:
        now = self.clock()
        interval = now - self._last_git_backup >= self.config.tiering.git_backup_interval
        aged = (
            self._oldest_git_change is not None
            and now - self._oldest_git_change >= self.config.tiering.warm_age
        )
        return interval or aged or self._push_retry_due(now) or self._journal_full()

    def _journal_full(self) -> bool:
        return self.journal.size_bytes() > JOURNAL_CHECKPOINT_BYTES

    def checkpoint(self) -> None:
        """Warm files and a git commit (no push, no snapshot) now, so the journal segments they
        cover are dropped."""
        self.tier_files_only()
        self.backup_git(push=False, compact=False)

    def _write_dirty_files(self, report: TierReport) -> None:
        """Rewrite every warm file with changes, then drop the journal segments they cover.

        Each file is staged beside its target (the slow part, outside the lock), then renamed
        into place together with its records' new byte ranges under the lock that evicted
        reads take: a read sees the old file with the old ranges or the new file with the new
        ones. A failure half-way leaves the files already installed consistent, and the rest
        dirty for the next pass; the journal is kept until a whole pass succeeds."""
        with self._lock:
            dirty = sorted(self._dirty_files, key=lambda d: (d[0], d[1] or ""))
            self._dirty_files = set()
            closed_segment = self.journal.rotate()
            plans: list[tuple[str, str | None, list[tuple[str, Entry, bytes | None]]]] = []
            for collection, override in dirty:
                items = [
                    (key, entry, entry.value)
                    for key, entry in self._mem.get(collection, {}).items()
                    if entry.cls.to_files and self._override(collection, entry.cls) == override
                ]
                items.sort(key=lambda item: item[0])
                plans.append((collection, override, items))
        done = 0
        try:
            for collection, override, items in plans:
                name = self.files.file_name(collection, override)
                pairs, kept = self._values_for_rewrite(name, items)
                staged = self.files.stage(name, pairs, [entry.version for _, entry in kept])
                try:
                    self._install(collection, staged, kept)
                except OSError:
                    self.files.discard(staged)
                    raise
                done += 1
                report.files_written += 1
                report.records_written += len(pairs)
            self.files.sync_dir()
            self.files.commit_manifest()
        except OSError as exc:
            with self._lock:
                for collection, override, _ in plans[done:]:
                    self._dirty_files.add((collection, override))
            with contextlib.suppress(OSError):  # the disk may refuse this too; load() copes
                self.files.commit_manifest()
            log.error(
                "warm files could not be written; journal kept",
                extra={"error": str(exc), "storage_path": str(self.root)},
            )
            raise StorageFull(f"warm files not written: {exc.strerror or exc}") from None
        self._files_covered = closed_segment
        report.journal_segments_dropped = self._checkpoint_journal()

    def _install(self, collection: str, staged: StagedFile, kept: list[tuple[str, Entry]]) -> None:
        """Rename the file into place and move its records to their new lines, atomically for
        readers. A record replaced or deleted since the plan is a new entry (or none): it stays
        dirty and the next pass writes it."""
        with self._lock:
            self.files.install(staged)
            coll = self._mem.get(collection, {})
            for (key, entry), location in zip(kept, staged.locations, strict=True):
                if coll.get(key) is entry:
                    entry.loc = location
                    entry.dirty_files = False

    def _values_for_rewrite(
        self, name: str, items: list[tuple[str, Entry, bytes | None]]
    ) -> tuple[list[tuple[str, bytes]], list[tuple[str, Entry]]]:
        """Resident values as planned; evicted ones read from the file being replaced (only
        this pass renames warm files, so its ranges are still the right ones)."""
        pairs: list[tuple[str, bytes]] = []
        kept: list[tuple[str, Entry]] = []
        old_fd = -1
        try:
            for key, entry, value in items:
                if value is None and entry.loc is not None:
                    if old_fd < 0:
                        old_fd = os.open(self.root / name, os.O_RDONLY | os.O_CLOEXEC)
                    value = read_value(old_fd, entry.loc, name)
                if value is not None:
                    pairs.append((key, value))
                    kept.append((key, entry))
        finally:
            if old_fd >= 0:
                os.close(old_fd)
        return pairs, kept

    def _override(self, collection: str, cls: PersistenceClass) -> str | None:
        """None when the record has its collection's mapped class, else the class name."""
        return None if cls is self.config.class_of(collection) else cls.value

    def _age_memory(self, now: float, report: TierReport) -> None:
        hot_age = self.config.tiering.hot_age
        for collection, coll in self._mem.items():
            expired = []
            for key, entry in coll.items():
                if now - entry.atime < hot_age or entry.value is None:
                    continue
                if entry.cls is PersistenceClass.CACHE:
                    expired.append(key)
                elif self._evictable(entry):
                    self._bytes -= entry.size
                    entry.value = None
                    report.evicted += 1
            for key in expired:
                self._bytes -= coll.pop(key).size
                report.expired_cache += 1
            self._removed_since_compaction += len(expired)
            _ = collection
        self._drop_empty_collections()

    def _evictable(self, entry: Entry) -> bool:
        return (
            entry.value is not None
            and not entry.dirty_files
            and not entry.dirty_git
            and entry.loc is not None
        )

    def _evict_for_limit(self, ask_for_pass: bool = True) -> None:
        """Over the limit: drop clean records, cache first, then least recently used."""
        target = int(self.config.memory_limit * EVICT_TO_FRACTION)
        candidates = []
        for collection, coll in self._mem.items():
            for key, entry in coll.items():
                if entry.value is None:
                    continue
                if entry.cls is PersistenceClass.CACHE or self._evictable(entry):
                    candidates.append((entry.cls.eviction_rank, entry.atime, collection, key))
        candidates.sort()
        for _, _, collection, key in candidates:
            if self._bytes <= target:
                break
            coll = self._mem[collection]
            entry = coll[key]
            self._bytes -= entry.size
            if entry.cls is PersistenceClass.CACHE:
                del coll[key]
                self._removed_since_compaction += 1
            else:
                entry.value = None
            self.counters.evictions += 1
        if self._bytes > self.config.memory_limit:
            # What is left is dirty: never dropped. Stop rescanning until a pass cleans it.
            self._evict_blocked = True
            if ask_for_pass and self.on_pressure is not None:
                self.on_pressure()  # ask for an early pass: it makes dirty records clean
            log.warning(
                "memory limit exceeded by dirty records; waiting for the next pass",
                extra={"memory_bytes": self._bytes, "limit": self.config.memory_limit},
            )
        self._drop_empty_collections()

    def _drop_empty_collections(self) -> None:
        for name in [n for n, c in self._mem.items() if not c]:
            del self._mem[name]

    def _read_evicted(self, collection: str, key: str, entry: Entry) -> bytes | None:
        """One pread of the record's line. The entry is looked up again under the lock: the
        one the caller found without it may have been replaced since (a put, a compaction),
        and only the current entry's byte range matches the file a pass installed."""
        with self._lock:
            current = self._mem.get(collection, {}).get(key)
            if current is None:
                return None  # deleted meanwhile
            entry = current
            if entry.value is not None:
                return entry.value
            if entry.loc is None:
                return None
            name = self.files.file_name(collection, self._override(collection, entry.cls))
            try:
                return self.files.read_range(name, entry.loc)
            except OSError as exc:
                log.error(
                    "evicted record unreadable",
                    extra={"collection": collection, "key": key, "error": str(exc)},
                )
                raise StorageError(f"record {collection}/{key} could not be read: {exc}") from None

    def _set_entry(self, collection: str, key: str, entry: Entry, now: float) -> None:
        """The one way a record enters memory outside restore's bulk load: charge its bytes,
        queue its tiers, and tell the tiers an older copy of another class is gone."""
        coll = self._mem.get(collection)
        if coll is None:
            coll = self._mem[collection] = {}
        old = coll.get(key)
        if old is not None:
            if old.value is not None:
                self._bytes -= old.size
            if old.cls is not entry.cls:
                self._forget_in_tiers(collection, key, old.cls, now)
        coll[key] = entry
        if entry.value is not None:
            self._bytes += entry.size
        override = self._override(collection, entry.cls)
        if entry.dirty_files:
            self._dirty_files.add((collection, override))
        if entry.dirty_git:
            self._git_pending.add((collection, key))
            queued = self._git_deletes.get(self.files.file_name(collection, override))
            if queued:
                queued.pop(key, None)  # a put after a delete: the put is what git must hold
            if self._oldest_git_change is None:
                self._oldest_git_change = now

    def _remove_entry(
        self, collection: str, key: str, cls: PersistenceClass, when: float
    ) -> None:
        """The one way a record leaves for good (delete, replayed delete, adopted delete). The
        delete reaches the tiers of the class the journal names even when memory no longer holds
        the record (a replayed delete whose put the warm files already dropped)."""
        coll = self._mem.get(collection)
        old = coll.pop(key, None) if coll is not None else None
        if old is not None:
            self._removed_since_compaction += 1
            if old.value is not None:
                self._bytes -= old.size
            if old.cls is not cls:
                self._forget_in_tiers(collection, key, old.cls, when)
            if not coll:
                del self._mem[collection]
        self._forget_in_tiers(collection, key, cls, when)

    def _forget_in_tiers(
        self, collection: str, key: str, cls: PersistenceClass, when: float
    ) -> None:
        """A delete (or class change) must reach the files and git copies too."""
        override = self._override(collection, cls)
        if cls.to_files:
            self._dirty_files.add((collection, override))
        if cls.to_git:
            name = self.files.file_name(collection, override)
            self._git_deletes.setdefault(name, {})[key] = when
            if self._oldest_git_change is None:
                self._oldest_git_change = when

    # == git backup =======================================================================
    def backup_git(
        self, push: bool = True, push_timeout: float | None = None, compact: bool = True
    ) -> dict[str, Any]:
        """Commit critical changes (a segment, or a fresh snapshot when due) and push.
        With compact=False (shutdown, preemption) the snapshot waits: it costs seconds to
        write and push, more than a stop budget can spare; a segment is always cheap."""
        with self._maintenance:
            changes, touched, deletes, covered = self._collect_git_changes()
            sha = None
            try:
                if (
                    compact
                    and self.git.needs_snapshot()
                    and (changes or self.git.state.head is None or self.git.state.segments)
                ):
                    sha = self.git.commit_snapshot(self._critical_files(), self.host)
                elif changes:
                    sha = self.git.commit_changes(changes, self.host)
            except Exception:
                self._requeue_git(touched, deletes)
                raise
            now = self.clock()
            self._last_git_backup = now
            self._git_covered = covered
            self._checkpoint_journal()
            if sha is not None:
                self.backup.unpushed_commits += 1
                if self.backup.oldest_unpushed_at is None:
                    self.backup.oldest_unpushed_at = now
                self.backup.last_commit_at = now
                self.backup.last_commit = sha.hex()
                self.counters.backups += 1
        if push:
            self.push(timeout=push_timeout)
        return {"commit": sha.hex() if sha else None, "changes": len(changes)}

    def _collect_git_changes(
        self,
    ) -> tuple[list[GitRecord], list[tuple[str, str, Entry]], dict[str, dict[str, float]], int]:
        """The critical changes since the last backup, O(changes), and the last journal segment
        they cover (a segment is dropped only once the files and git both hold it)."""
        changes: list[GitRecord] = []
        touched: list[tuple[str, str, Entry]] = []
        with self._lock:
            covered = self.journal.rotate()
            pending, self._git_pending = self._git_pending, set()
            for collection, key in sorted(pending):
                entry = self._mem.get(collection, {}).get(key)
                if entry is None or not entry.dirty_git:
                    continue  # deleted since (the delete is queued below) or already taken
                name = self.files.file_name(collection, self._override(collection, entry.cls))
                assert entry.value is not None  # dirty_git records are never evicted
                changes.append(GitRecord(name, key, entry.mtime, entry.value))
                entry.dirty_git = False
                touched.append((collection, key, entry))
            deletes, self._git_deletes = self._git_deletes, {}
            for name, keys in deletes.items():
                for key, when in keys.items():
                    changes.append(GitRecord(name, key, when, None))
            self._oldest_git_change = None
        return changes, touched, deletes, covered

    def _requeue_git(
        self, touched: list[tuple[str, str, Entry]], deletes: dict[str, dict[str, float]]
    ) -> None:
        """A commit that failed leaves its changes pending, deletes included."""
        with self._lock:
            for collection, key, entry in touched:
                entry.dirty_git = True
                self._git_pending.add((collection, key))
            for name, keys in deletes.items():
                queued = self._git_deletes.setdefault(name, {})
                for key, when in keys.items():
                    queued.setdefault(key, when)
            self._oldest_git_change = self.clock()

    def _checkpoint_journal(self) -> int:
        """Drop the journal segments both the warm files and git hold: until then a crash
        replays them, so no change (a delete bound for git included) is only in memory."""
        return self.journal.drop_through(min(self._files_covered, self._git_covered))

    def _critical_files(self) -> dict[str, Path]:
        """The snapshot's content: right after a file pass, the critical warm files hold every
        critical record, in the snapshot's own layout, so they are streamed into git as is."""
        self._write_dirty_files(TierReport())
        files: dict[str, Path] = {}
        for path in sorted(self.root.glob("*.json")):
            names = self.files.parse_name(path.name)
            if names is None:
                continue
            collection, override = names
            cls = PersistenceClass(override) if override else self.config.class_of(collection)
            if cls is PersistenceClass.CRITICAL:
                files[path.name] = path
        return files

    def _push_retry_due(self, now: float) -> bool:
        return self.backup.last_push_error is not None and now >= self.backup.next_push_at

    def push(self, timeout: float | None = None) -> bool:
        """Push the branch; on failure keep serving and back off (doubling, capped).

        The first push of a process checks the remote tip: a backup this host has not merged
        (another VM's, written while this one started without the remote) is merged first,
        newer record wins, and the push is leased on that tip, so no backup is overwritten."""
        if not self.config.git.remote or self.git.state.head is None:
            return False
        deadline = time.monotonic() + (timeout or BACKGROUND_PUSH_TIMEOUT)
        # A push already in flight (a background retry against a hanging remote) must not
        # hold a shutdown past its budget: wait for it only as long as the budget allows.
        if not self._push_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return self._push_failed(GitUnavailable("an earlier push is still running"))
        try:
            if self.git.state.head.hex() == self.backup.pushed_commit:
                return True
            try:
                if not self._remote_checked:
                    self._merge_remote(max(1.0, deadline - time.monotonic()))
                remaining = deadline - time.monotonic()
                if remaining < 1.0:
                    raise GitUnavailable("no time left in the budget to push")
                self.git.push(self.git.known_remote_tip(), timeout=remaining)
            except RemoteMoved as exc:
                self._remote_checked = False
                return self._push_failed(exc)
            except (GitUnavailable, OSError) as exc:
                return self._push_failed(exc)
            self.backup.last_push_at = self.clock()
            self.backup.last_push_error = None
            self.backup.push_failures = 0
            self.backup.pushed_commit = self.git.state.head.hex()
            self.backup.unpushed_commits = 0
            self.backup.oldest_unpushed_at = None
            return True
        finally:
            self._push_lock.release()

    def _push_failed(self, exc: Exception) -> bool:
        self.backup.push_failures += 1
        self.backup.last_push_error = redact(str(exc))
        delay = min(self.config.git.push_retry_max, 5.0 * 2 ** (self.backup.push_failures - 1))
        self.backup.next_push_at = self.clock() + delay
        log.warning(
            "push failed; will retry",
            extra={
                "error": self.backup.last_push_error,
                "retry_in_s": delay,
                "failures": self.backup.push_failures,
            },
        )
        return False

    def _merge_remote(self, timeout: float) -> None:
        """Make sure the remote tip is merged here before replacing it."""
        tip = self.git.remote_tip(timeout)
        if tip is not None and not self.git.is_merged(tip):
            state = self.git.fetch_foreign(timeout)
            if state is not None:
                snapshot, changes = self.git.read_tip(state)
                taken = self._adopt(snapshot, changes, state.snapshot_at)
                log.warning(
                    "the remote branch held a backup this host had not merged; merged it",
                    extra={"remote_tip": tip.hex(), "records_taken": taken},
                )
                self.backup_git(push=False)
            self.git._record_remote_tip(tip)
        elif tip is None and self.git.known_remote_tip() is not None:
            self.git._record_remote_tip(None)  # the branch was deleted on the remote
        self._remote_checked = True

    def _adopt(
        self, snapshot: dict[str, bytes], changes: list[GitRecord], snapshot_at: float
    ) -> int:
        """Take a foreign backup's records where they are newer than ours. They are journaled
        like puts, so they are as durable here as anything written locally."""
        incoming: dict[tuple[str, str], tuple[float, bytes | None]] = {}
        for name, blob in snapshot.items():
            for key, data, _ in parse(blob) or []:
                incoming[(name, key)] = (snapshot_at, data)
        for rec in changes:
            incoming[(rec.file, rec.key)] = (rec.mtime, rec.value)
        taken = 0
        with self._lock:
            for (name, key), (mtime, value) in incoming.items():
                names = self.files.parse_name(name)
                if names is None:
                    continue
                collection, override = names
                cls = PersistenceClass(override) if override else PersistenceClass.CRITICAL
                local = self._mem.get(collection, {}).get(key)
                if local is not None and local.mtime >= mtime:
                    continue
                self.journal.append(collection, key, cls.value, value, mtime)
                if value is None:
                    self._remove_entry(collection, key, cls, mtime)
                else:
                    self._set_entry(collection, key, Entry(value, cls, mtime, True, True), mtime)
                taken += 1
        self.sync()
        return taken

    def check_remote(self, timeout: float = START_FETCH_TIMEOUT) -> bool:
        """Merge a newer backup from the remote (the disk came from an old snapshot, or another
        VM wrote the branch). Run in the background after start: a VM with its warm files
        serves at once instead of waiting on a remote that may never answer; writes made
        meanwhile are newer and win the merge. False when the remote could not be checked (the
        first push checks again)."""
        if not self.config.git.remote or self._remote_checked:
            return True
        if not self._push_lock.acquire(timeout=timeout):
            return False
        try:
            self._merge_remote(timeout)
        except (GitUnavailable, OSError) as exc:
            self.backup.last_push_error = redact(str(exc))
            log.warning(
                "remote not checked; will check before the first push",
                extra={"error": self.backup.last_push_error},
            )
            return False
        finally:
            self._push_lock.release()
        return True

    def seconds_until_push_retry(self) -> float | None:
        """When a failed push should be tried again (the scheduler sleeps until then)."""
        if not self.backup.last_push_error or not self.backup.unpushed_commits:
            return None
        return max(0.0, self.backup.next_push_at - self.clock())

    def flush(self, backup: bool = True, push_timeout: float | None = None) -> dict[str, Any]:
        """Everything to disk now; with backup, commit and push too (SIGTERM, preemption)."""
        self.sync()
        report = self.tier_files_only()
        result: dict[str, Any] = {"files_written": report.files_written}
        if backup:
            result.update(self.backup_git(push=True, push_timeout=push_timeout, compact=False))
            result["pushed"] = (
                self.backup.pushed_commit
                == (self.git.state.head.hex() if self.git.state.head else None)
                if self.config.git.remote
                else None
            )
        return result

    def tier_files_only(self) -> TierReport:
        report = TierReport()
        with self._maintenance:
            self._write_dirty_files(report)
        return report

    # == restore ==========================================================================
    def _load_files(self) -> int:
        """Warm files into memory (values while under the limit, else only their location)."""
        count = 0
        loaded_at = self.files.written_at or self.clock()
        with self._lock:
            for collection, cls_name, records in self.files.load():
                if not self._known_collection(collection):
                    continue
                cls = PersistenceClass(cls_name) if cls_name else self.config.class_of(collection)
                name = self.files.file_name(collection, cls_name)
                versions = self.files.take_versions(name)
                if cls.to_files:
                    self._bulk_insert(collection, cls, records, loaded_at, name, versions)
                    count += len(records)
        return count

    def _bulk_insert(
        self,
        collection: str,
        cls: PersistenceClass,
        records: list[tuple[str, bytes, int]],
        mtime: float,
        file_name: str | None,
        versions: list[int] | None = None,
    ) -> None:
        """Restore's tight loop. With a file name the records are clean copies of that warm
        file (evictable); without one (from git) they are dirty until the next pass writes them.
        `versions` (the file's sidecar, line by line) keep the records' own versions; without
        them a record's version is `mtime`'s."""
        override = None if cls is self.config.class_of(collection) else cls.value
        coll = self._mem.setdefault(collection, {})
        used, limit = self._bytes, self.config.memory_limit
        stamps = versions if versions is not None else itertools.repeat(None)
        for (key, value, location), version in zip(records, stamps, strict=False):
            old = coll.get(key)
            if old is not None and old.value is not None:
                used -= old.size
            written = mtime if version is None else version / 1_000_000
            entry = Entry(value, cls, written, file_name is None or location < 0, False)
            entry.atime = mtime  # idle since the load, as before versions existed
            if entry.dirty_files:
                self._dirty_files.add((collection, override))
                used += len(value) + ENTRY_OVERHEAD
            else:
                entry.loc = location
                size = len(value) + ENTRY_OVERHEAD
                if used + size > limit:
                    entry.value = None  # the value stays in the warm file
                else:
                    used += size
            coll[key] = entry
        self._bytes = used

    def _known_collection(self, name: str) -> bool:
        try:
            check_collection(name)
        except ValueError:
            return False
        return True

    def _insert_restored(self, collection: str, key: str, entry: Entry) -> None:
        coll = self._mem.setdefault(collection, {})
        old = coll.get(key)
        if old is not None and old.value is not None:
            self._bytes -= old.size
        if self._bytes + entry.size > self.config.memory_limit and entry.loc is not None:
            entry.value = None  # keep the index only; the value stays in the warm file
        coll[key] = entry
        if entry.value is not None:
            self._bytes += entry.size

    def _load_git(self) -> str:
        source = "git-local"
        if self.git.state.head is None:
            try:
                if not self.git.fetch(timeout=START_FETCH_TIMEOUT):
                    return "empty"
            except GitUnavailable as exc:
                log.error(
                    "remote unreachable at start; starting empty", extra={"error": redact(str(exc))}
                )
                self.backup.last_push_error = redact(str(exc))
                return "empty"
            source = "git-remote"
            self._remote_checked = True  # just fetched: the remote tip is what was restored
        self._apply_git_records(since=None)
        return source

    def _merge_newer_git(self) -> None:
        """Files exist; a git backup newer than them (e.g. the disk came from an old snapshot)
        contributes only records changed after the files were written."""
        local_time = self.files.written_at or 0.0
        if self.git.state.head is None:
            return
        if self.files.lost:
            # A quarantined file's records are gone from the warm tier: the git backup is the
            # newest copy left of them, whatever its age.
            self._apply_git_records(since=None, only=set(self.files.lost))
        if self.git.state.written_at > local_time:
            self._apply_git_records(since=local_time)

    def _apply_git_records(self, since: float | None, only: set[str] | None = None) -> None:
        """Load the snapshot, then replay change segments in order (later wins). With `since`,
        only what is newer than that moment is applied (never older over newer); with `only`,
        only those warm files' records."""
        snapshot, changes = self.git.read_tip()
        snapshot_at = self.git.state.snapshot_at
        if only is not None:
            snapshot = {name: blob for name, blob in snapshot.items() if name in only}
            changes = [rec for rec in changes if rec.file in only]
        with self._lock:
            if since is None or snapshot_at > since:
                for name, blob in snapshot.items():
                    names = self.files.parse_name(name)
                    lines = parse(blob)
                    if names is None or lines is None:
                        log.error("git snapshot file unreadable; skipped", extra={"file": name})
                        continue
                    cls = PersistenceClass(names[1]) if names[1] else PersistenceClass.CRITICAL
                    versions = self.files.versions_of_content(name, blob, len(lines))
                    self._bulk_insert(names[0], cls, lines, snapshot_at, None, versions)
            for rec in changes:
                if since is not None and rec.mtime <= since:
                    continue
                names = self.files.parse_name(rec.file)
                if names is None:
                    continue
                collection, override = names
                self._dirty_files.add((collection, override))
                if rec.value is None:
                    coll = self._mem.get(collection)
                    old = coll.pop(rec.key, None) if coll is not None else None
                    if old is not None and old.value is not None:
                        self._bytes -= old.size
                    continue
                entry = Entry(rec.value, PersistenceClass.CRITICAL, rec.mtime, True, False)
                self._insert_restored(collection, rec.key, entry)
            self._drop_empty_collections()

    def _replay_journal(self) -> int:
        ops = self.journal.open()
        with self._lock:
            for op in ops:
                cls = PersistenceClass.parse(op.cls)
                if op.value is None:
                    self._remove_entry(op.collection, op.key, cls, op.ts)
                else:
                    entry = Entry(op.value, cls, op.ts, True, cls.to_git)
                    self._set_entry(op.collection, op.key, entry, op.ts)
        return len(ops)

    # == status ===========================================================================
    def status(self) -> dict[str, Any]:
        """What `GET /v1/status` shows. No secrets: the remote URL is redacted."""
        with self._lock:
            per_class = {c.value: {"records": 0, "in_memory": 0} for c in PersistenceClass}
            dirty_files = dirty_git = 0
            for coll in self._mem.values():
                for entry in coll.values():
                    stats = per_class[entry.cls.value]
                    stats["records"] += 1
                    stats["in_memory"] += entry.value is not None
                    dirty_files += entry.dirty_files
                    dirty_git += entry.dirty_git
            counts = {name: len(coll) for name, coll in sorted(self._mem.items())}
            memory_bytes = self._bytes
        now = self.clock()
        head = self.git.state.head.hex() if self.git.state.head else None
        return {
            "host": self.host,
            "storage_path": str(self.root),
            "restored_from": self.restored_from,
            "uptime_s": round(now - self.started_at, 3),
            "records": sum(counts.values()),
            "collections": counts,
            "classes": per_class,
            "tiers": {
                "memory": {
                    "bytes": memory_bytes,
                    "limit": self.config.memory_limit,
                    "records": sum(c["in_memory"] for c in per_class.values()),
                    "over_limit": memory_bytes > self.config.memory_limit,
                },
                "files": {
                    "files": self.files.file_count(),
                    "bytes": self.files.size_bytes(),
                    "last_written_at": self.files.written_at,
                    "journal_bytes": self.journal.size_bytes(),
                    "quarantined": self.files.quarantined(),
                },
                "git": {
                    "path": str(self.config.git.path),
                    "branch": self.git.branch,
                    "remote": redact(self.config.git.remote) if self.config.git.remote else None,
                    "head": head,
                    "segments": len(self.git.state.segments),
                },
            },
            "dirty": {
                "files": dirty_files,
                "git": dirty_git,
                "unevictable_over_limit": memory_bytes > self.config.memory_limit,
            },
            "backup": {
                "last_commit_at": self.backup.last_commit_at,
                "last_push_at": self.backup.last_push_at,
                "last_push_error": self.backup.last_push_error,
                "push_failures": self.backup.push_failures,
                "remote_lag_commits": self._remote_lag(head),
                "remote_lag_s": self._remote_lag_seconds(now, head),
            },
        }

    def _remote_lag(self, head: str | None) -> int | None:
        """Commits the remote does not have yet (None without a remote)."""
        if not self.config.git.remote:
            return None
        return self.backup.unpushed_commits

    def _remote_lag_seconds(self, now: float, head: str | None) -> float | None:
        """Age of the oldest commit the remote does not have: the current recovery point."""
        if not self.config.git.remote:
            return None
        if self.backup.oldest_unpushed_at is None:
            return 0.0
        return round(now - self.backup.oldest_unpushed_at, 3)

    @staticmethod
    def _check_names(collection: str, key: str) -> None:
        try:
            check_collection(collection)
            check_key(key)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
