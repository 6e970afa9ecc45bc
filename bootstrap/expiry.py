"""Time to live: the records put with one, and the pass step that deletes them once it has
passed. Apart from the facade because expiry is a delete the agent makes by itself: it runs
on the pass, not on a request, and must reach every tier like a client's delete."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from .errors import StorageError
from .journal import GroupItem, Journal, JournalWriteError
from .memory import MemoryStore
from .policy import Routes
from .records import Change, Entry
from .replicas import Replica
from .write_clock import WriteClock

log = logging.getLogger("spine.storage")


class Expiry:
    """The names of the records that may expire, and their deletion when they have."""

    def __init__(
        self,
        clock: Callable[[], float],
        memory: MemoryStore,
        journal: Journal,
        routes: Routes,
        replicas: Sequence[Replica],
        write_clock: WriteClock,
    ) -> None:
        self.clock = clock
        self.memory = memory
        self.journal = journal
        self.routes = routes
        self.replicas = replicas
        self.write_clock = write_clock
        self.names: set[tuple[str, str]] = set()  # records put with a time to live

    def track(self, collection: str, key: str) -> None:
        """A record was put with a time to live (caller holds the lock)."""
        self.names.add((collection, key))

    def reset(self, names: set[tuple[str, str]]) -> None:
        """After restore: the records loaded with a time to live."""
        self.names = names

    def expire(self) -> int:
        """Delete every record whose time to live has passed, like a delete: journaled (one
        group), through the sync tiers, queued for the others; the pass calls it first, so its
        tombstones reach every tier in that same pass. Returns how many went."""
        memory, routes = self.memory, self.routes
        with memory.lock:
            now = self.clock()
            items: list[GroupItem] = []
            plan: list[tuple[str, str, Entry, float]] = []
            for name in list(self.names):
                entry = memory.entry(*name)
                if entry is None or entry.expires is None:
                    self.names.discard(name)  # deleted, or written again without a ttl
                elif entry.expires <= now:
                    when = self.write_clock.next(entry) / 1_000_000
                    if routes.journaled(entry.cls):
                        items.append((*name, entry.cls.value, None, when, None))
                    plan.append((*name, entry, when))
            if not plan:
                return 0
            try:
                for replica in self.replicas:
                    mine = [
                        Change(c, k, None, e.cls.value, when)
                        for c, k, e, when in plan
                        if replica.writes_through(e.cls)
                    ]
                    if mine:
                        replica.write_through_many(mine)
                self.journal.append_group(items)
            except (StorageError, JournalWriteError) as exc:
                log.warning("expired records kept until the next pass", extra={"error": str(exc)})
                return 0
            for collection, key, entry, when in plan:
                memory.remove_entry(collection, key, entry.cls, when)
                self.names.discard((collection, key))
        return len(plan)
