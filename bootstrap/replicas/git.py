"""The git backup's replica: which records and deletes git has not heard of, the commit that
takes them, the push, and the merge of a backup another host wrote to the same branch.

It follows the warm files (tiers.FOLLOWS): a snapshot streams the warm files into git as they
are, right after a files pass.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..policy import backup_due, retry_delay
from ..records import Entry, PersistenceClass
from ..tiers.files import FilesTier, parse
from ..tiers.git import GitRecord, GitTier, GitUnavailable, RemoteMoved, redact
from . import Context, PassReport, Replica, WrittenByItsPass

log = logging.getLogger("spine.storage")

# A new VM waits this long for the remote at start; after that it serves, and a backup written
# meanwhile by another VM is merged before this one's first push (see push()).
START_FETCH_TIMEOUT = 15.0
BACKGROUND_PUSH_TIMEOUT = 30.0


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


class GitReplica(WrittenByItsPass):
    """Commits what is pending (a segment, or a fresh snapshot when due) and pushes it."""

    name: ClassVar[str] = "git"
    every_pass: ClassVar[bool] = False

    def __init__(self, ctx: Context, bit: int, upstream: Replica | None = None) -> None:
        if upstream is None:
            raise ValueError("the git tier backs up the warm files: route files before git")
        self.ctx = ctx
        self.bit = bit
        self.upstream = upstream
        # The warm files' version sidecars: a snapshot of the same content keeps its versions.
        self._sidecars = FilesTier(ctx.root, clock=ctx.clock)
        cfg = ctx.config.git
        self.backend = GitTier(
            cfg.path,
            cfg.branch,
            cfg.remote,
            cfg.ssh_key_file,
            cfg.token_file,
            cfg.history_max_age,
            clock=ctx.clock,
        )
        self.state = BackupState()
        self.covered = 0  # last journal segment git holds
        self.commits = 0
        self._deletes: dict[str, dict[str, float]] = {}  # file -> key -> deleted at
        self._pending: set[tuple[str, str]] = set()  # (collection, key) not yet in git
        self._oldest_change: float | None = None
        self._last_backup = ctx.clock()
        self._push_lock = threading.Lock()
        self._remote_checked = False

    def _file(self, collection: str, cls: PersistenceClass) -> str:
        return FilesTier.file_name(collection, self.ctx.override(collection, cls))

    def _class_of_file(self, collection: str, override: str | None) -> PersistenceClass:
        """A backup file's class: its override, else its collection's class when that goes to
        git, else critical (what the backup held when written)."""
        if override:
            return PersistenceClass(override)
        mapped = self.ctx.config.class_of(collection)
        return mapped if self.ctx.routes.mask(mapped) & self.bit else PersistenceClass.CRITICAL

    # -- queued work -----------------------------------------------------------------------
    def open(self) -> None:
        self.backend.open()

    def note_put(self, collection: str, key: str, entry: Entry, now: float) -> None:
        self._pending.add((collection, key))
        queued = self._deletes.get(self._file(collection, entry.cls))
        if queued:
            queued.pop(key, None)  # a put after a delete: the put is what git must hold
        if self._oldest_change is None:
            self._oldest_change = now

    def note_delete(self, collection: str, key: str, cls: PersistenceClass, when: float) -> None:
        self._deletes.setdefault(self._file(collection, cls), {})[key] = when
        if self._oldest_change is None:
            self._oldest_change = when

    def note_bulk(self, collection: str, cls: PersistenceClass) -> None:
        for key, entry in self.ctx.memory.collection(collection).items():
            if entry.pending & self.bit:
                self.note_put(collection, key, entry, entry.mtime)

    def pending_work(self) -> bool:
        return bool(self._pending or self._deletes)

    def due(self, now: float) -> bool:
        tiering = self.ctx.config.tiering
        return backup_due(
            now,
            self._last_backup,
            self._oldest_change,
            tiering.git_backup_interval,
            tiering.warm_age,
        ) or self._push_retry_due(now)

    def retry_in(self, now: float) -> float | None:
        """When a failed push should be tried again (the scheduler sleeps until then)."""
        if not self.state.last_push_error or not self.state.unpushed_commits:
            return None
        return max(0.0, self.state.next_push_at - now)

    def background(self) -> Callable[[], Any] | None:
        return self.check_remote if self.ctx.config.git.remote else None

    # -- commit ----------------------------------------------------------------------------
    def ship(self, report: PassReport, compact: bool = True) -> dict[str, Any]:
        """Commit pending changes (a segment, or a fresh snapshot when due). With
        compact=False (shutdown, preemption) the snapshot waits: it costs seconds to write and
        push, more than a stop budget can spare; a segment is always cheap."""
        changes, touched, deletes, covered = self._collect()
        sha = None
        git = self.backend
        try:
            if (
                compact
                and git.needs_snapshot()
                and (changes or git.state.head is None or git.state.segments)
            ):
                sha = git.commit_snapshot(self._snapshot_files(), self.ctx.host)
            elif changes:
                sha = git.commit_changes(changes, self.ctx.host)
        except Exception:
            self._requeue(touched, deletes)
            raise
        now = self.ctx.clock()
        self._last_backup = now
        self.covered = covered
        self.ctx.checkpoint_journal()
        if sha is not None:
            self.state.unpushed_commits += 1
            if self.state.oldest_unpushed_at is None:
                self.state.oldest_unpushed_at = now
            self.state.last_commit_at = now
            self.state.last_commit = sha.hex()
            self.commits += 1
        return {"commit": sha.hex() if sha else None, "changes": len(changes)}

    def _collect(
        self,
    ) -> tuple[list[GitRecord], list[tuple[str, str, Entry]], dict[str, dict[str, float]], int]:
        """The changes since the last backup, O(changes), and the last journal segment they
        cover (a segment is dropped only once every tier holds it)."""
        changes: list[GitRecord] = []
        touched: list[tuple[str, str, Entry]] = []
        memory, bit = self.ctx.memory, self.bit
        with memory.lock:
            covered = self.ctx.journal.rotate()
            pending, self._pending = self._pending, set()
            for collection, key in sorted(pending):
                entry = memory.entry(collection, key)
                if entry is None or not entry.pending & bit:
                    continue  # deleted since (the delete is queued below) or already taken
                assert entry.value is not None  # pending records are never evicted
                changes.append(
                    GitRecord(self._file(collection, entry.cls), key, entry.mtime, entry.value)
                )
                entry.pending &= ~bit
                touched.append((collection, key, entry))
            deletes, self._deletes = self._deletes, {}
            for name, keys in deletes.items():
                for key, when in keys.items():
                    changes.append(GitRecord(name, key, when, None))
            self._oldest_change = None
        return changes, touched, deletes, covered

    def _requeue(
        self, touched: list[tuple[str, str, Entry]], deletes: dict[str, dict[str, float]]
    ) -> None:
        """A commit that failed leaves its changes pending, deletes included."""
        with self.ctx.memory.lock:
            for collection, key, entry in touched:
                entry.pending |= self.bit
                self._pending.add((collection, key))
            for name, keys in deletes.items():
                queued = self._deletes.setdefault(name, {})
                for key, when in keys.items():
                    queued.setdefault(key, when)
            self._oldest_change = self.ctx.clock()

    def _snapshot_files(self) -> dict[str, Path]:
        """The snapshot's content: right after a files pass, the warm files of the classes
        routed here hold every such record, in the snapshot's own layout, so they are streamed
        into git as is."""
        self.upstream.ship(PassReport())
        files: dict[str, Path] = {}
        for path in sorted(self.ctx.root.glob("*.json")):
            names = FilesTier.parse_name(path.name)
            if names is None:
                continue
            collection, override = names
            cls = PersistenceClass(override) if override else self.ctx.config.class_of(collection)
            if self.ctx.routes.mask(cls) & self.bit:
                files[path.name] = path
        return files

    # -- push ------------------------------------------------------------------------------
    def _push_retry_due(self, now: float) -> bool:
        return self.state.last_push_error is not None and now >= self.state.next_push_at

    def publish(self, deadline: float) -> bool:
        """Push the branch before `deadline` (time.monotonic); on failure keep serving and
        back off (doubling, capped).

        The first push of a process checks the remote tip: a backup this host has not merged
        (another VM's, written while this one started without the remote) is merged first,
        newer record wins, and the push is leased on that tip, so no backup is overwritten."""
        git = self.backend
        if not self.ctx.config.git.remote or git.state.head is None:
            return False
        # A push already in flight (a background retry against a hanging remote) must not
        # hold a shutdown past its budget: wait for it only as long as the budget allows.
        if not self._push_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return self._push_failed(GitUnavailable("an earlier push is still running"))
        try:
            if git.state.head.hex() == self.state.pushed_commit:
                return True
            try:
                if not self._remote_checked:
                    self._merge_remote(max(1.0, deadline - time.monotonic()))
                remaining = deadline - time.monotonic()
                if remaining < 1.0:
                    raise GitUnavailable("no time left in the budget to push")
                git.push(git.known_remote_tip(), timeout=remaining)
            except RemoteMoved as exc:
                self._remote_checked = False
                return self._push_failed(exc)
            except (GitUnavailable, OSError) as exc:
                return self._push_failed(exc)
            self.state.last_push_at = self.ctx.clock()
            self.state.last_push_error = None
            self.state.push_failures = 0
            self.state.pushed_commit = git.state.head.hex()
            self.state.unpushed_commits = 0
            self.state.oldest_unpushed_at = None
            return True
        finally:
            self._push_lock.release()

    def push(self, timeout: float | None = None) -> bool:
        return self.publish(time.monotonic() + (timeout or BACKGROUND_PUSH_TIMEOUT))

    def published(self) -> bool | None:
        """True when the remote has the local tip (None without a remote)."""
        if not self.ctx.config.git.remote:
            return None
        head = self.backend.state.head
        return self.state.pushed_commit == (head.hex() if head else None)

    def _push_failed(self, exc: Exception) -> bool:
        self.state.push_failures += 1
        self.state.last_push_error = redact(str(exc))
        delay = retry_delay(self.state.push_failures, self.ctx.config.git.push_retry_max)
        self.state.next_push_at = self.ctx.clock() + delay
        log.warning(
            "push failed; will retry",
            extra={
                "error": self.state.last_push_error,
                "retry_in_s": delay,
                "failures": self.state.push_failures,
            },
        )
        return False

    def _merge_remote(self, timeout: float) -> None:
        """Make sure the remote tip is merged here before replacing it."""
        git = self.backend
        tip = git.remote_tip(timeout)
        if tip is not None and not git.is_merged(tip):
            state = git.fetch_foreign(timeout)
            if state is not None:
                snapshot, changes = git.read_tip(state)
                taken = self._adopt(snapshot, changes, state.snapshot_at)
                log.warning(
                    "the remote branch held a backup this host had not merged; merged it",
                    extra={"remote_tip": tip.hex(), "records_taken": taken},
                )
                with self.ctx.maintenance:
                    self.ship(PassReport(), compact=True)
            git.record_remote_tip(tip)
        elif tip is None and git.known_remote_tip() is not None:
            git.record_remote_tip(None)  # the branch was deleted on the remote
        self._remote_checked = True

    def _adopt(
        self, snapshot: dict[str, bytes], changes: list[GitRecord], snapshot_at: float
    ) -> int:
        """A foreign backup's records, newest per key, handed to the storage's adopt."""
        incoming: dict[tuple[str, str], tuple[float, bytes | None]] = {}
        for name, blob in snapshot.items():
            for key, data, _ in parse(blob) or []:
                incoming[(name, key)] = (snapshot_at, data)
        for rec in changes:
            incoming[(rec.file, rec.key)] = (rec.mtime, rec.value)
        records = []
        for (name, key), (mtime, value) in incoming.items():
            names = FilesTier.parse_name(name)
            if names is None:
                continue
            cls = PersistenceClass(names[1]) if names[1] else PersistenceClass.CRITICAL
            records.append((names[0], key, cls, mtime, value))
        return self.ctx.adopt(records)

    def check_remote(self, timeout: float = START_FETCH_TIMEOUT) -> bool:
        """Merge a newer backup from the remote (the disk came from an old snapshot, or another
        VM wrote the branch). Run in the background after start: a VM with its warm files
        serves at once instead of waiting on a remote that may never answer; writes made
        meanwhile are newer and win the merge. False when the remote could not be checked (the
        first push checks again)."""
        if not self.ctx.config.git.remote or self._remote_checked:
            return True
        if not self._push_lock.acquire(timeout=timeout):
            return False
        try:
            self._merge_remote(timeout)
        except (GitUnavailable, OSError) as exc:
            self.state.last_push_error = redact(str(exc))
            log.warning(
                "remote not checked; will check before the first push",
                extra={"error": self.state.last_push_error},
            )
            return False
        finally:
            self._push_lock.release()
        return True

    # -- restore -----------------------------------------------------------------------------
    def restore_all(self) -> str | None:
        """The whole backup (the local repository, else the remote's), or None when there is
        none to be had."""
        source = "git-local"
        git = self.backend
        if git.state.head is None:
            try:
                if not git.fetch(timeout=START_FETCH_TIMEOUT):
                    return None
            except GitUnavailable as exc:
                log.error(
                    "remote unreachable at start; starting empty", extra={"error": redact(str(exc))}
                )
                self.state.last_push_error = redact(str(exc))
                return None
            source = "git-remote"
            self._remote_checked = True  # just fetched: the remote tip is what was restored
        self._apply(since=None)
        return source

    def restore_newer(self, since: float, lost: list[str]) -> None:
        """An earlier tier was restored: take only records changed after it was written, and
        every record of the files it lost (the backup is the newest copy left of them)."""
        if self.backend.state.head is None:
            return
        if lost:
            self._apply(since=None, only=set(lost))
        if self.backend.state.written_at > since:
            self._apply(since=since)

    def restore_mark(self) -> tuple[float | None, list[str]]:
        return self.backend.state.written_at or None, []

    def ready(self, restored_from: str) -> None:
        """Unknown whether the remote has the local tip: push it on the next backup."""
        if (
            self.ctx.config.git.remote
            and self.backend.state.head is not None
            and restored_from != "git-remote"
        ):
            self.state.unpushed_commits = 1
            self.state.oldest_unpushed_at = self.backend.state.written_at

    def _apply(self, since: float | None, only: set[str] | None = None) -> None:
        """Load the snapshot, then replay change segments in order (later wins). With `since`,
        only what is newer than that moment is applied (never older over newer); with `only`,
        only those files' records."""
        git, memory, routes = self.backend, self.ctx.memory, self.ctx.routes
        snapshot, changes = git.read_tip()
        snapshot_at = git.state.snapshot_at
        if only is not None:
            snapshot = {name: blob for name, blob in snapshot.items() if name in only}
            changes = [rec for rec in changes if rec.file in only]
        with memory.lock:
            if since is None or snapshot_at > since:
                for name, blob in snapshot.items():
                    names = FilesTier.parse_name(name)
                    lines = parse(blob)
                    if names is None or lines is None:
                        log.error("git snapshot file unreadable; skipped", extra={"file": name})
                        continue
                    cls = self._class_of_file(*names)
                    owed = routes.owed_after_restore(cls, self.name)
                    versions = self._sidecars.versions_of_content(name, blob, len(lines))
                    if memory.bulk_insert(
                        names[0], lines, cls, snapshot_at, owed, False, versions
                    ):
                        self.ctx.note_bulk(names[0], cls, owed)
            for rec in changes:
                if since is not None and rec.mtime <= since:
                    continue
                names = FilesTier.parse_name(rec.file)
                if names is None:
                    continue
                collection, override = names
                cls = self._class_of_file(collection, override)
                owed = routes.owed_after_restore(cls, self.name)
                if rec.value is None:
                    memory.drop(collection, rec.key)
                    self.ctx.note_bulk(collection, cls, owed)
                    continue
                entry = Entry(rec.value, cls, rec.mtime, owed)
                memory.insert_restored(collection, rec.key, entry)
                self.ctx.note_bulk(collection, cls, owed)
            memory.drop_empty_collections()

    # -- status ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        cfg = self.ctx.config.git
        head = self.backend.state.head.hex() if self.backend.state.head else None
        return {
            "tiers": {
                "git": {
                    "path": str(cfg.path),
                    "branch": self.backend.branch,
                    "remote": redact(cfg.remote) if cfg.remote else None,
                    "head": head,
                    "segments": len(self.backend.state.segments),
                }
            },
            "backup": {
                "last_commit_at": self.state.last_commit_at,
                "last_push_at": self.state.last_push_at,
                "last_push_error": self.state.last_push_error,
                "push_failures": self.state.push_failures,
                "remote_lag_commits": self.state.unpushed_commits if cfg.remote else None,
                "remote_lag_s": self._remote_lag_seconds(),
            },
        }

    def _remote_lag_seconds(self) -> float | None:
        """Age of the oldest commit the remote does not have: the current recovery point."""
        if not self.ctx.config.git.remote:
            return None
        if self.state.oldest_unpushed_at is None:
            return 0.0
        return round(self.ctx.clock() - self.state.oldest_unpushed_at, 3)

    def close(self) -> None:
        self.backend.close()
