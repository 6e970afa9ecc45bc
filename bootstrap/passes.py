"""The passes: what moves records from memory to the tiers and publishes them. Apart from the
facade because they are the storage's second concern, run by the scheduler, the lifecycle
hooks and the CLI, never on a request's path: the periodic tiering pass (expire, ship the
every-pass tiers, age memory, back up what is due), the checkpoint that drops journal
segments every tier holds, the flush of shutdown and preemption, and publishing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .config import AgentConfig
from .journal import Journal
from .memory import MemoryStore, release_free_heap
from .replicas import PassReport, Replica

if TYPE_CHECKING:
    from .storage import Counters

# The journal is checkpointed (every tier written, segments dropped) once it holds this much:
# it bounds replay time and memory after a crash, also for an agent that never lives to its
# first pass.
JOURNAL_CHECKPOINT_BYTES = 32 * 1024 * 1024
BACKGROUND_PUBLISH_TIMEOUT = 30.0
TierReport = PassReport  # the name the lifecycle and the API know


class Passes:
    """The storage's passes over its replicas; `maintenance` serialises them."""

    def __init__(
        self,
        config: AgentConfig,
        clock: Callable[[], float],
        memory: MemoryStore,
        journal: Journal,
        replicas: Sequence[Replica],
        maintenance: threading.Lock,
        counters: Counters,
        expire: Callable[[], int],
        sync: Callable[[], None],
    ) -> None:
        self.config = config
        self.clock = clock
        self.memory = memory
        self.journal = journal
        self.replicas = replicas
        self.maintenance = maintenance
        self.counters = counters
        self.expire = expire
        self.sync = sync

    def tier(self) -> TierReport:
        """The periodic pass: ship every-pass tiers (warm files), checkpoint the journal, age
        memory, then back up to the tiers that are due."""
        started = time.perf_counter()
        report = TierReport()
        memory = self.memory
        with self.maintenance:
            report.expired = self.expire()
            self.ship_every_pass(report)
            now = self.clock()
            with memory.lock:
                aged = memory.age(now, self.config.tiering.hot_age)
                report.evicted, report.expired_cache = aged.evicted, aged.expired_cache
                memory.evict_blocked = False
                if memory.over_limit():
                    # This is the pass: asking for another one would loop while records owed to
                    # a backup tier hold memory (only a backup cleans them).
                    memory.evict_for_limit(ask_for_pass=False)
            self.counters.tier_passes += 1
        if self.config.tiering.enabled:
            now = self.clock()
            full = self.journal_full()
            due = [r for r in self.backups() if full or r.due(now)]
            if due:
                self.ship_backups(due, push=True, push_timeout=None, compact=True)
        with self.maintenance, memory.lock:
            # After the backup: it lets go of the deleted keys the backup was still to hear of.
            report.compacted = memory.compact()
        if report.compacted:
            release_free_heap()
        report.seconds = time.perf_counter() - started
        return report

    def tier_files_only(self) -> TierReport:
        """Ship the every-pass tiers only (the CLI's offline flush)."""
        report = TierReport()
        with self.maintenance:
            self.ship_every_pass(report)
        return report

    def checkpoint(self) -> None:
        """Every tier written now (no publish, no snapshot), so the journal segments they cover
        are dropped."""
        self.tier_files_only()
        self.ship_backups(self.backups(), push=False, push_timeout=None, compact=False)

    def backup(
        self, push: bool = True, push_timeout: float | None = None, compact: bool = True
    ) -> dict[str, Any]:
        """Ship the backup tiers now (git: a segment, or a fresh snapshot when due) and, with
        push, publish them."""
        return self.ship_backups(self.backups(), push, push_timeout, compact)

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
            result.update(self.ship_backups(self.backups(), True, push_timeout, compact=False))
            states = [p for r in self.replicas if (p := r.published()) is not None]
            result["pushed"] = all(states) if states else None
        return result

    def backups(self) -> list[Replica]:
        return [r for r in self.replicas if not r.every_pass]

    def ship_every_pass(self, report: TierReport) -> None:
        for replica in self.replicas:
            if replica.every_pass:
                replica.ship(report)

    def ship_backups(
        self, replicas: list[Replica], push: bool, push_timeout: float | None, compact: bool
    ) -> dict[str, Any]:
        result: dict[str, Any] = {"commit": None, "changes": 0}
        with self.maintenance:
            for replica in replicas:
                result.update(replica.ship(TierReport(), compact=compact))
        if push:
            deadline = time.monotonic() + (push_timeout or BACKGROUND_PUBLISH_TIMEOUT)
            for replica in replicas:
                replica.publish(deadline)
        return result

    def journal_full(self) -> bool:
        return self.journal.size_bytes() > JOURNAL_CHECKPOINT_BYTES

    def checkpoint_journal(self) -> int:
        """Drop the journal segments every tier holds: until then a crash replays them, so no
        change (a delete bound for a backup included) is only in memory."""
        if not self.replicas:
            return 0
        return self.journal.drop_through(min(r.covered for r in self.replicas))
