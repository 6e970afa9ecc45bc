"""The warm files' replica: which collection files are stale, and the pass that rewrites them.

Also the store of evicted values: a clean record's `loc` is its line in its warm file, read
back with one pread (`read_back`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any, ClassVar

from ..errors import StorageFull
from ..records import Entry, PersistenceClass, check_collection
from ..tiers.files import Expiries, FilesTier, StagedFile, read_value
from . import Context, PassReport, WrittenByItsPass

log = logging.getLogger("spine.storage")

Dirty = tuple[str, str | None]  # (collection, class override): one warm file


class FilesReplica(WrittenByItsPass):
    """Rewrites changed warm files on every pass; holds what eviction needs."""

    name: ClassVar[str] = "files"
    every_pass: ClassVar[bool] = True

    def __init__(self, ctx: Context, bit: int) -> None:
        self.ctx = ctx
        self.bit = bit
        self.backend = FilesTier(ctx.root, clock=ctx.clock)
        self.covered = 0  # last journal segment the warm files hold
        self.commits = 0  # nothing to publish beyond this host
        self._dirty: set[Dirty] = set()
        ctx.memory.read_back = self.read_back

    # -- queued work -----------------------------------------------------------------------
    def open(self) -> None:
        """Nothing to open: the storage path exists and is locked by the storage."""

    def note_put(self, collection: str, key: str, entry: Entry, now: float) -> None:
        self._dirty.add((collection, self.ctx.override(collection, entry.cls)))

    def note_delete(self, collection: str, key: str, cls: PersistenceClass, when: float) -> None:
        self._dirty.add((collection, self.ctx.override(collection, cls)))

    def note_bulk(self, collection: str, cls: PersistenceClass) -> None:
        self._dirty.add((collection, self.ctx.override(collection, cls)))

    def pending_work(self) -> bool:
        return bool(self._dirty)

    def due(self, now: float) -> bool:
        return True

    def retry_in(self, now: float) -> float | None:
        return None

    def background(self) -> Callable[[], Any] | None:
        return None

    def publish(self, deadline: float) -> bool:
        """Written files are durable when ship returns: nothing beyond this host to reach."""
        return True

    def published(self) -> bool | None:
        return None

    # -- the pass ----------------------------------------------------------------------------
    def ship(self, report: PassReport, compact: bool = True) -> dict[str, Any]:
        """Rewrite every warm file with changes, then drop the journal segments they cover.

        Each file is staged beside its target (the slow part, outside the lock), then renamed
        into place together with its records' new byte ranges under the lock that evicted
        reads take: a read sees the old file with the old ranges or the new file with the new
        ones. A failure half-way leaves the files already installed consistent, and the rest
        dirty for the next pass; the journal is kept until a whole pass succeeds."""
        memory, bit = self.ctx.memory, self.bit
        with memory.lock:
            dirty = sorted(self._dirty, key=lambda d: (d[0], d[1] or ""))
            self._dirty = set()
            closed_segment = self.ctx.journal.rotate()
            plans: list[tuple[str, str | None, list[tuple[str, Entry, bytes | None]]]] = []
            for collection, override in dirty:
                items = [
                    (key, entry, entry.value)
                    for key, entry in memory.collection(collection).items()
                    if self.ctx.routes.mask(entry.cls) & bit
                    and self.ctx.override(collection, entry.cls) == override
                ]
                items.sort(key=lambda item: item[0])
                plans.append((collection, override, items))
            expiries = self._expiries()
        done = 0
        files = self.backend
        try:
            files.write_expiries(expiries)
            for collection, override, items in plans:
                name = files.file_name(collection, override)
                pairs, kept = self._values_for_rewrite(name, items)
                staged = files.stage(name, pairs, [entry.version for _, entry in kept])
                try:
                    self._install(collection, staged, kept)
                except OSError:
                    files.discard(staged)
                    raise
                done += 1
                report.files_written += 1
                report.records_written += len(pairs)
            files.sync_dir()
            files.commit_manifest()
        except OSError as exc:
            with memory.lock:
                for collection, override, _ in plans[done:]:
                    self._dirty.add((collection, override))
            with contextlib.suppress(OSError):  # the disk may refuse this too; load() copes
                files.commit_manifest()
            log.error(
                "warm files could not be written; journal kept",
                extra={"error": str(exc), "storage_path": str(self.ctx.root)},
            )
            raise StorageFull(f"warm files not written: {exc.strerror or exc}") from None
        self.covered = closed_segment
        report.journal_segments_dropped = self.ctx.checkpoint_journal()
        return {"files_written": report.files_written}

    def _expiries(self) -> Expiries:
        """Version and expiry of every record of this tier with a time to live (caller holds
        the lock: the table matches the plan the files are written from)."""
        memory, mask_of, bit = self.ctx.memory, self.ctx.routes.mask, self.bit
        table: Expiries = {}
        for collection, key in memory.expiring():
            entry = memory.entry(collection, key)
            if entry is not None and entry.expires is not None and mask_of(entry.cls) & bit:
                table.setdefault(collection, {})[key] = [entry.version, entry.expires]
        return table

    def _apply_expiries(self) -> None:
        """Give the loaded records their time to live back (caller holds the lock): only where
        the version is the one the table was written for."""
        memory = self.ctx.memory
        for collection, keys in self.backend.read_expiries().items():
            for key, (version, expires) in keys.items():
                entry = memory.entry(collection, key)
                if entry is not None and entry.version == version:
                    entry.expires = float(expires)

    def _install(self, collection: str, staged: StagedFile, kept: list[tuple[str, Entry]]) -> None:
        """Rename the file into place and move its records to their new lines, atomically for
        readers. A record replaced or deleted since the plan is a new entry (or none): it stays
        dirty and the next pass writes it."""
        memory = self.ctx.memory
        with memory.lock:
            self.backend.install(staged)
            coll = memory.collection(collection)
            clear = ~self.bit
            for (key, entry), location in zip(kept, staged.locations, strict=True):
                if coll.get(key) is entry:
                    entry.loc = location
                    entry.pending &= clear

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
                        old_fd = os.open(self.ctx.root / name, os.O_RDONLY | os.O_CLOEXEC)
                    value = read_value(old_fd, entry.loc, name)
                if value is not None:
                    pairs.append((key, value))
                    kept.append((key, entry))
        finally:
            if old_fd >= 0:
                os.close(old_fd)
        return pairs, kept

    def read_back(self, collection: str, cls: PersistenceClass, location: int) -> bytes:
        """An evicted record's value: one pread of its line (the caller holds the lock)."""
        name = self.backend.file_name(collection, self.ctx.override(collection, cls))
        return self.backend.read_range(name, location)

    def ready(self, restored_from: str) -> None:
        self.ensure_views()

    def ensure_views(self) -> None:
        """Super Spine's views (agents.json, tasks.json, stats.json, ...) exist from the start."""
        created = False
        root = self.ctx.root
        for collection, cls in self.ctx.config.class_map.items():
            name = self.backend.file_name(collection, None)
            pending = (collection, None) in self._dirty
            routed = self.ctx.routes.mask(cls) & self.bit
            if routed and not pending and not (root / name).exists():
                self.backend.write_file(name, [])
                created = True
        if created:
            self.backend.commit_manifest()

    # -- restore -----------------------------------------------------------------------------
    def restore_all(self) -> str | None:
        """Warm files into memory (values while under the limit, else only their location);
        "files" when the tier has state (even with no record left), else None."""
        memory, routes, config = self.ctx.memory, self.ctx.routes, self.ctx.config
        # The records' time is when the files were written (the manifest's mark): a change
        # made elsewhere after that is newer, one made before is not.
        loaded_at = self.backend.open() or self.ctx.clock()
        with memory.lock:
            for collection, cls_name, records in self.backend.load():
                if not _known_collection(collection):
                    continue
                cls = PersistenceClass(cls_name) if cls_name else config.class_of(collection)
                versions = self.backend.take_versions(self.backend.file_name(collection, cls_name))
                if routes.mask(cls) & self.bit:
                    pending = routes.owed_after_restore(cls, self.name) | self.bit
                    if memory.bulk_insert(
                        collection, records, cls, loaded_at, pending, True, versions
                    ):
                        self.ctx.note_bulk(collection, cls, pending)
            self._apply_expiries()
        return self.name if self.backend.present else None

    def restore_mark(self) -> tuple[float | None, list[str]]:
        """When the files were written, and which files were lost to quarantine at load."""
        return self.backend.written_at, list(self.backend.lost)

    def restore_newer(self, since: float, lost: list[str]) -> None:
        """The warm files are the first copy: nothing newer to take from them."""

    # -- status ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "tiers": {
                "files": {
                    "files": self.backend.file_count(),
                    "bytes": self.backend.size_bytes(),
                    "last_written_at": self.backend.written_at,
                    "journal_bytes": self.ctx.journal.size_bytes(),
                    "quarantined": self.backend.quarantined(),
                }
            }
        }

    def close(self) -> None:
        """Nothing held open: every file is closed after each write or read."""


def _known_collection(name: str) -> bool:
    try:
        check_collection(name)
    except ValueError:
        return False
    return True
