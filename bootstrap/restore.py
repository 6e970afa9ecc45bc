"""Restore: the newest point across tiers, the journal replay, and newest-wins adoption.

The tiers are tried in route order. The first that holds state is loaded whole; every later
one contributes only what changed after that tier was written (plus whatever the first one
lost to quarantine), so an older backup never overwrites a newer local copy and a record
deleted after the backup does not come back. Then the journal replays what no tier held yet.
A shared tier (postgres) reads its rows here but takes them in its `ready`, after the replay,
newest wins by version: a journal line older than what another agent wrote since loses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .journal import Journal
from .memory import MemoryStore, bulk_load
from .policy import Routes
from .records import Entry, PersistenceClass
from .replicas import Incoming, Replica

EMPTY = "empty"


def restore(replicas: Sequence[Replica], memory: MemoryStore, journal: Journal) -> tuple[str, int]:
    """(where the state came from, journal operations replayed). The caller tells the
    replicas `ready(source)` once it has checkpointed what the replay left."""
    with bulk_load():
        source = EMPTY
        first: Replica | None = None
        for replica in replicas:
            if first is None:
                found = replica.restore_all()
                if found is not None:
                    source, first = found, replica
                continue
            since, lost = first.restore_mark()
            replica.restore_newer(since or 0.0, lost)
        replayed = replay_journal(journal, memory, memory.routes)
    return source, replayed


def replay_journal(journal: Journal, memory: MemoryStore, routes: Routes) -> int:
    """Every journaled write not yet dropped, in order: owed to every tier of its class."""
    ops = journal.open()
    with memory.lock:
        for op in ops:
            cls = PersistenceClass.parse(op.cls)
            if op.value is None:
                memory.remove_entry(op.collection, op.key, cls, op.ts)
            else:
                entry = Entry(op.value, cls, op.ts, routes.mask(cls))
                memory.set_entry(op.collection, op.key, entry, op.ts)
    return len(ops)


def adopt(
    records: Iterable[Incoming], memory: MemoryStore, journal: Journal, routes: Routes
) -> int:
    """Take another copy's records where they are newer than ours. They are journaled like
    puts, so they are as durable here as anything written locally."""
    taken = 0
    with memory.lock:
        for collection, key, cls, mtime, value in records:
            local = memory.entry(collection, key)
            if local is not None and local.mtime >= mtime:
                continue
            journal.append(collection, key, cls.value, value, mtime)
            if value is None:
                memory.remove_entry(collection, key, cls, mtime)
            else:
                memory.set_entry(collection, key, Entry(value, cls, mtime, routes.mask(cls)), mtime)
            taken += 1
    journal.sync()
    return taken
